#!/usr/bin/env python3
"""The server's side of a bucketed SQL read: one bucket's MD5-pushdown query against one key range.

    .venv/bin/python bench/buckets_ranges_server.py            # 1M rows, PostgreSQL, twice each

Makes the table of bench/buckets.py (1M rows) in a scratch schema and times, with EXPLAIN ANALYZE
(the server's execution, rows not sent), each statement a bucketed run issues: the single run's,
bucket 0 of 4 with the hash pushed down (a 4-bucket run issues 4 of them), one of 4 key ranges
(the key-range read phase issues 4 of them) and the key span. Drops the schema after.
"""
import os
import time

import psycopg

PG = os.environ.get("HIWATER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def main() -> None:
    c = psycopg.connect(PG, autocommit=True)
    c.execute("DROP SCHEMA IF EXISTS bench_ranges_server CASCADE")
    c.execute("CREATE SCHEMA bench_ranges_server")
    try:
        c.execute("CREATE TABLE bench_ranges_server.src AS SELECT i::bigint AS id, md5(i::text) AS name, "
                  "(i % 1000)::int AS qty, (i % 997)::numeric(10,2) AS price, timestamp '2025-01-01' + "
                  "(i % 500000) * interval '1 second' AS modified_at FROM generate_series(1, 1000000) i")
        c.execute("ANALYZE bench_ranges_server.src")
        md5 = "mod(('x' || substr(md5(coalesce(\"id\"::text, '')), 1, 8))::bit(32)::bigint, 4) = 0"
        t = "bench_ranges_server.src"
        queries = {"all rows, sorted (the single run)": f"SELECT * FROM {t} ORDER BY modified_at, id",
                   "bucket 0 of 4, MD5 pushed down, sorted": f"SELECT * FROM {t} WHERE {md5} ORDER BY modified_at, id",
                   "key range 1 of 4 (id < 250001), sorted": f"SELECT * FROM {t} WHERE id < 250001 ORDER BY modified_at, id",
                   "the key span (min, max)": f"SELECT min(id), max(id) FROM {t}"}
        print(f"load average {os.getloadavg()[0]:.1f}")
        print("| statement | run | server ms |\n| --- | ---: | ---: |")
        for run in (1, 2):
            for name, q in queries.items():
                plan = c.execute("EXPLAIN (ANALYZE) " + q).fetchall()
                ms = next(r[0] for r in plan if "Execution Time" in r[0]).split(":")[1].strip().split()[0]
                print(f"| {name} | {run} | {float(ms):.0f} |")
                time.sleep(0.1)
    finally:
        c.execute("DROP SCHEMA bench_ranges_server CASCADE")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The cost of the pushed-down bucket predicate on PostgreSQL, against reading every row (issue 13).

    .venv/bin/python bench/buckets_pushdown.py      # 1M rows in a scratch schema bench_b13_pd, dropped after

Prints a Markdown table (docs/benchmarks-buckets.md).
"""
import os
import time, psycopg, pyarrow as pa
from hiwater.buckets import bucket_sql, bucket_ids
PG = os.environ.get("HIWATER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
c = psycopg.connect(PG, autocommit=True)
c.execute("DROP SCHEMA IF EXISTS bench_b13_pd CASCADE; CREATE SCHEMA bench_b13_pd")
c.execute("CREATE TABLE bench_b13_pd.src AS SELECT i::bigint AS id, md5(i::text) AS name, (i % 1000)::int AS qty, "
          "(i % 997)::numeric(10,2) AS price, timestamp '2025-01-01' + (i % 500000) * interval '1 second' AS modified_at "
          "FROM generate_series(1, 1000000) i")
pred = bucket_sql("postgresql", ['"id"'], 4, 0)
def t(label, sql, fetch=True):
    best = None
    for _ in range(2):
        s = time.perf_counter()
        with psycopg.connect(PG) as cc:
            with cc.cursor(name="x") as cur:
                cur.itersize = 65536
                cur.execute(sql)
                n = sum(len(b) for b in iter(lambda: cur.fetchmany(65536), []))
        e = time.perf_counter() - s
        best = e if best is None else min(best, e)
    print(f"| {label} | {n:,} | {best:.2f} |")
print("| query | rows | seconds (best of 2) |\n| --- | ---: | ---: |")
t("count(*), no predicate (server scan)", "SELECT count(*) FROM bench_b13_pd.src")
t("count(*) WHERE bucket 0 of 4 (server scan + md5)", f"SELECT count(*) FROM bench_b13_pd.src WHERE {pred}")
t("SELECT * (all rows to the client)", "SELECT * FROM bench_b13_pd.src")
t("SELECT id, modified_at (key + cursor, all rows)", "SELECT id, modified_at FROM bench_b13_pd.src")
t("SELECT * WHERE bucket 0 of 4 (pushed down)", f"SELECT * FROM bench_b13_pd.src WHERE {pred}")
tbl = pa.table({"id": pa.array(range(1, 1000001), pa.int64())})
s = time.perf_counter(); bucket_ids(tbl, ("id",), 4); print(f"\nPython bucket_ids over 1,000,000 int keys: {time.perf_counter()-s:.2f}s")
c.execute("DROP SCHEMA bench_b13_pd CASCADE")

#!/usr/bin/env python3
"""Bucketed streams: throughput against the number of buckets and the executor (issue 13, SPEC §11).

    .venv/bin/python bench/buckets.py                          # 1M rows, PostgreSQL -> PostgreSQL
    .venv/bin/python bench/buckets.py --rows 10000000          # the 10M point (long)
    .venv/bin/python bench/buckets.py --source file            # a JSON Lines file -> PostgreSQL
    .venv/bin/python bench/buckets.py --rows 20000 --configs 1,local:2   # a smoke run

Every point is a first load of the whole source into a fresh PostgreSQL schema, timed in this
process around ``hiwater.load`` (``--buckets 1`` is the plain single run, the reference; the
others start their workers inside the timing: a local process pool (Linux: forked by a
forkserver that imports hiwater once; ``HIWATER_START_METHOD=spawn``: spawned), or a Dask
LocalCluster with one single-threaded worker process per bucket up to the core count). Each point's table is
checked against the reference (row count and an MD5 of every column). ``--target sqlite`` loads a
SQLite file instead (its buckets run one after another: one file, one writer).
Each point also reports the CPU seconds of every process of the run together: this process and
its workers (``getrusage`` of this process and of its reaped children, so a pool's or a
LocalCluster's workers count once they are joined, and a forkserver's, with the workers it
forked, once it is stopped after the point); the database servers' CPU is not included
there, but the PostgreSQL server's is its own column when it runs on this machine (its
processes' CPU, every session of it: other users of the server count too).
``HIWATER_BUCKET_SQL_READ=pushdown`` measures a SQL source's buckets with the hash pushed down
(the figures before the key-range read phase).
``--change-fraction 0.02`` changes 2% of the rows for ``--update`` (the default, 1, changes all).
Prints a Markdown table; ``--out`` writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import uuid

PG = os.environ.get("HIWATER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
NOW = "2025-06-01T00:00:00Z"


def admin():
    import psycopg
    return psycopg.connect(PG, autocommit=True)


def make_source(conn, rows: int, kind: str, tmp: str):
    schema = "bench_b13_" + uuid.uuid4().hex[:8]
    conn.execute(f'CREATE SCHEMA "{schema}"')
    conn.execute(
        f'CREATE TABLE "{schema}".src AS SELECT i::bigint AS id, md5(i::text) AS name, (i % 1000)::int AS qty, '
        f"(i % 997)::numeric(10,2) AS price, timestamp '2025-01-01' + (i % 500000) * interval '1 second' "
        f"AS modified_at FROM generate_series(1, {rows}) i")
    if kind == "sql":
        return schema, dict(source_url=PG, source_table=f"{schema}.src")
    return schema, make_file(conn, schema, tmp)


def make_file(conn, schema: str, tmp: str) -> dict:
    path = os.path.join(tmp, "src.jsonl")
    with open(path, "w") as f, conn.cursor() as cur:
        with cur.copy(f'COPY (SELECT json_build_object(\'id\', id, \'name\', name, \'qty\', qty, '
                      f'\'price\', price::text, \'modified_at\', to_char(modified_at, '
                      f'\'YYYY-MM-DD"T"HH24:MI:SS\')) FROM "{schema}".src) TO STDOUT') as cp:
            for chunk in cp:
                f.write(bytes(chunk).decode())
    return dict(input=path)


def stop_forkserver() -> None:
    """Stop this process's forkserver (a local pool's workers are forked by it, on Linux): it and
    the workers it forked then count in this process's reaped children, and the next point starts
    its own, as a command-line run does (it imports hiwater once per run)."""
    try:
        from multiprocessing import forkserver
        forkserver._forkserver._stop()  # (the standard library's own way to stop it; no public one)
    except Exception:  # noqa: BLE001 - no forkserver, or another Python: nothing to count
        pass


def cpu_seconds() -> float:
    """User + system CPU of this process and of its children that have ended (workers joined)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def server_cpu(conn) -> float | None:
    """User + system CPU of the PostgreSQL server's processes so far (``None``: not on this
    machine): its postmaster's reaped children (closed sessions) and its live processes. It
    counts every session of the server, other users' too: read it on a quiet server."""
    try:
        import psutil
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        master = psutil.Process(psutil.Process(pid).ppid())
        t = master.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in master.children():
            try:
                c = child.cpu_times()
                total += c.user + c.system
            except psutil.Error:
                pass
        return total
    except Exception:  # noqa: BLE001 - a remote server, no psutil: not measured
        return None


def checksum(conn, target: str, table: str = "t") -> dict:
    if target.startswith("delta"):
        import hashlib
        import polars as pl
        df = pl.read_delta(f"{target.split('://', 1)[1]}/{table}").sort("id")
        out = {"count": df.height}
        for c in ("id", "name", "qty", "price", "modified_at"):
            out[c] = hashlib.md5(",".join("-" if v is None else str(v) for v in df[c].to_list()).encode()).hexdigest()
        return out
    if target.startswith("sqlite"):
        import hashlib
        import sqlite3
        con = sqlite3.connect(target.split("sqlite:///", 1)[1])
        rows = con.execute(f'SELECT id, name, qty, price, modified_at FROM "{table}" ORDER BY id').fetchall()
        con.close()
        return {"count": len(rows), "md5": hashlib.md5(repr(rows).encode()).hexdigest()}
    schema = target.split("schema=", 1)[1]
    out = {"count": conn.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()[0]}
    for c in ("id", "name", "qty", "price", "modified_at"):
        out[c] = conn.execute(f'SELECT md5(string_agg(coalesce("{c}"::text, \'-\'), \',\' ORDER BY id)) '
                              f'FROM "{schema}"."{table}"').fetchone()[0]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--source", choices=["sql", "file"], default="sql")
    ap.add_argument("--target", choices=["postgresql", "sqlite", "delta"], default="postgresql")
    ap.add_argument("--configs", default="1,local:2,local:4,dask:2,dask:4",
                    help="comma-separated points: 1 (one run), EXECUTOR:N")
    ap.add_argument("--update", action="store_true",
                    help="time the run after a first load: every source row changed (its cursor moved 30 days "
                         "later), so every bucket runs in parallel from its watermark (a first load runs "
                         "bucket 0 alone first, to create the table)")
    ap.add_argument("--change-fraction", type=float, default=1.0,
                    help="--update: the share of the rows changed (0.02: every 50th row)")
    ap.add_argument("--out", help="also write the results as JSON here")
    args = ap.parse_args()
    import hiwater
    conn = admin()
    tmp = tempfile.mkdtemp(prefix="bench_b13_")
    made = []
    t0 = time.perf_counter()
    schema, src = make_source(conn, args.rows, args.source, tmp)
    made.append(schema)
    print(f"source: {args.rows:,} rows ({args.source}) made in {time.perf_counter() - t0:.1f}s; "
          f"cpus={os.cpu_count()}; load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
    results, reference = [], None
    points = []
    try:
        for point in args.configs.split(","):
            executor, _, n = point.partition(":")
            n = int(n or executor if executor.isdigit() else n)
            executor = None if executor.isdigit() else executor
            if args.target == "sqlite":
                target = f"sqlite:///{os.path.join(tmp, f'{uuid.uuid4().hex[:6]}.db')}"
            elif args.target == "delta":
                target = f"delta://{os.path.join(tmp, uuid.uuid4().hex[:6])}"
            else:
                ts = "bench_b13_" + uuid.uuid4().hex[:8]
                made.append(ts)
                target = f"{PG}?schema={ts}"
            kw = dict(target=target, table="t", now=NOW)
            if n > 1:
                kw.update(buckets=n, executor=executor)
            points.append((point, n, executor, target, kw))
        if args.update:
            for point, n, executor, target, kw in points:
                hiwater.load(**src, **kw)  # the first load, untimed
                stop_forkserver()  # (each timed point starts its own, as a command does)
            every = max(1, round(1 / args.change_fraction))
            conn.execute(f'UPDATE "{schema}".src SET name = name || \'!\', modified_at = modified_at + interval \'30 days\' '
                         f'WHERE id % {every} = 0')
            if args.source == "file":
                schema, src = schema, make_file(conn, schema, tmp)
        for point, n, executor, target, kw in points:
            load_avg = os.getloadavg()[0]
            t, c, sc = time.perf_counter(), cpu_seconds(), server_cpu(conn)
            s = hiwater.load(**src, **kw)
            elapsed = time.perf_counter() - t
            stop_forkserver()
            cpu = cpu_seconds() - c
            sc = None if sc is None else round(server_cpu(conn) - sc, 2)
            sums = checksum(conn, target)
            if reference is None:
                reference = (elapsed, sums, cpu)
            same = sums == reference[1]
            row = {"point": point, "buckets": n, "executor": executor or "-", "seconds": round(elapsed, 2),
                   "rows_per_s": round(args.rows / elapsed), "speedup": round(reference[0] / elapsed, 2),
                   "cpu_s": round(cpu, 2), "cpu_vs_one_run": round(cpu / reference[2], 2), "server_cpu_s": sc,
                   "loaded": s.loaded, "same_as_single_run": same, "load_average_before": round(load_avg, 1)}
            results.append(row)
            print(json.dumps(row), file=sys.stderr)
            if not same:
                print(f"MISMATCH at {point}: {sums} != {reference[1]}", file=sys.stderr)
    finally:
        for sch in made:
            conn.execute(f'DROP SCHEMA IF EXISTS "{sch}" CASCADE')
        shutil.rmtree(tmp, ignore_errors=True)  # the source file and the Delta / SQLite targets
    what = (f"the run after {args.change_fraction:.0%} of the rows changed" if args.update else "a first load")
    print(f"\n{args.rows:,} rows, {args.source} source -> {args.target}, {what}\n")
    print("| buckets | executor | seconds | rows/s | vs one run | CPU s (all processes) | CPU vs one run "
          "| PostgreSQL server CPU s | same table | load avg before |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    for r in results:
        print(f"| {r['buckets']} | {r['executor']} | {r['seconds']} | {r['rows_per_s']:,} | {r['speedup']}x | "
              f"{r['cpu_s']} | {r['cpu_vs_one_run']}x | {r['server_cpu_s']} | "
              f"{'yes' if r['same_as_single_run'] else 'NO'} | {r['load_average_before']} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"rows": args.rows, "source": args.source, "target": args.target, "update": args.update,
                       "change_fraction": args.change_fraction if args.update else None, "cpus": os.cpu_count(),
                       "results": results}, f, indent=2)
    return 0 if all(r["same_as_single_run"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Listing at scale (issue 12, SPEC §10): a prefix of 100,000 small files, listed once per run and
compared with the manifest in memory; the manifest's size per file on each target.

    .venv/bin/python bench/files_listing.py --files 100000 --s3-files 10000 \\
        --out bench/results/files-listing-20261130.json
    .venv/bin/python bench/files_listing.py --files 2000 --s3-files 200      # a smoke run

In one process (no interpreter start-up), for FILES local files (one record each):

  list      FileSource(folder): the folder listed and every file stat'ed once
  write     the manifest of FILES files written by one run (one executemany / one set-based
            upsert), in its transaction, on SQLite, PostgreSQL (127.0.0.1) and DuckDB
  read      the stream's manifest read back (one query)
  compare   the listing compared with it (a dict look-up per file)
  size      the manifest's bytes per file: SQLite pages (dbstat), PostgreSQL
            pg_total_relation_size (table + primary key + TOAST), DuckDB's blocks in use
  one-more  then one new file and a whole `hiwater.load` run (SQLite), in this process

And the same listing + compare on a moto S3 server started here on 127.0.0.1 (S3FILES objects;
putting 100,000 objects into moto one by one takes too long for a benchmark run).
Prints a Markdown table; --out writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import hiwater  # noqa: E402
from hiwater.sources.files import FileSource  # noqa: E402
from hiwater.targets import open_target  # noqa: E402
from hiwater.targets.base import FilesRead  # noqa: E402

NOW = "2025-06-01T00:00:00Z"
PG_URL = os.environ.get("HIWATER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def record(i: int) -> bytes:
    return (json.dumps({"id": i, "v": f"e{i % 97}", "modified_at": f"2025-01-{1 + i % 28:02d}T00:00:{i % 60:02d}"})
            + "\n").encode()


def make_folder(d: str, n: int) -> None:
    os.makedirs(d, exist_ok=True)
    for i in range(n):
        with open(os.path.join(d, f"export-{i:07d}.jsonl"), "wb") as f:
            f.write(record(i))


def clock(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def manifest_bytes(target, kind: str, schema: str | None) -> int:
    if kind == "sqlite":
        con = target.conn
        try:
            return con.execute("SELECT sum(pgsize) FROM dbstat WHERE name LIKE '%_hiwater_files%'").fetchone()[0]
        except Exception:  # noqa: BLE001 - no dbstat in this SQLite build: the file grew by
            return None
    if kind == "postgresql":
        return target.conn.execute(f"SELECT pg_total_relation_size('\"{schema}\"._hiwater_files')").fetchall()[0][0]
    target.conn.execute("CHECKPOINT")
    # the distinct storage blocks (262,144 bytes each) that hold the table's column segments
    blocks = target.conn.execute("SELECT count(DISTINCT block_id) FROM pragma_storage_info('_hiwater_files')"
                                 " WHERE block_id >= 0").fetchall()[0][0]
    return blocks * 262_144 if blocks else None


def bench_target(kind: str, work: str, src: FileSource, n: int) -> dict:
    schema = None
    if kind == "sqlite":
        target = open_target(db=os.path.join(work, "m.db"))
    elif kind == "duckdb":
        target = open_target(target=f"duckdb:///{os.path.join(work, 'm.duckdb')}")
    else:
        import psycopg
        schema = f"wt12_bench_{os.getpid()}"
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f'CREATE SCHEMA "{schema}"')
        target = open_target(target=f"{PG_URL}?schema={schema}")
    try:
        with target:
            with target.begin("events", run_id=1):
                pass  # the meta store is made by the first begin, before the clock starts
            entries = list(src.entries.values())

            def write():
                with target.begin("events", run_id=1) as tx:
                    tx.record(FilesRead(entries))
            _, t_write = clock(write)
            known, t_read = clock(lambda: target.ledger.files("events"))
            sel, t_cmp = clock(lambda: src.select(known))
            assert len(known) == n and sel.skipped == n and not sel.read, (len(known), sel.to_dict())
            size = manifest_bytes(target, kind, schema)
        return {"target": kind, "write_s": t_write, "read_s": t_read, "compare_s": t_cmp,
                "bytes": size, "bytes_per_file": None if size is None else size / n}
    finally:
        if schema:
            import psycopg
            with psycopg.connect(PG_URL, autocommit=True) as admin:
                admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def bench_s3(work: str, n: int) -> dict:
    import logging

    import boto3
    import s3fs  # noqa: F401 - imported before the clock starts, as in a run that lists
    from moto.server import ThreadedMotoServer
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    srv.start()
    host, port = srv.get_host_and_port()
    assert host == "127.0.0.1"
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    os.environ.update(env)
    try:
        client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])
        client.create_bucket(Bucket="landing")
        t = time.perf_counter()
        for i in range(n):
            client.put_object(Bucket="landing", Key=f"events/export-{i:07d}.jsonl", Body=record(i))
        t_put = time.perf_counter() - t
        src, t_list = clock(lambda: FileSource("s3://landing/events/"))
        with open_target(db=os.path.join(work, "s3.db")) as target:
            with target.begin("events", run_id=1) as tx:
                tx.record(FilesRead(list(src.entries.values())))
            known, t_read = clock(lambda: target.ledger.files("events"))
            sel, t_cmp = clock(lambda: src.select(known))
        assert sel.skipped == n
        return {"objects": n, "put_s": t_put, "list_s": t_list, "read_s": t_read, "compare_s": t_cmp}
    finally:
        srv.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--s3-files", type=int, default=10_000, help="0: no S3 run")
    ap.add_argument("--targets", default="sqlite,postgresql,duckdb")
    ap.add_argument("--out")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="hiwater-bench-listing-")
    try:
        folder = os.path.join(work, "land")
        _, t_make = clock(lambda: make_folder(folder, a.files))
        src, t_list = clock(lambda: FileSource(folder))
        out = {"files": a.files, "make_s": t_make, "list_s": t_list, "targets": []}
        for kind in a.targets.split(","):
            out["targets"].append(bench_target(kind, work, FileSource(folder), a.files))
        # A whole run after one new file, in this process, on SQLite (manifest written above).
        db = os.path.join(work, "m.db")
        with open(os.path.join(folder, "export-9999999.jsonl"), "wb") as f:
            f.write(record(10**8))
        res, t_run = clock(lambda: hiwater.load(folder, db=db, table="events", stream="events", now=NOW).to_dict())
        assert res["source_records"] == 1 and res["files"]["skipped"] == a.files, res["files"]
        out["one_more_run_s"] = t_run
        if a.s3_files:
            out["s3"] = bench_s3(work, a.s3_files)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{a.files:,} local files: listed (stat each) in {out['list_s']:.3f} s; "
          f"one-more run in-process {out['one_more_run_s']:.3f} s\n")
    print("| target | manifest write (first run) | manifest read | compare | bytes per file |")
    print("|---|---:|---:|---:|---:|")
    for r in out["targets"]:
        b = "–" if r["bytes_per_file"] is None else f"{r['bytes_per_file']:.0f}"
        print(f"| {r['target']} | {r['write_s']:.3f} s | {r['read_s']:.3f} s | {r['compare_s']:.3f} s | {b} |")
    if "s3" in out:
        s = out["s3"]
        print(f"\nS3 (moto, {s['objects']:,} objects): listing {s['list_s']:.3f} s, manifest read "
              f"{s['read_s']:.3f} s, compare {s['compare_s']:.3f} s (putting them: {s['put_s']:.1f} s)")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""dlt, set up the way its documentation recommends for an incremental merge load.

    @dlt.resource(primary_key="id", write_disposition="merge")
    def events(modified_at=dlt.sources.incremental("modified_at")): ...

Runs in the benchmark's own environment (bench/.venv-bench, made by bench/setup.sh); dlt is not a
dependency of hiwater. One invocation = one pipeline run (extract, normalize, load).

Variants (``--variant``):
  sqlite-dicts   sqlalchemy destination on a SQLite file, rows as dicts (orjson-parsed lines)
  sqlite-arrow   sqlalchemy destination on a SQLite file, rows as Arrow record batches
  duckdb-arrow   duckdb destination, Arrow record batches (pyarrow.json reader) -- dlt's fastest
  duckdb-dicts   duckdb destination, rows as dicts
  postgres-arrow postgres destination, Arrow record batches
  postgres-dicts postgres destination, rows as dicts

``--workdir`` holds the pipeline's local working directory (state, load packages); keep it between
the runs of one stream, as a scheduled dlt job would.

Prints one JSON line: {"tool": "dlt-<variant>", "records": N, "total_in_target": M}.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

# Quiet, offline, no telemetry; set before dlt is imported.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")

BATCH = 50_000


def dict_batches(path: str):
    import orjson

    loads = orjson.loads
    batch = []
    with open(path, "rb") as f:
        for line in f:
            batch.append(loads(line))
            if len(batch) >= BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


def arrow_batches(path: str, flatten: bool = False):
    import pyarrow as pa
    import pyarrow.json as pj

    schema = pa.schema([
        ("id", pa.int64()), ("name", pa.string()), ("modified_at", pa.timestamp("us")),
        ("amount", pa.float64()), ("score", pa.int64()),
        ("user", pa.struct([("name", pa.string()), ("tier", pa.string())])),
    ])
    reader = pj.open_json(
        path,
        read_options=pj.ReadOptions(block_size=16 << 20),
        parse_options=pj.ParseOptions(explicit_schema=schema),
    )
    for batch in reader:
        if flatten:
            # dlt's postgres destination writes Arrow data as CSV, which has no struct type:
            # split the nested column the way dlt itself flattens dict rows (user__name, ...).
            t = pa.Table.from_batches([batch]).flatten()
            yield t.rename_columns([c.replace(".", "__") for c in t.column_names])
        else:
            yield batch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="dlt incremental merge load")
    ap.add_argument("--input", required=True)
    ap.add_argument("--variant", required=True,
                    choices=["sqlite-dicts", "sqlite-arrow", "duckdb-arrow", "duckdb-dicts",
                             "postgres-arrow", "postgres-dicts"])
    ap.add_argument("--db", help="SQLite or DuckDB file")
    ap.add_argument("--url", help="PostgreSQL URL")
    ap.add_argument("--dataset", default="bench_dlt", help="dataset (schema) name")
    ap.add_argument("--workdir", required=True, help="pipelines_dir (keep between runs)")
    ap.add_argument("--table", default="events")
    a = ap.parse_args(argv)

    import dlt

    dest_kind, rows = a.variant.split("-")
    if dest_kind == "sqlite":
        destination = dlt.destinations.sqlalchemy(credentials=f"sqlite:///{os.path.abspath(a.db)}")
    elif dest_kind == "duckdb":
        destination = dlt.destinations.duckdb(credentials=os.path.abspath(a.db))
    else:
        # dlt insists on a password; a trust-auth server ignores whatever is sent.
        url = a.url
        from urllib.parse import urlsplit, urlunsplit
        parts = urlsplit(url)
        if parts.password is None and parts.username:
            netloc = parts.netloc.replace(f"{parts.username}@", f"{parts.username}:unused@", 1)
            url = urlunsplit(parts._replace(netloc=netloc))
        destination = dlt.destinations.postgres(credentials=url)

    if rows == "arrow":
        def gen(path):
            return arrow_batches(path, flatten=dest_kind == "postgres")
    else:
        gen = dict_batches
    counter = [0]

    @dlt.resource(name=a.table, primary_key="id", write_disposition="merge")
    def events(modified_at=dlt.sources.incremental("modified_at")):
        for b in gen(a.input):
            counter[0] += len(b) if rows == "dicts" else b.num_rows
            yield b

    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{a.variant.replace('-', '_')}",
        destination=destination,
        dataset_name=a.dataset,
        pipelines_dir=os.path.abspath(a.workdir),
    )
    info = pipeline.run(events())
    info.raise_on_failed_jobs()
    with pipeline.sql_client() as c:
        total = c.execute_sql(f"SELECT count(*) FROM {c.make_qualified_table_name(a.table)}")[0][0]
    print(json.dumps({"tool": f"dlt-{a.variant}", "records": counter[0],
                      "total_in_target": int(total)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

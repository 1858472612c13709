"""Benchmark ``hiwater verify`` against the naive full comparison (issue 23, docs/verify.md).

A PostgreSQL table of ``--rows`` rows (built in the database with generate_series) is loaded by
hiwater into each target (SQLite, DuckDB, PostgreSQL). Then, per target:

1. **equal**: ``hiwater.verify`` (time, rounds, bytes fetched) beside the naive method a user would
   write: ``SELECT key, cursor`` of both sides, whole, compared in Python;
2. **planted**: 1 missing, 10 stale and 1 extra row planted in the target, then both methods again
   (verify must name exactly those 12 keys).

    python bench/verify.py --rows 10000000 [--targets sqlite,duckdb,postgresql] [--pg URL] [--keep]
    python bench/verify.py --rows 10000000 --folder DIR --setup-only   # build and load, measure later
    python bench/verify.py --rows 10000000 --folder DIR --reuse        # measure what --setup-only built

Prints a Markdown table and writes ``bench/results/verify-<rows>[-<targets>][-equal].json``. The loads are setup, not
measured. The schema ``hw_bench_verify`` (and its ``_t`` twin for the PostgreSQL target) is dropped
at the end unless ``--keep`` (or ``--setup-only``). ``--reuse`` measures the tables ``--setup-only``
built and undoes its plantings afterwards, so it can run again. Each run records the machine's load
average beside its figures: the ratios are what counts on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time

import psycopg

import hiwater

SCHEMA = "hw_bench_verify"
BASE_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z


def build_source(admin, rows: int) -> None:
    admin.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
    admin.execute(f'CREATE SCHEMA "{SCHEMA}"')
    admin.execute(f'CREATE TABLE "{SCHEMA}".orders AS SELECT g AS id, \'n\' || g AS name, '
                  f"timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' AS modified_at "
                  f"FROM generate_series(1, {rows}) g")
    admin.execute(f'ALTER TABLE "{SCHEMA}".orders ADD PRIMARY KEY (id)')
    admin.execute(f'CREATE INDEX ON "{SCHEMA}".orders (modified_at)')
    admin.execute(f'ANALYZE "{SCHEMA}".orders')


def target_url(kind: str, pg: str, folder: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{folder}/target.db"
    if kind == "duckdb":
        return f"duckdb:///{folder}/target.duckdb"
    return f"{pg}?schema={SCHEMA}_t"


class TargetSQL:
    """Plants differences in, and reads naively from, one target."""

    def __init__(self, kind: str, url: str, pg: str):
        self.kind, self.url, self.pg = kind, url, pg

    def run(self, sql: str, fetch: bool = False):
        if self.kind == "sqlite":
            con = sqlite3.connect(self.url.split("sqlite:///", 1)[1])
            try:
                rows = con.execute(sql).fetchall() if fetch else con.execute(sql)
                con.commit()
                return rows
            finally:
                con.close()
        if self.kind == "duckdb":
            import duckdb
            con = duckdb.connect(self.url.split("duckdb:///", 1)[1])
            try:
                return con.execute(sql).fetchall() if fetch else con.execute(sql)
            finally:
                con.close()
        with psycopg.connect(self.pg, autocommit=True, options=f"-c search_path={SCHEMA}_t") as con:
            cur = con.execute(sql)
            return cur.fetchall() if fetch else None

    def plant(self, rows: int) -> dict:
        """1 missing, 10 stale, 1 extra: the keys planted."""
        missing = rows // 3
        stale = [rows // 7 + 1000 * i for i in range(10)]
        extra = rows + 10_000_000
        [self.saved] = self.run(f"SELECT id, name, CAST(modified_at AS TEXT), _hiwater_cursor, _hiwater_run "
                                f"FROM orders WHERE id = {missing}", fetch=True)
        self.run(f"DELETE FROM orders WHERE id = {missing}")
        self.run(f"UPDATE orders SET _hiwater_cursor = _hiwater_cursor - 1 WHERE id IN ({', '.join(map(str, stale))})")
        cursor = BASE_US + (rows // 2) * 1_000_000 + 1
        self.run(f"INSERT INTO orders (id, name, modified_at, _hiwater_cursor, _hiwater_run) "
                 f"VALUES ({extra}, 'extra', '2024-01-02T00:00:00Z', {cursor}, 1)")
        return {"missing": [missing], "stale": sorted(stale), "extra": [extra]}

    def unplant(self, planted: dict) -> None:
        """Undo :meth:`plant` (``--reuse`` measures the same tables again)."""
        k, name, modified, cursor, run = self.saved
        self.run(f"INSERT INTO orders (id, name, modified_at, _hiwater_cursor, _hiwater_run) "
                 f"VALUES ({k}, '{name}', '{modified}', {cursor}, {run})")
        self.run(f"UPDATE orders SET _hiwater_cursor = _hiwater_cursor + 1 "
                 f"WHERE id IN ({', '.join(map(str, planted['stale']))})")
        self.run(f"DELETE FROM orders WHERE id = {planted['extra'][0]}")


def naive(source_pg: str, tgt: TargetSQL) -> dict:
    """What a user writes: both sides' (key, cursor), whole, compared in memory."""
    t0 = time.perf_counter()
    with psycopg.connect(source_pg.split("?")[0], options=f"-c search_path={SCHEMA}") as con:
        with con.cursor(name="naive") as cur:
            cur.itersize = 100_000
            cur.execute("SELECT id, (extract(epoch FROM modified_at) * 1000000)::bigint FROM orders")
            src = dict(cur)
    tgt_rows = dict(tgt.run("SELECT id, _hiwater_cursor FROM orders", fetch=True))
    missing = [k for k in src if k not in tgt_rows]
    extra = [k for k in tgt_rows if k not in src]
    stale = [k for k, c in src.items() if k in tgt_rows and tgt_rows[k] < c]
    return {"seconds": round(time.perf_counter() - t0, 2), "bytes": 16 * (len(src) + len(tgt_rows)),
            "missing": len(missing), "extra": len(extra), "stale": len(stale)}


def measured_verify(url: str, pg_source: str) -> dict:
    t0 = time.perf_counter()
    [r] = hiwater.verify(["orders"], target=url, source_url=pg_source)
    seconds = round(time.perf_counter() - t0, 2)
    return {"seconds": seconds, "rounds": r["rounds"], "bytes": r["bytes_fetched"], "windows": r["windows"]["checked"],
            "differing_windows": r["windows"]["differing"],
            "named": {c: sorted(s["key"][0] for s in r["sample"][c]) for c in ("missing", "extra", "stale")},
            "counts": {c: r["keys"][c] for c in ("missing", "extra", "stale")}}


def main() -> None:
    global SCHEMA
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--targets", default="sqlite,duckdb,postgresql")
    ap.add_argument("--pg", default=os.environ.get("HIWATER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--schema", default=SCHEMA)
    ap.add_argument("--folder", help="where the SQLite and DuckDB targets live (default: a temporary folder)")
    ap.add_argument("--setup-only", action="store_true", help="build the source and load the targets, no measuring")
    ap.add_argument("--reuse", action="store_true", help="measure the source and targets --setup-only built")
    ap.add_argument("--equal-only", action="store_true", help="measure the equal case only (no planting)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    SCHEMA = args.schema
    if (args.reuse or args.setup_only) and not args.folder:
        ap.error("--setup-only and --reuse need --folder")
    admin = psycopg.connect(args.pg, autocommit=True)
    if not args.reuse:
        t0 = time.perf_counter()
        build_source(admin, args.rows)
        print(f"source: {args.rows:,} rows built in {time.perf_counter() - t0:.1f} s", flush=True)
    source = f"{args.pg}?schema={SCHEMA}"
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or tmp
        os.makedirs(folder, exist_ok=True)
        for kind in args.targets.split(","):
            url = target_url(kind, args.pg, folder)
            if not args.reuse:
                if kind == "postgresql":
                    admin.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}_t" CASCADE')
                t0 = time.perf_counter()
                hiwater.load(target=url, source_url=source, source_table="orders", cursor="modified_at",
                             now="2030-01-01T00:00:00Z")
                print(f"{kind}: loaded in {time.perf_counter() - t0:.1f} s", flush=True)
            if args.setup_only:
                continue
            tgt = TargetSQL(kind, url, args.pg)
            row = {"target": kind, "rows": args.rows, "load_average_before": os.getloadavg()}
            row["equal_verify"] = measured_verify(url, source)
            row["equal_naive"] = naive(source, tgt)
            if args.equal_only:
                print(json.dumps(row), flush=True)
                results.append(row)
                continue
            row["planted"] = tgt.plant(args.rows)
            row["planted_verify"] = measured_verify(url, source)
            row["planted_naive"] = naive(source, tgt)
            row["all_named"] = row["planted_verify"]["named"] == row["planted"]
            print(json.dumps(row), flush=True)
            results.append(row)
            if args.reuse:
                tgt.unplant(row["planted"])
            elif kind == "postgresql" and not args.keep:
                admin.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}_t" CASCADE')
    if args.setup_only:
        return
    if not args.keep and not args.reuse:
        admin.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    name = f"verify-{args.rows}" + ("" if args.targets == "sqlite,duckdb,postgresql" else
                                    "-" + args.targets.replace(",", "-")) + ("-equal" if args.equal_only else "")
    with open(os.path.join(os.path.dirname(__file__), "results", f"{name}.json"), "w") as f:
        json.dump({"machine": {"cores": os.cpu_count(), "load_average_at_end": os.getloadavg()},
                   "command": "python bench/verify.py " + " ".join(sys.argv[1:]), "results": results}, f, indent=2)
    print()
    print("| target | case | verify s | rounds | bytes (source + target) | naive s | naive bytes | ratio | named |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in results:
        for case in ("equal", "planted") if "planted" in r else ("equal",):
            v, n = r[f"{case}_verify"], r[f"{case}_naive"]
            named = "-" if case == "equal" else ("all 12" if r["all_named"] else f"NO: {v['named']}")
            print(f"| {r['target']} | {case} | {v['seconds']} | {v['rounds']} | {v['bytes']['source']:,} + "
                  f"{v['bytes']['target']:,} | {n['seconds']} | {n['bytes']:,} | "
                  f"{n['seconds'] / max(v['seconds'], 0.01):.1f}x | {named} |")


if __name__ == "__main__":
    main()

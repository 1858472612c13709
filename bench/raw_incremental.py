#!/usr/bin/env python3
"""The raw *incremental* limit: the least a Python program can do to load a re-export incrementally.

It keeps a watermark in a one-row table of its own, committed in the same transaction as the data:

1. read the stored watermark (the newest cursor text loaded so far; none on a first load);
2. read the export record by record (JSON Lines: orjson per line; CSV: the csv module; Parquet:
   pyarrow, converted to Python rows) and keep the records whose cursor text is >= the watermark;
3. upsert those with one ``executemany`` (SQLite), one Arrow-backed ``INSERT … ON CONFLICT``
   (DuckDB) or COPY into a temp table + one upsert (PostgreSQL), and store the new watermark.

No checks, no quarantine, no late records (a record updated with an older cursor than the
watermark is lost), no types beyond what the file gives. The cursor is compared as text, which
is right for a fixed-format naive ISO timestamp (both benchmark workloads) and nothing else.
This is a reference point, not a loader anyone should run.

Columns: ``--columns name:type,...`` with types int, real, text, json (a nested value stored as
its JSON text); the default is the synthetic events workload. ``--key`` may name several
columns.

Prints one JSON line: {"tool": "raw-incremental", "records": N, "kept": K, "total_in_target": M}.
"""
from __future__ import annotations

import argparse
import csv
import sys

import orjson

EVENTS_COLUMNS = "id:int,name:text,modified_at:text,amount:real,score:int,user:json"
SQLITE_TYPES = {"int": "INTEGER", "real": "REAL", "text": "TEXT", "json": "TEXT"}
DUCK_TYPES = {"int": "BIGINT", "real": "DOUBLE", "text": "VARCHAR", "json": "VARCHAR"}
PG_TYPES = {"int": "BIGINT", "real": "DOUBLE PRECISION", "text": "TEXT", "json": "JSONB"}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def parse_columns(spec: str) -> list:
    out = []
    for part in spec.split(","):
        name, _, typ = part.partition(":")
        out.append((name.strip(), (typ or "text").strip()))
    return out


def rows(path: str, fmt: str, cols: list, cursor: str, watermark):
    """(records read, kept rows as tuples, newest cursor text)."""
    names = [c for c, _ in cols]
    ci = names.index(cursor)
    kept = []
    n = 0
    top = watermark
    if fmt == "jsonl":
        loads, dumps = orjson.loads, orjson.dumps
        conv = [(c, t == "json") for c, t in cols]
        with open(path, "rb") as f:
            for line in f:
                r = loads(line)
                n += 1
                cur = r[cursor]
                if watermark is not None and cur < watermark:
                    continue
                if top is None or cur > top:
                    top = cur
                kept.append(tuple(
                    (None if (v := r.get(c)) is None else dumps(v).decode()) if js else r.get(c)
                    for c, js in conv))
    elif fmt == "csv":
        casts = []
        for _, t in cols:
            casts.append(int if t == "int" else float if t == "real" else None)
        with open(path, newline="", encoding="utf-8") as f:
            rd = csv.reader(f)
            header = next(rd)
            pos = [header.index(c) for c in names]
            for rec in rd:
                n += 1
                cur = rec[pos[ci]]
                if watermark is not None and cur < watermark:
                    continue
                if top is None or cur > top:
                    top = cur
                vals = []
                for p, cast in zip(pos, casts):
                    v = rec[p]
                    vals.append(None if v == "" else cast(v) if cast else v)
                kept.append(tuple(vals))
    elif fmt == "parquet":
        import pyarrow.parquet as pq
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(columns=names, batch_size=65536):
            n += batch.num_rows
            lists = [batch.column(c).to_pylist() for c in names]
            curs = lists[ci]
            for i in range(batch.num_rows):
                cur = curs[i]
                if watermark is not None and cur < watermark:
                    continue
                if top is None or cur > top:
                    top = cur
                kept.append(tuple(col[i] for col in lists))
    else:
        raise SystemExit(f"unknown format {fmt}")
    return n, kept, top


def _upsert_sql(q, cols, key, cursor, ph):
    names = [c for c, _ in cols]
    rest = [c for c in names if c not in key]
    return (f"INSERT INTO {q} ({', '.join(map(_q, names))}) VALUES ({', '.join([ph] * len(names))}) "
            f"ON CONFLICT ({', '.join(map(_q, key))}) DO UPDATE SET "
            + ", ".join(f"{_q(c)}=excluded.{_q(c)}" for c in rest)
            + f" WHERE excluded.{_q(cursor)} >= {q}.{_q(cursor)}")


def load_sqlite(path, fmt, db, table, cols, key, cursor):
    import sqlite3

    q = _q(table)
    con = sqlite3.connect(db, isolation_level=None)
    defs = ", ".join(f"{_q(c)} {SQLITE_TYPES[t]}" for c, t in cols)
    con.execute(f"CREATE TABLE IF NOT EXISTS {q} ({defs}, PRIMARY KEY ({', '.join(map(_q, key))}))")
    con.execute("CREATE TABLE IF NOT EXISTS _raw_watermark (t TEXT PRIMARY KEY, wm TEXT)")
    r = con.execute("SELECT wm FROM _raw_watermark WHERE t=?", (table,)).fetchone()
    wm = r[0] if r else None
    n, kept, top = rows(path, fmt, cols, cursor, wm)
    con.execute("BEGIN")
    con.executemany(_upsert_sql(q, cols, key, cursor, "?"), kept)
    con.execute("INSERT OR REPLACE INTO _raw_watermark VALUES (?, ?)", (table, top))
    con.execute("COMMIT")
    total = con.execute(f"SELECT count(*) FROM {q}").fetchone()[0]
    con.close()
    return {"records": n, "kept": len(kept), "total_in_target": total}


def load_duckdb(path, fmt, url, table, cols, key, cursor):
    import duckdb
    import pyarrow as pa

    q = _q(table)
    con = duckdb.connect(url[len("duckdb:///"):])
    defs = ", ".join(f"{_q(c)} {DUCK_TYPES[t]}" for c, t in cols)
    con.execute(f"CREATE TABLE IF NOT EXISTS {q} ({defs}, PRIMARY KEY ({', '.join(map(_q, key))}))")
    con.execute("CREATE TABLE IF NOT EXISTS _raw_watermark (t VARCHAR PRIMARY KEY, wm VARCHAR)")
    r = con.execute("SELECT wm FROM _raw_watermark WHERE t=?", [table]).fetchone()
    wm = r[0] if r else None
    n, kept, top = rows(path, fmt, cols, cursor, wm)
    pat = {"int": pa.int64(), "real": pa.float64(), "text": pa.string(), "json": pa.string()}
    arrays = [pa.array([k[i] for k in kept], pat[t]) for i, (_, t) in enumerate(cols)]
    staged = pa.Table.from_arrays(arrays, names=[c for c, _ in cols])  # noqa: F841 (DuckDB scans it)
    names = [c for c, _ in cols]
    rest = [c for c in names if c not in key]
    con.execute("BEGIN")
    con.execute(f"INSERT INTO {q} SELECT {', '.join(map(_q, names))} FROM staged "
                f"ON CONFLICT ({', '.join(map(_q, key))}) DO UPDATE SET "
                + ", ".join(f"{_q(c)}=excluded.{_q(c)}" for c in rest)
                + f" WHERE excluded.{_q(cursor)} >= {q}.{_q(cursor)}")
    con.execute("INSERT OR REPLACE INTO _raw_watermark VALUES (?, ?)", [table, top])
    con.execute("COMMIT")
    total = con.execute(f"SELECT count(*) FROM {q}").fetchone()[0]
    con.close()
    return {"records": n, "kept": len(kept), "total_in_target": total}


def load_postgres(path, fmt, url, table, schema, cols, key, cursor):
    import psycopg
    from psycopg import sql as S

    t = S.Identifier(schema, table)
    names = [c for c, _ in cols]
    rest = [c for c in names if c not in key]
    with psycopg.connect(url) as con:
        con.execute(S.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(S.Identifier(schema)))
        defs = ", ".join(f"{_q(c)} {PG_TYPES[ty]}" for c, ty in cols)
        con.execute(S.SQL(f"CREATE TABLE IF NOT EXISTS {{}} ({defs}, PRIMARY KEY "
                          f"({', '.join(map(_q, key))}))").format(t))
        wt = S.Identifier(schema, "_raw_watermark")
        con.execute(S.SQL("CREATE TABLE IF NOT EXISTS {} (t TEXT PRIMARY KEY, wm TEXT)").format(wt))
        r = con.execute(S.SQL("SELECT wm FROM {} WHERE t=%s").format(wt), (table,)).fetchone()
        wm = r[0] if r else None
        n, kept, top = rows(path, fmt, cols, cursor, wm)
        con.execute(f"CREATE TEMP TABLE _raw_in ({', '.join(f'{_q(c)} {PG_TYPES[ty]}' for c, ty in cols)}) "
                    "ON COMMIT DROP")
        with con.cursor().copy("COPY _raw_in FROM STDIN") as cp:
            for row in kept:
                cp.write_row(row)
        con.execute(S.SQL(
            f"INSERT INTO {{t}} SELECT * FROM _raw_in ON CONFLICT ({', '.join(map(_q, key))}) DO UPDATE SET "
            + ", ".join(f"{_q(c)}=excluded.{_q(c)}" for c in rest)
            + f" WHERE excluded.{_q(cursor)} >= {{t}}.{_q(cursor)}").format(t=t))
        con.execute(S.SQL("INSERT INTO {} VALUES (%s, %s) ON CONFLICT (t) DO UPDATE SET wm=excluded.wm")
                    .format(wt), (table, top))
        total = con.execute(S.SQL("SELECT count(*) FROM {}").format(t)).fetchone()[0]
    return {"records": n, "kept": len(kept), "total_in_target": total}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="raw incremental load of a JSON Lines, CSV or Parquet file")
    ap.add_argument("--input", required=True)
    ap.add_argument("--format", default=None, help="jsonl, csv or parquet (default: by extension)")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--db", help="SQLite file")
    g.add_argument("--target", help="duckdb:///FILE or postgresql://...")
    ap.add_argument("--table", default="events")
    ap.add_argument("--schema", default="bench_raw_inc", help="PostgreSQL schema")
    ap.add_argument("--columns", default=EVENTS_COLUMNS)
    ap.add_argument("--key", default="id")
    ap.add_argument("--cursor", default="modified_at")
    a = ap.parse_args(argv)
    fmt = a.format or a.input.rsplit(".", 1)[-1]
    cols = parse_columns(a.columns)
    key = [k.strip() for k in a.key.split(",")]
    if a.db:
        out = load_sqlite(a.input, fmt, a.db, a.table, cols, key, a.cursor)
    elif a.target.startswith("duckdb:///"):
        out = load_duckdb(a.input, fmt, a.target, a.table, cols, key, a.cursor)
    elif a.target.startswith(("postgresql://", "postgres://")):
        out = load_postgres(a.input, fmt, a.target, a.table, a.schema, cols, key, a.cursor)
    else:
        ap.error(f"unsupported target {a.target!r}")
    print(orjson.dumps({"tool": "raw-incremental", **out}).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The raw limit: the least a Python program can do to upsert a JSON Lines export.

No state, no checks, no quarantine, no summary worth the name: parse every line with orjson,
build a tuple, and upsert everything in ONE transaction with executemany, letting the database
keep the newer version of each row:

    INSERT INTO events (...) VALUES (...)
    ON CONFLICT(id) DO UPDATE SET ... WHERE excluded.modified_at > events.modified_at

The cursor is compared as text, which is right for this benchmark's fixed-format naive ISO
timestamps and nothing else. This is a reference point for "what the database can take", not a
loader anyone should run.

Targets: ``--db FILE`` (SQLite via the standard sqlite3 module; the reference of issue 4);
``--target duckdb:///FILE`` (DuckDB's own read_json + INSERT ... ON CONFLICT, the database's
native limit); ``--target postgresql://...`` (psycopg COPY into a temp table + one upsert).

Prints one JSON line: {"tool": "raw", "records": N, "total_in_target": M}.
"""
from __future__ import annotations

import argparse
import sys

import orjson

COLS = ("id", "name", "modified_at", "amount", "score", "user")


def _rows(path):
    loads, dumps = orjson.loads, orjson.dumps
    with open(path, "rb") as f:
        for line in f:
            r = loads(line)
            u = r.get("user")
            yield (r["id"], r.get("name"), r["modified_at"], r.get("amount"), r.get("score"),
                   None if u is None else dumps(u).decode())


def load_sqlite(path: str, db: str, table: str) -> dict:
    import sqlite3

    q = '"' + table.replace('"', '""') + '"'
    con = sqlite3.connect(db, isolation_level=None)
    con.execute(f"CREATE TABLE IF NOT EXISTS {q} (id INTEGER PRIMARY KEY, name TEXT, "
                "modified_at TEXT, amount REAL, score INTEGER, user TEXT)")
    sql = (f"INSERT INTO {q} (id, name, modified_at, amount, score, user) VALUES (?,?,?,?,?,?) "
           "ON CONFLICT(id) DO UPDATE SET name=excluded.name, modified_at=excluded.modified_at, "
           "amount=excluded.amount, score=excluded.score, user=excluded.user "
           f"WHERE excluded.modified_at > {q}.modified_at")
    counter = [0]

    def counted():
        for r in _rows(path):
            counter[0] += 1
            yield r

    con.execute("BEGIN")
    con.executemany(sql, counted())
    con.execute("COMMIT")
    total = con.execute(f"SELECT count(*) FROM {q}").fetchone()[0]
    con.close()
    return {"records": counter[0], "total_in_target": total}


def load_duckdb(path: str, url: str, table: str) -> dict:
    import duckdb

    file = url[len("duckdb:///"):]
    q = '"' + table.replace('"', '""') + '"'
    con = duckdb.connect(file)
    con.execute(f"CREATE TABLE IF NOT EXISTS {q} (id BIGINT PRIMARY KEY, name VARCHAR, "
                "modified_at TIMESTAMP, amount DOUBLE, score BIGINT, "
                "\"user\" STRUCT(name VARCHAR, tier VARCHAR))")
    con.execute("BEGIN")
    records = con.execute(
        "SELECT count(*) FROM read_json(?, format='newline_delimited')", [path]).fetchone()[0]
    con.execute(
        f"INSERT INTO {q} SELECT id, name, modified_at, amount, score, \"user\" "
        "FROM read_json(?, format='newline_delimited', columns={id: 'BIGINT', name: 'VARCHAR', "
        "modified_at: 'TIMESTAMP', amount: 'DOUBLE', score: 'BIGINT', "
        "\"user\": 'STRUCT(name VARCHAR, tier VARCHAR)'}) "
        "ON CONFLICT (id) DO UPDATE SET name=excluded.name, modified_at=excluded.modified_at, "
        "amount=excluded.amount, score=excluded.score, \"user\"=excluded.\"user\" "
        f"WHERE excluded.modified_at > {q}.modified_at", [path])
    con.execute("COMMIT")
    total = con.execute(f"SELECT count(*) FROM {q}").fetchone()[0]
    con.close()
    return {"records": records, "total_in_target": total}


def load_postgres(path: str, url: str, table: str, schema: str) -> dict:
    import psycopg
    from psycopg import sql as S

    t = S.Identifier(schema, table)
    with psycopg.connect(url) as con:
        con.execute(S.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(S.Identifier(schema)))
        con.execute(S.SQL("CREATE TABLE IF NOT EXISTS {} (id BIGINT PRIMARY KEY, name TEXT, "
                          "modified_at TIMESTAMP, amount DOUBLE PRECISION, score BIGINT, "
                          "\"user\" JSONB)").format(t))
        con.execute("CREATE TEMP TABLE _raw_in (id BIGINT, name TEXT, modified_at TIMESTAMP, "
                    "amount DOUBLE PRECISION, score BIGINT, \"user\" JSONB) ON COMMIT DROP")
        n = 0
        with con.cursor().copy("COPY _raw_in FROM STDIN") as cp:
            for r in _rows(path):
                cp.write_row(r)
                n += 1
        con.execute(S.SQL(
            "INSERT INTO {t} SELECT * FROM _raw_in ON CONFLICT (id) DO UPDATE SET "
            "name=excluded.name, modified_at=excluded.modified_at, amount=excluded.amount, "
            "score=excluded.score, \"user\"=excluded.\"user\" "
            "WHERE excluded.modified_at > {t}.modified_at").format(t=t))
        total = con.execute(S.SQL("SELECT count(*) FROM {}").format(t)).fetchone()[0]
    return {"records": n, "total_in_target": total}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="raw-limit upsert of a JSON Lines file")
    ap.add_argument("--input", required=True)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--db", help="SQLite file")
    g.add_argument("--target", help="duckdb:///FILE or postgresql://...")
    ap.add_argument("--table", default="events")
    ap.add_argument("--schema", default="bench_raw", help="PostgreSQL schema")
    a = ap.parse_args(argv)
    if a.db:
        out = load_sqlite(a.input, a.db, a.table)
    elif a.target.startswith("duckdb:///"):
        out = load_duckdb(a.input, a.target, a.table)
    elif a.target.startswith(("postgresql://", "postgres://")):
        out = load_postgres(a.input, a.target, a.table, a.schema)
    else:
        ap.error(f"unsupported target {a.target!r}")
    print(orjson.dumps({"tool": "raw", **out}).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())

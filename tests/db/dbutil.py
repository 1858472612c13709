"""Helpers for the database suites: server URLs, fresh names, reading a target back."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import uuid

import pytest

PG_URL = os.environ.get("HIWATER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("HIWATER_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")
# Every target, for the suites that run once per target (one list: a new target is added here).
TARGETS = ["sqlite", "postgresql", "duckdb", "delta"]


def fresh_name() -> str:
    return "hwt_" + uuid.uuid4().hex[:12]


def pg_connect(url: str = PG_URL, **kw):
    import psycopg
    return psycopg.connect(url, autocommit=True, connect_timeout=5, **kw)


def mysql_connect(url: str = MYSQL_URL, **kw):
    from urllib.parse import urlsplit

    import pymysql
    p = urlsplit(url)
    args = dict(host=p.hostname, port=p.port or 3306, user=p.username or "root", password=p.password or "",
                database=p.path.lstrip("/") or None, autocommit=True, connect_timeout=5, charset="utf8mb4")
    args.update(kw)
    return pymysql.connect(**args)


def server_or_skip(name: str, url: str, connect):
    """Connect, or skip with the reason (fail instead under CI=true)."""
    try:
        return connect(url)
    except Exception as exc:  # noqa: BLE001 - any failure to answer counts
        reason = f"{name} at {url} does not answer: {' '.join(str(exc).split())[:200]}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: a missing server is a failure, not a skip)")
        pytest.skip(reason)


def _norm(v):
    """Values read back from any target in one comparable form."""
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.timezone.utc)
        return v.replace(tzinfo=None).isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    return v


def _sqlite_ts(v):
    """SQLite keeps the cursor text as given; read it as a UTC instant like the other targets."""
    if isinstance(v, str) and len(v) >= 19 and v[4] == "-" and v[10] in "T ":
        try:
            d = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            return v
        return _norm(d)
    return v


def read_table(url: str, table: str, *, hidden: bool = False) -> list[dict]:
    """The target table's rows (ordered by ``id`` if there is one, else the first column), values normalised."""
    kind = url.split(":", 1)[0]
    if kind == "sqlite":
        con = sqlite3.connect(url.split("sqlite:///", 1)[1])
        try:
            cur = con.execute(f'SELECT * FROM "{table}" ORDER BY 1')
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, (_sqlite_ts(v) for v in r))) for r in cur.fetchall()]
        finally:
            con.close()
    elif kind.startswith("delta"):
        # Delta keeps the cursor text as sent (like SQLite): read it as a UTC instant.
        table = table.replace('""', '"')  # (the others paste the name into SQL quotes)
        rows = [{k: _sqlite_ts(v) for k, v in r.items()} for r in delta_frame(url, table).to_dicts()]
        if rows:
            first = next(iter(rows[0]))
            rows.sort(key=lambda r: (r[first] is None, str(type(r[first])), r[first]))
    elif kind == "duckdb":
        import duckdb
        con = duckdb.connect(url.split("duckdb:///", 1)[1])
        try:
            cur = con.execute(f'SELECT * FROM "{table}" ORDER BY 1')
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, (_norm(v) for v in r))) for r in cur.fetchall()]
        finally:
            con.close()
    else:
        base, schema = url.split("?schema=")
        con = pg_connect(base)
        try:
            cur = con.execute(f'SELECT * FROM "{schema}"."{table}" ORDER BY 1')
            names = [d.name for d in cur.description]
            rows = [dict(zip(names, (_norm(v) for v in r))) for r in cur.fetchall()]
        finally:
            con.close()
    if rows and "id" in rows[0]:
        rows.sort(key=lambda r: (r["id"] is None, str(type(r["id"])), r["id"]))
    if not hidden:
        rows = [{k: v for k, v in r.items() if not k.startswith("_hiwater_")} for r in rows]
    return rows


def delta_frame(url: str, table: str):
    """A Delta table read by another engine (polars), never through hiwater."""
    import os

    import polars as pl
    root = url.split("://", 1)[1]
    from hiwater.targets.delta import folder_name
    path = f"{root.rstrip('/')}/{folder_name(table)}"
    if url.startswith("delta+s3://"):
        from deltalake import DeltaTable
        opts = {k: os.environ[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
                if k in os.environ} | {"AWS_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
                                       "AWS_ALLOW_HTTP": "true"}
        if not DeltaTable.is_deltatable("s3://" + path, storage_options=opts):
            return pl.DataFrame()
        return pl.read_delta("s3://" + path, storage_options=opts)
    if not os.path.isdir(os.path.join(path, "_delta_log")):
        return pl.DataFrame()
    return pl.read_delta(path)


def column_types(url: str, table: str) -> dict:
    """``{column: declared SQL type}`` as the target database reports it."""
    kind = url.split(":", 1)[0]
    if kind.startswith("delta"):
        return {name: str(t) for name, t in delta_frame(url, table).schema.items()}
    if kind == "sqlite":
        con = sqlite3.connect(url.split("sqlite:///", 1)[1])
        try:
            return {r[1]: r[2] for r in con.execute(f'PRAGMA table_info("{table}")')}
        finally:
            con.close()
    if kind == "duckdb":
        import duckdb
        con = duckdb.connect(url.split("duckdb:///", 1)[1])
        try:
            return dict(con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ?",
                                    [table]).fetchall())
        finally:
            con.close()
    base, schema = url.split("?schema=")
    con = pg_connect(base)
    try:
        return dict(con.execute(
            "SELECT column_name, CASE WHEN data_type = 'USER-DEFINED' THEN udt_name ELSE data_type END"
            " FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
            (schema, table)).fetchall())
    finally:
        con.close()

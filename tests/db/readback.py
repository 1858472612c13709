"""The user's view of a load, for the fidelity and differential suites: write the same
records as JSON, JSON Lines, CSV and Parquet the way an export tool would, run the CLI, and
read the target table back with the database's own driver (sqlite3 / psycopg / duckdb),
never through hiwater.

Values come back raw (what the driver gives); the few normalisations a comparison needs
(SQLite's 0/1 booleans, a cursor read as an instant) are separate, named functions.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import math
import sqlite3
from decimal import Decimal
from pathlib import Path

from conftest import Result  # the suite's one CLI result type

from .dbutil import column_types, pg_connect

FORMATS = ["json", "jsonl", "csv", "parquet"]


# --- running the CLI outside a test's capsys (module-scoped fixtures) -----------------------



def cli(*args) -> Result:
    """``hiwater ARGS`` in-process, its stdout and stderr captured here."""
    from hiwater.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return Result(code, out.getvalue(), err.getvalue())


# --- writing the same records in four formats -------------------------------------------------

def csv_cell(v) -> str:
    """How an export writes one value into a CSV cell: null is an empty cell, nested values
    their JSON text, booleans JSON's spelling, floats their shortest round-trip text."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _columns(records) -> list[str]:
    cols: dict[str, None] = {}
    for r in records:
        cols.update(dict.fromkeys(r))
    return list(cols)


def _arrow_column(values, kind):
    """One Parquet column: the Arrow type that carries the values exactly; nested values as a
    struct/list when one Arrow type holds them all unchanged, else as their JSON text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    simple = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "str": pa.string(),
              "cursor": pa.string()}
    if kind in simple:
        return pa.array(values, type=simple[kind])
    if kind == "json":
        try:
            arr = pa.array(values)
            buf = io.BytesIO()
            pq.write_table(pa.table({"c": arr}), buf)
            back = pq.read_table(io.BytesIO(buf.getvalue())).column("c").to_pylist()
            if all(strict_eq(a, b) for a, b in zip(back, values)) and not pa.types.is_null(arr.type):
                return arr
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            pass
        return pa.array([None if v is None else json.dumps(v, ensure_ascii=False) for v in values],
                        type=pa.string())
    return pa.array(values)


def export(records, fmt: str, path: Path, kinds: dict | None = None) -> Path:
    """Write ``records`` to ``path`` as ``fmt``. ``kinds`` (column -> int/float/bool/str/json/
    cursor) gives Parquet its column types; a column left out is inferred by pyarrow."""
    path = Path(path)
    cols = _columns(records)
    if fmt == "json":  # a pretty, ASCII-escaped export (emoji as surrogate-pair escapes)
        path.write_text(json.dumps(records, indent=1, ensure_ascii=True), encoding="utf-8")
    elif fmt == "jsonl":  # compact UTF-8, one record a line
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    elif fmt == "csv":
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for r in records:
                w.writerow([csv_cell(r.get(c)) for c in cols])
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        kinds = kinds or {}
        arrays = {c: _arrow_column([r.get(c) for r in records], kinds.get(c)) for c in cols}
        pq.write_table(pa.table(arrays), path)
    else:
        raise ValueError(fmt)
    return path


# --- reading a target back ------------------------------------------------------------------

def kind_of(url: str) -> str:
    return url.split(":", 1)[0]


@contextlib.contextmanager
def connect(url: str):
    """The target's own driver, connected to the test's database / schema."""
    kind = kind_of(url)
    if kind == "sqlite":
        con = sqlite3.connect(url.split("sqlite:///", 1)[1])
    elif kind == "duckdb":
        import duckdb
        con = duckdb.connect(url.split("duckdb:///", 1)[1])
    elif kind.startswith("delta"):
        con = delta_in_duckdb(url)
    else:
        base, schema = url.split("?schema=")
        con = pg_connect(base, options=f"-c search_path={schema}")
    try:
        yield con
    finally:
        con.close()


def delta_in_duckdb(url: str):
    """DuckDB (in memory) with every Delta table of the folder as a view: another engine's view
    of what hiwater wrote (through delta-rs's Arrow dataset; DuckDB's own delta extension
    needs a download)."""
    import os

    import duckdb
    from deltalake import DeltaTable

    from hiwater.targets.delta import table_name
    con = duckdb.connect()
    if url.startswith("delta+s3://"):  # object storage: the same tables through the S3 API (env settings)
        import s3fs
        root = "s3://" + url.split("://", 1)[1].rstrip("/")
        opts = {k: os.environ[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
                if k in os.environ} | {"AWS_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
                                       "AWS_ALLOW_HTTP": "true"}
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": os.environ.get("AWS_ENDPOINT_URL")})
        for path in sorted(fs.ls(root, refresh=True)) if fs.exists(root) else []:
            name = path.rstrip("/").rsplit("/", 1)[-1]
            uri = f"{root}/{name}"
            if not name.startswith("_hiwater_") and DeltaTable.is_deltatable(uri, storage_options=opts):
                con.register(table_name(name), DeltaTable(uri, storage_options=opts).to_pyarrow_table())
        return con
    root = url.split("://", 1)[1]
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        path = os.path.join(root, name)
        if not name.startswith("_hiwater_") and DeltaTable.is_deltatable(path):
            con.register(table_name(name), DeltaTable(path).to_pyarrow_dataset())
    return con


def query(url: str, sql: str, params=()) -> list[tuple]:
    with connect(url) as con:
        if kind_of(url) == "postgresql":
            sql = sql.replace("?", "%s")
        return [tuple(r) for r in con.execute(sql, list(params)).fetchall()]


def table_exists(url: str, table: str) -> bool:
    return bool(column_types(url, table))


def fetch(url: str, table: str) -> tuple[dict, list[dict]]:
    """``(declared types, rows)``: every user column of ``table`` as the driver returns it
    (hiwater's own ``_hiwater_*`` columns left out). No table yet: ``({}, [])``."""
    types = {c: t for c, t in column_types(url, table).items() if not c.lower().startswith("_hiwater_")}
    if not types:
        return {}, []
    cols = list(types)
    sel = ", ".join('"' + c.replace('"', '""') + '"' for c in cols)
    rows = [dict(zip(cols, r)) for r in query(url, f'SELECT {sel} FROM "{table}"')]
    return types, rows


def sqlite_bool(value, declared: str | None):
    """SQLite has no boolean: a column declared BOOLEAN hands back 0/1."""
    if declared and "BOOL" in declared.upper() and type(value) is int and value in (0, 1):
        return bool(value)
    return value


def instant(v):
    """A cursor as read back (SQLite: the text sent; the others: a timestamp or date) as one
    naive-UTC ISO string."""
    if isinstance(v, str):
        try:
            v = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            return v
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return v.isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    return v


def strict_eq(a, b) -> bool:
    """Equality that also tells ``True`` from ``1`` and ``1`` from ``1.0`` (Python's ``==``
    does not), through nested dicts and lists."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(strict_eq(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(strict_eq(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b


def is_number(v) -> bool:
    return isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)

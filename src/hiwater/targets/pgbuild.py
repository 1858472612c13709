"""Pure builders of the PostgreSQL target (:mod:`.postgres`), no I/O and no driver: identifiers,
the type maps, hiwater's own URL options, the advisory lock's key, the guarded upsert of a
staged batch, and the texts COPY and array parameters carry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import orjson

from .. import values as V
from ..errors import UsageError
from ..types import ANY, BINARY, BOOLEAN, DECIMAL, INTEGER, REAL, TEXT
from .base import CURSOR_COL, RUN_COL
from .sql import guard_sql

SQL_TYPES = {INTEGER: "bigint", REAL: "double precision", TEXT: "text", BOOLEAN: "boolean", BINARY: "bytea",
             ANY: "jsonb"}
# A nanosecond cursor is kept as its text: timestamptz holds microseconds only (the hidden
# _hiwater_cursor holds its integer nanoseconds).
CURSOR_TYPES = {V.TIMESTAMP: "timestamp with time zone", V.DATE: "date", V.INT: "bigint", V.TIMESTAMP_NS: "text"}
NAMEDATALEN = 63
OWN_PARAMS = ("schema", "state_schema", "read_timeout")


def quote(name: str) -> str:
    """Quote an identifier for PostgreSQL. Every schema, table and column name goes through here."""
    if "\x00" in name:
        raise UsageError("an identifier cannot contain a NUL character")
    if len(name.encode()) > NAMEDATALEN:
        raise UsageError(f"the name {name[:20]!r}… is longer than PostgreSQL's {NAMEDATALEN}-byte limit",
                         hint="choose a shorter table or column name")
    return '"' + name.replace('"', '""') + '"'


def logical(sqltype: str) -> str:
    """The logical type of a PostgreSQL column type (as ``format_type`` prints it)."""
    t = sqltype.lower()
    if t in ("bigint", "integer", "smallint"):
        return INTEGER
    if t.startswith("numeric"):
        return DECIMAL
    if t in ("double precision", "real"):
        return REAL
    if t == "boolean":
        return BOOLEAN
    if t in ("jsonb", "json"):
        return ANY
    if t == "bytea":
        return BINARY
    return TEXT  # text, varchar, and the cursor's timestamptz/date (the cursor parser judges those)


def split_url(url: str) -> tuple[str, dict]:
    """``(libpq URL, hiwater options)``: hiwater's own query parameters taken out."""
    parts = urlsplit(url)
    ours, rest = {}, []
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        (ours.__setitem__(k, v) if k in OWN_PARAMS else rest.append((k, v)))
    libpq = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(rest), parts.fragment))
    return libpq, ours


def lock_key(state_schema: str, stream: str) -> int:
    """The advisory lock's 64-bit key for one stream of one state schema."""
    digest = hashlib.blake2b(f"hiwater\x00{state_schema}\x00{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def upsert_sql(table: str, columns: list, key: tuple, exprs: dict | None = None,
               stage: str = "_hiwater_stage", refresh: bool = False) -> str:
    """The upsert of a staged batch: newer cursors replace, older never do (pure builder).

    ``table`` is already qualified and quoted; ``exprs`` maps a column to the SQL
    that computes it from the stage (``s``) instead of copying it.
    """
    exprs = exprs or {}
    cols = list(columns) + [CURSOR_COL, RUN_COL]
    select = ", ".join(exprs.get(c, f"s.{quote(c)}") for c in cols)
    sets = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in cols if c not in key)
    guard = guard_sql("EXCLUDED.", "t.", [c for c in columns if c not in key] if refresh else None)
    return (f"INSERT INTO {table} AS t ({', '.join(quote(c) for c in cols)})"
            f" SELECT {select} FROM pg_temp.{stage} AS s"
            f" ON CONFLICT ({', '.join(quote(k) for k in key)}) DO UPDATE SET {sets} WHERE {guard}")


def cursor_expr(sqltype: str) -> str | None:
    """SQL computing a native cursor column from the staged ``_hiwater_cursor`` (exact, no time zone)."""
    c = f"s.{quote(CURSOR_COL)}"
    if sqltype == "timestamp with time zone":
        return f"(timestamptz 'epoch' + {c} * interval '1 microsecond')"
    if sqltype == "date":
        return f"(date '1970-01-01' + ({c} / {V.US_PER_DAY})::integer)"
    return None


def array_literal(values: list, sqltype: str) -> str:
    """A PostgreSQL array literal (``{1,2}`` / ``{"a","b"}``): one text parameter, cheap to send."""
    if sqltype in ("bigint", "integer", "smallint"):
        return "{" + ",".join(map(str, np.asarray(values, dtype=np.int64).tolist())) + "}"
    return "{" + ",".join('"' + as_text(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for v in values) + "}"


def text_key(v) -> str:
    return v if isinstance(v, str) else str(v)


def copy_values(values, sqltype: str) -> list:
    """A column's Python values made acceptable to COPY for a column of ``sqltype``."""
    if sqltype in ("bigint", "integer", "smallint"):
        return [int(v) if isinstance(v, float) else v for v in values]
    if sqltype in ("jsonb", "json"):
        return [None if v is None else orjson.dumps(v, default=str).decode() for v in values]
    if sqltype == "text":
        return [v if v is None or isinstance(v, str) else as_text(v) for v in values]
    return list(values)


def as_text(v) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    if isinstance(v, (dict, list)):
        return orjson.dumps(v).decode()
    return str(v)

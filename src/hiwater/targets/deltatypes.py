"""Pure helpers of the Delta target: types, Arrow tables, names, error text, storage settings.

Nothing here opens a table, so :mod:`.delta` (the target and its transaction) and
:mod:`.deltalog` (the ledger) share them without importing each other.
"""

from __future__ import annotations

import os
import re
import secrets

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError, UsageError
from ..types import BOOLEAN, INTEGER, REAL, TEXT, logical_type

OP = "_hiwater_op"  # a staged row's operation: upsert, refresh or delete


def arrow_type(logical: str) -> pa.DataType:
    if logical == INTEGER:
        return pa.int64()
    if logical == REAL:
        return pa.float64()
    if logical == BOOLEAN:
        return pa.bool_()
    m = re.fullmatch(r"decimal\((\d+),(\d+)\)", logical)
    if m:
        return pa.decimal128(int(m.group(1)), int(m.group(2)))
    return pa.string()  # text, any, and an unconstrained decimal (its own digits, as on SQLite)


def logical(t: pa.DataType) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return TEXT
    return logical_type(t)


def delta_type(t: pa.DataType) -> str:
    if pa.types.is_integer(t):
        return "long"
    if pa.types.is_floating(t):
        return "double"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_decimal(t):
        return f"decimal({t.precision},{t.scale})"
    return "string"


def check_column(name: str) -> None:
    if "`" in name:
        raise UsageError(f"the field {name!r} holds a backquote, which a Delta merge cannot name",
                         hint="rename it in the source, or load into a SQL target")


def txn_id() -> int:
    return secrets.randbits(62) + 1


def app_id(stream: str) -> str:
    return f"hiwater:{stream}"


def col(name: str, alias: str) -> str:
    return f"{alias}.`{name}`"


def sql_text(s: str) -> str:
    return s.replace("'", "''")


def updates(src: pa.Table, skip: tuple) -> dict:
    return {f"`{c}`": col(c, "s") for c in src.column_names if c != OP and c not in skip}


def order(t: pa.Table, key: tuple) -> pa.Table:
    """Rows in key order, so each written file holds a narrow key range and a later merge
    rewrites only the files whose range its keys fall in."""
    if not key or t.num_rows < 2:
        return t
    return t.sort_by([(k, "ascending") for k in key])


def anti(left: pa.Table, right: pa.Table, key: tuple) -> pa.Table:
    """Rows of ``left`` whose key is not in ``right``."""
    if right.num_rows == 0 or left.num_rows == 0:
        return left
    right = right.select(list(key))
    if any(right.schema.field(k).type != left.schema.field(k).type for k in key):
        right = right.cast(pa.schema([left.schema.field(k) for k in key]), safe=False)
    return left.join(right, keys=list(key), join_type="left anti")


def fill(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """``rows`` with every column of ``schema`` (nulls where a batch did not have one), cast."""
    cols = [rows.column(f.name).cast(f.type) if f.name in rows.column_names else pa.nulls(rows.num_rows, f.type)
            for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)


def castable(got: pa.Table, want: pa.Table, key: tuple) -> bool:
    return any(got.schema.field(k).type != want.schema.field(k).type for k in key)


def row_count(dt) -> int:
    try:
        return int(dt.count())
    except Exception:  # noqa: BLE001 - older delta-rs: count by scanning
        return dt.to_pyarrow_dataset().count_rows()


def last_per_key(t: pa.Table, key: tuple) -> pa.Table:
    """The last row of each key of ``t`` (staged rows, in staging order): an upsert or a delete."""
    order = pa.array(np.arange(t.num_rows, dtype=np.int64))
    last = (t.select(list(key)).append_column("_seq", order)
            .group_by(list(key), use_threads=False).aggregate([("_seq", "max")]).column("_seq_max"))
    if len(last) == t.num_rows:
        return t
    return t.take(pa.array(np.sort(last.to_numpy()), pa.int64()))


def differing(data: pa.Table, held: pa.Table, key: tuple) -> pa.Table:
    """The rows of ``data`` whose content differs from the row ``held`` for their key (the user
    columns, as read): what a full load rewrites of its same-cursor rows."""
    want = data.append_column("_i", pa.array(np.arange(data.num_rows, dtype=np.int64)))
    other = [c for c in held.column_names if c not in key]
    renamed = held.rename_columns([c if c in key else f"_old_{c}" for c in held.column_names])
    j = want.select(list(key) + other + ["_i"]).join(renamed, keys=list(key), join_type="inner")
    diff = np.zeros(j.num_rows, dtype=bool)
    for c in other:
        a, b = j.column(c), j.column(f"_old_{c}")
        if a.type != b.type:
            try:
                a = a.cast(b.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                a, b = a.cast(pa.string()), b.cast(pa.string())
        eq = pc.fill_null(pc.equal(a, b), False)
        both_null = pc.and_(pc.is_null(a), pc.is_null(b))
        diff |= ~pc.or_(eq, both_null).to_numpy(zero_copy_only=False)
    idx = np.sort(j.column("_i").to_numpy()[diff])
    return data.take(pa.array(idx, pa.int64()))


def is_conflict(exc: BaseException) -> bool:
    """Did a Delta commit lose a race with another writer (rather than fail)?"""
    text = one_line(exc).lower()
    return ("CommitFailed" in type(exc).__name__ or "concurrent" in text or "conflict" in text
            or "already exists" in text or "metadata changed since last commit" in text)


def one_line(exc: BaseException) -> str:
    """delta-rs's error chain (one cause per line, with ANSI colours) as one plain line."""
    parts = [re.sub(r"\x1b\[[0-9;]*m|^[\s↳]+", "", line).strip() for line in str(exc).strip().splitlines()]
    text = ": ".join(p for p in parts if p) or type(exc).__name__
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        if os.environ.get(name):
            text = text.replace(os.environ[name], "***")
    return text


REFUSED = re.compile(r"InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|Forbidden|403|"
                     r"ExpiredToken|InvalidToken|credential", re.I)


def storage_options() -> dict:
    """S3 settings from the standard environment (keys, region, ``AWS_ENDPOINT_URL``)."""
    opts = {}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
                 "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP", "AWS_PROFILE"):
        if os.environ.get(name):
            opts[name] = os.environ[name]
    if "AWS_REGION" not in opts and "AWS_DEFAULT_REGION" in opts:
        opts["AWS_REGION"] = opts["AWS_DEFAULT_REGION"]
    if opts.get("AWS_ENDPOINT_URL", "").startswith("http://"):
        opts.setdefault("AWS_ALLOW_HTTP", "true")
    # A wrong endpoint or a store that does not answer fails in about half a minute, not the
    # three minutes of the object store's default retry budget.
    opts.setdefault("timeout", "20s")
    opts.setdefault("retry_timeout", "30s")
    return opts


def fsspec_options() -> dict:
    ep = os.environ.get("AWS_ENDPOINT_URL")
    return {"client_kwargs": {"endpoint_url": ep}} if ep else {}


def deltalake():
    try:
        import deltalake
    except ImportError:
        raise ConfigError("a Delta target needs the deltalake package, which is not installed",
                          hint="pip install 'hiwater[delta]'") from None
    return deltalake

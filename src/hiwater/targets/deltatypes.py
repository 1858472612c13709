"""Pure helpers of the Delta target: types, Arrow tables, names, error text, storage settings, a
bucketed stream's partition (and removing a table's folder).

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

from ..errors import ConfigError, TargetError, UsageError
from ..keyhash import parse_name
from ..types import BINARY, BOOLEAN, INTEGER, REAL, TEXT, is_binary, logical_type
from .base import CURSOR_COL, RUN_COL

OP = "_hiwater_op"  # a staged row's operation: upsert, refresh or delete
BUCKET_COL = "_hiwater_bucket"  # the partition column of a bucketed stream's shared table
# A data file is written at about this size, so a small merge rewrites a small file.
TARGET_FILE_SIZE = 32 * 1024 * 1024


def parse_url(url: str) -> tuple[str, int]:
    """``(root, data file size)`` of ``delta:///abs/path`` or ``delta+s3://bucket/prefix``,
    with the one option ``?file_size_mb=N``."""
    base, _, query = url.partition("?")
    file_size = TARGET_FILE_SIZE
    for part in filter(None, query.split("&")):
        name, _, value = part.partition("=")
        if name != "file_size_mb" or not value.isdigit() or int(value) < 1:
            raise ConfigError(f"--target {url}: unknown option {part!r}",
                              hint="the one option is ?file_size_mb=N (the size data files are written at)")
        file_size = int(value) * 1024 * 1024
    rest = base.split(":", 1)[1]
    if base.lower().startswith("delta+s3:"):
        return "s3:" + rest, file_size
    path = rest[2:] if rest.startswith("//") else rest
    if not path:
        raise ConfigError(f"--target {base}: give the folder, e.g. delta:///data/lake")
    return os.path.abspath(path), file_size


def arrow_type(logical: str) -> pa.DataType:
    if logical == INTEGER:
        return pa.int64()
    if logical == REAL:
        return pa.float64()
    if logical == BOOLEAN:
        return pa.bool_()
    if logical == BINARY:
        return pa.binary()
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
    if is_binary(t):
        return "binary"
    return "string"


def add_fields(dl, dt, fields: list) -> None:
    """Add ``fields`` (Arrow fields) to the Delta table ``dt`` as nullable columns."""
    if fields:
        dt.alter.add_columns([dl.schema.Field(f.name, dl.schema.PrimitiveType(delta_type(f.type)), nullable=True)
                              for f in fields])


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


_NEWER = f"{col(CURSOR_COL, 's')} > {col(CURSOR_COL, 't')}"
_SAME = f"{col(CURSOR_COL, 's')} = {col(CURSOR_COL, 't')}"
# A staged upsert replaces an older cursor only; a full load's refresh also the same cursor.
UPDATE_WHEN = f"(s.`{OP}` = 'upsert' AND {_NEWER}) OR (s.`{OP}` = 'refresh' AND ({_NEWER} OR {_SAME}))"


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


def merge_source(staged: pa.Table, key: tuple, current: pa.Schema, schema: pa.Schema | None,
                 bucket: int | None) -> tuple[pa.Table, str]:
    """The MERGE's source (every column of the table as this transaction leaves it, nulls where
    a batch lacked one, the op column last, in key order) and its ON condition (a bucket's rows
    only in its own partition, so buckets' commits do not conflict)."""
    full = current
    if schema is not None:
        full = pa.schema([schema.field(f.name) if f.name in schema.names else f for f in current]
                         + [f for f in schema if f.name not in current.names])
    src = order(staged, key)
    nullable = pa.schema([f.with_nullable(True) for f in full])
    src = fill(src.drop_columns([OP]), nullable).append_column(OP, src.column(OP))
    on = " AND ".join(f"{col(k, 't')} = {col(k, 's')}" for k in key)
    if bucket is not None and BUCKET_COL in full.names:
        i = src.column_names.index(BUCKET_COL)
        src = src.set_column(i, BUCKET_COL, pa.array([bucket] * src.num_rows, pa.int64()))
        on = f"t.`{BUCKET_COL}` = {bucket} AND " + on
    return src, on


def conform(data: pa.Table, schema: pa.Schema) -> pa.Table:
    """``data`` cast to the types its columns have in ``schema`` (others as they are)."""
    fields = [pa.field(name, schema.field(name).type if name in schema.names else data.schema.field(name).type)
              for name in data.column_names]
    return data.cast(pa.schema(fields))


def no_hits(want: pa.Table, key: tuple) -> pa.Table:
    """An empty answer to a lookup of ``want``: its key columns and ``_i``, then cursor and run."""
    return pa.table({**{k: want.column(k) for k in key}, "_i": want.column("_i")}).slice(0, 0).append_column(
        CURSOR_COL, pa.array([], pa.int64())).append_column(RUN_COL, pa.array([], pa.int64()))


def first_rows(staged: pa.Table, key: tuple, schema: pa.Schema | None) -> pa.Table:
    """A new table's first rows: the staged ones that are not deletes, in key order."""
    rows = order(staged.filter(pc.not_equal(staged.column(OP), "delete")).drop_columns([OP]), key)
    return rows if schema is None else fill(rows, schema)


def castable(got: pa.Table, want: pa.Table, key: tuple) -> bool:
    return any(got.schema.field(k).type != want.schema.field(k).type for k in key)


def row_count(dt) -> int:
    try:
        return int(dt.count())
    except Exception:  # noqa: BLE001 - older delta-rs: count by scanning
        return dt.to_pyarrow_dataset().count_rows()


class HeldKeys:
    """``key…, _hiwater_cursor, _hiwater_run`` of a table's rows, read once per run and matched
    against every batch in memory; a single integer key is indexed (sorted) for a binary search."""

    def __init__(self, held: pa.Table, key: tuple):
        self.held, self.key, self.index = held, key, None
        if len(key) == 1 and pa.types.is_integer(held.schema.field(key[0]).type):
            k = held.column(key[0]).to_numpy()
            order = np.argsort(k, kind="stable")
            self.index = (k[order], held.take(pa.array(order)))

    def rows_for(self, first: pa.Array) -> pa.Table:
        """The held rows whose first key column is among ``first`` (a batch's keys)."""
        held, k0 = self.held, self.key[0]
        if self.index is not None and pa.types.is_integer(first.type):
            keys, rows = self.index
            probe = np.asarray(pc.fill_null(first, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
            pos = np.minimum(np.searchsorted(keys, probe), max(len(keys) - 1, 0))
            hit = np.flatnonzero(keys[pos] == probe) if len(keys) else np.zeros(0, np.int64)
            return rows.take(pa.array(np.unique(pos[hit]), pa.int64()))
        return held.filter(pc.is_in(held.column(k0), value_set=pc.unique(first.cast(held.schema.field(k0).type))))


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


_REFUSED = re.compile(r"InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|Forbidden|403|"
                      r"ExpiredToken|InvalidToken|credential", re.I)


def storage_error(exc: BaseException, what: str, target) -> Exception:
    """A storage failure of ``target`` as one line. A refused credential is bad configuration
    (exit 2, the secret never printed); anything else fails the run (exit 1)."""
    text = one_line(exc)
    if target.remote and _REFUSED.search(text):
        return ConfigError(f"{target.description}: {what}: access refused: {text}",
                           hint="check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and AWS_ENDPOINT_URL")
    return TargetError(f"{target.description}: {what}: {text}")


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


def remove_folder(uri: str, remote: bool) -> None:
    """Delete a table's folder and everything in it (absent already is fine)."""
    if remote:
        import fsspec
        fs, path = fsspec.core.url_to_fs(uri, **fsspec_options())
        if fs.exists(path):
            fs.rm(path, recursive=True)
    else:
        import shutil
        shutil.rmtree(uri, ignore_errors=True)


def deltalake():
    try:
        import deltalake
    except ImportError:
        raise ConfigError("a Delta target needs the deltalake package, which is not installed",
                          hint="pip install 'hiwater[delta]'") from None
    return deltalake


# --- a bucketed stream: its own partition of the shared table ------------------------------------


def bucket_of(stream: str) -> int | None:
    """The bucket a bucketed stream's name says (``orders#2/4`` → 2), else ``None``."""
    p = parse_name(stream or "")
    return p[1] if p is not None else None


def field(schema: pa.Schema, name: str) -> pc.Expression:
    """Column ``name`` of a Delta scan's filter, as the table's schema types it.

    delta-rs's MERGE and DELETE write strings and bytes as ``string_view``/``binary_view`` in the
    files they rewrite, where a plain write holds ``string``; a filter comparing such a file's
    column with a literal of the table's type has no kernel in pyarrow. Cast, the comparison
    holds on every file (tests/test_delta.py, view types)."""
    t = schema.field(name).type
    return pc.field(name).cast(t) if (pa.types.is_string(t) or pa.types.is_large_string(t)
                                       or pa.types.is_binary(t) or pa.types.is_large_binary(t)) else pc.field(name)


def partition_filter(dt, stream: str | None):
    """The filter to a bucketed stream's own partition of its shared table (``None``: all of it)."""
    b = bucket_of(stream)
    return (pc.field(BUCKET_COL) == b) if b is not None and BUCKET_COL in pa.schema(dt.schema().to_arrow()).names \
        else None


def holds_rows(dt, stream: str | None) -> bool:
    """Whether ``dt`` (a table with rows) holds a row of ``stream``: in a bucket's run, of its own
    partition, where its keys alone live (place_buckets), so its first run looks none up."""
    part = partition_filter(dt, stream)
    return part is None or dt.to_pyarrow_dataset().count_rows(filter=part) > 0


def kill_point(name: str) -> None:
    """Test-only: ``HIWATER_DELTA_KILL=<point>`` SIGKILLs this process there (tests/test_delta.py)."""
    if os.environ.get("HIWATER_DELTA_KILL") == name:
        import signal
        os.kill(os.getpid(), signal.SIGKILL)


def landed(dl, uri: str, storage: dict, app: str, txn: int) -> bool:
    """Whether the commit of transaction ``txn`` is in the table at ``uri`` (its app transaction
    ``app`` holds ``txn``); an unreadable table says no."""
    try:
        return dl.DeltaTable(uri, storage_options=storage).transaction_version(app) == txn
    except Exception:  # noqa: BLE001 - unreadable now: the commit's error stands
        return False

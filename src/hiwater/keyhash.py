"""The bucket hash and bucket stream names: pure, the ground every bucketed layer stands on.

``--buckets N`` makes N streams of one, named ``<stream>#<b>/<N>`` (``orders#0/4`` …
``orders#3/4``); this module names them, parses the names back, and says which bucket a key
belongs to. It imports nothing of the orchestration, so a source (the SQL pushdown), the loader
(a stream keeps its bucket count) and a target (Delta's bucket column) use it without
pulling the scheduler in.

The hash (stable across processes, machines, Python and database versions)::

    text   = the key's canonical text; a composite key joins its parts with U+001F
    bucket = (first 4 bytes of MD5(UTF-8 of text), as a big-endian unsigned int) mod N

Canonical text: an integer in decimal, a string as itself, a boolean ``true``/``false``,
a float that holds an integer as that integer, a missing or null part as the empty string,
anything else as its ``str()``. MD5 is not used for security here, only because PostgreSQL
(``md5``), MariaDB/MySQL (``MD5``) and DuckDB (``md5``) all compute it, so a SQL source
filters its rows with the same function in SQL (:func:`bucket_sql`); SQLite gets the same
function as a registered ``hiwater_bucket`` UDF. A record without a key (invalid) belongs to
bucket 0, so it is quarantined exactly once.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import ConfigError, UsageError

SEP = "\x1f"
_NAME = re.compile(r"^(?P<base>.*)#(?P<b>\d+)/(?P<n>\d+)$")


# --- names ---------------------------------------------------------------------------------------

def bucket_name(stream: str, b: int, n: int) -> str:
    return f"{stream}#{b}/{n}"


def parse_name(name: str) -> tuple[str, int, int] | None:
    """``(stream, b, n)`` for a bucket stream's name, else ``None``."""
    m = _NAME.match(name)
    if not m:
        return None
    b, n = int(m["b"]), int(m["n"])
    return (m["base"], b, n) if 0 <= b < n else None


def buckets_of(names, stream: str) -> dict[int, list[str]]:
    """``{N: [bucket stream names]}`` among ``names`` for the stream ``stream``."""
    out: dict = {}
    for name in names:
        p = parse_name(name)
        if p is not None and p[0] == stream:
            out.setdefault(p[2], []).append(name)
    return out


def members(names, stream: str) -> list[str]:
    """Every bucket stream of ``stream`` whose count appears among ``names``, in (N, b) order,
    including a bucket of that count that is not among them (one whose first run failed):
    the stream is all of its buckets, committed or not."""
    return [bucket_name(stream, b, n) for n in sorted(buckets_of(names, stream)) for b in range(n)]


# --- the hash ------------------------------------------------------------------------------------

def canonical(v) -> str:
    """One key part's canonical text (see the module docstring)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def bucket_of_text(text: str, n: int) -> int:
    return int.from_bytes(hashlib.md5(text.encode("utf-8")).digest()[:4], "big") % n


def bucket_of(values, n: int) -> int:
    """The bucket of one key given as its parts (Python values)."""
    return bucket_of_text(SEP.join(canonical(v) for v in values), n)


def _text_array(tbl: pa.Table, k, mixed: dict | None, rows: int) -> pa.Array:
    """A key column's canonical texts as an Arrow string array (no Python object per row for
    integer and string columns)."""
    if mixed and k in mixed:
        return pa.array([canonical(v) for v in mixed[k]], pa.string())
    if k not in tbl.column_names:
        return pa.array([""] * rows, pa.string())
    col = tbl.column(k)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    t = col.type
    if pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
        col = col.cast(pa.string())
        return pc.fill_null(col, "") if col.null_count else col  # (fill_null copies every text)
    return pa.array([canonical(v) for v in col.to_pylist()], pa.string())


def _md5_buckets(texts: pa.Array, n: int) -> np.ndarray:
    """The first 4 bytes of each text's MD5, big-endian, mod ``n``. DuckDB (when installed)
    hashes the whole column in C (a million keys in ~0.25 CPU-s instead of ~1.5 s), on one
    connection per process (opening one per batch cost more than the hashing); the result is
    the same number either way (tests/test_buckets.py pins both)."""
    if len(texts) > 1000:
        con = _duckdb()
        if con is not None:
            with _DUCKDB_LOCK:
                con.register("hiwater_keys", pa.table({"t": texts}))
                try:
                    got = con.execute(f"SELECT (('0x' || substr(md5(t), 1, 8))::UBIGINT % {int(n)})::BIGINT AS b "
                                      f"FROM hiwater_keys").fetchnumpy()["b"]
                finally:
                    con.unregister("hiwater_keys")
            return np.asarray(got, dtype=np.int64)
    md5 = hashlib.md5
    return np.fromiter((int.from_bytes(md5(s.encode("utf-8")).digest()[:4], "big") % n for s in texts.to_pylist()),
                       dtype=np.int64, count=len(texts))


_DUCKDB_LOCK = threading.Lock()
_DUCKDB: list = []  # [(pid, connection)]: this process's in-memory connection for the hash


def _duckdb():
    """This process's DuckDB connection for the hash (one thread: a batch is small, and the
    CPU of a bucketed run is what counts), made on first use; ``None`` without DuckDB. A
    forked child makes its own (a connection does not survive a fork)."""
    with _DUCKDB_LOCK:
        if _DUCKDB and _DUCKDB[0][0] == os.getpid():
            return _DUCKDB[0][1]
        try:
            import duckdb
        except ImportError:
            return None
        _DUCKDB[:] = [(os.getpid(), duckdb.connect(config={"threads": 1}))]
        return _DUCKDB[0][1]


def bucket_ids(tbl: pa.Table, key, n: int, mixed: dict | None = None) -> np.ndarray:
    """The bucket of every row of ``tbl`` (a key column missing from the table counts as null).

    ``mixed`` maps a column holding values of several types to their Python values (a
    :class:`~hiwater.sources.base.RawBatch` keeps them there)."""
    rows = tbl.num_rows
    parts = [_text_array(tbl, k, mixed, rows) for k in key]
    texts = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, SEP)
    out = _md5_buckets(texts, n)
    if all(k not in tbl.column_names and not (mixed and k in mixed) for k in key):
        out[:] = 0  # no key at all: every record is invalid, and bucket 0 quarantines it
    return out


# --- SQL pushdown (pure builder) -------------------------------------------------------------

def bucket_sql(dialect: str, keys: list, n: int, b: int) -> str:
    """The predicate ``<bucket of the row> = b`` in ``dialect`` (postgresql, mysql, duckdb,
    sqlite), for the quoted key columns ``keys``. It has no ``%`` and no placeholder."""
    if dialect == "postgresql":
        text = " || chr(31) || ".join(f"coalesce({k}::text, '')" for k in keys)
        return f"mod(('x' || substr(md5({text}), 1, 8))::bit(32)::bigint, {n}) = {b}"
    if dialect == "mysql":
        text = "CONCAT(" + ", CHAR(31 USING utf8mb4), ".join(
            f"COALESCE(CAST({k} AS CHAR), '')" for k in keys) + ")"
        return f"MOD(CONV(SUBSTRING(MD5({text}), 1, 8), 16, 10), {n}) = {b}"
    if dialect == "duckdb":
        text = " || chr(31) || ".join(f"coalesce(CAST({k} AS VARCHAR), '')" for k in keys)
        return f"mod(('0x' || substr(md5({text}), 1, 8))::UBIGINT, {n}) = {b}"
    if dialect == "sqlite":
        return f"hiwater_bucket({n}, {', '.join(keys)}) = {b}"
    raise ConfigError(f"--buckets: no bucket predicate for a {dialect} source")


def sqlite_bucket(n, *values) -> int:
    """``hiwater_bucket(n, key…)``: the SQLite UDF behind :func:`bucket_sql`."""
    return bucket_of(values, int(n))


# --- the bucket count a stream keeps ------------------------------------------------------------

def check_count(names, stream: str, n: int) -> None:
    """Refuse a run whose bucket count (1: not bucketed) differs from the stream's."""
    names = list(names)
    counts = set(buckets_of(names, stream))
    if stream in names:
        counts.add(1)
    counts.discard(n)
    if not counts:
        return
    was = max(counts)
    now_text = f"--buckets {n}" if n > 1 else "no --buckets"
    was_text = f"{was} bucket(s)" if was > 1 else "no buckets"
    raise UsageError(
        f"stream {stream!r} was loaded with {was_text}; this run asks for {now_text}",
        hint=(f"run it with --buckets {was} as before" if was > 1 else "run it without --buckets as before")
        + "; to change the count, add --rebucket: the old buckets are forgotten (the table stays) and the run "
          "re-reads the whole source (docs/scale-out.md, re-bucketing)")


def check_new_stream(names, stream: str) -> None:
    """A stream's first run: refuse it when the stream exists with another bucket count."""
    p = parse_name(stream)
    check_count(names, p[0], p[2]) if p is not None else check_count(names, stream, 1)


def least_state(states):
    """The state with the least watermark among the buckets that hold one (``None`` when none
    does): a bucketed stream's watermark is its least bucket's (they share one kind, so integers
    compare). A bucket that committed without a record yet (an empty share) holds nothing to be
    behind on; a bucket that never committed is the caller's to judge (it keeps the stream behind)."""
    held = [s for s in states if s.watermark is not None]
    return min(held, key=lambda s: s.watermark) if held else None


def stream_watermark(states) -> str | None:
    """The text of :func:`least_state`'s watermark (``None``: no bucket holds one)."""
    least = least_state(states)
    return least.watermark_text() if least is not None else None

"""The read phase of a bucketed SQL stream keyed by one integer column: key ranges, read once.

Without it, each bucket of ``--buckets N`` reads its own rows with the hash pushed down
(:func:`hiwater.keyhash.bucket_sql`): the server computes an MD5 of every row of the window once
per bucket, N scans. When the key is one integer column, the coordinator cuts the key's span
(``min(k)``, ``max(k)`` of the window, one cheap query: :func:`key_span`) into about
``max(N, cores)`` ranges (:func:`cut`), and one read task per range reads::

    SELECT *, CASE … END AS _hiwater_rank FROM <table or (query)>
     WHERE ((cursor >= :lo [AND cursor < :hi]) OR cursor IS NULL) AND k >= :a AND k < :b
     ORDER BY cursor, key

(:class:`RangeSource`); its rows go to their buckets by :func:`hiwater.keyhash.bucket_ids` and
into the spill files as a file split's do (:func:`hiwater.sources.splits.read_split`). The first
range has no lower key bound and the last no upper one, and holds the NULL keys: every row of
the window is read by exactly one task whatever the span was when it was measured.

One read serves N windows. Each bucket has its own watermark, so its own window; the read takes
their union (from the least lower bound). A single run of a bucket would never fetch the rows
below its own window (pushdown), so the read task has the server tell, for each row, which of
the buckets' lower bounds it passes (``_hiwater_rank``, the same comparison with the same
parameter a bucket's own statement makes: :class:`ReadWindow`), and the bucket's apply source
(:class:`SqlShuffledSource`) keeps exactly the rows its own statement would have read. Its
counts are those of the hash-pushdown run. docs/scale-out.md has the design.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa

from .. import values as V
from ..errors import ConnectError, HiwaterError, InputError
from ..urls import redact
from .base import RawBatch
from .bucket import take_rows
from .shuffled import ShuffledSource
from .sql import SqlSource, WindowBounds, window_sql

log = logging.getLogger("hiwater")
RANK = "_hiwater_rank"  # the column a read task adds: the highest bucket lower bound its cursor passes


@dataclass(frozen=True)
class ReadWindow:
    """What the read phase read, in the loader's normalised units: the buckets' lower bounds the
    rank tells apart (``los``, ascending), and the union it read: from ``floor`` (``None``:
    every cursor) up to ``hi`` (``None``: no upper bound)."""

    url: str
    kind: str | None = None
    lo_inclusive: bool = True
    los: tuple = ()
    floor: int | None = None
    hi: int | None = None

    def bounds(self) -> WindowBounds | None:
        """The union window as a read task pushes it down (``None``: no window)."""
        if self.kind is None or (self.floor is None and self.hi is None):
            return None
        return WindowBounds(self.floor, self.lo_inclusive, self.hi, self.kind)


@dataclass(frozen=True)
class SqlRead:
    """How every read task of a run opens the source (the stream's options)."""

    url: str
    table: str | None
    query: str | None
    key: tuple
    cursor: str
    batch_size: int
    assume_tz: str
    tz: str = "UTC"             # the stream's zone (a naive cursor's bounds)
    window: ReadWindow = None


@dataclass(frozen=True)
class KeyRange:
    """One read task: the rows with ``lo <= k < hi`` (a missing bound: none), and the NULL keys
    when ``nulls``. It stands for a split towards the read phase (index, name, kind, path)."""

    index: int
    lo: int | None
    hi: int | None
    nulls: bool
    read: SqlRead
    kind: str = "sql"
    path: str = ""              # one numbering for every range (a bucket's record numbers)

    @property
    def name(self) -> str:
        k = self.read.key[0]
        parts = ([f"{self.lo} <= {k}"] if self.lo is not None else []) + \
                ([f"{k} < {self.hi}"] if self.hi is not None else [])
        text = " and ".join(parts) or f"every {k}"
        return f"{text}{' or null' if self.nulls and parts else ''}"

    def batches(self) -> Iterator[RawBatch]:
        src = RangeSource(self)
        try:
            yield from src.batches()
        finally:
            src.close()


def cut(lo: int | None, hi: int | None, parts: int) -> list:
    """About equal ranges of the key span ``[lo, hi]``: ``(lo, hi)`` pairs, the first open below,
    the last open above (``[(None, None)]``: one range, an empty span included)."""
    if lo is None or hi is None or parts <= 1 or hi <= lo:
        return [(None, None)]
    parts = min(parts, hi - lo + 1)
    cuts = [lo + (hi - lo + 1) * i // parts for i in range(1, parts)]
    return list(zip([None] + cuts, cuts + [None]))


def ranges(read: SqlRead, span: tuple, parts: int) -> list:
    """The read tasks of a run (the NULL keys with the last one)."""
    pairs = cut(*span, parts)
    return [KeyRange(i, a, b, i == len(pairs) - 1, read) for i, (a, b) in enumerate(pairs)]


def _names(src: SqlSource) -> tuple[str, str, str]:
    """The quoted key and cursor, and the base, escaped as the driver wants (``%%``)."""
    d = src.dialect
    k, c, base = d.quote(src.key[0]), d.quote(src.cursor), src.base()
    if d.escape_percent:
        k, c, base = k.replace("%", "%%"), c.replace("%", "%%"), base.replace("%", "%%")
    return k, c, base


def key_span(src: SqlSource) -> tuple:
    """``(min(k), max(k))`` of the source's current window (an open source); ``(None, None)``
    for an empty window. A value that is not an integer (SQLite keeps any type): ``None``."""
    d = src.dialect
    ops, params, _ = src.conditions(src.bounds)
    k, c, base = _names(src)
    sql = f"SELECT min({k}), max({k}) FROM {base}"
    if ops:
        sql += " WHERE (" + " AND ".join(f"{c} {op} {d.placeholder}" for op in ops) + f") OR {c} IS NULL"
    src.last_sql, src.last_params = sql, params
    log.info("source: %s %s", sql, params)
    rows = d.stream(sql, params, 16)
    try:
        chunk = next(rows, None)
    except d.errors() as exc:
        if d.broken():  # the connection was lost, not the query refused: retryable
            raise ConnectError(f"{redact(src.url)}: the connection was lost: {src._msg(exc)}") from None
        raise InputError(f"reading the key's span failed: {src._msg(exc)}", path=src.description) from None
    finally:
        rows.close()
    if chunk is None or len(chunk) == 0:
        return None, None
    row = [chunk.column(i)[0].as_py() for i in range(2)] if isinstance(chunk, pa.RecordBatch) else chunk[0]
    if any(v is not None and (isinstance(v, bool) or not isinstance(v, int)) for v in row):
        return None
    return tuple(row)


def rank_sql(src: SqlSource, window: ReadWindow) -> tuple[str, list]:
    """``, CASE … END AS _hiwater_rank`` and its parameters: ``j`` for a row whose cursor passes
    the ``j``-th lower bound of ``window.los`` (not the ``j+1``-th), ``len(los)`` for a NULL
    cursor, 0 below them all. Each test is the one a bucket's own statement makes
    (:meth:`SqlSource.conditions`), so a bucket keeps the rows it would have read."""
    if not window.los:
        return "", []
    d = src.dialect
    _, c, _ = _names(src)
    whens, params = [f"WHEN {c} IS NULL THEN {len(window.los)}"], []
    for j in range(len(window.los), 0, -1):
        ops, ps, _ = src.conditions(WindowBounds(window.los[j - 1], window.lo_inclusive, None, window.kind))
        whens.append(f"WHEN {c} {ops[0]} {d.placeholder} THEN {j}")
        params += ps
    return f", CASE {' '.join(whens)} ELSE 0 END AS {RANK}", params


class RangeSource(SqlSource):
    """One read task's statement: the union window, the key range, each row's rank."""

    def __init__(self, r: KeyRange):
        rd = r.read
        super().__init__(rd.url, table=rd.table, query=rd.query, key=rd.key, cursor=rd.cursor,
                         batch_size=rd.batch_size, assume_tz=rd.assume_tz)
        self.range = r
        self.window = rd.window
        self.dialect.tz = V.zone(rd.tz)
        b = rd.window.bounds()
        if b is not None:
            self.set_window(b.lo, b.lo_inclusive, b.hi, b.kind, V.zone(rd.tz))
        self.extra = (RANK,) if rd.window.los else ()

    def statement(self) -> tuple[str, list]:
        d, r = self.dialect, self.range
        ops, params, self.exact = self.conditions(self.bounds)
        k, _, _ = _names(self)
        conds, keys = [], []
        if r.lo is not None:
            conds.append(f"{k} >= {d.placeholder}")
            keys.append(r.lo)
        if r.hi is not None:
            conds.append(f"{k} < {d.placeholder}")
            keys.append(r.hi)
        where = " AND ".join(conds) or None
        if where and r.nulls:
            where = f"({where}) OR {k} IS NULL"
        extra, ranks = rank_sql(self, self.window)
        sql = window_sql(self.base(), d.quote(self.cursor), [d.quote(x) for x in self.key], ops, d.placeholder,
                         d.escape_percent, where, extra)
        return sql, ranks + params + keys


class SqlShuffledSource(ShuffledSource):
    """A bucket's rows of a SQL read phase: the window pushed down as its own statement would
    (the rows whose rank says they pass its lower bound; see the module docstring)."""

    pushdown = True

    def __init__(self, share):
        super().__init__(share)
        self.window: ReadWindow = share.sql
        self.url = self.window.url
        self._min_rank = 0  # keep every row read

    def set_window(self, lo, lo_inclusive, hi, kind, tz=None) -> None:
        w = self.window
        short = (w.floor is not None and (kind != w.kind or lo is None or lo < w.floor)) or \
                (w.hi is not None and (kind != w.kind or hi is None or hi > w.hi))
        if short:  # the bucket's state moved since the coordinator read it: another run of the stream
            raise HiwaterError(f"the window of this bucket is not the one its read phase read "
                               f"(its state changed since: another run of the stream?); run the stream again",
                               retryable=True)
        exact = kind == w.kind and lo_inclusive == w.lo_inclusive and lo in w.los
        # Not one of the planned bounds: every row read (more than the pushdown would give, never
        # less; the decide step places the rest, as for a source without pushdown).
        self._min_rank = w.los.index(lo) + 1 if exact else 0

    def batches(self) -> Iterator[RawBatch]:
        for raw in super().batches():
            if RANK not in raw.table.column_names:
                yield raw
                continue
            rank = raw.table.column(RANK).to_numpy()
            raw.table = raw.table.drop_columns([RANK])
            keep = rank >= self._min_rank
            if keep.all():
                yield raw
            elif keep.any():
                yield take_rows(raw, np.flatnonzero(keep))

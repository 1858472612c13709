"""SQL sources: ``--source postgresql://…|mysql://…|sqlite:///…|duckdb:///…``.

The source reads ``--source-table T`` or ``--query 'SELECT …'`` with the run's
window pushed down and streamed, never fetched whole::

    SELECT * FROM <table or (query)>
     WHERE (cursor >= :lo [AND cursor < :until]) OR cursor IS NULL
     ORDER BY cursor, key

- The loader calls :meth:`SqlSource.set_window` before each pass once the
  stream's cursor kind is known (from its state). A first run has no window: it
  reads everything.
- Rows with a NULL cursor are always read, so they are quarantined as invalid
  rather than silently never seen.
- Rows below the window are never fetched, so ``--on-late detect`` cannot see
  late rows there: give a ``--lookback`` wide enough, or ``--settle``.
- Server-side cursors: a psycopg named cursor, a pymysql ``SSCursor``, SQLite's
  step-wise cursor, DuckDB's Arrow record-batch reader; ``batch_size`` rows at a
  time become one Arrow :class:`~hiwater.sources.base.RawBatch`.
- Every pass of one run reads the same snapshot (one read-only, repeatable-read
  transaction per run), so ``--window`` slices see one consistent source.
- ``last_sql`` / ``last_params`` keep the statement the source ran.

What differs between the databases (connecting, quoting, column types, streaming) is in
:mod:`hiwater.sources.dialects`.
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import uuid
from dataclasses import dataclass
from typing import Iterator

import orjson
import pyarrow as pa

from .. import values as V
from ..errors import ConfigError, ConnectError, InputError, UsageError
from ..keyhash import bucket_sql, sqlite_bucket
from ..urls import expand, redact, scrub
from .base import RawBatch, Source
from .dialects import DIALECTS, DRIVERS, Column, Dialect

log = logging.getLogger("hiwater")


@dataclass(frozen=True)
class WindowBounds:
    """The pushed-down window in the loader's normalised units (see :mod:`hiwater.values`)."""

    lo: int | None
    lo_inclusive: bool
    hi: int | None
    kind: str


def window_sql(base: str, cursor: str, key: list, bounds: list, placeholder: str,
               escape_percent: bool, bucket: str | None = None, extra: str = "") -> str:
    """The SELECT for one pass (pure builder).

    ``base`` is a quoted table name or ``(query) AS _hiwater_src``; ``cursor`` and
    ``key`` are quoted; ``bounds`` is a list of ``(operator, placeholder-count)``,
    e.g. ``[(">=",), ("<",)]``. ``bucket`` is a bucketed stream's predicate
    (:func:`hiwater.keyhash.bucket_sql`), ANDed with the window; ``extra`` columns follow
    ``*`` (a read task's ``, CASE … END AS _hiwater_rank``: :mod:`hiwater.sources.sqlsplits`).
    """
    if escape_percent:  # psycopg / pymysql read % as a placeholder
        base, cursor, key = base.replace("%", "%%"), cursor.replace("%", "%%"), [k.replace("%", "%%") for k in key]
    sql = f"SELECT *{extra} FROM {base}"
    if bounds:
        cond = " AND ".join(f"{cursor} {op} {placeholder}" for op in bounds)
        sql += f" WHERE ({cond}) OR {cursor} IS NULL" if not bucket else \
            f" WHERE (({cond}) OR {cursor} IS NULL) AND ({bucket})"
    elif bucket:
        sql += f" WHERE {bucket}"
    return sql + f" ORDER BY {', '.join([cursor] + key)}"


# --- the source ------------------------------------------------------------------------------

class SqlSource(Source):
    pushdown = True
    """A table or query of a database, read window by window in ``(cursor, key)`` order."""

    def __init__(self, url: str, *, table: str | None = None, query: str | None = None,
                 key: tuple = ("id",), cursor: str = "modified_at", batch_size: int = 65_536,
                 assume_tz: str = "UTC", bucket: tuple | None = None):
        if (table is None) == (query is None):
            raise UsageError("--source needs exactly one of --source-table TABLE or --query 'SELECT …'")
        self.url = expand(url)
        scheme = self.url.split(":", 1)[0].lower()
        cls = DIALECTS.get(scheme)
        if cls is None:
            raise ConfigError(f"--source {redact(self.url)}: unknown database kind {scheme!r}",
                              hint="use postgresql://, mysql://, sqlite:/// or duckdb:///")
        if cls in DRIVERS:
            module, extra = DRIVERS[cls]
            try:
                __import__(module)
            except ImportError:
                raise ConfigError(f"a {cls.name} source needs the {module} driver, which is not installed",
                                  hint=f"pip install 'hiwater[{extra}]'") from None
        self.dialect: Dialect = cls(self.url, V.zone(assume_tz))
        self.table = table
        self.query = query.strip().rstrip(";").strip() if query is not None else None
        if self.query is not None and not self.query:
            raise UsageError("--query: give a SELECT statement")
        self.key = tuple(key)
        self.cursor = cursor
        self.batch_size = batch_size
        what = f"table {table}" if table is not None else "query"
        self.description = f"{redact(self.url)} ({what})"
        self.bounds: WindowBounds | None = None
        self.columns: list[Column] | None = None
        self.last_sql: str | None = None
        self.last_params: list | None = None
        self.exact: bool | None = None
        self.bucket = bucket  # (b, n): read only bucket b of n (hiwater.keyhash)
        self.extra: tuple = ()  # names of integer columns the statement selects after the source's
        self._open = False

    # --- the loader's side -------------------------------------------------------------------
    def set_window(self, lo: int | None, lo_inclusive: bool, hi: int | None, kind: str, tz=None) -> None:
        """Read only ``cursor >= lo`` (``>`` when not inclusive) and ``< hi`` from now on; naive
        timestamps are wall-clock times in ``tz`` (the stream's zone)."""
        if tz is not None:
            self.dialect.tz = tz
        self.bounds = WindowBounds(lo, lo_inclusive, hi, kind)

    def batches(self) -> Iterator[RawBatch]:
        self.ensure_open()
        sql, params = self.statement()
        self.last_sql, self.last_params = sql, params
        log.info("source: %s %s", sql, params)
        first = 1
        try:
            for chunk in self.dialect.stream(sql, params, self.batch_size):
                batch = self._batch(chunk, first)
                first += len(batch)
                yield batch
        except self.dialect.errors() as exc:
            raise InputError(f"reading the source failed: {self._msg(exc)}", path=self.description) from None

    def close(self) -> None:
        self.dialect.close()
        self._open = False

    # --- SQL ---------------------------------------------------------------------------------
    def base(self) -> str:
        if self.table is not None:
            return self.dialect.table(self.table)
        return f"({self.query}) AS _hiwater_src"

    def conditions(self, b: WindowBounds | None) -> tuple[list, list, bool]:
        """The window ``b`` as conditions on the cursor: their operators, their parameters (in
        the column's type), and whether they are exact (else widened: the loader decides the
        rest). A bound the column cannot take is left out (read more, never less)."""
        d = self.dialect
        ops, params = [], []
        col = self._column(self.cursor)
        if b is None or col is None:
            return ops, params, True
        exact = d.exact(b.kind, col)
        if b.lo is not None:
            p = d.param(b.lo, b.kind, col, upper=False)
            if p is not None:
                ops.append(">=" if b.lo_inclusive or not exact else ">")
                params.append(p)
        if b.hi is not None:
            p = d.param(b.hi, b.kind, col, upper=True)
            if p is not None:
                ops.append("<" if exact else "<=")
                params.append(p)
        return ops, params, exact and len(params) == (b.lo is not None) + (b.hi is not None)

    def statement(self) -> tuple[str, list]:
        """The statement and parameters for the current window (needs the columns described)."""
        d = self.dialect
        ops, params, self.exact = self.conditions(self.bounds)
        bucket = None
        if self.bucket is not None:
            bucket = bucket_sql(d.name, [d.quote(k) for k in self.key], self.bucket[1], self.bucket[0])
        sql = window_sql(self.base(), d.quote(self.cursor), [d.quote(k) for k in self.key], ops,
                         d.placeholder, d.escape_percent, bucket)
        return sql, params

    # --- internals ----------------------------------------------------------------------------
    def _msg(self, exc: Exception) -> str:
        text = " ".join(str(exc).split()) or type(exc).__name__
        return scrub(text, self.url)

    def ensure_open(self) -> None:
        """Connect, describe the table or query and check the key and cursor columns exist; once.
        ``hiwater validate --connect`` calls it to probe a source without reading a row."""
        if self._open:
            return
        d = self.dialect
        try:
            d.connect()
        except d.errors() as exc:
            raise ConnectError(f"{redact(self.url)}: cannot connect: {self._msg(exc)}") from None
        if self.bucket is not None and d.name == "sqlite":
            d.conn.create_function("hiwater_bucket", -1, sqlite_bucket, deterministic=True)
        try:
            d.begin_snapshot()
            self.columns = d.describe(self.base())
        except d.errors() as exc:
            if d.broken():  # the connection was lost, not the table or query refused: retryable
                raise ConnectError(f"{redact(self.url)}: the connection was lost: {self._msg(exc)}") from None
            what = f"--source-table {self.table}" if self.table is not None else "--query"
            raise ConfigError(f"{what}: {self._msg(exc)}") from None
        names = [c.name for c in self.columns]
        for need, option in [(self.cursor, "--cursor")] + [(k, "--key") for k in self.key]:
            if need not in names:
                raise ConfigError(f"{option} {need}: the source has no such column (it has {', '.join(names)})")
        self._open = True

    def _column(self, name: str) -> Column | None:
        return next((c for c in self.columns or [] if c.name == name), None)

    def _batch(self, chunk, first: int) -> RawBatch:
        if isinstance(chunk, pa.RecordBatch):
            return RawBatch(_plain_arrow(pa.Table.from_batches([chunk]), self.cursor), self.description, first)
        columns = list(zip(*chunk))
        arrays, mixed, fields = [], {}, []
        for info, values in zip(self.columns, columns):
            arr = _to_arrow(values, info)
            if arr is None:
                mixed[info.name] = list(values)
                arr = pa.nulls(len(values))
            arrays.append(arr)
            fields.append(info.name)
        undeclared = frozenset(info.name for info, a in zip(self.columns, arrays)
                               if info.arrow is None and pa.types.is_decimal(a.type))
        for name, values in zip(self.extra, columns[len(self.columns):]):  # a read task's rank
            arrays.append(pa.array(values, pa.int64()))
            fields.append(name)
        return RawBatch(pa.Table.from_arrays(arrays, names=fields), self.description, first, mixed=mixed,
                        undeclared=undeclared)


def _to_arrow(values, info: Column):
    """One column of Python values as Arrow; ``None`` when its values have several types."""
    if info.arrow is not None:
        try:
            return pa.array(values, info.arrow)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
    values = [_plain(v) for v in values]
    try:
        arr = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return None
    return arr  # a decimal beyond 38 digits: its digits as text (types.stored_form)


def _plain(v):
    """A driver value Arrow can hold without surprises."""
    if v is None or isinstance(v, (bool, int, float, str, dt.date, dt.datetime)):
        return v
    if isinstance(v, decimal.Decimal):
        return float(v) if not v.is_finite() else v
    if isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            return "\\x" + b.hex()
    if isinstance(v, (dict, list)):
        return orjson.dumps(v, default=str).decode()
    if isinstance(v, (uuid.UUID, dt.time, dt.timedelta)):
        return str(v)
    return str(v)


def _plain_arrow(tbl: pa.Table, cursor: str) -> pa.Table:
    """Arrow from DuckDB: nested and exotic columns become text; the cursor keeps its type."""
    for i, f in enumerate(tbl.schema):
        t = f.type
        if f.name == cursor:
            continue
        if (pa.types.is_struct(t) or pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_map(t)):
            tbl = tbl.set_column(i, f.name, pa.array(
                [None if v is None else orjson.dumps(v, default=str).decode() for v in tbl.column(i).to_pylist()],
                pa.string()))
        elif (pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)
              or pa.types.is_time(t) or pa.types.is_duration(t) or pa.types.is_interval(t)
              or pa.types.is_dictionary(t) or isinstance(t, pa.ExtensionType)):
            tbl = tbl.set_column(i, f.name, pa.array([None if v is None else _plain(v)
                                                      for v in tbl.column(i).to_pylist()], pa.string()))
        elif pa.types.is_large_string(t):
            tbl = tbl.set_column(i, f.name, tbl.column(i).cast(pa.string()))
    return tbl


def open_sql(url: str, **kw) -> SqlSource:
    return SqlSource(url, **kw)


def default_table(table: str | None) -> str:
    """A target table named after the source table (its last part), or ``records`` for a query."""
    if not table:
        return "records"
    return table.split(".")[-1] or "records"

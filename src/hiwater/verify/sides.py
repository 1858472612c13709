"""The two sides verify compares: the stream's source and its target table.

Every side answers the same questions, each in ONE pass over its data however many windows or
slices it covers (:mod:`hiwater.verify.digest` defines every hash):

- ``span(lo, hi)``: the smallest and largest cursor in the range;
- ``use(mode)``: the checksum both sides agreed on (:func:`agree`: integer or md5);
- ``total(lo, hi)``: ``(count, sum)`` of the whole range, no grouping (an equal table stops here);
- ``windows(plan)``: ``{window: (count, sum)}`` for every window of the plan;
- ``buckets(plan, depth, parents, child)``: ``{(window, bucket): (count, sum)}`` where a bucket at
  depth ``d`` is the key hash's top ``d`` bits (:func:`bucket`), for the depth-``child`` buckets
  inside the given depth-``depth`` ``(window, bucket)`` parents: one round of bisection for every
  differing slice at once;
- ``rows(plan, slices)``: the rows of the given small ``(window, depth, bucket)`` slices,
  ``{key text: Row}``, to name keys;
- ``lookup(keys)``: where the given keys are now, at any cursor (a key that left the range).

:class:`SqlSide` pushes the aggregates into the database (PostgreSQL, MySQL/MariaDB, DuckDB,
SQLite; :mod:`hiwater.verify.sql` spells them), so an equal window costs two numbers on the wire.
:class:`MemorySide` holds the rows a source or target can only hand over whole (files, Delta, a
cursor the database cannot normalise exactly, ``--content``): read once, then answered by numpy.
``fetched`` counts the payload bytes each side returned, the cost the benchmark reports.
"""

from __future__ import annotations

import datetime as dt
import os

from .. import values as V
from ..errors import ConfigError, UsageError
from ..sources import dialects as SD
from ..sources import sql as S
from ..sources.files import open_files
from ..sources.memory import DataSource
from ..targets.delta import folder_name
from ..urls import expand
from . import digest as D
from .rows import CURSOR_COL, MemorySide, Row, from_batches
from .sql import SQL, cursor_sql, fast_cursor


# --- SQL, pushed down -----------------------------------------------------------------------------

class SqlSide:
    """A table (or query) in a database, the digests computed there.

    ``inner`` is a SELECT giving ``_k`` (key text), ``_c`` (normalised cursor) and the key columns
    ``_k0…``; ``native(a, b)`` adds the cursor column's own bounds (widened where not exact) so a
    database can use its index on the cursor before the exact test on ``_c``.
    """

    def __init__(self, label: str, conn, flavour: str, base: str, key: list[str], raw: str, quote, *,
                 normalise=lambda expr: expr, native=None, placeholder: str = "%s", escape: bool = True,
                 int_key: bool = False, exact_native: bool = False, fast=None):
        self.label = label
        self.int_key = int_key and len(key) == 1
        self.mode = D.MD5
        self.fetched = 0
        self.conn = conn
        self.sql = SQL[flavour]()
        self.sql.setup(conn)
        self.flavour = flavour
        self.placeholder = placeholder
        self.escape = escape
        self.native = native
        self.key = key
        quoted = [quote(k) for k in key]
        self.quoted_key = quoted
        cols = ", ".join(f"{q} AS _k{i}" for i, q in enumerate(quoted))
        if self.int_key:
            cols += f", {self.sql.bigint(quoted[0])} AS _i"
        self.raw, self.normalise = raw, normalise
        self.inner = f"SELECT {self.sql.key_text(quoted)} AS _k, {normalise(raw)} AS _c, {cols} FROM {base}"
        self.base = base
        # native bounds that select exactly the range: no second test on the normalised cursor
        self.exact_native = exact_native and native is not None
        # ``(normalise, bound)``: a cheaper normalisation, exact for cursors within ±bound
        self.fast = fast
        if fast is not None:
            self.inner_fast = f"SELECT {self.sql.key_text(quoted)} AS _k, {fast[0](raw)} AS _c, {cols} FROM {base}"

    # one statement, its rows, and what they cost
    def _query(self, sql: str, params: list) -> list[tuple]:
        if self.escape and params:
            sql = sql.replace("%", "%%").replace("%%s", "%s")
        if self.flavour == "mysql":
            with self.conn.cursor() as cur:
                cur.execute(sql, params or None)
                rows = cur.fetchall()
        elif self.flavour == "postgresql":
            rows = self.conn.execute(sql, params or None).fetchall()
        else:
            rows = self.conn.execute(sql, params).fetchall()
        self.fetched += sum(_size(v) for r in rows for v in r)
        return rows

    def _from(self, a: int | None, b: int) -> tuple[str, list]:
        return self._from_ranges([(a, b)])

    def _from_ranges(self, ranges: list) -> tuple[str, list]:
        """The rows whose cursor lies in one of the closed ``ranges`` ``[(a, b), …]`` (``a``
        ``None``: no lower bound), as a FROM item with its parameters: the cursor column's own
        bounds in the inner query (a database's index on the cursor finds each range), then the
        exact test on the normalised cursor where those bounds are not exact."""
        where, params = "", []
        if self.native is not None:
            parts = []
            for a, b in ranges:
                w, p = self.native(a, b, self.placeholder)
                parts.append(w.removeprefix(" WHERE ") or "1 = 1")
                params += p
            where = " WHERE " + " OR ".join(f"({x})" for x in parts) if len(parts) > 1 else \
                (" WHERE " + parts[0] if parts[0] != "1 = 1" else "")
        lows = [a for a, _ in ranges]
        low = None if None in lows else min(lows)
        inner = self.inner
        if self.fast is not None and low is not None and -self.fast[1] <= low and \
                max(b for _, b in ranges) <= self.fast[1]:
            inner = self.inner_fast
        if self.exact_native and low is not None:
            return f"({inner}{where}) AS _s", params
        cond = " OR ".join(f"({f'_c >= {int(a)} AND ' if a is not None else ''}_c <= {int(b)})" for a, b in ranges)
        return f"({inner}{where}) AS _s WHERE {cond}", params

    def use(self, mode: str) -> None:
        """The checksum both sides agreed on (:func:`agree`): ``md5``, or ``int`` for an integer key."""
        self.mode = mode

    def span(self, lo, hi):
        """``MIN``/``MAX`` of the raw cursor column, normalised after: the normalisation keeps order,
        so a database answers from its index on the cursor without normalising every row."""
        if self.native is not None:
            where, params = self.native(lo, hi, self.placeholder)
        else:
            where = f" WHERE {self.raw} <= {int(hi)}" + (f" AND {self.raw} >= {int(lo)}" if lo is not None else "")
            params = []
        row = self._query(f"SELECT {self.normalise(f'MIN({self.raw})')}, {self.normalise(f'MAX({self.raw})')} "
                          f"FROM {self.base}{where}", params)[0]
        if row[0] is None:
            return None
        low, high = max(int(row[0]), lo) if lo is not None else int(row[0]), min(int(row[1]), hi)
        return (low, high) if low <= high else None

    def _sums(self) -> str:
        if self.mode == D.INT:
            return ", ".join(f"SUM({h})" for h in D.int_row_sql("_i", "_c"))
        return self.sql.digest_sum()

    def _sum(self, r) -> int:
        """The digest's sum from the row's sum column(s), in the mode's form (NULL: no rows)."""
        if self.mode == D.INT:
            return D.combine(r[0] or 0, r[1] or 0)
        return int(r[0] or 0) % D.MOD

    def _digest(self, groups: list[str], src: str, params: list) -> dict:
        names = ", ".join(f"_g{i}" for i in range(len(groups)))
        sql = (f"SELECT {names}, COUNT(*), {self._sums()} FROM (SELECT "
               f"{', '.join(f'{g} AS _g{i}' for i, g in enumerate(groups))}, "
               f"{'_i' if self.mode == D.INT else '_k'}, _c FROM {src}) AS _d GROUP BY {names}")
        n = len(groups)
        out = {}
        for r in self._query(sql, params):
            g = tuple(int(x) for x in r[:n])
            out[g if n > 1 else g[0]] = (int(r[n]), self._sum(r[n + 1:]))
        return out

    def total(self, lo, hi):
        """``(count, sum)`` of every row in ``[lo, hi]`` (``lo`` ``None``: up to ``hi``): one pass
        without grouping (a GROUP BY costs SQLite a sort of every row) and nothing else in it (no
        ``MIN``/``MAX``: an equal table needs no span), enough to prove an equal table equal."""
        src, params = self._from(lo, hi)
        r = self._query(f"SELECT COUNT(*), {self._sums()} FROM (SELECT "
                        f"{'_i' if self.mode == D.INT else '_k'}, _c FROM {src}) AS _d", params)[0]
        return int(r[0]), self._sum(r[1:])

    def windows(self, plan):
        src, params = self._from(plan.lo, plan.hi)
        return self._digest([self.sql.idiv(f"_c - {plan.lo}", plan.step)], src, params)

    def _sliced(self, plan, windows) -> tuple[str, list]:
        """The rows of the given windows with ``_w`` (window) and ``_kh`` (key hash) beside them:
        only those windows' cursor ranges are read (adjacent windows as one range), so a round
        computes the key hash of the differing windows' rows, not of every row between them."""
        ranges: list = []
        for i in sorted(windows):
            a, b = plan.window(i)
            if ranges and ranges[-1][1] + 1 == a:
                ranges[-1] = (ranges[-1][0], b)
            else:
                ranges.append((a, b))
        src, params = self._from_ranges(ranges)
        w = self.sql.idiv(f"_c - {plan.lo}", plan.step)
        kh = D.int_key_sql("_i") if self.mode == D.INT else self.sql.key_hash()
        return f"(SELECT _s.*, {w} AS _w, {kh} AS _kh FROM {src}) AS _r", params

    def _bucket(self, depth: int) -> str:
        return self.sql.idiv("_kh", 1 << (D.KEY_BITS - depth)) if depth else "0"

    def _in(self, pairs, depth) -> str:
        """``(window, bucket)`` pairs at ``depth`` as one condition on ``_w`` and ``_kh``."""
        by: dict = {}
        for w, b in pairs:
            by.setdefault(int(w), []).append(int(b))
        b = self._bucket(depth)
        return " OR ".join(f"(_w = {w} AND {b} IN ({', '.join(map(str, bs))}))" for w, bs in sorted(by.items()))

    def buckets(self, plan, depth, parents, child):
        src, params = self._sliced(plan, {w for w, _ in parents})
        src = f"(SELECT * FROM {src} WHERE {self._in(parents, depth)}) AS _p"
        return self._digest(["_w", self._bucket(child)], src, params)

    def rows(self, plan, slices):
        src, params = self._sliced(plan, {w for w, _, _ in slices})
        by_depth: dict = {}
        for w, depth, b in slices:   # one key hash per row and window, not one per slice
            by_depth.setdefault(depth, []).append((w, b))
        cond = " OR ".join(f"({self._in(pairs, depth)})" for depth, pairs in sorted(by_depth.items()))
        cols = ", ".join(f"_k{i}" for i in range(len(self.key)))
        out = {}
        for r in self._query(f"SELECT _k, _c, {cols} FROM {src} WHERE {cond}", params):
            c = int(r[1])
            h = D.int_row_hash(int(r[2]), c) if self.mode == D.INT else D.row_hash(r[0], c)
            out[r[0]] = Row(tuple(r[2:]), c, h)
        return out

    def lookup(self, keys):
        out = {}
        for chunk in (keys[i:i + 500] for i in range(0, len(keys), 500)):
            p = self.placeholder
            cond = " OR ".join("(" + " AND ".join(f"{q} = {p}" for q in self.quoted_key) + ")" for _ in chunk)
            params = [v for k in chunk for v in k]
            for t, c in self._query(f"SELECT _k, _c FROM ({self.inner} WHERE {cond}) AS _s", params):
                out[t] = int(c)
        return out

    def close(self):
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - closing never hides the outcome
            pass


def _size(v) -> int:
    if v is None:
        return 1
    if isinstance(v, (str, bytes)):
        return len(v)
    return 8 if not isinstance(v, int) or -(1 << 63) <= v < (1 << 63) else 16


# --- opening sides ------------------------------------------------------------------------------

def _dialect(url: str, tz):
    scheme = url.split(":", 1)[0].lower()
    cls = SD.DIALECTS.get(scheme)
    if cls is None:
        raise ConfigError(f"{url.split(':', 1)[0]}: verify cannot read this database kind",
                          hint="postgresql://, mysql://, sqlite:/// or duckdb:///")
    d = cls(url, tz)
    d.connect()
    return d


def _native(d: SD.Dialect, col: SD.Column, quoted: str, kind: str):
    """The cursor column's own bounds, as the loader pushes them down (widened where inexact)."""
    def where(a, b, placeholder):
        lo = d.param(a, kind, col, upper=False) if a is not None else None
        hi = d.param(b, kind, col, upper=True)
        parts, params = [], []
        if lo is not None:
            parts.append(f"{quoted} >= {placeholder}")
            params.append(lo)
        if hi is not None:
            parts.append(f"{quoted} <= {placeholder}")
            params.append(hi)
        return (" WHERE " + " AND ".join(parts), params) if parts else ("", [])
    return where


def source_side(url: str, *, table: str | None, query: str | None, key: list, cursor: str, kind: str,
                assume_tz: str, content: list | None = None, batch_size: int = 65_536):
    """The stream's source: its digests in the database where the cursor can be normalised there,
    else (and with ``--content``) its rows read once through the loader's own reader."""
    url = expand(url)
    tz = V.zone(assume_tz)
    src = S.open_sql(url, table=table, query=query, key=tuple(key), cursor=cursor, batch_size=batch_size,
                     assume_tz=assume_tz)
    label = f"source {src.description}"
    try:
        src.ensure_open()
        d = src.dialect
        col = src._column(cursor)
        flavour = SD.DIALECTS[url.split(":", 1)[0].lower()].name
        expr = cursor_sql(flavour, col, d.quote(cursor), kind, tz) if content is None else None
        if expr is None:  # the loader's own read, once
            side = from_batches(label, src.batches(), key=key, cursor=cursor, kind=kind, tz=tz, content=content)
            src.close()
            return side
        d.conn.rollback()  # no snapshot: a row that changes while verify runs shows on the second look
        if flavour == "postgresql":
            d.conn.autocommit = True
        return SqlSide(label, d.conn, flavour, src.base(), list(key), d.quote(cursor), d.quote,
                       normalise=lambda raw: cursor_sql(flavour, col, raw, kind, tz),
                       native=_native(d, col, d.quote(cursor), kind), placeholder=d.placeholder,
                       escape=d.escape_percent,
                       int_key=len(key) == 1 and getattr(src._column(key[0]), "kind", None) == SD.INT,
                       exact_native=d.exact(kind, col), fast=fast_cursor(flavour, col, kind, tz))
    except BaseException:
        src.close()
        raise


def files_side(spec: str, *, fmt: str | None, key: list, cursor: str, kind: str, assume_tz: str,
               content: list | None = None) -> MemorySide:
    src = open_files(spec, fmt, cursor=cursor)
    try:
        return from_batches(f"input {spec}", src.batches(), key=key, cursor=cursor, kind=kind,
                            tz=V.zone(assume_tz), content=content)
    finally:
        src.close()


def data_side(data, *, key: list, cursor: str, kind: str, assume_tz: str, content=None) -> MemorySide:
    """Data in memory (a list of dicts, an Arrow table, a DataFrame) read as the loader reads it."""
    src = DataSource(data, cursor=cursor)
    try:
        return from_batches("input (data)", src.batches(), key=key, cursor=cursor, kind=kind,
                            tz=V.zone(assume_tz), content=content)
    finally:
        src.close()


def target_url(db: str | None, target: str | None) -> str:
    """The target as one URL (``db`` is a SQLite path)."""
    if target is None and db is None:
        target = os.environ.get("HIWATER_TARGET_URL") or None
    if db is not None:
        return "sqlite:///" + os.path.abspath(db)
    if target is None:
        raise UsageError("verify needs the target: give --db PATH or --target URL")
    return expand(target)


def target_columns(url: str, table: str) -> list[str]:
    """The user columns of a target's table (no ``_hiwater_*``), in the table's order."""
    if url.split(":", 1)[0].lower() in ("delta", "delta+s3"):
        dataset = _delta_dataset(url, table)
        names = dataset.schema.names if dataset is not None else []
    else:
        d = _dialect(url, dt.timezone.utc)
        try:
            names = [c.name for c in d.describe(d.quote(table))]
        finally:
            d.close()
    return [n for n in names if not n.startswith("_hiwater_")]


def _execute(conn, flavour, sql):
    if flavour == "mysql":
        cur = conn.cursor()
        cur.execute(sql)
        return cur
    return conn.execute(sql)


def target_side(url: str, table: str, key: list, *, content: list | None = None):
    """The stream's table in the target: its key columns and ``_hiwater_cursor``, the integer the
    loader stored. Only this table is read, so other streams' tables beside it never count."""
    scheme = url.split(":", 1)[0].lower()
    label = f"target table {table}"
    if scheme in ("delta", "delta+s3"):
        return _delta_side(url, table, key, label, content)
    d = _dialect(url, dt.timezone.utc)
    if d.name == "postgresql":
        d.conn.autocommit = True
    if content is not None:
        return _read_target(d, table, key, content, label)
    return SqlSide(label, d.conn, d.name, d.quote(table), list(key), d.quote(CURSOR_COL), d.quote,
                   placeholder=d.placeholder, escape=d.escape_percent, int_key=_int_key(d, d.quote(table), key))


def _int_key(d, base: str, key: list) -> bool:
    """One key column, of an integer type: the side can use the integer checksum."""
    if len(key) != 1:
        return False
    kinds = {c.name: c.kind for c in d.describe(base)}
    return kinds.get(key[0]) == SD.INT


def agree(src, tgt) -> str:
    """The checksum both sides use: the integer one when both hold one integer key column, else
    md5 (:mod:`hiwater.verify.digest`). Called once, before the first question."""
    mode = D.INT if getattr(src, "int_key", False) and getattr(tgt, "int_key", False) else D.MD5
    src.use(mode)
    tgt.use(mode)
    return mode


def _read_target(d, table, key, content, label) -> MemorySide:
    """``--content`` on a SQL target: its rows read once, their values canonical."""
    cols = list(key) + [CURSOR_COL] + list(content)
    bools = _boolean_columns(d, table) if d.name == "sqlite" else set()
    cur = _execute(d.conn, d.name, f"SELECT {', '.join(d.quote(c) for c in cols)} FROM {d.quote(table)}")
    keys, cursors, contents, fetched = [], [], [], 0
    n = len(key)
    for r in cur.fetchall():
        keys.append(tuple(r[:n]))
        cursors.append(r[n])
        vals = [bool(v) if c in bools and v is not None else v for c, v in zip(content, r[n + 1:])]
        contents.append(D.content_text(vals))
        fetched += sum(_size(v) for v in r)
    d.close()
    side = MemorySide(label, keys, cursors, contents)
    side.fetched = fetched
    return side


def _boolean_columns(d, table) -> set:
    return {r[1] for r in d.conn.execute(f"PRAGMA table_info({d.quote(table)})") if "BOOL" in (r[2] or "").upper()}


def _delta_side(url, table, key, label, content) -> MemorySide:
    """A Delta table read once through its Arrow dataset: only the key, cursor (and content) columns."""
    import pyarrow.compute as pc
    dataset = _delta_dataset(url, table)
    if dataset is None:
        return MemorySide(label, [], [])
    cols = list(key) + [CURSOR_COL] + list(content or [])
    tbl = dataset.to_table(columns=cols)
    keys = list(zip(*(tbl.column(k).to_pylist() for k in key))) if tbl.num_rows else []
    contents = None
    if content is not None:
        other = [tbl.column(c).to_pylist() for c in content]
        contents = [D.content_text(vals) for vals in zip(*other)] if other else [""] * tbl.num_rows
    side = MemorySide(label, keys, pc.fill_null(tbl.column(CURSOR_COL), 0).to_pylist(), contents)
    side.fetched = tbl.nbytes
    return side


def _delta_dataset(url: str, table: str):
    """The Arrow dataset of a Delta target's table, or ``None`` before its first commit."""
    from deltalake import DeltaTable

    root = url.split("://", 1)[1]
    path = f"{root.rstrip('/')}/{folder_name(table)}"
    if url.startswith("delta+s3://"):
        path = "s3://" + path
        if not DeltaTable.is_deltatable(path):
            return None
    elif not os.path.isdir(os.path.join(path, "_delta_log")):
        return None
    return DeltaTable(path).to_pyarrow_dataset()

"""What differs between the databases a SQL source reads: connecting, quoting, types, streaming.

:class:`~hiwater.sources.sql.SqlSource` builds one statement and leaves the rest to its
:class:`Dialect`: how to connect (a read-only, repeatable-read snapshot per run), how a name is
quoted, what each column's type is (and so whether the window can be pushed down exactly), how a
window bound is passed as a parameter, and how rows are streamed without fetching them whole.
Each driver (psycopg, pymysql, duckdb) is imported when a source of its kind connects.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import parse_qsl, unquote, urlsplit

import pyarrow as pa

from .. import values as V
from ..errors import InputError, UsageError
from ..urls import file_path, redact

# Cursor column categories, from the source's own column type.
TS_TZ, TS_NAIVE, DATE, INT, TEXT, OTHER = "timestamptz", "timestamp", "date", "int", "text", "other"
TEXT_MARGIN_DAYS = 2      # ISO text compared by day, two days early: offsets can move a day
NAIVE_MARGIN = dt.timedelta(hours=2)  # naive columns in a zone with DST: read two hours early/late


@dataclass(frozen=True)
class Column:
    name: str
    kind: str          # one of the categories above (for pushdown)
    arrow: object      # a pyarrow type, or None to infer from the values


class Dialect:
    """What differs between databases: connecting, quoting, types, streaming."""

    name = "?"
    placeholder = "%s"
    escape_percent = True

    def __init__(self, url: str, assume_tz: dt.tzinfo):
        self.url = url
        self.tz = assume_tz
        self.conn = None

    def quote(self, name: str) -> str:
        if "\x00" in name:
            raise UsageError("an identifier cannot contain a NUL character")
        return '"' + name.replace('"', '""') + '"'

    def table(self, spec: str) -> str:
        """``--source-table``: ``name`` or ``schema.name``, each part quoted."""
        return ".".join(self.quote(p) for p in spec.split(".", 1))

    def connect(self):  # pragma: no cover - every dialect overrides
        raise NotImplementedError

    def begin_snapshot(self) -> None:
        """Start the run's one read-only, consistent read."""

    def describe(self, base: str) -> list[Column]:
        raise NotImplementedError

    def stream(self, sql: str, params: list, batch_size: int) -> Iterator[list]:
        raise NotImplementedError

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001 - closing must never hide the run's outcome
                pass
            self.conn = None

    def broken(self) -> bool:
        """Whether the connection itself was lost (a server gone, killed or silent), not a bad query."""
        return False

    def errors(self) -> tuple:
        return ()

    # parameters for a bound ---------------------------------------------------------------
    def param(self, value: int, kind: str, col: Column, upper: bool):
        """A normalised bound as a SQL parameter for this column, or ``None`` (no pushdown).

        Bounds that cannot be exact are moved outward (read a little more, never less).
        """
        if kind == V.INT:
            return value if col.kind in (INT, OTHER) else None
        if kind == V.DATE:
            day = dt.date(1970, 1, 1) + dt.timedelta(days=value // V.US_PER_DAY)
            if col.kind == DATE:
                return day
            if col.kind == TEXT:
                return day.isoformat()
            return None
        instant = V.EPOCH + dt.timedelta(microseconds=value)
        if col.kind == TS_TZ:
            return self.tz_param(instant)
        if col.kind == TS_NAIVE:
            local = instant.astimezone(self.tz).replace(tzinfo=None)
            if self.tz is not dt.timezone.utc:
                local = local + NAIVE_MARGIN if upper else local - NAIVE_MARGIN
            return local
        if col.kind == TEXT:
            day = (instant + dt.timedelta(days=TEXT_MARGIN_DAYS) if upper
                   else instant - dt.timedelta(days=TEXT_MARGIN_DAYS)).date()
            return day.isoformat()  # ISO text sorts by day first whatever follows
        if col.kind == DATE:
            return instant.date() + dt.timedelta(days=1) if upper else instant.date() - dt.timedelta(days=1)
        return None

    def tz_param(self, instant: dt.datetime):
        return instant

    def exact(self, kind: str, col: Column) -> bool:
        """Whether the pushed-down bounds are exact for this column (else they were widened)."""
        if kind == V.INT:
            return col.kind in (INT, OTHER)
        if kind == V.DATE:
            return col.kind in (DATE, TEXT)
        return col.kind == TS_TZ or (col.kind == TS_NAIVE and self.tz is dt.timezone.utc)


def declared_decimal(precision, scale):
    """The Arrow type of a column declared ``numeric(P,S)`` / ``DECIMAL(P,S)``: the source's own
    precision, so the target column is declared alike and a later, larger amount still fits
    (None: no declared precision, or more digits than Arrow's decimal128 keeps)."""
    if precision is None or scale is None or not 0 < precision <= 38 or not 0 <= scale <= precision:
        return None
    return pa.decimal128(precision, scale)


def _unsigned(field) -> bool:
    """Whether a pymysql result field is UNSIGNED (its display length has no sign then); unknown
    counts as unsigned, the side that declares one digit more, never one less."""
    return field is None or bool(getattr(field, "flags", 0) & 32)  # UNSIGNED_FLAG


class Postgres(Dialect):
    name = "postgresql"
    OIDS = {16: ("bool", pa.bool_()), 20: (INT, pa.int64()), 21: (INT, pa.int64()), 23: (INT, pa.int64()),
            700: ("float", pa.float64()), 701: ("float", pa.float64()), 1700: ("numeric", None),
            25: (TEXT, pa.string()), 1043: (TEXT, pa.string()), 1042: (TEXT, pa.string()),
            19: (TEXT, pa.string()), 114: ("json", pa.string()), 3802: ("json", pa.string()),
            1114: (TS_NAIVE, pa.timestamp("us")), 1184: (TS_TZ, pa.timestamp("us", tz="UTC")),
            1082: (DATE, pa.date32())}

    def connect(self):
        import psycopg
        from psycopg.types.string import TextLoader
        parts = urlsplit(self.url)
        q = dict(parse_qsl(parts.query, keep_blank_values=True))
        schema = q.pop("schema", None)
        from .. import netguard
        self.read_timeout = netguard.parse_seconds(q.pop("read_timeout", None), "read_timeout", redact(self.url))
        from urllib.parse import urlencode, urlunsplit
        conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(q), ""))
        kw = {"application_name": "hiwater"}
        if "connect_timeout" not in q:
            kw["connect_timeout"] = 10
        if schema:
            kw["options"] = f"-c search_path={schema}"
        self.conn = psycopg.connect(conninfo, **kw)
        self._guard(lambda: self.conn.execute("SET TIME ZONE 'UTC'"))
        self._guard(self.conn.commit)
        for name in ("json", "jsonb"):  # JSON arrives as its text
            self.conn.adapters.register_loader(name, TextLoader)
        self._n = 0

    def broken(self) -> bool:
        return self.conn is not None and (self.conn.broken or self.conn.closed)

    def begin_snapshot(self) -> None:
        from psycopg import IsolationLevel
        self.conn.isolation_level = IsolationLevel.REPEATABLE_READ
        self.conn.read_only = True

    def errors(self):
        import psycopg
        return (psycopg.Error,)

    def _guard(self, op):
        """Run one round trip; with ``read_timeout``, it must be answered in time (netguard)."""
        import psycopg

        from .. import netguard
        with netguard.deadline(self.conn.fileno, self.read_timeout) as fired:
            try:
                return op()
            except psycopg.Error:
                if fired:
                    raise psycopg.OperationalError(
                        f"the server did not answer within read_timeout={self.read_timeout:g}s") from None
                raise

    def describe(self, base: str) -> list[Column]:
        cur = self._guard(lambda: self.conn.execute(f"SELECT * FROM {base} LIMIT 0"))
        out = []
        for d in cur.description:
            kind, arrow = self.OIDS.get(d.type_code, (OTHER, None))
            if kind == "numeric":
                arrow = declared_decimal(d.precision, d.scale)
            out.append(Column(d.name, kind, arrow))
        return out

    def stream(self, sql, params, batch_size):
        self._n += 1
        guarded = self._guard
        with self.conn.cursor(name=f"hiwater_src_{self._n}") as cur:
            cur.itersize = batch_size
            guarded(lambda: cur.execute(sql, params))
            while True:
                rows = guarded(lambda: cur.fetchmany(batch_size))
                if not rows:
                    return
                yield rows


def fetch_batches(cur, batch_size: int):
    """Rows of an executed DB-API cursor, ``batch_size`` at a time (server-side where it is one)."""
    while True:
        rows = cur.fetchmany(batch_size)
        if not rows:
            return
        yield rows


class MySQL(Dialect):
    name = "mysql"

    def quote(self, name: str) -> str:
        if "\x00" in name:
            raise UsageError("an identifier cannot contain a NUL character")
        return "`" + name.replace("`", "``") + "`"

    def connect(self):
        import pymysql
        parts = urlsplit(self.url)
        q = dict(parse_qsl(parts.query, keep_blank_values=True))
        kw = dict(host=parts.hostname or "localhost", port=parts.port or 3306,
                  user=unquote(parts.username) if parts.username else "root",
                  password=unquote(parts.password) if parts.password else "",
                  database=unquote(parts.path.lstrip("/")) or None, charset=q.pop("charset", "utf8mb4"),
                  connect_timeout=int(q.pop("connect_timeout", 10)), autocommit=True)
        from .. import netguard
        read_timeout = netguard.parse_seconds(q.pop("read_timeout", None), "read_timeout", redact(self.url))
        if read_timeout is not None:  # the driver's own socket timeout: each read must be answered in time
            kw["read_timeout"] = kw["write_timeout"] = read_timeout
        if "unix_socket" in q:
            kw["unix_socket"] = q.pop("unix_socket")
        self.conn = pymysql.connect(**kw)
        with self.conn.cursor() as cur:
            # TIMESTAMP columns are instants: read them in UTC. Identifiers are quoted with backticks.
            cur.execute("SET time_zone = '+00:00'")

    def broken(self) -> bool:
        return self.conn is not None and not self.conn.open

    def begin_snapshot(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")

    def errors(self):
        import pymysql
        return (pymysql.Error,)

    def describe(self, base: str) -> list[Column]:
        from pymysql.constants import FIELD_TYPE as F
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT * FROM {base} LIMIT 0")
            desc = cur.description
            fields = getattr(getattr(cur, "_result", None), "fields", None) or [None] * len(desc)
        out = []
        for d, field in zip(desc, fields):
            t = d[1]
            if t in (F.TINY, F.SHORT, F.LONG, F.LONGLONG, F.INT24, F.YEAR):
                kind, arrow = INT, pa.int64()
            elif t in (F.FLOAT, F.DOUBLE):
                kind, arrow = "float", pa.float64()
            elif t in (F.DECIMAL, F.NEWDECIMAL):  # d[4]: the display length (digits, sign, point)
                kind, arrow = "numeric", declared_decimal(d[4] - (d[5] > 0) - (not _unsigned(field)), d[5])
            elif t == F.TIMESTAMP:
                kind, arrow = TS_TZ, pa.timestamp("us", tz="UTC")
            elif t == F.DATETIME:
                kind, arrow = TS_NAIVE, pa.timestamp("us")
            elif t in (F.DATE, F.NEWDATE):
                kind, arrow = DATE, pa.date32()
            elif t in (F.VARCHAR, F.VAR_STRING, F.STRING, F.JSON, F.ENUM, F.SET, F.TINY_BLOB,
                       F.MEDIUM_BLOB, F.LONG_BLOB, F.BLOB):
                kind, arrow = TEXT, None
            else:
                kind, arrow = OTHER, None
            out.append(Column(d[0], kind, arrow))
        return out

    def tz_param(self, instant):
        return instant.astimezone(dt.timezone.utc).replace(tzinfo=None)  # the session reads UTC

    def stream(self, sql, params, batch_size):
        import pymysql.cursors
        cur = self.conn.cursor(pymysql.cursors.SSCursor)
        try:
            cur.execute(sql, params)
            yield from fetch_batches(cur, batch_size)
        finally:
            if self.conn.open:
                cur.close()  # drains the rest of an unbuffered result
            else:
                _drop_unbuffered(cur)


def _drop_unbuffered(cur) -> None:
    """Forget a pymysql ``SSCursor`` whose connection the driver force-closed (socket lost, server
    killed or gone): closing it would drain the rest of the result from a socket that is now
    ``None`` and raise ``AttributeError``, hiding the driver's own lost-connection error; the
    result's ``__del__`` would try the same. Nothing is left to read, so mark it finished."""
    result = getattr(cur, "_result", None)
    if result is not None:
        result.unbuffered_active = False
    cur.connection = None


class SQLite(Dialect):
    name = "sqlite"
    placeholder = "?"
    escape_percent = False

    def connect(self):
        import os
        import sqlite3
        path = file_path(self.url)
        if path != ":memory:" and not os.path.exists(path):
            raise InputError("no such SQLite database", path=path)
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                                    check_same_thread=False)

    def begin_snapshot(self) -> None:
        self.conn.execute("BEGIN")  # deferred: the snapshot is the first read's

    def errors(self):
        import sqlite3
        return (sqlite3.Error,)

    def describe(self, base: str) -> list[Column]:
        cur = self.conn.execute(f"SELECT * FROM {base} LIMIT 0")
        names = [d[0] for d in cur.description]
        declared = {}
        if not base.startswith("("):
            try:
                declared = {r[1]: (r[2] or "").upper()
                            for r in self.conn.execute(f"PRAGMA table_info({base})")}
            except Exception:  # noqa: BLE001 - a type is only a hint here
                declared = {}
        out = []
        for n in names:
            t = declared.get(n, "")
            kind = INT if "INT" in t else TEXT  # SQLite keeps timestamps as text (ISO-8601)
            out.append(Column(n, kind, None))
        return out

    def param(self, value, kind, col, upper):
        if kind == V.INT:
            return value
        return super().param(value, kind, Column(col.name, TEXT, None), upper)

    def exact(self, kind, col):
        return kind in (V.INT, V.DATE)

    def stream(self, sql, params, batch_size):
        cur = self.conn.execute(sql, params)
        try:
            yield from fetch_batches(cur, batch_size)
        finally:
            cur.close()


class DuckDB(Dialect):
    name = "duckdb"
    placeholder = "?"
    escape_percent = False

    def connect(self):
        import os
        import duckdb
        path = file_path(self.url)
        if path != ":memory:" and not os.path.exists(path):
            raise InputError("no such DuckDB database", path=path)
        self.conn = duckdb.connect(path, read_only=path != ":memory:")

    def begin_snapshot(self) -> None:
        self.conn.execute("BEGIN TRANSACTION")

    def errors(self):
        import duckdb
        return (duckdb.Error,)

    def describe(self, base: str) -> list[Column]:
        desc = self.conn.execute(f"SELECT * FROM {base} LIMIT 0").description
        out = []
        for d in desc:
            t = str(d[1]).upper()
            if t in ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "UBIGINT", "UINTEGER", "USMALLINT", "UTINYINT",
                     "HUGEINT"):
                kind = INT
            elif t in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"):
                kind = TS_TZ
            elif t.startswith("TIMESTAMP"):
                kind = TS_NAIVE
            elif t == "DATE":
                kind = DATE
            elif t == "VARCHAR":
                kind = TEXT
            else:
                kind = OTHER
            out.append(Column(d[0], kind, None))
        return out

    def stream(self, sql, params, batch_size):
        reader = self.conn.sql(sql, params=params or None).to_arrow_reader(batch_size)
        for rb in reader:
            yield rb


DIALECTS = {"postgresql": Postgres, "postgres": Postgres, "mysql": MySQL, "mariadb": MySQL,
            "mysql+pymysql": MySQL, "sqlite": SQLite, "duckdb": DuckDB}
DRIVERS = {Postgres: ("psycopg", "postgres"), MySQL: ("pymysql", "mysql"), DuckDB: ("duckdb", "duckdb")}

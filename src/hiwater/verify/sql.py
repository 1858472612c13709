"""The digest spelled in each SQL dialect, and the cursor normalised in SQL (pure text).

:class:`Dialect` and its subclasses write :mod:`hiwater.verify.digest`'s md5 checksum in
PostgreSQL, MySQL/MariaDB, DuckDB and SQLite (the integer checksum is the same text in every
dialect: :func:`hiwater.verify.digest.int_row_sql`); :func:`cursor_sql` normalises a source's
cursor column to hiwater's integer exactly as :mod:`hiwater.values` does, where a database can.
"""

from __future__ import annotations

import datetime as dt

from .. import values as V
from ..sources import dialects as SD
from . import digest as D

class Dialect:
    """The digest spelled in one SQL dialect. Every expression reads ``_k`` (the key text) and
    ``_c`` (the normalised cursor, a 64-bit integer) from the side's inner SELECT."""

    name = "?"

    def key_text(self, quoted: list[str]) -> str:
        raise NotImplementedError

    def row_hash(self) -> str:
        raise NotImplementedError

    def digest_sum(self) -> str:
        """The sum of the row hashes of a group, as a number the driver returns exactly."""
        return f"SUM({self.row_hash()})"

    def key_hash(self) -> str:
        raise NotImplementedError

    def idiv(self, a: str, b: int) -> str:
        return f"({a}) / {b}"

    def bigint(self, expr: str) -> str:
        """An integer key as a 64-bit integer (PostgreSQL and DuckDB keep a 32-bit column's type
        through ``*``, and overflow)."""
        return expr

    def setup(self, conn) -> None:
        """Register what the database lacks (SQLite's functions)."""


class PostgresSQL(Dialect):
    name = "postgresql"

    def key_text(self, quoted):
        return " || chr(30) || ".join(f"{q}::text" for q in quoted)

    def row_hash(self):
        return "('x' || substr(md5(_k || chr(31) || _c::text), 1, 16))::bit(64)::bigint"

    def key_hash(self):
        return "('x' || substr(md5(_k), 1, 15))::bit(60)::bigint"

    def bigint(self, expr):
        return f"{expr}::bigint"

    def setup(self, conn):
        # A target table the loader filled has no statistics yet: the planner then guesses a
        # few rows in range and sorts them for GROUP BY (on disk, and without parallel workers
        # at first). Every GROUP BY here has few groups: hash them.
        conn.execute("SET enable_sort = off")


class MySQLSQL(Dialect):
    name = "mysql"

    def key_text(self, quoted):
        return f"CONCAT_WS(CHAR(30 USING utf8mb4), {', '.join(quoted)})" if len(quoted) > 1 else \
            f"CAST({quoted[0]} AS CHAR)"

    def row_hash(self):
        return "CAST(CONV(SUBSTR(MD5(CONCAT(_k, CHAR(31 USING utf8mb4), _c)), 1, 16), 16, 10) AS UNSIGNED)"

    def key_hash(self):
        return "CAST(CONV(SUBSTR(MD5(_k), 1, 15), 16, 10) AS UNSIGNED)"

    def idiv(self, a, b):
        return f"({a}) DIV {b}"


class DuckSQL(Dialect):
    name = "duckdb"

    def key_text(self, quoted):
        return " || chr(30) || ".join(f"CAST({q} AS VARCHAR)" for q in quoted)

    def row_hash(self):
        return "CAST('0x' || substr(md5(_k || chr(31) || CAST(_c AS VARCHAR)), 1, 16) AS UBIGINT)"

    def key_hash(self):
        return "CAST('0x' || substr(md5(_k), 1, 15) AS BIGINT)"

    def idiv(self, a, b):
        return f"({a}) // {b}"

    def bigint(self, expr):
        return f"CAST({expr} AS BIGINT)"


class _SqliteDigest:
    """``hw_sum(_k, _c)``: the sum modulo 2**64 of the row hashes, one Python call per row (SQLite
    has no md5, and its own ``sum`` stops at an overflow)."""

    def __init__(self):
        self.total = 0

    def step(self, k, c):
        self.total += D.row_hash(k, c)

    def finalize(self):
        return str(self.total % D.MOD)


class SQLiteSQL(Dialect):
    name = "sqlite"

    def key_text(self, quoted):
        return " || char(30) || ".join(f"CAST({q} AS TEXT)" for q in quoted)

    def digest_sum(self):
        return "hw_sum(_k, _c)"

    def key_hash(self):
        return "hw_key(_k)"

    def setup(self, conn):
        conn.create_function("hw_key", 1, D.key_hash, deterministic=True)
        conn.create_aggregate("hw_sum", 2, _SqliteDigest)


SQL = {"postgresql": PostgresSQL, "mysql": MySQLSQL, "duckdb": DuckSQL, "sqlite": SQLiteSQL}


def cursor_sql(flavour: str, col: SD.Column, quoted: str, kind: str, tz) -> str | None:
    """The SQL that normalises a source's cursor column to hiwater's integer exactly as
    :mod:`hiwater.values` does, or ``None`` where the database cannot (text cursors, naive
    timestamps in a zone with DST outside PostgreSQL): that side is read once instead."""
    c, utc = quoted, tz is dt.timezone.utc
    if kind == V.INT:
        if col.kind != SD.INT:
            return None
        return {"postgresql": f"{c}::bigint", "mysql": f"CAST({c} AS SIGNED)"}.get(flavour, f"CAST({c} AS BIGINT)")
    if kind == V.TIMESTAMP_NS:
        return None  # (nanoseconds: that side is read once, and normalised by hiwater.values)
    if kind == V.DATE:
        if col.kind != SD.DATE:
            return None
        return {"postgresql": f"(({c} - DATE '1970-01-01')::bigint * {V.US_PER_DAY})",
                "mysql": f"(DATEDIFF({c}, '1970-01-01') * {V.US_PER_DAY})",
                "duckdb": f"(CAST({c} - DATE '1970-01-01' AS BIGINT) * {V.US_PER_DAY})"}.get(flavour)
    if col.kind == SD.TS_TZ or (col.kind == SD.TS_NAIVE and utc):
        return {"postgresql": f"(extract(epoch FROM {c}) * 1000000)::bigint",
                "mysql": f"TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {c})",
                "duckdb": f"epoch_us({c})"}.get(flavour)
    if col.kind == SD.TS_NAIVE and flavour == "postgresql" and hasattr(tz, "key"):
        # A wall-clock time in a zone with DST. PostgreSQL resolves a time shown twice to the
        # later instant; hiwater to the earlier one (fold=0): read it an hour early, add the hour
        # back, take the smaller (exact for zones whose clocks move by an hour at most).
        z = "'" + tz.key.replace("'", "''") + "'"
        return (f"(extract(epoch FROM least({c} AT TIME ZONE {z}, "
                f"({c} - interval '1 hour') AT TIME ZONE {z} + interval '1 hour')) * 1000000)::bigint")
    return None


FLOAT_EXACT_US = (1 << 51) - (1 << 16)
"""``round(float(m / 1e6) * 1e6) == m`` for every ``|m|`` up to here: two correctly rounded float
operations err by at most ``|m| * 2**-52 < 0.5`` (1898-08 to 2041-05 in microseconds)."""


def fast_cursor(flavour: str, col: SD.Column, kind: str, tz):
    """PostgreSQL's ``extract(epoch …)`` is a numeric (slow, ~3x ``date_part``'s float); within
    :data:`FLOAT_EXACT_US` of 1970 the float gives the same integer exactly."""
    if flavour != "postgresql" or kind != V.TIMESTAMP:
        return None
    if not (col.kind == SD.TS_TZ or (col.kind == SD.TS_NAIVE and tz is dt.timezone.utc)):
        return None
    return (lambda c: f"(date_part('epoch', {c}) * 1000000)::bigint"), FLOAT_EXACT_US

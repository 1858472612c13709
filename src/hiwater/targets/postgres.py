"""The PostgreSQL target (psycopg 3): ``--target postgresql://user@host:5432/db?schema=NAME``.

- URL query options of hiwater's own (removed before connecting; every other
  parameter goes to libpq): ``schema`` holds the data tables (default: the
  connection's ``current_schema()``, usually ``public``); ``state_schema`` holds
  ``_hiwater_state``, ``_hiwater_history`` and ``_hiwater_quarantine`` (default:
  ``schema``). Both are created if missing.
- ``read_timeout=SECONDS`` (hiwater's own): every statement must get its answer
  within that many seconds, or the run fails with one line and commits nothing
  (:mod:`hiwater.netguard`; a server that stopped answering otherwise blocks forever).
  ``connect_timeout=SECONDS`` (libpq's) bounds connecting; default 10.
- One run per stream: a transaction-scoped advisory lock
  (``pg_advisory_xact_lock``) taken by a second, dedicated connection that keeps
  its transaction open for the whole run, so one runner holds the stream across
  every ``--window`` slice the data connection commits. Waiting is the server's
  (``lock_timeout``); if the runner dies, its connection ends and the server
  releases the lock, with nothing to clean up. Before each commit the data
  connection checks that the lock connection is still alive.
- One transaction per run or slice on the data connection; data, state, history
  and quarantine commit together.
- Bulk path: ``COPY`` the batch into a temporary staging table, then one
  ``INSERT … SELECT … ON CONFLICT (key) DO UPDATE … WHERE`` that applies the
  newer-cursor rule (:func:`upsert_sql`).
- Key lookups: one query per batch, the keys passed as arrays and joined
  through ``unnest(…) WITH ORDINALITY``.
- Types: integer → ``bigint``, real → ``double precision``, text → ``text``,
  boolean → ``boolean``, any (a column first seen all-null) → ``jsonb``; the
  cursor column → ``timestamptz`` (timestamp cursors, microseconds kept),
  ``date`` (date cursors) or ``bigint``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
from contextlib import contextmanager
from typing import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import orjson
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import errors as pgerr
from psycopg.pq import TransactionStatus

from .. import netguard, values as V
from ..errors import ConfigError, ConnectError, LockTimeout, TargetError, UsageError
from ..urls import redact, scrub
from ..types import ANY, BOOLEAN, DECIMAL, INTEGER, REAL, TEXT
from .base import target_flag, CURSOR_COL, HIDDEN, RUN_COL
from .keys import changed_versions, parse_joined, python_keys, Lookup
from .meta import Spelling
from .sql import guard_sql, table_definition, SqlTarget

SQL_TYPES = {INTEGER: "bigint", REAL: "double precision", TEXT: "text", BOOLEAN: "boolean", ANY: "jsonb"}
CURSOR_TYPES = {V.TIMESTAMP: "timestamp with time zone", V.DATE: "date", V.INT: "bigint"}
NAMEDATALEN = 63
ARROW_TYPES = {"bigint": pa.int64(), "integer": pa.int64(), "smallint": pa.int64(), "double precision": pa.float64(),
               "real": pa.float64(), "boolean": pa.bool_(), "text": pa.string(), "jsonb": pa.string(),
               "json": pa.string()}
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


# Run ids come from a sequence: runs of different streams may commit concurrently.
SPELLING = Spelling(text="text", big="bigint", int="integer", real="double precision",
                    updated_at="timestamptz NOT NULL DEFAULT now()", now="now()",
                    quarantine_id="bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
                    sequences=("_hiwater_run_id",), run_ids="_hiwater_run_id", add_column="ADD COLUMN IF NOT EXISTS")


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


class PostgresTarget(SqlTarget):
    spelling = SPELLING
    placeholder = "%s"
    _driver_error = psycopg.Error

    def __init__(self, url: str, *, schema: str | None = None, state_schema: str | None = None,
                 connect_timeout_s: float = 10.0):
        self.url = url
        self.conninfo, ours = split_url(url)
        self.schema = schema or ours.get("schema") or None
        self.state_schema = state_schema or ours.get("state_schema") or None
        self.description = redact(url)
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout = netguard.parse_seconds(ours.get("read_timeout"), "read_timeout", redact(url))
        self.conn: psycopg.Connection | None = None
        self._lock_conn: psycopg.Connection | None = None
        self._types: dict = {}  # table -> {column: SQL type}; cleared on rollback
        self._prune_cols: list | None = None
        self._faults = None  # test-only fault injection (targets/faults.py); None unless asked for
        if os.environ.get("HIWATER_FAULT_AT") or os.environ.get("HIWATER_FAULT_TRACE"):
            from . import faults
            self._faults = faults.from_env(None)
            self._faults.terminate = self._terminate_backend

    # --- connection, locks, transactions ---------------------------------------------
    def _open(self) -> psycopg.Connection:
        kw = {"autocommit": True, "application_name": "hiwater"}
        if "connect_timeout" not in self.conninfo:
            kw["connect_timeout"] = max(1, int(self.connect_timeout_s))
        try:
            conn = psycopg.connect(self.conninfo, **kw)
            with netguard.deadline(conn.fileno, self.read_timeout) as fired:
                try:
                    conn.execute("SET TIME ZONE 'UTC'")
                except psycopg.Error:
                    if fired:
                        raise psycopg.OperationalError(self._no_answer()) from None
                    raise
            return conn
        except psycopg.Error as exc:
            raise ConnectError(f"{self.description}: cannot connect: {self._msg(exc)}") from None

    def connect(self) -> None:
        if self.conn is not None:
            return
        self.conn = self._open()
        if self.schema is None:
            self.schema = self.execute("SELECT current_schema()").fetchone()[0] or "public"
        if self.state_schema is None:
            self.state_schema = self.schema
        self.description = redact(self.url) if "schema=" in self.url else f"{redact(self.url)} (schema {self.schema})"

    def close(self) -> None:
        for name in ("_lock_conn", "conn"):
            conn = getattr(self, name)
            if conn is not None:
                try:
                    conn.close()
                except psycopg.Error:
                    pass
                setattr(self, name, None)

    def _msg(self, exc: Exception) -> str:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return scrub(text, self.url)

    @contextmanager
    def stream_lock(self, stream: str, timeout_s: float) -> Iterator[None]:
        self.connect()
        key = lock_key(self.state_schema, stream)
        lc = self._open()

        def lx(sql, params=None, extra: float = 0.0):  # read_timeout bounds the lock connection too
            with netguard.deadline(lc.fileno, self.read_timeout and self.read_timeout + extra) as fired:
                try:
                    return lc.execute(sql, params)
                except psycopg.Error:
                    if fired:
                        raise psycopg.OperationalError(self._no_answer()) from None
                    raise
        try:
            lx("BEGIN")
            # The holder must not be cut off by server-side idle or statement limits.
            lx("SET LOCAL idle_in_transaction_session_timeout = 0")
            lx("SET LOCAL statement_timeout = 0")
            if timeout_s <= 0:
                got = lx("SELECT pg_try_advisory_xact_lock(%s)", (key,)).fetchone()[0]
            else:
                lx(f"SET LOCAL lock_timeout = {max(1, int(timeout_s * 1000))}")
                try:
                    lx("SELECT pg_advisory_xact_lock(%s)", (key,), extra=timeout_s)
                    got = True
                except pgerr.LockNotAvailable:
                    got = False
            if not got:
                raise LockTimeout(f"stream {stream!r} is being loaded by another run; gave up after {timeout_s:g}s",
                                  hint="wait for it to finish, or raise --lock-timeout")
        except psycopg.Error as exc:
            lc.close()
            raise TargetError(f"{self.description}: taking the stream lock: {self._msg(exc)}") from None
        except BaseException:
            lc.close()
            raise
        self._lock_conn = lc
        try:
            yield
        finally:
            self._lock_conn = None
            try:
                lx("ROLLBACK")  # ends the transaction: releases the lock
            except psycopg.Error:
                pass
            lc.close()

    def _check_lock(self) -> None:
        if self._lock_conn is None:
            return
        try:
            with netguard.deadline(self._lock_conn.fileno, self.read_timeout):
                self._lock_conn.execute("SELECT 1")
        except psycopg.Error:
            raise TargetError(f"{self.description}: lost the stream lock (its connection ended); nothing of "
                              f"this transaction was committed", hint="run again", retryable=True) from None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.connect()
        if self.conn.info.transaction_status != TransactionStatus.IDLE:
            # Nested: a savepoint, so an inner failure leaves the outer transaction usable.
            with self.conn.transaction():
                yield
            return
        with super().transaction():
            yield

    def _begin(self) -> None:
        self.execute("BEGIN")

    def _end(self, sql: str) -> None:
        self._op(sql, lambda: self.conn.execute(sql))

    def _before_commit(self) -> None:
        self._check_lock()

    def _forget_cache(self) -> None:
        self._types.clear()

    def _commit_failed(self, exc: Exception) -> Exception:
        return TargetError(f"{self.description}: commit failed: {self._msg(exc)}")

    @contextmanager
    def _in_transaction(self) -> Iterator[None]:
        """Temporary staging tables need a transaction; open one if the caller did not."""
        if self.conn.info.transaction_status == TransactionStatus.IDLE:
            with self.transaction():
                yield
        else:
            yield

    def execute(self, sql: str, params=None, what: str | None = None):
        if self.conn is None:
            self.connect()
        try:
            return self._op(sql, lambda: self.conn.execute(sql, params))
        except psycopg.Error as exc:
            where = f"{what}: " if what else ""
            raise TargetError(f"{self.description}: {where}{self._msg(exc)}") from None

    def _op(self, sql: str, run):
        """Every statement of the data connection goes through here: the one place a test can
        inject a fault (``targets/faults.py``)."""
        if self.read_timeout is None or self.conn is None:
            return run() if self._faults is None else self._faults.run(run, sql, psycopg.OperationalError)
        with netguard.deadline(self.conn.fileno, self.read_timeout) as fired:
            try:
                return run() if self._faults is None else self._faults.run(run, sql, psycopg.OperationalError)
            except psycopg.Error:
                if fired:
                    raise psycopg.OperationalError(self._no_answer()) from None
                raise

    def _no_answer(self) -> str:
        return (f"the server did not answer within read_timeout={self.read_timeout:g}s"
                " (the connection was closed; nothing of this transaction was committed)")

    def _terminate_backend(self, which: str) -> None:
        """Test-only (``terminate`` faults): end this run's data or lock connection from another
        session, as an administrator's ``pg_terminate_backend`` would."""
        conn = self.conn if which == "data" else self._lock_conn
        if conn is None or conn.closed:
            return
        pid = conn.info.backend_pid
        with psycopg.connect(self.conninfo, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))

    def _q(self, table: str) -> str:
        return f"{quote(self.schema)}.{quote(table)}"

    def _m(self, table: str) -> str:
        return f"{quote(self.state_schema)}.{quote(table)}"

    def meta_name(self, name: str) -> str:
        self.connect()
        return self._m(name)

    # --- the meta store's hooks (targets/meta.py) ----------------------------------------------
    def _exists(self, qualified: str) -> bool:
        return self.execute("SELECT to_regclass(%s) IS NOT NULL", (qualified,)).fetchone()[0]

    def _meta_exists(self, name: str) -> bool:
        return self._exists(self.meta_name(name))

    def _meta_columns(self, name: str) -> set:
        return {r[0] for r in self.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
            (self._m(name),)).fetchall()}

    def _schema_exists(self, name: str) -> bool:
        return self.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,)).fetchone() is not None

    def _ensure_meta(self) -> None:
        needed = ("_hiwater_state", "_hiwater_history", "_hiwater_quarantine", "_hiwater_files", "_hiwater_run_id")
        if not (all(self._meta_exists(n) for n in needed) and self._schema_exists(self.schema)):
            # First use: serialise the DDL of concurrent first runs (CREATE … IF NOT EXISTS can race).
            self.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(self.state_schema, "\x00meta"),))
            for name in dict.fromkeys((self.state_schema, self.schema)):
                if not self._schema_exists(name):
                    self.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(name)}", what=f"creating schema {name!r}")
            self._create_meta()
        self._add_history_columns()

    def _rows(self, sql: str, params=(), what: str | None = None) -> list:
        cur = self.execute(sql, params or None, what=what)
        return cur.fetchall() if cur.description is not None else []

    def _dicts(self, sql: str, params) -> list[dict]:
        cur = self.execute(sql, params)
        names = [d.name for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def _many(self, sql: str, rows: list, what: str) -> None:
        try:
            with self.conn.cursor() as cur:
                self._op(sql, lambda: cur.executemany(sql, rows))
        except psycopg.Error as exc:
            raise TargetError(f"{self.description}: {what}: {self._msg(exc)}") from None

    def _delete_in(self, table: str, column: str, values: list, stream: str | None, what: str) -> None:
        if stream is None:
            self.execute(f"DELETE FROM {table} WHERE {column} = ANY(%s)", (values,), what=what)
        else:
            self.execute(f"DELETE FROM {table} WHERE stream = %s AND {column} = ANY(%s)", (stream, values), what=what)

    def drop_table(self, table: str) -> None:
        self._types.pop(table, None)
        self.execute(f"DROP TABLE IF EXISTS {self._q(table)}", what=f"dropping {table!r}")

    @property
    def flags(self) -> str:
        return target_flag(redact(self.url))

    def cli_flags(self) -> str:
        return self.flags

    # --- data ---------------------------------------------------------------------------------
    def sql_types(self, table: str) -> dict | None:
        """``{column: SQL type}`` of an existing table (cached until a rollback or DDL)."""
        if table in self._types:
            return self._types[table]
        rows = self.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
            " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')"
            " AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum", (self.schema, table)).fetchall()
        types = {r[0]: r[1] for r in rows} if rows else None
        if types is not None:
            self._types[table] = types
        return types

    def table_columns(self, table: str) -> dict | None:
        types = self.sql_types(table)
        return None if types is None else {c: logical(t) for c, t in types.items()}

    def _column_type(self, name: str, logical_type: str) -> str:
        if name == self.cursor_column and self.cursor_kind in CURSOR_TYPES:
            return CURSOR_TYPES[self.cursor_kind]
        if logical_type.startswith(DECIMAL):
            return "numeric"  # exact, any scale: 1.50 stays 1.50
        return SQL_TYPES[logical_type]

    def create_table(self, table: str, columns: dict, key: tuple) -> None:
        defs = table_definition(columns, key, quote, self._column_type, "bigint")
        self._types.pop(table, None)
        self.execute(f"CREATE TABLE {self._q(table)} ({defs})", what=f"creating {table!r}")

    def add_columns(self, table: str, columns: dict) -> None:
        if not columns:
            return
        adds = ", ".join(f"ADD COLUMN {quote(c)} {self._column_type(c, t)}" for c, t in columns.items())
        self._types.pop(table, None)
        self.execute(f"ALTER TABLE {self._q(table)} {adds}", what=f"adding columns to {table!r}")

    def _key_arrays(self, table: str, key: tuple, keys, cursors=None, sqltypes=None) -> tuple[str, list]:
        """``unnest(%s::type[], …) WITH ORDINALITY AS k(k0, …, i)`` and its parameters; with
        ``cursors``, a ``kc`` column of them too. ``keys``: a list (or array) of single keys, or
        of key tuples; ``sqltypes``: the arrays' types, the columns' own by default."""
        types = self.sql_types(table) or {}
        if len(key) == 1:
            arrays = [keys]
        else:
            arrays = [list(col) for col in zip(*keys)] if len(keys) else [[] for _ in key]
        sqltypes = sqltypes or [types.get(k, "text") for k in key]
        casts = [f"%s::{t}[]" for t in sqltypes]
        params = [array_literal(arr, t) for arr, t in zip(arrays, sqltypes)]
        names = [f"k{i}" for i in range(len(key))]
        if cursors is not None:
            casts.append("%s::bigint[]")
            params.append(array_literal(cursors, "bigint"))
            names.append("kc")
        return f"unnest({', '.join(casts)}) WITH ORDINALITY AS k({', '.join(names)}, i)", params

    def lookup_versions(self, table: str, key: tuple, keys: list, cursors, run_id: int) -> Lookup:
        """Any key (composite ones included): the keys go with their cursors as array
        parameters, and PostgreSQL returns only the keys whose row is missing, holds another
        cursor or was written by this run, so a re-read of unchanged data transfers nothing."""
        return self._versions(table, key, keys, cursors, run_id)

    def _versions(self, table: str, key: tuple, keys, cursors, run_id: int, sqltypes=None) -> Lookup:
        if not len(keys):
            return self.lookup(table, key, list(keys))
        cursors = np.asarray(cursors, dtype=np.int64)
        src, params = self._key_arrays(table, key, keys, cursors, sqltypes)
        on = " AND ".join(f"t.{quote(k)} = k.k{i}" for i, k in enumerate(key))
        c, r, k0 = quote(CURSOR_COL), quote(RUN_COL), quote(key[0])
        rows = self.execute(f"SELECT k.i, t.{k0} IS NOT NULL, coalesce(t.{c}, 0), coalesce(t.{r}, 0) FROM {src}"
                            f" LEFT JOIN {self._q(table)} AS t ON {on}"
                            f" WHERE t.{k0} IS NULL OR t.{c} <> k.kc OR t.{r} = %s", params + [run_id],
                            what=f"looking up keys in {table!r}").fetchall()
        got = np.array(rows, dtype=np.int64).reshape(-1, 4)
        return changed_versions(cursors, got[:, 0] - 1, got[:, 1], got[:, 2], got[:, 3])

    def lookup_arrow(self, table: str, key: tuple, keys: list, cursors, run_id: int) -> Lookup | None:
        """Integer keys (others take :meth:`lookup_versions`): see :meth:`SqlTarget._held`."""
        if len(key) != 1 or not pa.types.is_integer(keys[0].type) or not self._range_ok(table, key[0]):
            return None
        return self._held(table, key, keys, cursors, run_id)

    # --- the lookup primitives (the strategy is SqlTarget._held) ---------------------------------
    def _range_ok(self, table: str, column: str) -> bool:
        return (self.sql_types(table) or {}).get(column) in ("bigint", "integer", "smallint")

    def _read_range(self, table: str, column: str, lo: int, hi: int, run_id: int) -> np.ndarray | None:
        """The key range's (key, cursor, run) as three ``string_agg`` texts that numpy parses:
        nothing is sent, no Python object per row."""
        k, c, r = quote(column), quote(CURSOR_COL), quote(RUN_COL)
        row = self.execute(
            f"SELECT count(*), string_agg({k}::text, ','), string_agg({c}::text, ','),"
            f" string_agg({r}::text, ',') FROM {self._q(table)} WHERE {k} BETWEEN %s AND %s",
            (lo, hi), what=f"looking up keys in {table!r}").fetchone()
        return parse_joined(row[0], row[1:])

    def _read_versions(self, table: str, key: tuple, keys: list, cursors, run_id: int) -> Lookup:
        if len(key) == 1 and pa.types.is_integer(keys[0].type) and self._range_ok(table, key[0]):
            ids = keys[0].to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            return self._versions(table, key, ids, cursors, run_id, sqltypes=["bigint"])
        return self._versions(table, key, python_keys(keys), cursors, run_id)

    def lookup(self, table: str, key: tuple, keys: list) -> Lookup:
        n = len(keys)
        exists = np.zeros(n, dtype=bool)
        cursor = np.zeros(n, dtype=np.int64)
        run = np.zeros(n, dtype=np.int64)
        if n == 0:
            return Lookup(exists, cursor, run)
        src, params = self._key_arrays(table, key, keys)
        on = " AND ".join(f"t.{quote(k)} = k.k{i}" for i, k in enumerate(key))
        rows = self.execute(f"SELECT k.i, t.{quote(CURSOR_COL)}, t.{quote(RUN_COL)} FROM {src}"
                            f" JOIN {self._q(table)} AS t ON {on}", params, what=f"looking up keys in {table!r}")
        for i, cur, r in rows:
            exists[i - 1] = True
            cursor[i - 1] = cur
            run[i - 1] = r
        return Lookup(exists, cursor, run)

    def _staging(self, table: str, columns: list) -> tuple[dict, list, list]:
        """For a batch of ``columns``: the columns computed in SQL (the cursor, from
        ``_hiwater_cursor``: exact, whatever the text's zone), the staged ones and their types."""
        types = self.sql_types(table)
        exprs = {}
        for c in columns:
            e = cursor_expr(types.get(c, "")) if c == self.cursor_column else None
            if e is not None:
                exprs[c] = e
        staged = [c for c in list(columns) + [CURSOR_COL, RUN_COL] if c not in exprs]
        stage_types = [types.get(c, "bigint") if c not in (CURSOR_COL, RUN_COL) else "bigint" for c in staged]
        return exprs, staged, stage_types

    def _merge(self, table: str, columns: list, key: tuple, exprs: dict, staged: list, stage_types: list,
               copy) -> None:
        """Stage a batch (``copy(stage)`` fills it) and merge it with one guarded upsert."""
        with self._in_transaction():
            self.execute("DROP TABLE IF EXISTS pg_temp._hiwater_stage")
            self.execute("CREATE TEMP TABLE _hiwater_stage ("
                         + ", ".join(f"{quote(c)} {t}" for c, t in zip(staged, stage_types))
                         + ") ON COMMIT DROP", what="staging a batch")
            copy("_hiwater_stage")
            cur = self.execute(upsert_sql(self._q(table), columns, key, exprs, refresh=self.refresh),
                               what=f"writing {table!r}")
            self.last_written = cur.rowcount
            self.execute("DROP TABLE pg_temp._hiwater_stage")

    def upsert(self, table: str, columns: list, rows: list, key: tuple) -> None:
        if not rows:
            return
        types = self.sql_types(table)
        exprs, staged, stage_types = self._staging(table, columns)
        data = list(zip(*rows))
        pos = {c: i for i, c in enumerate(list(columns) + [CURSOR_COL, RUN_COL])}
        columns_out = [_copy_values(data[pos[c]], types.get(c, "bigint")) for c in staged]
        self._merge(table, columns, key, exprs, staged, stage_types, lambda stage: self._copy_columns(
            stage, staged, columns_out, stage_types, f"writing {table!r}"))

    def upsert_arrow(self, table: str, data: pa.Table, key: tuple, fresh: bool = False) -> None:
        """The batch goes from Arrow to COPY (CSV written in C++) without a Python object per
        value; a column that needs a per-value conversion (jsonb, text from numbers) takes
        the row path."""
        if data.num_rows == 0:
            return
        columns = [c for c in data.column_names if c not in HIDDEN]
        exprs, staged, stage_types = self._staging(table, columns)
        try:
            arrays = {}
            for i, (c, t) in enumerate(zip(staged, stage_types)):
                arr = data.column(c)
                if t not in ARROW_TYPES or t in ("jsonb", "json"):
                    raise pa.ArrowInvalid(f"{t}: values are converted one by one")
                if t == "text" and not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)
                                        or pa.types.is_null(arr.type)):
                    raise pa.ArrowInvalid("text from another type")
                arrays[f"c{i}"] = arr.cast(ARROW_TYPES[t])  # safe casts: a fraction into bigint refuses
            tbl = pa.table(arrays)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return super().upsert_arrow(table, data, key, fresh)
        self._merge(table, columns, key, exprs, staged, stage_types, lambda stage: self._copy_table(
            stage, staged, tbl, f"writing {table!r}"))

    def _copy_columns(self, stage: str, names: list, columns: list, sqltypes: list, what: str) -> None:
        """COPY whole columns: Arrow writes them as CSV in C++; odd values take the row path."""
        try:
            if any(t not in ARROW_TYPES for t in sqltypes):
                raise pa.ArrowInvalid("a column type without a CSV fast path")
            tbl = pa.table({f"c{i}": pa.array(vals, ARROW_TYPES[t])
                            for i, (vals, t) in enumerate(zip(columns, sqltypes))})
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            return self._copy(stage, names, zip(*columns), what)
        self._copy_table(stage, names, tbl, what)

    def _copy_table(self, stage: str, names: list, tbl: pa.Table, what: str) -> None:
        buf = io.BytesIO()
        pacsv.write_csv(tbl, buf, pacsv.WriteOptions(include_header=False, quoting_style="all_valid"))
        def run():
            with self.conn.cursor() as cur:
                with cur.copy(f"COPY pg_temp.{quote(stage)} ({', '.join(quote(c) for c in names)})"
                              f" FROM STDIN (FORMAT csv)") as copy:
                    copy.write(buf.getbuffer())
        try:
            self._op(f"COPY {stage}", run)
        except psycopg.Error as exc:
            raise TargetError(f"{self.description}: {what}: {self._msg(exc)}") from None

    def _copy(self, stage: str, columns: list, rows, what: str) -> None:
        def run():
            with self.conn.cursor() as cur:
                with cur.copy(f"COPY pg_temp.{quote(stage)} ({', '.join(quote(c) for c in columns)})"
                              f" FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
        try:
            self._op(f"COPY {stage}", run)
        except psycopg.Error as exc:
            raise TargetError(f"{self.description}: {what}: {self._msg(exc)}") from None

    def delete_keys(self, table: str, key: tuple, keys: list) -> int:
        if not keys:
            return 0
        src, params = self._key_arrays(table, key, keys)
        on = " AND ".join(f"t.{quote(k)} = k.k{i}" for i, k in enumerate(key))
        cur = self.execute(f"DELETE FROM {self._q(table)} AS t USING {src} WHERE {on}", params,
                           what=f"deleting from {table!r}")
        return cur.rowcount

    def count_rows(self, table: str) -> int:
        if self.sql_types(table) is None:
            return 0
        return int(self.execute(f"SELECT count(*) FROM {self._q(table)}").fetchone()[0])

    def has_rows(self, table: str) -> bool:
        if self.sql_types(table) is None:
            return False
        return self.execute(f"SELECT 1 FROM {self._q(table)} LIMIT 1").fetchone() is not None

    def prune_begin(self, key: tuple) -> None:
        # Seen keys are kept as text: the table may not exist yet when a full load starts.
        self._prune_cols = [f"k{i}" for i in range(len(key))]
        with self._in_transaction():
            self.execute("DROP TABLE IF EXISTS pg_temp._hiwater_seen")
            self.execute("CREATE TEMP TABLE _hiwater_seen ("
                         + ", ".join(f"{c} text" for c in self._prune_cols) + ") ON COMMIT DROP")

    def prune_seen(self, key: tuple, keys: list) -> None:
        rows = ([(_text_key(k),) for k in keys] if len(key) == 1
                else [tuple(_text_key(v) for v in k) for k in keys])
        self._copy("_hiwater_seen", self._prune_cols, rows, "collecting keys for --prune")

    def prune_finish(self, table: str, key: tuple) -> int:
        on = " AND ".join(f"s.k{i} = t.{quote(k)}::text" for i, k in enumerate(key))
        cur = self.execute(f"DELETE FROM {self._q(table)} AS t WHERE NOT EXISTS"
                           f" (SELECT 1 FROM pg_temp._hiwater_seen AS s WHERE {on})", what="--prune")
        self.execute("DROP TABLE IF EXISTS pg_temp._hiwater_seen")
        return cur.rowcount


def array_literal(values: list, sqltype: str) -> str:
    """A PostgreSQL array literal (``{1,2}`` / ``{"a","b"}``): one text parameter, cheap to send."""
    if sqltype in ("bigint", "integer", "smallint"):
        return "{" + ",".join(map(str, np.asarray(values, dtype=np.int64).tolist())) + "}"
    return "{" + ",".join('"' + _as_text(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for v in values) + "}"


def _text_key(v) -> str:
    return v if isinstance(v, str) else str(v)


def _copy_values(values, sqltype: str) -> list:
    """A column's Python values made acceptable to COPY for a column of ``sqltype``."""
    if sqltype in ("bigint", "integer", "smallint"):
        return [int(v) if isinstance(v, float) else v for v in values]
    if sqltype in ("jsonb", "json"):
        return [None if v is None else orjson.dumps(v, default=str).decode() for v in values]
    if sqltype == "text":
        return [v if v is None or isinstance(v, str) else _as_text(v) for v in values]
    return list(values)


def _as_text(v) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    if isinstance(v, (dict, list)):
        return orjson.dumps(v).decode()
    return str(v)


__all__ = ["PostgresTarget", "quote", "upsert_sql", "split_url", "lock_key", "ConfigError"]

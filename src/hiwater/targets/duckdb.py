"""The DuckDB target: ``--target duckdb:///relative.duckdb`` or ``duckdb:////absolute.duckdb``.

- One run at a time per database file: DuckDB lets one process open a file for
  writing, so hiwater takes an OS file lock (``fcntl``) on ``<file>.hwlock``
  first, waiting up to ``--lock-timeout``, then opens the database, and closes it
  before releasing the lock. The kernel releases the lock when the holder dies.
  This is stricter than one runner per stream: two streams of one file queue.
- One transaction per run or window slice: ``BEGIN TRANSACTION`` … ``COMMIT``.
- Bulk path: the batch becomes an Arrow table, registered with DuckDB and merged
  with one ``INSERT … SELECT … ON CONFLICT (key) DO UPDATE … WHERE`` that applies
  the newer-cursor rule. Lookups join a registered Arrow table of keys.
- Types: integer → ``BIGINT``, real → ``DOUBLE``, text → ``VARCHAR``, boolean →
  ``BOOLEAN``, any → ``JSON``; the cursor → ``TIMESTAMPTZ`` (microseconds),
  ``DATE`` or ``BIGINT``.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from decimal import Decimal
from typing import Iterator
from urllib.parse import parse_qsl

import duckdb
import numpy as np
import orjson
import pyarrow as pa

from .. import values as V
from ..errors import LockTimeout, TargetError, UsageError
from ..urls import file_path, redact
from ..types import ANY, BINARY, BOOLEAN, DECIMAL, INTEGER, REAL, TEXT
from .base import CURSOR_COL, RUN_COL, lock_file
from .keys import changed_versions, python_keys, Lookup
from .meta import INT_COLUMNS, Spelling
from .sql import decimal_sql, guard_sql, table_definition, SqlTarget

SQL_TYPES = {INTEGER: "BIGINT", REAL: "DOUBLE", TEXT: "VARCHAR", BOOLEAN: "BOOLEAN", BINARY: "BLOB", ANY: "JSON"}
# A nanosecond cursor is a TIMESTAMP_NS (DuckDB has no zone-aware one): the instant in UTC.
CURSOR_TYPES = {V.TIMESTAMP: "TIMESTAMP WITH TIME ZONE", V.DATE: "DATE", V.INT: "BIGINT",
                V.TIMESTAMP_NS: "TIMESTAMP_NS"}
INT_TYPES = ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER")


def quote(name: str) -> str:
    """Quote an identifier for DuckDB. Every table and column name goes through here."""
    if "\x00" in name:
        raise UsageError("an identifier cannot contain a NUL character")
    return '"' + name.replace('"', '""') + '"'


def logical(sqltype: str) -> str:
    t = sqltype.upper()
    if t in INT_TYPES:
        return INTEGER
    if t.startswith("DECIMAL"):
        return DECIMAL + t[len("DECIMAL"):].replace(" ", "")
    if t in ("DOUBLE", "FLOAT", "REAL"):
        return REAL
    if t == "BOOLEAN":
        return BOOLEAN
    if t == "JSON":
        return ANY
    if t == "BLOB":
        return BINARY
    return TEXT


SPELLING = Spelling(text="VARCHAR", big="BIGINT", int="INTEGER", real="DOUBLE",
                    updated_at="TIMESTAMPTZ NOT NULL DEFAULT current_timestamp", now="now()",
                    quarantine_id="BIGINT PRIMARY KEY DEFAULT nextval('_hiwater_quarantine_id')",
                    sequences=("_hiwater_quarantine_id",), history_indexes=False)  # (columnar: zone maps)


def upsert_sql(table: str, columns: list, key: tuple, stage: str = "_hiwater_stage",
               fresh: bool = False, refresh: bool = False) -> str:
    """The merge of a registered batch: newer cursors replace, older never do (pure builder).

    ``fresh``: the caller knows none of the keys is in the table (a first load into an empty
    one), so a plain INSERT does; a key that was there after all fails it, it never overwrites.
    """
    t = quote(table)
    cols = list(columns) + [CURSOR_COL, RUN_COL]
    names = ", ".join(quote(c) for c in cols)
    if fresh:
        return f"INSERT INTO {t} ({names}) SELECT {names} FROM {stage}"
    sets = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in cols if c not in key)
    guard = guard_sql("EXCLUDED.", f"{t}.", [c for c in columns if c not in key] if refresh else None)
    return (f"INSERT INTO {t} ({names}) SELECT {names} FROM {stage}"
            f" ON CONFLICT ({', '.join(quote(k) for k in key)}) DO UPDATE SET {sets} WHERE {guard}")


class DuckDBTarget(SqlTarget):
    spelling = SPELLING
    _driver_error = duckdb.Error

    def __init__(self, url: str, *, busy_timeout_s: float = 30.0):
        self.url = url
        self.path = file_path(url)
        # URL query parameters are DuckDB settings (``?memory_limit=1GB&threads=2``).
        self.config = dict(parse_qsl(url.split("?", 1)[1])) if "?" in url else {}
        self.memory = self.path == ":memory:"
        self.description = "duckdb (memory)" if self.memory else redact(url)
        self.busy_timeout_s = busy_timeout_s
        self.conn: duckdb.DuckDBPyConnection | None = None
        self._locked = False
        self._seq = 0
        self._types: dict = {}  # table -> {column: SQL type}, see _sql_types
        self._faults = None  # test-only fault injection (targets/faults.py); None unless asked for
        if os.environ.get("HIWATER_FAULT_AT") or os.environ.get("HIWATER_FAULT_TRACE"):
            from . import faults
            self._faults = faults.from_env(None)

    # --- connection, locks, transactions ---------------------------------------------
    def _connect(self) -> None:
        """Check the path; the database itself opens when first used (or under the lock)."""
        if not self.memory:
            parent = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(parent):
                raise TargetError(f"{self.path}: the folder {parent} does not exist")
        if self.memory and self.conn is None:
            self.conn = duckdb.connect(":memory:", config=self.config)

    def _db(self, deadline: float | None = None) -> duckdb.DuckDBPyConnection:
        if self.conn is not None:
            return self.conn
        deadline = deadline if deadline is not None else time.monotonic() + self.busy_timeout_s
        while True:
            try:
                self.conn = duckdb.connect(self.path, config=self.config)
                return self.conn
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise TargetError(f"{self.path}: cannot open as a DuckDB database: {exc}") from None
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"{self.path}: the DuckDB file is in use by another process",
                                      hint="wait for it to finish, or raise --lock-timeout") from None
                time.sleep(0.05)
            except duckdb.Error as exc:
                raise TargetError(f"{self.path}: cannot open as a DuckDB database: {exc}") from None

    def _close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except duckdb.Error:
                pass
            self.conn = None

    @contextmanager
    def lock(self, stream: str, timeout_s: float) -> Iterator[None]:
        if self.memory:
            yield
            return
        self._close()  # never hold the file open while waiting for the lock (another runner needs it)
        deadline = time.monotonic() + max(timeout_s, 0.0)
        fd = lock_file(self.path, self.dry_run)  # None: a dry run where no run ever took a lock
        try:
            while fd is not None:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
                    break
                except OSError:
                    if time.monotonic() >= deadline:
                        raise LockTimeout(
                            f"stream {stream!r} cannot start: {self.path} is being loaded by another run; "
                            f"gave up after {timeout_s:g}s",
                            hint="wait for it to finish, or raise --lock-timeout") from None
                    time.sleep(0.05)
            self._db(deadline)
            self._locked = True
            try:
                yield
            finally:
                self._locked = False
                self._close()  # close the database before the lock goes
        finally:
            if fd is not None:
                os.close(fd)  # closing the descriptor releases the lock

    def _begin(self) -> None:
        self._db()
        self._types.clear()
        self._execute("BEGIN TRANSACTION")

    def _end(self, sql: str) -> None:
        self._op(sql, lambda: self.conn.execute(sql).fetchall())

    def _forget_cache(self) -> None:
        self._types.clear()

    def _run(self, sql: str, params=None, what: str | None = None):
        """Run one statement; the caller must consume its whole result (DuckDB requires it)."""
        conn = self._db()
        try:
            return self._op(sql, lambda: conn.execute(sql, params) if params is not None else conn.execute(sql))
        except duckdb.Error as exc:
            where = f"{what}: " if what else ""
            raise TargetError(f"{self.description}: {where}{str(exc).splitlines()[0]}") from None

    def _op(self, sql: str, run):
        """Every statement goes through here: the one place a test can inject a fault."""
        if self._faults is None:
            return run()
        return self._faults.run(run, sql, duckdb.IOException)

    def _execute(self, sql: str, params=None, what: str | None = None) -> list:
        """Run one statement and return all its rows."""
        res = self._run(sql, params, what)
        try:
            return res.fetchall()
        except duckdb.Error as exc:
            where = f"{what}: " if what else ""
            raise TargetError(f"{self.description}: {where}{str(exc).splitlines()[0]}") from None

    @contextmanager
    def _registered(self, table: pa.Table) -> Iterator[str]:
        self._seq += 1
        name = f"_hiwater_arrow_{self._seq}"
        self._db().register(name, table)
        try:
            yield name
        finally:
            try:
                self.conn.unregister(name)
            except duckdb.Error:
                pass

    # --- the meta store's hooks (targets/meta.py) ----------------------------------------------
    def _meta_exists(self, name: str) -> bool:
        return bool(self._execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?"
                                  " AND schema_name = current_schema()", [name])[0][0])

    def _meta_columns(self, name: str) -> set:
        return {r[0] for r in self._execute("SELECT column_name FROM duckdb_columns() WHERE table_name = ?"
                                            " AND schema_name = current_schema()", [name])}

    def _rows(self, sql: str, params=(), what: str | None = None) -> list:
        return self._execute(sql, params or None, what)

    def _dicts(self, sql: str, params) -> list[dict]:
        cur = self._run(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def _many(self, sql: str, rows: list, what: str) -> None:
        conn = self._db()
        try:
            self._op(sql, lambda: conn.executemany(sql, rows))
        except duckdb.Error as exc:
            raise TargetError(f"{self.description}: {what}: {str(exc).splitlines()[0]}") from None

    def _insert_many(self, table: str, cols: tuple, rows: list, tail: str, what: str) -> None:
        """One set-based insert from a registered Arrow table (DuckDB's executemany is per row)."""
        tbl = pa.table({c: pa.array([r[i] for r in rows], pa.int64() if c in INT_COLUMNS else pa.string())
                        for i, c in enumerate(cols)})
        names = ", ".join(cols)
        with self._registered(tbl) as stage:
            self._execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage}{tail}", what=what)

    def _delete_in(self, table: str, column: str, values: list, stream: str | None, what: str) -> None:
        kind = pa.int64() if column in INT_COLUMNS else pa.string()
        with self._registered(pa.table({column: pa.array(values, kind)})) as stage:
            where = "stream = ? AND " if stream is not None else ""
            self._execute(f"DELETE FROM {table} WHERE {where}{column} IN (SELECT {column} FROM {stage})",
                          [stream] if stream is not None else None, what=what)

    def _drop_table(self, table: str) -> None:
        self._types.pop(table, None)
        self._execute(f"DROP TABLE IF EXISTS {quote(table)}", what=f"dropping {table!r}")

    # --- data ---------------------------------------------------------------------------------
    def _sql_types(self, table: str) -> dict | None:
        """``{column: SQL type}``, remembered for the transaction (one process holds a DuckDB
        file at a time, so only this run changes it; creating or widening a table forgets it)."""
        if table in self._types:
            return self._types[table]
        rows = self._execute("SELECT column_name, data_type FROM duckdb_columns()"
                             " WHERE table_name = ? AND schema_name = current_schema() ORDER BY column_index",
                             [table])
        types = {r[0]: r[1] for r in rows} if rows else None
        if types is not None:
            self._types[table] = types
        return types

    def _columns(self, table: str) -> dict | None:
        types = self._sql_types(table)
        return None if types is None else {c: logical(t) for c, t in types.items()}

    def _column_type(self, name: str, logical_type: str) -> str:
        if name == self._cursor_column and self._cursor_kind in CURSOR_TYPES:
            return CURSOR_TYPES[self._cursor_kind]
        if logical_type == DECIMAL:
            return "VARCHAR"  # no declared precision: the decimal's own digits (as SQLite, Delta)
        if logical_type.startswith(DECIMAL):
            return decimal_sql(logical_type)
        return SQL_TYPES[logical_type]

    def _create_table(self, table: str, columns: dict, key: tuple) -> None:
        self._types.pop(table, None)
        defs = table_definition(columns, key, quote, self._column_type, "BIGINT")
        self._execute(f"CREATE TABLE {quote(table)} ({defs})", what=f"creating {table!r}")

    def _add_columns(self, table: str, columns: dict) -> None:
        self._types.pop(table, None)
        for c, t in columns.items():
            self._execute(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(c)} {self._column_type(c, t)}",
                          what=f"adding a column to {table!r}")

    def _keys_table(self, key: tuple, keys: list, types: dict) -> pa.Table:
        cols = [list(keys)] if len(key) == 1 else ([list(c) for c in zip(*keys)] if keys else [[] for _ in key])
        arrays = {}
        for i, (k, vals) in enumerate(zip(key, cols)):
            if types.get(k, "VARCHAR").upper() in INT_TYPES:
                arrays[f"k{i}"] = pa.array([int(v) for v in vals], pa.int64())
            else:
                arrays[f"k{i}"] = pa.array([v if isinstance(v, str) else str(v) for v in vals], pa.string())
        arrays["i"] = pa.array(np.arange(len(keys), dtype=np.int64))
        return pa.table(arrays)

    def _lookup(self, table: str, key: tuple, keys: list) -> Lookup:
        n = len(keys)
        exists = np.zeros(n, dtype=bool)
        cursor = np.zeros(n, dtype=np.int64)
        run = np.zeros(n, dtype=np.int64)
        if n == 0:
            return Lookup(exists, cursor, run)
        on = " AND ".join(f"t.{quote(k)} = k.k{i}" for i, k in enumerate(key))
        with self._registered(self._keys_table(key, keys, self._sql_types(table) or {})) as stage:
            res = self._run(f"SELECT k.i, t.{quote(CURSOR_COL)}, t.{quote(RUN_COL)} FROM {stage} AS k"
                               f" JOIN {quote(table)} AS t ON {on}", what=f"looking up keys in {table!r}")
            got = res.fetchnumpy()
        idx = np.asarray(got["i"], dtype=np.int64)
        if len(idx):
            exists[idx] = True
            cursor[idx] = np.asarray(got[CURSOR_COL], dtype=np.int64)
            run[idx] = np.asarray(got[RUN_COL], dtype=np.int64)
        return Lookup(exists, cursor, run)

    # --- the lookup primitives (the strategy is SqlTarget._held) ---------------------------------
    def _staged_keys(self, table: str, key: tuple, keys: list) -> dict | None:
        """The key arrays cast to their columns' types (``k0``, …), or ``None`` if one does not pair."""
        types = self._sql_types(table) or {}
        stage = {}
        for i, (k, arr) in enumerate(zip(key, keys)):
            t = types.get(k, "VARCHAR").upper()
            if t in INT_TYPES and pa.types.is_integer(arr.type):
                stage[f"k{i}"] = arr.cast(pa.int64())
            elif t == "VARCHAR" and (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
                stage[f"k{i}"] = arr.cast(pa.string())
            else:
                return None
        return stage

    def _range_ok(self, table: str, column: str) -> bool:
        return (self._sql_types(table) or {}).get(column, "").upper() in ("BIGINT", "INTEGER", "SMALLINT", "TINYINT")

    def _read_range(self, table: str, column: str, lo: int, hi: int, run_id: int) -> np.ndarray:
        """The key range's versions as columns (``fetchnumpy``)."""
        k, c, r = quote(column), quote(CURSOR_COL), quote(RUN_COL)
        got = self._run(f"SELECT {k} AS k, {c} AS c, {r} AS r FROM {quote(table)} WHERE {k} BETWEEN ? AND ?",
                        [lo, hi], what=f"looking up keys in {table!r}").fetchnumpy()
        return np.stack([np.asarray(got[x], dtype=np.int64) for x in ("k", "c", "r")], axis=1)

    def _read_versions(self, table: str, key: tuple, keys: list, cursors, run_id: int) -> Lookup:
        """The keys and their cursors registered as Arrow; DuckDB returns only the keys whose row
        is missing, holds another cursor or was written by this run."""
        stage = self._staged_keys(table, key, keys)
        if stage is None:
            return self._lookup(table, key, python_keys(keys))
        c, r, k0 = quote(CURSOR_COL), quote(RUN_COL), quote(key[0])
        stage["c"] = pa.array(cursors, pa.int64())
        stage["i"] = pa.array(np.arange(len(keys[0]), dtype=np.int64))
        on = " AND ".join(f"t.{quote(k)} = k.k{i}" for i, k in enumerate(key))
        with self._registered(pa.table(stage)) as name:
            res = self._run(f"SELECT k.i, t.{k0} IS NOT NULL AS found, coalesce(t.{c}, 0) AS c,"
                            f" coalesce(t.{r}, 0) AS r FROM {name} AS k LEFT JOIN {quote(table)} AS t ON {on}"
                            f" WHERE t.{k0} IS NULL OR t.{c} <> k.c OR t.{r} = ?", [run_id],
                            what=f"looking up keys in {table!r}")
            got = res.fetchnumpy()
        return changed_versions(cursors, got["i"], got["found"], got["c"], got["r"])

    def _upsert(self, table: str, data: pa.Table, key: tuple, *, fresh: bool = False,
                refresh: bool = False) -> int | None:
        """The Arrow bulk path: the batch is cast column by column to the target's types and
        registered as it is; no Python objects are built. Falls back to rows if a cast refuses."""
        if data.num_rows == 0:
            return None
        types = self._sql_types(table) or {}
        columns = [c for c in data.column_names if c not in (CURSOR_COL, RUN_COL)]
        cursor_us = data.column(CURSOR_COL).combine_chunks()
        arrays = {}
        try:
            for c in columns + [CURSOR_COL, RUN_COL]:
                t = types.get(c, "BIGINT").upper()
                arr = data.column(c).combine_chunks()
                if c == self._cursor_column and t == "TIMESTAMP WITH TIME ZONE":
                    arrays[c] = cursor_us.cast(pa.timestamp("us", tz="UTC"))
                elif c == self._cursor_column and t == "TIMESTAMP_NS":
                    arrays[c] = cursor_us.cast(pa.timestamp("ns"))  # nanoseconds, exact
                elif c == self._cursor_column and t == "DATE":
                    days = pa.array(cursor_us.to_numpy() // V.US_PER_DAY, pa.int32())
                    arrays[c] = days.cast(pa.date32())
                elif t in INT_TYPES:
                    arrays[c] = arr.cast(pa.int64())
                elif t.startswith("DECIMAL"):
                    p, s = (int(x) for x in t[t.index("(") + 1:-1].split(","))
                    arrays[c] = arr.cast(pa.decimal128(p, s))  # safe: refuses to round
                elif t in ("DOUBLE", "FLOAT", "REAL"):
                    arrays[c] = arr.cast(pa.float64())
                elif t == "BOOLEAN":
                    arrays[c] = arr.cast(pa.bool_())
                elif t == "BLOB" and (pa.types.is_binary(arr.type) or pa.types.is_null(arr.type)):
                    arrays[c] = arr.cast(pa.binary())
                elif t != "JSON" and (pa.types.is_string(arr.type) or pa.types.is_null(arr.type)):
                    arrays[c] = arr.cast(pa.string())
                else:
                    raise pa.ArrowInvalid(f"{c}: {arr.type} into {t}")
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return self._upsert_python(table, data, key, refresh)
        with self._registered(pa.table(arrays)) as stage:
            rows = self._execute(upsert_sql(table, columns, key, stage, fresh, refresh), what=f"writing {table!r}")
        return int(rows[0][0]) if rows else None

    def _upsert_rows(self, table: str, columns: list, rows: list, key: tuple, refresh: bool) -> int | None:
        if not rows:
            return None
        types = self._sql_types(table) or {}
        cols = list(columns) + [CURSOR_COL, RUN_COL]
        data = list(zip(*rows))
        cursor_us = pa.array(data[-2], pa.int64())
        arrays = {}
        for i, c in enumerate(cols):
            t = types.get(c, "BIGINT").upper()
            if c == self._cursor_column and t == "TIMESTAMP WITH TIME ZONE":
                arrays[c] = cursor_us.cast(pa.timestamp("us", tz="UTC"))  # exact, from the normalised value
            elif c == self._cursor_column and t == "TIMESTAMP_NS":
                arrays[c] = cursor_us.cast(pa.timestamp("ns"))
            elif c == self._cursor_column and t == "DATE":
                arrays[c] = pa.array(np.asarray(data[-2], dtype=np.int64) // V.US_PER_DAY, pa.int32()).cast(pa.date32())
            else:
                arrays[c] = _arrow(data[i], t)
        with self._registered(pa.table(arrays)) as stage:
            rows = self._execute(upsert_sql(table, columns, key, stage, refresh=refresh), what=f"writing {table!r}")
        return int(rows[0][0]) if rows else None

    def _delete_keys(self, table: str, key: tuple, keys: list) -> int:
        if not keys:
            return 0
        on = " AND ".join(f"{quote(table)}.{quote(k)} = k.k{i}" for i, k in enumerate(key))
        with self._registered(self._keys_table(key, keys, self._sql_types(table) or {})) as stage:
            row = self._execute(f"DELETE FROM {quote(table)} USING {stage} AS k WHERE {on}",
                                what=f"deleting from {table!r}")[0]
        return int(row[0]) if row else 0

    def _count_rows(self, table: str) -> int:
        if self._sql_types(table) is None:
            return 0
        return int(self._execute(f"SELECT count(*) FROM {quote(table)}")[0][0])

    def _prune_begin(self, key: tuple) -> None:
        # Seen keys are kept as text: the table may not exist yet when a full load starts.
        cols = ", ".join(f"k{i} VARCHAR" for i in range(len(key)))
        self._execute("DROP TABLE IF EXISTS temp._hiwater_seen")
        self._execute(f"CREATE TEMP TABLE _hiwater_seen ({cols})")

    def _prune_seen(self, key: tuple, keys: list) -> None:
        tbl = self._keys_table(key, keys, {}).drop(["i"])
        with self._registered(tbl) as stage:
            self._execute(f"INSERT INTO temp._hiwater_seen SELECT * FROM {stage}", what="collecting keys for --prune")

    def _prune_finish(self, table: str, key: tuple) -> int:
        on = " AND ".join(f"s.k{i} = CAST(t.{quote(k)} AS VARCHAR)" for i, k in enumerate(key))
        row = self._execute(f"DELETE FROM {quote(table)} AS t WHERE NOT EXISTS"
                            f" (SELECT 1 FROM temp._hiwater_seen AS s WHERE {on})", what="--prune")[0]
        self._execute("DROP TABLE IF EXISTS temp._hiwater_seen")
        return int(row[0]) if row else 0


def _arrow(values, sqltype: str) -> pa.Array:
    """One staged column, typed as its target column."""
    if sqltype in INT_TYPES:
        return pa.array([int(v) if isinstance(v, float) else v for v in values], pa.int64())
    if sqltype.startswith("DECIMAL"):  # exact: the decimal's own digits, never a double
        p, s = (int(x) for x in sqltype[sqltype.index("(") + 1:-1].split(","))
        return pa.array([None if v is None else Decimal(str(v)) for v in values], pa.decimal128(p, s))
    if sqltype in ("DOUBLE", "FLOAT", "REAL"):
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    if sqltype == "BLOB":
        return pa.array(values, pa.binary())
    if sqltype == "BOOLEAN":
        return pa.array(values, pa.bool_())
    if sqltype == "JSON":
        return pa.array([None if v is None else orjson.dumps(v, default=str).decode() for v in values], pa.string())
    return pa.array([v if v is None or isinstance(v, str) else str(v) for v in values], pa.string())


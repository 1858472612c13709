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
from typing import Iterator
from urllib.parse import parse_qsl

import duckdb
import numpy as np
import orjson
import pyarrow as pa

from .. import values as V
from ..errors import LockTimeout, TargetError, UsageError
from ..state import StreamState
from ..urls import file_path, redact
from .metaquery import FILES_COLS, files_read_query, files_rows, history_query, manifest, quarantine_query
from ..types import ANY, BOOLEAN, DECIMAL, INTEGER, REAL, TEXT
from .base import CURSOR_COL, RUN_COL
from .keys import changed_versions, dense, match_held, Lookup
from .sql import HISTORY_ADDED, decimal_sql, guard_sql, table_definition, SqlTarget

SQL_TYPES = {INTEGER: "BIGINT", REAL: "DOUBLE", TEXT: "VARCHAR", BOOLEAN: "BOOLEAN", ANY: "JSON"}
CURSOR_TYPES = {V.TIMESTAMP: "TIMESTAMP WITH TIME ZONE", V.DATE: "DATE", V.INT: "BIGINT"}
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
    return TEXT


META_DDL = [
    """CREATE TABLE IF NOT EXISTS _hiwater_state (
        stream VARCHAR PRIMARY KEY, table_name VARCHAR NOT NULL, key_columns VARCHAR NOT NULL,
        cursor_column VARCHAR NOT NULL, kind VARCHAR, watermark BIGINT, naive INTEGER NOT NULL DEFAULT 1,
        assume_tz VARCHAR NOT NULL DEFAULT 'UTC', last_run BIGINT, version INTEGER NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp)""",
    """CREATE TABLE IF NOT EXISTS _hiwater_history (
        run_id BIGINT NOT NULL, window_index INTEGER NOT NULL DEFAULT 0, stream VARCHAR NOT NULL,
        started_at VARCHAR NOT NULL, finished_at VARCHAR NOT NULL, mode VARCHAR NOT NULL,
        outcome VARCHAR NOT NULL, source_records BIGINT, loaded BIGINT, skipped BIGINT, inserted BIGINT,
        updated BIGINT, unchanged BIGINT, late BIGINT, late_applied BIGINT, future BIGINT,
        below_window BIGINT, rejected BIGINT, deleted BIGINT, watermark_before VARCHAR,
        watermark_after VARCHAR, watermark_before_value BIGINT, watermark_after_value BIGINT,
        window_lo VARCHAR, window_hi VARCHAR, max_lateness VARCHAR, detail VARCHAR, duration_s DOUBLE,
        error VARCHAR,
        PRIMARY KEY (run_id, window_index))""",
    "CREATE SEQUENCE IF NOT EXISTS _hiwater_quarantine_id",
    """CREATE TABLE IF NOT EXISTS _hiwater_quarantine (
        id BIGINT PRIMARY KEY DEFAULT nextval('_hiwater_quarantine_id'), stream VARCHAR NOT NULL,
        reason VARCHAR NOT NULL, detail VARCHAR, source VARCHAR, record_no BIGINT, key VARCHAR,
        cursor VARCHAR, cursor_value BIGINT, record VARCHAR NOT NULL, fingerprint VARCHAR NOT NULL,
        first_run BIGINT NOT NULL, last_run BIGINT NOT NULL, seen BIGINT NOT NULL DEFAULT 1,
        UNIQUE (stream, reason, fingerprint))""",
    # The file manifest (SPEC §10): one row per file of a folder/glob source a run applied.
    """CREATE TABLE IF NOT EXISTS _hiwater_files (
        stream VARCHAR NOT NULL, path VARCHAR NOT NULL, size BIGINT NOT NULL, mtime_ns BIGINT, etag VARCHAR,
        run_id BIGINT NOT NULL, PRIMARY KEY (stream, path))""",
]
STATE_COLS = ("stream, table_name, key_columns, cursor_column, kind, watermark, naive, assume_tz,"
              " last_run, version")
QUARANTINE_COLS = ("stream", "reason", "detail", "source", "record_no", "key", "cursor", "cursor_value",
                   "record", "fingerprint", "first_run", "last_run", "seen")


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
    dialect = "duckdb"

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
        self._types: dict = {}  # table -> {column: SQL type}, see sql_types
        self._faults = None  # test-only fault injection (targets/faults.py); None unless asked for
        if os.environ.get("HIWATER_FAULT_AT") or os.environ.get("HIWATER_FAULT_TRACE"):
            from . import faults
            self._faults = faults.from_env(None)

    # --- connection, locks, transactions ---------------------------------------------
    def connect(self) -> None:
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

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except duckdb.Error:
                pass
            self.conn = None

    @contextmanager
    def stream_lock(self, stream: str, timeout_s: float) -> Iterator[None]:
        if self.memory:
            yield
            return
        self.close()  # never hold the file open while waiting for the lock (another runner needs it)
        deadline = time.monotonic() + max(timeout_s, 0.0)
        fd = os.open(self.path + ".hwlock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
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
                self.close()  # close the database before the lock goes
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    @contextmanager
    def transaction(self) -> Iterator[None]:
        conn = self._db()
        self._types.clear()
        self.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self._types.clear()
            try:
                self._op("ROLLBACK", lambda: conn.execute("ROLLBACK").fetchall())
            except duckdb.Error:
                pass  # the original error matters more than a failed rollback
            raise
        else:
            try:
                self._op("COMMIT", lambda: conn.execute("COMMIT").fetchall())
            except duckdb.Error as exc:
                try:
                    self._op("ROLLBACK", lambda: conn.execute("ROLLBACK").fetchall())
                except duckdb.Error:
                    pass
                raise TargetError(f"{self.description}: commit failed: {exc}") from None

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

    def execute(self, sql: str, params=None, what: str | None = None) -> list:
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

    # --- state, history, quarantine ----------------------------------------------------
    def _has_meta(self) -> bool:
        row = self.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = '_hiwater_state'"
                           " AND schema_name = current_schema()")[0]
        return bool(row[0])

    def ensure_meta(self) -> None:
        for ddl in META_DDL:
            self.execute(ddl, what="creating the _hiwater_* tables")
        have = {r[0] for r in self.execute("SELECT column_name FROM duckdb_columns() WHERE table_name ="
                                           " '_hiwater_history' AND schema_name = current_schema()")}
        for name, logical in HISTORY_ADDED.items():  # a file made before these columns existed
            if name not in have:
                self.execute(f"ALTER TABLE _hiwater_history ADD COLUMN {quote(name)} "
                             f"{'DOUBLE' if logical == REAL else 'VARCHAR'}", what="adding a history column")

    def read_state(self, stream: str) -> StreamState | None:
        if not self._has_meta():
            return None
        row = self.execute(f"SELECT {STATE_COLS} FROM _hiwater_state WHERE stream = ?", [stream])
        return _state(row[0]) if row else None

    def list_states(self) -> list[StreamState]:
        if not self._has_meta():
            return []
        return [_state(r) for r in self.execute(f"SELECT {STATE_COLS} FROM _hiwater_state ORDER BY stream")]

    def write_state(self, s: StreamState) -> None:
        self.execute(
            f"INSERT INTO _hiwater_state ({STATE_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT (stream) DO UPDATE SET table_name = EXCLUDED.table_name,"
            " key_columns = EXCLUDED.key_columns, cursor_column = EXCLUDED.cursor_column,"
            " kind = EXCLUDED.kind, watermark = EXCLUDED.watermark, naive = EXCLUDED.naive,"
            " assume_tz = EXCLUDED.assume_tz, last_run = EXCLUDED.last_run, version = EXCLUDED.version,"
            " updated_at = now()",
            [s.stream, s.table, orjson.dumps(list(s.key)).decode(), s.cursor, s.kind, s.watermark,
             int(s.naive), s.assume_tz, s.last_run, s.version], what="writing the state")

    def delete_state(self, stream: str) -> None:
        self.execute("DELETE FROM _hiwater_state WHERE stream = ?", [stream])

    def forget_stream(self, stream: str) -> None:
        for t in ("_hiwater_history", "_hiwater_quarantine", "_hiwater_files"):
            self.execute(f"DELETE FROM {t} WHERE stream = ?", [stream])

    def read_files(self, stream: str) -> dict:
        if not self._has_meta():
            return {}
        return manifest(self.execute(*files_read_query("_hiwater_files", "?", stream)))

    def write_files(self, stream: str, entries: list, run_id: int) -> None:
        """One set-based upsert from a registered Arrow table (DuckDB's executemany is per row)."""
        if not entries:
            return
        cols = list(zip(*files_rows(stream, entries, run_id)))
        types = (pa.string(), pa.string(), pa.int64(), pa.int64(), pa.string(), pa.int64())
        tbl = pa.table({c: pa.array(v, t) for c, v, t in zip(FILES_COLS, cols, types)})
        names = ", ".join(FILES_COLS)
        with self._registered(tbl) as stage:
            self.execute(f"INSERT INTO _hiwater_files ({names}) SELECT {names} FROM {stage}"
                         " ON CONFLICT (stream, path) DO UPDATE SET size = EXCLUDED.size,"
                         " mtime_ns = EXCLUDED.mtime_ns, etag = EXCLUDED.etag, run_id = EXCLUDED.run_id",
                         what="writing the file manifest")

    def delete_files(self, stream: str, paths: list) -> None:
        if paths:
            with self._registered(pa.table({"path": pa.array(list(paths), pa.string())})) as stage:
                self.execute(f"DELETE FROM _hiwater_files WHERE stream = ? AND path IN (SELECT path FROM {stage})",
                             [stream], what="writing the file manifest")

    def drop_table(self, table: str) -> None:
        self._types.pop(table, None)
        self.execute(f"DROP TABLE IF EXISTS {quote(table)}", what=f"dropping {table!r}")

    def next_run_id(self) -> int:
        # One process writes a DuckDB file at a time (the file lock), so max + 1 is safe.
        return int(self.execute("SELECT COALESCE(MAX(run_id), 0) + 1 FROM _hiwater_history")[0][0])

    def write_history(self, row: dict) -> None:
        cols = list(row)
        updates = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in cols
                            if c not in ("run_id", "window_index"))
        self.execute(f"INSERT INTO _hiwater_history ({', '.join(quote(c) for c in cols)})"
                     f" VALUES ({', '.join('?' for _ in cols)})"
                     f" ON CONFLICT (run_id, window_index) DO UPDATE SET {updates}",
                     [row[c] for c in cols], what="writing the history")

    def _dicts(self, sql: str, params) -> list[dict]:
        cur = self._run(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def read_history(self, stream: str | None = None, limit: int | None = None) -> list[dict]:
        if not self._has_meta():
            return []
        return self._dicts(*history_query("_hiwater_history", "?", stream, limit))


    def write_quarantine(self, rows: list[dict]) -> None:
        if not rows:
            return
        grouped: dict = {}
        for r in rows:  # one row per (stream, reason, fingerprint); repeats count as `seen`
            k = (r["stream"], r["reason"], r["fingerprint"])
            seen = grouped[k]["seen"] + 1 if k in grouped else 1
            grouped[k] = dict(r, seen=seen, first_run=r["run"], last_run=r["run"])
        vals = list(grouped.values())
        ints = ("record_no", "cursor_value", "first_run", "last_run", "seen")
        tbl = pa.table({c: pa.array([v[c] for v in vals], pa.int64() if c in ints else pa.string())
                        for c in QUARANTINE_COLS})
        names = ", ".join(QUARANTINE_COLS)
        with self._registered(tbl) as stage:
            self.execute(
                f"INSERT INTO _hiwater_quarantine ({names}) SELECT {names} FROM {stage}"
                " ON CONFLICT (stream, reason, fingerprint) DO UPDATE SET last_run = EXCLUDED.last_run,"
                " seen = _hiwater_quarantine.seen + EXCLUDED.seen, detail = EXCLUDED.detail,"
                " source = EXCLUDED.source, record_no = EXCLUDED.record_no", what="writing quarantine")

    def read_quarantine(self, stream: str | None = None, reason: str | None = None,
                        limit: int | None = None) -> list[dict]:
        if not self._has_meta():
            return []
        return self._dicts(*quarantine_query("_hiwater_quarantine", "?", stream, reason, limit))

    def delete_quarantine(self, ids: list[int]) -> None:
        if ids:
            with self._registered(pa.table({"id": pa.array(ids, pa.int64())})) as stage:
                self.execute(f"DELETE FROM _hiwater_quarantine WHERE id IN (SELECT id FROM {stage})")

    # --- data ---------------------------------------------------------------------------------
    def sql_types(self, table: str) -> dict | None:
        """``{column: SQL type}``, remembered for the transaction (one process holds a DuckDB
        file at a time, so only this run changes it; creating or widening a table forgets it)."""
        if table in self._types:
            return self._types[table]
        rows = self.execute("SELECT column_name, data_type FROM duckdb_columns()"
                            " WHERE table_name = ? AND schema_name = current_schema() ORDER BY column_index",
                            [table])
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
            return decimal_sql(logical_type)
        return SQL_TYPES[logical_type]

    def create_table(self, table: str, columns: dict, key: tuple) -> None:
        self._types.pop(table, None)
        defs = table_definition(columns, key, quote, self._column_type, "BIGINT")
        self.execute(f"CREATE TABLE {quote(table)} ({defs})", what=f"creating {table!r}")

    def add_columns(self, table: str, columns: dict) -> None:
        self._types.pop(table, None)
        for c, t in columns.items():
            self.execute(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(c)} {self._column_type(c, t)}",
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

    def lookup(self, table: str, key: tuple, keys: list) -> Lookup:
        n = len(keys)
        exists = np.zeros(n, dtype=bool)
        cursor = np.zeros(n, dtype=np.int64)
        run = np.zeros(n, dtype=np.int64)
        if n == 0:
            return Lookup(exists, cursor, run)
        on = " AND ".join(f"t.{quote(k)} = k.k{i}" for i, k in enumerate(key))
        with self._registered(self._keys_table(key, keys, self.sql_types(table) or {})) as stage:
            res = self._run(f"SELECT k.i, t.{quote(CURSOR_COL)}, t.{quote(RUN_COL)} FROM {stage} AS k"
                               f" JOIN {quote(table)} AS t ON {on}", what=f"looking up keys in {table!r}")
            got = res.fetchnumpy()
        idx = np.asarray(got["i"], dtype=np.int64)
        if len(idx):
            exists[idx] = True
            cursor[idx] = np.asarray(got[CURSOR_COL], dtype=np.int64)
            run[idx] = np.asarray(got[RUN_COL], dtype=np.int64)
        return Lookup(exists, cursor, run)

    def lookup_arrow(self, table: str, key: tuple, keys: list, cursors, run_id: int) -> Lookup | None:
        """The keys and their cursors registered as Arrow; DuckDB returns only the keys whose row
        is missing, holds another cursor or was written by this run (see
        :meth:`Target.lookup_versions`), so a re-read of unchanged data transfers nothing."""
        types = self.sql_types(table) or {}
        stage = {}
        for i, (k, arr) in enumerate(zip(key, keys)):
            t = types.get(k, "VARCHAR").upper()
            if t in INT_TYPES and pa.types.is_integer(arr.type):
                stage[f"k{i}"] = arr.cast(pa.int64())
            elif t == "VARCHAR" and (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
                stage[f"k{i}"] = arr.cast(pa.string())
            else:
                return None  # other pairings convert per value: the Python path
        n = len(keys[0])
        cursors = np.asarray(cursors, dtype=np.int64)
        c, r = quote(CURSOR_COL), quote(RUN_COL)
        if len(key) == 1 and types.get(key[0], "").upper() in ("BIGINT", "INTEGER", "SMALLINT", "TINYINT"):
            ids = stage["k0"].to_numpy(zero_copy_only=False)
            if dense(ids):  # ids that grow with time: read the key range's versions as columns
                k = quote(key[0])
                got = self._run(f"SELECT {k} AS k, {c} AS c, {r} AS r FROM {quote(table)}"
                                f" WHERE {k} BETWEEN ? AND ?", [int(ids.min()), int(ids.max())],
                                what=f"looking up keys in {table!r}").fetchnumpy()
                held = np.stack([np.asarray(got[x], dtype=np.int64) for x in ("k", "c", "r")], axis=1)
                return match_held(ids, held)
        stage["c"] = pa.array(cursors, pa.int64())
        stage["i"] = pa.array(np.arange(n, dtype=np.int64))
        on = " AND ".join(f"t.{quote(k)} = k.k{i}" for i, k in enumerate(key))
        k0 = quote(key[0])
        with self._registered(pa.table(stage)) as name:
            res = self._run(f"SELECT k.i, t.{k0} IS NOT NULL AS found, coalesce(t.{c}, 0) AS c,"
                            f" coalesce(t.{r}, 0) AS r FROM {name} AS k LEFT JOIN {quote(table)} AS t ON {on}"
                            f" WHERE t.{k0} IS NULL OR t.{c} <> k.c OR t.{r} = ?", [run_id],
                            what=f"looking up keys in {table!r}")
            got = res.fetchnumpy()
        return changed_versions(cursors, got["i"], got["found"], got["c"], got["r"])

    def upsert_arrow(self, table: str, data: pa.Table, key: tuple, fresh: bool = False) -> None:
        """The Arrow bulk path: the batch is cast column by column to the target's types and
        registered as it is; no Python objects are built. Falls back to rows if a cast refuses."""
        if data.num_rows == 0:
            return
        types = self.sql_types(table) or {}
        columns = [c for c in data.column_names if c not in (CURSOR_COL, RUN_COL)]
        cursor_us = data.column(CURSOR_COL).combine_chunks()
        arrays = {}
        try:
            for c in columns + [CURSOR_COL, RUN_COL]:
                t = types.get(c, "BIGINT").upper()
                arr = data.column(c).combine_chunks()
                if c == self.cursor_column and t == "TIMESTAMP WITH TIME ZONE":
                    arrays[c] = cursor_us.cast(pa.timestamp("us", tz="UTC"))
                elif c == self.cursor_column and t == "DATE":
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
                elif t != "JSON" and (pa.types.is_string(arr.type) or pa.types.is_null(arr.type)):
                    arrays[c] = arr.cast(pa.string())
                else:
                    raise pa.ArrowInvalid(f"{c}: {arr.type} into {t}")
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return super().upsert_arrow(table, data, key)
        with self._registered(pa.table(arrays)) as stage:
            rows = self.execute(upsert_sql(table, columns, key, stage, fresh, self.refresh), what=f"writing {table!r}")
        self.last_written = int(rows[0][0]) if rows else None

    def upsert(self, table: str, columns: list, rows: list, key: tuple) -> None:
        if not rows:
            return
        types = self.sql_types(table) or {}
        cols = list(columns) + [CURSOR_COL, RUN_COL]
        data = list(zip(*rows))
        cursor_us = pa.array(data[-2], pa.int64())
        arrays = {}
        for i, c in enumerate(cols):
            t = types.get(c, "BIGINT").upper()
            if c == self.cursor_column and t == "TIMESTAMP WITH TIME ZONE":
                arrays[c] = cursor_us.cast(pa.timestamp("us", tz="UTC"))  # exact, from the normalised value
            elif c == self.cursor_column and t == "DATE":
                arrays[c] = pa.array(np.asarray(data[-2], dtype=np.int64) // V.US_PER_DAY, pa.int32()).cast(pa.date32())
            else:
                arrays[c] = _arrow(data[i], t)
        with self._registered(pa.table(arrays)) as stage:
            rows = self.execute(upsert_sql(table, columns, key, stage, refresh=self.refresh), what=f"writing {table!r}")
        self.last_written = int(rows[0][0]) if rows else None

    def delete_keys(self, table: str, key: tuple, keys: list) -> int:
        if not keys:
            return 0
        on = " AND ".join(f"{quote(table)}.{quote(k)} = k.k{i}" for i, k in enumerate(key))
        with self._registered(self._keys_table(key, keys, self.sql_types(table) or {})) as stage:
            row = self.execute(f"DELETE FROM {quote(table)} USING {stage} AS k WHERE {on}",
                               what=f"deleting from {table!r}")[0]
        return int(row[0]) if row else 0

    def count_rows(self, table: str) -> int:
        if self.sql_types(table) is None:
            return 0
        return int(self.execute(f"SELECT count(*) FROM {quote(table)}")[0][0])

    def prune_begin(self, key: tuple) -> None:
        # Seen keys are kept as text: the table may not exist yet when a full load starts.
        cols = ", ".join(f"k{i} VARCHAR" for i in range(len(key)))
        self.execute("DROP TABLE IF EXISTS temp._hiwater_seen")
        self.execute(f"CREATE TEMP TABLE _hiwater_seen ({cols})")

    def prune_seen(self, key: tuple, keys: list) -> None:
        tbl = self._keys_table(key, keys, {}).drop(["i"])
        with self._registered(tbl) as stage:
            self.execute(f"INSERT INTO temp._hiwater_seen SELECT * FROM {stage}", what="collecting keys for --prune")

    def prune_finish(self, table: str, key: tuple) -> int:
        on = " AND ".join(f"s.k{i} = CAST(t.{quote(k)} AS VARCHAR)" for i, k in enumerate(key))
        row = self.execute(f"DELETE FROM {quote(table)} AS t WHERE NOT EXISTS"
                           f" (SELECT 1 FROM temp._hiwater_seen AS s WHERE {on})", what="--prune")[0]
        self.execute("DROP TABLE IF EXISTS temp._hiwater_seen")
        return int(row[0]) if row else 0


def _arrow(values, sqltype: str) -> pa.Array:
    """One staged column, typed as its target column."""
    if sqltype in INT_TYPES:
        return pa.array([int(v) if isinstance(v, float) else v for v in values], pa.int64())
    if sqltype in ("DOUBLE", "FLOAT", "REAL") or sqltype.startswith("DECIMAL"):
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    if sqltype == "BOOLEAN":
        return pa.array(values, pa.bool_())
    if sqltype == "JSON":
        return pa.array([None if v is None else orjson.dumps(v, default=str).decode() for v in values], pa.string())
    return pa.array([v if v is None or isinstance(v, str) else str(v) for v in values], pa.string())


def _state(row) -> StreamState:
    return StreamState(stream=row[0], table=row[1], key=tuple(orjson.loads(row[2])), cursor=row[3],
                       kind=row[4], watermark=row[5], naive=bool(row[6]), assume_tz=row[7],
                       last_run=row[8], version=row[9])

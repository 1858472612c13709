"""The SQLite target: the embedded default. Needs nothing but Python.

- One run per stream: an OS file lock (``fcntl``) on ``<db>.hwlock`` at a byte
  chosen by the stream's name. The kernel releases it when the holder dies, so a
  killed run never needs manual cleanup.
- One transaction per run or window slice: ``BEGIN IMMEDIATE`` … ``COMMIT``.
- Bulk path: ``executemany`` of one ``INSERT … ON CONFLICT DO UPDATE … WHERE``.
- Key lookups: one query per batch, the keys passed as one JSON parameter.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
import zlib
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import LockTimeout, TargetError, UsageError
from ..types import ANY, BINARY, BOOLEAN, DECIMAL, INTEGER, REAL, TEXT
from .base import CURSOR_COL, HIDDEN, RUN_COL, lock_file
from .keys import changed_versions, dense, match_held, parse_joined, python_keys, Lookup
from .meta import Spelling
from .sql import guard_sql, table_definition, SqlTarget

SQL_TYPES = {INTEGER: "INTEGER", REAL: "REAL", TEXT: "TEXT", BOOLEAN: "BOOLEAN", BINARY: "BLOB", ANY: ""}


def sql_type(logical: str) -> str:
    """SQLite has no exact decimal: a decimal column is TEXT holding the decimal's digits
    (a NUMERIC affinity would turn '1.50' into the double 1.5)."""
    return "TEXT" if logical.startswith(DECIMAL) else SQL_TYPES[logical]
LOGICAL = {v: k for k, v in SQL_TYPES.items()}
LOOKUP_CHUNK = 65_536
NEW_FILE_PAGE_SIZE = 16_384


def quote(name: str) -> str:
    """Quote an identifier for SQLite. Every table and column name goes through here."""
    if "\x00" in name:
        raise UsageError(f"the name {name!r} contains a NUL character, which a SQLite identifier cannot hold",
                         hint="rename it")
    return '"' + name.replace('"', '""') + '"'


NOW = "strftime('%Y-%m-%dT%H:%M:%fZ','now')"
SPELLING = Spelling(text="TEXT", big="INTEGER", int="INTEGER", real="REAL", updated_at=f"TEXT NOT NULL DEFAULT ({NOW})",
                    now=NOW, quarantine_id="INTEGER PRIMARY KEY AUTOINCREMENT", files_suffix=" WITHOUT ROWID")


class SQLiteTarget(SqlTarget):
    spelling = SPELLING
    _driver_error = sqlite3.Error

    def __init__(self, path: str, *, busy_timeout_s: float = 30.0):
        self.path = path
        self.memory = path in (":memory:", "")
        self.description = "sqlite (memory)" if self.memory else f"sqlite:///{path}"
        self.conn: sqlite3.Connection | None = None
        self.busy_timeout_s = busy_timeout_s
        self._lock_fd = None
        self._faults = None  # test-only fault injection (targets/faults.py); None unless asked for
        self._key_index_ok: dict = {}  # (table, key, integer columns) -> composite range reads allowed

    @property
    def flags(self) -> str:
        import shlex
        return "" if self.memory else f" --db {shlex.quote(self.path)}"

    # --- connection, locks, transactions ---------------------------------------------
    def _connect(self) -> None:
        if self.conn is not None:
            return
        if not self.memory:
            parent = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(parent):
                raise TargetError(f"{self.path}: the folder {parent} does not exist")
        if os.environ.get("HIWATER_FAULT_AT") or os.environ.get("HIWATER_FAULT_TRACE"):
            from . import faults
            self._faults = faults.from_env(None if self.memory else self.path + "-wal")
        # A new file gets 16 KiB pages (before WAL, which fixes the page size): a bulk load
        # writes each page to the WAL and again at the checkpoint, and larger pages make both
        # cheaper (a first load of 1M rows: ~0.25 s less, measured). Existing files keep theirs.
        new_file = not self.memory and not self.dry_run and (
            not os.path.exists(self.path) or os.path.getsize(self.path) == 0)
        try:
            self.conn = sqlite3.connect(self.path, isolation_level=None,
                                        timeout=self.busy_timeout_s, check_same_thread=False)
            if new_file:
                self._op(f"PRAGMA page_size={NEW_FILE_PAGE_SIZE}")
            if not self.memory and not self.dry_run:  # (a dry run keeps the file's journal mode)
                self._wal()
                self._op("PRAGMA synchronous=NORMAL")
                self._op("PRAGMA cache_size=-65536")  # 64 MiB of page cache for bulk upserts
                if self._faults is not None and (self._faults.action or "").startswith("torn-"):
                    self.conn.execute("PRAGMA wal_autocheckpoint=0")  # keep the WAL for the cut
        except sqlite3.DatabaseError as exc:
            raise TargetError(f"{self.path}: cannot open as a SQLite database: {exc}") from None

    def _wal(self) -> None:
        """Switch to WAL. Loaders that open a new file together can get SQLITE_BUSY here at once
        (SQLite skips the busy handler to avoid a deadlock): retry within the busy timeout."""
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                self._op("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    def _close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    @contextmanager
    def lock(self, stream: str, timeout_s: float) -> Iterator[None]:
        if self.memory:
            yield
            return
        self.busy_timeout_s = max(timeout_s, 0.0)
        if self.conn is not None:
            self._execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
        fd = lock_file(self.path, self.dry_run)
        if fd is None:  # a dry run where no run ever took a lock: its rolled-back transaction
            yield       # (BEGIN IMMEDIATE) is enough, and it makes no lock file
            return
        offset = zlib.crc32(stream.encode()) & 0x3FFFFFFF
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
                    break
                except OSError:
                    if time.monotonic() >= deadline:
                        raise LockTimeout(
                            f"stream {stream!r} is being loaded by another run; gave up after {timeout_s:g}s",
                            hint="wait for it to finish, or raise --lock-timeout") from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _begin(self) -> None:
        try:
            self._op("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise LockTimeout(f"{self.path}: the database is locked by another writer; "
                                  f"gave up after {self.busy_timeout_s:g}s",
                                  hint="raise --lock-timeout") from None
            raise TargetError(f"{self.path}: {exc}") from None

    def _end(self, sql: str) -> None:
        self._op(sql)

    def _commit_failed(self, exc: Exception) -> Exception:
        return TargetError(f"{self.path}: commit failed: {exc}")

    def _op(self, sql: str, params=(), many: bool = False):
        """Every statement goes through here: the one place a test can inject a fault."""
        run = self.conn.executemany if many else self.conn.execute
        if self._faults is None:
            return run(sql, params)
        return self._faults.run(lambda: run(sql, params), sql, sqlite3.OperationalError)

    def _execute(self, sql: str, params=()):
        try:
            return self._op(sql, params)
        except sqlite3.Error as exc:
            raise TargetError(f"{self.description}: {exc}") from None

    def _executemany(self, sql: str, rows, what: str):
        try:
            return self._op(sql, rows, many=True)
        except (sqlite3.Error, OverflowError) as exc:
            raise TargetError(f"{self.description}: {what}: {exc}") from None

    # --- the meta store's hooks (targets/meta.py) ----------------------------------------------
    def _rows(self, sql: str, params=(), what: str | None = None) -> list:
        return self._execute(sql, params).fetchall()

    def _dicts(self, sql: str, params) -> list[dict]:
        cur = self._execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def _many(self, sql: str, rows: list, what: str) -> None:
        self._executemany(sql, rows, what)

    def _meta_exists(self, name: str) -> bool:
        return self._execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None

    def _meta_columns(self, name: str) -> set:
        return {r[1] for r in self._execute(f"PRAGMA table_info({quote(name)})").fetchall()}

    def _drop_table(self, table: str) -> None:
        self._execute(f"DROP TABLE IF EXISTS {quote(table)}")

    # --- data ---------------------------------------------------------------------------------
    def _columns(self, table: str) -> dict | None:
        rows = self._execute(f"PRAGMA table_info({quote(table)})").fetchall()
        if not rows:
            return None
        return {r[1]: LOGICAL.get((r[2] or "").upper(), ANY) for r in rows}

    def _create_table(self, table: str, columns: dict, key: tuple) -> None:
        defs = table_definition(columns, key, quote, lambda c, t: sql_type(t), "INTEGER")
        self._execute(f"CREATE TABLE {quote(table)} ({defs})")

    def _add_columns(self, table: str, columns: dict) -> None:
        for c, t in columns.items():
            self._execute(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(c)} {sql_type(t)}".rstrip())

    def _lookup(self, table: str, key: tuple, keys: list) -> Lookup:
        n = len(keys)
        exists = np.zeros(n, dtype=bool)
        cursor = np.zeros(n, dtype=np.int64)
        run = np.zeros(n, dtype=np.int64)
        if len(key) == 1 and n and type(keys[0]) is int:
            found = self._lookup_range(table, key[0], keys)
            if found is not None:
                return found
        if len(key) == 1:
            on = f"t.{quote(key[0])} = j.value"
        else:
            on = " AND ".join(f"t.{quote(k)} = json_extract(j.value, '$[{i}]')" for i, k in enumerate(key))
        sql = (f"SELECT j.key, t.{quote(CURSOR_COL)}, t.{quote(RUN_COL)} FROM json_each(?) AS j"
               f" JOIN {quote(table)} AS t ON {on}")
        for start in range(0, n, LOOKUP_CHUNK):
            chunk = keys[start:start + LOOKUP_CHUNK]
            payload = orjson.dumps(chunk, option=orjson.OPT_PASSTHROUGH_DATETIME, default=str).decode()
            for idx, cur, r in self._execute(sql, (payload,)):
                i = start + idx
                exists[i] = True
                cursor[i] = cur
                run[i] = r
        return Lookup(exists, cursor, run)

    # --- the lookup primitives (the strategy is SqlTarget._held) ---------------------------------
    def _range_ok(self, table: str, column: str) -> bool:
        return True  # _held_range checks the stored values' type itself

    def _read_range(self, table: str, column: str, lo: int, hi: int, run_id: int) -> np.ndarray:
        return self._held_range(table, column, lo, hi, run_id)

    def _read_versions(self, table: str, key: tuple, keys: list, cursors, run_id: int) -> Lookup:
        if len(key) > 1:
            found = self._composite(table, key, keys)
            return found if found is not None else self._lookup(table, key, python_keys(keys))
        if not len(keys[0]):
            return self._lookup(table, key, [])
        return self._versions(table, key[0], python_keys(keys), cursors, run_id)

    def _versions(self, table: str, key: str, keys: list, cursors, run_id: int) -> Lookup:
        """The ``(key, cursor)`` pairs as one JSON parameter per chunk; only the keys whose row
        is missing, holds another cursor or is this run's come back."""
        n = len(keys)
        k, c, r = quote(key), quote(CURSOR_COL), quote(RUN_COL)
        sql = (f"SELECT j.key, t.{k} IS NOT NULL, coalesce(t.{c}, 0), coalesce(t.{r}, 0)"
               f" FROM json_each(?) AS j LEFT JOIN {quote(table)} AS t ON t.{k} = j.value ->> 0"
               f" WHERE t.{k} IS NULL OR t.{c} <> j.value ->> 1 OR t.{r} = ?")
        cur_list = np.asarray(cursors, dtype=np.int64).tolist()
        got = []
        for start in range(0, n, LOOKUP_CHUNK):
            pairs = list(zip(keys[start:start + LOOKUP_CHUNK], cur_list[start:start + LOOKUP_CHUNK]))
            payload = orjson.dumps(pairs, default=str).decode()
            got += [(start + i, f, hc, hr) for i, f, hc, hr in self._execute(sql, (payload, run_id))]
        got = np.array(got, dtype=np.int64).reshape(-1, 4)
        return changed_versions(cursors, got[:, 0], got[:, 1], got[:, 2], got[:, 3])

    def _composite(self, table: str, key: tuple, keys: list) -> Lookup | None:
        """A composite key of integer and text columns (flights: year, month, day, carrier,
        flight, origin): one read of the primary-key range the batch spans, matched by an Arrow
        hash join, instead of a ``json_each`` probe and a Python loop per key. ``None`` (the
        probe path) whenever that could answer differently: another column type, a key column
        whose stored values are not of the batch's type, a collation other than BINARY, or a
        range holding far more rows than the batch (sparse keys)."""
        if len(key) < 2 or not len(keys[0]):
            return None
        cols = []
        for arr in keys:
            if arr.null_count:
                return None
            if pa.types.is_integer(arr.type):
                try:
                    arr = arr.cast(pa.int64())
                except (pa.ArrowInvalid, OverflowError):
                    return None
            elif pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
                arr = arr.cast(pa.string())
            else:
                return None
            cols.append(arr)
        if not self._binary_key_index(table, key, [pa.types.is_integer(a.type) for a in cols]):
            return None
        n = len(cols[0])
        names = [f"k{i}" for i in range(len(key))]
        batch = pa.table(cols + [pa.array(np.arange(n, dtype=np.int64))], names=names + ["i"])
        order = pc.sort_indices(batch, sort_keys=[(k, "ascending") for k in names]).to_numpy()
        exists = np.zeros(n, dtype=bool)
        cursor = np.zeros(n, dtype=np.int64)
        run = np.zeros(n, dtype=np.int64)
        held, probe = [], []
        step = max(4096, -(-n // 8))  # the sorted keys in pieces: a sparse piece does not spoil the rest
        for at in range(0, n, step):
            piece = order[at:at + step]
            got = self._held_composite(table, key, cols, piece)
            if got is None:
                probe.append(piece)
            elif got is not False:
                held.append(got)
        if held:
            found = batch.join(pa.concat_tables(held), keys=names, join_type="inner")
            idx = found.column("i").to_numpy()
            exists[idx] = True
            cursor[idx] = found.column("c").to_numpy()
            run[idx] = found.column("r").to_numpy()
        if probe:
            idx = np.sort(np.concatenate(probe))
            rows = [list(t) for t in zip(*(c.take(pa.array(idx)).to_pylist() for c in cols))]
            old = self._lookup(table, key, rows)
            exists[idx], cursor[idx], run[idx] = old.exists, old.cursor, old.run
        return Lookup(exists, cursor, run)

    def _held_composite(self, table: str, key: tuple, cols: list, piece: np.ndarray):
        """The rows whose key lies between the first and the last key of ``piece`` (batch rows
        in key order), as an Arrow table ``k0.., c, r``; ``False`` when there are none; ``None``
        when the range is sparse (more than 4 rows a key) or a stored value is not of the
        batch's type (the caller probes those keys one by one)."""
        lo = [c[int(piece[0])].as_py() for c in cols]
        hi = [c[int(piece[-1])].as_py() for c in cols]
        tup = "(" + ", ".join(quote(k) for k in key) + ")"
        marks = "(" + ", ".join("?" * len(key)) + ")"
        where = f" FROM {quote(table)} WHERE {tup} >= {marks} AND {tup} <= {marks}"
        joined = ", ".join(f"group_concat({quote(k)}, ',')" if pa.types.is_integer(c.type)
                           else f"group_concat({quote(k)}, char(31))" for k, c in zip(key, cols))
        most = 4 * len(piece) + 64
        (seen,) = self._execute(f"SELECT count(*) FROM (SELECT 1{where} LIMIT {most + 1})", lo + hi).fetchone()
        if seen == 0:
            return False
        if seen > most:  # stop counting there: a sparse range costs at most 4 rows a key
            return None
        count, *texts = self._execute(
            f"SELECT count(*), {joined}, group_concat({quote(CURSOR_COL)}), group_concat({quote(RUN_COL)})"
            + where, lo + hi).fetchone()
        arrays = []
        for text, c in zip(texts, cols):
            if pa.types.is_integer(c.type):
                got = parse_joined(count, [text])
                if got is None:
                    return None
                arrays.append(pa.array(got[:, 0]))
            else:
                parts = text.split("\x1f") if isinstance(text, str) else None
                if parts is None or len(parts) != count:
                    return None  # a value holding the separator, or not text: probe instead
                arrays.append(pa.array(parts, pa.string()))
        versions = parse_joined(count, texts[-2:])
        if versions is None:
            return None
        return pa.table(arrays + [pa.array(versions[:, 0]), pa.array(versions[:, 1])],
                        names=[f"k{i}" for i in range(len(key))] + ["c", "r"])

    def _binary_key_index(self, table: str, key: tuple, integer: list) -> bool:
        """Whether ``table``'s primary key is exactly ``key``, in order, with BINARY collation,
        and each key column is declared INTEGER where the batch has integers and TEXT where it
        has text (then SQLite orders and compares the keys as Arrow does)."""
        cache = self._key_index_ok
        sig = (table, key, tuple(integer))
        if sig not in cache:
            ok = False
            for _, name, _, origin, _ in self._execute(f"PRAGMA index_list({quote(table)})").fetchall():
                if origin != "pk":
                    continue
                info = [r for r in self._execute(f"PRAGMA index_xinfo({quote(name)})").fetchall() if r[5]]
                declared = {r[1]: (r[2] or "").upper() for r in self._execute(f"PRAGMA table_info({quote(table)})")}
                ok = ([r[2] for r in info] == list(key) and all(r[4] == "BINARY" and not r[3] for r in info)
                      and all(declared.get(k) == ("INTEGER" if i else "TEXT") for k, i in zip(key, integer)))
            cache[sig] = ok
        return cache[sig]

    def _lookup_range(self, table: str, key: str, keys: list) -> Lookup | None:
        """Dense integer keys: one range scan of the primary key instead of one probe per key
        (sparse keys take the JSON path)."""
        try:
            arr = np.fromiter(keys, dtype=np.int64, count=len(keys))
        except (TypeError, OverflowError, ValueError):
            return None
        if not dense(arr):
            return None
        return match_held(arr, self._held_range(table, key, int(arr.min()), int(arr.max())))

    def _held_range(self, table: str, key: str, lo: int, hi: int, run_id: int | None = None) -> np.ndarray:
        """``(key, cursor, run)`` of every integer key ``lo <= key <= hi``, as an ``(n, 3)`` array.

        SQLite joins each column into one text (``group_concat``) and numpy parses it: no
        Python object per row, about half the time of fetching the rows. Two shortcuts, each
        checked: only an integer or a real can lie between two integers (text sorts after
        every number), and a real does not parse as an integer, so the per-row ``typeof`` test
        is needed only when the text does not parse; and when the caller only asks whether a
        row is its own run's (``run_id``) and no row in the range is that recent, the run
        column is not read at all.
        """
        k, c, r = quote(key), quote(CURSOR_COL), quote(RUN_COL)
        where = f" FROM {quote(table)} WHERE {k} BETWEEN ? AND ?"
        if run_id is not None:
            n, keys, cursors, newest = self._execute(
                f"SELECT count(*), group_concat({k}), group_concat({c}), max({r})" + where, (lo, hi)).fetchone()
            if newest is None or newest < run_id:
                held = parse_joined(n, [keys, cursors])
                if held is not None:
                    return np.concatenate([held, np.zeros((len(held), 1), np.int64)], axis=1)
        n, *texts = self._execute(
            f"SELECT count(*), group_concat({k}), group_concat({c}), group_concat({r})" + where, (lo, hi)).fetchone()
        held = parse_joined(n, texts)
        if held is None:
            where += f" AND typeof({k}) = 'integer'"
            rows = self._execute(f"SELECT {k}, {c}, {r}" + where, (lo, hi)).fetchall()
            held = np.array(rows, dtype=np.int64).reshape(-1, 3)
        return held

    def _upsert_rows(self, table: str, columns: list, rows: list, key: tuple, refresh: bool) -> int | None:
        if not rows:
            return None
        return self._executemany(upsert_sql(table, columns, key, refresh=refresh), rows, f"writing {table!r}").rowcount

    def _upsert(self, table: str, data: pa.Table, key: tuple, *, fresh: bool = False,
                refresh: bool = False) -> int | None:
        """Rows go to ``executemany`` straight from the columns (an iterator, no row list), and
        the run id, one value per batch, is written into the statement instead of bound per row."""
        if data.num_rows == 0:
            return None
        columns = [c for c in data.column_names if c not in HIDDEN]
        for i, c in enumerate(data.column_names):  # exact decimals are kept as their digits
            if pa.types.is_decimal(data.schema.field(i).type):
                data = data.set_column(i, c, data.column(i).cast(pa.string()))
        runs = pc.unique(data.column(RUN_COL))
        if len(runs) != 1:
            return self._upsert_python(table, data, key, refresh)
        values = [data.column(c).to_pylist() for c in columns + [CURSOR_COL]]
        sql = upsert_sql(table, columns, key, run=int(runs[0].as_py()), refresh=refresh)
        return self._executemany(sql, zip(*values), f"writing {table!r}").rowcount

    def _delete_keys(self, table: str, key: tuple, keys: list) -> int:
        if not keys:
            return 0
        where = " AND ".join(f"{quote(k)} = ?" for k in key)
        params = [(k,) if len(key) == 1 else tuple(k) for k in keys]
        cur = self._executemany(f"DELETE FROM {quote(table)} WHERE {where}", params, f"deleting from {table!r}")
        return cur.rowcount

    def _count_rows(self, table: str) -> int:
        if self._columns(table) is None:
            return 0
        return int(self._execute(f"SELECT count(*) FROM {quote(table)}").fetchone()[0])

    def _has_rows(self, table: str) -> bool:
        if self._columns(table) is None:
            return False
        return self._execute(f"SELECT 1 FROM {quote(table)} LIMIT 1").fetchone() is not None

    def _prune_begin(self, key: tuple) -> None:
        cols = ", ".join(quote(k) for k in key)
        self._execute("DROP TABLE IF EXISTS temp._hiwater_seen")
        self._execute(f"CREATE TEMP TABLE _hiwater_seen ({cols}, PRIMARY KEY ({cols})) WITHOUT ROWID")

    def _prune_seen(self, key: tuple, keys: list) -> None:
        cols = ", ".join(quote(k) for k in key)
        params = [(k,) if len(key) == 1 else tuple(k) for k in keys]
        self._executemany(
            f"INSERT OR IGNORE INTO temp._hiwater_seen ({cols}) VALUES ({', '.join('?' for _ in key)})",
            params, "collecting keys for --prune")

    def _prune_finish(self, table: str, key: tuple) -> int:
        cols = ", ".join(quote(k) for k in key)
        cur = self._execute(f"DELETE FROM {quote(table)} WHERE ({cols}) NOT IN"
                            f" (SELECT {cols} FROM temp._hiwater_seen)")
        self._execute("DROP TABLE IF EXISTS temp._hiwater_seen")
        return cur.rowcount


def upsert_sql(table: str, columns: list, key: tuple, run: int | None = None, refresh: bool = False) -> str:
    """The upsert for one batch: newer cursors replace, older never do (pure builder).

    With ``run``, the run id is a literal of the statement and rows carry one value less.
    With ``refresh`` (a full load), the same cursor with other content replaces too.
    """
    t = quote(table)
    cols = list(columns) + [CURSOR_COL, RUN_COL]
    sets = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in cols if c not in key)
    guard = guard_sql("excluded.", f"{t}.", [c for c in columns if c not in key] if refresh else None, "IS NOT")
    return (f"INSERT INTO {t} ({', '.join(quote(c) for c in cols)})"
            f" VALUES ({', '.join(['?'] * (len(cols) - 1) + ['?' if run is None else str(int(run))])})"
            f" ON CONFLICT ({', '.join(quote(k) for k in key)}) DO UPDATE SET {sets} WHERE {guard}")


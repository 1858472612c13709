"""What every SQL target shares: the guarded-upsert and table-definition builders, the one
transaction funnel, the lookup strategy, and :class:`SqlTarget` / :class:`SqlTransaction`
behind the :class:`~.base.Target` interface (the meta store is :mod:`.meta`).

SQLite, PostgreSQL and DuckDB subclass :class:`SqlTarget` and keep only what really differs:
connection, lock, bulk path, type maps, upsert builder and the lookup's fast-path primitives.
A target that is not SQL (Delta) implements :class:`~.base.Target` directly.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import pyarrow as pa

from ..errors import TargetError
from .base import (CURSOR_COL, HIDDEN, RUN_COL, Dropped, FilesGone, FilesRead, History, Mode, Quarantined,
                   Released, State, TableInfo, Target, Transaction, Verified)
from .keys import Lookup, dense, match_held, python_keys
from .meta import SqlLedger, SqlMeta


def decimal_sql(logical: str, default: str = "DECIMAL(38,10)") -> str:
    """``DECIMAL(P,S)`` for a constrained decimal logical type."""
    m = re.fullmatch(r"decimal\((\d+),(\d+)\)", logical)
    return f"DECIMAL({m.group(1)},{m.group(2)})" if m else default


def guard_sql(new: str, old: str, refresh_columns: list | None = None, distinct: str = "IS DISTINCT FROM") -> str:
    """The upsert's guard (pure): a row is replaced only by a newer cursor, or by the same
    cursor written earlier in this run (the later record of a tie wins). With
    ``refresh_columns`` (a full load) also by the same cursor with different content, so a
    source that changes a row without growing its cursor is still applied; identical rows
    are left alone. ``new``/``old`` are the row prefixes (``EXCLUDED.``, ``t.``)."""
    cur, run = quote_plain(CURSOR_COL), quote_plain(RUN_COL)
    same = f"{new}{cur} = {old}{cur}"
    tie = f"{new}{run} = {old}{run}"
    if refresh_columns:
        tie += "".join(f" OR {old}{quote_plain(c)} {distinct} {new}{quote_plain(c)}" for c in refresh_columns)
    return f"{new}{cur} > {old}{cur} OR ({same} AND ({tie}))"


def quote_plain(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_definition(columns: dict, key: tuple, quote, type_of, int_type: str) -> str:
    """The column list of a new data table (pure): the user's columns typed by ``type_of(name,
    logical)``, the two hidden columns as ``int_type``, and the primary key."""
    defs = [f"{quote(c)} {type_of(c, t)}".rstrip() for c, t in columns.items()]
    defs += [f"{quote(CURSOR_COL)} {int_type} NOT NULL", f"{quote(RUN_COL)} {int_type} NOT NULL",
             f"PRIMARY KEY ({', '.join(quote(k) for k in key)})"]
    return ", ".join(defs)


class _Discard(Exception):
    """Thrown into a transaction begun with ``discard=True`` to roll it back."""


class SqlTarget(SqlMeta, Target):
    """A target spoken to in SQL. A dialect implements the connection (``_connect``, ``_close``,
    :meth:`lock`), the meta-store hooks (:class:`.meta.SqlMeta`), the transaction hooks
    (``_begin``, ``_end``, ``_forget_cache``, ``_before_commit``, :attr:`_driver_error`), the
    data-table primitives :class:`SqlTransaction` calls (``_columns``, ``_create_table``,
    ``_upsert``, ``_prune_*``, …) and the lookup primitives (``_range_ok``, ``_read_range``,
    ``_read_versions``)."""

    _driver_error: type = Exception  # what the driver raises
    _meta_ready = False              # the meta store was made by this open target
    # The stream's cursor column and its kind, named by ``Transaction.evolve``: a dialect with
    # native date-time types stores (and stages) that column as one.
    _cursor_column: str | None = None
    _cursor_kind: str | None = None

    # --- connection, transactions -------------------------------------------------------------
    def __enter__(self) -> "SqlTarget":
        self._connect()
        return self

    def __exit__(self, *exc) -> None:
        self._close()
        self._meta_ready = False

    @abstractmethod
    def _connect(self) -> None:
        """Open the connection (idempotent)."""

    @abstractmethod
    def _close(self) -> None: ...

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN … COMMIT through the statement funnel; a failure rolls back (a failed rollback
        is not reported: the original error matters more) and a failed commit says so."""
        self._begin()
        try:
            yield
        except BaseException:
            self._rollback()
            raise
        try:
            self._before_commit()
            self._end("COMMIT")
        except BaseException as exc:
            self._rollback()
            if isinstance(exc, self._driver_error):
                raise self._commit_failed(exc) from None
            raise

    def _rollback(self) -> None:
        self._forget_cache()
        try:
            self._end("ROLLBACK")
        except self._driver_error:
            pass

    @abstractmethod
    def _begin(self) -> None:
        """Start a transaction."""

    @abstractmethod
    def _end(self, sql: str) -> None:
        """``COMMIT`` or ``ROLLBACK`` through the statement funnel (``_op``)."""

    def _before_commit(self) -> None:
        """A check that must pass for a commit (PostgreSQL: the stream lock is still held)."""

    def _forget_cache(self) -> None:
        """Forget what a rolled-back transaction may have changed (cached column types)."""

    def _commit_failed(self, exc: Exception) -> Exception:
        return TargetError(f"{self.description}: commit failed: {exc}")

    # --- the Target interface -----------------------------------------------------------------
    @property
    def ledger(self) -> SqlLedger:
        return SqlLedger(self)

    def table(self, name: str, *, count: bool = False) -> TableInfo | None:
        columns = self._columns(name)
        if columns is None:
            return None
        return TableInfo({c: t for c, t in columns.items() if not c.startswith("_hiwater_")}, self._has_rows(name),
                         self._count_rows(name) if count else None, managed=CURSOR_COL in columns)

    def begin(self, stream: str, table: str | None = None, key: tuple = (), *,
              run_id: int | None = None, discard: bool = False) -> "SqlTransaction":
        if not self._meta_ready and not discard:  # in its own committed transaction, before the run's
            with self._transaction():
                self._ensure_meta()
            self._meta_ready = True
        return SqlTransaction(self, stream, table, tuple(key), run_id, discard)

    # --- the data table: what SqlTransaction calls ----------------------------------------------
    @abstractmethod
    def _columns(self, table: str) -> dict | None:
        """``{column: logical type}`` of an existing table, the hidden columns included, or ``None``."""

    @abstractmethod
    def _create_table(self, table: str, columns: dict, key: tuple) -> None: ...

    @abstractmethod
    def _add_columns(self, table: str, columns: dict) -> None: ...

    @abstractmethod
    def _drop_table(self, table: str) -> None: ...

    @abstractmethod
    def _lookup(self, table: str, key: tuple, keys: list) -> Lookup:
        """For each Python key (a scalar, or a sequence for a composite key): cursor and run held."""

    @abstractmethod
    def _upsert(self, table: str, data: pa.Table, key: tuple, *, fresh: bool = False,
                refresh: bool = False) -> int | None:
        """The guarded upsert of an Arrow batch (see :meth:`Transaction.write`): the dialect's bulk
        path. Returns the rows inserted or changed where the driver says, else ``None``."""

    @abstractmethod
    def _upsert_rows(self, table: str, columns: list, rows: list, key: tuple, refresh: bool) -> int | None:
        """The same upsert from Python rows (``columns`` values, then cursor and run): the path
        of a batch a column of which will not go to the bulk path as Arrow."""

    def _upsert_python(self, table: str, data: pa.Table, key: tuple, refresh: bool) -> int | None:
        """An Arrow batch turned into Python rows for :meth:`_upsert_rows`."""
        columns = [c for c in data.column_names if c not in HIDDEN]
        values = [data.column(c).to_pylist() for c in columns + [CURSOR_COL, RUN_COL]]
        return self._upsert_rows(table, columns, list(zip(*values)), key, refresh)

    @abstractmethod
    def _delete_keys(self, table: str, key: tuple, keys: list) -> int: ...

    @abstractmethod
    def _count_rows(self, table: str) -> int: ...

    def _has_rows(self, table: str) -> bool:
        """Whether the table holds any row (a dialect whose count scans the table overrides it)."""
        return self._count_rows(table) > 0

    @abstractmethod
    def _prune_begin(self, key: tuple) -> None:
        """Start collecting the keys a full load saw."""

    @abstractmethod
    def _prune_seen(self, key: tuple, keys: list) -> None: ...

    @abstractmethod
    def _prune_finish(self, table: str, key: tuple) -> int:
        """Delete rows whose key was not seen; return how many."""

    # --- the lookup strategy, once ------------------------------------------------------------
    def _held(self, table: str, key: tuple, keys: list, cursors: np.ndarray, run_id: int) -> Lookup:
        """Dense integer keys (ids that grow with time): one read of their key range, matched
        in numpy; any other keys go with their cursors and come back only where the table
        holds something else (see :meth:`Transaction.held`)."""
        if len(key) == 1 and pa.types.is_integer(keys[0].type) and len(keys[0]) and self._range_ok(table, key[0]):
            ids = keys[0].to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            if dense(ids):
                held = self._read_range(table, key[0], int(ids.min()), int(ids.max()), run_id)
                if held is not None:
                    return match_held(ids, held)
        return self._read_versions(table, key, keys, np.asarray(cursors, dtype=np.int64), run_id)

    @abstractmethod
    def _range_ok(self, table: str, column: str) -> bool:
        """Whether integer keys of ``column`` may be read as one key range."""

    @abstractmethod
    def _read_range(self, table: str, column: str, lo: int, hi: int, run_id: int) -> np.ndarray | None:
        """``(key, cursor, run)`` of every row with ``lo <= key <= hi``, an ``(n, 3)`` array
        (``None``: the caller sends the keys instead)."""

    @abstractmethod
    def _read_versions(self, table: str, key: tuple, keys: list, cursors: np.ndarray, run_id: int) -> Lookup:
        """The keys (Arrow arrays) sent with their cursors (see :func:`.keys.changed_versions`)."""


class SqlTransaction(Transaction):
    """One SQL transaction on a stream's table: the target's connection between BEGIN and
    COMMIT (or ROLLBACK, on an error or when begun with ``discard``)."""

    def __init__(self, target: SqlTarget, stream: str, table: str | None, key: tuple, run_id: int | None,
                 discard: bool):
        self._t, self.stream, self.table, self.key = target, stream, table, key
        self._run_id, self._discard = run_id, discard
        self._cm = None
        self._pruning = False

    @property
    def run_id(self) -> int:
        if self._run_id is None:
            self._run_id = self._t._next_run_id()
        return self._run_id

    def __enter__(self) -> "SqlTransaction":
        self._cm = self._t._transaction()
        self._cm.__enter__()
        if self._discard and not self._t._meta_ready:
            self._t._ensure_meta()  # a dry run's meta store is rolled back with the rest of it
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        cm, self._cm = self._cm, None
        if exc_type is None and self._discard:
            cm.__exit__(_Discard, _Discard(), None)  # rolls back; the discard is not an error
            return None
        return cm.__exit__(exc_type, exc, tb)

    def evolve(self, columns: dict, cursor: tuple) -> None:
        t = self._t
        t._cursor_column, t._cursor_kind = cursor
        if not columns:
            return  # nothing to add: the cursor is named for the writes that follow
        have = t._columns(self.table)
        if have is None:
            t._create_table(self.table, dict(columns), self.key)
            return
        new = {c: v for c, v in columns.items() if c not in have}
        if new:
            t._add_columns(self.table, new)

    def held(self, keys: list, cursors: np.ndarray | None = None) -> Lookup:
        if cursors is None:
            return self._t._lookup(self.table, self.key, python_keys(keys))
        return self._t._held(self.table, self.key, keys, cursors, self.run_id)

    def write(self, rows: pa.Table, *, mode: Mode = "upsert") -> int | None:
        if rows.num_rows == 0:
            return 0
        return self._t._upsert(self.table, rows, self.key, fresh=mode == "fresh", refresh=mode == "refresh")

    def delete(self, keys: list) -> int:
        return self._t._delete_keys(self.table, self.key, python_keys(keys))

    def seen(self, keys: list) -> None:
        if not self._pruning:
            self._t._prune_begin(self.key)
            self._pruning = True
        self._t._prune_seen(self.key, python_keys(keys))

    def prune(self) -> int:
        """Rows whose key no :meth:`seen` showed go (all of them if none was seen)."""
        t = self._t
        if t._columns(self.table) is None:
            return 0
        if not self._pruning:
            t._prune_begin(self.key)
        self._pruning = False
        return t._prune_finish(self.table, self.key)

    def count(self) -> int:
        return self._t._count_rows(self.table)

    def record(self, *facts) -> None:
        t = self._t
        for f in sorted(facts, key=lambda f: not isinstance(f, Released)):  # releases first (a replay)
            if isinstance(f, State):
                t._put_state(f.state)
            elif isinstance(f, History):
                t._put_history(f.row)
            elif isinstance(f, Quarantined):
                t._put_quarantine(f.rows)
            elif isinstance(f, Released):
                t._release_quarantine(f.ids)
            elif isinstance(f, FilesRead):
                t._put_files(self.stream, f.entries, self.run_id)
            elif isinstance(f, FilesGone):
                t._forget_files(self.stream, f.paths)
            elif isinstance(f, Verified):
                t._put_verified(f.stream, f.doc)
            elif isinstance(f, Dropped):
                t._delete_state(self.stream)
                t._forget_stream(self.stream)
                if f.table is not None:
                    t._drop_table(f.table)
            else:
                raise TypeError(f"not a fact: {f!r}")

"""The interface every target implements. Storage-neutral: nothing here assumes SQL.

What the loader and the API call, grouped (docs/architecture.md draws it):

- connection, the one-runner-per-stream lock, and a transaction (all of a run or none);
- the stream's state, history, quarantine and file manifest (SPEC §3, §6, §10);
- the data table: its columns (create, add), **one** lookup (:meth:`Target.lookup`), one
  guarded upsert, delete, count, prune.

Two lookups and one upsert have faster variants with defaults here (``lookup_versions``,
``lookup_arrow``, ``upsert_arrow``): a target overrides them only to go faster. SQL targets
share their SQL in :mod:`.sql` (:class:`~.sql.SqlTarget`); Delta implements this class
directly in one file (:mod:`.delta`). Logical types live in :mod:`hiwater.types`, the pure
key-matching helpers in :mod:`.keys`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import ClassVar, Iterator, Literal, Union

import numpy as np
import pyarrow as pa

from ..state import StreamState
from .keys import Lookup

CURSOR_COL = "_hiwater_cursor"
RUN_COL = "_hiwater_run"
HIDDEN = (CURSOR_COL, RUN_COL)
# A history row's fields, in the order `hiwater history` shows them (SPEC §6).
HISTORY_COLUMNS = (
    "run_id", "window_index", "stream", "started_at", "finished_at", "mode", "outcome", "source_records",
    "loaded", "skipped", "inserted", "updated", "unchanged", "late", "late_applied", "future", "below_window",
    "rejected", "deleted", "watermark_before", "watermark_after", "watermark_before_value",
    "watermark_after_value", "window_lo", "window_hi", "max_lateness", "detail", "duration_s", "error")


def target_flag(url: str) -> str:
    """`` --target URL`` for a hint ("" for an in-memory target; ``URL`` where a password was masked)."""
    import shlex
    if url.endswith("(memory)"):
        return ""
    return " --target " + (shlex.quote(url) if "***" not in url else "URL")


@dataclass(frozen=True)
class Capabilities:
    """What a target promises, as data (the loader, the docs and the contract test read it).

    ``lock``: ``"session"`` (a lock held for the run: a file lock, an advisory lock) or
    ``"optimistic"`` (nothing held; the later of two commits of one stream fails).
    ``meta_atomic``: history, quarantine and manifest rows commit in the data's transaction
    (SQL), or are written first and count only once the data's commit reaches them (Delta).
    """

    lock: str = "session"
    meta_atomic: bool = True


@dataclass(frozen=True)
class TableInfo:
    """A committed data table as a run starts: its columns and whether it holds a row."""

    columns: dict           # {column: logical type}, the hidden _hiwater_* columns left out
    has_rows: bool
    rows: int | None = None  # only with ``Target.table(name, count=True)``
    managed: bool = True    # it has hiwater's hidden columns (a table hiwater did not make has not)


# --- facts: what a transaction records beside the data (pyiceberg's *Update values) ---------------
@dataclass(frozen=True)
class State:
    """The stream's new state."""
    state: StreamState


@dataclass(frozen=True)
class History:
    """One history row (the fields of :data:`HISTORY_COLUMNS`)."""
    row: dict


@dataclass(frozen=True)
class Quarantined:
    """Records kept aside (quarantine rows, as built by the loader)."""
    rows: list


@dataclass(frozen=True)
class Released:
    """Quarantine rows taken out (a replay); recorded before anything is re-quarantined."""
    ids: list


@dataclass(frozen=True)
class FilesRead:
    """File-manifest entries (``FileEntry``) applied by this transaction's run."""
    entries: list


@dataclass(frozen=True)
class FilesGone:
    """File-manifest rows to forget (files that vanished from the source)."""
    paths: list


@dataclass(frozen=True)
class Dropped:
    """Forget the stream (state, history, quarantine, manifest) and, with ``table``, drop its data."""
    table: str | None = None


Fact = Union[State, History, Quarantined, Released, FilesRead, FilesGone, Dropped]
Mode = Literal["upsert", "fresh", "refresh"]


class Target(ABC):
    """One database (or lake folder) that holds streams' data and their ledger.

    A target is opened (``with target:``), locks a stream, and begins transactions; the
    read side (committed state, history, quarantine, manifest) is :attr:`ledger`.
    """

    capabilities: ClassVar[Capabilities] = Capabilities()
    description: str = "?"   # for messages; never a password

    @property
    def flags(self) -> str:
        """How a command names this target, for hints a person can paste (never a password)."""
        return target_flag(self.description)

    @property
    @abstractmethod
    def ledger(self) -> "Ledger":
        """The committed state, history, quarantine and file manifest (the read side)."""

    @abstractmethod
    def __enter__(self) -> "Target":
        """Connect (idempotent)."""

    @abstractmethod
    def __exit__(self, *exc) -> None:
        """Close."""

    @abstractmethod
    def lock(self, stream: str, timeout_s: float) -> AbstractContextManager[None]:
        """Hold the one-runner-per-stream lock; raise LockTimeout after ``timeout_s``."""

    @abstractmethod
    def table(self, name: str, *, count: bool = False) -> TableInfo | None:
        """The committed data table ``name`` (``None`` if it does not exist)."""

    @abstractmethod
    def begin(self, stream: str, table: str | None = None, key: tuple = (), *,
              run_id: int | None = None, discard: bool = False) -> "Transaction":
        """A unit of work on ``stream``'s ``table`` keyed by ``key``. The meta store is made on
        first use, in its own committed transaction. ``run_id`` reuses an id (later --window
        slices of one run); ``discard`` rolls everything back at the end (a dry run)."""


class Transaction(ABC):
    """Staged work, visible all at once when the ``with`` block ends cleanly; rolled back on an
    error or when begun with ``discard=True``. Reads see this transaction's own writes."""

    @property
    @abstractmethod
    def run_id(self) -> int:
        """This transaction's run id: allocated on first use, or the one ``begin`` was given."""

    @abstractmethod
    def __enter__(self) -> "Transaction": ...

    @abstractmethod
    def __exit__(self, exc_type, exc, tb) -> None: ...

    @abstractmethod
    def evolve(self, columns: dict, cursor: tuple) -> None:
        """Create the table with ``columns`` ({name: logical type}) or add the ones it lacks.
        ``cursor`` is ``(column, kind)``: a target with native date-time types stores the
        cursor column natively."""

    @abstractmethod
    def held(self, keys: list, cursors: np.ndarray | None = None) -> Lookup:
        """THE lookup: for each key (``keys`` is one Arrow array per key column, no nulls),
        whether the table holds it, with which cursor and run; this transaction's writes
        included. Given the ``cursors`` the keys arrive with, a target may answer only for keys
        whose row is missing, holds another cursor or was written by this run; a key it does
        not answer for holds exactly its cursor from an earlier run."""

    @abstractmethod
    def write(self, rows: pa.Table, *, mode: Mode = "upsert") -> int | None:
        """Guarded upsert of ``rows`` (user columns, then ``_hiwater_cursor``, ``_hiwater_run``):
        never replaces a newer cursor. ``fresh``: no key can be in the table yet (insert without
        the conflict check). ``refresh`` (a full load): the same cursor with other content also
        replaces a row. Returns the rows inserted or changed where known, else ``None``."""

    @abstractmethod
    def delete(self, keys: list) -> int:
        """Delete the rows of these keys (one Arrow array per key column); how many went."""

    @abstractmethod
    def seen(self, keys: list) -> None:
        """--prune: keys the source showed (one Arrow array per key column)."""

    @abstractmethod
    def prune(self) -> int:
        """--prune: delete rows whose key was not :meth:`seen`; how many went."""

    @abstractmethod
    def count(self) -> int:
        """Rows of the table as this transaction sees them."""

    @abstractmethod
    def record(self, *facts: Fact) -> None:
        """Record facts beside the data, in this transaction (``Released`` before ``Quarantined``)."""


class Ledger(ABC):
    """The committed side of the meta store: what status, history and the admin commands read.
    Written once for SQL (:mod:`.sql`) and once for Delta."""

    @abstractmethod
    def states(self, stream: str | None = None) -> list:
        """Every stream's state (or just ``stream``'s: a list of at most one)."""

    @abstractmethod
    def history(self, stream: str | None = None, limit: int | None = None) -> list: ...

    @abstractmethod
    def quarantine(self, stream: str | None = None, reason: str | None = None,
                   limit: int | None = None) -> list: ...

    @abstractmethod
    def files(self, stream: str) -> dict:
        """The stream's file manifest, ``{path: (size, mtime_ns, etag)}``."""

    def facts(self, stream: str) -> dict:
        """What ``hiwater status`` shows beside the state: the latest run's history rows, when the
        latest successful run finished, and how many records are in the quarantine. This default
        reads them through the other methods; a SQL ledger asks its tables directly."""
        hist = self.history(stream)
        last = max((h["run_id"] for h in hist), default=None)
        failed = {h["run_id"] for h in hist if h["outcome"] == "failed"}
        ok = [h["finished_at"] for h in hist if h["outcome"] == "committed" and h["run_id"] not in failed]
        return {"last_run": [h for h in hist if h["run_id"] == last],
                "last_success_at": max(ok) if ok else None,
                "quarantined": len(self.quarantine(stream))}


class LegacyTarget(ABC):
    """TEMPORARY (until the loader and api call sites are switched to :class:`Target` +
    :class:`Transaction`): the old one-method-per-write interface. Deleted in the next step."""

    cursor_column: str | None = None
    cursor_kind: str | None = None
    refresh: bool = False       # a full load: the same cursor with other content replaces a row
    last_written: int | None = None  # rows the last upsert inserted or changed, where known

    def cli_flags(self) -> str:
        """How a command names this target, for hints a person can paste (never a password)."""
        return target_flag(self.description)

    def set_cursor(self, column: str, kind: str | None) -> None:
        """Name the stream's cursor column and its kind before tables are made or written.

        A target with native date-time types (PostgreSQL, DuckDB) uses it to store the
        cursor as ``timestamptz``/``date``; SQLite keeps the text as given.
        """
        self.cursor_column, self.cursor_kind = column, kind

    # --- connection, locks, transactions -------------------------------------------
    @abstractmethod
    def connect(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    @contextmanager
    def stream_lock(self, stream: str, timeout_s: float) -> Iterator[None]:
        """Hold the one-runner-per-stream lock; raise LockTimeout after ``timeout_s``."""

    @abstractmethod
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside commits together or not at all."""

    # --- state, history, quarantine ----------------------------------------------------
    @abstractmethod
    def ensure_meta(self) -> None:
        """Create the ``_hiwater_*`` tables if missing (inside a transaction)."""

    @abstractmethod
    def read_state(self, stream: str) -> StreamState | None: ...

    @abstractmethod
    def write_state(self, state: StreamState) -> None: ...

    @abstractmethod
    def delete_state(self, stream: str) -> None: ...

    def drop_stream(self, stream: str, table: str | None) -> None:
        """Forget a stream (state, history, quarantine rows) and, with ``table``, drop its data."""
        self.delete_state(stream)
        self.forget_stream(stream)
        if table is not None:
            self.drop_table(table)

    @abstractmethod
    def forget_stream(self, stream: str) -> None:
        """Delete a stream's history, quarantine rows and file manifest."""

    # --- the file manifest (SPEC §10) ------------------------------------------------------
    @abstractmethod
    def read_files(self, stream: str) -> dict:
        """The stream's manifest, ``{path: (size, mtime_ns, etag)}``, in one query."""

    @abstractmethod
    def write_files(self, stream: str, entries: list, run_id: int) -> None:
        """Record ``entries`` (``FileEntry``) as applied by ``run_id``, in the caller's transaction."""

    @abstractmethod
    def delete_files(self, stream: str, paths: list) -> None:
        """Forget manifest rows (files that vanished from the source)."""

    @abstractmethod
    def drop_table(self, table: str) -> None: ...

    @abstractmethod
    def list_states(self) -> list[StreamState]: ...

    @abstractmethod
    def next_run_id(self) -> int: ...

    def stream_facts(self, stream: str) -> dict:
        """What ``hiwater status`` shows beside the state: the latest run's history rows, when the
        latest successful run finished, and how many records are in the quarantine. This default
        reads them through the interface; a SQL target asks its tables directly."""
        hist = self.read_history(stream)
        last = max((h["run_id"] for h in hist), default=None)
        failed = {h["run_id"] for h in hist if h["outcome"] == "failed"}
        ok = [h["finished_at"] for h in hist if h["outcome"] == "committed" and h["run_id"] not in failed]
        return {"last_run": [h for h in hist if h["run_id"] == last],
                "last_success_at": max(ok) if ok else None,
                "quarantined": len(self.read_quarantine(stream))}

    @abstractmethod
    def write_history(self, row: dict) -> None: ...

    @abstractmethod
    def read_history(self, stream: str | None = None, limit: int | None = None) -> list[dict]: ...

    @abstractmethod
    def write_quarantine(self, rows: list[dict]) -> None: ...

    @abstractmethod
    def read_quarantine(self, stream: str | None = None, reason: str | None = None,
                        limit: int | None = None) -> list[dict]: ...

    @abstractmethod
    def delete_quarantine(self, ids: list[int]) -> None: ...

    # --- data ----------------------------------------------------------------------------
    @abstractmethod
    def table_columns(self, table: str) -> dict | None:
        """``{column: logical type}`` of an existing table, or ``None``."""

    @abstractmethod
    def create_table(self, table: str, columns: dict, key: tuple) -> None: ...

    @abstractmethod
    def add_columns(self, table: str, columns: dict) -> None: ...

    @abstractmethod
    def lookup(self, table: str, key: tuple, keys: list) -> Lookup:
        """For each key (a scalar, or a tuple for a composite key): cursor and run held."""

    def lookup_versions(self, table: str, key: tuple, keys: list, cursors, run_id: int) -> Lookup:
        """Like :meth:`lookup`, knowing the cursor each key arrives with.

        A target may answer only for the keys whose row is missing, holds another cursor, or
        was written by ``run_id``; a key it does not answer for holds exactly ``cursors[i]``
        from an earlier run (the common case of a re-read, which then costs no row transfer).
        """
        return self.lookup(table, key, keys)

    def lookup_arrow(self, table: str, key: tuple, keys: list, cursors: np.ndarray,
                     run_id: int) -> Lookup | None:
        """:meth:`lookup_versions` with the keys as Arrow arrays, one per key column (no nulls).

        A target that can use them as they are (no Python object per key) answers; the default
        answers ``None`` and the caller passes Python keys to :meth:`lookup_versions` instead.
        """
        return None

    @abstractmethod
    def upsert(self, table: str, columns: list, rows: list, key: tuple) -> None:
        """Insert or replace rows; never replace a row holding a newer cursor."""

    def upsert_arrow(self, table: str, data: pa.Table, key: tuple, fresh: bool = False) -> None:
        """Upsert an Arrow table whose last two columns are ``_hiwater_cursor`` and ``_hiwater_run``.

        ``fresh`` says no key of ``data`` can be in the table yet (a first load into an empty
        table); a target may then insert without the conflict check.

        The default turns it into Python rows for :meth:`upsert`; the targets override it with
        their own bulk path from Arrow.
        """
        if data.num_rows == 0:
            return
        columns = [c for c in data.column_names if c not in HIDDEN]
        values = [data.column(c).to_pylist() for c in columns + [CURSOR_COL, RUN_COL]]
        self.upsert(table, columns, list(zip(*values)), key)

    @abstractmethod
    def delete_keys(self, table: str, key: tuple, keys: list) -> int: ...

    @abstractmethod
    def count_rows(self, table: str) -> int: ...

    def has_rows(self, table: str) -> bool:
        """Whether the table holds any row (a target whose count scans the table overrides it)."""
        return self.count_rows(table) > 0

    @abstractmethod
    def prune_begin(self, key: tuple) -> None:
        """Start collecting the keys a full load saw."""

    @abstractmethod
    def prune_seen(self, key: tuple, keys: list) -> None: ...

    @abstractmethod
    def prune_finish(self, table: str, key: tuple) -> int:
        """Delete rows whose key was not seen; return how many."""

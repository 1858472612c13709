"""The interface every target implements. Storage-neutral: nothing here assumes SQL.

Three objects (docs/architecture.md draws them):

- :class:`Target`: one database or lake folder, opened with ``with``; it holds the
  one-runner-per-stream lock, describes a committed data table, and begins transactions;
- :class:`Transaction`: the unit of work of a run or a ``--window`` slice on one stream's table:
  schema evolution, **one** lookup (:meth:`Transaction.held`), one guarded write, delete, prune,
  count, and the facts recorded beside the data (:class:`State`, :class:`History`, …);
- :class:`Ledger`: the committed state, history, quarantine and file manifest (SPEC §3, §6, §10).

SQL targets share their SQL in :mod:`.sql` (:class:`~.sql.SqlTarget`) and the meta store in
:mod:`.meta`; Delta implements these classes directly (:mod:`.delta`). Logical types live in
:mod:`hiwater.types`, the pure key-matching helpers in :mod:`.keys`.
"""

from __future__ import annotations

import os

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import ClassVar, Literal, Union

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
    ``text_nul``: text may hold the NUL character (PostgreSQL's cannot: such a value is refused
    per record, its reason naming the field).
    ``fold_case``: column names that differ only in case are one column (SQLite, DuckDB, Delta):
    two such fields are refused, never merged.
    """

    lock: str = "session"
    meta_atomic: bool = True
    text_nul: bool = True
    fold_case: bool = True


@dataclass(frozen=True)
class TableInfo:
    """A committed data table as a run starts: its columns and whether it holds a row."""

    columns: dict           # {column: logical type}, the hidden _hiwater_* columns left out
    has_rows: bool          # (a bucket's run of a table partitioned by bucket: its partition holds one)
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
class Verified:
    """The stream's latest ``hiwater verify`` result (a small JSON-ready dict, see
    :func:`hiwater.verify.run.record_doc`); it replaces the one before. ``doc`` ``None`` forgets it."""
    stream: str
    doc: dict | None


@dataclass(frozen=True)
class Dropped:
    """Forget the stream (state, history, quarantine, manifest) and, with ``table``, drop its data."""
    table: str | None = None


Fact = Union[State, History, Quarantined, Released, FilesRead, FilesGone, Verified, Dropped]
Mode = Literal["upsert", "fresh", "refresh"]


class Target(ABC):
    """One database (or lake folder) that holds streams' data and their ledger.

    A target is opened (``with target:``), locks a stream, and begins transactions; the
    read side (committed state, history, quarantine, manifest) is :attr:`ledger`.
    """

    capabilities: ClassVar[Capabilities] = Capabilities()
    description: str = "?"   # for messages; never a password
    # A dry run's target (set before it is opened): it leaves nothing behind that outlives the
    # run -- no lock file is made, an existing database's journal mode and page size are kept.
    dry_run: bool = False

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

    def streams(self) -> set:
        """The names of every stream with a state or a run in the history (one whose every run
        failed has no state). This default reads the whole history; a SQL ledger asks its index."""
        return {s.stream for s in self.states()} | {h["stream"] for h in self.history()}

    @abstractmethod
    def quarantine(self, stream: str | None = None, reason: str | None = None,
                   limit: int | None = None) -> list: ...

    @abstractmethod
    def files(self, stream: str) -> dict:
        """The stream's file manifest, ``{path: (size, mtime_ns, etag)}``."""

    def verified(self, stream: str) -> dict | None:
        """The stream's latest recorded verify result, or ``None`` (never verified, or a target made
        by a hiwater that did not record them)."""
        return self.verifies().get(stream)

    @abstractmethod
    def verifies(self) -> dict:
        """``{stream: latest verify result}`` for every stream verified (reading creates nothing)."""

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


def lock_file(path: str, dry_run: bool) -> int | None:
    """The descriptor of ``<db>.hwlock``, made if missing; a dry run only opens one that exists
    (``None`` when there is none: it writes nothing, not even the lock file)."""
    try:
        return os.open(path + ".hwlock", os.O_RDWR | (0 if dry_run else os.O_CREAT), 0o644)
    except FileNotFoundError:
        if not dry_run:
            raise
        return None

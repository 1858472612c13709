"""The interface every target implements, and the type rules they share.

A target knows its dialect (quoting, upsert form, types, locks); the loader
knows nothing of SQL. Adding a database is one new module implementing
:class:`Target`.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa

from ..state import StreamState

# Logical column types. Each target maps them to its own SQL types.
INTEGER, REAL, TEXT, BOOLEAN, ANY = "integer", "real", "text", "boolean", "any"
# Exact decimals: "decimal" (any scale, PostgreSQL numeric) or "decimal(P,S)" (a fixed precision
# and scale, DuckDB DECIMAL). SQLite keeps them as TEXT, the decimal's own digits.
DECIMAL = "decimal"
# Columns the history gained after its first release (name -> logical type): each target adds
# them to an older history table when it first opens it.
HISTORY_ADDED = {"duration_s": "real", "error": "text"}
CURSOR_COL = "_hiwater_cursor"
RUN_COL = "_hiwater_run"
HIDDEN = (CURSOR_COL, RUN_COL)


def logical_type(t: pa.DataType) -> str:
    """The logical type a new column gets from the first batch that shows it."""
    if pa.types.is_boolean(t):
        return BOOLEAN
    if pa.types.is_integer(t):
        return INTEGER
    if pa.types.is_decimal(t):
        return f"{DECIMAL}({min(t.precision, 38)},{t.scale})"
    if pa.types.is_floating(t):
        return REAL
    if pa.types.is_null(t):
        return ANY
    return TEXT


def fits(t: pa.DataType, logical: str) -> str:
    """Whether values of Arrow type ``t`` fit a column: 'yes', 'no' or 'check' (per value)."""
    if logical == ANY or pa.types.is_null(t):
        return "yes"
    got = logical_type(t)
    if got == logical:
        return "yes"
    if logical.startswith(DECIMAL):
        if got == INTEGER:
            return "yes"
        if got.startswith(DECIMAL):
            return "yes" if decimal_fits(t.precision, t.scale, logical) else "no"
        return "check" if got == TEXT else "no"  # decimal text (a replayed record) is judged per value
    if got.startswith(DECIMAL):
        return "yes" if logical in (TEXT, REAL) else "no"  # TEXT: the decimal's digits (SQLite)
    if logical == REAL and got == INTEGER:
        return "yes"
    if logical == INTEGER and got == REAL:
        return "check"  # whole numbers fit, fractions do not
    return "no"


def target_flag(url: str) -> str:
    """`` --target URL`` for a hint ("" for an in-memory target; ``URL`` where a password was masked)."""
    import shlex
    if url.endswith("(memory)"):
        return ""
    return " --target " + (shlex.quote(url) if "***" not in url else "URL")


def decimal_fits(precision: int, scale: int, logical: str) -> bool:
    """Whether a decimal(precision, scale) fits the column ``logical`` without rounding."""
    m = re.fullmatch(r"decimal\((\d+),(\d+)\)", logical)
    if m is None:
        return True  # unconstrained numeric
    p, s = int(m.group(1)), int(m.group(2))
    return scale <= s and precision - scale <= p - s


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


@dataclass
class Lookup:
    """What the target holds for a list of keys (aligned with the request)."""

    exists: np.ndarray
    cursor: np.ndarray
    run: np.ndarray


def dense(keys: np.ndarray) -> bool:
    """Whether integer keys span at most 4x their count (ids that grow with time): then one
    scan of their key range reads at most 4 rows per key, cheaper than a probe per key."""
    return len(keys) > 0 and int(keys.max()) - int(keys.min()) < 4 * len(keys) + 64


def match_held(keys: np.ndarray, held: np.ndarray) -> Lookup:
    """Pure: for each key, the ``(cursor, run)`` of its row among ``held`` (an ``(n, 3)`` array
    of ``key, cursor, run`` read from a key range), or not found."""
    n = len(keys)
    exists = np.zeros(n, dtype=bool)
    cursor = np.zeros(n, dtype=np.int64)
    run = np.zeros(n, dtype=np.int64)
    if len(held):
        held = held[np.argsort(held[:, 0], kind="stable")]
        pos = np.minimum(np.searchsorted(held[:, 0], keys), len(held) - 1)
        hit = held[pos, 0] == keys
        exists[hit] = True
        cursor[hit] = held[pos[hit], 1]
        run[hit] = held[pos[hit], 2]
    return Lookup(exists, cursor, run)


def changed_versions(cursors: np.ndarray, idx, found, held_cursor, held_run) -> Lookup:
    """Pure: the answer of a version-aware lookup (see :meth:`Target.lookup_versions`). Only
    the keys at ``idx`` came back (``found`` says whether the target holds them, with
    ``held_cursor`` and ``held_run``); every other key holds exactly its cursor from an
    earlier run."""
    n = len(cursors)
    exists = np.ones(n, dtype=bool)
    cursor = np.asarray(cursors, dtype=np.int64).copy()
    run = np.zeros(n, dtype=np.int64)
    idx = np.asarray(idx, dtype=np.int64)
    if len(idx):
        found = np.asarray(found, dtype=bool)
        exists[idx] = found
        cursor[idx] = np.where(found, np.asarray(held_cursor, dtype=np.int64), 0)
        run[idx] = np.where(found, np.asarray(held_run, dtype=np.int64), 0)
    return Lookup(exists, cursor, run)


def parse_joined(n: int, texts) -> np.ndarray | None:
    """Columns of integers a database joined into comma-separated texts (``group_concat``,
    ``string_agg``), parsed by numpy into an ``(n, k)`` array; ``None`` if one does not parse
    back to exactly ``n`` integers (the caller then fetches rows the plain way)."""
    if n == 0:
        return np.zeros((0, len(texts)), np.int64)
    try:
        cols = [np.fromstring(t, dtype=np.int64, sep=",") for t in texts]
    except (ValueError, TypeError, DeprecationWarning):
        return None
    if any(len(c) != n for c in cols):
        return None
    return np.stack(cols, axis=1)


class Target(ABC):
    """One database that holds streams' data and state."""

    dialect: str = "?"
    description: str = "?"
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

    placeholder = "?"  # the driver's parameter mark

    def meta_name(self, name: str) -> str:
        """A ``_hiwater_*`` table's name as this target's SQL writes it (qualified, quoted)."""
        return name

    def stream_facts(self, stream: str) -> dict:
        """What ``hiwater status`` shows beside the state: the latest run's history rows, when the
        latest successful run finished, and how many records are in the quarantine."""
        from .metaquery import last_run_query, last_success_query, quarantine_count_query
        if not self._has_meta():
            return {"last_run": [], "last_success_at": None, "quarantined": 0}
        h, q, ph = self.meta_name("_hiwater_history"), self.meta_name("_hiwater_quarantine"), self.placeholder
        return {"last_run": self._dicts(*last_run_query(h, ph, stream)),
                "last_success_at": self._dicts(*last_success_query(h, ph, stream))[0]["at"],
                "quarantined": int(self._dicts(*quarantine_count_query(q, ph, stream))[0]["n"])}

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

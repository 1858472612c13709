"""The SQL meta store, written once: the ``_hiwater_*`` tables (state, history, quarantine, file
manifest, latest verify result) in each dialect's type spellings, what a transaction records in them
(:class:`SqlMeta`) and the committed side the admin commands read (:class:`SqlLedger`).

A SQL dialect gives a :class:`Spelling` and a handful of hooks (run a statement, one bulk
insert, one bulk delete, does a table exist, its columns) and writes none of this. The stored
layouts are those of every earlier release, so existing databases keep working: the same
tables, columns and types, PostgreSQL's run-id sequence, and the history columns added later
(:data:`HISTORY_ADDED`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import orjson

from ..state import StreamState
from .base import Ledger
from .metaquery import (FILES_COLS, files_read_query, files_rows, history_query, last_run_query,
                        last_success_query, manifest, quarantine_count_query, quarantine_query)

# Columns the history gained after its first release (name -> logical type): an older history
# table gets them when a target first opens it.
HISTORY_ADDED = {"duration_s": "real", "error": "text"}
STATE_COLS = ("stream", "table_name", "key_columns", "cursor_column", "kind", "watermark", "naive", "assume_tz",
              "last_run", "version")
QUARANTINE_COLS = ("stream", "reason", "detail", "source", "record_no", "key", "cursor", "cursor_value",
                   "record", "fingerprint", "first_run", "last_run", "seen")
# The integer columns of the quarantine and the manifest (a dialect that stages rows as Arrow types them).
INT_COLUMNS = frozenset({"id", "record_no", "cursor_value", "first_run", "last_run", "seen", "size", "mtime_ns", "run_id"})


@dataclass(frozen=True)
class Spelling:
    """How one SQL dialect spells the meta store's types and the few clauses that differ."""

    text: str
    big: str                 # a 64-bit integer
    int: str                 # a 32-bit integer (window_index, naive, version)
    real: str
    updated_at: str          # the state's ``updated_at``: type, NOT NULL and default
    now: str                 # "now" as that column stores it
    quarantine_id: str       # the quarantine's id column
    files_suffix: str = ""   # after the manifest's column list (SQLite: WITHOUT ROWID)
    sequences: tuple = ()    # made before the tables
    run_ids: str | None = None  # the sequence run ids come from; None: MAX(run_id) + 1
    add_column: str = "ADD COLUMN"
    history_indexes: bool = True  # a row store: status reads each stream's latest runs by index


# `hiwater status` (and the status page) reads each stream's latest run and latest success: with
# thousands of runs per stream these indexes keep it to a few rows per stream (bench/ui_streams.py).
HISTORY_INDEXES = {"_hiwater_history_by_stream": "stream, run_id",
                   "_hiwater_history_by_outcome": "stream, outcome, finished_at, run_id"}


def meta_ddl(sp: Spelling, name) -> list[str]:
    """The statements that make the meta store (each ``IF NOT EXISTS``); ``name`` qualifies a
    ``_hiwater_*`` name as the target writes it."""
    T, B, I, R = sp.text, sp.big, sp.int, sp.real  # noqa: N806 - type spellings
    return [f"CREATE SEQUENCE IF NOT EXISTS {name(s)}" for s in sp.sequences] + [
        f"""CREATE TABLE IF NOT EXISTS {name('_hiwater_state')} (
        stream {T} PRIMARY KEY, table_name {T} NOT NULL, key_columns {T} NOT NULL,
        cursor_column {T} NOT NULL, kind {T}, watermark {B}, naive {I} NOT NULL DEFAULT 1,
        assume_tz {T} NOT NULL DEFAULT 'UTC', last_run {B}, version {I} NOT NULL,
        updated_at {sp.updated_at})""",
        f"""CREATE TABLE IF NOT EXISTS {name('_hiwater_history')} (
        run_id {B} NOT NULL, window_index {I} NOT NULL DEFAULT 0, stream {T} NOT NULL,
        started_at {T} NOT NULL, finished_at {T} NOT NULL, mode {T} NOT NULL, outcome {T} NOT NULL,
        source_records {B}, loaded {B}, skipped {B}, inserted {B}, updated {B},
        unchanged {B}, late {B}, late_applied {B}, future {B}, below_window {B},
        rejected {B}, deleted {B}, watermark_before {T}, watermark_after {T},
        watermark_before_value {B}, watermark_after_value {B}, window_lo {T}, window_hi {T},
        max_lateness {T}, detail {T}, duration_s {R}, error {T},
        PRIMARY KEY (run_id, window_index))""",
        f"""CREATE TABLE IF NOT EXISTS {name('_hiwater_quarantine')} (
        id {sp.quarantine_id}, stream {T} NOT NULL, reason {T} NOT NULL,
        detail {T}, source {T}, record_no {B}, key {T}, cursor {T}, cursor_value {B},
        record {T} NOT NULL, fingerprint {T} NOT NULL, first_run {B} NOT NULL,
        last_run {B} NOT NULL, seen {B} NOT NULL DEFAULT 1,
        UNIQUE (stream, reason, fingerprint))""",
        # The file manifest (SPEC §10): one row per file of a folder/glob source a run applied.
        f"""CREATE TABLE IF NOT EXISTS {name('_hiwater_files')} (
        stream {T} NOT NULL, path {T} NOT NULL, size {B} NOT NULL, mtime_ns {B}, etag {T},
        run_id {B} NOT NULL, PRIMARY KEY (stream, path)){sp.files_suffix}""",
        # Each stream's latest `hiwater verify` result (docs/verify.md): one JSON document.
        f"""CREATE TABLE IF NOT EXISTS {name('_hiwater_verify')} (
        stream {T} PRIMARY KEY, verified_at {T} NOT NULL, outcome {T} NOT NULL, doc {T} NOT NULL)""",
    ] + [f"CREATE INDEX IF NOT EXISTS {_quote(ix)} ON {name('_hiwater_history')} ({cols})"
         for ix, cols in (HISTORY_INDEXES.items() if sp.history_indexes else ())
    ] + ([] if sp.run_ids is not None else [
        # Without a sequence, run ids are MAX(run_id) + 1 over the history; a dropped stream's
        # highest id is kept here, so its kept table's rows never look written by a later run.
        f"CREATE TABLE IF NOT EXISTS {name('_hiwater_runs')} (last_run {B} NOT NULL)"])


def state_of(row) -> StreamState:
    """A stream's state from a row of :data:`STATE_COLS`."""
    return StreamState(stream=row[0], table=row[1], key=tuple(orjson.loads(row[2])), cursor=row[3],
                       kind=row[4], watermark=row[5], naive=bool(row[6]), assume_tz=row[7],
                       last_run=row[8], version=row[9])


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _grouped(rows: list) -> list[tuple]:
    """Quarantine rows as :data:`QUARANTINE_COLS` tuples, one per (stream, reason, fingerprint):
    repeats count as ``seen`` and the last one's details win."""
    grouped: dict = {}
    for r in rows:
        k = (r["stream"], r["reason"], r["fingerprint"])
        seen = grouped[k]["seen"] + 1 if k in grouped else 1
        grouped[k] = dict(r, seen=seen, first_run=r["run"], last_run=r["run"])
    return [tuple(g[c] for c in QUARANTINE_COLS) for g in grouped.values()]


class SqlMeta(ABC):
    """The write side of the meta store, over the dialect's hooks (the abstract methods here,
    :attr:`spelling`, :attr:`placeholder` and :meth:`_meta_name`)."""

    spelling: Spelling
    placeholder = "?"  # the driver's parameter mark

    def _meta_name(self, name: str) -> str:
        """A ``_hiwater_*`` table's name as this target's SQL writes it (qualified, quoted)."""
        return name

    # --- the hooks ---------------------------------------------------------------------------
    @abstractmethod
    def _rows(self, sql: str, params=(), what: str | None = None) -> list:
        """Run one statement; its rows (none for a statement without a result)."""

    @abstractmethod
    def _dicts(self, sql: str, params) -> list[dict]:
        """Run a query; its rows as dicts."""

    @abstractmethod
    def _many(self, sql: str, rows: list, what: str) -> None:
        """Run one statement for each of ``rows`` (the driver's executemany)."""

    @abstractmethod
    def _meta_exists(self, name: str) -> bool:
        """Whether the ``_hiwater_*`` table (or sequence) ``name`` exists."""

    @abstractmethod
    def _meta_columns(self, name: str) -> set:
        """The column names of the ``_hiwater_*`` table ``name``."""

    def _insert_many(self, table: str, cols: tuple, rows: list, tail: str, what: str) -> None:
        """``INSERT INTO table (cols) … tail`` for every row (a dialect may stage them instead)."""
        ph = self.placeholder
        self._many(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join([ph] * len(cols))}){tail}",
                   rows, what)

    def _delete_in(self, table: str, column: str, values: list, stream: str | None, what: str) -> None:
        """Delete the rows whose ``column`` is one of ``values`` (of ``stream``, if given)."""
        ph = self.placeholder
        where = (f"stream = {ph} AND " if stream is not None else "") + f"{column} = {ph}"
        self._many(f"DELETE FROM {table} WHERE {where}",
                   [(v,) if stream is None else (stream, v) for v in values], what)

    # --- the store ----------------------------------------------------------------------------
    def _has_meta(self) -> bool:
        """Whether the meta store was made (admin reads of a fresh target make nothing)."""
        run_ids = self.spelling.run_ids
        return self._meta_exists("_hiwater_state") and (run_ids is None or self._meta_exists(run_ids))

    def _ensure_meta(self) -> None:
        """Make the meta store if missing (inside the caller's transaction)."""
        self._create_meta()
        self._add_history_columns()

    def _create_meta(self) -> None:
        for ddl in meta_ddl(self.spelling, self._meta_name):
            self._rows(ddl, (), "creating the _hiwater_* tables")

    def _add_history_columns(self) -> None:
        """A history table made before these columns existed gets them."""
        have = self._meta_columns("_hiwater_history")
        sp = self.spelling
        for name, logical in HISTORY_ADDED.items():
            if name not in have:
                self._rows(f"ALTER TABLE {self._meta_name('_hiwater_history')} {sp.add_column} {_quote(name)}"
                           f" {sp.real if logical == 'real' else sp.text}", (), "adding a history column")

    def _next_run_id(self) -> int:
        if self.spelling.run_ids is not None:  # runs of different streams may commit concurrently
            sequence = self._meta_name(self.spelling.run_ids)
            return int(self._rows(f"SELECT nextval({self.placeholder})", [sequence])[0][0])
        # One writer at a time (SQLite's write lock, DuckDB's file lock): MAX + 1 inside the transaction,
        # over the history and the ids dropped streams used (never repeated within a target).
        h, r = self._meta_name("_hiwater_history"), self._meta_name("_hiwater_runs")
        return int(self._rows(f"SELECT COALESCE(MAX(n), 0) + 1 FROM (SELECT MAX(run_id) AS n FROM {h}"
                              f" UNION ALL SELECT MAX(last_run) AS n FROM {r}) AS ids")[0][0])

    def _put_state(self, s: StreamState) -> None:
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in STATE_COLS[1:])
        self._rows(f"INSERT INTO {self._meta_name('_hiwater_state')} ({', '.join(STATE_COLS)})"
                   f" VALUES ({', '.join([self.placeholder] * len(STATE_COLS))})"
                   f" ON CONFLICT (stream) DO UPDATE SET {sets}, updated_at = {self.spelling.now}",
                   [s.stream, s.table, orjson.dumps(list(s.key)).decode(), s.cursor, s.kind, s.watermark,
                    int(s.naive), s.assume_tz, s.last_run, s.version], "writing the state")

    def _put_history(self, row: dict) -> None:
        cols = list(row)
        updates = ", ".join(f"{_quote(c)} = EXCLUDED.{_quote(c)}" for c in cols
                            if c not in ("run_id", "window_index"))
        self._rows(f"INSERT INTO {self._meta_name('_hiwater_history')} ({', '.join(_quote(c) for c in cols)})"
                   f" VALUES ({', '.join([self.placeholder] * len(cols))})"
                   f" ON CONFLICT (run_id, window_index) DO UPDATE SET {updates}",
                   [row[c] for c in cols], "writing the history")

    def _put_quarantine(self, rows: list[dict]) -> None:
        if rows:
            self._insert_many(self._meta_name("_hiwater_quarantine"), QUARANTINE_COLS, _grouped(rows),
                              " ON CONFLICT (stream, reason, fingerprint) DO UPDATE SET last_run = EXCLUDED.last_run,"
                              " seen = _hiwater_quarantine.seen + EXCLUDED.seen, detail = EXCLUDED.detail,"
                              " source = EXCLUDED.source, record_no = EXCLUDED.record_no", "writing quarantine")

    def _release_quarantine(self, ids: list) -> None:
        if ids:
            self._delete_in(self._meta_name("_hiwater_quarantine"), "id", list(ids), None, "releasing quarantine rows")

    def _put_files(self, stream: str, entries: list, run_id: int) -> None:
        if entries:
            self._insert_many(self._meta_name("_hiwater_files"), FILES_COLS, files_rows(stream, entries, run_id),
                              " ON CONFLICT (stream, path) DO UPDATE SET size = EXCLUDED.size,"
                              " mtime_ns = EXCLUDED.mtime_ns, etag = EXCLUDED.etag, run_id = EXCLUDED.run_id",
                              "writing the file manifest")

    def _forget_files(self, stream: str, paths: list) -> None:
        if paths:
            self._delete_in(self._meta_name("_hiwater_files"), "path", list(paths), stream,
                            "writing the file manifest")

    def _put_verified(self, stream: str, doc: dict | None) -> None:
        t, ph = self._meta_name("_hiwater_verify"), self.placeholder
        if doc is None:
            self._rows(f"DELETE FROM {t} WHERE stream = {ph}", [stream], "forgetting the verify result")
            return
        self._rows(f"INSERT INTO {t} (stream, verified_at, outcome, doc) VALUES ({ph}, {ph}, {ph}, {ph})"
                   " ON CONFLICT (stream) DO UPDATE SET verified_at = EXCLUDED.verified_at,"
                   " outcome = EXCLUDED.outcome, doc = EXCLUDED.doc",
                   [stream, doc["verified_at"], doc["outcome"], orjson.dumps(doc, default=str).decode()],
                   "recording the verify result")

    def _delete_state(self, stream: str) -> None:
        self._rows(f"DELETE FROM {self._meta_name('_hiwater_state')} WHERE stream = {self.placeholder}", [stream])

    def _forget_stream(self, stream: str) -> None:
        """A stream's history, quarantine rows and file manifest go; without a sequence, its highest
        run id is kept (:meth:`_next_run_id`)."""
        if self.spelling.run_ids is None:
            h = self._meta_name("_hiwater_history")
            self._rows(f"INSERT INTO {self._meta_name('_hiwater_runs')} (last_run) SELECT MAX(run_id) FROM {h}"
                       f" WHERE stream = {self.placeholder} HAVING MAX(run_id) IS NOT NULL", [stream])
        for t in ("_hiwater_history", "_hiwater_quarantine", "_hiwater_files", "_hiwater_verify"):
            self._rows(f"DELETE FROM {self._meta_name(t)} WHERE stream = {self.placeholder}", [stream])


class SqlLedger(Ledger):
    """The committed meta store of a SQL target. Reads never make the tables: a target that
    has none answers empty."""

    def __init__(self, target: SqlMeta):
        self._t = target

    def states(self, stream: str | None = None) -> list[StreamState]:
        t = self._t
        if not t._has_meta():
            return []
        sql = f"SELECT {', '.join(STATE_COLS)} FROM {t._meta_name('_hiwater_state')}"
        if stream is not None:
            return [state_of(r) for r in t._rows(sql + f" WHERE stream = {t.placeholder}", [stream])]
        return [state_of(r) for r in t._rows(sql + " ORDER BY stream")]

    def history(self, stream: str | None = None, limit: int | None = None) -> list[dict]:
        t = self._t
        if not t._has_meta():
            return []
        return t._dicts(*history_query(t._meta_name("_hiwater_history"), t.placeholder, stream, limit))

    def streams(self) -> set:
        t = self._t
        if not t._has_meta():
            return set()
        return {r[0] for r in t._rows(f"SELECT stream FROM {t._meta_name('_hiwater_state')} UNION "
                                      f"SELECT DISTINCT stream FROM {t._meta_name('_hiwater_history')}")}

    def quarantine(self, stream: str | None = None, reason: str | None = None,
                   limit: int | None = None) -> list[dict]:
        t = self._t
        if not t._has_meta():
            return []
        return t._dicts(*quarantine_query(t._meta_name("_hiwater_quarantine"), t.placeholder, stream, reason, limit))

    def files(self, stream: str) -> dict:
        t = self._t
        if not t._has_meta():
            return {}
        return manifest(t._rows(*files_read_query(t._meta_name("_hiwater_files"), t.placeholder, stream)))

    def verifies(self) -> dict:
        """A target made before verify results were recorded has no table: never verified."""
        t = self._t
        if not t._has_meta() or not t._meta_exists("_hiwater_verify"):
            return {}
        return {r[0]: orjson.loads(r[1]) for r in t._rows(f"SELECT stream, doc FROM {t._meta_name('_hiwater_verify')}")}

    def verified(self, stream: str) -> dict | None:
        t = self._t
        if not t._has_meta() or not t._meta_exists("_hiwater_verify"):
            return None
        rows = t._rows(f"SELECT doc FROM {t._meta_name('_hiwater_verify')} WHERE stream = {t.placeholder}", [stream])
        return orjson.loads(rows[0][0]) if rows else None

    def facts(self, stream: str) -> dict:
        """Asked of the tables directly (the default reads whole histories)."""
        t = self._t
        if not t._has_meta():
            return {"last_run": [], "last_success_at": None, "quarantined": 0}
        h, q, ph = t._meta_name("_hiwater_history"), t._meta_name("_hiwater_quarantine"), t.placeholder
        return {"last_run": t._dicts(*last_run_query(h, ph, stream)),
                "last_success_at": t._dicts(*last_success_query(h, ph, stream))[0]["at"],
                "quarantined": int(t._dicts(*quarantine_count_query(q, ph, stream))[0]["n"])}

"""The Delta Lake target: a folder (local or S3) holding one Delta table per hiwater table.

``--target delta:///abs/path`` or ``delta+s3://bucket/prefix``. No SQL, no JVM: delta-rs.

How the guarantees map onto Delta (docs/architecture.md has the whole rule):

- **One commit is the atomic point.** A transaction stages its upserts, deletes and prune in
  memory; at commit they become **one** ``MERGE`` on the data table whose commit also carries the
  app transaction ``hiwater:<stream>`` (a fresh 63-bit id for this transaction). A transaction
  that changes no row still writes a commit holding only that app transaction, so a no-op
  run's watermark is never lost.
- **State, history, quarantine and the file manifest** live in one append-only Delta table,
  ``_hiwater_log``: one row per fact, each carrying the stream, this transaction's id and the
  id of the transaction it followed (``prev``). They are appended *before* the data commit. A
  row counts only if its transaction is on the stream's committed chain: start from the id the
  data table's ``hiwater:<stream>`` app transaction holds and follow ``prev``. A crash between
  the two commits leaves rows that no chain reaches, which every reader ignores; nothing
  committed is ever lost. A stream whose data table does not exist yet (an empty first run, a
  ``state set`` before any data) anchors its rows on themselves ("self"): the log append is
  then the commit.
- **One runner per stream is optimistic**: two runs of one stream both commit app transaction
  ``hiwater:<stream>``; delta-rs refuses the later one (a concurrent transaction), which
  becomes the lock-timeout message. Nothing of the loser is visible.

Here: :class:`DeltaTarget` (tables pinned at one snapshot per run); :class:`DeltaTransaction`
(staging, commit) in :mod:`.deltatx`; the log's readers: :mod:`.deltalog`; pure helpers: :mod:`.deltatypes`.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import LockTimeout
from .base import CURSOR_COL, RUN_COL, Capabilities, TableInfo, Target
from .deltalog import LOG, DeltaLedger
from .deltatypes import (HeldKeys, deltalake, field, holds_rows, is_conflict, logical, parse_url, partition_filter, remove_folder,
                         row_count, sql_text, storage_error, storage_options)
from .deltatx import DeltaTransaction

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
# A run holds the keys, cursors and runs of a table up to this many rows in memory (~24 bytes each).
HELD_IN_MEMORY = 20_000_000


def folder_name(table: str) -> str:
    """The folder holding ``table`` under the root: the name itself when it is a plain one,
    else each other character as ``~HH`` (UTF-8 bytes: ``we"ird`` → ``we~22ird``), so no
    name can leave the root (delta-rs reads ``%`` in a path as a URL escape, hence ``~``)."""
    if _NAME.match(table) and table not in (".", ".."):
        return table
    return "".join(ch if re.match(r"[A-Za-z0-9_\-]", ch) else "".join(f"~{b:02X}" for b in ch.encode())
                   for ch in table)


def table_name(folder: str) -> str:
    """The table a folder under the root holds (inverse of :func:`folder_name`)."""
    if "~" not in folder:
        return folder
    return re.sub(r"(?:~[0-9A-F]{2})+", lambda m: bytes.fromhex(m.group(0).replace("~", "")).decode(), folder)


class DeltaTarget(Target):
    dialect = "delta"
    capabilities = Capabilities(lock="optimistic", meta_atomic=False)

    def __init__(self, url: str, **_kw):
        self.url = url
        self.root, self.file_size = parse_url(url)
        self.remote = "://" in self.root
        self.description = f"delta {self.root}"
        self.storage = storage_options() if self.remote else None
        self._stream: str | None = None
        self._pins: dict = {}  # table -> DeltaTable at the snapshot this run reads (see _table)
        self._held_cache: dict = {}  # table -> its keys, cursors and runs at that snapshot (see _committed_keys)
        self._dl = deltalake()
        self._ledger = DeltaLedger(self._table)

    @property
    def flags(self) -> str:
        import shlex
        return " --target " + shlex.quote(self.url)

    @property
    def ledger(self) -> DeltaLedger:
        return self._ledger

    def __enter__(self) -> "DeltaTarget":
        if not self.remote:
            os.makedirs(self.root, exist_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        """Nothing to close: every read and commit opens what it needs."""

    @contextmanager
    def lock(self, stream: str, timeout_s: float) -> Iterator[None]:
        """Optimistic: nothing is held; the stream's app transaction makes the later commit fail."""
        was, self._stream = self._stream, stream
        self._pins, self._held_cache = {}, {}
        try:
            yield
        finally:
            self._stream = was
            self._pins, self._held_cache = {}, {}

    def table(self, name: str, *, count: bool = False) -> TableInfo | None:
        dt = self._table(name)
        if dt is None:
            return None
        rows = row_count(dt)
        schema = pa.schema(dt.schema().to_arrow())
        columns = {f.name: logical(f.type) for f in schema if not f.name.startswith("_hiwater_")}
        has = rows > 0 and holds_rows(dt, self._stream)
        return TableInfo(columns, has, rows if count else None, managed=CURSOR_COL in schema.names)

    def begin(self, stream: str, table: str | None = None, key: tuple = (), *,
              run_id: int | None = None, discard: bool = False) -> "DeltaTransaction":
        """The log is made by its first append: there is no meta store to make first."""
        return DeltaTransaction(self, stream, table, key, run_id=run_id, discard=discard)

    # --- storage -------------------------------------------------------------------------------
    def _uri(self, table: str) -> str:
        return f"{self.root.rstrip('/')}/{folder_name(table)}"

    def _table(self, table: str):
        """The Delta table, or ``None`` when there is none.

        Within a stream's run a data table is read at one snapshot (pinned at its first read):
        the run's lookups, its state and its commit all see that version, so delta-rs's conflict
        check covers every commit made since the run looked. The log is always read fresh."""
        pin = table != LOG and self._stream is not None
        if pin and table in self._pins:
            return self._pins[table]
        uri = self._uri(table)
        try:
            if not self._dl.DeltaTable.is_deltatable(uri, storage_options=self.storage):
                if pin:  # absent for the whole run: its commit then creates it, or fails if another did
                    self._pins[table] = None
                return None
            dt = self._dl.DeltaTable(uri, storage_options=self.storage)
        except Exception as exc:  # noqa: BLE001 - a storage error reads as one line
            raise storage_error(exc, f"cannot open {table!r}", self) from None
        if pin:
            self._pins[table] = dt
        return dt

    def _schema(self, table: str) -> pa.Schema | None:
        dt = self._table(table)
        return None if dt is None else pa.schema(dt.schema().to_arrow())

    def _committed_keys(self, table: str, key: tuple, dt, want: pa.Table) -> pa.Table:
        """``key…, _hiwater_cursor, _hiwater_run`` of the committed rows holding keys of ``want``.

        The run reads these three columns of its snapshot once (its bucket's partition only) and
        matches every batch in memory: one scan per run, not one per batch. A table past
        ``HELD_IN_MEMORY`` rows is scanned per batch instead (a key filter)."""
        cols = list(key) + [CURSOR_COL, RUN_COL]
        part = partition_filter(dt, self._stream)
        first = want.column(key[0])
        cache = self._held_cache.get(table)
        if cache is None:
            ds = dt.to_pyarrow_dataset()
            if ds.count_rows(filter=part) > HELD_IN_MEMORY:
                filt = field(ds.schema, key[0]).isin(pc.unique(first))
                return ds.to_table(columns=cols, filter=filt if part is None else part & filt)
            cache = HeldKeys(ds.to_table(columns=cols, filter=part), key)
            if self._stream is not None:  # a run: its snapshot is pinned, so the cache stays true
                self._held_cache[table] = cache
        return cache.rows_for(first)

    def _forget(self, stream: str) -> None:
        """Delete every log row of the stream (its state, history, quarantine, manifest)."""
        dt = self._table(LOG)
        if dt is not None:
            self._run(lambda: dt.delete(f"stream = '{sql_text(stream)}'"), "forgetting the stream")

    def _drop_table(self, table: str) -> None:
        self._pins.pop(table, None)
        self._held_cache.pop(table, None)
        remove_folder(self._uri(table), self.remote)

    def _run(self, fn, what: str, stream: str | None = None):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - delta-rs raises its own classes; each becomes one line
            if stream is not None and is_conflict(exc):
                raise LockTimeout(f"stream {stream!r} is being loaded by another run: its commit to "
                                  f"{self.description} lost the race (nothing of this run was applied)",
                                  hint="run again after it finishes; hiwater serialises one stream per target") from None
            raise storage_error(exc, what, self) from None

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

Here: :class:`DeltaTarget` (tables pinned at one snapshot per run) and :class:`DeltaTransaction`
(staging, commit); the log's readers: :mod:`.deltalog`; pure helpers: :mod:`.deltatypes`.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import asdict
from typing import Iterator

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import LockTimeout, TargetError
from .base import (CURSOR_COL, HIDDEN, RUN_COL, Capabilities, Dropped, FilesGone, FilesRead, History,
                   Quarantined, Released, State, TableInfo, Target, Transaction, Verified)
from .deltacommit import commit_bucket, partitioned
from .deltalog import LOG, DeltaLedger, append_rows, log_rows, verified_rows
from .deltatypes import (OP, UPDATE_WHEN, HeldKeys, add_fields, anti, app_id, arrow_type, bucket_of,
                         castable, check_column, conform, deltalake, differing, field, first_rows, is_conflict, kill_point,
                         holds_rows, landed, last_per_key, logical, merge_source, no_hits, one_line, parse_url, partition_filter,
                         remove_folder, row_count, sql_text, storage_error, storage_options, txn_id, updates)
from .keys import Lookup

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
# Rows past this many files in the log: compact it (one small file per commit otherwise).
COMPACT_AFTER = 64
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


class DeltaTransaction(Transaction):
    """What one transaction will commit, staged in memory: log rows (state, history, quarantine,
    manifest), data rows each with its operation, schema changes. Its reads lay the staged rows
    over the run's snapshot. The commit is the log append, then one MERGE carrying the app
    transaction; a discarded or failed transaction just drops what it staged.

    The public methods act on the table and key the transaction was begun with; the private
    ones (staging, reads over the snapshot) take them as arguments."""

    def __init__(self, target: DeltaTarget, stream: str | None, table: str | None = None, key: tuple = (), *,
                 run_id: int | None = None, discard: bool = False):
        self._target = target
        self._stream = stream
        self._name, self._key = table, tuple(key)
        self._discard = discard
        self._run_id = run_id
        self._log: list = []          # (kind, payload JSON, run id)
        self._rows: dict = {}         # table -> [Arrow tables with an op column]
        self._schemas: dict = {}      # table -> schema after this transaction's changes
        self._created: set = set()
        self._evolved: set = set()
        self._keys: dict = {table: tuple(key)} if table and key else {}  # table -> key
        self._seen: list | None = None
        self._table = table           # the data table the commit anchors to
        self._dropped = False
        self._verified: list = []     # Verified facts: outside the chain (deltalog.verified_rows)

    @property
    def run_id(self) -> int:
        if self._run_id is None:
            self._run_id = self._target.ledger.next_run_id()
        return self._run_id

    def __enter__(self) -> "DeltaTransaction":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        target = self._target
        if exc_type is None and not self._discard:
            try:
                self._commit()
                return
            except BaseException:
                target._pins, target._held_cache = {}, {}
                raise
        target._pins, target._held_cache = {}, {}  # what follows (the failed run's history row) reads afresh

    # --- the Transaction interface -------------------------------------------------------------
    def evolve(self, columns: dict, cursor: tuple) -> None:
        """Every cursor is stored as its integer here, so ``cursor`` changes no column type."""
        if not columns:
            return
        have = self._columns(self._name)
        if have is None:
            self._create(self._name, columns, self._key)
            return
        new = {c: t for c, t in columns.items() if c not in have}
        if new:
            self._add(self._name, new)

    def held(self, keys: list, cursors: np.ndarray | None = None) -> Lookup:
        """Keys without their cursors (held late records, in their stored form) are cast to the
        table's key types first; the batch's own keys are matched as they come."""
        return self._lookup(self._name, self._key, keys, cast=cursors is None)

    def write(self, rows: pa.Table, *, mode: str = "upsert") -> int | None:
        if rows.num_rows == 0:
            return 0 if mode == "refresh" else None
        return self._write(self._name, self._key, rows, mode)

    def delete(self, keys: list) -> int:
        return self._delete(self._name, self._key, keys) if len(keys[0]) else 0

    def seen(self, keys: list) -> None:
        if self._seen is None:
            self._seen = []
        self._seen.append(pa.table(dict(zip(self._key, keys))))

    def prune(self) -> int:
        return self._prune(self._name, self._key)

    def count(self) -> int:
        return self._count(self._name)

    def record(self, *facts) -> None:
        for fact in sorted(facts, key=lambda f: not isinstance(f, Released)):  # releases first
            match fact:
                case State(state=s):
                    d = asdict(s)
                    d["key"] = list(s.key)
                    self._table = s.table
                    self._stage("state", d, s.last_run)
                case History(row=row):
                    self._stage("history", row, row.get("run_id"))
                case Quarantined(rows=rows):
                    for r in rows:
                        self._stage("quarantine", r, r.get("run"))
                case Released(ids=ids):
                    if ids:
                        self._stage("release", {"ids": list(ids)})
                case FilesRead(entries=entries):
                    self._files(entries, self.run_id)
                case FilesGone(paths=paths):
                    for p in paths:
                        self._stage("file_gone", {"path": p})
                case Dropped(table=table):
                    self._drop(self._stream, table)
                case Verified():
                    self._verified.append(fact)
                case _:
                    raise TypeError(f"not a fact: {fact!r}")

    # --- staging the log ---------------------------------------------------------------------------
    def _stage(self, kind: str, payload: dict, run_id: int | None = None) -> None:
        self._log.append((kind, orjson.dumps(payload, default=str).decode(), run_id))

    def _files(self, entries: list, run_id: int) -> None:
        for e in entries:
            self._stage("file", {"path": e.path, "size": e.size, "mtime_ns": e.mtime_ns, "etag": e.etag}, run_id)

    def _drop(self, stream: str, table: str | None) -> None:
        self._dropped = True
        # run ids are the log's MAX + 1: the stream's highest stays in the log (a kept table's rows
        # must never look written by a later run)
        last = max((r["run_id"] or 0 for r in self._target.ledger.rows(stream)), default=0)
        self._target._forget(stream)
        if last:
            self._stage("dropped", {}, last)
        if table is not None:
            self._target._drop_table(table)

    # --- the data table's schema -------------------------------------------------------------------
    def _columns(self, table: str) -> dict | None:
        schema = self._schemas.get(table) or self._target._schema(table)
        return None if schema is None else {f.name: logical(f.type) for f in schema}

    def _schema(self, table: str) -> pa.Schema | None:
        """The table's schema as this transaction leaves it (the committed one, kept from its first use)."""
        if table not in self._schemas:
            schema = self._target._schema(table)
            if schema is None:
                return None
            self._schemas[table] = schema
        return self._schemas[table]

    def _create(self, table: str, columns: dict, key: tuple) -> None:
        """Recorded now, made by the commit (with its first rows, in the same commit)."""
        self._target._uri(table)
        for c in columns:
            check_column(c)
        fields = [pa.field(c, arrow_type(t), nullable=c not in key) for c, t in columns.items()]
        fields += [pa.field(CURSOR_COL, pa.int64(), nullable=False), pa.field(RUN_COL, pa.int64(), nullable=False)]
        self._schemas[table] = pa.schema(fields)
        self._created.add(table)
        self._keys[table] = key
        self._table = self._table or table

    def _add(self, table: str, columns: dict) -> None:
        for c in columns:
            check_column(c)
        schema = self._schema(table)
        for c, t in columns.items():
            schema = schema.append(pa.field(c, arrow_type(t)))
        self._schemas[table] = schema
        self._evolved.add(table)

    # --- lookups see this transaction's own writes ---------------------------------------------
    def _lookup(self, table: str, key: tuple, arrays: list, cast: bool = False) -> Lookup:
        if cast:
            schema = self._schema(table)
            if schema is not None:
                arrays = [a.cast(schema.field(k).type) if a.type != schema.field(k).type else a
                          for a, k in zip(arrays, key)]
        n = len(arrays[0])
        exists = np.zeros(n, dtype=bool)
        cursor = np.zeros(n, dtype=np.int64)
        run = np.zeros(n, dtype=np.int64)
        if n:
            want = pa.table({**dict(zip(key, arrays)), "_i": pa.array(np.arange(n, dtype=np.int64))})
            hit = self._held(table, key, want)
            if hit.num_rows:
                idx = hit.column("_i").to_numpy()
                exists[idx] = True
                cursor[idx] = hit.column(CURSOR_COL).to_numpy()
                run[idx] = hit.column(RUN_COL).to_numpy()
        return Lookup(exists, cursor, run)

    def _held(self, table: str, key: tuple, want: pa.Table) -> pa.Table:
        """``key…, _hiwater_cursor, _hiwater_run, _i`` for the keys of ``want`` (with its ``_i``)
        the table holds, with this transaction's staged rows overriding the committed ones."""
        cols = list(key) + [CURSOR_COL, RUN_COL]
        got = None
        dt = self._target._table(table) if table not in self._created else None
        if dt is not None:
            got = self._target._committed_keys(table, key, dt, want)
        staged = self._staged_latest(table, key)
        if staged is not None and staged.num_rows:
            live = staged.filter(pc.not_equal(staged.column(OP), "delete")).select(cols)
            gone = staged.select(list(key))
            if got is not None and got.num_rows:
                got = anti(got, gone, key)
                got = pa.concat_tables([got, live.cast(got.schema)]) if live.num_rows else got
            else:
                got = live
        if got is None or got.num_rows == 0:
            return no_hits(want, key)
        got = got.cast(pa.schema([pa.field(k, want.schema.field(k).type) if k in key else got.schema.field(k)
                                  for k in got.column_names]), safe=False) if castable(got, want, key) else got
        return want.join(got, keys=list(key), join_type="inner")

    # --- writes are staged, applied by the commit --------------------------------------------------
    def _write(self, table: str, key: tuple, data: pa.Table, mode: str) -> int | None:
        """Stage a guarded upsert; with ``refresh``, only the same-cursor rows whose content
        differs (returns how many), else ``None``."""
        self._keys[table] = key
        data = self._conform(table, data)
        op, written = "upsert", None
        if mode == "refresh":
            data = self._differing(table, key, data)
            op, written = "refresh", data.num_rows
        if data.num_rows:
            self._rows.setdefault(table, []).append(data.append_column(OP, pa.array([op] * data.num_rows)))
        return written

    def _conform(self, table: str, data: pa.Table) -> pa.Table:
        """Cast a batch to the table's columns (decimals to their digits where the column is text)."""
        schema = self._schema(table)
        try:
            return data if schema is None else conform(data, schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise TargetError(f"{self._target.description}: writing {table!r}: {one_line(exc)}") from None

    def _differing(self, table: str, key: tuple, data: pa.Table) -> pa.Table:
        """A full load's same-cursor rows: only those whose content differs from the row held."""
        dt = self._target._table(table)
        if dt is None:
            return data
        cols = [c for c in data.column_names if c not in HIDDEN]
        ds = dt.to_pyarrow_dataset()
        held = ds.to_table(columns=cols, filter=field(ds.schema, key[0]).isin(pc.unique(data.column(key[0]))))
        return differing(data, held, key)

    def _delete(self, table: str, key: tuple, arrays: list) -> int:
        lk = self._lookup(table, key, arrays, cast=True)
        schema = self._schema(table)
        if schema is not None:
            arrays = [a.cast(schema.field(k).type) for a, k in zip(arrays, key)]
        t = pa.table(dict(zip(key, arrays)))
        self._rows.setdefault(table, []).append(t.append_column(OP, pa.array(["delete"] * t.num_rows)))
        return int(lk.exists.sum())

    def _staged_latest(self, table: str, key: tuple) -> pa.Table | None:
        """This transaction's staged rows of ``table``, the last per key (an upsert or a delete)."""
        if not self._rows.get(table):
            return None
        parts = self._rows[table]
        if len(parts) > 1:
            self._rows[table] = parts = [pa.concat_tables(parts, promote_options="permissive")]
        latest = last_per_key(parts[0], key)
        self._rows[table] = [latest]
        return latest

    def _count(self, table: str) -> int:
        staged = self._staged_latest(table, self._keys[table]) if table in self._keys else None
        dt = self._target._table(table) if table not in self._created else None
        if staged is None or staged.num_rows == 0:
            return 0 if dt is None else row_count(dt)
        live = int(pc.sum(pc.not_equal(staged.column(OP), "delete")).as_py() or 0)
        if dt is None:
            return live
        key = self._keys[table]
        held = dt.to_pyarrow_dataset().to_table(columns=list(key))
        return anti(held, staged.select(list(key)), key).num_rows + live

    def _prune(self, table: str, key: tuple) -> int:
        """Stage a delete of every held key the source did not show; return how many."""
        dt = self._target._table(table) if table not in self._created else None
        if dt is None:
            return 0
        # a bucket prunes only its own rows
        held = dt.to_pyarrow_dataset().to_table(columns=list(key), filter=partition_filter(dt, self._stream))
        seen = [s.cast(pa.schema([held.schema.field(k) for k in key])) for s in self._seen] if self._seen else []
        gone = anti(held, pa.concat_tables(seen) if seen else held.slice(0, 0), key)
        self._seen = None
        staged = self._staged_latest(table, key)
        if staged is not None and staged.num_rows:
            # a key this transaction wrote is kept; one it deleted is gone already (not counted twice)
            gone = anti(gone, staged.select(list(key)), key)
        if gone.num_rows:
            self._rows.setdefault(table, []).append(gone.append_column(OP, pa.array(["delete"] * gone.num_rows)))
        return gone.num_rows

    # --- the commit --------------------------------------------------------------------------------
    def _commit(self) -> None:
        stream, target = self._stream, self._target
        if stream is None:
            if self._rows or self._log:
                raise TargetError("internal: a Delta transaction outside a stream lock")
            return
        if self._verified:
            self._append_log(verified_rows(self._verified, self._name))
        if not self._log and not self._rows and not self._created and not self._evolved:
            return  # nothing staged (the meta check, a dry run's inner transaction)
        table = self._table or next(iter(self._rows), None) or target.ledger.last_table(stream)
        dt = target._table(table) if table else None
        anchored = dt is not None or bool(self._rows.get(table)) or table in self._created
        prev = None if self._dropped else target.ledger.head(stream)
        txn = txn_id()
        if anchored and not self._log:
            self._log.append(("commit", "{}", self._run_id))  # every committed id has a row: the chain runs through it
        kill_point("before-log")
        if self._log:
            self._append_log(log_rows(self._log, stream, txn, prev, "data" if anchored else "self", table))
        if not anchored:
            return
        kill_point("after-log")
        self._commit_data(stream, table, dt, txn)
        target._pins.pop(table, None)  # (a new table is read at its first version next)
        target._held_cache.pop(table, None)
        kill_point("after-data")

    def _append_log(self, rows: list[dict]) -> None:
        target = self._target
        try:
            append_rows(target._dl, target._uri(LOG), target.storage, rows)
        except Exception as exc:  # noqa: BLE001 - delta-rs raises its own classes
            raise storage_error(exc, "writing the log", target) from None
        dt = target._table(LOG)
        if dt is not None and dt.version() % COMPACT_AFTER == 0 and dt.version() > 0:
            try:
                dt.optimize.compact()
            except Exception:  # noqa: BLE001 - compaction is housekeeping; a race with another writer is fine
                pass

    def _commit_data(self, stream: str, table: str, dt, txn: int) -> None:
        target = self._target
        dl = target._dl
        bucket = bucket_of(stream)
        # No retry on top of a commit made since the run's snapshot: delta-rs would re-base this
        # MERGE (decided against that snapshot) when its conflict check finds no overlap, which
        # for racing runs of one stream left a key twice or the watermark behind the data. A
        # stream's commit is valid only on the snapshot it read (Iceberg's num-retries=0). The
        # buckets of one stream commit side by side into their own partitions, so they retry
        # (a MERGE naming its partition conflicts only with a commit into that partition).
        props = dl.CommitProperties(app_transactions=[dl.Transaction(app_id(stream), txn)],
                                    custom_metadata={"hiwater.stream": stream, "hiwater.run_id": str(self._run_id or "")},
                                    max_commit_retries=0 if bucket is None else None)
        key = self._keys.get(table) or self._key_of(stream)
        staged = self._staged_latest(table, key) if key else None
        schema = self._schemas.get(table)
        uri = target._uri(table)

        def apply(dt):
            if dt is None:
                # The table's first commit: its schema and first rows (inserts only: nothing was held).
                rows = schema.empty_table() if staged is None else first_rows(staged, key, schema)
                dl.write_deltalake(uri, rows, mode="error", storage_options=target.storage, commit_properties=props,
                                   target_file_size=target.file_size,
                                   configuration={"delta.targetFileSize": str(target.file_size)})
                return
            if table in self._evolved:
                have = set(pa.schema(dt.schema().to_arrow()).names)
                add_fields(dl, dt, [f for f in schema if f.name not in have])
            if staged is None or staged.num_rows == 0:
                dt.create_write_transaction([], "append", dt.schema().to_arrow(), commit_properties=props)
                return
            src, on = merge_source(staged, key, pa.schema(dt.schema().to_arrow()), schema, bucket)
            (dt.merge(src, on, source_alias="s", target_alias="t", commit_properties=props)
             .when_matched_delete(predicate=f"s.`{OP}` = 'delete'")
             .when_matched_update(updates=updates(src, key), predicate=UPDATE_WHEN)
             .when_not_matched_insert(updates=updates(src, ()), predicate=f"s.`{OP}` <> 'delete'")
             .execute())

        def commit():
            if bucket is None or (dt is not None and not partitioned(dt)):
                return apply(dt)  # on the run's snapshot (a bucket too when its table is not partitioned)
            # A bucket's table, shared with the stream's other buckets, which commit at the same
            # time: on a fresh snapshot, once its partition is checked unchanged (.deltacommit).
            commit_bucket(dl, uri, target.storage, dt, app=app_id(stream), txn=txn, bucket=bucket,
                          schema=schema, file_size=target.file_size, apply=apply)
        try:
            target._run(commit, f"writing {table!r}", stream=stream)
        except LockTimeout:
            # The commit's own app transaction is the fact: delta-rs can report an error after
            # the commit landed (a post-commit step racing another writer); then it stands.
            if not landed(target._dl, uri, target.storage, app_id(stream), txn):
                raise

    def _key_of(self, stream: str) -> tuple:
        s = next(iter(self._target.ledger.states(stream)), None)
        return tuple(s.key) if s else ()


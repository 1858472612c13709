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
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from contextlib import contextmanager
from dataclasses import asdict
from typing import Iterator

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError, LockTimeout, TargetError, UsageError
from ..state import StreamState
from ..types import BOOLEAN, INTEGER, REAL, TEXT, logical_type
from .base import CURSOR_COL, HIDDEN, HISTORY_COLUMNS, RUN_COL, Capabilities, LegacyTarget
from .keys import Lookup

LOG = "_hiwater_log"
OP = "_hiwater_op"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
LOG_SCHEMA = pa.schema([
    ("stream", pa.string()), ("txn", pa.int64()), ("prev", pa.int64()), ("anchor", pa.string()),
    ("seq", pa.int64()), ("table_name", pa.string()), ("run_id", pa.int64()), ("kind", pa.string()),
    ("payload", pa.string()),
])
# Rows past this many files in the log: compact it (one small file per commit otherwise).
COMPACT_AFTER = 64
# A run holds the keys, cursors and runs of a table up to this many rows in memory (~24 bytes each).
HELD_IN_MEMORY = 20_000_000
# A data file is written at about this size, so a small merge rewrites a small file.
TARGET_FILE_SIZE = 32 * 1024 * 1024


def _arrow_type(logical: str) -> pa.DataType:
    if logical == INTEGER:
        return pa.int64()
    if logical == REAL:
        return pa.float64()
    if logical == BOOLEAN:
        return pa.bool_()
    m = re.fullmatch(r"decimal\((\d+),(\d+)\)", logical)
    if m:
        return pa.decimal128(int(m.group(1)), int(m.group(2)))
    return pa.string()  # text, any, and an unconstrained decimal (its own digits, as on SQLite)


def _txn_id() -> int:
    return secrets.randbits(62) + 1


def _col(name: str, alias: str) -> str:
    return f"{alias}.`{name}`"


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


def _check_column(name: str) -> None:
    if "`" in name:
        raise UsageError(f"the field {name!r} holds a backquote, which a Delta merge cannot name",
                         hint="rename it in the source, or load into a SQL target")


class DeltaTarget(LegacyTarget):
    dialect = "delta"
    capabilities = Capabilities(lock="optimistic", meta_atomic=False)

    def __init__(self, url: str, **_kw):
        self.url = url
        url, _, query = url.partition("?")
        self.file_size = TARGET_FILE_SIZE
        for part in filter(None, query.split("&")):
            name, _, value = part.partition("=")
            if name != "file_size_mb" or not value.isdigit() or int(value) < 1:
                raise ConfigError(f"--target {self.url}: unknown option {part!r}",
                                  hint="the one option is ?file_size_mb=N (the size data files are written at)")
            self.file_size = int(value) * 1024 * 1024
        rest = url.split(":", 1)[1]
        if url.lower().startswith("delta+s3:"):
            self.root = "s3:" + rest
        else:
            path = rest[2:] if rest.startswith("//") else rest
            if not path:
                raise ConfigError(f"--target {url}: give the folder, e.g. delta:///data/lake")
            self.root = os.path.abspath(path)
        self.remote = "://" in self.root
        self.description = f"delta {self.root}"
        self.storage = _storage_options() if self.remote else None
        self._stream: str | None = None
        self._pins: dict = {}  # table -> DeltaTable at the snapshot this run reads (see _table)
        self._held_cache: dict = {}  # table -> its keys, cursors and runs at that snapshot (see _committed_keys)
        self._tx: _Staged | None = None
        self._dl = _deltalake()

    def cli_flags(self) -> str:
        import shlex
        return " --target " + shlex.quote(self.url)

    # --- paths, tables ----------------------------------------------------------------------
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
            raise self._storage_error(exc, f"cannot open {table!r}") from None
        if pin:
            self._pins[table] = dt
        return dt

    # --- connection, locks, transactions -----------------------------------------------------
    def connect(self) -> None:
        if not self.remote:
            os.makedirs(self.root, exist_ok=True)

    def close(self) -> None:
        self._tx = None

    @contextmanager
    def stream_lock(self, stream: str, timeout_s: float) -> Iterator[None]:
        """Optimistic: nothing is held; the stream's app transaction makes the later commit fail."""
        was, self._stream = self._stream, stream
        self._pins, self._held_cache = {}, {}
        try:
            yield
        finally:
            self._stream = was
            self._pins, self._held_cache = {}, {}

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._tx is not None:  # a dry run's outer transaction: the inner one joins it
            yield
            return
        self._tx = _Staged(self._stream)
        try:
            yield
            self._commit(self._tx)
        except BaseException:
            self._pins, self._held_cache = {}, {}  # what follows (the failed run's history row) reads afresh
            raise
        finally:
            self._tx = None

    def ensure_meta(self) -> None:
        pass  # the log table is made by its first append

    # --- the log: state, history, quarantine, files ---------------------------------------------
    def _log_rows(self, stream: str | None = None) -> list[dict]:
        dt = self._table(LOG)
        if dt is None:
            return []
        ds = dt.to_pyarrow_dataset()
        filt = None if stream is None else (pc.field("stream") == stream)
        return ds.to_table(filter=filt).to_pylist()

    def _chains(self, stream: str | None = None) -> dict:
        """``{stream: [rows of committed transactions, oldest first]}``."""
        rows = self._log_rows(stream)
        by_stream: dict = {}
        for r in rows:
            by_stream.setdefault(r["stream"], []).append(r)
        out = {}
        for s, rs in by_stream.items():
            head = self._head(s, rs)
            by_txn: dict = {}
            for r in sorted(rs, key=lambda r: r["seq"]):
                by_txn.setdefault(r["txn"], []).append(r)
            chain, seen = [], set()
            while head is not None and head in by_txn and head not in seen:
                seen.add(head)
                chain.append(by_txn[head])
                head = by_txn[head][0]["prev"]
            out[s] = [r for txn_rows in reversed(chain) for r in txn_rows]
        return out

    def _head(self, stream: str, rows: list[dict]) -> int | None:
        """The stream's last committed transaction id."""
        txns = {r["txn"] for r in rows}
        table = max(rows, key=lambda r: r["seq"])["table_name"]
        if table:
            dt = self._table(table)
            if dt is not None:
                v = dt.transaction_version(_app_id(stream))
                if v is not None and v in txns:
                    return v
        selfs = [r for r in rows if r["anchor"] == "self"]
        return max(selfs, key=lambda r: r["seq"])["txn"] if selfs else None

    def _committed(self, stream: str) -> list[dict]:
        return self._chains(stream).get(stream, [])

    def read_state(self, stream: str) -> StreamState | None:
        state = None
        for r in self._committed(stream):
            if r["kind"] == "state":
                state = _state(orjson.loads(r["payload"]))
            elif r["kind"] == "state_deleted":
                state = None
        return state

    def list_states(self) -> list[StreamState]:
        out = []
        for s, rows in sorted(self._chains().items()):
            state = None
            for r in rows:
                if r["kind"] == "state":
                    state = _state(orjson.loads(r["payload"]))
                elif r["kind"] == "state_deleted":
                    state = None
            if state is not None:
                out.append(state)
        return out

    def _stage(self, kind: str, payload: dict, run_id: int | None = None) -> None:
        tx = self._need_tx()
        tx.log.append((kind, orjson.dumps(payload, default=str).decode(), run_id))

    def _need_tx(self) -> "_Staged":
        if self._tx is None:
            raise TargetError("internal: a Delta write outside a transaction")
        return self._tx

    def write_state(self, state: StreamState) -> None:
        d = asdict(state)
        d["key"] = list(state.key)
        self._need_tx().table = state.table
        self._stage("state", d, state.last_run)

    def delete_state(self, stream: str) -> None:
        self._stage("state_deleted", {})

    def forget_stream(self, stream: str) -> None:
        """Delete every log row of the stream (its state, history, quarantine, manifest)."""
        dt = self._table(LOG)
        if dt is not None:
            self._run(lambda: dt.delete(f"stream = '{_sql_text(stream)}'"), "forgetting the stream")

    def drop_stream(self, stream: str, table: str | None) -> None:
        self._need_tx().dropped = True
        self.forget_stream(stream)
        if table is not None:
            self.drop_table(table)

    def drop_table(self, table: str) -> None:
        self._pins.pop(table, None)
        self._held_cache.pop(table, None)
        uri = self._uri(table)
        if self.remote:
            import fsspec
            fs, path = fsspec.core.url_to_fs(uri, **_fsspec_options())
            if fs.exists(path):
                fs.rm(path, recursive=True)
        else:
            import shutil
            shutil.rmtree(uri, ignore_errors=True)

    def next_run_id(self) -> int:
        dt = self._table(LOG)
        top = 0
        if dt is not None:
            col = dt.to_pyarrow_dataset().to_table(columns=["run_id"]).column("run_id")
            top = pc.max(col).as_py() or 0
        tx = self._tx
        if tx is not None:
            tx.run_id = max(top + 1, tx.run_id or 0)
            return tx.run_id
        return top + 1

    def write_history(self, row: dict) -> None:
        self._stage("history", row, row.get("run_id"))

    def read_history(self, stream: str | None = None, limit: int | None = None) -> list[dict]:
        rows = [{c: None for c in HISTORY_COLUMNS} | orjson.loads(r["payload"])
                for rs in self._chains(stream).values() for r in rs if r["kind"] == "history"]
        rows.sort(key=lambda h: (h["run_id"], h.get("window_index", 0)))
        return rows[-limit:] if limit else rows

    def write_quarantine(self, rows: list[dict]) -> None:
        for r in rows:
            self._stage("quarantine", r, r.get("run"))

    def delete_quarantine(self, ids: list[int]) -> None:
        if ids:
            self._stage("release", {"ids": list(ids)})

    def read_quarantine(self, stream: str | None = None, reason: str | None = None,
                        limit: int | None = None) -> list[dict]:
        held: dict = {}
        for s, rows in self._chains(stream).items():
            for r in rows:
                p = orjson.loads(r["payload"])
                if r["kind"] == "quarantine":
                    qid = _quarantine_id(s, p["reason"], p["fingerprint"])
                    old = held.get(qid)
                    entry = {"id": qid, "stream": s, "reason": p["reason"], "detail": p.get("detail"),
                             "source": p.get("source"), "record_no": p.get("record_no"), "key": p.get("key"),
                             "cursor": p.get("cursor"), "cursor_value": p.get("cursor_value"),
                             "record": p["record"], "fingerprint": p["fingerprint"],
                             "first_run": old["first_run"] if old else p.get("run"), "last_run": p.get("run"),
                             "seen": old["seen"] + 1 if old else 1, "_order": old["_order"] if old else r["seq"]}
                    held[qid] = entry
                elif r["kind"] == "release":
                    for qid in p["ids"]:
                        held.pop(qid, None)
        out = sorted(held.values(), key=lambda e: (e["_order"], e["id"]))
        if reason is not None:
            out = [e for e in out if e["reason"] == reason]
        for e in out:
            e.pop("_order")
        return out[:limit] if limit else out

    def read_files(self, stream: str) -> dict:
        return {p: (size, mtime, etag) for p, (size, mtime, etag, _run) in self.manifest(stream).items()}

    def manifest(self, stream: str) -> dict:
        """``{path: (size, mtime_ns, etag, run_id)}``: the committed manifest, folded from the log."""
        files: dict = {}
        for r in self._committed(stream):
            if r["kind"] == "file":
                p = orjson.loads(r["payload"])
                files[p["path"]] = (p["size"], p["mtime_ns"], p["etag"], r["run_id"])
            elif r["kind"] == "file_gone":
                files.pop(orjson.loads(r["payload"])["path"], None)
        return files

    def write_files(self, stream: str, entries: list, run_id: int) -> None:
        for e in entries:
            self._stage("file", {"path": e.path, "size": e.size, "mtime_ns": e.mtime_ns, "etag": e.etag}, run_id)

    def delete_files(self, stream: str, paths: list) -> None:
        for p in paths:
            self._stage("file_gone", {"path": p})

    # --- data: schema --------------------------------------------------------------------------
    def table_columns(self, table: str) -> dict | None:
        tx = self._tx
        if tx is not None and table in tx.schemas:
            schema = tx.schemas[table]
        else:
            dt = self._table(table)
            if dt is None:
                return None
            schema = pa.schema(dt.schema().to_arrow())
        return {f.name: _logical(f.type) for f in schema}

    def _schema(self, table: str) -> pa.Schema | None:
        tx = self._tx
        if tx is not None and table in tx.schemas:
            return tx.schemas[table]
        dt = self._table(table)
        if dt is None:
            return None
        schema = pa.schema(dt.schema().to_arrow())
        if tx is not None:
            tx.schemas[table] = schema
        return schema

    def create_table(self, table: str, columns: dict, key: tuple) -> None:
        """Recorded now, made by the commit (with its first rows, in the same commit)."""
        self._uri(table)
        for c in columns:
            _check_column(c)
        fields = [pa.field(c, _arrow_type(t), nullable=c not in key) for c, t in columns.items()]
        fields += [pa.field(CURSOR_COL, pa.int64(), nullable=False), pa.field(RUN_COL, pa.int64(), nullable=False)]
        tx = self._need_tx()
        tx.schemas[table] = pa.schema(fields)
        tx.created.add(table)
        tx.key[table] = tuple(key)
        tx.table = tx.table or table

    def add_columns(self, table: str, columns: dict) -> None:
        for c in columns:
            _check_column(c)
        schema = self._schema(table)
        for c, t in columns.items():
            schema = schema.append(pa.field(c, _arrow_type(t)))
        tx = self._need_tx()
        tx.schemas[table] = schema
        tx.evolved.add(table)

    # --- data: lookups see this transaction's own writes --------------------------------------
    def _held(self, table: str, key: tuple, want: pa.Table) -> pa.Table:
        """``key…, _hiwater_cursor, _hiwater_run, _i`` for the keys of ``want`` (with its ``_i``)
        the table holds, with this transaction's staged rows overriding the committed ones."""
        cols = list(key) + [CURSOR_COL, RUN_COL]
        got = None
        dt = self._table(table) if table not in self._need_tx_or_empty().created else None
        if dt is not None:
            got = self._committed_keys(table, key, dt, want)
        staged = self._staged_latest(table, key)
        if staged is not None and staged.num_rows:
            live = staged.filter(pc.not_equal(staged.column(OP), "delete")).select(cols)
            gone = staged.select(list(key))
            if got is not None and got.num_rows:
                got = _anti(got, gone, key)
                got = pa.concat_tables([got, live.cast(got.schema)]) if live.num_rows else got
            else:
                got = live
        if got is None or got.num_rows == 0:
            return pa.table({**{k: want.column(k) for k in key}, "_i": want.column("_i")}).slice(0, 0).append_column(
                CURSOR_COL, pa.array([], pa.int64())).append_column(RUN_COL, pa.array([], pa.int64()))
        got = got.cast(pa.schema([pa.field(k, want.schema.field(k).type) if k in key else got.schema.field(k)
                                  for k in got.column_names]), safe=False) if _castable(got, want, key) else got
        return want.join(got, keys=list(key), join_type="inner")

    def _committed_keys(self, table: str, key: tuple, dt, want: pa.Table) -> pa.Table:
        """``key…, _hiwater_cursor, _hiwater_run`` of the committed rows holding keys of ``want``.

        The run reads these three columns of its snapshot once (its bucket's partition only) and
        matches every batch in memory: one scan per run, not one per batch. A table past
        ``HELD_IN_MEMORY`` rows is scanned per batch instead (a key filter)."""
        cols = list(key) + [CURSOR_COL, RUN_COL]
        b = bucket_of(self._stream)
        part = (pc.field(BUCKET_COL) == b) if b is not None and BUCKET_COL in pa.schema(dt.schema().to_arrow()).names \
            else None
        first = want.column(key[0])
        cache = self._held_cache.get(table)
        if cache is None:
            ds = dt.to_pyarrow_dataset()
            if ds.count_rows(filter=part) > HELD_IN_MEMORY:
                filt = pc.field(key[0]).isin(pc.unique(first))
                return ds.to_table(columns=cols, filter=filt if part is None else part & filt)
            held = ds.to_table(columns=cols, filter=part)
            index = None
            if len(key) == 1 and pa.types.is_integer(held.schema.field(key[0]).type):
                k = held.column(key[0]).to_numpy()
                order = np.argsort(k, kind="stable")
                index = (k[order], held.take(pa.array(order)))
            cache = (held, index)
            if self._stream is not None:  # a run: its snapshot is pinned, so the cache stays true
                self._held_cache[table] = cache
        held, index = cache
        if index is not None and pa.types.is_integer(first.type):
            keys, rows = index
            probe = np.asarray(pc.fill_null(first, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
            pos = np.minimum(np.searchsorted(keys, probe), max(len(keys) - 1, 0))
            hit = np.flatnonzero(keys[pos] == probe) if len(keys) else np.zeros(0, np.int64)
            return rows.take(pa.array(np.unique(pos[hit]), pa.int64()))
        return held.filter(pc.is_in(held.column(key[0]), value_set=pc.unique(first.cast(held.schema.field(key[0]).type))))

    def _need_tx_or_empty(self) -> "_Staged":
        return self._tx if self._tx is not None else _Staged(None)

    def lookup_arrow(self, table: str, key: tuple, keys: list, cursors: np.ndarray, run_id: int) -> Lookup:
        want = pa.table({**{k: a for k, a in zip(key, keys)}, "_i": pa.array(np.arange(len(keys[0]), dtype=np.int64))})
        return self._lookup(table, key, want)

    def lookup(self, table: str, key: tuple, keys: list) -> Lookup:
        if len(key) == 1:
            arrays = [pa.array(keys)]
        else:
            arrays = [pa.array([k[i] for k in keys]) for i in range(len(key))]
        schema = self._schema(table)
        if schema is not None:
            arrays = [a.cast(schema.field(k).type) if a.type != schema.field(k).type else a
                      for a, k in zip(arrays, key)]
        want = pa.table({**{k: a for k, a in zip(key, arrays)}, "_i": pa.array(np.arange(len(keys), dtype=np.int64))})
        return self._lookup(table, key, want)

    def _lookup(self, table: str, key: tuple, want: pa.Table) -> Lookup:
        n = want.num_rows
        exists = np.zeros(n, dtype=bool)
        cursor = np.zeros(n, dtype=np.int64)
        run = np.zeros(n, dtype=np.int64)
        if n:
            hit = self._held(table, key, want)
            if hit.num_rows:
                idx = hit.column("_i").to_numpy()
                exists[idx] = True
                cursor[idx] = hit.column(CURSOR_COL).to_numpy()
                run[idx] = hit.column(RUN_COL).to_numpy()
        return Lookup(exists, cursor, run)

    # --- data: writes are staged, applied by the commit ---------------------------------------
    def upsert(self, table: str, columns: list, rows: list, key: tuple) -> None:
        if rows:
            names = list(columns) + [CURSOR_COL, RUN_COL]
            self.upsert_arrow(table, pa.table({c: [r[i] for r in rows] for i, c in enumerate(names)}), key)

    def upsert_arrow(self, table: str, data: pa.Table, key: tuple, fresh: bool = False) -> None:
        if data.num_rows == 0:
            return
        tx = self._need_tx()
        tx.key[table] = tuple(key)
        data = self._conform(table, data)
        op = "upsert"
        if self.refresh:
            data = self._differing(table, key, data)
            self.last_written = data.num_rows
            op = "refresh"
        else:
            self.last_written = None
        if data.num_rows:
            tx.rows.setdefault(table, []).append(data.append_column(OP, pa.array([op] * data.num_rows)))

    def _conform(self, table: str, data: pa.Table) -> pa.Table:
        """Cast a batch to the table's columns (decimals to their digits where the column is text)."""
        schema = self._schema(table)
        if schema is None:
            return data
        fields = []
        for name in data.column_names:
            want = schema.field(name).type if name in schema.names else data.schema.field(name).type
            fields.append(pa.field(name, want))
        try:
            return data.cast(pa.schema(fields))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise TargetError(f"{self.description}: writing {table!r}: {_one_line(exc)}") from None

    def _differing(self, table: str, key: tuple, data: pa.Table) -> pa.Table:
        """A full load's same-cursor rows: only those whose content differs from the row held."""
        want = data.append_column("_i", pa.array(np.arange(data.num_rows, dtype=np.int64)))
        dt = self._table(table)
        if dt is None:
            return data
        cols = [c for c in data.column_names if c not in HIDDEN]
        held = dt.to_pyarrow_dataset().to_table(columns=cols, filter=pc.field(key[0]).isin(pc.unique(data.column(key[0]))))
        other = [c for c in cols if c not in key]
        renamed = held.rename_columns([c if c in key else f"_old_{c}" for c in held.column_names])
        j = want.select(list(key) + other + ["_i"]).join(renamed, keys=list(key), join_type="inner")
        diff = np.zeros(j.num_rows, dtype=bool)
        for c in other:
            a, b = j.column(c), j.column(f"_old_{c}")
            if a.type != b.type:
                try:
                    a = a.cast(b.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    a, b = a.cast(pa.string()), b.cast(pa.string())
            eq = pc.fill_null(pc.equal(a, b), False)
            both_null = pc.and_(pc.is_null(a), pc.is_null(b))
            diff |= ~pc.or_(eq, both_null).to_numpy(zero_copy_only=False)
        idx = np.sort(j.column("_i").to_numpy()[diff])
        return data.take(pa.array(idx, pa.int64()))

    def delete_keys(self, table: str, key: tuple, keys: list) -> int:
        if not keys:
            return 0
        tx = self._need_tx()
        lk = self.lookup(table, key, keys)
        arrays = [pa.array(keys)] if len(key) == 1 else [pa.array([k[i] for k in keys]) for i in range(len(key))]
        schema = self._schema(table)
        if schema is not None:
            arrays = [a.cast(schema.field(k).type) for a, k in zip(arrays, key)]
        t = pa.table(dict(zip(key, arrays)))
        tx.rows.setdefault(table, []).append(t.append_column(OP, pa.array(["delete"] * t.num_rows)))
        return int(lk.exists.sum())

    def _staged_latest(self, table: str, key: tuple) -> pa.Table | None:
        """This transaction's staged rows of ``table``, the last per key (an upsert or a delete)."""
        tx = self._tx
        if tx is None or not tx.rows.get(table):
            return None
        parts = tx.rows[table]
        if len(parts) > 1:
            tx.rows[table] = parts = [pa.concat_tables(parts, promote_options="permissive")]
        t = parts[0]
        order = pa.array(np.arange(t.num_rows, dtype=np.int64))
        t2 = t.select(list(key)).append_column("_seq", order)
        last = t2.group_by(list(key), use_threads=False).aggregate([("_seq", "max")]).column("_seq_max")
        if len(last) == t.num_rows:
            return t
        latest = t.take(pa.array(np.sort(last.to_numpy()), pa.int64()))
        tx.rows[table] = [latest]
        return latest

    def count_rows(self, table: str) -> int:
        tx = self._tx
        staged = self._staged_latest(table, tx.key.get(table, ())) if tx is not None and table in tx.key else None
        dt = self._table(table) if tx is None or table not in tx.created else None
        if staged is None or staged.num_rows == 0:
            return 0 if dt is None else _count(dt)
        key = tx.key[table]
        if dt is None:
            return int(pc.sum(pc.not_equal(staged.column(OP), "delete")).as_py() or 0)
        held = dt.to_pyarrow_dataset().to_table(columns=list(key))
        keep = _anti(held, staged.select(list(key)), key).num_rows
        return keep + int(pc.sum(pc.not_equal(staged.column(OP), "delete")).as_py() or 0)

    def has_rows(self, table: str) -> bool:
        return self.count_rows(table) > 0

    def prune_begin(self, key: tuple) -> None:
        self._need_tx().seen = []

    def prune_seen(self, key: tuple, keys: list) -> None:
        arrays = [pa.array(keys)] if len(key) == 1 else [pa.array([k[i] for k in keys]) for i in range(len(key))]
        self._need_tx().seen.append(pa.table(dict(zip(key, arrays))))

    def prune_finish(self, table: str, key: tuple) -> int:
        """Stage a delete of every held key the source did not show; return how many."""
        tx = self._need_tx()
        dt = self._table(table) if table not in tx.created else None
        if dt is None:
            return 0
        b = bucket_of(self._stream)
        only = (pc.field(BUCKET_COL) == b) if b is not None and BUCKET_COL in pa.schema(dt.schema().to_arrow()).names else None
        held = dt.to_pyarrow_dataset().to_table(columns=list(key), filter=only)  # a bucket prunes only its own rows
        seen = [s.cast(pa.schema([held.schema.field(k) for k in key])) for s in tx.seen] if tx.seen else []
        gone = _anti(held, pa.concat_tables(seen) if seen else held.slice(0, 0), key)
        tx.seen = None
        staged = self._staged_latest(table, key)
        if staged is not None and staged.num_rows:
            gone = _anti(gone, staged.filter(pc.not_equal(staged.column(OP), "delete")).select(list(key)), key)
        if gone.num_rows:
            tx.rows.setdefault(table, []).append(gone.append_column(OP, pa.array(["delete"] * gone.num_rows)))
        return gone.num_rows

    # --- the commit ----------------------------------------------------------------------------
    def _commit(self, tx: "_Staged") -> None:
        stream = tx.stream
        if stream is None:
            if tx.rows or tx.log:
                raise TargetError("internal: a Delta transaction outside a stream lock")
            return
        if not tx.log and not tx.rows and not tx.created:
            return  # nothing staged (the meta check, a dry run's inner transaction)
        table = tx.table or next(iter(tx.rows), None) or self._stream_table(stream)
        dt = self._table(table) if table else None
        anchored = dt is not None or bool(tx.rows.get(table)) or table in tx.created
        prev = None if tx.dropped else self._head_now(stream)
        txn = _txn_id()
        if anchored and not tx.log:
            tx.log.append(("commit", "{}", tx.run_id))  # every committed id has a row: the chain runs through it
        _kill_point("before-log")
        if tx.log:
            seq = time.time_ns()
            rows = [{"stream": stream, "txn": txn, "prev": prev, "anchor": "data" if anchored else "self",
                     "seq": seq + i, "table_name": table, "run_id": run_id, "kind": kind, "payload": payload}
                    for i, (kind, payload, run_id) in enumerate(tx.log)]
            self._append_log(rows)
        if not anchored:
            return
        _kill_point("after-log")
        self._commit_data(tx, stream, table, dt, txn)
        self._pins.pop(table, None)  # (a new table is read at its first version next)
        self._held_cache.pop(table, None)
        _kill_point("after-data")

    def _stream_table(self, stream: str) -> str | None:
        rows = self._log_rows(stream)
        return max(rows, key=lambda r: r["seq"])["table_name"] if rows else None

    def _head_now(self, stream: str) -> int | None:
        rows = self._log_rows(stream)
        return self._head(stream, rows) if rows else None

    def _append_log(self, rows: list[dict]) -> None:
        uri = self._uri(LOG)
        data = pa.Table.from_pylist(rows, schema=LOG_SCHEMA)
        # The log is append-only, and a blind append conflicts with nothing but the log's own
        # creation: two first runs racing to create it. The loser's commit wrote nothing, so it
        # simply appends again to the table the winner created.
        for attempt in range(LOG_APPEND_TRIES):
            try:
                self._dl.write_deltalake(uri, data, mode="append", storage_options=self.storage)
                break
            except Exception as exc:  # noqa: BLE001 - delta-rs raises its own classes
                if attempt + 1 < LOG_APPEND_TRIES and _is_conflict(exc):
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise self._storage_error(exc, "writing the log") from None
        dt = self._table(LOG)
        if dt is not None and dt.version() % COMPACT_AFTER == 0 and dt.version() > 0:
            try:
                dt.optimize.compact()
            except Exception:  # noqa: BLE001 - compaction is housekeeping; a race with another writer is fine
                pass

    def _commit_data(self, tx: "_Staged", stream: str, table: str, dt, txn: int) -> None:
        dl = self._dl
        props = dl.CommitProperties(app_transactions=[dl.Transaction(_app_id(stream), txn)],
                                    custom_metadata={"hiwater.stream": stream, "hiwater.run_id": str(tx.run_id or "")})
        key = tx.key.get(table) or self._key_of(stream)
        staged = self._staged_latest(table, key) if key else None
        schema = tx.schemas.get(table)
        uri = self._uri(table)

        bucket = bucket_of(stream)

        def apply():
            nonlocal dt
            if dt is None and bucket is not None:
                # Buckets of one stream share the table, partitioned by bucket: the first to come
                # creates it empty (creating it twice is harmless), then each merges into its own
                # partition, so their commits do not conflict.
                part = pa.schema(list(schema) + [pa.field(BUCKET_COL, pa.int64())])
                dl.DeltaTable.create(uri, part, mode="ignore", partition_by=[BUCKET_COL], storage_options=self.storage,
                                     configuration={"delta.targetFileSize": str(self.file_size)})
                dt = dl.DeltaTable(uri, storage_options=self.storage)
                have = set(pa.schema(dt.schema().to_arrow()).names)
                missing = [f for f in part if f.name not in have]
                if missing:
                    dt.alter.add_columns([dl.schema.Field(f.name, dl.schema.PrimitiveType(_delta_type(f.type)),
                                                          nullable=True) for f in missing])
                tx.evolved.discard(table)
            if dt is None:
                # The table's first commit: its schema and first rows (inserts only: nothing was held).
                if staged is None:
                    rows = schema.empty_table()
                else:
                    rows = staged.filter(pc.not_equal(staged.column(OP), "delete")).drop_columns([OP])
                    rows = _order(rows, key)
                    if schema is not None:
                        rows = _fill(rows, schema)
                dl.write_deltalake(uri, rows, mode="error", storage_options=self.storage, commit_properties=props,
                                   target_file_size=self.file_size,
                                   configuration={"delta.targetFileSize": str(self.file_size)})
                return
            if table in tx.evolved:
                have = set(pa.schema(dt.schema().to_arrow()).names)
                new = [f for f in schema if f.name not in have]
                if new:
                    dt.alter.add_columns([dl.schema.Field(f.name, dl.schema.PrimitiveType(_delta_type(f.type)), nullable=True)
                                          for f in new])
            if staged is None or staged.num_rows == 0:
                dt.create_write_transaction([], "append", dt.schema().to_arrow(), commit_properties=props)
                return
            full = pa.schema(dt.schema().to_arrow())
            if schema is not None:
                full = pa.schema([schema.field(f.name) if f.name in schema.names else f for f in full]
                                 + [f for f in schema if f.name not in full.names])
            src = _order(staged, key)
            nullable = pa.schema([f.with_nullable(True) for f in full])
            src = _fill(src.drop_columns([OP]), nullable).append_column(OP, src.column(OP))
            on = " AND ".join(f"{_col(k, 't')} = {_col(k, 's')}" for k in key)
            if bucket is not None and BUCKET_COL in full.names:
                i = src.column_names.index(BUCKET_COL)
                src = src.set_column(i, BUCKET_COL, pa.array([bucket] * src.num_rows, pa.int64()))
                on = f"t.`{BUCKET_COL}` = {bucket} AND " + on
            newer = f"{_col(CURSOR_COL, 's')} > {_col(CURSOR_COL, 't')}"
            same = f"{_col(CURSOR_COL, 's')} = {_col(CURSOR_COL, 't')}"
            (dt.merge(src, on, source_alias="s", target_alias="t", commit_properties=props)
             .when_matched_delete(predicate=f"s.`{OP}` = 'delete'")
             .when_matched_update(updates=_updates(src, key),
                                  predicate=f"(s.`{OP}` = 'upsert' AND {newer})"
                                            f" OR (s.`{OP}` = 'refresh' AND ({newer} OR {same}))")
             .when_not_matched_insert(updates=_updates(src, ()), predicate=f"s.`{OP}` <> 'delete'")
             .execute())
        self._run(apply, f"writing {table!r}", stream=stream)

    def _key_of(self, stream: str) -> tuple:
        s = self.read_state(stream)
        return tuple(s.key) if s else ()

    def _run(self, fn, what: str, stream: str | None = None):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - delta-rs raises its own classes; each becomes one line
            if stream is not None and _is_conflict(exc):
                raise LockTimeout(f"stream {stream!r} is being loaded by another run: its commit to "
                                  f"{self.description} lost the race (nothing of this run was applied)",
                                  hint="run again after it finishes; hiwater serialises one stream per target") from None
            raise self._storage_error(exc, what) from None

    def _storage_error(self, exc: BaseException, what: str):
        """A refused credential is bad configuration (exit 2, the secret never printed); anything
        else fails the run (exit 1)."""
        text = _one_line(exc)
        if self.remote and _REFUSED.search(text):
            return ConfigError(f"{self.description}: {what}: access refused: {text}",
                               hint="check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and AWS_ENDPOINT_URL")
        return TargetError(f"{self.description}: {what}: {text}")


LOG_APPEND_TRIES = 5


def _is_conflict(exc: BaseException) -> bool:
    """Did a Delta commit lose a race with another writer (rather than fail)?"""
    text = _one_line(exc).lower()
    return ("CommitFailed" in type(exc).__name__ or "concurrent" in text or "conflict" in text
            or "already exists" in text or "metadata changed since last commit" in text)


class _Staged:
    """What one transaction will commit."""

    def __init__(self, stream: str | None):
        self.stream = stream
        self.log: list = []          # (kind, payload JSON, run id)
        self.rows: dict = {}         # table -> [Arrow tables with an op column]
        self.schemas: dict = {}      # table -> schema after this transaction's changes
        self.created: set = set()
        self.evolved: set = set()
        self.key: dict = {}
        self.seen: list | None = None
        self.table: str | None = None
        self.run_id: int | None = None
        self.dropped = False


def _kill_point(name: str) -> None:
    """Test-only: ``HIWATER_DELTA_KILL=<point>`` SIGKILLs this process there (tests/db/test_delta.py)."""
    if os.environ.get("HIWATER_DELTA_KILL") == name:
        import signal
        os.kill(os.getpid(), signal.SIGKILL)


# --- pure helpers -------------------------------------------------------------------------------
BUCKET_COL = "_hiwater_bucket"


def bucket_of(stream: str) -> int | None:
    """The bucket a bucketed stream's name says (``orders#2/4`` → 2), else ``None``."""
    m = re.search(r"#(\d+)/(\d+)$", stream or "")
    return int(m.group(1)) if m else None


def _app_id(stream: str) -> str:
    return f"hiwater:{stream}"


def _sql_text(s: str) -> str:
    return s.replace("'", "''")


def _one_line(exc: BaseException) -> str:
    """delta-rs's error chain (one cause per line, with ANSI colours) as one plain line."""
    parts = [re.sub(r"\x1b\[[0-9;]*m|^[\s↳]+", "", line).strip() for line in str(exc).strip().splitlines()]
    text = ": ".join(p for p in parts if p) or type(exc).__name__
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        if os.environ.get(name):
            text = text.replace(os.environ[name], "***")
    return text


_REFUSED = re.compile(r"InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|Forbidden|403|"
                      r"ExpiredToken|InvalidToken|credential", re.I)


def _logical(t: pa.DataType) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return TEXT
    return logical_type(t)


def _delta_type(t: pa.DataType) -> str:
    if pa.types.is_integer(t):
        return "long"
    if pa.types.is_floating(t):
        return "double"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_decimal(t):
        return f"decimal({t.precision},{t.scale})"
    return "string"


def _updates(src: pa.Table, skip: tuple) -> dict:
    return {f"`{c}`": _col(c, "s") for c in src.column_names if c != OP and c not in skip}


def _order(t: pa.Table, key: tuple) -> pa.Table:
    """Rows in key order, so each written file holds a narrow key range and a later merge
    rewrites only the files whose range its keys fall in."""
    if not key or t.num_rows < 2:
        return t
    return t.sort_by([(k, "ascending") for k in key])


def _anti(left: pa.Table, right: pa.Table, key: tuple) -> pa.Table:
    """Rows of ``left`` whose key is not in ``right``."""
    if right.num_rows == 0 or left.num_rows == 0:
        return left
    right = right.select(list(key))
    if any(right.schema.field(k).type != left.schema.field(k).type for k in key):
        right = right.cast(pa.schema([left.schema.field(k) for k in key]), safe=False)
    return left.join(right, keys=list(key), join_type="left anti")


def _fill(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """``rows`` with every column of ``schema`` (nulls where a batch did not have one), cast."""
    cols = [rows.column(f.name).cast(f.type) if f.name in rows.column_names else pa.nulls(rows.num_rows, f.type)
            for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)


def _castable(got: pa.Table, want: pa.Table, key: tuple) -> bool:
    return any(got.schema.field(k).type != want.schema.field(k).type for k in key)


def _count(dt) -> int:
    try:
        return int(dt.count())
    except Exception:  # noqa: BLE001 - older delta-rs: count by scanning
        return dt.to_pyarrow_dataset().count_rows()


def _quarantine_id(stream: str, reason: str, fingerprint: str) -> int:
    h = hashlib.blake2b(f"{stream}\x00{reason}\x00{fingerprint}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") & 0x3FFFFFFFFFFFFF  # 54 bits: exact in JSON readers too


def _state(d: dict) -> StreamState:
    d = dict(d)
    d["key"] = tuple(d["key"])
    return StreamState(**d)


def _storage_options() -> dict:
    """S3 settings from the standard environment (keys, region, ``AWS_ENDPOINT_URL``)."""
    opts = {}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
                 "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP", "AWS_PROFILE"):
        if os.environ.get(name):
            opts[name] = os.environ[name]
    if "AWS_REGION" not in opts and "AWS_DEFAULT_REGION" in opts:
        opts["AWS_REGION"] = opts["AWS_DEFAULT_REGION"]
    if opts.get("AWS_ENDPOINT_URL", "").startswith("http://"):
        opts.setdefault("AWS_ALLOW_HTTP", "true")
    # A wrong endpoint or a store that does not answer fails in about half a minute, not the
    # three minutes of the object store's default retry budget.
    opts.setdefault("timeout", "20s")
    opts.setdefault("retry_timeout", "30s")
    return opts


def _fsspec_options() -> dict:
    ep = os.environ.get("AWS_ENDPOINT_URL")
    return {"client_kwargs": {"endpoint_url": ep}} if ep else {}


def _deltalake():
    try:
        import deltalake
    except ImportError:
        raise ConfigError("a Delta target needs the deltalake package, which is not installed",
                          hint="pip install 'hiwater[delta]'") from None
    return deltalake

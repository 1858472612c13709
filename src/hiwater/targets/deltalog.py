"""The read side of the Delta target: state, history, quarantine and file manifest, folded from
the append-only ``_hiwater_log`` table (the rows are written by :class:`.delta.DeltaTransaction`).

A log row counts only if its transaction is on the stream's committed chain: start from the id
the data table's ``hiwater:<stream>`` app transaction holds and follow ``prev`` (a stream whose
data table does not exist anchors its rows on themselves, "self"). Rows that no chain reaches
(a crash between the log append and the data commit) are ignored by every reader here. Reading
never creates the log.
"""

from __future__ import annotations

import hashlib
import time
from typing import Callable

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..state import StreamState
from .base import HISTORY_COLUMNS, Ledger
from .deltatypes import app_id, field, is_conflict, txn_id

LOG = "_hiwater_log"
LOG_SCHEMA = pa.schema([
    ("stream", pa.string()), ("txn", pa.int64()), ("prev", pa.int64()), ("anchor", pa.string()),
    ("seq", pa.int64()), ("table_name", pa.string()), ("run_id", pa.int64()), ("kind", pa.string()),
    ("payload", pa.string()),
])
LOG_APPEND_TRIES = 5


def log_rows(staged: list, stream: str, txn: int, prev: int | None, anchor: str, table: str | None) -> list[dict]:
    """The log rows of one transaction's staged facts (``(kind, payload JSON, run id)``)."""
    seq = time.time_ns()
    return [{"stream": stream, "txn": txn, "prev": prev, "anchor": anchor, "seq": seq + i, "table_name": table,
             "run_id": run_id, "kind": kind, "payload": payload} for i, (kind, payload, run_id) in enumerate(staged)]


def verified_rows(facts: list, table: str | None) -> list[dict]:
    """The log rows of ``Verified`` facts. They are outside every chain (anchor ``verified``): the
    append is their commit, so recording a verify never touches the data table, never races a
    load's commit, and is never discarded with an uncommitted run's rows. The latest wins."""
    return [row for f in facts for row in log_rows([("verified", orjson.dumps(f.doc, default=str).decode(), None)],
                                                   f.stream, txn_id(), None, "verified", table)]


def append_rows(dl, uri: str, storage: dict | None, rows: list[dict]) -> None:
    """Append ``rows`` to the log at ``uri``; raises what delta-rs raised.

    The log is append-only, and a blind append conflicts with nothing but the log's own
    creation: two first runs racing to create it. The loser's commit wrote nothing, so it
    simply appends again to the table the winner created."""
    data = pa.Table.from_pylist(rows, schema=LOG_SCHEMA)
    for attempt in range(LOG_APPEND_TRIES):
        try:
            dl.write_deltalake(uri, data, mode="append", storage_options=storage)
            return
        except Exception as exc:  # noqa: BLE001 - delta-rs raises its own classes
            if attempt + 1 < LOG_APPEND_TRIES and is_conflict(exc):
                time.sleep(0.05 * (attempt + 1))
                continue
            raise


class DeltaLedger(Ledger):
    """The committed facts of a Delta target, read through ``open_table`` (the target's own
    reader: a data table at the snapshot its run pinned, the log always fresh)."""

    def __init__(self, open_table: Callable):
        self._open = open_table

    # --- the chain ---------------------------------------------------------------------------
    def rows(self, stream: str | None = None) -> list[dict]:
        """Every log row (of ``stream``), committed or not."""
        dt = self._open(LOG)
        if dt is None:
            return []
        ds = dt.to_pyarrow_dataset()
        filt = None if stream is None else (field(ds.schema, "stream") == stream)
        return ds.to_table(filter=filt).to_pylist()

    def head(self, stream: str) -> int | None:
        """The stream's last committed transaction id (the ``prev`` of its next one)."""
        rows = self._fresh(stream, self.rows(stream))
        return self._head(stream, rows) if rows else None

    def _fresh(self, stream: str, rows: list[dict]) -> list[dict]:
        """``rows`` (the stream's log rows), read again when the data table's committed
        transaction is not among them: another run appended its rows after they were read and
        committed its data before the table was opened. Its rows were appended before its data
        commit, so a second read holds them (without it the chain would end one run early, and
        a run would start from the watermark before that one)."""
        if not rows:
            return rows
        v = self._data_txn(stream, rows)
        if v is not None and v not in {r["txn"] for r in rows}:
            return self.rows(stream)
        return rows

    def _data_txn(self, stream: str, rows: list[dict]) -> int | None:
        """The transaction id the stream's data table holds (its last data commit), if any."""
        rows = [r for r in rows if r["anchor"] != "verified"]
        if not rows:
            return None
        table = max(rows, key=lambda r: r["seq"])["table_name"]
        dt = self._open(table) if table else None
        return None if dt is None else dt.transaction_version(app_id(stream))

    def last_table(self, stream: str) -> str | None:
        """The data table the stream's latest log row names."""
        rows = [r for r in self.rows(stream) if r["anchor"] != "verified"]
        return max(rows, key=lambda r: r["seq"])["table_name"] if rows else None

    def next_run_id(self) -> int:
        dt = self._open(LOG)
        if dt is None:
            return 1
        col = dt.to_pyarrow_dataset().to_table(columns=["run_id"]).column("run_id")
        return (pc.max(col).as_py() or 0) + 1

    def _chains(self, stream: str | None = None) -> dict:
        """``{stream: [rows of committed transactions, oldest first]}``."""
        by_stream: dict = {}
        for r in self.rows(stream):
            by_stream.setdefault(r["stream"], []).append(r)
        out = {}
        for s, rs in by_stream.items():
            rs = self._fresh(s, rs)
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
        v = self._data_txn(stream, rows)
        if v is not None and v in {r["txn"] for r in rows}:
            return v
        selfs = [r for r in rows if r["anchor"] == "self"]
        return max(selfs, key=lambda r: r["seq"])["txn"] if selfs else None

    # --- the folds ---------------------------------------------------------------------------
    def states(self, stream: str | None = None) -> list[StreamState]:
        out = []
        for _s, rows in sorted(self._chains(stream).items()):
            state = None
            for r in rows:
                if r["kind"] == "state":
                    state = _state(orjson.loads(r["payload"]))
                elif r["kind"] == "state_deleted":
                    state = None
            if state is not None:
                out.append(state)
        return out

    def history(self, stream: str | None = None, limit: int | None = None) -> list[dict]:
        rows = [{c: None for c in HISTORY_COLUMNS} | orjson.loads(r["payload"])
                for rs in self._chains(stream).values() for r in rs if r["kind"] == "history"]
        rows.sort(key=lambda h: (h["run_id"], h.get("window_index", 0)))
        return rows[-limit:] if limit else rows

    def quarantine(self, stream: str | None = None, reason: str | None = None,
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

    def verifies(self) -> dict:
        """The latest ``verified`` row of each stream (outside the chains: see :func:`verified_rows`)."""
        latest: dict = {}
        for r in self.rows():
            if r["kind"] == "verified" and (r["stream"] not in latest or r["seq"] > latest[r["stream"]]["seq"]):
                latest[r["stream"]] = r
        docs = {s: orjson.loads(r["payload"]) for s, r in latest.items()}
        return {s: d for s, d in docs.items() if d is not None}

    def verified(self, stream: str) -> dict | None:
        rows = [r for r in self.rows(stream) if r["kind"] == "verified"]
        return orjson.loads(max(rows, key=lambda r: r["seq"])["payload"]) if rows else None

    def files(self, stream: str) -> dict:
        return {p: (size, mtime, etag) for p, (size, mtime, etag, _run) in self.manifest(stream).items()}

    def manifest(self, stream: str) -> dict:
        """``{path: (size, mtime_ns, etag, run_id)}``: the committed manifest, folded from the log."""
        files: dict = {}
        for r in self._chains(stream).get(stream, []):
            if r["kind"] == "file":
                p = orjson.loads(r["payload"])
                files[p["path"]] = (p["size"], p["mtime_ns"], p["etag"], r["run_id"])
            elif r["kind"] == "file_gone":
                files.pop(orjson.loads(r["payload"])["path"], None)
        return files


def _quarantine_id(stream: str, reason: str, fingerprint: str) -> int:
    h = hashlib.blake2b(f"{stream}\x00{reason}\x00{fingerprint}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") & 0x3FFFFFFFFFFFFF  # 54 bits: exact in JSON readers too


def _state(d: dict) -> StreamState:
    d = dict(d)
    d["key"] = tuple(d["key"])
    return StreamState(**d)

"""TEMPORARY: the old one-method-per-write interface (:class:`~.base.LegacyTarget`) of the Delta
target, each method a thin call into :class:`~.delta.DeltaTransaction` (the open one, ``_tx``)
or the ledger. It goes, whole, when the loader and api call the new interface.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import pyarrow as pa

from ..errors import TargetError
from ..state import StreamState
from .base import CURSOR_COL, RUN_COL, FilesGone, History, LegacyTarget, Quarantined, Released, State
from .keys import Lookup


class DeltaLegacy(LegacyTarget):
    """Mixed into :class:`~.delta.DeltaTarget`, whose state (``_tx``, ``_stream``, ``_ledger``) it uses."""

    def cli_flags(self) -> str:
        return self.flags

    def connect(self) -> None:
        self.__enter__()

    def close(self) -> None:
        self.__exit__()

    def stream_lock(self, stream: str, timeout_s: float):
        return self.lock(stream, timeout_s)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._tx is not None:  # a dry run's outer transaction: the inner one joins it
            yield
            return
        with self.begin(self._stream):
            yield

    def ensure_meta(self) -> None:
        pass  # the log table is made by its first append

    def _need_tx(self):
        if self._tx is None:
            raise TargetError("internal: a Delta write outside a transaction")
        return self._tx

    def _reader(self):
        """The open transaction, or a throwaway one that reads the committed table."""
        return self._tx if self._tx is not None else self.begin(self._stream)

    def read_state(self, stream: str) -> StreamState | None:
        return next(iter(self.ledger.states(stream)), None)

    def list_states(self) -> list[StreamState]:
        return self.ledger.states()

    def read_history(self, stream: str | None = None, limit: int | None = None) -> list[dict]:
        return self.ledger.history(stream, limit)

    def read_quarantine(self, stream: str | None = None, reason: str | None = None,
                        limit: int | None = None) -> list[dict]:
        return self.ledger.quarantine(stream, reason, limit)

    def read_files(self, stream: str) -> dict:
        return self.ledger.files(stream)

    def next_run_id(self) -> int:
        top = self.ledger.next_run_id()
        tx = self._tx
        if tx is None:
            return top
        tx._run_id = max(top, tx._run_id or 0)
        return tx._run_id

    def write_state(self, state: StreamState) -> None:
        self._need_tx().record(State(state))

    def delete_state(self, stream: str) -> None:
        self._need_tx()._stage("state_deleted", {})

    def forget_stream(self, stream: str) -> None:
        self._forget(stream)

    def drop_stream(self, stream: str, table: str | None) -> None:
        self._need_tx()._drop(stream, table)

    def drop_table(self, table: str) -> None:
        self._drop_table(table)

    def write_history(self, row: dict) -> None:
        self._need_tx().record(History(row))

    def write_quarantine(self, rows: list[dict]) -> None:
        self._need_tx().record(Quarantined(rows))

    def delete_quarantine(self, ids: list[int]) -> None:
        self._need_tx().record(Released(ids))

    def write_files(self, stream: str, entries: list, run_id: int) -> None:
        self._need_tx()._files(entries, run_id)

    def delete_files(self, stream: str, paths: list) -> None:
        self._need_tx().record(FilesGone(paths))

    def table_columns(self, table: str) -> dict | None:
        return self._reader()._columns(table)

    def create_table(self, table: str, columns: dict, key: tuple) -> None:
        self._need_tx()._create(table, columns, tuple(key))

    def add_columns(self, table: str, columns: dict) -> None:
        self._need_tx()._add(table, columns)

    def lookup_arrow(self, table: str, key: tuple, keys: list, cursors: np.ndarray, run_id: int) -> Lookup:
        return self._reader()._lookup(table, key, keys)

    def lookup(self, table: str, key: tuple, keys: list) -> Lookup:
        return self._reader()._lookup(table, key, _arrays(key, keys), cast=True)

    def upsert(self, table: str, columns: list, rows: list, key: tuple) -> None:
        if rows:
            names = list(columns) + [CURSOR_COL, RUN_COL]
            self.upsert_arrow(table, pa.table({c: [r[i] for r in rows] for i, c in enumerate(names)}), key)

    def upsert_arrow(self, table: str, data: pa.Table, key: tuple, fresh: bool = False) -> None:
        if data.num_rows:
            self.last_written = self._need_tx()._write(table, tuple(key), data, "refresh" if self.refresh else "upsert")

    def delete_keys(self, table: str, key: tuple, keys: list) -> int:
        return self._need_tx()._delete(table, key, _arrays(key, keys)) if keys else 0

    def count_rows(self, table: str) -> int:
        return self._reader()._count(table)

    def prune_begin(self, key: tuple) -> None:
        self._need_tx()._seen = []

    def prune_seen(self, key: tuple, keys: list) -> None:
        self._need_tx()._seen.append(pa.table(dict(zip(key, _arrays(key, keys)))))

    def prune_finish(self, table: str, key: tuple) -> int:
        return self._need_tx()._prune(table, key)


def _arrays(key: tuple, keys: list) -> list:
    """Python keys (a scalar each, or a sequence for a composite key) as one Arrow array per key column."""
    return [pa.array(keys)] if len(key) == 1 else [pa.array([k[i] for k in keys]) for i in range(len(key))]

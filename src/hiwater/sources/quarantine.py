"""Quarantined records as a source, for ``hiwater quarantine replay``.

The source only reads: the loader records the rows' release (:attr:`QuarantineSource.ids`) in
the transaction that replays them, before anything is quarantined again; any that fail again
are quarantined again by that run, so nothing is lost either way.
"""

from __future__ import annotations

import orjson
import pyarrow as pa

from .base import Source
from .records import rows_to_batch


class QuarantineSource(Source):
    description = "quarantine"
    replay = True  # the loader does not read a replay's old cursors as a truncated source

    def __init__(self, rows: list[dict], cursor: str | None = None, key: tuple = ()):
        self.rows = rows
        self.cursor = cursor
        self.ids = [r["id"] for r in rows]  # released by the replaying transaction
        self.key = tuple(key)

    def batches(self):
        if not self.rows:
            return
        records = [_loads(r["record"]) for r in self.rows]
        # Each record's stored text goes along: one quarantined again keeps the text it arrived as.
        batch = rows_to_batch(records, "quarantine", 1, cursor=self.cursor or "", texts=[r["record"] for r in self.rows])
        # A record stored without its key or cursor (as it arrived) is judged again, invalid again,
        # even when no replayed record has the field: that is no sign of a wrong --key or --cursor.
        for name in (*self.key, self.cursor):
            if name and batch.table.num_columns and name not in batch.table.column_names:
                batch.table = batch.table.append_column(name, pa.nulls(len(batch), pa.string()))
        yield batch


def _loads(text: str):
    """orjson, or the standard parser for what orjson refuses (NaN, Infinity, huge integers)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        import json
        return json.loads(text)

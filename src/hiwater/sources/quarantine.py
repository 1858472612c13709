"""Quarantined records as a source, for ``hiwater quarantine replay``.

The rows leave the quarantine in the same transaction that replays them; any
that fail again are quarantined again by that run, so nothing is lost either way.
"""

from __future__ import annotations

import orjson

from .base import Source
from .records import rows_to_batch


class QuarantineSource(Source):
    description = "quarantine"
    replay = True  # the loader does not read a replay's old cursors as a truncated source

    def __init__(self, rows: list[dict], target, cursor: str | None = None):
        self.rows = rows
        self.target = target
        self.cursor = cursor

    def batches(self):
        if not self.rows:
            return
        # Runs inside the loader's transaction: removing them here commits with the replay.
        self.target.delete_quarantine([r["id"] for r in self.rows])
        records = [_loads(r["record"]) for r in self.rows]
        # Each record's stored text goes along: one quarantined again keeps the text it arrived as.
        yield rows_to_batch(records, "quarantine", 1, cursor=self.cursor or "", texts=[r["record"] for r in self.rows])


def _loads(text: str):
    """orjson, or the standard parser for what orjson refuses (NaN, Infinity, huge integers)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        import json
        return json.loads(text)

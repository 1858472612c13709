"""A stream's state: a small typed record kept in the target beside the data.

Nothing in it grows with the number of records. ``version`` numbers the record's
layout so later releases can migrate it step by step.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

from .values import format_value, zone

STATE_VERSION = 1


@dataclass
class StreamState:
    stream: str
    table: str
    key: tuple
    cursor: str
    kind: str | None = None          # timestamp | date | int, fixed by the first run
    watermark: int | None = None     # normalised (microseconds UTC, or the integer)
    naive: bool = True               # print the watermark back without an offset
    assume_tz: str = "UTC"
    last_run: int | None = None
    version: int = STATE_VERSION

    def watermark_text(self):
        return format_value(self.watermark, self.kind, self.naive, zone(self.assume_tz))

    def to_public(self) -> dict:
        d = asdict(self)
        d["key"] = list(self.key)
        d["watermark_value"] = d.pop("watermark")
        d["watermark"] = self.watermark_text()
        return d


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)

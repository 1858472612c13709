"""A stream's state: a small typed record kept in the target beside the data.

Nothing in it grows with the number of records. ``version`` numbers the record's
layout so later releases can migrate it step by step.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

from .errors import UsageError
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

    def check(self, table: str, key, cursor: str, assume_tz: str | None, cli_flags: str) -> None:
        """A stream keeps what it was created with: its table, key, cursor and time zone.
        ``cli_flags`` names the target in the hint (as ``hiwater stream drop`` wants it)."""
        if self.table != table:
            raise UsageError(f"stream {self.stream!r} loads table {self.table!r}, not {table!r}",
                             hint="pass the same --table, or another --stream")
        start_over = (f"or start the stream over with `hiwater stream drop {self.stream} --table"
                      f"{cli_flags}` (deletes its data), or load into another --table")
        if tuple(self.key) != tuple(key):
            raise UsageError(f"stream {self.stream!r} was created with --key {','.join(self.key)}, "
                             f"not {','.join(key)}", hint=f"pass --key {','.join(self.key)}, {start_over}")
        if self.cursor != cursor:
            raise UsageError(f"stream {self.stream!r} was created with --cursor {self.cursor}, not {cursor}",
                             hint=f"pass --cursor {self.cursor}, {start_over}")
        if assume_tz is not None and zone_name(assume_tz) != zone_name(self.assume_tz):
            zone(assume_tz)  # an unknown zone is reported as such first
            raise UsageError(f"stream {self.stream!r} was created with --assume-tz {self.assume_tz}, not "
                             f"{assume_tz}: its stored cursors are instants read in {self.assume_tz}",
                             hint=f"leave --assume-tz out (the stream's own is used), {start_over}")

    def advance(self, watermark: int | None, run_id: int | None, naive: bool | None) -> None:
        """Record a run's new watermark; ``naive`` (how its newest cursor was written, None if
        unknown) decides how a moved watermark is printed back."""
        if watermark is not None and watermark != self.watermark and naive is not None:
            self.naive = naive
        self.watermark = watermark
        self.last_run = run_id
        self.assume_tz = self.assume_tz or "UTC"

    def to_public(self) -> dict:
        d = asdict(self)
        d["key"] = list(self.key)
        d["watermark_value"] = d.pop("watermark")
        d["watermark"] = self.watermark_text()
        return d


def zone_name(name: str) -> str:
    """A time zone's name as a stream stores it (``Z`` and any spelling of ``utc`` are ``UTC``)."""
    return "UTC" if name.upper() in ("UTC", "Z") else name


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)

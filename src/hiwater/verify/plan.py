"""Which cursor range verify checks, and how it is cut into windows (pure).

The range is what the stream has loaded: from ``--since`` (else the smallest cursor either side
holds) up to and including the watermark (``--until`` narrows it). Windows are equal steps of the
normalised cursor, so a side assigns a row to its window with one integer division, inside the
database: ``(cursor - lo) // step``. ``--by`` takes a duration (``1d``, ``6h``) for timestamp and
date cursors, an integer for integer cursors; without it the step is a round number that cuts the
data's span into about :data:`TARGET_WINDOWS` windows.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import values as V
from ..durations import parse_duration
from ..errors import UsageError

TARGET_WINDOWS = 32
US = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": V.US_PER_DAY}
_NICE_US = [US["s"], 10 * US["s"], US["m"], 10 * US["m"], US["h"], 6 * US["h"], US["d"], 7 * US["d"],
            30 * US["d"], 365 * US["d"]]


@dataclass(frozen=True)
class Plan:
    """Windows ``[lo + i*step, lo + (i+1)*step)``, the last one closed at ``hi``."""

    lo: int
    hi: int
    step: int

    @property
    def count(self) -> int:
        return (self.hi - self.lo) // self.step + 1

    def window(self, i: int) -> tuple[int, int]:
        """Window ``i`` as a closed range ``[a, b]`` of normalised cursors."""
        a = self.lo + i * self.step
        return a, min(a + self.step - 1, self.hi)

    def index(self, cursor: int) -> int | None:
        if cursor < self.lo or cursor > self.hi:
            return None
        return (cursor - self.lo) // self.step


def parse_step(by, kind: str) -> int:
    """``--by``: a duration for timestamp/date cursors, a positive integer for integer cursors."""
    step = parse_duration(by, "--by").for_kind(kind, "--by")
    if step <= 0:
        raise UsageError(f"--by {by!r}: the window must be longer than zero")
    if kind == V.DATE and step % V.US_PER_DAY:
        raise UsageError(f"--by {by!r}: the cursor is a date, give whole days (e.g. --by 1d)")
    return step


def default_step(lo: int, hi: int, kind: str) -> int:
    """A round step that cuts ``[lo, hi]`` into about :data:`TARGET_WINDOWS` windows."""
    span = max(hi - lo + 1, 1)
    want = max(span // TARGET_WINDOWS, 1)
    if kind == V.INT:
        unit = 1
        while True:
            for m in (1, 2, 5):
                if unit * m >= want:
                    return unit * m
            unit *= 10
    floor = V.US_PER_DAY if kind == V.DATE else 1
    nice = [step * V.scale(kind) for step in _NICE_US]  # (nanosecond cursors: the same steps)
    for step in nice:
        if step >= want and step >= floor:
            return step
    years = -(-want // nice[-1])
    return years * nice[-1]


def make_plan(lo: int | None, hi: int | None, *, kind: str, step: int | None = None,
              align: bool = False) -> Plan | None:
    """The plan for ``[lo, hi]``; ``None`` when there is nothing to check (no data, or lo > hi).

    ``align``: ``lo`` is only the smallest cursor found (no ``--since``), so the windows may start
    at the round value below it (``1d`` windows at midnight UTC) and read the same in every run."""
    if lo is None or hi is None or lo > hi:
        return None
    step = step or default_step(lo, hi, kind)
    if align or kind == V.DATE:
        lo -= lo % step if align else lo % V.US_PER_DAY
    return Plan(lo, hi, step)

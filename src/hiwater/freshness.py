"""How far behind a stream is, and the verdict of ``hiwater check`` (pure: no I/O).

A stream has two ages (SPEC §9):

- the **load age**: now - when its latest successful run finished (``None``: never);
- the **data age**: now - its watermark, for timestamp and date cursors (``None`` for an
  integer cursor, or before the first record).

``check`` judges one of them (the load age by default) against ``warn-after`` and
``error-after``: past ``error-after`` is ``error`` (exit 1), past ``warn-after`` is ``warn``
(exit 0, printed). A stream that never loaded is infinitely old.
"""

from __future__ import annotations

import datetime as dt

from . import values as V
from .durations import Duration

BY = ("load", "data")


def parse_instant(text) -> int | None:
    """An ISO timestamp from the history (``2025-01-15T08:00:00.123Z``) as microseconds UTC."""
    if text is None:
        return None
    if isinstance(text, dt.datetime):
        value = text if text.tzinfo else text.replace(tzinfo=dt.timezone.utc)
    else:
        value = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
    return V.now_us(value)


def data_age_s(watermark: int | None, kind: str | None, now_us: int) -> float | None:
    if watermark is None or kind not in V.TIME_KINDS:
        return None
    return (now_us - watermark / V.scale(kind)) / 1_000_000


def load_age_s(last_success_at, now_us: int) -> float | None:
    at = parse_instant(last_success_at)
    return None if at is None else (now_us - at) / 1_000_000


def age_text(seconds: float | None) -> str | None:
    """``3d4h``, ``2h15m``, ``45s``; ``-5m`` for a watermark ahead of now; ``None`` stays ``None``."""
    if seconds is None:
        return None
    sign = "-" if seconds < 0 else ""
    secs = int(abs(seconds))
    if secs == 0:
        return f"{sign}{abs(seconds):.1f}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if secs >= size:
            parts.append(f"{secs // size}{unit}")
            secs %= size
        if len(parts) == 2:
            break
    return sign + "".join(parts)


def verdict(age_s: float | None, warn_after: Duration | None, error_after: Duration | None) -> str:
    """``ok``, ``warn`` or ``error``; an unknown age (never loaded) is past every limit."""
    def past(limit: Duration | None) -> bool:
        return limit is not None and (age_s is None or age_s * 1_000_000 > limit.micros)
    if past(error_after):
        return "error"
    if past(warn_after):
        return "warn"
    return "ok"

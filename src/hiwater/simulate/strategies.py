"""Loading strategies: how each one calls the real loader, and what its source exports.

``--strategies`` is a comma-separated list. Each item is a base and optional
``+``-joined modifiers::

    exclusive            the textbook '>' boundary, no lookback
    inclusive            '>=' boundary (hiwater's default), no lookback
    lookback:15m         inclusive with a 15-minute lookback
    on-late:skip         inclusive; below-window records: skip | detect | load
    full                 a full reload every run (--full-load)
    settle:5m            inclusive; the watermark never passes now - 5m
    max-future:10m       inclusive; a tighter future guard than the default 1d
    window:1h            inclusive; applied in 1-hour cursor slices, each committed on its own

A bare value continues the previous item's kind, so ``lookback:15m,1h`` is two
lookbacks and ``on-late:skip,load`` two policies. Modifiers combine:
``lookback:1h+on-late:load``, ``exclusive+lookback:15m``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UsageError
from .scenario import format_seconds, seconds

DEFAULT = "exclusive,inclusive,lookback:15m,1h,full"
_PARAM = ("lookback", "on-late", "settle", "max-future", "window")
_ON_LATE = ("skip", "detect", "load")


@dataclass(frozen=True)
class Strategy:
    name: str
    boundary: str = "inclusive"
    lookback: int = 0            # seconds
    lookback_text: str | None = None
    on_late: str = "detect"
    full: bool = False
    settle: str | None = None
    max_future: str | None = "1d"
    window: str | None = None

    def load_options(self) -> dict:
        """Keyword arguments for ``hiwater.load`` (beside input, db, table, key, cursor, now)."""
        kw = {"boundary": self.boundary, "on_late": self.on_late, "full_load": self.full,
              "max_future": self.max_future}
        if self.lookback_text and not self.full:
            kw["lookback"] = self.lookback_text
        if self.settle:
            kw["settle"] = self.settle
        if self.window:
            kw["window"] = self.window
        return kw

    def window_low(self, watermark: int | None) -> tuple[int | None, bool]:
        """``(low, inclusive)``: what a SQL source reads (``cursor >= low`` / ``> low``); None: everything."""
        if self.full or watermark is None:
            return None, True
        return watermark - self.lookback, self.boundary == "inclusive"

    def loses(self, lag: int | None) -> bool:
        """Whether a record ``lag`` seconds behind the watermark falls below this strategy's window."""
        if self.full or lag is None:
            return False
        return lag >= self.lookback if self.boundary == "exclusive" else lag > self.lookback

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "_", self.name).strip("_")


def _build(parts: list[tuple[str, str | None]], text: str) -> Strategy:
    kw: dict = {}
    names = []
    for kind, value in parts:
        if kind in ("exclusive", "inclusive"):
            kw["boundary"] = kind
            names.append(kind)
        elif kind == "full":
            kw["full"] = True
            names.append("full")
        elif kind == "lookback":
            s = seconds(value, "--strategies lookback")
            kw["lookback"], kw["lookback_text"] = s, value
            names.append(f"lookback:{value}")
        elif kind == "on-late":
            if value not in _ON_LATE:
                raise UsageError(f"--strategies {text!r}: on-late takes skip, detect or load")
            kw["on_late"] = value
            names.append(f"on-late:{value}")
        elif kind == "settle":
            seconds(value, "--strategies settle")
            kw["settle"] = value
            names.append(f"settle:{value}")
        elif kind == "window":
            if seconds(value, "--strategies window") <= 0:
                raise UsageError(f"--strategies {text!r}: a window must be longer than zero")
            kw["window"] = value
            names.append(f"window:{value}")
        elif kind == "max-future":
            if value.lower() != "none":
                seconds(value, "--strategies max-future")
            kw["max_future"] = None if value.lower() == "none" else value
            names.append(f"max-future:{value}")
    if kw.get("full") and (kw.get("lookback") or kw.get("boundary") == "exclusive"):
        raise UsageError(f"--strategies {text!r}: a full reload has no window (no lookback, no boundary)")
    return Strategy(name="+".join(names), **kw)


def parse_strategies(text: str | list | tuple | None) -> list[Strategy]:
    """Parse ``--strategies``; raises UsageError with the offending item."""
    if text is None:
        text = DEFAULT
    if isinstance(text, (list, tuple)):
        items = [i for t in text for i in str(t).split(",")]
    else:
        items = str(text).split(",")
    out: list[Strategy] = []
    last_kind: str | None = None
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        parts = []
        for piece in item.split("+"):
            piece = piece.strip()
            kind, _, value = piece.partition(":")
            kind = kind.lower().replace("_", "-")
            if kind in ("exclusive", "inclusive", "full") and not value:
                parts.append((kind, None))
            elif kind in _PARAM and value:
                parts.append((kind, value.strip()))
            elif kind == "lookback" and not value:
                raise UsageError(f"--strategies {item!r}: give a duration, for example lookback:15m")
            elif len(item.split("+")) == 1 and last_kind in _PARAM and not value:
                parts.append((last_kind, piece))   # 'lookback:15m,1h' -> a second lookback
            else:
                raise UsageError(
                    f"--strategies {item!r}: not a strategy",
                    hint="use exclusive, inclusive, lookback:DURATION, on-late:skip|detect|load, full, "
                         "settle:DURATION, max-future:DURATION, window:DURATION, joined with '+' to combine",
                )
        last_kind = parts[-1][0]
        strategy = _build(parts, item)
        if any(s.name == strategy.name for s in out):
            raise UsageError(f"--strategies: {strategy.name} is named twice")
        out.append(strategy)
    if not out:
        raise UsageError("--strategies: name at least one strategy")
    return out


def lookback_strategy(lookback_seconds: int) -> Strategy:
    text = format_seconds(lookback_seconds)
    return Strategy(name=f"lookback:{text}", lookback=lookback_seconds, lookback_text=text)

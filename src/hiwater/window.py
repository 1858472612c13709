"""Window and watermark arithmetic: which cursors a run applies, and where its watermark ends.

Pure functions of the options, the stored watermark, the cursor's kind and the time: the
loader calls them, the tests table them (tests/test_window.py).
"""

from __future__ import annotations

import datetime as dt

from . import decide as D
from . import values as V
from .options import LoadOptions


def window_for(opts: LoadOptions, prev: int | None, kind: str | None, now: int, tz: dt.tzinfo,
               start=None) -> D.Window:
    """The cursor range a run applies: ``--since``/``--until`` if given, else from the
    watermark ``prev`` (less ``--lookback``) up; everything on a full load or a first run, but
    from ``start`` (``--start``, given by the loader for a new stream only) up. Records below
    ``--since`` or ``start`` are outside the range (``below_window``), never late: no earlier run
    read them."""
    o = opts
    future = None
    if o.max_future is not None and kind != V.INT:
        future = now * V.scale(kind) + o.max_future.for_kind(kind, "--max-future")
        if kind == V.TIMESTAMP_NS:
            future = min(future, V.MAX_NS)
    hi = None
    if o.until is not None:
        hi, _ = V.parse_bound(o.until, kind, tz, "--until")
    if o.since is not None:
        lo, _ = V.parse_bound(o.since, kind, tz, "--since")
        return D.Window(lo, True, hi, future, o.on_late, ranged=True)
    if start is not None:
        lo, _ = V.parse_bound(start, kind, tz, "--start")
        return D.Window(lo, True, hi, future, o.on_late, ranged=True)
    if o.full_load or prev is None:
        return D.Window(None, True, hi, future, o.on_late)
    lo = prev
    if o.lookback is not None:
        lo -= o.lookback.for_kind(kind, "--lookback")
        if kind == V.TIMESTAMP_NS:  # a long lookback from a watermark near 1677 stays in int64
            lo = max(lo, V.MIN_NS)
    return D.Window(lo, o.boundary == "inclusive", hi, future, o.on_late)


def next_watermark(opts: LoadOptions, prev: int | None, candidate: int | None, kind: str | None, now: int,
                   tz: dt.tzinfo, start=None) -> int | None:
    """The watermark a run leaves, from the newest applied cursor ``candidate``: held back by
    ``--settle`` and ``--until``, never below ``prev`` (except on a full load), nor below a new
    stream's ``start`` (its first watermark, even when no record reached it)."""
    o = opts
    wm = candidate
    if start is not None:
        prev, _ = V.parse_bound(start, kind, tz, "--start")
    if o.since is not None:
        since, _ = V.parse_bound(o.since, kind, tz, "--since")
        if prev is None or since > prev:
            # A backfill that starts above the watermark leaves a gap below it: moving the
            # watermark would skip the gap's records for good. It stays.
            return prev
    if o.full_load:
        pass  # set from the data, even if lower (or None when no record was examined)
    elif wm is None:
        return prev
    if wm is None:
        return None
    if o.settle is not None and kind is not None:
        wm = min(wm, now * V.scale(kind) - o.settle.for_kind(kind, "--settle"))
        if kind == V.TIMESTAMP_NS:
            wm = max(wm, V.MIN_NS)
    if o.until is not None:
        hi, _ = V.parse_bound(o.until, kind, tz, "--until")
        wm = min(wm, hi)
    if prev is not None and not o.full_load:
        wm = max(wm, prev)
    return wm


def check_durations(opts: LoadOptions, kind: str | None, tz: dt.tzinfo) -> None:
    """Each duration option must suit the cursor's kind (checked as soon as the kind is known)."""
    for name in ("lookback", "window", "settle"):
        d = getattr(opts, name)
        if d is not None:
            d.for_kind(kind, "--" + name)
    for name in ("since", "until", "start"):
        if getattr(opts, name) is not None:
            V.parse_bound(getattr(opts, name), kind, tz, "--" + name)

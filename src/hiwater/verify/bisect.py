"""Find and name the keys that differ (pure: it only asks the two sides questions).

Windows whose digests differ are split into ``parts`` slices of the key-hash range; only the
slices that still differ are split again, until a slice holds at most ``small`` rows on either
side, whose rows are then fetched and compared. Each level is one *round* (one query per side
per slice), so one differing row among N costs about ``log(N / small) / log(parts)`` rounds,
and equal slices never cross the wire.

:func:`classify` then names each differing key, using where the key is now on each side (a
key can leave the checked range on one side: an update the other side has not seen).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from . import digest as D
from .sides import Row, Side, _width

MISSING, EXTRA, STALE, AHEAD, CHANGED = "missing", "extra", "stale", "ahead", "changed"
QUARANTINED, PENDING, MOVING = "quarantined", "pending", "moving"
DEFECTS = (MISSING, EXTRA, STALE, AHEAD, CHANGED)
CLASSES = DEFECTS + (QUARANTINED, PENDING, MOVING)


def both(on_source, on_target):
    """Ask both sides at once (each has its own connection): a round costs the slower side's
    time, not the sum."""
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(on_source)
        second = on_target()
        return first.result(), second


def differing(a: dict, b: dict) -> list[int]:
    """The groups whose ``(count, sum)`` differ between two digests (absent = empty)."""
    return sorted(g for g in set(a) | set(b) if a.get(g, (0, 0)) != b.get(g, (0, 0)))


@dataclass
class Found:
    """The rows of the slices that differ, per side, and what finding them cost."""

    source: dict = field(default_factory=dict)   # key text -> Row
    target: dict = field(default_factory=dict)
    rounds: int = 0


def bisect(src: Side, tgt: Side, windows: list[tuple[int, int, int]], *, parts: int = 16,
           small: int = 256) -> Found:
    """``windows``: ``(a, b, rows)`` for each differing window (closed cursor range, the larger
    side's row count). Returns the differing rows of both sides."""
    found = Found()
    level = []
    fetch = []
    for a, b, n in windows:
        (fetch if n <= small else level).append((a, b, 0, D.KEY_SPACE))
    while level or fetch:
        if level:
            found.rounds += 1
            nxt = []
            for a, b, lo, hi in level:
                da, db = both(lambda: src.ranges(a, b, lo, hi, parts), lambda: tgt.ranges(a, b, lo, hi, parts))
                width = _width(lo, hi, parts)
                for p in differing(da, db):
                    plo, phi = lo + p * width, min(lo + (p + 1) * width, hi)
                    n = max(da.get(p, (0, 0))[0], db.get(p, (0, 0))[0])
                    (fetch if n <= small or phi - plo <= 1 else nxt).append((a, b, plo, phi))
            level = nxt
        if fetch:
            found.rounds += 1
            for a, b, lo, hi in fetch:
                rs, rt = both(lambda: src.rows(a, b, lo, hi), lambda: tgt.rows(a, b, lo, hi))
                for t in set(rs) | set(rt):
                    x, y = rs.get(t), rt.get(t)
                    if x is None or y is None or x.h != y.h:
                        if x is not None:
                            found.source[t] = x
                        if y is not None:
                            found.target[t] = y
            fetch = []
    return found


@dataclass(frozen=True)
class Diff:
    """One named key: its class, its values, and its cursor on each side (``None``: absent)."""

    kind: str
    key: tuple
    source: int | None
    target: int | None


def classify(found: Found, src_now: dict, tgt_now: dict, *, until: int, quarantined=frozenset()) -> list[Diff]:
    """Name each differing key.

    ``src_now`` / ``tgt_now``: ``{key text: cursor}`` of those keys on each side at any cursor.
    - in both, same cursor: **changed** (the content differs: history rewritten in place);
    - the target's cursor is older: **stale**; newer: **ahead** (the source went back);
    - only in the source: **missing**, or **quarantined** when the quarantine holds the key;
    - only in the target: **extra**, unless the source holds the key at a cursor past ``until``:
      **pending** (changed after the load; the next run applies it), not a defect.
    """
    out = []
    for t in sorted(set(found.source) | set(found.target)):
        s: Row | None = found.source.get(t)
        g: Row | None = found.target.get(t)
        key = (s or g).key
        sc = s.cursor if s is not None else src_now.get(t)
        gc = g.cursor if g is not None else tgt_now.get(t)
        if sc is None:
            kind = EXTRA
        elif gc is None:
            kind = MISSING
        elif sc == gc:
            kind = CHANGED
        elif gc < sc:
            kind = PENDING if s is None and sc > until else STALE
        else:
            kind = MOVING if g is None and gc > until else AHEAD
        if kind in (MISSING, STALE) and t in quarantined:
            kind = QUARANTINED
        out.append(Diff(kind, key, sc, gc))
    return out

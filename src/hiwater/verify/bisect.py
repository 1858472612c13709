"""Find and name the keys that differ (pure: it only asks the two sides questions).

Windows whose digests differ are split into buckets of the key hash, as many as make a bucket
hold about ``small`` rows (at most 4096); only the buckets that still differ are split again,
until one holds at most ``small`` rows on either side (``4 * small`` once split), whose rows are
then fetched and compared.
Each round is one query per side for every open slice at once, so one differing row among N
costs about ``log4096(N / small) + 1`` rounds whatever the number of differences, and equal
slices never cross the wire.

:func:`classify` then names each differing key, using where the key is now on each side (a
key can leave the checked range on one side: an update the other side has not seen).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from . import digest as D
from .plan import Plan
from .rows import Row, Side

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


def whole_digests(src: Side, tgt: Side, lo: int | None, hi: int) -> tuple[tuple, tuple, tuple | None]:
    """Each side's ``(count, sum)`` of the whole range ``[lo, hi]`` (``lo`` ``None``: all up to
    ``hi``), one pass without grouping and without a span: when they are equal, so is every window
    (the common case, and the cheapest: a GROUP BY costs SQLite a sort of every row, and a target
    table has no index to find its smallest cursor). Also the source's span, which the plan needs
    when ``lo`` is not given (from its index on the cursor, where it has one), read first: the
    source's total then starts there, so a database selects the range exactly by the cursor's own
    bounds (and PostgreSQL normalises it with its fast ``date_part``, exact in a known range)."""
    def source():
        if lo is not None:
            return src.total(lo, hi), None
        span = src.span(lo, hi)
        return (src.total(span[0], hi) if span is not None else (0, 0)), span
    (whole_s, span_s), whole_t = both(source, lambda: tgt.total(lo, hi))
    return whole_s, whole_t, span_s


def differing(a: dict, b: dict) -> list[int]:
    """The groups whose ``(count, sum)`` differ between two digests (absent = empty)."""
    return sorted(g for g in set(a) | set(b) if a.get(g, (0, 0)) != b.get(g, (0, 0)))


@dataclass
class Found:
    """The rows of the slices that differ, per side, and what finding them cost."""

    source: dict = field(default_factory=dict)   # key text -> Row
    target: dict = field(default_factory=dict)
    rounds: int = 0


MAX_SPLIT = 12  # bits: a slice splits into at most 4096 buckets per round
FETCH_SPLIT = 4  # a bucket of up to 4 * small rows is fetched, not split again: another round is
                 # another pass over the differing windows (a scan, where the cursor has no index)
                 # to save fetching a few hundred rows (a window of more than 4096 * small rows)


def split_bits(rows: int, small: int) -> int:
    """How many bits to split by so that a bucket holds about ``small`` rows (1 to MAX_SPLIT)."""
    return max(1, min(MAX_SPLIT, math.ceil(math.log2(max(rows, 1) / small))))


def bisect(src: Side, tgt: Side, plan: Plan, windows: list[tuple[int, int]], *, small: int = 128) -> Found:
    """``windows``: ``(index, rows)`` of each differing window (the larger side's row count).

    Each round asks each side ONE question covering every slice still open: the digests of the
    buckets inside the slices that are still too large (split so that a bucket holds about
    ``small`` rows), and the rows of the slices small enough to name. Returns the differing rows
    of both sides."""
    found = Found()
    open_, fetch, depth = [], [], 0
    for w, n in windows:
        (fetch if n <= small else open_).append((w, 0, 0, n))
    while open_ or fetch:
        found.rounds += 1
        parents = [(w, b) for w, _, b, _ in open_]
        child = min(D.KEY_BITS, depth + split_bits(max((n for *_, n in open_), default=1), small))
        slices = [(w, d, b) for w, d, b, _ in fetch]

        def ask(side):
            digests = side.buckets(plan, depth, parents, child) if parents else {}
            return digests, side.rows(plan, slices) if slices else {}
        (ds, rs), (dt, rt) = both(lambda: ask(src), lambda: ask(tgt))
        for t in set(rs) | set(rt):
            x, y = rs.get(t), rt.get(t)
            if x is None or y is None or x.h != y.h:
                if x is not None:
                    found.source[t] = x
                if y is not None:
                    found.target[t] = y
        open_, fetch, depth = [], [], child
        for w, b in differing(ds, dt):
            n = max(ds.get((w, b), (0, 0))[0], dt.get((w, b), (0, 0))[0])
            (fetch if n <= FETCH_SPLIT * small or depth == D.KEY_BITS else open_).append((w, depth, b, n))
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

"""The sides' common ground and the side that holds its rows in memory.

:class:`Row`, the :class:`Side` protocol every side answers, the key-hash :func:`bucket`, and
:class:`MemorySide`: the rows a source or target can only hand over whole (files, Delta, a cursor
the database cannot normalise exactly, ``--content``), read once, then answered by numpy
(:mod:`hiwater.verify.sides` has the SQL side and opens every side).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .. import values as V
from . import digest as D
from .plan import Plan

CURSOR_COL = "_hiwater_cursor"


@dataclass(frozen=True)
class Row:
    key: tuple      # the key's values, as this side holds them
    cursor: int     # the normalised cursor
    h: int          # the row hash


class Side(Protocol):
    label: str
    fetched: int

    def span(self, lo: int | None, hi: int) -> tuple[int, int] | None: ...
    def total(self, lo: int | None, hi: int) -> tuple[int, int]: ...
    def windows(self, plan: Plan) -> dict[int, tuple[int, int]]: ...
    def buckets(self, plan: Plan, depth: int, parents: list, child: int) -> dict[tuple, tuple[int, int]]: ...
    def rows(self, plan: Plan, slices: list) -> dict[str, Row]: ...
    def lookup(self, keys: list[tuple]) -> dict[str, int]: ...
    def use(self, mode: str) -> None: ...
    def close(self) -> None: ...


def bucket(kh, depth: int):
    """The depth-``depth`` bucket of a key hash: its top ``depth`` bits (0: the whole window)."""
    return kh >> (D.KEY_BITS - depth)


# --- rows held in memory ------------------------------------------------------------------------

class MemorySide:
    """Rows read once: keys, normalised cursors and (with ``--content``) the content text.

    A key seen more than once (a file that appends versions) counts once, at its largest cursor:
    the version the loader keeps.
    """

    def __init__(self, label: str, keys: list[tuple], cursors, contents: list[str] | None = None):
        self.label = label
        self.fetched = 0
        latest: dict[str, int] = {}
        texts = [D.key_text(k) for k in keys]
        cursors = [int(c) for c in cursors]
        for i, t in enumerate(texts):
            j = latest.get(t)
            if j is None or cursors[i] >= cursors[j]:
                latest[t] = i
        keep = sorted(latest.values())
        self.keys = [keys[i] for i in keep]
        self.texts = [texts[i] for i in keep]
        self.cursor = np.array([cursors[i] for i in keep], dtype=np.int64)
        self.contents = None if contents is None else [contents[i] for i in keep]
        self.int_key = contents is None and all(
            len(k) == 1 and type(k[0]) is int and -(1 << 63) <= k[0] < (1 << 63) for k in self.keys)
        self.where = {t: i for i, t in enumerate(self.texts)}
        self.mode = None
        self.h = self.kh = None

    def use(self, mode: str) -> None:
        """Hash the rows with the checksum both sides agreed on (:func:`hiwater.verify.sides.agree`)."""
        if mode == self.mode:
            return
        self.mode = mode
        if mode == D.INT:
            self.h, self.kh = D.int_hashes([k[0] for k in self.keys], self.cursor)
            return
        cursors = self.cursor.tolist()
        self.h = np.array([D.row_hash(t, c, None if self.contents is None else self.contents[i])
                           for i, (t, c) in enumerate(zip(self.texts, cursors))], dtype=np.uint64)
        self.kh = np.array([D.key_hash(t) for t in self.texts], dtype=np.int64)

    def span(self, lo, hi):
        m = self.cursor <= hi
        if lo is not None:
            m &= self.cursor >= lo
        if not m.any():
            return None
        return int(self.cursor[m].min()), int(self.cursor[m].max())

    @staticmethod
    def _digest(groups: list, h: np.ndarray) -> dict:
        """``{group: (count, sum)}``; ``groups`` is one array, or several (a tuple key)."""
        out = {}
        if not len(h):
            return out
        stacked = np.stack(groups, axis=1)
        uniq, inv = np.unique(stacked, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        counts = np.bincount(inv, minlength=len(uniq))
        sums = np.zeros(len(uniq), dtype=np.uint64)
        np.add.at(sums, inv, h)  # uint64 wraps: the sum modulo 2**64
        for g, c, s in zip(uniq.tolist(), counts.tolist(), sums.tolist()):
            out[tuple(g) if len(g) > 1 else g[0]] = (int(c), int(s))
        return out

    def _window(self, plan):
        m = (self.cursor >= plan.lo) & (self.cursor <= plan.hi)
        return m, (self.cursor - plan.lo) // plan.step

    def _ready(self) -> None:
        if self.mode is None:
            self.use(D.MD5)

    def windows(self, plan):
        self._ready()
        m, w = self._window(plan)
        return self._digest([w[m]], self.h[m])

    def total(self, lo, hi):
        self._ready()
        m = self.cursor <= hi
        if lo is not None:
            m &= self.cursor >= lo
        return int(m.sum()), int(self.h[m].sum(dtype=np.uint64)) if m.any() else 0

    def buckets(self, plan, depth, parents, child):
        self._ready()
        m, w = self._window(plan)
        up = bucket(self.kh, depth)
        want = np.zeros(len(self.cursor), dtype=bool)
        for pw, pb in parents:
            want |= (w == pw) & (up == pb)
        m &= want
        return self._digest([w[m], bucket(self.kh[m], child)], self.h[m])

    def rows(self, plan, slices):
        self._ready()
        m, w = self._window(plan)
        want = np.zeros(len(self.cursor), dtype=bool)
        for sw, depth, b in slices:
            want |= (w == sw) & (bucket(self.kh, depth) == b)
        idx = np.flatnonzero(m & want)
        return {self.texts[i]: Row(self.keys[i], int(self.cursor[i]), int(self.h[i])) for i in idx}

    def lookup(self, keys):
        out = {}
        for k in keys:
            t = D.key_text(k)
            i = self.where.get(t)
            if i is not None:
                out[t] = int(self.cursor[i])
        return out

    def close(self):
        pass


def _values(batch, name: str) -> list:
    """A column of a source batch as the values the loader stores (as sent)."""
    for where in (batch.sent, batch.mixed):
        if name in where:
            return list(where[name])
    if name in batch.table.column_names:
        return batch.table.column(name).to_pylist()
    return [None] * len(batch)


def from_batches(label: str, batches, *, key: list, cursor: str, kind: str, tz,
                 content: list | None = None) -> MemorySide:
    """Read a source's batches once: the rows whose cursor parses (invalid ones are the
    quarantine's), normalised exactly as the loader normalises them. Every row is kept, not only
    the checked range: a key that left the range on one side is looked up here."""
    keys, cursors, contents = [], [], [] if content is not None else None
    fetched = 0
    for batch in batches:
        n = len(batch)
        if not n:
            continue
        if cursor in batch.table.column_names and cursor not in batch.mixed:
            parsed = V.parse_column(batch.table.column(cursor), kind, tz)
            vals, ok = parsed.values, parsed.valid
        else:
            vals, ok = np.zeros(n, np.int64), np.zeros(n, bool)
            for i, v in enumerate(_values(batch, cursor)):
                try:
                    vals[i], _ = V.parse_one(v, kind, tz)
                    ok[i] = True
                except (ValueError, OverflowError):
                    pass
        cols = [_values(batch, k) for k in key]
        other = [_values(batch, c) for c in content] if content is not None else None
        for i in np.flatnonzero(ok):
            k = tuple(c[i] for c in cols)
            if any(v is None for v in k):
                continue  # a record without its key is the quarantine's
            keys.append(k)
            cursors.append(int(vals[i]))
            if other is not None:
                contents.append(D.content_text([c[i] for c in other]))
        fetched += batch.table.nbytes
    side = MemorySide(label, keys, cursors, contents)
    side.fetched = fetched
    return side

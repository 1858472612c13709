"""Rows routed to their buckets.

The read phase of a bucketed file stream hashes each batch's keys once and cuts the batch into
every bucket's rows (:func:`split_batch`, used by :mod:`hiwater.sources.splits`).
:class:`BucketSource` keeps one bucket's rows of a source read whole (a bucket spec run on its
own, without a read phase); a SQL source reads only its bucket's rows, because the predicate
is pushed down (:func:`hiwater.keyhash.bucket_sql`).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..keyhash import bucket_ids
from .base import RawBatch


class BucketSource:
    """A source that yields only the rows of bucket ``b`` of ``n`` of another source.

    Record numbers stay those of the file (``RawBatch.numbers``), so an error still names the
    record as the whole file counts it. Every other attribute is the wrapped source's."""

    def __init__(self, inner, key, b: int, n: int):
        self._inner, self._key, self._b, self._n = inner, tuple(key), b, n

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def batches(self):
        for raw in self._inner.batches():
            yield take_bucket(raw, self._key, self._b, self._n)

    def close(self) -> None:
        self._inner.close()


def take_bucket(raw, key, b: int, n: int):
    """The rows of bucket ``b`` of one :class:`~hiwater.sources.base.RawBatch`."""
    count = len(raw)
    if count == 0:
        return raw
    if raw.table.num_columns == 0:  # no key: all invalid, all in bucket 0
        return raw if b == 0 else RawBatch(raw.table, raw.path, raw.first_record, rows=0)
    keep = bucket_ids(raw.table, key, n, raw.mixed) == b
    if keep.all():
        return raw
    return take_rows(raw, np.flatnonzero(keep))


def split_batch(raw, key, n: int) -> list:
    """Every bucket's rows of one batch (the read phase: the key is hashed once): a list of ``n``
    batches, ``None`` where a bucket has no row."""
    if len(raw) == 0:
        return [None] * n
    if raw.table.num_columns == 0:  # no key: all invalid, all in bucket 0
        return [raw] + [None] * (n - 1)
    ids = bucket_ids(raw.table, key, n, raw.mixed)
    if n == 1:
        return [raw]
    order = np.argsort(ids, kind="stable")
    counts = np.bincount(ids, minlength=n)
    out, at = [], 0
    for b in range(n):
        c = int(counts[b])
        if c == 0:
            out.append(None)
        elif c == len(raw):
            out.append(raw)
        else:
            out.append(take_rows(raw, order[at:at + c]))
        at += c
    return out


def take_rows(raw, idx):
    """The rows of ``raw`` at positions ``idx`` (ascending), numbered as in the file."""
    from .lightjson import LightBatch
    idx = np.asarray(idx, dtype=np.int64)
    take = pa.array(idx)
    numbers = raw.record_nos(idx)
    if isinstance(raw, LightBatch):
        return _take_light(raw, idx, take, numbers)
    return RawBatch(
        raw.table.take(take), raw.path, int(numbers[0]) if len(idx) else raw.first_record,
        problems=_moved(raw.problems, idx),
        rows=None if raw.rows is None else len(idx),
        mixed={c: [v[i] for i in idx] for c, v in raw.mixed.items()},
        stored={c: v.take(take) for c, v in raw.stored.items()},
        sent={c: [v[i] for i in idx] for c, v in raw.sent.items()},
        csv=raw.csv,
        texts={c: v.take(take) for c, v in raw.texts.items()},
        record_texts=None if raw.record_texts is None else raw.record_texts.take(idx),
        numbers=numbers)


def _moved(problems: dict, idx: np.ndarray) -> dict:
    """``problems`` (row -> why) of the rows at positions ``idx`` (ascending), by new position."""
    if not problems:
        return {}
    rows = np.fromiter(problems, dtype=np.int64, count=len(problems))
    at = np.searchsorted(idx, rows)
    hit = (at < len(idx)) & (idx[np.minimum(at, len(idx) - 1)] == rows) if len(idx) else np.zeros(len(rows), bool)
    return {int(a): problems[int(r)] for r, a, h in zip(rows, at, hit) if h}


def _take_light(raw, idx, take, numbers):
    """A key-and-cursor batch's rows, with only their lines' bytes (a bucket's share is written
    to its spill file without the other buckets' lines)."""
    from .lightjson import LightBatch
    from .records import SentText, gather
    block, starts, ends = gather(raw._block, raw._starts[idx], raw._ends[idx])
    out = LightBatch(raw.table.take(take), raw.path, int(numbers[0]), raw._file, block, starts, ends,
                     raw._lines[idx], raw._schema, raw._cursor)
    out.record_texts = SentText(block, starts, ends)
    out.numbers = numbers
    return out

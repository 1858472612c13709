"""Pure numpy (and Arrow) helpers for key lookups, shared by every target (SQL and Delta).

A lookup answers, for each key of a batch, whether the target holds it and with which cursor
and run (:class:`Lookup`); these helpers build that answer from rows read in bulk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa


@dataclass
class Lookup:
    """What the target holds for a list of keys (aligned with the request)."""

    exists: np.ndarray
    cursor: np.ndarray
    run: np.ndarray


def python_keys(arrays: list) -> list:
    """Keys (one Arrow array per key column) as Python values in their stored form, for a
    target's Python-keyed paths: a scalar per key for one column, else a list per key.
    Timestamps and dates become ISO text, as the loader stores them (nested key values
    already are JSON text)."""
    cols = []
    for arr in arrays:
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if pa.types.is_timestamp(arr.type) or pa.types.is_date(arr.type):
            cols.append([None if v is None else v.isoformat() for v in arr.to_pylist()])
        else:
            cols.append(arr.to_pylist())
    if len(cols) == 1:
        return cols[0]
    return [list(t) for t in zip(*cols)]


def dense(keys: np.ndarray) -> bool:
    """Whether integer keys span at most 4x their count (ids that grow with time): then one
    scan of their key range reads at most 4 rows per key, cheaper than a probe per key."""
    return len(keys) > 0 and int(keys.max()) - int(keys.min()) < 4 * len(keys) + 64


def match_held(keys: np.ndarray, held: np.ndarray) -> Lookup:
    """Pure: for each key, the ``(cursor, run)`` of its row among ``held`` (an ``(n, 3)`` array
    of ``key, cursor, run`` read from a key range), or not found."""
    n = len(keys)
    exists = np.zeros(n, dtype=bool)
    cursor = np.zeros(n, dtype=np.int64)
    run = np.zeros(n, dtype=np.int64)
    if len(held):
        held_keys = held[:, 0]
        if not (held_keys[1:] >= held_keys[:-1]).all():  # a range scan usually comes back in key order
            held = held[np.argsort(held_keys, kind="stable")]
            held_keys = held[:, 0]
        pos = np.minimum(np.searchsorted(held_keys, keys), len(held) - 1)
        hit = held_keys[pos] == keys
        exists[hit] = True
        cursor[hit] = held[pos[hit], 1]
        run[hit] = held[pos[hit], 2]
    return Lookup(exists, cursor, run)


def changed_versions(cursors: np.ndarray, idx, found, held_cursor, held_run) -> Lookup:
    """Pure: the answer of a version-aware lookup (see :meth:`Transaction.held`). Only
    the keys at ``idx`` came back (``found`` says whether the target holds them, with
    ``held_cursor`` and ``held_run``); every other key holds exactly its cursor from an
    earlier run."""
    n = len(cursors)
    exists = np.ones(n, dtype=bool)
    cursor = np.asarray(cursors, dtype=np.int64).copy()
    run = np.zeros(n, dtype=np.int64)
    idx = np.asarray(idx, dtype=np.int64)
    if len(idx):
        found = np.asarray(found, dtype=bool)
        exists[idx] = found
        cursor[idx] = np.where(found, np.asarray(held_cursor, dtype=np.int64), 0)
        run[idx] = np.where(found, np.asarray(held_run, dtype=np.int64), 0)
    return Lookup(exists, cursor, run)


def parse_joined(n: int, texts) -> np.ndarray | None:
    """Columns of integers a database joined into comma-separated texts (``group_concat``,
    ``string_agg``), parsed by numpy into an ``(n, k)`` array; ``None`` if one does not parse
    back to exactly ``n`` integers (the caller then fetches rows the plain way)."""
    if n == 0:
        return np.zeros((0, len(texts)), np.int64)
    try:
        cols = [np.fromstring(t, dtype=np.int64, sep=",") for t in texts]
    except (ValueError, TypeError, DeprecationWarning):
        return None
    if any(len(c) != n for c in cols):
        return None
    return np.stack(cols, axis=1)

"""``match_held`` (targets/keys.py), the pure step every range lookup ends in, against a dict."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from hiwater.targets.keys import match_held

held_rows = st.lists(st.tuples(st.integers(-20, 40), st.integers(0, 10**15), st.integers(0, 5)),
                     unique_by=lambda r: r[0], max_size=40)


@given(held=held_rows, keys=st.lists(st.integers(-25, 45), max_size=40), shuffle=st.booleans())
def test_each_key_gets_its_own_row_or_nothing(held, keys, shuffle):
    rows = sorted(held) if not shuffle else held  # a scan in key order, or any order
    arr = np.array(rows, dtype=np.int64).reshape(-1, 3)
    found = match_held(np.array(keys, dtype=np.int64), arr)
    want = {k: (c, r) for k, c, r in held}
    for i, k in enumerate(keys):
        if k in want:
            assert found.exists[i] and (found.cursor[i], found.run[i]) == want[k]
        else:
            assert not found.exists[i] and found.cursor[i] == 0 and found.run[i] == 0


@given(cols=st.integers(2, 6).flatmap(lambda k: st.lists(
    st.lists(st.integers(-1, 6), min_size=k, max_size=k), max_size=60)), big=st.booleans())
def test_composite_key_numbering_is_the_row_wise_unique(cols, big):
    """prepare._combine numbers key tuples exactly as numpy's row-wise unique does."""
    from hiwater.prepare import _combine
    if not cols:
        return
    codes = np.array(cols, dtype=np.int64)
    if big:  # codes near 2**31 make the mixed radix overflow without the dense renumbering
        codes = np.where(codes >= 0, codes * (2**31 - 7) // 7, -1)
    want = np.unique(codes, axis=0, return_inverse=True)[1].reshape(-1)
    assert _combine([codes[:, j] for j in range(codes.shape[1])]).tolist() == want.tolist()

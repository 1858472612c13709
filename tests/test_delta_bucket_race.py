"""Two buckets of one stream commit into their shared Delta table at once (issue 20): their
commits are interleaved by hand here, one bucket's whole run happening between another's read
of the table and its commit. Buckets touch disjoint partitions, so both must commit (before:
the bucket whose commit carried only its watermark failed with "a concurrent transaction
deleted data this operation read", and a schema change by one failed the others); two runs of
the SAME bucket, or a bucket whose partition was rewritten under it, must still lose cleanly,
nothing of the loser applied (SPEC §3/§11).
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from hiwater.errors import LockTimeout
from hiwater.state import StreamState
from hiwater.targets import open_target
from hiwater.targets.base import CURSOR_COL, RUN_COL, State

deltalake = pytest.importorskip("deltalake")

KEY = ("k",)
COLUMNS = {"k": "integer", "v": "text"}


@pytest.fixture
def url(tmp_path):
    return f"delta://{tmp_path / 'lake'}"


def rows(ks, vs, cursor, run, **extra):
    cols = {"k": pa.array(ks, pa.int64()), "v": pa.array(vs, pa.string())}
    cols |= {c: pa.array(v, pa.string()) for c, v in extra.items()}
    return pa.table(cols | {CURSOR_COL: pa.array([cursor] * len(ks), pa.int64()),
                            RUN_COL: pa.array([run] * len(ks), pa.int64())})


class Run:
    """One bucket's run, opened (its snapshot read) and committed when told."""

    def __init__(self, url: str, bucket: int):
        self.stream = f"s#{bucket}/2"
        self.target = open_target(target=url).__enter__()
        self._lock = self.target.lock(self.stream, 5)
        self._lock.__enter__()
        self.tx = self.target.begin(self.stream, "tbl", KEY).__enter__()
        self.tx.evolve(COLUMNS, ("c", "int"))
        self.tx.held([pa.array([0], pa.int64())])  # the run reads its snapshot of the table

    def commit(self, ks=(), vs=(), cursor=10, **extra):
        tx = self.tx
        if ks:
            tx.write(rows(list(ks), list(vs), cursor, tx.run_id, **extra))
        tx.record(State(StreamState(self.stream, "tbl", KEY, "c", kind="int", watermark=cursor,
                                    last_run=tx.run_id)))
        try:
            tx.__exit__(None, None, None)
        finally:
            self._lock.__exit__(None, None, None)


def load(url, bucket, ks, vs, cursor=10, **extra):
    Run(url, bucket).commit(ks, vs, cursor, **extra)


def content(url):
    t = deltalake.DeltaTable(url.split("://", 1)[1] + "/tbl").to_pyarrow_table().to_pylist()
    return {r["k"]: (r["v"], r[CURSOR_COL], r["_hiwater_bucket"]) for r in t}


def watermarks(url):
    return {s.stream: s.watermark for s in open_target(target=url).__enter__().ledger.states()}


@pytest.fixture
def two_buckets(url):
    load(url, 0, [1, 2], ["a", "b"])
    load(url, 1, [11, 12], ["x", "y"])
    return url


def test_a_watermark_only_commit_stands_beside_another_buckets_rewrite(two_buckets):
    url = two_buckets
    late = Run(url, 1)                       # bucket 1 reads the table …
    load(url, 0, [1], ["a2"], cursor=20)     # … bucket 0 rewrites its partition's file …
    late.commit(cursor=20)                   # … and bucket 1, which changed no row, commits its watermark
    assert watermarks(url) == {"s#0/2": 20, "s#1/2": 20}
    assert content(url) == {1: ("a2", 20, 0), 2: ("b", 10, 0), 11: ("x", 10, 1), 12: ("y", 10, 1)}


def test_two_buckets_merges_interleaved_both_commit(two_buckets):
    url = two_buckets
    late = Run(url, 1)
    load(url, 0, [1, 3], ["a2", "c"], cursor=20)
    late.commit([11, 13], ["x2", "z"], cursor=20)
    assert watermarks(url) == {"s#0/2": 20, "s#1/2": 20}
    assert content(url) == {1: ("a2", 20, 0), 2: ("b", 10, 0), 3: ("c", 20, 0),
                            11: ("x2", 20, 1), 12: ("y", 10, 1), 13: ("z", 20, 1)}


def test_a_new_column_added_by_one_bucket_does_not_fail_the_other(two_buckets):
    url = two_buckets
    late = Run(url, 1)
    late.tx.evolve({"w": "text"}, ("c", "int"))
    early = Run(url, 0)
    early.tx.evolve({"w": "text"}, ("c", "int"))
    early.commit([1], ["a2"], cursor=20, w=["w1"])
    late.commit([11], ["x2"], cursor=20, w=["w11"])
    assert watermarks(url) == {"s#0/2": 20, "s#1/2": 20}
    t = deltalake.DeltaTable(url.split("://", 1)[1] + "/tbl").to_pyarrow_table().to_pylist()
    assert {r["k"]: r["w"] for r in t} == {1: "w1", 2: None, 11: "w11", 12: None}


def test_the_first_commits_of_buckets_that_read_no_table_both_stand(url):
    a, b = Run(url, 0), Run(url, 1)          # both read before the table exists
    a.commit([1], ["a"])
    b.commit([11], ["x"])
    assert content(url) == {1: ("a", 10, 0), 11: ("x", 10, 1)}
    assert watermarks(url) == {"s#0/2": 10, "s#1/2": 10}


def test_two_runs_of_one_bucket_the_later_commit_loses_cleanly(two_buckets):
    url = two_buckets
    stale = Run(url, 1)
    load(url, 1, [11], ["x2"], cursor=20)    # another run of bucket 1 commits first
    with pytest.raises(LockTimeout):
        stale.commit([11, 13], ["x-stale", "z"], cursor=15)
    assert watermarks(url)["s#1/2"] == 20
    assert content(url) == {1: ("a", 10, 0), 2: ("b", 10, 0), 11: ("x2", 20, 1), 12: ("y", 10, 1)}


def test_a_bucket_whose_partition_was_rewritten_under_it_loses_cleanly(two_buckets):
    url = two_buckets
    stale = Run(url, 1)
    folder = url.split("://", 1)[1] + "/tbl"
    deltalake.DeltaTable(folder).delete("k = 12")  # its partition changes, its watermark does not
    with pytest.raises(LockTimeout):
        stale.commit([13], ["z"], cursor=20)
    assert watermarks(url)["s#1/2"] == 10
    assert content(url) == {1: ("a", 10, 0), 2: ("b", 10, 0), 11: ("x", 10, 1)}


def test_a_bucket_whose_partition_is_empty_starts_as_on_an_empty_table(url):
    """Bucket 0 of a first load made the table; bucket 1's first run finds no row of its own
    (its keys live only in its partition), so it looks no key up, as one run on a new table."""
    load(url, 0, [1, 2], ["a", "b"])
    t = open_target(target=url).__enter__()
    assert t.table("tbl").has_rows  # outside a run: the whole table
    for bucket, has in ((0, True), (1, False)):
        with t.lock(f"s#{bucket}/2", 5):
            assert t.table("tbl").has_rows is has

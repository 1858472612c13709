"""The Transaction contract (targets/base.py: Target, Transaction, Ledger) played against a Delta
folder with no loader in between: what a transaction stages is seen by its own reads, commits
all at once, and leaves nothing when it is discarded or raises; the ledger reads the committed
facts and never creates anything. Only the new interface is used here."""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest

from hiwater.state import StreamState
from hiwater.targets import open_target
from hiwater.targets.base import (CURSOR_COL, RUN_COL, Dropped, FilesGone, FilesRead, History, Quarantined,
                                  Released, State)

deltalake = pytest.importorskip("deltalake")

KEY = ("k",)
COLUMNS = {"k": "integer", "v": "text"}


@pytest.fixture
def url(tmp_path):
    return f"delta://{tmp_path / 'lake'}"


def opened(url):
    return open_target(target=url).__enter__()


def rows(ks, vs, cursors, run):
    return pa.table({"k": pa.array(ks, pa.int64()), "v": pa.array(vs, pa.string()),
                     CURSOR_COL: pa.array(cursors, pa.int64()), RUN_COL: pa.array([run] * len(ks), pa.int64())})


def keys(*ks):
    return [pa.array(ks, pa.int64())]


def held(tx, *ks, cursors=False):
    """``[(exists, cursor, run)]``; with ``cursors``, asked as a batch arriving with cursor -1
    (a cursor no row holds, so the target answers for every key)."""
    lk = tx.held(keys(*ks), np.full(len(ks), -1, np.int64) if cursors else None)
    return [(bool(e), int(c), int(r)) if e else (False,) for e, c, r in zip(lk.exists, lk.cursor, lk.run)]


def state(watermark, run):
    return StreamState("s", "tbl", KEY, "c", kind="int", watermark=watermark, last_run=run)


def history(run):
    return {"run_id": run, "window_index": 0, "stream": "s", "started_at": "x", "finished_at": "y",
            "mode": "incremental", "outcome": "committed"}


def quarantined(fingerprint, run):
    return {"stream": "s", "reason": "late", "detail": None, "source": "x", "record_no": 1, "key": "3",
            "cursor": "30", "cursor_value": 30, "record": "{}", "fingerprint": fingerprint, "run": run}


def content(url):
    """``{k: (v, cursor, run)}`` as delta-rs reads the committed table."""
    t = deltalake.DeltaTable(url.split("://", 1)[1] + "/tbl").to_pyarrow_table().to_pylist()
    return {r["k"]: (r["v"], r[CURSOR_COL], r[RUN_COL]) for r in t}


def load(url, ks, vs, cursor=10):
    """Commit rows ``ks`` (all with ``cursor``) with a state and a history row; the run id."""
    t = opened(url)
    with t.lock("s", 5), t.begin("s", "tbl", KEY) as tx:
        tx.evolve(COLUMNS, ("c", "int"))
        run = tx.run_id
        tx.write(rows(ks, vs, [cursor] * len(ks), run), mode="fresh" if t.table("tbl") is None else "upsert")
        tx.record(State(state(cursor, run)), History(history(run)))
    return run


def test_a_commit_is_seen_all_at_once(url):
    t, other = opened(url), opened(url)
    entry = SimpleNamespace(path="/in/a.jsonl", size=3, mtime_ns=7, etag=None)
    with t.lock("s", 5):
        assert t.table("tbl") is None
        with t.begin("s", "tbl", KEY) as tx:
            tx.evolve(COLUMNS, ("c", "int"))
            run = tx.run_id
            tx.write(rows([1, 2], ["a", "b"], [10, 10], run), mode="fresh")
            tx.record(State(state(10, run)), History(history(run)), FilesRead([entry]))
            assert tx.count() == 2
            assert other.ledger.states("s") == [] and other.table("tbl") is None
            assert other.ledger.files("s") == {}
    assert other.ledger.states("s")[0].watermark == 10
    assert [h["run_id"] for h in other.ledger.history("s")] == [run]
    assert other.ledger.files("s") == {"/in/a.jsonl": (3, 7, None)}
    info = other.table("tbl", count=True)
    assert info.columns == COLUMNS and info.has_rows and info.rows == 2
    with t.lock("s", 5), t.begin("s", "tbl", KEY) as tx:
        tx.record(FilesGone(["/in/a.jsonl"]))
    assert other.ledger.files("s") == {}


def test_a_discarded_transaction_leaves_nothing(url):
    t = opened(url)
    with t.lock("s", 5):
        with t.begin("s", "tbl", KEY, discard=True) as tx:
            tx.evolve(COLUMNS, ("c", "int"))
            tx.write(rows([1, 2], ["a", "b"], [10, 10], tx.run_id), mode="fresh")
            tx.record(State(state(10, tx.run_id)), History(history(tx.run_id)),
                      Quarantined([quarantined("f", tx.run_id)]))
            assert tx.count() == 2 and held(tx, 1) == [(True, 10, tx.run_id)]
    assert t.table("tbl") is None
    assert t.ledger.states() == [] and t.ledger.history() == [] and t.ledger.quarantine() == []
    run = load(url, [1], ["a"])
    with t.lock("s", 5), t.begin("s", "tbl", KEY, discard=True) as tx:
        tx.write(rows([1, 2], ["new", "b"], [20, 20], tx.run_id))
        tx.evolve({"extra": "integer"}, ("c", "int"))
        tx.record(State(state(20, tx.run_id)), History(history(tx.run_id)))
    assert content(url) == {1: ("a", 10, run)} and "extra" not in t.table("tbl").columns
    assert t.ledger.states("s")[0].watermark == 10 and len(t.ledger.history("s")) == 1


def test_an_exception_inside_leaves_nothing(url):
    run = load(url, [1], ["a"])
    t = opened(url)
    with pytest.raises(RuntimeError), t.lock("s", 5), t.begin("s", "tbl", KEY) as tx:
        tx.write(rows([1, 2], ["new", "b"], [20, 20], tx.run_id))
        tx.delete(keys(1))
        tx.record(State(state(20, tx.run_id)), Quarantined([quarantined("f", tx.run_id)]))
        raise RuntimeError("boom")
    assert content(url) == {1: ("a", 10, run)}
    assert t.ledger.states("s")[0].watermark == 10 and t.ledger.quarantine("s") == []


def test_held_sees_the_transactions_own_writes(url):
    first = load(url, [1, 2], ["a", "b"])
    t = opened(url)
    with t.lock("s", 5), t.begin("s", "tbl", KEY) as tx:
        run = tx.run_id
        assert held(tx, 1, 2, 3) == [(True, 10, first), (True, 10, first), (False,)]
        tx.write(rows([2, 3], ["b2", "c"], [20, 20], run))
        tx.delete(keys(1))
        for with_cursors in (False, True):
            assert held(tx, 1, 2, 3, cursors=with_cursors) == [(False,), (True, 20, run), (True, 20, run)]
        assert tx.count() == 2


def test_a_write_never_replaces_a_newer_cursor(url):
    first = load(url, [1, 2], ["a", "b"], cursor=10)
    t = opened(url)
    with t.lock("s", 5), t.begin("s", "tbl", KEY) as tx:
        run = tx.run_id
        tx.write(rows([1], ["older"], [5], run))
        tx.write(rows([2], ["same"], [10], run))     # the same cursor: not a change (no refresh)
        tx.write(rows([3], ["new"], [7], run))
    assert content(url) == {1: ("a", 10, first), 2: ("b", 10, first), 3: ("new", 7, run)}
    with t.lock("s", 5), t.begin("s", "tbl", KEY) as tx:
        tx.write(rows([1], ["newer"], [11], tx.run_id))
        run = tx.run_id
    assert content(url)[1] == ("newer", 11, run)


def test_a_refresh_replaces_only_differing_content(url):
    first = load(url, [1, 2], ["a", "b"], cursor=10)
    t = opened(url)
    with t.lock("s", 5), t.begin("s", "tbl", KEY) as tx:
        run = tx.run_id
        written = tx.write(rows([1, 2], ["a", "B"], [10, 10], run), mode="refresh")
        assert written in (1, None)  # rows changed, where the target knows it
    assert content(url) == {1: ("a", 10, first), 2: ("B", 10, run)}


def test_delete_seen_prune_and_count(url):
    load(url, [1, 2, 3, 4, 5], ["a"] * 5)
    t = opened(url)
    with t.lock("s", 5), t.begin("s", "tbl", KEY) as tx:
        assert tx.count() == 5
        assert tx.delete(keys(1, 9)) == 1
        assert tx.count() == 4
        tx.seen(keys(1, 2))
        tx.seen(keys(3))
        tx.write(rows([6], ["f"], [10], tx.run_id))
        assert tx.prune() == 2          # 4 and 5: not seen, not written by this transaction
        assert tx.count() == 3
    assert sorted(content(url)) == [2, 3, 6]
    assert t.table("tbl", count=True).rows == 3


def test_released_is_applied_before_quarantined(url):
    t = opened(url)
    with t.lock("s", 5), t.begin("s", "tbl", KEY) as tx:
        first = tx.run_id
        tx.record(State(state(None, first)), Quarantined([quarantined("f", first), quarantined("g", first)]))
    ids = {q["fingerprint"]: q["id"] for q in t.ledger.quarantine("s")}
    assert set(ids) == {"f", "g"}
    # a replay: both records leave the quarantine, one comes back (still late) in the same transaction
    with t.lock("s", 5), t.begin("s", "tbl", KEY) as tx:
        again = tx.run_id
        tx.record(Quarantined([quarantined("f", again)]), Released(list(ids.values())))
    q = t.ledger.quarantine("s")
    assert [(e["fingerprint"], e["first_run"], e["last_run"], e["seen"]) for e in q] == [("f", again, again, 1)]
    assert t.ledger.facts("s")["quarantined"] == 1


def test_run_ids_increase_and_a_given_one_is_reused(url):
    first = load(url, [1], ["a"])
    t = opened(url)
    with t.lock("s", 5):
        with t.begin("s", "tbl", KEY) as tx:
            second = tx.run_id
            assert second > first
            tx.record(History(history(second)))
        with t.begin("s", "tbl", KEY, run_id=second) as tx:  # a later --window slice of that run
            assert tx.run_id == second
            tx.write(rows([2], ["b"], [10], tx.run_id))
        with t.begin("s", "tbl", KEY) as tx:
            assert tx.run_id > second
    assert content(url)[2] == ("b", 10, second)


def test_the_ledger_of_a_fresh_target_reads_nothing_and_makes_nothing(url, tmp_path):
    t = opened(url)
    ledger = t.ledger
    assert ledger.states() == [] and ledger.states("s") == [] and ledger.history() == []
    assert ledger.quarantine() == [] and ledger.files("s") == {}
    assert ledger.facts("s") == {"last_run": [], "last_success_at": None, "quarantined": 0}
    assert t.table("tbl") is None
    assert os.listdir(tmp_path / "lake") == []


def test_a_dropped_stream_is_forgotten_with_its_table(url):
    load(url, [1], ["a"])
    t = opened(url)
    with t.lock("s", 5), t.begin("s", "tbl", KEY) as tx:
        tx.record(Dropped("tbl"))
    assert t.ledger.states() == [] and t.ledger.history("s") == [] and t.table("tbl") is None

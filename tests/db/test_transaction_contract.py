"""The target interface (``Target`` + ``Transaction`` + ``Ledger``, targets/base.py) played
directly against every target, with no loader in between: what the loader and the admin
commands rely on. A target that passes this is one the loader can drive; a new target gets the
whole suite by adding its fresh-URL factory to ``tests/db/conftest.py``."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from hiwater.sources.files import FileEntry
from hiwater.state import StreamState
from hiwater.targets import open_target
from hiwater.targets.base import (CURSOR_COL, RUN_COL, Dropped, FilesGone, FilesRead, History, Quarantined,
                                  Released, State, Target, Verified)

KEY = ("k",)
COLUMNS = {"k": "integer", "v": "text", "c": "integer"}


def rows(ks, vs, cursors, run):
    return pa.table({"k": pa.array(ks, pa.int64()), "v": pa.array(vs, pa.string()),
                     "c": pa.array(cursors, pa.int64()), CURSOR_COL: pa.array(cursors, pa.int64()),
                     RUN_COL: pa.array([run] * len(ks), pa.int64())})


def keys(*ks):
    return [pa.array(list(ks), pa.int64())]


def held(tx, *ks, cursors=None):
    """``(exists, cursor)`` per key; with ``cursors``, keys held at exactly that cursor by an
    earlier run may go unanswered, and then hold that cursor."""
    got = tx.held(keys(*ks), None if cursors is None else np.array(cursors, np.int64))
    return [(bool(e), int(c) if e else 0) for e, c in zip(got.exists, got.cursor)]


def runs(tx, *ks):
    return [int(r) for r in tx.held(keys(*ks)).run]


def state(watermark, run):
    return StreamState("s", "tbl", KEY, "c", kind="int", watermark=watermark, last_run=run)


def history(run, index=0):
    return {"run_id": run, "window_index": index, "stream": "s", "started_at": "x", "finished_at": "y",
            "mode": "incremental", "outcome": "committed"}


def quarantined(fingerprint, run):
    return {"stream": "s", "reason": "late", "detail": None, "source": "x", "record_no": 1, "key": "3",
            "cursor": "30", "cursor_value": 30, "record": "{}", "fingerprint": fingerprint, "run": run}


def stored_tables(url: str) -> list:
    """Every table the target's storage holds (read past the target, so nothing is made)."""
    kind = url.split(":", 1)[0]
    if kind == "sqlite":
        import sqlite3
        path = url.split("://", 1)[1][1:]
        con = sqlite3.connect(path)
        try:
            return [r[0] for r in con.execute("SELECT name FROM sqlite_master")]
        finally:
            con.close()
    if kind == "duckdb":
        import os

        import duckdb
        path = url.split("://", 1)[1][1:]
        if not os.path.exists(path):
            return []
        con = duckdb.connect(path)
        try:
            return [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        finally:
            con.close()
    if kind == "postgresql":
        import psycopg

        from .dbutil import PG_URL
        schema = url.rsplit("schema=", 1)[1]
        with psycopg.connect(PG_URL, autocommit=True) as con:
            return [r[0] for r in con.execute("SELECT relname FROM pg_class c JOIN pg_namespace n"
                                              " ON n.oid = c.relnamespace WHERE nspname = %s", (schema,))]
    import os
    path = url.split("://", 1)[1]
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


@pytest.fixture
def target(target_url):
    t = open_target(target=target_url)
    assert isinstance(t, Target)
    with t:
        yield t


def test_reads_of_a_fresh_target_make_nothing(target, target_url):
    ledger = target.ledger
    assert ledger.states() == [] and ledger.states("s") == []
    assert ledger.history() == [] and ledger.history("s", 5) == []
    assert ledger.quarantine() == [] and ledger.quarantine("s", "late", 5) == []
    assert ledger.files("s") == {}
    assert ledger.facts("s") == {"last_run": [], "last_success_at": None, "quarantined": 0}
    assert ledger.verified("s") is None and ledger.verifies() == {}
    assert target.table("tbl") is None
    target.__exit__(None, None, None)
    assert stored_tables(target_url) == []


def test_another_connection_sees_only_what_is_committed(target, target_url):
    """Two opened targets on one store, as two processes would be: each step's writes are seen
    by the other only once they commit, and a failed transaction leaves nothing."""
    t = target
    with open_target(target=target_url) as other, t.lock("s", 5):
        # 1. a transaction sees its own writes; nobody else does before the commit
        with t.begin("s", "tbl", KEY) as tx:
            run = tx.run_id
            assert t.table("tbl") is None
            tx.evolve(COLUMNS, ("c", "int"))
            tx.write(rows([1, 2], ["a", "b"], [10, 10], run), mode="fresh")
            assert held(tx, 1, 2, 3) == [(True, 10), (True, 10), (False, 0)]
            assert tx.count() == 2
            tx.record(State(state(10, run)), History(history(run)))
            assert other.ledger.states("s") == []
        assert other.ledger.states("s")[0].watermark == 10
        assert [h["run_id"] for h in other.ledger.history("s")] == [run]
        assert set(other.table("tbl").columns) >= {"k", "v", "c"}
        # 2. the guarded upsert never replaces a newer cursor; a newer one wins; a new column
        with t.begin("s", "tbl", KEY) as tx:
            run2 = tx.run_id
            assert run2 > run
            tx.write(rows([1], ["older"], [5], run2))
            tx.write(rows([2], ["newer"], [20], run2))
            tx.evolve({**COLUMNS, "extra": "integer"}, ("c", "int"))
            assert tx.delete(keys(1)) == 1
            assert held(tx, 1, 2) == [(False, 0), (True, 20)]
            tx.record(State(state(20, run2)))
        with other.begin("s", "tbl", KEY, discard=True) as tx:
            assert held(tx, 1, 2) == [(False, 0), (True, 20)]
        with open_target(target=target_url) as fresh:  # (a target may cache its columns for the run)
            assert "extra" in fresh.table("tbl").columns
        # 3. a transaction that raises leaves nothing
        with pytest.raises(RuntimeError):
            with t.begin("s", "tbl", KEY) as tx:
                tx.write(rows([3], ["c"], [30], tx.run_id))
                tx.record(State(state(30, None)), Quarantined([quarantined("f", 99)]))
                raise RuntimeError("boom")
        assert other.ledger.states("s")[0].watermark == 20 and other.table("tbl", count=True).rows == 1
        assert other.ledger.quarantine("s") == []
        # 4. prune deletes exactly the unseen keys
        with t.begin("s", "tbl", KEY) as tx:
            tx.write(rows([4, 5], ["d", "e"], [40, 40], tx.run_id))
            tx.seen(keys(4, 5))
            assert tx.prune() == 1  # key 2
        with other.begin("s", "tbl", KEY, discard=True) as tx:
            assert held(tx, 2, 4, 5) == [(False, 0), (True, 40), (True, 40)]
        # 5. the list of states, and forgetting a stream
        assert [s.stream for s in other.ledger.states()] == ["s"]
        with t.begin("s") as tx:
            tx.record(Dropped())
        assert other.ledger.states("s") == []


def test_discard_and_an_error_leave_nothing(target):
    with target.lock("s", 5):
        with target.begin("s", "tbl", KEY, discard=True) as tx:
            tx.evolve(COLUMNS, ("c", "int"))
            assert tx.write(rows([1, 2], ["a", "b"], [10, 10], tx.run_id), mode="fresh") in (2, None)
            tx.record(State(state(10, tx.run_id)), History(history(tx.run_id)), Quarantined([quarantined("f", tx.run_id)]))
            assert tx.count() == 2
        assert target.table("tbl") is None
        with pytest.raises(RuntimeError):
            with target.begin("s", "tbl", KEY) as tx:
                tx.evolve(COLUMNS, ("c", "int"))
                tx.write(rows([1], ["a"], [10], tx.run_id))
                tx.record(State(state(10, tx.run_id)), History(history(tx.run_id)),
                          Quarantined([quarantined("f", tx.run_id)]))
                raise RuntimeError("boom")
        assert target.table("tbl") is None
        ledger = target.ledger
        assert ledger.states() == []
        assert ledger.quarantine("s") == []
        if target.capabilities.meta_atomic:  # (otherwise written first, counted once the data commits)
            assert ledger.history("s") == []


def test_a_transaction_sees_its_own_writes_and_the_guard_holds(target):
    with target.lock("s", 5):
        with target.begin("s", "tbl", KEY) as tx:
            run = tx.run_id
            tx.evolve(COLUMNS, ("c", "int"))
            tx.write(rows([1, 2], ["a", "b"], [10, 10], run), mode="fresh")
            assert held(tx, 1, 2, 3) == [(True, 10), (True, 10), (False, 0)]
            assert held(tx, 1, 2, 3, cursors=[10, 5, 7]) == [(True, 10), (True, 10), (False, 0)]
            assert tx.count() == 2
            tx.record(State(state(10, run)), History(history(run)))
        info = target.table("tbl", count=True)
        assert set(info.columns) >= {"k", "v", "c"} and not set(info.columns) & {CURSOR_COL, RUN_COL}
        assert info.has_rows and info.rows == 2
        assert target.ledger.states("s")[0].watermark == 10
        assert [h["run_id"] for h in target.ledger.history("s")] == [run]
        with target.begin("s", "tbl", KEY) as tx:
            run2 = tx.run_id
            assert run2 > run
            tx.write(rows([1], ["older"], [5], run2))      # never replaces a newer cursor
            tx.write(rows([2], ["newer"], [20], run2))     # a newer one wins
            assert held(tx, 2) == [(True, 20)]
            tx.record(History(history(run2)))
        # The guard holds by the commit (Delta applies it in the MERGE; the loader never stages a
        # row that loses it, so within a transaction only the winners are asked about).
        with target.begin("s", "tbl", KEY, discard=True) as tx:
            assert held(tx, 1, 2) == [(True, 10), (True, 20)]
            assert held(tx, 1, 2, cursors=[10, 20]) == [(True, 10), (True, 20)]
            assert runs(tx, 1, 2) == [run, run2]
        with target.begin("s", "tbl", KEY, run_id=run2) as tx:
            tx.evolve({**COLUMNS, "extra": "integer"}, ("c", "int"))
        assert "extra" in target.table("tbl").columns
        # begin(run_id=N) reuses N (later --window slices of one run)
        with target.begin("s", "tbl", KEY, run_id=run2) as tx:
            assert tx.run_id == run2
            tx.write(rows([3], ["c"], [30], tx.run_id))
            tx.record(History(history(run2, 1)))
        assert [(h["run_id"], h["window_index"]) for h in target.ledger.history("s")] == [(run, 0), (run2, 0), (run2, 1)]


def test_refresh_replaces_only_differing_content(target):
    with target.lock("s", 5):
        with target.begin("s", "tbl", KEY) as tx:
            run = tx.run_id
            tx.evolve(COLUMNS, ("c", "int"))
            tx.write(rows([1, 2], ["a", "b"], [10, 10], run), mode="fresh")
            tx.record(History(history(run)))  # (a run id is used once it is in the history)
        with target.begin("s", "tbl", KEY) as tx:
            run2 = tx.run_id
            assert run2 > run
            tx.write(rows([1, 2], ["a", "changed"], [10, 10], run2))  # a plain upsert leaves both
            tx.record(History(history(run2)))
        with target.begin("s", "tbl", KEY, discard=True) as tx:
            assert runs(tx, 1, 2) == [run, run]
        with target.begin("s", "tbl", KEY) as tx:
            run3 = tx.run_id
            written = tx.write(rows([1, 2], ["a", "changed"], [10, 10], run3), mode="refresh")
            assert written in (1, None)
            assert runs(tx, 1, 2) == [run, run3]


def test_delete_seen_prune_count(target):
    with target.lock("s", 5):
        with target.begin("s", "tbl", KEY) as tx:
            tx.evolve(COLUMNS, ("c", "int"))
            tx.write(rows([1, 2, 3, 4, 5], list("abcde"), [10] * 5, tx.run_id), mode="fresh")
        with target.begin("s", "tbl", KEY) as tx:
            assert tx.delete(keys(1)) == 1
            assert tx.count() == 4
            tx.seen(keys(2, 3))
            tx.write(rows([6], ["f"], [10], tx.run_id))
            tx.seen(keys(6))
            assert tx.prune() == 2  # keys 4 and 5
            assert tx.count() == 3
        assert held_committed(target, 1, 2, 3, 4, 5, 6) == [False, True, True, False, False, True]
        with target.begin("s", "tbl", KEY) as tx:  # a prune that saw nothing empties the table
            assert tx.prune() == 3 and tx.count() == 0
        assert target.table("tbl", count=True).rows == 0


def held_committed(target, *ks):
    with target.begin("s", "tbl", KEY, discard=True) as tx:
        return [bool(e) for e in tx.held(keys(*ks)).exists]


def test_released_before_quarantined_files_and_drop(target):
    with target.lock("s", 5):
        with target.begin("s", "tbl", KEY) as tx:
            tx.evolve(COLUMNS, ("c", "int"))
            tx.write(rows([1], ["a"], [10], tx.run_id))
            tx.record(State(state(10, tx.run_id)), Quarantined([quarantined("f", tx.run_id)]),
                      FilesRead([FileEntry("a.csv", 10, 1), FileEntry("b.csv", 20, 2, "e")]))
        (old,) = target.ledger.quarantine("s")
        assert target.ledger.files("s") == {"a.csv": (10, 1, None), "b.csv": (20, 2, "e")}
        assert target.ledger.facts("s")["quarantined"] == 1
        with target.begin("s", "tbl", KEY) as tx:  # a replay: the same record quarantined again
            tx.record(Quarantined([quarantined("f", tx.run_id)]), Released([old["id"]]), FilesGone(["a.csv"]))
        (new,) = target.ledger.quarantine("s")
        assert new["seen"] == 1  # one row: released, then quarantined again (its id may be the same)
        assert target.ledger.files("s") == {"b.csv": (20, 2, "e")}
        with target.begin("s") as tx:
            tx.record(Dropped("tbl"))
        assert target.table("tbl") is None
        ledger = target.ledger
        assert (ledger.states("s"), ledger.history("s"), ledger.quarantine("s"), ledger.files("s")) == ([], [], [], {})



def test_verified_keeps_the_latest_per_stream_beside_the_runs_and_drop_forgets_it(target):
    doc = {"verified_at": "2025-01-01T00:00:00+00:00", "outcome": "equal", "keys": {"missing": 0}}
    with target.lock("s", 5):
        with target.begin("s", "tbl", KEY) as tx:
            tx.evolve(COLUMNS, ("c", "int"))
            tx.write(rows([1], ["a"], [10], tx.run_id))
            tx.record(State(state(10, tx.run_id)), History(history(tx.run_id)))
    with target.begin("s", "tbl", KEY, discard=True) as tx:  # a discarded one records nothing
        tx.record(Verified("s", doc))
    assert target.ledger.verified("s") is None
    with target.begin("s", "tbl", KEY) as tx:  # no lock needed: it is its own small write
        tx.record(Verified("s", doc))
    with target.begin("s", "tbl", KEY) as tx:
        tx.record(Verified("s", dict(doc, outcome="differs", verified_at="2025-01-02T00:00:00+00:00")))
    with target.begin("t") as tx:
        tx.record(Verified("t", doc))
    assert target.ledger.verified("s")["outcome"] == "differs"  # the latest replaces the one before
    assert target.ledger.verifies() == {"s": target.ledger.verified("s"), "t": doc}
    with target.lock("s", 5):  # the stream's state, history and data are untouched by it
        assert target.ledger.states("s")[0].watermark == 10 and len(target.ledger.history("s")) == 1
        with target.begin("s", "tbl", KEY) as tx:
            tx.write(rows([2], ["b"], [20], tx.run_id))
            tx.record(State(state(20, tx.run_id)))
        assert target.ledger.states("s")[0].watermark == 20 and target.table("tbl", count=True).rows == 2
    with target.begin("t") as tx:
        tx.record(Verified("t", None))  # forgotten
    assert target.ledger.verifies().keys() == {"s"}
    with target.lock("s", 5), target.begin("s") as tx:
        tx.record(Dropped())
    assert target.ledger.verified("s") is None and target.ledger.verifies() == {}


TRY_LOCK = """
import sys
from hiwater.errors import LockTimeout
from hiwater.targets import open_target
with open_target(target=sys.argv[1]) as t:
    try:
        with t.lock("s", 0.2):
            print("held")
    except LockTimeout:
        print("timeout")
"""


def test_the_lock_as_the_capabilities_say(target, target_url):
    """Another process (a file lock is per process) asks for the stream while this one holds it."""
    import subprocess
    import sys
    with target.lock("s", 5):
        out = subprocess.run([sys.executable, "-c", TRY_LOCK, target_url], capture_output=True, text=True,
                             timeout=120)
    assert out.returncode == 0, out.stderr
    # session: held for the run; optimistic: nothing is held (the later of two commits fails)
    assert out.stdout.strip() == {"session": "timeout", "optimistic": "held"}[target.capabilities.lock]

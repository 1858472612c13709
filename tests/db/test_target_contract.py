"""The Target contract, played directly against every target with no loader in between
(docs/architecture.md): a target that passes this is one the loader can drive. A new target
gets the whole suite by adding its fresh-URL factory to ``tests/db/conftest.py``."""

from __future__ import annotations

import pyarrow as pa
import pytest

from hiwater.state import StreamState
from hiwater.targets import open_target
from hiwater.targets.base import CURSOR_COL, RUN_COL

KEY = ("k",)


def rows(ks, vs, cursors, run):
    return pa.table({"k": pa.array(ks, pa.int64()), "v": pa.array(vs, pa.string()),
                     "c": pa.array(cursors, pa.int64()), CURSOR_COL: pa.array(cursors, pa.int64()),
                     RUN_COL: pa.array([run] * len(ks), pa.int64())})


def opened(url):
    t = open_target(target=url)
    t.connect()
    return t


def held(t, keys):
    lk = t.lookup("tbl", KEY, keys)
    return [(bool(e), int(c)) for e, c in zip(lk.exists, lk.cursor)]


def test_the_target_contract(target_url):
    t, other = opened(target_url), opened(target_url)
    try:
        with t.stream_lock("s", 5):
            with t.transaction():
                t.ensure_meta()
            # 1. a transaction sees its own writes; nobody else does before the commit
            with t.transaction():
                run = t.next_run_id()
                t.set_cursor("c", "int")
                assert t.table_columns("tbl") is None
                t.create_table("tbl", {"k": "integer", "v": "text", "c": "integer"}, KEY)
                t.upsert_arrow("tbl", rows([1, 2], ["a", "b"], [10, 10], run), KEY, fresh=True)
                assert held(t, [1, 2, 3]) == [(True, 10), (True, 10), (False, 0)]
                assert t.count_rows("tbl") == 2
                t.write_state(StreamState("s", "tbl", KEY, "c", kind="int", watermark=10, last_run=run))
                t.write_history({"run_id": run, "window_index": 0, "stream": "s", "started_at": "x",
                                 "finished_at": "y", "mode": "incremental", "outcome": "committed"})
                assert other.read_state("s") is None
            assert other.read_state("s").watermark == 10
            assert [h["run_id"] for h in other.read_history("s")] == [run]
            assert set(other.table_columns("tbl")) >= {"k", "v", "c"}
            # 2. the guarded upsert never replaces a newer cursor; a newer one wins; a new column
            with t.transaction():
                run2 = t.next_run_id()
                assert run2 > run
                t.upsert_arrow("tbl", rows([1], ["older"], [5], run2), KEY)
                t.upsert_arrow("tbl", rows([2], ["newer"], [20], run2), KEY)
                t.add_columns("tbl", {"extra": "integer"})
                assert t.delete_keys("tbl", KEY, [1]) == 1
                assert held(t, [1, 2]) == [(False, 0), (True, 20)]
                t.write_state(StreamState("s", "tbl", KEY, "c", kind="int", watermark=20, last_run=run2))
            assert held(other, [1, 2]) == [(False, 0), (True, 20)]
            fresh = opened(target_url)  # (a target may cache its columns for the run)
            assert "extra" in fresh.table_columns("tbl")
            fresh.close()
            # 3. a transaction that raises leaves nothing
            with pytest.raises(RuntimeError):
                with t.transaction():
                    t.upsert_arrow("tbl", rows([3], ["c"], [30], t.next_run_id()), KEY)
                    t.write_state(StreamState("s", "tbl", KEY, "c", kind="int", watermark=30))
                    t.write_quarantine([{"stream": "s", "reason": "late", "detail": None, "source": "x",
                                         "record_no": 1, "key": "3", "cursor": "30", "cursor_value": 30,
                                         "record": "{}", "fingerprint": "f", "run": 99}])
                    raise RuntimeError("boom")
            assert other.read_state("s").watermark == 20 and other.count_rows("tbl") == 1
            assert other.read_quarantine("s") == []
            # 4. prune deletes exactly the unseen keys
            with t.transaction():
                run3 = t.next_run_id()
                t.upsert_arrow("tbl", rows([4, 5], ["d", "e"], [40, 40], run3), KEY)
                t.prune_begin(KEY)
                t.prune_seen(KEY, [4, 5])
                assert t.prune_finish("tbl", KEY) == 1  # key 2
            assert held(other, [2, 4, 5]) == [(False, 0), (True, 40), (True, 40)]
            # 5. state list, delete, and forgetting a stream
            assert [s.stream for s in other.list_states()] == ["s"]
            with t.transaction():
                t.delete_state("s")
            assert other.read_state("s") is None
    finally:
        t.close()
        other.close()

"""The decision logic against a tiny reference model written straight from SPEC §3.

Unit tests pin the pure step (:mod:`hiwater.decide`); the property tests drive the
real loader (real SQLite files) through random sequences of runs and compare the
target, the watermark and the counts with the model after every run.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hiwater
from hiwater import decide as D

BASE = dt.datetime(2025, 1, 15)
NOW_MIN = 24 * 60            # "now" is one day after BASE
FUTURE_MIN = 5 * 24 * 60     # far past now + 1d


def iso(minute: int) -> str:
    return (BASE + dt.timedelta(minutes=minute)).isoformat()


# --- the pure step, pinned ------------------------------------------------------------------

def test_place_inclusive_and_exclusive_boundaries():
    cur = np.array([9, 10, 11, 100])
    valid = np.array([True, True, True, True])
    inc = D.place(cur, valid, D.Window(lo=10, future_limit=50))
    exc = D.place(cur, valid, D.Window(lo=10, lo_inclusive=False, future_limit=50))
    assert inc.tolist() == [D.Place.BELOW, D.Place.IN, D.Place.IN, D.Place.FUTURE]
    assert exc.tolist() == [D.Place.BELOW, D.Place.BELOW, D.Place.IN, D.Place.FUTURE]


def test_winners_newest_cursor_then_later_position():
    groups = np.array([0, 0, 0, 1, 1])
    cursor = np.array([5, 9, 9, 3, 1])
    assert D.winners(groups, cursor, np.ones(5, bool)).tolist() == [False, False, True, True, False]


def test_decide_never_regresses_and_flags_late():
    places = np.array([D.Place.IN, D.Place.IN, D.Place.BELOW, D.Place.BELOW])
    cursor = np.array([10, 10, 3, 3])
    groups = np.arange(4)
    target = D.Target(exists=np.array([True, False, True, False]), cursor=np.array([12, 0, 3, 0]),
                      this_run=np.zeros(4, bool))
    v, late = D.decide(places, cursor, groups, target, D.Window(lo=5))
    assert v.tolist() == [D.Verdict.UNCHANGED, D.Verdict.INSERT, D.Verdict.UNCHANGED, D.Verdict.LATE]
    v, late = D.decide(places, cursor, groups, target, D.Window(lo=5, on_late="load"))
    assert v.tolist()[3] == D.Verdict.INSERT and late.tolist() == [False, False, False, True]


# --- the reference model ----------------------------------------------------------------------

class Model:
    """SPEC §3, record by record, with plain dicts: what the target must hold."""

    def __init__(self):
        self.rows: dict = {}        # key -> (cursor_minute, name)
        self.wm: int | None = None

    def run(self, records, boundary, lookback, on_late):
        lo = None if self.wm is None else self.wm - lookback
        c = dict(inserted=0, updated=0, unchanged=0, late=0, late_applied=0, future=0,
                 below_window=0, rejected=0)
        places = []
        for r in records:
            if r["id"] is None or r["m"] is None:
                places.append("invalid")
            elif r["m"] > NOW_MIN + 24 * 60:
                places.append("future")
            elif lo is None or (r["m"] >= lo if boundary == "inclusive" else r["m"] > lo):
                places.append("in")
            else:
                places.append("below")
        examined = [i for i, p in enumerate(places) if p == "in" or (p == "below" and on_late != "skip")]
        best: dict = {}
        for i in examined:
            k = records[i]["id"]
            if k not in best or (records[i]["m"], i) >= (records[best[k]]["m"], best[k]):
                best[k] = i
        candidate = None
        for i, p in enumerate(places):
            r = records[i]
            if p == "invalid":
                c["rejected"] += 1
            elif p == "future":
                c["future"] += 1
            elif p == "below" and on_late == "skip":
                c["below_window"] += 1
            elif best[r["id"]] != i:
                c["unchanged"] += 1
            else:
                held = self.rows.get(r["id"])
                if held is not None and held[0] >= r["m"]:
                    c["unchanged"] += 1
                elif p == "below" and on_late == "detect":
                    c["late"] += 1
                    continue
                else:
                    c["inserted" if held is None else "updated"] += 1
                    c["late_applied"] += p == "below"
                    self.rows[r["id"]] = (r["m"], r["name"])
                if p == "in":
                    candidate = r["m"] if candidate is None else max(candidate, r["m"])
        if candidate is not None:
            self.wm = candidate if self.wm is None else max(self.wm, candidate)
        return c


records_st = st.lists(
    st.fixed_dictionaries({
        # mostly valid, with few keys and few cursor values, so ties and repeats are common
        "id": st.sampled_from([0, 1, 2, 3, 4, 5, 6, None]),
        "m": st.sampled_from([*range(0, 40, 5), None, FUTURE_MIN]),
        "name": st.sampled_from(["a", "b", "c"]),
    }),
    max_size=12,
)
run_st = st.tuples(records_st, st.sampled_from(["inclusive", "exclusive"]), st.sampled_from([0, 5, 10]),
                   st.sampled_from(["detect", "skip", "load"]))


def _write(path: Path, records) -> None:
    with path.open("w") as f:
        for r in records:
            f.write(json.dumps({"id": r["id"], "name": r["name"],
                                "modified_at": None if r["m"] is None else iso(r["m"])}) + "\n")


def _target(db: Path) -> dict:
    con = sqlite3.connect(db)
    try:
        return {k: (v, n) for k, v, n in con.execute("SELECT id, modified_at, name FROM events")}
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()


def _play(runs, batch_size):
    model = Model()
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "t.db"
        for n, (records, boundary, lookback, on_late) in enumerate(runs):
            src = Path(d) / f"run{n}.jsonl"
            _write(src, records)
            # (a run of invalid records only fails unless --max-rejected 100%: the model counts its verdicts)
            s = hiwater.load(str(src), db=str(db), table="events", boundary=boundary,
                             lookback=f"{lookback}m", on_late=on_late, now=iso(NOW_MIN) + "Z",
                             batch_size=batch_size, max_rejected="100%")
            expected = model.run(records, boundary, lookback, on_late)
            got = {k: (iso(m), name) for k, (m, name) in model.rows.items()}
            assert _target(db) == got, f"run {n}"
            assert s.new_watermark == (None if model.wm is None else iso(model.wm)), f"run {n}"
            c = s.counts
            assert c.source_records == len(records) == s.loaded + s.skipped + c.rejected
            assert s.loaded == c.inserted + c.updated
            assert s.skipped == c.unchanged + c.late + c.future + c.below_window
            yield n, expected, c


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(run_st, min_size=1, max_size=4))
def test_loader_matches_the_model_run_after_run(runs):
    for _, expected, c in _play(runs, batch_size=65_536):
        got = {name: getattr(c, name) for name in expected}
        assert got == expected


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(run_st, min_size=1, max_size=4), st.integers(1, 4))
def test_small_batches_reach_the_same_target_and_watermark(runs, batch_size):
    # ... and the same counts: a key's change is counted once whatever the batches (issue 21, item 11)
    for _, expected, c in _play(runs, batch_size=batch_size):
        assert {name: getattr(c, name) for name in expected} == expected

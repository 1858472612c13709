"""The decision on nanosecond cursors against a tiny reference model (Python ints of nanoseconds).

Like tests/test_decide_model.py, but every cursor is ``2025-01-15T10:00:00`` plus a few
nanoseconds, written with 9 fractional digits, so versions and windows differ by single
nanoseconds (and by the microsecond a ``--lookback 1us`` spans). The real loader runs on a real
SQLite file; after every run the target, the watermark and the counts must be the model's.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hiwater

NOW = "2025-06-01T00:00:00Z"
FUTURE = 10**18  # a cursor past now + 1d (stands for 2057-…)


def iso(n: int) -> str:
    """10:00:00 plus ``n`` nanoseconds (n < 10**6), or a far-future instant."""
    if n == FUTURE:
        return "2057-01-15T10:00:00.000000001"
    return f"2025-01-15T10:00:00.{n:09d}"


class Model:
    """SPEC §3, record by record: keys -> (cursor ns, name); the watermark in ns."""

    def __init__(self):
        self.rows: dict = {}
        self.wm: int | None = None

    def run(self, records, boundary, lookback_ns, on_late):
        lo = None if self.wm is None else self.wm - lookback_ns
        c = dict(inserted=0, updated=0, unchanged=0, late=0, late_applied=0, future=0, below_window=0, rejected=0)
        places = []
        for r in records:
            if r["id"] is None or r["n"] is None:
                places.append("invalid")
            elif r["n"] == FUTURE:
                places.append("future")
            elif lo is None or (r["n"] >= lo if boundary == "inclusive" else r["n"] > lo):
                places.append("in")
            else:
                places.append("below")
        examined = [i for i, p in enumerate(places) if p == "in" or (p == "below" and on_late != "skip")]
        best: dict = {}
        for i in examined:
            k = records[i]["id"]
            if k not in best or (records[i]["n"], i) >= (records[best[k]]["n"], best[k]):
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
                if held is not None and held[0] >= r["n"]:
                    c["unchanged"] += 1
                elif p == "below" and on_late == "detect":
                    c["late"] += 1
                    continue
                else:
                    c["inserted" if held is None else "updated"] += 1
                    c["late_applied"] += p == "below"
                    self.rows[r["id"]] = (r["n"], r["name"])
                if p == "in":
                    candidate = r["n"] if candidate is None else max(candidate, r["n"])
        if candidate is not None:
            self.wm = candidate if self.wm is None else max(self.wm, candidate)
        return c


# Cursors a nanosecond apart, and across a microsecond boundary (1000 ns) a lookback of 1us spans.
CURSORS = [0, 1, 2, 999, 1000, 1001, 1999, 2000, 2001, 3000]
records_st = st.lists(
    st.fixed_dictionaries({
        "id": st.sampled_from([0, 1, 2, 3, None]),
        "n": st.sampled_from([*CURSORS, None, FUTURE]),
        "name": st.sampled_from(["a", "b"]),
    }),
    max_size=10,
)
run_st = st.tuples(records_st, st.sampled_from(["inclusive", "exclusive"]), st.sampled_from([0, 1]),
                   st.sampled_from(["detect", "skip", "load"]))


def _target(db: Path) -> dict:
    con = sqlite3.connect(db)
    try:
        return {k: (v, n) for k, v, n in con.execute("SELECT id, modified_at, name FROM events")}
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(run_st, min_size=1, max_size=4), st.sampled_from([1, 3, 65_536]))
def test_nanosecond_decisions_match_the_model_run_after_run(runs, batch_size):
    model = Model()
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "t.db"
        # The stream's first run must see a nanosecond cursor to take the kind: a first record
        # at exactly 10:00:00.000000000 (9 digits) under its own key, loaded before the runs.
        seed = Path(d) / "seed.jsonl"
        seed.write_text(json.dumps({"id": -1, "name": "s", "modified_at": iso(0)}) + "\n")
        hiwater.load(str(seed), db=str(db), table="events", now=NOW)
        model.run([{"id": -1, "n": 0, "name": "s"}], "inclusive", 0, "detect")
        for i, (records, boundary, lookback_us, on_late) in enumerate(runs):
            src = Path(d) / f"run{i}.jsonl"
            src.write_text("".join(json.dumps({"id": r["id"], "name": r["name"],
                                               "modified_at": None if r["n"] is None else iso(r["n"])}) + "\n"
                                   for r in records))
            s = hiwater.load(str(src), db=str(db), table="events", boundary=boundary, lookback=f"{lookback_us}us",
                             on_late=on_late, now=NOW, batch_size=batch_size, max_rejected="100%")
            expected = model.run(records, boundary, lookback_us * 1000, on_late)
            assert {name: getattr(s.counts, name) for name in expected} == expected, f"run {i}"
            assert _target(db) == {k: (iso(n), name) for k, (n, name) in model.rows.items()}, f"run {i}"
            assert s.new_watermark == iso(model.wm), f"run {i}"
        assert hiwater.state_show(db=str(db))[0]["kind"] == "timestamp_ns"

"""1. Fault-point sweep: a failure at every database operation of representative runs.

Four runs cover every kind of statement a load issues: a first ``--window`` load that
creates the meta tables and the data table, an incremental ``--window`` load (updates,
a tie at the watermark, a late record, a new column, invalid and future records), a
single-transaction load with ``--on-late load``, deletes and small batches, and a
``--full-load --prune``. Each run is traced once to number its operations; then, for
every operation *i*, the run is repeated from the same starting state with

- ``raise``:      an I/O error instead of operation *i*;
- ``kill``:       SIGKILL just before operation *i*;
- ``kill-after``: SIGKILL just after it (after a ``COMMIT``: committed, unacknowledged);
- ``torn-<b>``:   for each ``COMMIT``: the WAL cut inside the frames the commit wrote
                  (every frame boundary, mid-header, mid-page, all but the last byte),
                  then SIGKILL: the file state of a kill *inside* the commit.

After the fault the target must be consistent (integrity, history chain, state = last
committed window, the watermark at a committed slice boundary, no row the watermark
has passed missing); after one rerun it must equal the uninterrupted run's.
"""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest

from .harness import (NOW, check_after_fault, check_consistent, copy_db, env_int, one_error_line, run, same_data,
                      snapshot)

pytestmark = pytest.mark.reliability
# WAL cut points per COMMIT: CI takes 3 (start, middle, last byte); the full run every frame
# boundary, mid-header and mid-page (0 = all).
TORN_CUTS = env_int("HIWATER_SWEEP_TORN", 3, 0)
STRIDE = env_int("HIWATER_SWEEP_STRIDE", 2, 1)  # CI size: every COMMIT and every second other operation


def _t(minute: int, day: int = 15) -> str:
    return f"2025-01-{day:02d}T{minute // 60:02d}:{minute % 60:02d}:00"


def _write(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def scenario(d: Path) -> list[tuple[str, list]]:
    """The four runs: (name, argv after ``load``)."""
    a = [{"id": i, "name": f"a{i}", "amount": i * 10, "modified_at": _t(360 + 20 * i)} for i in range(1, 25)]
    a += [{"id": 25, "name": "bad", "modified_at": "garbage"},
          {"id": 26, "name": "clock", "modified_at": "2030-01-01T00:00:00"},
          {"id": None, "name": "nokey", "modified_at": _t(400)}]
    b = [{"id": 3, "name": "a3-late", "amount": 1, "modified_at": _t(540)},         # late: below the window
         {"id": 24, "name": "a24", "amount": 240, "modified_at": _t(360 + 480)},    # unchanged, at the watermark
         {"id": 20, "name": "a20-v2", "amount": 2, "modified_at": _t(850)}]          # update
    b += [{"id": i, "name": f"b{i}", "amount": i, "modified_at": _t(840 + 15 * (i - 30))} for i in range(30, 42)]
    b += [{"id": 42, "name": "tie", "modified_at": _t(840), "color": "red"},         # tie at the watermark, new column
          {"id": 43, "name": "bad", "amount": "lots", "modified_at": _t(900)},        # value the column cannot hold
          {"id": 26, "name": "clock", "modified_at": "2030-01-01T00:00:00"}]
    c = [{"id": 5, "name": "a5-late", "amount": 5, "modified_at": _t(500)},          # late, applied
         {"id": 31, "name": "b31", "amount": 31, "modified_at": _t(1200), "gone": True},  # delete
         {"id": 32, "name": "b32-v2", "amount": 32, "modified_at": _t(1210)},
         {"id": 50, "name": "c50", "amount": 50, "modified_at": _t(1220), "color": "blue"},
         {"id": 51, "name": "c51", "amount": 51, "modified_at": _t(1220)},
         {"id": 51, "name": "c51-later", "amount": 52, "modified_at": _t(1220)},  # tie: the later one wins
         {"id": 52, "name": "c52", "amount": 52.5, "modified_at": _t(1230)}]       # rejected: not an integer
    full = [{"id": i, "name": f"f{i}", "amount": i, "modified_at": _t(600 + i)} for i in range(1, 20)]
    common = ["--db", d / "t.db", "--table", "events", "--now", NOW, "--details"]
    return [
        ("first-window", ["load", "--input", _write(d / "a.jsonl", a), "--window", "2h", *common]),
        ("incremental-window", ["load", "--input", _write(d / "b.jsonl", b), "--window", "1h", *common]),
        ("single-late-delete", ["load", "--input", _write(d / "c.jsonl", c), "--on-late", "load",
                                "--delete-field", "gone", "--batch-size", "3", *common]),
        ("full-prune", ["load", "--input", _write(d / "f.jsonl", full), "--full-load", "--prune", *common]),
    ]


def _frame_points(appended: int, frame: int) -> list[int]:
    pts = set()
    for start in range(0, appended, frame):
        pts.update({start, start + 12, start + 24 + frame // 2})
    pts.add(appended - 1)
    return sorted(p for p in pts if 0 <= p < appended)


class Reference:
    """The uninterrupted runs: the state before and after each, and each run's operations."""

    def __init__(self, d: Path):
        self.dir = d
        self.runs = scenario(d)
        self.before: list[Path] = []
        self.after: list = []
        self.ops: list[list[str]] = []
        db = d / "t.db"
        for i, (name, argv) in enumerate(self.runs):
            pre = d / f"ref{i}.db"
            copy_db(db, pre)
            self.before.append(pre)
            trace = d / f"trace{i}"
            done = run(argv, d, {"HIWATER_FAULT_TRACE": str(trace)})
            assert done.code == 0, done.err
            self.after.append(snapshot(db))
            self.ops.append(trace.read_text().splitlines())
        con = sqlite3.connect(db)
        self.frame = con.execute("PRAGMA page_size").fetchone()[0] + 24
        con.close()

    def cases(self, run_index: int, actions=("raise", "kill", "kill-after", "torn")) -> list[tuple[int, str]]:
        out = []
        for line in self.ops[run_index]:
            n, *rest = line.split()
            n = int(n)
            for a in actions:
                if a == "torn":
                    if rest[0] == "COMMIT" and rest[-1].startswith("wal+"):
                        pts = _frame_points(int(rest[-1][4:]), self.frame)
                        if TORN_CUTS and len(pts) > TORN_CUTS:  # CI size: spread over the commit
                            pts = [pts[round(j * (len(pts) - 1) / (TORN_CUTS - 1))] for j in range(TORN_CUTS)]
                        out += [(n, f"torn-{b}") for b in pts]
                else:
                    out.append((n, a))
        return out


def run_case(ref: Reference, i: int, n: int, action: str, work: Path, before_commit: dict | None = None):
    name, argv = ref.runs[i]
    db = ref.dir / "t.db"
    copy_db(ref.before[i], db)
    pre = snapshot(db)
    post = ref.after[i]
    done = run(argv, work, {"HIWATER_FAULT_AT": f"{n}:{action}"})
    where = f"{name}: op {n} ({ref.ops[i][n - 1]}) {action}"
    if action == "raise":
        assert done.code == 1, (where, done.code, done.err)
        one_error_line(done)
    else:
        assert done.killed, (where, done.code, done.err)
    mid = snapshot(db)
    # A raised fault leaves at most one history row of the failure (none for a kill); it is
    # written after the rollback, so it never carries data.
    assert len(mid.failed) - len(pre.failed) in ((0, 1) if action == "raise" else (0,)), (where, mid.failed)
    check_after_fault(pre, mid, post, windowed="--window" in argv, where=where)
    if before_commit is not None:
        if action == "kill":
            before_commit[(i, n)] = mid
        elif action.startswith("torn-") and (i, n) in before_commit:
            # a commit cut inside its frames is no commit: the same state as a kill before it
            k = before_commit[(i, n)]
            assert (mid.rows, mid.watermark, len(mid.history), mid.quarantine_set()) == \
                (k.rows, k.watermark, len(k.history), k.quarantine_set()), where
    again = run(argv, work)
    assert again.code == 0, (where, again.err)
    final = snapshot(db)
    check_consistent(final)
    same_data(final, post)


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    return Reference(tmp_path_factory.mktemp("sweep"))


def test_reference_runs_cover_every_kind_of_statement(ref):
    words = {" ".join(line.split()[1:3]) for ops in ref.ops for line in ops}
    for expected in ("BEGIN IMMEDIATE", "COMMIT wal+4120", "INSERT INTO", "CREATE TABLE", "ALTER TABLE",
                     "DELETE FROM", "SELECT"):
        assert any(w.startswith(expected.split(" wal")[0]) for w in words), expected
    assert sum(len(o) for o in ref.ops) > 100


def test_fault_sample_every_run(ref, tmp_path):
    """Default run: a fixed sample of fault points from every run (the sweep is slow)."""
    rnd = random.Random(6)
    n = 0
    for i in range(len(ref.runs)):
        cases = ref.cases(i)
        for n_op, action in rnd.sample(cases, min(len(cases), env_int("HIWATER_SWEEP_SAMPLE", 1, 1))):
            run_case(ref, i, n_op, action, tmp_path)
            n += 1
    assert n >= 4


@pytest.mark.slow
@pytest.mark.parametrize("i", range(4), ids=["first-window", "incremental-window", "single-late-delete",
                                            "full-prune"])
def test_fault_sweep(ref, tmp_path, i):
    cases = [(n, a) for n, a in ref.cases(i)
             if n % STRIDE == i % STRIDE or ref.ops[i][n - 1].split()[1] == "COMMIT"]
    before_commit: dict = {}
    for n_op, action in cases:
        run_case(ref, i, n_op, action, tmp_path, before_commit)
    kinds = {}
    for _, a in cases:
        kinds[a.split("-")[0] if a.startswith("torn") else a] = kinds.get(a.split("-")[0] if a.startswith("torn") else a, 0) + 1
    print(f"\nFIGURES fault-sweep {ref.runs[i][0]}: {len(ref.ops[i])} operations, {len(cases)} fault points {kinds}")

"""1c. Command-level fault sweep (issue 21): a fault at every statement of the admin commands.

``test_fault_sweep.py`` and ``test_fault_sweep_files.py`` fault the statements of loads. Here the
swept command is one a person runs by hand between loads, on a SQLite target holding a stream
loaded from a folder (two runs: a file manifest, a history, a quarantine of invalid, future and
late records):

- ``stream drop events`` (the table kept), ``stream drop events --table``;
- ``stream drop orders`` of a ``--buckets 2`` stream (its buckets forgotten one after another,
  the shared table with the last);
- ``state rewind --stream events --to-run 2``;
- ``quarantine replay --stream events`` (late records applied, the others quarantined again);
- a folder backfill: ``load --input land --until T`` and then the plain ``load`` after it (each
  step swept on its own).

Each command is traced once (``HIWATER_FAULT_TRACE``) to number its statements; then, for a
statement *i* and an action (``raise``: an I/O error instead of it; ``kill``: SIGKILL before it;
``kill-after``: SIGKILL after it), the story is repeated from the same starting target with the
fault. After the fault the target is either the one before the command or the one after it (a
bucketed drop: some buckets forgotten, the rows all there); the command is run again and then a
plain load, and the result is the uninterrupted story's exactly: every table (each row, every
column), every stream's state, the quarantine (each record once) and the file manifest.

Default suite: ``HIWATER_SWEEP_COMMAND_SAMPLE`` (default 1) points per story, drawn with a fixed
seed. ``-m slow``: ``HIWATER_SWEEP_COMMAND_POINTS`` (CI: 8) per story drawn with a fixed seed, or with
``HIWATER_RELIABILITY=full`` every statement of every story under every action (the FIGURES line
reports the counts).
"""

from __future__ import annotations

import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from conftest import write_jsonl

from .harness import NOW, check_consistent, copy_db, env_int, one_error_line, run, snapshot

pytestmark = pytest.mark.reliability
ACTIONS = ("raise", "kill", "kill-after")
SAMPLE = env_int("HIWATER_SWEEP_COMMAND_SAMPLE", 1, 1)
POINTS = env_int("HIWATER_SWEEP_COMMAND_POINTS", 8, 0)  # -m slow: per story (CI 8), 0 = every point


def _t(day: int, hour: int) -> str:
    return f"2025-01-{day:02d}T{hour:02d}:00:00"


def _recs(ids, day: int, tag: str = "v1") -> list[dict]:
    return [{"id": i, "name": f"{tag}-{i}", "amount": i * 3, "modified_at": _t(day, i % 24)} for i in ids]


# --- what a target holds, read back whole ------------------------------------------------------

def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def whole(db: Path) -> dict:
    """Every table's rows (without the run column), every stream's state (without its run and
    time), the quarantine (a list: a record twice shows twice) and the file manifest."""
    out: dict = {"tables": {}, "state": {}, "quarantine": [], "files": []}
    if not db.exists():
        return out
    con = sqlite3.connect(db)
    try:
        names = [n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for n in names:
            if n.startswith("_hiwater_") or n.startswith("sqlite_"):
                continue
            cur = con.execute(f"SELECT * FROM {_q(n)}")
            cols = [c[0] for c in cur.description]
            rows = sorted((tuple((c, v) for c, v in zip(cols, r) if c != "_hiwater_run") for r in cur),
                          key=repr)
            out["tables"][n] = rows
        if "_hiwater_state" in names:
            cur = con.execute("SELECT * FROM _hiwater_state")
            cols = [c[0] for c in cur.description]
            for r in cur:
                d = dict(zip(cols, r))
                out["state"][d["stream"]] = {k: v for k, v in d.items() if k not in ("updated_at", "last_run")}
        if "_hiwater_quarantine" in names:
            out["quarantine"] = sorted(con.execute(
                "SELECT stream, reason, key, fingerprint, record FROM _hiwater_quarantine"), key=repr)
        if "_hiwater_files" in names:
            cur = con.execute("SELECT * FROM _hiwater_files")
            cols = [c[0] for c in cur.description]
            out["files"] = sorted((tuple((c, v) for c, v in zip(cols, r) if c != "run_id") for r in cur), key=repr)
        return out
    finally:
        con.close()


def check_whole(w: dict, db: Path, where: str, chain: bool = True) -> None:
    """Invariants of any committed target: each quarantined record once, each stream's history one
    chain ending at its state (not after a rewind, which starts the chain again lower)."""
    keys = [(s, r, k, f) for s, r, k, f, _ in w["quarantine"]]
    assert len(keys) == len(set(keys)), (where, "a record quarantined twice", keys)
    for stream, st in (w["state"].items() if chain else ()):
        try:
            check_consistent(snapshot(db, st["table_name"] if "table_name" in st else st["table"], stream))
        except AssertionError as exc:
            raise AssertionError(f"{where}: stream {stream}: {exc}") from None


# --- the stories -------------------------------------------------------------------------------

class Story:
    """One swept command: the target and folder before it, the command, the loads after it."""

    def __init__(self, d: Path, name: str, setup, command: list, follow: list[list]):
        self.name, self.dir = name, d
        self.land = d / "land"
        self.db = d / "t.db"
        setup(self)
        self.seed, self.seed_land = d / "seed.db", d / "seed-land"
        copy_db(self.db, self.seed)
        shutil.copytree(self.land, self.seed_land, copy_function=shutil.copy2)
        self.command, self.follow = command, follow
        self.pre = whole(self.db)
        trace = d / "trace"
        done = run(self.argv(command), d, {"HIWATER_FAULT_TRACE": str(trace)})
        assert done.code == 0, (name, done.err)
        self.ops = trace.read_text().splitlines()
        # one number per statement of the process, whatever target object runs it (a replay opens two)
        assert [int(ln.split()[0]) for ln in self.ops] == list(range(1, len(self.ops) + 1)), (name, self.ops)
        self.post = whole(self.db)
        assert self.post != self.pre, name
        for argv in follow:
            done = run(self.argv(argv), d)
            assert done.code == 0, (name, argv, done.err)
        self.final = whole(self.db)
        check_whole(self.final, self.db, name, chain=name != "rewind")

    def argv(self, words: list) -> list:
        return [str(w).replace("{land}", str(self.land)) for w in words] + ["--db", self.db]

    def load(self, *extra) -> None:
        done = run(self.argv(["load", "--input", "{land}", "--table", "events", "--now", NOW, *extra]), self.dir)
        assert done.code == 0, done.err

    def restore(self) -> None:
        copy_db(self.seed, self.db)
        for p in self.land.iterdir():  # the files keep their mtimes (the manifest compares them)
            p.unlink()
        for p in self.seed_land.iterdir():
            shutil.copy2(p, self.land / p.name)

    def points(self) -> list[tuple[int, str]]:
        return [(n, a) for n in range(1, len(self.ops) + 1) for a in ACTIONS]


def _two_runs(s: Story, *, table: str = "events", extra=()) -> None:
    """A folder loaded twice: a quarantine of invalid, future and late records, a manifest."""
    write_jsonl(s.land / "a.jsonl", _recs(range(1, 13), day=10) + [{"id": 90, "name": "bad", "modified_at": "never"}])
    run_ok(s, table, extra)
    write_jsonl(s.land / "b.jsonl", _recs(range(10, 20), day=12, tag="v2")
                + [{"id": 91, "name": "clock", "modified_at": "2030-01-01T00:00:00"},
                   {"id": 95, "name": "late-95", "amount": 0, "modified_at": _t(9, 5)},  # late: below the watermark
                   {"id": 92, "name": "bad2", "amount": "lots", "modified_at": _t(12, 9)}])
    run_ok(s, table, extra)


def run_ok(s: Story, table: str, extra) -> None:
    done = run(s.argv(["load", "--input", "{land}", "--table", table, "--now", NOW, *extra]), s.dir)
    assert done.code == 0, done.err


def _backfill_seed(s: Story) -> None:
    write_jsonl(s.land / "a.jsonl", _recs(range(1, 9), day=10) + _recs(range(30, 36), day=14))
    write_jsonl(s.land / "b.jsonl", _recs(range(40, 46), day=15) + [{"id": 93, "name": "bad", "modified_at": "no"}])


def _backfilled(s: Story) -> None:
    _backfill_seed(s)
    done = run(s.argv(["load", "--input", "{land}", "--table", "events", "--now", NOW, "--until", _t(13, 0)]), s.dir)
    assert done.code == 0, done.err


PLAIN = ["load", "--input", "{land}", "--table", "events", "--now", NOW]
BUCKETS = ["load", "--input", "{land}", "--table", "orders", "--now", NOW, "--buckets", "2"]
STORIES = {
    "drop": (_two_runs, ["stream", "drop", "events"], [PLAIN]),
    "drop-table": (_two_runs, ["stream", "drop", "events", "--table"], [PLAIN]),
    "drop-buckets": (lambda s: _two_runs(s, table="orders", extra=("--buckets", "2")),
                     ["stream", "drop", "orders"], [BUCKETS]),
    "rewind": (_two_runs, ["state", "rewind", "--stream", "events", "--to-run", "2"], [PLAIN]),
    "replay": (_two_runs, ["quarantine", "replay", "--stream", "events", "--now", NOW], [PLAIN]),
    "backfill-until": (_backfill_seed, [*PLAIN, "--until", _t(13, 0)], [PLAIN]),
    "backfill-rest": (_backfilled, PLAIN, [PLAIN]),
}


@pytest.fixture(scope="module")
def stories(tmp_path_factory):
    """The stories, each made when a test first asks for it (a test needs one story only)."""
    made: dict = {}

    def get(name: str) -> Story:
        if name not in made:
            setup, command, follow = STORIES[name]
            made[name] = Story(tmp_path_factory.mktemp(name), name, setup, command, follow)
        return made[name]
    return get


def run_point(s: Story, n: int, action: str, work: Path) -> None:
    s.restore()
    where = f"{s.name}: op {n} ({s.ops[n - 1]}) {action}"
    done = run(s.argv(s.command), work, {"HIWATER_FAULT_AT": f"{n}:{action}"})
    if action == "raise":
        assert done.code in (1, 3), (where, done.code, done.err)  # (3: the target failed)
        one_error_line(done)
    else:
        assert done.killed, (where, done.code, done.err)
    mid = whole(s.db)
    check_whole(mid, s.db, where, chain=s.name != "rewind")
    if s.name == "drop-buckets":  # bucket by bucket: some forgotten, every row still there
        assert mid == s.post or (mid["tables"] == s.pre["tables"] and set(mid["state"]) <= set(s.pre["state"])), where
    elif s.name.startswith("backfill"):  # one transaction: all or nothing (the manifest with the data)
        assert mid in (s.pre, s.post), where
    else:
        assert mid in (s.pre, s.post), where
    again = run(s.argv(s.command), work)
    if again.code != 0:  # it had finished before the fault: a drop finds no stream to drop
        assert mid == s.post and s.name.startswith("drop"), (where, again.code, again.err)
        assert "no stream" in one_error_line(again), (where, again.err)
    for argv in s.follow:
        done = run(s.argv(argv), work)
        assert done.code == 0, (where, argv, done.err)
    got = whole(s.db)
    check_whole(got, s.db, where, chain=s.name != "rewind")
    for part in ("tables", "state", "quarantine", "files"):
        assert got[part] == s.final[part], (where, part, got[part], s.final[part])


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "drop-buckets" else n
                                  for n in STORIES])  # (a bucketed story starts worker processes: ~10 s)
def test_command_fault_sample(stories, tmp_path, name):
    """Default run: a seeded sample of fault points of each story (its traced statements include
    a COMMIT: the command writes through the traced connection)."""
    s = stories(name)
    assert any(ln.split()[1] == "COMMIT" for ln in s.ops), (s.name, s.ops)
    rnd = random.Random(21)
    for n, action in rnd.sample(s.points(), min(SAMPLE, len(s.points()))):
        run_point(s, n, action, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(STORIES))
def test_command_fault_sweep(stories, tmp_path, name):
    s = stories(name)
    pts = s.points()
    if POINTS and len(pts) > POINTS:
        pts = sorted(random.Random(2112).sample(pts, POINTS))
    for n, action in pts:
        run_point(s, n, action, tmp_path)
    kinds = {a: sum(1 for _, b in pts if b == a) for a in ACTIONS}
    print(f"\nFIGURES fault-sweep command {name}: {len(s.ops)} statements, {len(pts)} fault points {kinds}, "
          f"all converged")

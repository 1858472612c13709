"""1b. Fault-point sweep over the file manifest (SPEC §10, issue 12).

A folder of five files is loaded; then three new files arrive, one file is rewritten (updates)
and one vanishes, and a multi-file ``--window 12h`` run loads the folder: several slices, the
manifest upsert and the forgetting of the vanished file in the last slice's transaction. That run
is traced once, then repeated from the same starting state with a fault at its operations
(``raise``, ``kill``, ``kill-after``, and the WAL cut inside each ``COMMIT``, as in
``test_fault_sweep.py``). After each fault:

- the usual invariants (``check_after_fault``: slices all or nothing, the watermark never ahead
  of the data, the history one chain);
- the manifest matches the target: every file it holds at the version on disk has every one of
  its records in the target (at that version or a newer one), and it names a file of this run
  only once the run's data is all there;

and after one rerun: the exact target of the uninterrupted run, the same manifest, and a third
run that reads no file. Default suite: two points. ``-m slow``: every operation touching
``_hiwater_files`` and the last slice's ``COMMIT`` under every action (WAL cuts thinned as
``HIWATER_SWEEP_TORN``), and a kill just after each earlier ``COMMIT`` (between slices).
``HIWATER_RELIABILITY=full``: every operation under every action.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from .harness import NOW, check_after_fault, check_consistent, copy_db, one_error_line, run, same_data, snapshot
from .test_fault_sweep import TORN_CUTS, _frame_points

pytestmark = pytest.mark.reliability
FULL = os.environ.get("HIWATER_RELIABILITY") == "full"


def _records(first: int, n: int, day: int, tag: str = "v1") -> list[dict]:
    return [{"id": i, "name": f"{tag}-{i}", "modified_at": f"2025-01-{day:02d}T{(i * 5) % 24:02d}:{i % 60:02d}:00"}
            for i in range(first, first + n)]


def _write(path: Path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def manifest(db: Path) -> dict:
    if not db.exists():
        return {}
    con = sqlite3.connect(db)
    try:
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name = '_hiwater_files'").fetchone():
            return {}
        return {os.path.basename(p): (s, m, r) for p, s, m, r in
                con.execute("SELECT path, size, mtime_ns, run_id FROM _hiwater_files")}
    finally:
        con.close()


class Files:
    """The folder, the seeded target, the swept run's operations and its uninterrupted result."""

    def __init__(self, d: Path):
        self.dir = d
        land = d / "land"
        land.mkdir()
        for f in range(5):
            _write(land / f"old-{f}.jsonl", _records(10 * f, 10, day=1 + f))
        self.db = d / "t.db"
        self.argv = ["load", "--input", land, "--db", self.db, "--table", "events", "--now", NOW, "--details"]
        assert run(self.argv, d).code == 0
        self.seed = d / "seed.db"
        copy_db(self.db, self.seed)
        for f in range(3):  # three new files over three days: six slices of 12 h
            _write(land / f"new-{f}.jsonl", _records(100 + 10 * f, 10, day=10 + f))
        _write(land / "old-4.jsonl", _records(40, 10, day=13, tag="v2"))  # rewritten: updates
        (land / "old-0.jsonl").unlink()  # vanished
        self.land = land
        self.argv += ["--window", "12h"]
        self.pre = snapshot(self.db)
        trace = d / "trace"
        done = run(self.argv, d, {"HIWATER_FAULT_TRACE": str(trace)})
        assert done.code == 0, done.err
        self.ops = trace.read_text().splitlines()
        self.post = snapshot(self.db)
        self.post_manifest = manifest(self.db)
        assert set(self.post_manifest) == {"old-1.jsonl", "old-2.jsonl", "old-3.jsonl", "old-4.jsonl",
                                           "new-0.jsonl", "new-1.jsonl", "new-2.jsonl"}
        assert len({h["window_index"] for h in self.post.history if h["run_id"] == self.post.state["last_run"]}) > 3
        con = sqlite3.connect(self.db)
        self.frame = con.execute("PRAGMA page_size").fetchone()[0] + 24
        con.close()

    def points(self, every: bool) -> list[tuple[int, str]]:
        numbered = [(int(n), rest.split()) for n, rest in (ln.split(" ", 1) for ln in self.ops)]
        commits = [n for n, w in numbered if w[0] == "COMMIT"]
        if every:
            chosen = [n for n, _ in numbered]
        else:  # the manifest's operations and the last slice's COMMIT under every action
            chosen = sorted({n for n, w in numbered if "_hiwater_files" in w} | {commits[-1]})
        out = [(n, "kill-after") for n in commits[:-1] if n not in chosen and not every]  # between slices
        for n in chosen:
            words = numbered[n - 1][1]
            out += [(n, "raise"), (n, "kill"), (n, "kill-after")]
            if words[0] == "COMMIT" and words[-1].startswith("wal+"):
                pts = _frame_points(int(words[-1][4:]), self.frame)
                if TORN_CUTS and len(pts) > TORN_CUTS:
                    pts = [pts[round(j * (len(pts) - 1) / (TORN_CUTS - 1))] for j in range(TORN_CUTS)]
                out += [(n, f"torn-{b}") for b in pts]
        return out


def check_manifest_matches(db: Path, land: Path, where: str) -> None:
    """Every file the manifest holds at the version on disk has all its records in the target."""
    held = manifest(db)
    con = sqlite3.connect(db)
    try:
        have = dict(con.execute("SELECT id, _hiwater_cursor FROM events")) if held else {}
        names = dict(con.execute("SELECT id, name FROM events")) if held else {}
    finally:
        con.close()
    for name, (size, mtime_ns, _) in held.items():
        p = land / name
        if not p.exists():
            continue  # vanished: forgotten by the run that sees it gone
        st = p.stat()
        if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
            continue  # an older version: the next run reads the file again
        for r in (json.loads(ln) for ln in p.read_text().splitlines()):
            assert r["id"] in have, (where, "manifest names", name, "without record", r["id"])
            assert names[r["id"]] == r["name"] or have[r["id"]] is not None, (where, name, r)


def run_point(fx: Files, n: int, action: str, work: Path) -> None:
    copy_db(fx.seed, fx.db)
    pre = snapshot(fx.db)
    done = run(fx.argv, work, {"HIWATER_FAULT_AT": f"{n}:{action}"})
    where = f"op {n} ({fx.ops[n - 1]}) {action}"
    if action == "raise":
        assert done.code == 1, (where, done.code, done.err)
        one_error_line(done)
    else:
        assert done.killed, (where, done.code, done.err)
    mid = snapshot(fx.db)
    check_after_fault(pre, mid, fx.post, windowed=True, where=where)
    check_manifest_matches(fx.db, fx.land, where)
    new = {"new-0.jsonl", "new-1.jsonl", "new-2.jsonl"}
    if new & set(manifest(fx.db)):  # the run's files are recorded with its last slice: all its data
        same_data(mid, fx.post)
        assert manifest(fx.db) == fx.post_manifest, where
    again = run(fx.argv, work)
    assert again.code == 0, (where, again.err)
    final = snapshot(fx.db)
    check_consistent(final)
    same_data(final, fx.post)
    got = manifest(fx.db)
    assert {k: v[:2] for k, v in got.items()} == {k: v[:2] for k, v in fx.post_manifest.items()}, where
    third = run(fx.argv, work)
    assert third.code == 0 and json.loads(third.out)["files"]["read"] == 0, (where, third.out)


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return Files(tmp_path_factory.mktemp("files-sweep"))


def test_the_swept_run_writes_the_manifest_in_its_last_slice(fx):
    writes = [ln for ln in fx.ops if "_hiwater_files" in ln and ln.split()[1] in ("INSERT", "DELETE")]
    assert len(writes) == 2, writes  # the upsert of the run's files, the vanished one forgotten
    commits = [int(ln.split()[0]) for ln in fx.ops if ln.split()[1] == "COMMIT"]
    assert all(commits[-2] < int(w.split()[0]) < commits[-1] for w in writes), (writes, commits)


def test_manifest_fault_sample(fx, tmp_path):
    """Default run: a fault at the manifest write, a kill just after the first slice's commit."""
    write = next(int(ln.split()[0]) for ln in fx.ops if "INSERT INTO _hiwater_files" in ln)
    commits = [int(ln.split()[0]) for ln in fx.ops if ln.split()[1] == "COMMIT"]
    # commits: the meta tables, transaction 0 (records outside the window), then one per slice
    for n, a in [(write, "kill"), (commits[2], "kill-after")]:
        run_point(fx, n, a, tmp_path)


@pytest.mark.slow
def test_manifest_fault_sweep(fx, tmp_path):
    pts = fx.points(every=FULL)
    for n, action in pts:
        run_point(fx, n, action, tmp_path)
    kinds: dict = {}
    for _, a in pts:
        k = "torn" if a.startswith("torn") else a
        kinds[k] = kinds.get(k, 0) + 1
    print(f"\nFIGURES fault-sweep files-window: {len(fx.ops)} operations, {len(pts)} fault points {kinds}")

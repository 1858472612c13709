"""3. Concurrency: eight loaders of one stream started within milliseconds of each other.

Every loader reads a prefix of one growing source (so the right final target does not
depend on the order they happen to run in). Trials come in three kinds:

- ``wait``:    ``--lock-timeout 30s``: every loader waits its turn and succeeds;
- ``timeout``: ``--lock-timeout 0``: the holder succeeds, each other loader either
               succeeds (it came after) or exits 1 with the documented one-line message;
- ``kill``:    one loader SIGKILLs itself in the middle of its run (holding the lock);
               the others proceed with no manual cleanup.

Checks: exit codes, no two runs overlapping in time (history), each run starting at the
watermark the previous one left, a watermark that never moves back, the final target
equal to one uninterrupted load of the whole source, ``PRAGMA integrity_check``.

``HIWATER_CONCURRENCY_TRIALS`` (CI default 20; full run 100).
"""

from __future__ import annotations

import json
import random
import re
import time

import pytest

from .harness import HIWATER, NOW, check_consistent, env_int, run, snapshot, start

pytestmark = pytest.mark.reliability
LOADERS = 8


def _t(minute: int) -> str:
    return f"2025-01-15T{minute // 60:02d}:{minute % 60:02d}:00"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("conc")
    rnd = random.Random(3)
    source = []
    for m in range(0, 1200, 4):
        if source and rnd.random() < 0.3:
            source.append({**rnd.choice(source), "name": f"upd{m}", "modified_at": _t(m)})
        else:
            source.append({"id": len(source) + 1, "name": f"r{m}", "modified_at": _t(m)})
    files = []
    for i in range(LOADERS):
        f = d / f"part{i}.jsonl"
        f.write_text("".join(json.dumps(r) + "\n" for r in source[: len(source) * (i + 1) // LOADERS]))
        files.append(f)
    ref = d / "ref.db"
    assert run(["load", "--input", files[-1], "--db", ref, "--table", "events", "--now", NOW], d).code == 0
    return d, files, snapshot(ref)


LOCK_MSG = re.compile(r"^error: stream 'events' is being loaded by another run; gave up after 0s \(")


def trial(world, kind: str, seed: int, real: bool = False) -> dict:
    d, files, ref = world
    rnd = random.Random(seed)
    work = d / f"t{seed}"
    work.mkdir()
    db = work / "t.db"
    order = list(range(LOADERS))
    rnd.shuffle(order)
    victim = rnd.randrange(LOADERS) if kind == "kill" else None
    timeout = "0" if kind == "timeout" else "30s"
    procs = []
    at = time.time() + 0.15
    for i in order:
        argv = ["load", "--input", files[i], "--db", db, "--table", "events", "--now", NOW, "--details",
                "--lock-timeout", timeout]
        if rnd.random() < 0.3:
            argv += ["--window", "2h"]
        env = {"HIWATER_FAULT_AT": f"{rnd.randint(10, 24)}:kill"} if i == victim else None
        if real:
            import subprocess
            import os
            e = {**os.environ, **(env or {})}
            procs.append((i, subprocess.Popen([str(HIWATER),
                                               *map(str, argv)], stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True, env=e)))
        else:
            procs.append((i, start(argv, work, env, start_at=at)))
    results = {}
    for i, p in procs:
        if real:
            out, err = p.communicate(timeout=120)
            results[i] = (p.returncode, out, err)
        else:
            done = p.wait()
            results[i] = (done.code, done.out, done.err)
    ok = 0
    for i, (code, out, err) in results.items():
        if i == victim and code == -9:
            continue
        assert "internal error" not in err and "Traceback" not in err, err
        if code == 0:
            ok += 1
            continue
        assert kind == "timeout" and code == 1, (kind, i, code, err)
        lines = [x for x in err.splitlines() if x.strip()]
        assert len(lines) == 1 and LOCK_MSG.match(lines[0]), err
    assert ok >= 1
    snap = snapshot(db)
    check_consistent(snap)
    # exactly one at a time: the runs' time spans do not overlap, in run order
    spans = {}
    for h in snap.history:
        a, b = spans.get(h["run_id"], (h["started_at"], h["finished_at"]))
        spans[h["run_id"]] = (min(a, h["started_at"]), max(b, h["finished_at"]))
    ids = sorted(spans)
    for x, y in zip(ids, ids[1:]):
        assert spans[y][0] >= spans[x][1], ("overlapping runs", x, spans[x], y, spans[y])
    if kind != "timeout":
        # everyone but the victim ran: the target holds the whole source, as one load gives
        rerun_needed = victim is not None and victim == LOADERS - 1
        if rerun_needed:
            assert run(["load", "--input", files[-1], "--db", db, "--table", "events", "--now", NOW],
                       work).code == 0
            snap = snapshot(db)
        same_data_rows(snap, ref)
    return {"ok": ok, "failed": sum(1 for c, _, _ in results.values() if c == 1)}


def same_data_rows(snap, ref):
    assert {k: {c: v for c, v in r.items()} for k, r in snap.rows.items()} == ref.rows
    assert snap.watermark == ref.watermark


KINDS = ["wait", "timeout", "kill"]


def test_concurrency_smoke(world):
    trial(world, "wait", 1)
    trial(world, "kill", 2)


@pytest.mark.slow
def test_concurrency_trials(world):
    n = env_int("HIWATER_CONCURRENCY_TRIALS", 20, 100)
    seen = {"timeouts": 0, "kills": 0}
    for t in range(n):
        kind = KINDS[t % 3]
        r = trial(world, kind, 100 + t)
        seen["timeouts"] += r["failed"]
        seen["kills"] += kind == "kill"
    print(f"\nFIGURES concurrency: {n} trials of {LOADERS} loaders; {seen['timeouts']} lock timeouts "
          f"(exit 1, one line), {seen['kills']} lock holders killed; no overlapping runs")


@pytest.mark.slow
def test_concurrency_real_processes(world):
    """The same with the installed executable (no fork server)."""
    for t, kind in enumerate(KINDS):
        trial(world, kind, 900 + t, real=True)

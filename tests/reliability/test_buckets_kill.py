"""Killing the coordinator of a bucketed run stops its workers (issue 20, unsafe 5).

``hiwater load --buckets 2`` into PostgreSQL (its buckets run at once) is SIGKILLed while both
workers write; no worker may survive it (they must not go on committing for a run nobody waits
for), the table holds only whole bucket commits, and a rerun converges to the single-run table.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import write_jsonl
from db.dbutil import PG_URL, fresh_name, pg_connect, read_table, server_or_skip

pytestmark = pytest.mark.reliability

SRC = Path(__file__).resolve().parents[2] / "src"


def hiwater_cli(*args, **kw) -> subprocess.Popen:
    """The CLI of this checkout, in its own process."""
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return subprocess.Popen([sys.executable, "-c", "from hiwater.cli import run; run()", *map(str, args)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def records(n: int, version: int):
    return [{"id": i, "name": f"n{i}v{version}", "amount": i * version,
             "modified_at": f"2025-01-{1 + version:02d}T{i % 24:02d}:{i % 60:02d}:00"} for i in range(1, n + 1)]


def checksum(rows: list) -> tuple[int, str]:
    rows = sorted((json.dumps(r, sort_keys=True, default=str) for r in rows))
    return len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest()


def workers_of(parent: psutil.Process) -> list:
    """The pool's workers: spawned, or forked by the coordinator's forkserver (its child)."""
    return [c for c in parent.children(recursive=True) if "spawn_main" in " ".join(c.cmdline())
            or ("multiprocessing.forkserver" in " ".join(c.cmdline()) and c.ppid() != parent.pid)]


def forkservers_of(parent: psutil.Process) -> list:
    return [c for c in parent.children() if "multiprocessing.forkserver" in " ".join(c.cmdline())]


@pytest.fixture
def schemas():
    admin = server_or_skip("PostgreSQL", PG_URL, pg_connect)
    names = [fresh_name(), fresh_name()]
    yield [f"{PG_URL}?schema={n}" for n in names]
    for n in names:
        admin.execute(f'DROP SCHEMA IF EXISTS "{n}" CASCADE')
    admin.close()


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "dask"])
def test_sigkill_of_the_coordinator_stops_its_workers_and_a_rerun_converges(tmp_path, schemas, executor):
    if executor == "dask":
        pytest.importorskip("distributed")
    bucketed, single = schemas
    small = write_jsonl(tmp_path / "v1.jsonl", records(2_000, 1))
    big = write_jsonl(tmp_path / "v2.jsonl", records(150_000, 2))
    common = ["--table", "t", "--key", "id", "--cursor", "modified_at", "--batch-size", "500",
              "--now", "2025-06-01T00:00:00Z"]
    # a first run makes the table, so both buckets of the next one start at once
    assert hiwater_cli("load", "-i", small, "--target", single, *common).wait(120) == 0
    assert hiwater_cli("load", "-i", small, "--target", bucketed, "--buckets", "2", *common).wait(120) == 0
    proc = hiwater_cli("load", "-i", big, "--target", bucketed, "--buckets", "2", "--executor", executor, *common)
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    while len(workers_of(parent)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = workers_of(parent)
    assert len(workers) == 2, "the two bucket workers did not start"
    workers += forkservers_of(parent)  # (which must end too)
    time.sleep(3)  # both are reading and writing their bucket
    assert proc.poll() is None, "the run ended before it could be killed: make the source bigger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    gone, alive = psutil.wait_procs(workers, timeout=60)  # (a loaded machine: a worker still starting ends when it can)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]  # a zombie is dead
    assert not alive, f"workers outlived their coordinator: {[p.pid for p in alive]}"
    # whatever committed is whole buckets: every row is the old or the new version of its key
    rows = read_table(bucketed, "t")
    assert {r["name"][-2:] for r in rows} <= {"v1", "v2"} and len(rows) <= 150_000
    assert hiwater_cli("load", "-i", big, "--target", bucketed, "--buckets", "2", *common).wait(300) == 0
    assert hiwater_cli("load", "-i", big, "--target", single, *common).wait(300) == 0
    assert checksum(read_table(bucketed, "t")) == checksum(read_table(single, "t"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "delta", "postgresql"])
def test_rebucket_killed_at_any_point_then_run_again_converges(tmp_path, kind, request):
    """``load --buckets 2 --rebucket`` of a 4- or 3-bucket stream, SIGKILLed after forgetting 0, 1
    or all old buckets, and at two instants of its run (placing the Delta rows, the buckets loading):
    the same command again converges to the single-run table, and its quarantine holds the
    invalid record once (issue 20, re-bucketing in one command)."""
    if kind == "postgresql":
        target = request.getfixturevalue("schemas")[0]
    else:
        target = f"sqlite:///{tmp_path / 'b.db'}" if kind == "sqlite" else f"delta://{tmp_path / 'lake'}"
    single = f"sqlite:///{tmp_path / 'one.db'}"
    bad = [{"id": 0, "name": "bad", "modified_at": "not a time"}]
    v1 = write_jsonl(tmp_path / "v1.jsonl", records(3_000, 1) + bad)
    v2 = write_jsonl(tmp_path / "v2.jsonl", records(20_000, 2) + bad)
    common = ["--table", "t", "--key", "id", "--cursor", "modified_at", "--now", "2025-06-01T00:00:00Z"]
    assert hiwater_cli("load", "-i", v2, "--target", single, *common).wait(300) == 0
    rebucket = ["load", "-i", v2, "--target", target, "--buckets", "2", "--rebucket", "--forget-quarantine",
                "--batch-size", "2000", *common]
    runs = [("forgotten", k) for k in (0, 1, 4)] + [("after", s) for s in (2.0, 4.0)]
    for i, (how, at) in enumerate(runs):
        n = 4 if i % 2 == 0 else 3  # each round starts from another count
        assert hiwater_cli("load", "-i", v1, "--target", target, "--buckets", n, "--rebucket", "--forget-quarantine",
                           *common).wait(300) == 0
        env = dict(os.environ, HIWATER_REBUCKET_KILL=str(at)) if how == "forgotten" else None
        args = [sys.executable, "-c", "from hiwater.cli import run; run()", *map(str, rebucket)]
        env = dict(env or os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        if how == "after":
            time.sleep(at)
            os.killpg(proc.pid, signal.SIGKILL)  # the coordinator and whatever it started
        proc.wait(300)
        again = hiwater_cli(*rebucket)
        out, err = again.communicate(timeout=300)
        assert again.returncode == 0, (how, at, err.decode()[-2000:])
        assert checksum(read_table(target, "t")) == checksum(read_table(single, "t")), (how, at)
        held = hiwater_cli("quarantine", "list", "--stream", "t", "--target", target, "--json")
        out, _ = held.communicate(timeout=120)
        assert len(json.loads(out)) == 1, (how, at, out)

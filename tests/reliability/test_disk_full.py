"""3. Disk full: a SQLite target on a small tmpfs that fills up mid-run.

The test mounts a tmpfs of 8 MiB (``mount -t tmpfs``; it needs root or CAP_SYS_ADMIN and
skips with the reason where mounting is impossible — under ``CI=true`` too, since a CI
container may forbid mounts: the reason is printed), loads into a SQLite file there, then
fills the filesystem with a ballast file so that the next run cannot fit. Expected:
``SQLITE_FULL`` as one clear ``error:`` line and exit 1; the file still opens, passes
``integrity_check`` and holds the previous watermark and data; after the ballast is removed
a rerun equals an uninterrupted run on a roomy disk. The same when what does not fit is the
quarantine (a run whose records are all invalid, with large payloads; it passes
``--max-rejected 100%``, since a run that rejects every record fails otherwise).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from .harness import NOW, check_consistent, one_error_line, run, same_data, snapshot

pytestmark = pytest.mark.reliability
FIGURES = {"disks_filled": 0}


def _t(minute: int) -> str:
    return f"2025-01-15T{minute // 60:02d}:{minute % 60:02d}:00"


def _write(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB tmpfs mounted for the test, unmounted after."""
    mnt = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0777", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(mnt: Path, leave: int) -> Path:
    """Fill the filesystem until only ``leave`` bytes are free; the ballast file's path."""
    ballast = mnt / "ballast"
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    with open(ballast, "wb") as f:
        try:
            f.write(b"\0" * max(free - leave, 0))
        except OSError:
            pass
    return ballast


def _story(d: Path, kind: str):
    """(first load, the load that does not fit): rows, or invalid records for the quarantine."""
    first = [{"id": i, "name": f"a{i}", "modified_at": _t(i)} for i in range(1, 201)]
    pad = "x" * 200
    if kind == "data":
        second = [{"id": i, "name": f"b{i}-{pad}", "modified_at": _t(200 + i % 600)} for i in range(1, 5001)]
    else:  # every record invalid: they all go to the quarantine, with their payload
        second = [{"id": i, "name": f"q{i}-{pad}", "modified_at": f"not a time {i}"} for i in range(1, 5001)]
    return _write(d / f"first-{kind}.jsonl", first), _write(d / f"second-{kind}.jsonl", second)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["data", "quarantine"])
def test_a_disk_that_fills_mid_run_commits_nothing_and_the_rerun_is_exact(small_disk, tmp_path, kind):
    first, second = _story(tmp_path, kind)
    common = ["--table", "events", "--now", NOW, "--batch-size", "1000"]
    if kind == "quarantine":  # it rejects every record on purpose: such a run fails unless accepted
        common += ["--max-rejected", "100%"]
    # the reference, on a roomy disk
    ref = tmp_path / "ref.db"
    for src in (first, second):
        done = run(["load", "--input", src, "--db", ref, *common], tmp_path)
        assert done.code == 0, done.err
    want = snapshot(ref)

    db = small_disk / "t.db"
    assert run(["load", "--input", first, "--db", db, *common], tmp_path).code == 0
    pre = snapshot(db)
    ballast = _fill(small_disk, 256 * 1024)  # room for the first batch at most, not for the run
    done = run(["load", "--input", second, "--db", db, *common], tmp_path)
    assert done.code == 1, (done.code, done.out, done.err)
    line = one_error_line(done)
    assert "full" in line, line  # "database or disk is full"
    FIGURES["disks_filled"] += 1
    mid = snapshot(db)  # still opens, integrity ok
    check_consistent(mid)
    assert mid.rows == pre.rows and mid.watermark == pre.watermark
    assert mid.quarantine_set() == pre.quarantine_set() and len(mid.history) == len(pre.history)

    ballast.unlink()
    again = run(["load", "--input", second, "--db", db, *common], tmp_path)
    assert again.code == 0, again.err
    final = snapshot(db)
    check_consistent(final)
    same_data(final, want)

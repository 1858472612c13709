"""A killed run (SIGKILL in the middle of a --window load) leaves the database consistent,
and a rerun completes it exactly."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

HIWATER = [sys.executable, "-m", "hiwater.cli"]


def make_source(path, n=20_000, hours=150):
    base = dt.datetime(2025, 1, 1)
    with open(path, "w") as f:
        for i in range(n):
            t = base + dt.timedelta(seconds=(i * hours * 3600) // n)
            f.write(json.dumps({"id": i, "name": f"n{i}", "modified_at": t.isoformat()}) + "\n")


def snapshot(db):
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        data = dict(con.execute("SELECT id, modified_at FROM src"))
        wm = con.execute("SELECT watermark FROM _hiwater_state").fetchone()
        hist = con.execute("SELECT count(*) FROM _hiwater_history").fetchone()[0]
        maxcur = con.execute("SELECT max(_hiwater_cursor) FROM src").fetchone()[0]
        return data, (wm[0] if wm else None), hist, maxcur
    finally:
        con.close()


def test_sigkill_mid_window_then_rerun_completes_exactly(tmp_path):
    src = tmp_path / "src.jsonl"
    make_source(src)
    db = tmp_path / "t.db"
    args = HIWATER + ["load", "--input", str(src), "--db", str(db), "--window", "1h", "--max-future", "none"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    committed = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        try:
            con = sqlite3.connect(db, timeout=0.1)
            committed = con.execute("SELECT count(*) FROM _hiwater_history").fetchone()[0]
            con.close()
        except sqlite3.Error:
            continue
        if committed >= 5:
            break
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    data, wm, hist, maxcur = snapshot(db)
    # consistent: the watermark is exactly the newest committed row, every row at or below it is there
    assert 0 < len(data) < 20_000 and wm == maxcur
    assert sorted(data) == list(range(len(data)))
    assert hist >= 5

    rerun = subprocess.run(args, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["total_in_target"] == 20_000
    assert summary["source_records"] == 20_000 and summary["loaded"] == 20_000 - len(data)

    clean = tmp_path / "clean.db"
    subprocess.run(HIWATER + ["load", "--input", str(src), "--db", str(clean), "--max-future", "none"],
                   check=True, capture_output=True)
    assert snapshot(db)[0] == snapshot(clean)[0]
    assert snapshot(db)[1] == snapshot(clean)[1]

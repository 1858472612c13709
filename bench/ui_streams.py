#!/usr/bin/env python3
"""``hiwater ui`` on real history: the streams page and ``/metrics`` for 100 streams with 10,000
runs each (issue 24, item 6: goal under 200 ms).

    PYTHONPATH=src .venv/bin/python bench/ui_streams.py                 # 100 streams x 10,000 runs
    PYTHONPATH=src .venv/bin/python bench/ui_streams.py --streams 10 --runs 100   # a smoke run

The fixture is one SQLite target: a first ``hiwater.load`` makes the ``_hiwater_*`` tables and one
stream's state, then the other streams' state rows and every history row (one per run, 1 in 500
failed) and a few quarantine rows per stream are written directly in bulk through ``sqlite3``
(a million real runs would take hours). A ``hiwater ui`` server runs in this process on a free
port; each page is requested once to warm up, then ``--repeat`` times over HTTP (urllib), and the
median, min and max are printed as a Markdown table. The meta store's history carries the two
indexes these reads want (targets/meta.py): ``(stream, run_id)`` for each stream's latest run and
``(stream, outcome, finished_at, run_id)`` for its latest success.
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import urllib.request

import hiwater
from hiwater.ui import make_server

NOW = "2025-06-01T00:00:00Z"
T0 = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z in microseconds


def _iso(us: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(us / 1e6)) + ".000Z"


def build(db: str, streams: int, runs: int) -> None:
    src = os.path.join(os.path.dirname(db), "seed.jsonl")
    with open(src, "w") as f:
        f.write('{"id": 1, "modified_at": "2025-01-01T00:00:00Z"}\n')
    hiwater.load(src, db=db, stream="s000", table="events", now=NOW)
    con = sqlite3.connect(db)
    state = con.execute("SELECT * FROM _hiwater_state WHERE stream = 's000'").fetchone()
    cols = [d[0] for d in con.execute("SELECT * FROM _hiwater_state").description]
    con.execute("DELETE FROM _hiwater_history")
    wm_at = cols.index("watermark")
    for s in range(streams):
        row = list(state)
        row[0] = f"s{s:03d}"
        row[wm_at] = T0 + runs * 60_000_000
        con.execute(f"INSERT OR REPLACE INTO _hiwater_state VALUES ({', '.join('?' * len(row))})", row)
    hcols = ["run_id", "window_index", "stream", "started_at", "finished_at", "mode", "outcome", "source_records",
             "loaded", "skipped", "inserted", "updated", "unchanged", "late", "late_applied", "future",
             "below_window", "rejected", "deleted", "watermark_before", "watermark_after",
             "watermark_before_value", "watermark_after_value", "duration_s", "error"]
    sql = f"INSERT INTO _hiwater_history ({', '.join(hcols)}) VALUES ({', '.join('?' * len(hcols))})"
    for s in range(streams):
        rows = []
        for i in range(runs):
            at = T0 + (i + 1) * 60_000_000
            failed = i % 500 == 499
            rows.append((s * runs + i + 1, 0, f"s{s:03d}", _iso(at - 2_000_000), _iso(at), "incremental",
                         "failed" if failed else "committed", 120, 0 if failed else 100, 20, 0 if failed else 80,
                         0 if failed else 20, 0, 0, 0, 0, 0, 1, 0, _iso(at - 60_000_000), _iso(at - 5_000_000),
                         at - 60_000_000, at - 5_000_000, 1.5, "boom" if failed else None))
        con.executemany(sql, rows)
        con.executemany("INSERT INTO _hiwater_quarantine (stream, reason, record, fingerprint, first_run, last_run)"
                        " VALUES (?, 'invalid', '{}', ?, 1, 1)", [(f"s{s:03d}", f"f{k}") for k in range(3)])
        con.commit()
    con.close()


def measure(url: str, repeat: int) -> tuple:
    with urllib.request.urlopen(url) as r:  # warm-up
        r.read()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        with urllib.request.urlopen(url) as r:
            r.read()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), min(times), max(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", type=int, default=100)
    p.add_argument("--runs", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--db", help="keep the fixture in this file (default: a temporary folder); an existing "
                                "file is measured as it is")
    a = p.parse_args()
    folder = tempfile.mkdtemp(prefix="hiwater-ui-bench-")
    db = a.db or os.path.join(folder, "ui.db")
    t = time.perf_counter()
    if not os.path.exists(db):
        build(db, a.streams, a.runs)
    print(f"fixture: {a.streams} streams x {a.runs:,} runs in {db} ({time.perf_counter() - t:.1f}s)", file=sys.stderr)
    print("| page | median ms | min – max ms |\n| --- | --- | --- |")
    server = make_server(db=db, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for path in ("/", "/metrics"):
            med, lo, hi = measure(server.url.rstrip("/") + path, a.repeat)
            print(f"| `{path}` | {med:.0f} | {lo:.0f} – {hi:.0f} |", flush=True)
    finally:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

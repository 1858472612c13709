#!/usr/bin/env python3
"""Profile hiwater's first load and delta run (cProfile, one process each).

    .venv/bin/python bench/profile_hiwater.py --data bench/data/n1000000-s42 --out /tmp/prof

Runs ``python -m cProfile -o STEP.prof <venv>/bin/hiwater load ...`` on base.jsonl into an empty
SQLite file, then on delta.jsonl into the same file, and prints, for each step, the functions
with the most self time and the most cumulative time, as a share of the whole run. cProfile adds
overhead to every Python call (so pure-Python loops look bigger than they are); the shares, not
the absolute seconds, are the useful part. The .prof files stay in --out for snakeviz/pstats.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable


def _where(func):
    file, line, name = func
    if file == "~":
        return name  # a builtin, e.g. <method 'executemany' of 'sqlite3.Cursor' objects>
    short = file
    for marker in ("/site-packages/", "/src/", "/lib/python3"):
        if marker in file:
            short = file.split(marker, 1)[1]
            break
    return f"{short}:{line}({name})"


def top(prof_path, n=15):
    st = pstats.Stats(prof_path, stream=io.StringIO())
    total = st.total_tt or 1e-9
    rows = []
    for func, (cc, nc, tt, ct, _callers) in st.stats.items():
        rows.append({"func": _where(func), "ncalls": nc, "tottime_s": round(tt, 3),
                     "tottime_pct": round(100 * tt / total, 1), "cumtime_s": round(ct, 3),
                     "cumtime_pct": round(100 * ct / total, 1)})
    by_self = sorted(rows, key=lambda r: -r["tottime_s"])[:n]
    by_cum = sorted(rows, key=lambda r: -r["cumtime_s"])[:n + 10]
    return {"total_s": round(total, 3), "by_self": by_self, "by_cumulative": by_cum}


def profile(data_dir, out_dir, log=print, n=15):
    hw = os.path.join(os.path.dirname(PY), "hiwater")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    db = os.path.join(out_dir, "target.sqlite")
    result = {}
    for step, inp in (("first", "base"), ("delta", "delta")):
        prof = os.path.join(out_dir, f"{step}.prof")
        argv = [PY, "-m", "cProfile", "-o", prof, hw, "load", "--input",
                os.path.join(data_dir, inp + ".jsonl"), "--db", db, "--table", "events",
                "--key", "id", "--cursor", "modified_at"]
        t0 = time.perf_counter()
        r = subprocess.run(argv, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise RuntimeError(f"profiled {step} failed: {r.stderr[-800:]}")
        result[step] = {"wall_s_under_profiler": round(wall, 2), **top(prof, n), "prof": prof}
        log(f"  profile {step}: {wall:.1f} s under cProfile -> {prof}")
    return result


def _print(res):
    for step, r in res.items():
        print(f"\n== {step}: {r['total_s']} s profiled (wall {r['wall_s_under_profiler']} s)")
        print(f"{'self %':>7} {'self s':>8} {'cum %':>7} {'calls':>10}  function")
        for x in r["by_self"]:
            print(f"{x['tottime_pct']:7.1f} {x['tottime_s']:8.2f} {x['cumtime_pct']:7.1f} "
                  f"{x['ncalls']:10d}  {x['func']}")
        print("-- by cumulative time")
        for x in r["by_cumulative"]:
            print(f"{x['cumtime_pct']:7.1f} {x['cumtime_s']:8.2f} {x['ncalls']:10d}  {x['func']}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="a directory made by bench/generate.py")
    ap.add_argument("--out", required=True)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    res = profile(a.data, a.out, log=lambda m: print(m, file=sys.stderr), n=a.top)
    if a.json:
        print(json.dumps(res, indent=1))
    else:
        _print(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Profile hiwater's first load and delta run (one process each), and say where the time goes.

    .venv/bin/python bench/profile_hiwater.py --data bench/data/n1000000-s42 --out /tmp/prof \
        [--targets sqlite,duckdb] [--profiler cprofile]

Loads base.jsonl into an empty SQLite file (or DuckDB file), then delta.jsonl into the same
file, each under a profiler, and prints for each step:

* with py-spy (installed in bench/.venv-bench by bench/setup.sh; the default when present):
  sampled stacks of every thread, native frames included, so time inside SQLite, Arrow or the
  garbage collector is seen and a reader thread is not invisible. Reported: the share of active
  samples per thread, per innermost Python function (native callees included: the time
  ``executemany`` spends inside SQLite counts for the function that called it), per native
  library at the leaf, in imports and in garbage collection; and cumulative shares.
* with ``--profiler cprofile`` (the fallback): deterministic profile of the MAIN THREAD only
  (work in other threads shows up as lock waits), with Python-call overhead that inflates
  pure-Python loops. Self and cumulative shares per function.

The raw profiles stay in --out (py-spy collapsed stacks: flamegraph.pl/speedscope; .prof: pstats).
"""
from __future__ import annotations

import argparse
import collections
import io
import json
import os
import pstats
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable
PYSPY = os.path.join(HERE, ".venv-bench", "bin", "py-spy")
RATE = 200

_FRAME = re.compile(r"^(.*) \(([^()]*)\)$")
_NATIVE_LOC = re.compile(r"(\.so(\.\d+)*$)|(\.(c|cc|cpp|cxx|h|hpp)(:\d+)?$)")


def _short(path: str) -> str:
    for marker in ("/site-packages/", "/src/", "/lib/python3.11/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _frame(f: str):
    """(kind, key) for one collapsed-stack frame: kind is 'thread', 'py' or 'native'."""
    if f.startswith("thread ("):
        tid = f[len("thread ("):].split(")", 1)[0]
        name = f.split("):", 1)[1].strip() if "):" in f else None
        return "thread", (tid, name)
    m = _FRAME.match(f)
    name, loc = (m.group(1), m.group(2)) if m else (f, "")
    if _NATIVE_LOC.search(loc) or name.startswith("0x"):
        base = os.path.basename(loc.split(":")[0])
        lib = re.sub(r"(\.cpython-\d+.*)?\.so(\.\d+)*$", "", base)
        if ".cpython-" in base:  # an extension module: name it by its package too
            lib = f"{os.path.basename(os.path.dirname(loc)) or '?'}.{lib}"
        return "native", (name, lib)
    file = _short(loc.rsplit(":", 1)[0])
    return "py", f"{name} ({file})"


def analyse_collapsed(path: str, top_n: int = 15) -> dict:
    threads = collections.Counter()
    names = {}
    leaf_native = collections.Counter()
    py_self = collections.Counter()
    py_cum = collections.Counter()
    leaf_lib = collections.Counter()
    gc = imports = total = 0
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            try:
                n = int(count)
            except ValueError:
                continue
            total += n
            frames = [_frame(x) for x in stack.split(";")]
            tid, tname = next((k for kind, k in frames if kind == "thread"), ("?", None))
            if tname:
                names[tid] = tname
            threads[tid] += n
            pys = [k for kind, k in frames if kind == "py"]
            if pys:
                py_self[pys[-1]] += n
            else:
                py_self["(no Python frame: native thread)"] += n
            for k in set(pys):
                py_cum[k] += n
            kind, key = frames[-1]
            if kind == "native":
                leaf_native[f"{key[0]} ({key[1]})"] += n
            leaf_lib["Python code (interpreter)" if kind == "py" else
                     (key[1] or "?") if kind == "native" else "?"] += n
            if any(kind == "native" and k[0].startswith(("gc_collect", "collect_with_callback",
                                                          "gc_collect_main"))
                   for kind, k in frames):
                gc += n
            if any(kind == "py" and k.startswith("_find_and_load") for kind, k in frames):
                imports += n

    def pct(c):
        return round(100.0 * c / total, 1) if total else 0.0

    return {
        "samples": total,
        "threads": [{"thread": names.get(k, f"thread {k}"), "pct": pct(v)}
                    for k, v in threads.most_common()],
        "leaf_native": [{"func": k, "pct": pct(v)} for k, v in leaf_native.most_common(12)],
        "by_self": [{"func": k, "pct": pct(v)} for k, v in py_self.most_common(top_n)],
        "by_cumulative": [{"func": k, "pct": pct(v)} for k, v in py_cum.most_common(top_n + 12)],
        "leaf_library": [{"lib": k, "pct": pct(v)} for k, v in leaf_lib.most_common(10)],
        "gc_pct": pct(gc),
        "import_pct": pct(imports),
    }


def analyse_pstats(prof_path: str, top_n: int = 15) -> dict:
    st = pstats.Stats(prof_path, stream=io.StringIO())
    total = st.total_tt or 1e-9
    rows = []
    for func, (_cc, nc, tt, ct, _callers) in st.stats.items():
        file, line, name = func
        where = name if file == "~" else f"{name} ({_short(file)}:{line})"
        rows.append({"func": where, "ncalls": nc, "self_s": round(tt, 3),
                     "pct": round(100 * tt / total, 1), "cum_s": round(ct, 3),
                     "cum_pct": round(100 * ct / total, 1)})
    return {"total_s": round(total, 3),
            "by_self": sorted(rows, key=lambda r: -r["self_s"])[:top_n],
            "by_cumulative": [dict(r, pct=r["cum_pct"]) for r in
                              sorted(rows, key=lambda r: -r["cum_s"])[:top_n + 12]]}


def profile(data_dir, out_dir, log=print, n=15, profiler=None, targets=("sqlite",)):
    """{"profiler": ..., TARGET: {"first": ..., "delta": ...}, ...}"""
    profiler = profiler or ("py-spy" if os.access(PYSPY, os.X_OK) else "cprofile")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    result = {"profiler": profiler}
    for target in targets:
        d = os.path.join(out_dir, target)
        os.makedirs(d)
        try:
            result[target] = _profile_target(data_dir, d, target, log, n, profiler)
        except RuntimeError as e:
            log(f"  profile {target}: {e}")
            result[target] = {"error": str(e)[:500]}
    return result


def _profile_target(data_dir, out_dir, target, log, n, profiler):
    hw = os.path.join(os.path.dirname(PY), "hiwater")
    where = (["--db", os.path.join(out_dir, "target.sqlite")] if target == "sqlite" else
             ["--target", "duckdb:///" + os.path.join(out_dir, "target.duckdb")])
    result = {}
    for step, inp in (("first", "base"), ("delta", "delta"), ("rerun", "delta")):
        load = [hw, "load", "--input", os.path.join(data_dir, inp + ".jsonl"), *where,
                "--table", "events", "--key", "id", "--cursor", "modified_at"]
        if profiler == "py-spy":
            out = os.path.join(out_dir, f"{step}.collapsed.txt")
            argv = [PYSPY, "record", "-r", str(RATE), "--threads", "--native", "--format", "raw",
                    "-o", out, "--", PY] + load
        else:
            out = os.path.join(out_dir, f"{step}.prof")
            argv = [PY, "-m", "cProfile", "-o", out] + load
        t0 = time.perf_counter()
        r = subprocess.run(argv, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if r.returncode != 0 or not os.path.exists(out):
            raise RuntimeError(f"profiled {step} failed: {r.stderr[-800:]}")
        a = analyse_collapsed(out, n) if profiler == "py-spy" else analyse_pstats(out, n)
        result[step] = {"wall_s_under_profiler": round(wall, 2), **a, "raw": out}
        log(f"  profile {target} {step} ({profiler}): {wall:.1f} s -> {out}")
    return result


def _print(res):
    for target, steps in res.items():
        if target == "profiler":
            continue
        if "error" in steps:
            print(f"\n== {target}: {steps['error']}")
            continue
        for step in ("first", "delta", "rerun"):
            r = steps.get(step)
            if not r:
                continue
            print(f"\n== {target} {step} ({res['profiler']}): wall {r['wall_s_under_profiler']} s "
                  "under the profiler")
            if res["profiler"] == "py-spy":
                print(f"   {r['samples']} active samples at {RATE}/s per thread; threads: " +
                      ", ".join(f"{t['thread']} {t['pct']}%" for t in r["threads"]))
                print(f"   garbage collection {r['gc_pct']}%, imports {r['import_pct']}%; leaf: " +
                      ", ".join(f"{x['lib']} {x['pct']}%" for x in r["leaf_library"][:6]))
                print("   native leaves: " + ", ".join(f"{x['func']} {x['pct']}%"
                                                    for x in r["leaf_native"][:8]))
            print("-- innermost Python function (native callees included)")
            for x in r["by_self"]:
                print(f"  {x['pct']:5.1f}%  {x['func']}")
            print("-- cumulative")
            for x in r["by_cumulative"]:
                print(f"  {x['pct']:5.1f}%  {x['func']}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="a directory made by bench/generate.py")
    ap.add_argument("--out", required=True)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--profiler", choices=["py-spy", "cprofile"], default=None)
    ap.add_argument("--targets", default="sqlite", help="comma-separated: sqlite, duckdb")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    res = profile(a.data, a.out, log=lambda m: print(m, file=sys.stderr), n=a.top,
                  profiler=a.profiler, targets=[t for t in a.targets.split(",") if t])
    if a.json:
        print(json.dumps(res, indent=1))
    else:
        _print(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Run the hiwater benchmark: every tool side by side, each measurement its own process.

    .venv/bin/python bench/run.py                       # the full benchmark (N = 1,000,000)
    .venv/bin/python bench/run.py --n 2000 --small-n 0 --reps 1 --tools hiwater,raw,textbook \\
        --skip-memory --no-doc --results-dir /tmp/r      # a smoke run

For each data size and target (SQLite, DuckDB, PostgreSQL) and each repetition, every tool gets a
fresh, empty target and runs three steps, each a separate process:

  first   load base.jsonl into the empty target
  delta   load delta.jsonl (the base re-exported + 1% new + 1% updated records)
  rerun   load delta.jsonl again (nothing changed)

Wall time is measured around the process (interpreter start and imports included); peak RSS and
CPU time come from os.wait4() of that child (its own rusage, descendants included). After every
step the target is verified (row count, distinct ids, the updated and new rows carry the expected
values, untouched rows kept theirs); a step that fails verification or exits non-zero is reported
as FAILED and its time is not used.

Results go to bench/results/<timestamp>.json; docs/benchmarks.md and docs/img/benchmarks.png are
regenerated from them (bench/report.py), unless --no-doc.
"""
from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import generate  # noqa: E402

MAIN_PY = sys.executable
BENCH_VENV = os.path.join(HERE, ".venv-bench")
BENCH_PY = os.path.join(BENCH_VENV, "bin", "python")
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
STEPS = ("first", "delta", "rerun")
STEP_INPUT = {"first": "base", "delta": "delta", "rerun": "delta"}


def hiwater_exe() -> str:
    cand = os.path.join(os.path.dirname(MAIN_PY), "hiwater")
    return cand if os.path.exists(cand) else shutil.which("hiwater") or cand


# --------------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------------

class Tool:
    """One competitor on one kind of target."""

    def __init__(self, name, label, target, family, slow=False, venv="main"):
        self.name, self.label, self.target, self.family = name, label, target, family
        self.slow, self.venv = slow, venv

    @property
    def key(self):
        return f"{self.name}@{self.target}"

    # Paths/schemas for one repetition ------------------------------------------------------
    def place(self, workdir: str, pg_url: str) -> dict:
        stem = os.path.join(workdir, self.name)
        if self.target == "sqlite":
            return {"db": stem + ".sqlite", "workdir": stem + ".work"}
        if self.target == "duckdb":
            return {"db": stem + ".duckdb", "workdir": stem + ".work"}
        return {"url": pg_url, "schema": "bench_" + self.name.replace("-", "_"),
                "workdir": stem + ".work"}

    def argv(self, inp: str, pl: dict, hw_pg_mode: str) -> list:
        if self.name == "hiwater":
            base = [hiwater_exe(), "load", "--input", inp, "--table", "events", "--key", "id",
                    "--cursor", "modified_at", "--details"]
            if self.target == "sqlite":
                return base + ["--db", pl["db"]]
            if self.target == "duckdb":
                return base + ["--target", "duckdb:///" + pl["db"]]
            return base + ["--target", pg_schema_url(pl["url"], pl["schema"])]
        if self.name in ("raw-upsert-all", "raw-incremental"):
            script = "raw_limit.py" if self.name == "raw-upsert-all" else "raw_incremental.py"
            base = [MAIN_PY, os.path.join(HERE, script), "--input", inp, "--table", "events"]
            if self.target == "sqlite":
                return base + ["--db", pl["db"]]
            if self.target == "duckdb":
                return base + ["--target", "duckdb:///" + pl["db"]]
            return base + ["--target", pl["url"], "--schema", pl["schema"]]
        if self.name == "textbook":
            return [MAIN_PY, os.path.join(HERE, "textbook.py"), "--input", inp, "--db", pl["db"],
                    "--table", "events"]
        if self.name.startswith("dlt-"):
            variant = self.name[len("dlt-"):]
            a = [BENCH_PY, os.path.join(HERE, "dlt_load.py"), "--input", inp, "--variant", variant,
                 "--workdir", pl["workdir"], "--table", "events"]
            if self.target == "postgres":
                return a + ["--url", pl["url"], "--dataset", pl["schema"]]
            return a + ["--db", pl["db"], "--dataset", "bench_dlt"]
        raise ValueError(self.name)

    def locate(self, pl: dict):
        """(kind, where, [candidate (schema, table) pairs]) for verification."""
        if self.target == "sqlite":
            if self.name.startswith("dlt-"):
                stem, ext = os.path.splitext(pl["db"])
                return ("sqlite", stem + "__bench_dlt" + ext, [(None, "events")])
            return ("sqlite", pl["db"], [(None, "events")])
        if self.target == "duckdb":
            if self.name.startswith("dlt-"):
                return ("duckdb", pl["db"], [("bench_dlt", "events")])
            return ("duckdb", pl["db"], [("main", "events"), (None, "events")])
        cands = [(pl["schema"], "events")]
        if self.name == "hiwater":
            cands.append(("public", "events"))
        return ("postgres", pl["url"], cands)


def all_tools():
    return [
        Tool("hiwater", "hiwater", "sqlite", "hiwater"),
        Tool("raw-incremental", "raw incremental (watermark, orjson, executemany of the newer lines)",
             "sqlite", "raw"),
        Tool("raw-upsert-all", "raw upsert-all (sqlite3 executemany upsert of every line)", "sqlite",
             "raw"),
        Tool("textbook", "textbook loop (sort + per-row INSERT OR REPLACE)", "sqlite", "textbook"),
        Tool("dlt-sqlite-arrow", "dlt, sqlalchemy→SQLite, Arrow batches", "sqlite", "dlt",
             slow=True, venv="bench"),
        Tool("dlt-sqlite-dicts", "dlt, sqlalchemy→SQLite, dict rows", "sqlite", "dlt",
             slow=True, venv="bench"),
        Tool("hiwater", "hiwater", "duckdb", "hiwater"),
        Tool("raw-incremental", "raw incremental (watermark, orjson, Arrow INSERT … ON CONFLICT)",
             "duckdb", "raw"),
        Tool("raw-upsert-all", "native floor (DuckDB read_json + INSERT … ON CONFLICT)", "duckdb",
             "raw"),
        Tool("dlt-duckdb-arrow", "dlt, DuckDB, Arrow batches", "duckdb", "dlt", venv="bench"),
        Tool("dlt-duckdb-dicts", "dlt, DuckDB, dict rows", "duckdb", "dlt", slow=True,
             venv="bench"),
        Tool("hiwater", "hiwater", "postgres", "hiwater"),
        Tool("raw-incremental", "raw incremental (watermark, orjson, COPY + one upsert)",
             "postgres", "raw"),
        Tool("raw-upsert-all", "raw upsert-all (psycopg COPY + one upsert)", "postgres", "raw"),
        Tool("dlt-postgres-arrow", "dlt, PostgreSQL, Arrow batches", "postgres", "dlt",
             venv="bench"),
        Tool("dlt-postgres-dicts", "dlt, PostgreSQL, dict rows", "postgres", "dlt", slow=True,
             venv="bench"),
    ]


def pg_schema_url(url: str, schema: str) -> str:
    """hiwater's PostgreSQL URL for a target schema (its own ``schema`` query parameter)."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}schema={schema}"


# --------------------------------------------------------------------------------------------
# Process measurement
# --------------------------------------------------------------------------------------------

GNU_TIME = "/usr/bin/time"
SPAWN = os.path.join(HERE, "_spawn.py")


def rss_wrapper(time_file):
    """A small parent for the measured process, which records its peak RSS.

    The child's peak RSS cannot be read with os.wait4() from this (large) process: Linux counts
    the memory a child had between fork and exec, i.e. a copy of the parent's, in its
    ru_maxrss. So the tool is started by a small process of its own -- GNU time, or failing that
    bench/_spawn.py in an isolated interpreter -- and that process's wait4() figure is used.
    """
    if os.access(GNU_TIME, os.X_OK):
        return [GNU_TIME, "-f", "%e %M %U %S", "-o", time_file]
    return [MAIN_PY, "-I", "-S", SPAWN, time_file]


def _read_time_file(path):
    try:
        with open(path) as f:
            lines = [ln for ln in f.read().strip().splitlines() if ln.strip()]
        e, m, u, s_ = lines[-1].split()[:4]
        return float(m) / 1024.0, float(u) + float(s_)
    except (OSError, ValueError, IndexError):
        return None, None


_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _busy_cpu_s():
    """Seconds of CPU time the whole machine has spent busy since boot (None if unknown)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / _HZ


def measure(argv, log_prefix, timeout, env=None):
    """Run argv as a child; return wall seconds, peak RSS (MiB), cpu seconds, exit code, and
    how many CPU cores other processes kept busy meanwhile (a noisy neighbour shows there)."""
    out = open(log_prefix + ".out", "wb")
    err = open(log_prefix + ".err", "wb")
    time_file = log_prefix + ".time"
    e = dict(os.environ)
    e.update(env or {})
    busy0 = _busy_cpu_s()
    t0 = time.perf_counter()
    p = subprocess.Popen(rss_wrapper(time_file) + list(argv), stdout=out, stderr=err,
                         stdin=subprocess.DEVNULL, env=e, start_new_session=True,
                         cwd=os.path.dirname(log_prefix))
    killed = []

    def watchdog():
        try:
            os.killpg(p.pid, signal.SIGKILL)
            killed.append(True)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout, watchdog)
    timer.start()
    try:
        p.wait()
    finally:
        timer.cancel()
    wall = time.perf_counter() - t0
    busy1 = _busy_cpu_s()
    out.close()
    err.close()
    rss, cpu = _read_time_file(time_file)
    other = None
    if busy0 is not None and busy1 is not None and cpu is not None and wall > 0:
        other = max(0.0, (busy1 - busy0 - cpu) / wall)
    return {
        "other_cores": other,
        "wall_s": wall,
        "peak_rss_mib": rss if rss is not None else float("nan"),
        "cpu_s": cpu if cpu is not None else float("nan"),
        "exit": p.returncode,
        "timed_out": bool(killed),
    }


def tail(path, n=12):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


# --------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------

def norm_ts(v):
    if v is None:
        return None
    if isinstance(v, (int, float)):
        return dt.datetime.fromtimestamp(v, dt.timezone.utc).replace(tzinfo=None).isoformat()
    if isinstance(v, str):
        s = v.strip().replace(" ", "T")
        try:
            v = dt.datetime.fromisoformat(s)
        except ValueError:
            return s
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return v.isoformat(timespec="seconds") if not v.microsecond else v.isoformat()
    return str(v)


class Probe:
    """A read-only connection to a target with the table found."""

    def __init__(self, kind, where, cands):
        self.kind = kind
        self.con = None
        self.table = None
        if kind == "sqlite":
            if not os.path.exists(where):
                raise RuntimeError(f"target file {where} does not exist")
            self.con = sqlite3.connect(f"file:{where}?mode=ro", uri=True)
            names = {r[0] for r in self.con.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
            for _, t in cands:
                if t in names:
                    self.table = '"' + t + '"'
                    break
        elif kind == "duckdb":
            import duckdb
            if not os.path.exists(where):
                raise RuntimeError(f"target file {where} does not exist")
            self.con = duckdb.connect(where, read_only=True)
            rows = self.con.execute(
                "SELECT table_schema, table_name FROM information_schema.tables").fetchall()
            have = {(s, t) for s, t in rows}
            for s, t in cands:
                if s is None:
                    hit = [(s2, t2) for s2, t2 in have if t2 == t]
                    if hit:
                        s, t = hit[0]
                if (s, t) in have:
                    self.table = f'"{s}"."{t}"'
                    break
        else:
            import psycopg
            self.con = psycopg.connect(where, autocommit=True)
            for s, t in cands:
                r = self.con.execute(
                    "SELECT 1 FROM information_schema.tables WHERE table_schema=%s AND "
                    "table_name=%s", (s, t)).fetchone()
                if r:
                    self.table = f'"{s}"."{t}"'
                    break
        if self.table is None:
            self.close()
            raise RuntimeError(f"table events not found in {kind} target")

    def q(self, sql, params=()):
        if self.kind == "postgres":
            sql = sql.replace("?", "%s")
        return self.con.execute(sql, params).fetchall()

    def close(self):
        if self.con is not None:
            self.con.close()
            self.con = None


def verify(tool: Tool, pl: dict, step: str, meta: dict) -> list:
    """Problems found in the target after `step` (empty list = verified)."""
    problems = []
    try:
        p = Probe(*tool.locate(pl))
    except Exception as e:  # noqa: BLE001
        return [f"cannot open target: {e}"]
    try:
        t = p.table
        n = meta["n"]
        expect = meta["expected_rows_base"] if step == "first" else meta["expected_rows_delta"]
        off = meta["update_score_offset"]
        count, distinct = p.q(f"SELECT count(*), count(DISTINCT id) FROM {t}")[0]
        if count != expect:
            problems.append(f"row count {count}, expected {expect}")
        if distinct != count:
            problems.append(f"{count - distinct} duplicate ids")
        n_upd = p.q(f"SELECT count(*) FROM {t} WHERE score >= ?", (off,))[0][0]
        want_upd = 0 if step == "first" else meta["n_updates"]
        if n_upd != want_upd:
            problems.append(f"{n_upd} rows carry an update, expected {want_upd}")
        n_new = p.q(f"SELECT count(*) FROM {t} WHERE id > ?", (n,))[0][0]
        want_new = 0 if step == "first" else meta["n_new"]
        if n_new != want_new:
            problems.append(f"{n_new} new ids, expected {want_new}")
        if step == "first":
            samples = meta["samples_first"]
        else:
            samples = (meta["samples_updated"] + meta["samples_new"]
                       + meta["samples_base_unchanged"])
        if samples:
            ids = [s["id"] for s in samples]
            marks = ",".join("?" * len(ids))
            got = {r[0]: r for r in p.q(
                f"SELECT id, modified_at, amount, score FROM {t} WHERE id IN ({marks})", ids)}
            bad = 0
            first_bad = None
            for s in samples:
                r = got.get(s["id"])
                ok = (r is not None and norm_ts(r[1]) == norm_ts(s["modified_at"])
                      and r[2] is not None and abs(float(r[2]) - s["amount"]) < 1e-6
                      and int(r[3]) == s["score"])
                if not ok:
                    bad += 1
                    if first_bad is None:
                        first_bad = (s, r)
            if bad:
                problems.append(f"{bad}/{len(samples)} sampled rows differ, e.g. expected "
                                f"{first_bad[0]}, got {first_bad[1]}")
    except Exception as e:  # noqa: BLE001
        problems.append(f"verification query failed: {type(e).__name__}: {e}")
    finally:
        p.close()
    return problems


# --------------------------------------------------------------------------------------------
# Target preparation
# --------------------------------------------------------------------------------------------

def pg_available(url):
    try:
        import psycopg
        with psycopg.connect(url, connect_timeout=3) as c:
            return c.execute("SHOW server_version").fetchone()[0]
    except Exception as e:  # noqa: BLE001
        return None if not str(e) else None


def pg_reset(url, schemas):
    import psycopg
    with psycopg.connect(url, autocommit=True) as c:
        for s in schemas:
            for name in (s, s + "_staging"):
                c.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def hiwater_help(*cmd):
    try:
        return subprocess.run([hiwater_exe(), *cmd, "--help"], capture_output=True, text=True,
                              timeout=60).stdout
    except Exception:  # noqa: BLE001
        return ""


def probe_tool(tool: Tool, tiny_dir: str, work: str, pg_url: str, hw_pg_mode: str, timeout=300):
    """Run the tool's first+delta steps on a tiny data set; None if it works, else why not."""
    d = os.path.join(work, "probe-" + tool.key.replace("@", "-"))
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    pl = tool.place(d, pg_url)
    if tool.target == "postgres":
        pg_reset(pg_url, [pl["schema"]])
        if tool.name == "hiwater":
            _pg_create_schema(pg_url, pl["schema"])
    with open(os.path.join(tiny_dir, "meta.json")) as f:
        meta = json.load(f)
    for step in ("first", "delta"):
        inp = os.path.join(tiny_dir, STEP_INPUT[step] + ".jsonl")
        m = measure(tool.argv(inp, pl, hw_pg_mode), os.path.join(d, step), timeout)
        if m["exit"] != 0:
            msg = tail(os.path.join(d, step + ".err"), 3) or tail(os.path.join(d, step + ".out"), 3)
            return f"exit {m['exit']} on a tiny input: {msg}"
        probs = verify(tool, pl, step, meta)
        if probs:
            return f"fails verification on a tiny input after {step}: {'; '.join(probs)}"
    if tool.target == "postgres":
        pg_reset(pg_url, [pl["schema"]])
    shutil.rmtree(d, ignore_errors=True)
    return None


def _pg_create_schema(url, schema):
    import psycopg
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')


# --------------------------------------------------------------------------------------------
# Environment facts
# --------------------------------------------------------------------------------------------

def machine_info(pg_version):
    info = {"nproc": os.cpu_count(), "platform": platform.platform()}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["ram_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    v = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    for mod in ("orjson", "pyarrow", "numpy", "duckdb", "psycopg", "hiwater"):
        try:
            m = __import__(mod)
            v[mod] = getattr(m, "__version__", "?")
        except Exception:  # noqa: BLE001
            v[mod] = None
    try:
        v["hiwater_commit"] = subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
            text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "src/hiwater"],
                               capture_output=True, text=True).stdout.strip()
        if dirty:
            v["hiwater_commit"] += " (+ uncommitted changes in src/hiwater)"
    except Exception:  # noqa: BLE001
        pass
    if os.path.exists(BENCH_PY):
        try:
            out = subprocess.run(
                [BENCH_PY, "-c", "import json,dlt,duckdb,pyarrow,sqlalchemy,psycopg2;"
                 "print(json.dumps({'dlt':dlt.__version__,'duckdb':duckdb.__version__,"
                 "'pyarrow':pyarrow.__version__,'sqlalchemy':sqlalchemy.__version__,"
                 "'psycopg2':psycopg2.__version__.split()[0]}))"],
                capture_output=True, text=True, timeout=120).stdout
            v["bench_venv"] = json.loads(out)
        except Exception:  # noqa: BLE001
            v["bench_venv"] = None
    v["postgresql"] = pg_version
    return info, v


# --------------------------------------------------------------------------------------------
# Main loop
# --------------------------------------------------------------------------------------------

def ensure_data(data_dir, n, seed):
    d = os.path.join(data_dir, f"n{n}-s{seed}")
    mp = os.path.join(d, "meta.json")
    if os.path.exists(mp):
        with open(mp) as f:
            meta = json.load(f)
        if (meta.get("n") == n and meta.get("seed") == seed and meta.get("version") == 1
                and os.path.exists(os.path.join(d, "delta.jsonl"))):
            return d, meta
    print(f"generating N={n:,} seed={seed} into {d}", file=sys.stderr)
    meta = generate.generate(n, seed, d, quiet=True)
    return d, meta


def warm(paths):
    for p in paths:
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass


def summarize(samples):
    ws = [s["wall_s"] for s in samples]
    others = [s["other_cores"] for s in samples if s.get("other_cores") is not None]
    return {
        "other_cores_max": max(others) if others else None,
        "median_s": statistics.median(ws), "min_s": min(ws), "max_s": max(ws),
        "peak_rss_mib": max(s["peak_rss_mib"] for s in samples),
        "cpu_median_s": statistics.median(s["cpu_s"] for s in samples),
        "reps": len(ws),
    }


def run_section(n, data_dir, meta, tools, reps, work, pg_url, hw_pg_mode, timeout, log, steps=STEPS):
    """All tools for one data size (the ``steps`` named, in order); returns {tool.key: cell}."""
    cells = {t.key: {"tool": t.name, "label": t.label, "target": t.target, "family": t.family,
                     "n": n, "steps": {s: {"samples": [], "failures": []} for s in STEPS}}
             for t in tools}
    warm([os.path.join(data_dir, "base.jsonl"), os.path.join(data_dir, "delta.jsonl")])
    for rep in range(reps):
        for t in tools:
            d = os.path.join(work, f"n{n}", f"rep{rep}", t.key.replace("@", "-"))
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
            pl = t.place(d, pg_url)
            if t.target == "postgres":
                pg_reset(pg_url, [pl["schema"]])
                if t.name == "hiwater":
                    _pg_create_schema(pg_url, pl["schema"])
            broken = None
            for step in steps:
                st = cells[t.key]["steps"][step]
                if broken:
                    st["failures"].append({"rep": rep, "why": f"not run: {broken}"})
                    continue
                inp = os.path.join(data_dir, STEP_INPUT[step] + ".jsonl")
                m = measure(t.argv(inp, pl, hw_pg_mode), os.path.join(d, step), timeout)
                m["rep"] = rep
                if m["exit"] != 0:
                    why = ("timed out after %ds" % timeout) if m["timed_out"] else \
                        f"exit {m['exit']}: " + (tail(os.path.join(d, step + ".err"), 6)
                                                 or tail(os.path.join(d, step + ".out"), 6))
                    st["failures"].append({"rep": rep, "why": why, **m})
                    broken = f"{step} failed"
                    log(f"  N={n:,} rep {rep + 1} {t.key:24s} {step:6s} FAILED ({why[:200]})")
                    continue
                probs = verify(t, pl, step, meta)
                if probs:
                    st["failures"].append({"rep": rep, "why": "verification: " + "; ".join(probs),
                                           **m})
                    broken = f"{step} failed verification"
                    log(f"  N={n:,} rep {rep + 1} {t.key:24s} {step:6s} FAILED verification: "
                        f"{'; '.join(probs)[:300]}")
                    continue
                try:
                    with open(os.path.join(d, step + ".out"), "rb") as f:
                        outtxt = f.read().decode("utf-8", "replace").strip()
                    m["summary"] = json.loads(outtxt[outtxt.find("{"):]) if "{" in outtxt else None
                except (OSError, ValueError):
                    m["summary"] = None
                st["samples"].append(m)
                oc = m.get("other_cores")
                log(f"  N={n:,} rep {rep + 1} {t.key:28s} {step:6s} {m['wall_s']:8.2f} s "
                    f"{m['peak_rss_mib']:7.0f} MiB  ok"
                    + (f"  (other processes: {oc:.2f} cores)" if oc and oc > 0.25 else ""))
            if t.target == "postgres":
                pg_reset(pg_url, [pl["schema"]])
            shutil.rmtree(d, ignore_errors=True)
    for c in cells.values():
        for step, st in c["steps"].items():
            if st["failures"]:
                st["status"] = "FAILED"
                st["why"] = st["failures"][0]["why"]
            elif st["samples"]:
                st["status"] = "ok"
                st.update(summarize(st["samples"]))
            else:
                st["status"] = "not run"
    return cells


def memory_run(sizes, seed, data_root, work, timeout, log):
    """hiwater alone: first load and delta at each N, one repetition, peak RSS."""
    out = []
    for n in sizes:
        d, meta = ensure_data(data_root, n, seed)
        wd = os.path.join(work, f"mem-n{n}")
        shutil.rmtree(wd, ignore_errors=True)
        os.makedirs(wd)
        t = Tool("hiwater", "hiwater", "sqlite", "hiwater")
        pl = t.place(wd, DEFAULT_PG)
        row = {"n": n, "input_bytes": meta["base_bytes"]}
        for step in ("first", "delta"):
            m = measure(t.argv(os.path.join(d, STEP_INPUT[step] + ".jsonl"), pl, "search-path"),
                        os.path.join(wd, step), timeout)
            probs = [] if m["exit"] == 0 else [f"exit {m['exit']}: " + tail(
                os.path.join(wd, step + ".err"), 4)]
            if not probs:
                probs = verify(t, pl, step, meta)
            row[step] = {**m, "status": "FAILED" if probs else "ok",
                         "why": "; ".join(probs) if probs else None}
            log(f"  memory N={n:,} hiwater {step:6s} {m['wall_s']:8.2f} s "
                f"{m['peak_rss_mib']:7.0f} MiB  {'FAILED ' + row[step]['why'] if probs else 'ok'}")
            if probs:
                break
        out.append(row)
        shutil.rmtree(wd, ignore_errors=True)
    return out


SRC_SCHEMA = "bench_src"
SRC_VERSION = "hiwater-bench sql-source v1"
SRC_BASE = "2024-01-01 00:00:00"


def _src_build(url, n, log):
    """A PostgreSQL table of n rows, indexed on the cursor; kept between runs (it is slow to
    make), recognised by its table comment."""
    import psycopg
    tag = f"{SRC_VERSION} n={n}"
    with psycopg.connect(url, autocommit=True) as c:
        have = c.execute("SELECT obj_description(to_regclass(%s), 'pg_class')",
                         (f"{SRC_SCHEMA}.events",)).fetchone()
        if have and have[0] == tag:
            return False
        log(f"building the SQL source table {SRC_SCHEMA}.events with {n:,} rows (kept for "
            "later runs)")
        c.execute(f'DROP SCHEMA IF EXISTS "{SRC_SCHEMA}" CASCADE')
        c.execute(f'CREATE SCHEMA "{SRC_SCHEMA}"')
        c.execute(f'CREATE TABLE "{SRC_SCHEMA}".events (id bigint PRIMARY KEY, name text, '
                  'modified_at timestamp NOT NULL, amount double precision, score bigint, '
                  '"user" jsonb)')
        # Timestamps grow with the id, 5% of them up to a minute early (local disorder).
        c.execute(
            f'INSERT INTO "{SRC_SCHEMA}".events SELECT g, '
            "(ARRAY['user_signup','page_view','purchase','logout','search','login'])[1 + g %% 6], "
            f"timestamp '{SRC_BASE}' + g * interval '1 second' "
            "- ((g * 7919) %% 60) * interval '1 second' * ((g %% 20 = 0)::int), "
            "((g * 7919) %% 100000) / 100.0, g %% 1000, "
            "jsonb_build_object('name', 'user_' || (g %% 256), 'tier', "
            "(ARRAY['free','basic','pro','enterprise'])[1 + g %% 4]) "
            "FROM generate_series(1::bigint, %s::bigint) g", (n,))
        c.execute(f'CREATE INDEX ON "{SRC_SCHEMA}".events (modified_at, id)')
        c.execute(f'ANALYZE "{SRC_SCHEMA}".events')
        c.execute(f"COMMENT ON TABLE \"{SRC_SCHEMA}\".events IS '{tag}'")
    return True


def _src_reset(url, n, new):
    """Remove earlier runs' new rows; add `new` rows stamped after every existing one."""
    import psycopg
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f'DELETE FROM "{SRC_SCHEMA}".events WHERE id > %s', (n,))
        top = c.execute(f'SELECT max(modified_at) FROM "{SRC_SCHEMA}".events').fetchone()[0]
        if new:
            c.execute(
                f'INSERT INTO "{SRC_SCHEMA}".events SELECT g, \'new_row\', '
                "%s + (g - %s) * interval '1 second', 1.5, 7, "
                "'{\"name\": \"new\", \"tier\": \"pro\"}' "
                "FROM generate_series(%s::bigint, %s::bigint) g", (top, n, n + 1, n + new))
    return top


def sql_source_run(url, n, new, reps, work, timeout, log):
    """hiwater reading a PostgreSQL table of n rows with `new` rows added since the last run.

    Setup (untimed): the table (cached), then one run with --since at the newest row, which
    gives the stream its watermark; that target file is copied for each repetition. Timed: the
    next run, which must read and load just the new rows.
    """
    out = {"n": n, "new": new, "samples": [], "failures": []}
    try:
        out["built"] = _src_build(url, n, log)
    except Exception as e:  # noqa: BLE001
        out["status"] = "FAILED"
        out["why"] = f"could not build the source table: {e}"
        return out
    d = os.path.join(work, "sql-source")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    template = os.path.join(d, "template.sqlite")
    top = _src_reset(url, n, 0)
    src = ["--source", url, "--source-table", f"{SRC_SCHEMA}.events", "--table", "events",
           "--key", "id", "--cursor", "modified_at", "--details"]
    m = measure([hiwater_exe(), "load", *src, "--db", template, "--since", top.isoformat()],
                os.path.join(d, "setup"), timeout)
    out["setup"] = {k: m[k] for k in ("wall_s", "peak_rss_mib", "exit")}
    if m["exit"] != 0:
        out["status"] = "FAILED"
        out["why"] = "setup run failed: " + tail(os.path.join(d, "setup.err"), 4)
        return out
    with sqlite3.connect(template) as c:
        base_rows = c.execute("SELECT count(*) FROM events").fetchone()[0]
    log(f"  sql-source N={n:,}: setup run (--since, reads the whole table) "
        f"{m['wall_s']:.2f} s, {base_rows} row(s) at the watermark")
    for rep in range(reps):
        _src_reset(url, n, new)
        db = os.path.join(d, f"rep{rep}.sqlite")
        shutil.copy(template, db)
        m = measure([hiwater_exe(), "load", *src, "--db", db], os.path.join(d, f"rep{rep}"),
                    timeout)
        m["rep"] = rep
        probs = []
        if m["exit"] != 0:
            probs.append(f"exit {m['exit']}: " + tail(os.path.join(d, f"rep{rep}.err"), 4))
        else:
            with sqlite3.connect(db) as c:
                total, fresh = c.execute("SELECT count(*), count(*) FILTER (WHERE id > ?) "
                                         "FROM events", (n,)).fetchone()
            if total != base_rows + new or fresh != new:
                probs.append(f"target holds {total} rows ({fresh} new), expected "
                             f"{base_rows + new} ({new} new)")
            try:
                with open(os.path.join(d, f"rep{rep}.out")) as f:
                    txt = f.read()
                m["summary"] = json.loads(txt[txt.find("{"):])
                if m["summary"].get("source_records", 0) > new + base_rows + 10:
                    probs.append(f"read {m['summary']['source_records']} source rows for {new} "
                                 "new ones: the window was not pushed down")
            except (OSError, ValueError):
                m["summary"] = None
        if probs:
            out["failures"].append({"rep": rep, "why": "; ".join(probs), **m})
            log(f"  sql-source rep {rep + 1}: FAILED {'; '.join(probs)[:300]}")
        else:
            out["samples"].append(m)
            log(f"  sql-source rep {rep + 1}: {m['wall_s']:.2f} s {m['peak_rss_mib']:.0f} MiB ok")
        os.remove(db)
    _src_reset(url, n, 0)
    if out["failures"]:
        out["status"] = "FAILED"
        out["why"] = out["failures"][0]["why"]
    elif out["samples"]:
        out["status"] = "ok"
        out.update(summarize(out["samples"]))
    shutil.rmtree(d, ignore_errors=True)
    return out


def hiwater_src_digest():
    """A digest of hiwater's source, to notice the code changing under a running benchmark."""
    import hashlib
    h = hashlib.sha256()
    src = os.path.join(ROOT, "src", "hiwater")
    for dirpath, dirnames, files in os.walk(src):
        dirnames.sort()
        for f in sorted(files):
            if f.endswith(".py"):
                p = os.path.join(dirpath, f)
                h.update(os.path.relpath(p, src).encode())
                with open(p, "rb") as fh:
                    h.update(fh.read())
    return h.hexdigest()[:12]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="hiwater benchmark (see docs/benchmarks.md)")
    ap.add_argument("--n", type=int, default=1_000_000, help="records in the main data set")
    ap.add_argument("--small-n", type=int, default=100_000,
                    help="a second, smaller data set for the slow dlt variants (0: none)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tools", default="all",
                    help="comma-separated tool names (hiwater, raw-incremental, raw-upsert-all, "
                         "textbook, dlt-duckdb-arrow, ...; 'raw' = both raw variants, 'dlt' = "
                         "every dlt variant) or 'all'")
    ap.add_argument("--targets", default="sqlite,duckdb,postgres")
    ap.add_argument("--slow-at-full", action="store_true",
                    help="run the slow dlt variants at --n too, not only at --small-n")
    ap.add_argument("--slow-full", default="dlt-sqlite-arrow@sqlite",
                    help="slow variants (tool@target, comma-separated) that also run at --n, with "
                         "--slow-full-reps repetitions: the SQLite goal against dlt is stated at --n")
    ap.add_argument("--slow-full-reps", type=int, default=1)
    ap.add_argument("--slow-full-steps", default="first",
                    help="steps those variants run at --n (dlt's SQLite merge grows faster than "
                         "linearly: its delta at N=1,000,000 ran over 14 CPU minutes unfinished)")
    ap.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG))
    ap.add_argument("--data-dir", default=os.path.join(HERE, "data"))
    ap.add_argument("--work-dir", default=None, help="scratch space (default: a temp dir)")
    ap.add_argument("--results-dir", default=os.path.join(HERE, "results"))
    ap.add_argument("--doc", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    ap.add_argument("--chart", default=os.path.join(ROOT, "docs", "img", "benchmarks.png"))
    ap.add_argument("--no-doc", action="store_true", help="write the results JSON only")
    ap.add_argument("--memory-n", default="1000000,10000000",
                    help="sizes for the hiwater peak-memory run")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--timeout", type=int, default=1200, help="seconds per process")
    ap.add_argument("--sql-source-n", type=int, default=10_000_000,
                    help="rows in the PostgreSQL source table of the SQL-source scenario (0: skip)")
    ap.add_argument("--sql-source-new", type=int, default=1000,
                    help="new rows the SQL-source run must pick up")
    ap.add_argument("--profile", action="store_true",
                    help="also cProfile hiwater's first load and delta at --n (bench/profile.py)")
    a = ap.parse_args(argv)

    started = time.time()
    src_before = hiwater_src_digest()
    stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    log_lines = []

    def log(msg):
        print(msg, file=sys.stderr, flush=True)
        log_lines.append(msg)

    targets = [x.strip() for x in a.targets.split(",") if x.strip()]
    want = None if a.tools == "all" else {x.strip() for x in a.tools.split(",") if x.strip()}
    tools = []
    for t in all_tools():
        if t.target not in targets:
            continue
        if want is not None and t.name not in want and not (
                "dlt" in want and t.name.startswith("dlt-")) and not (
                "raw" in want and t.name.startswith("raw-")):
            continue
        tools.append(t)

    work = a.work_dir or tempfile.mkdtemp(prefix="hiwater-bench-")
    os.makedirs(work, exist_ok=True)
    skipped = {}
    pg_version = pg_available(a.pg_url) if "postgres" in targets else None
    if "postgres" in targets and not pg_version:
        for t in tools:
            if t.target == "postgres":
                skipped[t.key] = f"PostgreSQL not reachable at {a.pg_url}"
    if not os.path.exists(BENCH_PY):
        for t in tools:
            if t.venv == "bench":
                skipped[t.key] = "bench/.venv-bench missing: run bash bench/setup.sh"
    hw_pg_mode = "schema-param"

    # Probe every tool on a tiny data set: a tool that rejects its target is skipped, with why.
    tiny_dir, _ = ensure_data(a.data_dir, 200, a.seed)
    for t in tools:
        if t.key in skipped:
            continue
        why = probe_tool(t, tiny_dir, work, a.pg_url, hw_pg_mode)
        if why:
            if t.name == "hiwater" and t.target != "sqlite":
                skipped[t.key] = f"hiwater does not support this target yet ({why.strip()[:300]})"
            else:
                skipped[t.key] = why.strip()[:400]
            log(f"skip {t.key}: {skipped[t.key]}")
    active = [t for t in tools if t.key not in skipped]

    sections = []
    sizes = [a.n] + ([a.small_n] if a.small_n and a.small_n != a.n else [])
    for n in sizes:
        if n == a.n:
            ts = [t for t in active if not t.slow or a.slow_at_full or not a.small_n]
        else:
            ts = list(active)
        if not ts:
            continue
        d, meta = ensure_data(a.data_dir, n, a.seed)
        log(f"N={n:,}: {len(ts)} tool/target pairs × {a.reps} reps × 3 steps")
        cells = run_section(n, d, meta, ts, a.reps, work, a.pg_url, hw_pg_mode, a.timeout, log)
        wanted = {x.strip() for x in a.slow_full.split(",") if x.strip()}
        extra = [t for t in active if n == a.n and a.small_n and t.slow and t.key in wanted
                 and t not in ts and a.slow_full_reps > 0]
        if extra:
            log(f"N={n:,}: {len(extra)} slow variant(s) × {a.slow_full_reps} rep(s) × 3 steps")
            steps = tuple(x for x in STEPS if x in a.slow_full_steps.split(","))
            more = run_section(n, d, meta, extra, a.slow_full_reps, os.path.join(work, "slow-full"),
                               a.pg_url, hw_pg_mode, a.timeout, log, steps=steps)
            cells.update(more)
        sections.append({"n": n, "meta": {k: meta[k] for k in (
            "n", "seed", "n_new", "n_updates", "expected_rows_delta", "base_bytes",
            "delta_bytes")}, "cells": list(cells.values())})

    memory = []
    if not a.skip_memory:
        sizes_m = [int(x) for x in a.memory_n.split(",") if x.strip()]
        log(f"memory run: hiwater at N = {', '.join(f'{x:,}' for x in sizes_m)}")
        memory = memory_run(sizes_m, a.seed, a.data_dir, work, a.timeout * 3, log)

    sql_source = None
    if a.sql_source_n:
        if not pg_available(a.pg_url):
            sql_source = {"status": "not run", "why": f"PostgreSQL not reachable at {a.pg_url}"}
        elif "--source-table" not in hiwater_help("load"):
            sql_source = {"status": "not run", "why": "this hiwater has no SQL source"}
        else:
            log(f"sql-source: PostgreSQL table of {a.sql_source_n:,} rows + "
                f"{a.sql_source_new:,} new, hiwater → SQLite")
            sql_source = sql_source_run(a.pg_url, a.sql_source_n, a.sql_source_new, a.reps,
                                        work, a.timeout, log)

    profile = None
    if a.profile:
        import profile_hiwater  # noqa: PLC0415
        d, _ = ensure_data(a.data_dir, a.n, a.seed)
        ptargets = ["sqlite"] + (["duckdb"] if any(
            t.name == "hiwater" and t.target == "duckdb" for t in active) else [])
        profile = profile_hiwater.profile(d, os.path.join(work, "profile"), log=log,
                                          targets=ptargets)

    info, versions = machine_info(pg_version)
    src_after = hiwater_src_digest()
    versions["hiwater_src"] = src_before
    if src_after != src_before:
        versions["hiwater_src_changed"] = f"{src_before} -> {src_after}"
        log("WARNING: hiwater's source changed while the benchmark ran; rerun for clean numbers")
    all_other = [m.get("other_cores") for s in sections for c in s["cells"]
                 for st in c["steps"].values() for m in st["samples"]
                 if m.get("other_cores") is not None]
    if all_other:
        all_other.sort()
        info["other_load"] = {
            "median_cores": round(statistics.median(all_other), 2),
            "max_cores": round(all_other[-1], 2),
            "share_over_0.25": round(sum(x > 0.25 for x in all_other) / len(all_other), 2)}
    results = {
        "started": dt.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - started, 1),
        "command": " ".join([os.path.relpath(sys.executable, ROOT)
                             if sys.executable.startswith(ROOT) else sys.executable,
                             os.path.relpath(os.path.abspath(__file__), ROOT)] + sys.argv[1:]),
        "machine": info, "versions": versions,
        "config": {"n": a.n, "small_n": a.small_n, "seed": a.seed, "reps": a.reps,
                   "targets": targets, "tools": a.tools,
                   "slow_at_full": a.slow_at_full, "slow_full": a.slow_full,
                   "slow_full_reps": a.slow_full_reps, "slow_full_steps": a.slow_full_steps},
        "skipped": skipped, "sections": sections, "memory": memory, "sql_source": sql_source,
        "profile": profile,
    }
    os.makedirs(a.results_dir, exist_ok=True)
    path = os.path.join(a.results_dir, f"{stamp}.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=1, default=str)
    log(f"results: {path}")
    if not a.no_doc:
        import report
        report.render(results, a.doc, a.chart, results_path=os.path.relpath(path, ROOT))
        log(f"doc: {a.doc}\nchart: {a.chart}")
    if not a.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    failed = [f"{c['tool']}@{c['target']} N={s['n']} {step}"
              for s in sections for c in s["cells"] for step, st in c["steps"].items()
              if st["status"] == "FAILED"]
    failed += [f"memory N={r['n']} {k}" for r in memory for k in ("first", "delta")
               if k in r and r[k]["status"] == "FAILED"]
    if sql_source and sql_source.get("status") == "FAILED":
        failed.append("sql-source")
    if failed:
        log("FAILED: " + ", ".join(failed))
        return 1
    log(f"done in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

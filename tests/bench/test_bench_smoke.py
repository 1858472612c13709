"""Smoke test of the benchmark machinery (bench/): generator, runner, verification.

Runs bench/run.py at N=2,000 with one repetition for hiwater, the raw limit and the textbook
loop (not dlt: it needs the benchmark's own venv, bench/setup.sh), and checks that every step
ran and passed the runner's verification of the target. Nothing here asserts on a timing.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_generator_is_deterministic_and_shaped(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        subprocess.run([sys.executable, str(BENCH / "generate.py"), "--n", "2000", "--seed", "7",
                        "--out", str(d), "--quiet"], check=True, timeout=300)
    for name in ("base.jsonl", "delta.jsonl"):
        assert _digest(a / name) == _digest(b / name), name

    meta = json.loads((a / "meta.json").read_text())
    base = [json.loads(line) for line in (a / "base.jsonl").read_text().splitlines()]
    delta = [json.loads(line) for line in (a / "delta.jsonl").read_text().splitlines()]
    assert len(base) == meta["n"] == 2000
    assert [r["id"] for r in base] == list(range(1, 2001))
    assert set(base[0]) == {"id", "name", "modified_at", "amount", "score", "user"}
    assert set(base[0]["user"]) == {"name", "tier"}
    # Mostly increasing, with some local disorder and some ties.
    steps = [(x["modified_at"] > y["modified_at"]) - (x["modified_at"] < y["modified_at"])
             for x, y in zip(base[1:], base)]
    assert 0.01 < steps.count(-1) / len(steps) < 0.15
    assert steps.count(0) > 0
    # The delta: the whole base again (some rows updated with newer stamps) plus the new rows.
    assert len(delta) == meta["expected_rows_delta"] == 2000 + meta["n_new"]
    by_id = {r["id"]: r for r in base}
    updated = [r for r in delta if r["id"] in by_id and r != by_id[r["id"]]]
    assert len(updated) == meta["n_updates"] > 0
    assert all(r["modified_at"] > meta["base_max_modified_at"] for r in updated)
    assert all(r["score"] >= meta["update_score_offset"] for r in updated)
    new = [r for r in delta if r["id"] not in by_id]
    assert len(new) == meta["n_new"] and all(r["modified_at"] > meta["base_max_modified_at"]
                                             for r in new)


def test_run_small_benchmark_verifies(tmp_path):
    results = tmp_path / "results"
    cmd = [sys.executable, str(BENCH / "run.py"), "--n", "2000", "--small-n", "0", "--reps", "1",
           "--tools", "hiwater,raw,textbook", "--targets", "sqlite,duckdb", "--skip-memory",
           "--sql-source-n", "0",
           "--no-doc", "--results-dir", str(results), "--data-dir", str(tmp_path / "data"),
           "--work-dir", str(tmp_path / "work")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-4000:]
    (path,) = results.glob("*.json")
    res = json.loads(path.read_text())
    cells = {(c["tool"], c["target"]): c for s in res["sections"] for c in s["cells"]}
    for must in (("hiwater", "sqlite"), ("raw-incremental", "sqlite"), ("raw-upsert-all", "sqlite"),
                 ("textbook", "sqlite"), ("raw-incremental", "duckdb")):
        assert must in cells, (must, res["skipped"])
    for (tool, target), c in cells.items():
        for step, st in c["steps"].items():
            assert st["status"] == "ok", (tool, target, step, st.get("why"))
            assert st["reps"] == 1
    # hiwater's own summary agrees with the data: the delta applies exactly the changes.
    hw = cells[("hiwater", "sqlite")]["steps"]
    first = hw["first"]["samples"][0]["summary"]
    delta = hw["delta"]["samples"][0]["summary"]
    rerun = hw["rerun"]["samples"][0]["summary"]
    meta = json.loads((tmp_path / "data" / "n2000-s42" / "meta.json").read_text())
    assert first["loaded"] == 2000 and first["total_in_target"] == 2000
    assert delta["loaded"] == meta["n_new"] + meta["n_updates"]
    assert delta["total_in_target"] == meta["expected_rows_delta"]
    assert rerun["loaded"] == 0

"""Projects against real databases: three streams (two file sources, one PostgreSQL source
table) into one PostgreSQL target with `hiwater run --jobs 3`, then status and check; and a
failed run's history row and --max-rejected on every target."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

import hiwater

from .conftest import target_for
from .dbutil import PG_URL


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def pg_project(tmp_path, request, pg_admin, pg_schema):
    target = target_for("postgresql", tmp_path, request)
    pg_admin.execute(f'CREATE TABLE "{pg_schema}".orders (id bigint PRIMARY KEY, total numeric, '
                     f'updated_at timestamptz)')
    pg_admin.execute(f'INSERT INTO "{pg_schema}".orders VALUES (1, 9.50, \'2025-01-15T08:00:00Z\'), '
                     f'(2, 12.00, \'2025-01-15T09:30:00Z\')')
    (tmp_path / "landing").mkdir()
    _jsonl(tmp_path / "landing" / "events.jsonl",
           [{"id": i, "name": f"e{i}", "modified_at": f"2025-01-15T1{i}:00:00"} for i in range(3)])
    _jsonl(tmp_path / "landing" / "users.jsonl", [{"user_id": "u1", "seen_at": "2025-01-14T23:00:00"}])
    p = tmp_path / "hiwater.toml"
    p.write_text(f"""
[defaults]
target = "{target}"

[streams.events]
input = "landing/events.jsonl"

[streams.users]
input = "landing/users.jsonl"
key = "user_id"
cursor = "seen_at"

[streams.orders]
source = "{PG_URL}"
source-table = "{pg_schema}.orders"
cursor = "updated_at"
lookback = "15m"
""")
    return p, target


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "hiwater.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_three_streams_into_postgresql_with_jobs_status_and_check(pg_project, tmp_path):
    p, target = pg_project
    run = _cli("run", "--jobs", "3", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert [(s["stream"], s["status"], s["loaded"]) for s in out["streams"]] == [
        ("events", "ok", 3), ("users", "ok", 1), ("orders", "ok", 2)]
    assert out["total"]["loaded"] == 6
    status = _cli("status", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    rows = {s["stream"]: s for s in json.loads(status.stdout)}
    assert {k: v["watermark"] for k, v in rows.items()} == {
        "events": "2025-01-15T12:00:00", "users": "2025-01-14T23:00:00", "orders": "2025-01-15T09:30:00+00:00"}
    assert all(v["last_outcome"] == "committed" and v["load_age_s"] >= 0 for v in rows.values())
    time.sleep(1.1)
    late = _cli("check", "--error-after", "1s", cwd=tmp_path)
    assert late.returncode == 1 and late.stderr.count("error: [") == 3, late.stderr
    fine = _cli("check", "--error-after", "1d", cwd=tmp_path)
    assert fine.returncode == 0, fine.stderr
    # the same target seen without the project
    assert [s["stream"] for s in hiwater.status(target=target)] == ["events", "orders", "users"]
    # JSON log lines from the worker processes parse and carry their run id
    again = _cli("--log-format", "json", "run", "--jobs", "3", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    ev = [json.loads(line) for line in again.stderr.splitlines() if line.strip()]
    done = [e for e in ev if e["event"] == "run_finished"]
    assert sorted(e["stream"] for e in done) == ["events", "orders", "users"]
    assert all(isinstance(e["run_id"], int) and e["run"] for e in done)
    for e in done:
        assert {x["run"] for x in ev if x.get("stream") == e["stream"] and "run" in x} == {e["run"]}


def test_validate_connect_against_postgresql(pg_project, tmp_path):
    r = _cli("validate", "--connect", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert all(s["problems"] == [] for s in json.loads(r.stdout))
    text = (tmp_path / "hiwater.toml").read_text().replace('source-table = "', 'source-table = "nope_')
    (tmp_path / "hiwater.toml").write_text(text)
    bad = _cli("validate", "--connect", "--json", cwd=tmp_path)
    assert bad.returncode == 2 and json.loads(bad.stdout)[2]["problems"][0]["where"] == "source"


@pytest.mark.parametrize("kind", ["postgresql", "duckdb"])
def test_a_failed_run_history_row_and_max_rejected_on_other_targets(kind, tmp_path, request):
    url = target_for(kind, tmp_path, request)
    good = _jsonl(tmp_path / "a.jsonl", [{"id": 1, "modified_at": "2025-01-15T08:00:00"}])
    hiwater.load(str(good), target=url, table="events")
    bad = _jsonl(tmp_path / "b.jsonl", [{"id": 2, "modified_at": "2025-01-15T09:00:00"},
                                        {"id": 3, "modified_at": "garbage"}])
    with pytest.raises(hiwater.QualityError, match="1 of 2 record"):
        hiwater.load(str(bad), target=url, table="events", max_rejected="0")
    hist = hiwater.history(target=url)
    # PostgreSQL numbers runs with a sequence: the rolled-back run's number stays used (a gap)
    failed_id = 2 if kind == "duckdb" else 3
    assert [(h["run_id"], h["outcome"]) for h in hist] == [(1, "committed"), (failed_id, "failed")]
    assert "max-rejected" in hist[1]["error"] and hist[1]["duration_s"] >= 0
    assert hiwater.quarantine_list(target=url) == []
    assert hiwater.state_show(target=url)[0]["watermark"] == "2025-01-15T08:00:00"
    s = hiwater.load(str(bad), target=url, table="events", max_rejected="50%")
    assert (s.loaded, s.counts.rejected) == (1, 1) and s.run_id > failed_id
    (st,) = hiwater.status(target=url)
    assert st["last_outcome"] == "committed" and st["quarantined"] == 1 and st["last_run_id"] == s.run_id

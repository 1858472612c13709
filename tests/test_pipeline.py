"""Projects: hiwater.toml, `hiwater run` / `status` / `check` / `validate`, the same as the
Python API, and the CLI's manners (help, --version, completion, NO_COLOR, missing extras)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hiwater
from hiwater.project import load_project

from conftest import ROOT, SAMPLE, rec, rows, watermark, write_jsonl


def project(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "hiwater.toml"
    p.write_text(text)
    return p


@pytest.fixture
def proj(tmp_path):
    """Two file streams and a stream with its own key/cursor, into one SQLite file."""
    (tmp_path / "landing").mkdir()
    write_jsonl(tmp_path / "landing" / "events.jsonl", [rec(1, "08:00"), rec(2, "09:00")])
    write_jsonl(tmp_path / "landing" / "orders.jsonl",
                [{"order_id": 7, "updated_at": "2025-01-15T10:00:00", "total": 3}])
    return project(tmp_path, """
[defaults]
db = "wh.db"
warn-after = "1h"

[streams.events]
input = "landing/events.jsonl"
error-after = "6h"

[streams.orders]
input = "landing/orders.jsonl"
key = "order_id"
cursor = "updated_at"
max_rejected = "10%"
""")


# --- the project file -------------------------------------------------------------------------

def test_a_project_file_is_read_with_defaults_paths_and_names(proj, tmp_path):
    p = load_project(proj)
    ev, od = p.streams["events"], p.streams["orders"]
    assert ev.load["table"] == ev.load["stream"] == "events"  # the stream's name, by default
    assert ev.load["db"] == str(tmp_path / "wh.db") and ev.load["input"] == str(tmp_path / "landing/events.jsonl")
    assert (ev.warn_after.text, ev.error_after.text) == ("1h", "6h")
    assert od.options.key == ("order_id",) and od.options.max_rejected.percent == 10
    assert od.error_after is None


def test_the_project_is_found_by_option_environment_or_working_directory(proj, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_project().path == "hiwater.toml"
    other = tmp_path / "sub"
    other.mkdir()
    monkeypatch.chdir(other)
    with pytest.raises(hiwater.UsageError, match=r"no hiwater.toml in .*sub \(run in the project's folder"):
        load_project()
    monkeypatch.setenv("HIWATER_PROJECT", str(proj))
    assert load_project().path == str(proj)
    with pytest.raises(hiwater.UsageError, match="--project nope.toml: no such file"):
        load_project("nope.toml")


@pytest.mark.parametrize("text,message", [
    ('[streams.a]\ninput = "x"\ndb = "t.db"\ncursr = "ts"\n', "unknown key 'cursr' (did you mean 'cursor'?)"),
    ('[default]\ndb = "t.db"\n', "unknown table [default] (did you mean 'defaults'?)"),
    ('[streams.a]\ninput = "x"\ndb = "t.db"\nsource-table = "t"\nsource_table = "t"\n', "are the same key"),
    ('[streams.a]\ninput = "x"\n', "no target"),
    ('[streams.a]\ndb = "t.db"\n', "no input and no source"),
    ('[streams.a]\ninput = "x"\nsource = "sqlite:///s.db"\ndb = "t.db"\n', "give input or source, not both"),
    ('[streams.a]\nsource = "sqlite:///s.db"\ndb = "t.db"\n', "exactly one of source-table or query"),
    ('[streams.a]\ninput = "x"\ndb = "t.db"\non-late = "maybe"\n', "on-late 'maybe': choose detect"),
    ('[streams.a]\ninput = "x"\ndb = "t.db"\nfull-load = "yes"\n', "full-load must be true or false"),
    ('[streams.a]\ninput = "x"\ndb = "t.db"\nwarn-after = "6h"\nerror-after = "1h"\n', "later than error-after"),
    ('[streams.a]\ninput = "x"\ndb = "t.db"\nmax-rejected = "lots"\n', "max-rejected 'lots'"),
    ('[streams.a]\ninput = "${NOPE_NOT_SET}"\ndb = "t.db"\n', "the environment variable NOPE_NOT_SET is not set"),
    ('[streams.a\ninput = "x"\n', "not valid TOML"),
    ("[defaults]\n", "no streams"),
])
def test_project_file_mistakes_are_usage_errors_naming_the_place(tmp_path, hw, text, message):
    p = project(tmp_path, text)
    with pytest.raises(hiwater.UsageError) as e:
        load_project(p)
    assert message in str(e.value) and str(p) in str(e.value)
    r = hw("validate", "--project", p)
    assert r.code == 2 and r.err_lines[0].startswith("error: ") and message in r.err


def test_environment_variables_are_expanded_and_dollars_escaped(tmp_path, monkeypatch):
    monkeypatch.setenv("WH", "warehouse")
    p = project(tmp_path, '[streams.a]\ninput = "x.jsonl"\ndb = "${WH}.db"\ntable = "cost$$"\n')
    s = load_project(p).streams["a"]
    assert s.load["db"] == str(tmp_path / "warehouse.db") and s.load["table"] == "cost$"


def test_relative_sqlite_and_duckdb_urls_are_the_project_folders(tmp_path):
    p = project(tmp_path, '[streams.a]\ninput = "x.jsonl"\ntarget = "sqlite:///rel/t.db"\n'
                          '[streams.b]\ninput = "/abs/x.jsonl"\ntarget = "postgresql://u@h/db"\n')
    s = load_project(p).streams
    assert s["a"].load["target"] == f"sqlite:///{tmp_path}/rel/t.db"
    assert s["b"].load["target"] == "postgresql://u@h/db" and s["b"].load["input"] == "/abs/x.jsonl"


# --- run ---------------------------------------------------------------------------------------

def test_run_loads_every_stream_and_prints_a_summary_each_and_a_total(proj, tmp_path, hw):
    r = hw("run", "--project", proj, "--json")
    assert r.code == 0, r.err
    out = r.json
    assert [s["stream"] for s in out["streams"]] == ["events", "orders"]
    assert [s["status"] for s in out["streams"]] == ["ok", "ok"]
    assert [s["loaded"] for s in out["streams"]] == [2, 1] and out["total"]["loaded"] == 3
    assert out["total"]["failed"] == 0 and out["streams"][0]["duration_s"] >= 0
    db = tmp_path / "wh.db"
    assert set(rows(db, "events")) == {1, 2}
    assert watermark(db, "orders") is not None
    table = hw("run", "--project", proj)  # a second run: nothing new; a table for people
    assert table.code == 0 and "events" in table.out and "total" in table.out and "2/2 ok" in table.out
    assert "warning: [events] every record was skipped" in table.err  # warnings name their stream


def test_run_named_streams_only_and_unknown_names(proj, tmp_path, hw):
    r = hw("run", "orders", "--project", proj, "--json")
    assert r.code == 0 and [s["stream"] for s in r.json["streams"]] == ["orders"]
    bad = hw("run", "order", "--project", proj)
    assert bad.code == 2 and "no stream named 'order' (did you mean 'orders'?)" in bad.err


def test_a_failed_stream_fails_the_run_and_the_others_still_commit(proj, tmp_path, hw):
    write_jsonl(tmp_path / "landing" / "events.jsonl", [rec(1, "08:00"), {"id": 3, "modified_at": "bad"}])
    text = proj.read_text().replace('error-after = "6h"', 'error-after = "6h"\nstrict = true')
    proj.write_text(text)
    r = hw("run", "--project", proj, "--json")
    assert r.code == 1
    ev, od = r.json["streams"]
    assert ev["status"] == "failed" and ev["error"] == "StrictError" and ev["exit_code"] == 1
    assert od["status"] == "ok" and od["loaded"] == 1
    assert watermark(tmp_path / "wh.db", "orders") is not None
    assert watermark(tmp_path / "wh.db", "events") is None
    assert "error: [events]" in r.err and "record 2" in r.err
    with pytest.raises(hiwater.PipelineError) as e:
        hiwater.run(project=proj)
    assert [s.status for s in e.value.result.streams] == ["failed", "ok"] and e.value.exit_code == 1
    res = hiwater.run(project=proj, raise_on_failure=False)
    assert not res.ok and [s.stream for s in res.failed] == ["events"]


def test_fail_fast_starts_no_further_stream(proj, tmp_path, hw):
    write_jsonl(tmp_path / "landing" / "events.jsonl", [{"id": 3, "modified_at": "bad"}])
    proj.write_text(proj.read_text().replace('error-after = "6h"', 'error-after = "6h"\nstrict = true'))
    r = hw("run", "--project", proj, "--fail-fast", "--json")
    assert r.code == 1 and [s["status"] for s in r.json["streams"]] == ["failed", "not run"]
    assert r.json["total"]["not_run"] == 1
    assert watermark(tmp_path / "wh.db", "orders") is None


def test_dry_run_writes_nothing(proj, tmp_path, hw):
    r = hw("run", "--project", proj, "--dry-run", "--json")
    assert r.code == 0 and all(s["dry_run"] for s in r.json["streams"])
    assert not (tmp_path / "wh.db").exists() or watermark(tmp_path / "wh.db", "events") is None


def test_jobs_run_streams_in_processes_and_streams_of_one_sqlite_file_one_after_another(tmp_path, hw):
    """Three streams: two into one SQLite file (one lane, in order), one into another file."""
    big = [rec(i, "08:00") for i in range(3000)]
    for name in ("a", "b", "c"):
        write_jsonl(tmp_path / f"{name}.jsonl", big)
    p = project(tmp_path, '[defaults]\ndb = "one.db"\nlock-timeout = "0"\n'
                          '[streams.a]\ninput = "a.jsonl"\n[streams.b]\ninput = "b.jsonl"\n'
                          '[streams.c]\ninput = "c.jsonl"\ndb = "two.db"\n')
    from hiwater.pipeline import lane_of
    lanes = [lane_of(c) for c in load_project(p).streams.values()]
    assert lanes[0] == lanes[1] != lanes[2]
    r = hw("run", "--project", p, "--jobs", "3", "--json")
    assert r.code == 0, r.err
    assert [s["loaded"] for s in r.json["streams"]] == [3000, 3000, 3000]
    # a and b shared one.db without waiting on its busy timeout (lock-timeout 0 would have failed them)
    hist = hiwater.history(db=str(tmp_path / "one.db"))
    (a,), (b,) = [[h for h in hist if h["stream"] == s] for s in ("a", "b")]
    assert a["finished_at"] <= b["started_at"]
    assert {s["run_id"] for s in r.json["streams"][:2]} == {1, 2}


# --- status and check ----------------------------------------------------------------------------

def test_status_lists_every_stream_with_watermark_ages_last_run_and_quarantine(proj, tmp_path, hw):
    never = hw("status", "--project", proj, "--json")
    assert never.code == 0 and [s["last_outcome"] for s in never.json] == ["never run", "never run"]
    write_jsonl(tmp_path / "landing" / "events.jsonl", [rec(1, "08:00"), rec(2, "09:00"),
                                                        {"id": 3, "modified_at": "bad"}])
    assert hw("run", "--project", proj).code == 0
    r = hw("status", "--project", proj, "--json", "--now", "2025-01-15T10:00:00Z")
    assert r.code == 0
    ev, od = r.json
    assert (ev["stream"], ev["watermark"], ev["data_age"], ev["data_age_s"]) == ("events", "2025-01-15T09:00:00",
                                                                                  "1h", 3600.0)
    assert ev["last_outcome"] == "committed" and ev["last_loaded"] == 2 and ev["last_rejected"] == 1
    assert ev["quarantined"] == 1 and ev["last_duration_s"] >= 0 and ev["last_run_id"] == 1
    assert od["watermark"] == "2025-01-15T10:00:00" and od["data_age"] == "0.0s"
    assert (ev["warn_after"], ev["error_after"]) == ("1h", "6h")
    # the same from the target, without the project
    by_target = hiwater.status(db=str(tmp_path / "wh.db"), now="2025-01-15T10:00:00Z")
    assert [s["stream"] for s in by_target] == ["events", "orders"] and by_target[0]["watermark"] == ev["watermark"]
    text = hw("status", "--project", proj)
    assert "events" in text.out and "committed" in text.out


def test_status_shows_a_failed_last_run_and_its_error(proj, tmp_path, hw):
    assert hw("run", "--project", proj).code == 0
    proj.write_text(proj.read_text().replace('error-after = "6h"', 'error-after = "6h"\nstrict = true'))
    write_jsonl(tmp_path / "landing" / "events.jsonl", [{"id": 3, "modified_at": "bad"}])
    assert hw("run", "events", "--project", proj).code == 1
    (ev,) = hiwater.status(["events"], project=proj)
    assert ev["last_outcome"] == "failed" and "bad" in ev["last_error"] and ev["last_run_id"] == 3
    assert ev["load_age_s"] is not None and ev["watermark"] == "2025-01-15T09:00:00"  # the last success stands


def test_check_exits_1_past_error_after_and_0_within(proj, tmp_path, hw):
    assert hw("run", "--project", proj).code == 0
    time.sleep(1.05)
    late = hw("check", "--project", proj, "--error-after", "1s", "--json")
    assert late.code == 1 and [c["verdict"] for c in late.json] == ["error", "error"]
    assert "error: [events] load age 1s, past error-after 1s" in late.err
    fine = hw("check", "--project", proj, "--error-after", "1d")
    assert fine.code == 0 and "ok" in fine.out
    # the file's limits: warn-after 1h for both, error-after 6h for events; by data age at a chosen now
    data = hw("check", "--project", proj, "--by", "data", "--now", "2025-01-15T16:00:00Z", "--json")
    assert data.code == 1 and [(c["stream"], c["verdict"]) for c in data.json] == [("events", "error"),
                                                                                  ("orders", "warn")]
    assert "warning: [orders] data age 6h, past warn-after 1h" in data.err


def test_check_refuses_streams_without_a_limit_and_never_run_streams_are_late(tmp_path, hw):
    write_jsonl(tmp_path / "a.jsonl", [rec(1, "08:00")])
    p = project(tmp_path, '[defaults]\ndb = "t.db"\n[streams.a]\ninput = "a.jsonl"\n')
    r = hw("check", "--project", p)
    assert r.code == 2 and "no freshness limit for stream(s) a" in r.err
    never = hw("check", "--project", p, "--warn-after", "1h", "--json")
    assert never.code == 0 and never.json[0]["verdict"] == "warn" and never.json[0]["age"] is None
    assert hw("check", "--project", p, "--error-after", "1h").code == 1


def test_check_by_data_refuses_an_integer_cursor(tmp_path, hw):
    write_jsonl(tmp_path / "a.jsonl", [{"id": 1, "seq": 5}])
    p = project(tmp_path, '[defaults]\ndb = "t.db"\n[streams.a]\ninput = "a.jsonl"\ncursor = "seq"\n')
    assert hw("run", "--project", p).code == 0
    r = hw("check", "--project", p, "--by", "data", "--error-after", "1h")
    assert r.code == 2 and "integer cursor" in r.err
    assert hw("check", "--project", p, "--error-after", "1h").code == 0


def test_validate_connect_finds_missing_inputs_and_sources(tmp_path, hw):
    write_jsonl(tmp_path / "a.jsonl", [rec(1, "08:00")])
    src = tmp_path / "src.db"
    con = sqlite3.connect(src)
    con.execute("CREATE TABLE orders (id INTEGER, modified_at TEXT)")
    con.commit()
    con.close()
    p = project(tmp_path, '[defaults]\ndb = "t.db"\n[streams.a]\ninput = "a.jsonl"\n'
                          '[streams.b]\ninput = "missing/*.jsonl"\n'
                          '[streams.c]\nsource = "sqlite:///src.db"\nsource-table = "orders"\n'
                          '[streams.d]\nsource = "sqlite:///src.db"\nsource-table = "orders"\ncursor = "ts"\n')
    assert hw("validate", "--project", p).code == 0
    r = hw("validate", "--project", p, "--connect", "--json")
    probs = {s["stream"]: [x["message"] for x in s["problems"]] for s in r.json}
    assert probs["a"] == [] and probs["c"] == []
    assert "no file matches" in probs["b"][0] and "ts" in probs["d"][0]
    assert r.code == 2  # the worst problem: a column that is not there (configuration)
    assert not (tmp_path / "t.db").exists()  # nothing written, not even the database file


def test_the_api_mirrors_the_cli(proj, tmp_path):
    res = hiwater.run(project=proj, streams=["events"])
    assert res.ok and [s.summary.loaded for s in res.streams] == [2]
    assert [r["stream"] for r in hiwater.status(project=proj)] == ["events", "orders"]
    checked = hiwater.check(["events"], project=proj, error_after="1d")
    assert [c["verdict"] for c in checked] == ["ok"]
    assert [v["stream"] for v in hiwater.validate(project=proj)] == ["events", "orders"]


# --- CLI manners ------------------------------------------------------------------------------

def test_no_arguments_prints_help_and_exits_0(hw):
    r = hw()
    assert r.code == 0 and "Usage: hiwater" in r.out and "run" in r.out and "completion" in r.out.lower()


def test_version(hw):
    r = hw("--version")
    assert r.code == 0 and r.out.strip() == f"hiwater, version {hiwater.__version__}"


def test_shell_completion_script_and_stream_names(proj, tmp_path):
    env = {**os.environ, "_HIWATER_COMPLETE": "bash_source"}
    out = subprocess.run([sys.executable, "-m", "hiwater.cli"], env=env, capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0 and "_HIWATER_COMPLETE=bash_complete" in out.stdout
    env.update(_HIWATER_COMPLETE="bash_complete", COMP_WORDS="hiwater run or", COMP_CWORD="2")
    names = subprocess.run([sys.executable, "-m", "hiwater.cli"], env=env, capture_output=True, text=True,
                           cwd=tmp_path)
    assert "orders" in names.stdout and "events" not in names.stdout


def test_no_color_is_honoured(proj, hw, monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    coloured = hw("status", "--project", proj)
    assert "\x1b[" in coloured.out
    monkeypatch.setenv("NO_COLOR", "1")
    plain = hw("status", "--project", proj)
    assert plain.code == 0 and "\x1b[" not in plain.out


def test_a_missing_extra_is_one_line_naming_it(hw, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    r = hw("simulate", "--runs", "2", "--plot", tmp_path / "p.png")
    assert r.code == 2 and r.err_lines == ["error: --plot needs matplotlib, which is not installed "
                                           "(pip install 'hiwater[plot]')"]
    r = hw("simulate", "--runs", "2", "--report", tmp_path / "r.md")
    assert r.code == 2 and "pip install 'hiwater[plot]'" in r.err
    monkeypatch.setitem(sys.modules, "psycopg", None)
    r = hw("load", "--input", SAMPLE, "--target", "postgresql://u@h/db")
    assert r.code == 2 and r.err_lines == ["error: a PostgreSQL target needs the psycopg driver, which is not "
                                           "installed (pip install 'hiwater[postgres]')"]


def test_docs_examples_orchestrator_functions_run_without_airflow_or_dagster(proj, tmp_path, monkeypatch):
    """The Airflow task and the Dagster asset in docs/pipelines.md are plain functions: call them."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("orchestrators", ROOT / "docs" / "examples" / "orchestrators.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert "airflow" not in sys.modules and "dagster" not in sys.modules
    monkeypatch.setenv("HIWATER_PROJECT", str(proj))
    out = mod.load_streams()
    assert out["total"]["failed"] == 0 and out["total"]["loaded"] == 3
    meta = mod.hiwater_streams()
    assert meta["streams"] == 2 and meta["loaded"] == 0
    assert mod.freshness_gate(error_after="1d") == {"events": "ok", "orders": "ok"}
    with pytest.raises(hiwater.HiwaterError):
        mod.freshness_gate(error_after="1ms")
    text = (ROOT / "docs" / "pipelines.md").read_text()
    for name in ("def load_streams", "def hiwater_streams", "def freshness_gate"):
        assert name in text  # the page shows the functions the tests call

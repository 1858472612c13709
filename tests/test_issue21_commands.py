"""Issue 21, what the commands see: refused runs in the history (item 4), streams that never
succeeded (5), a project stream's own state name (6), a target that is down (8), silent defaults
(12) and read commands that must not create anything (10)."""

from __future__ import annotations

import os

import hiwater
from conftest import NOW, rec, write_jsonl


def _two_runs(hw, tmp_path):
    db = tmp_path / "t.db"
    f = write_jsonl(tmp_path / "a.jsonl", [rec(1, "08:00"), rec(2, "09:00")])
    assert hw("load", "--input", f, "--db", db, "--table", "events", "--now", NOW).code == 0
    return db, f


# --- item 4: the history of refused runs -------------------------------------------------------

def test_a_refused_run_records_the_streams_watermark(hw, tmp_path):
    db, f = _two_runs(hw, tmp_path)
    for flag in (("--cursor", "other_at"), ("--key", "other"), ("--assume-tz", "Europe/Paris")):
        assert hw("load", "--input", f, "--db", db, "--table", "events", "--now", NOW, *flag).code == 2
    failed = [h for h in hiwater.history(db=str(db)) if h["outcome"] == "failed"]
    assert len(failed) == 3
    for h in failed:
        assert h["watermark_before"] == h["watermark_after"] == "2025-01-15T09:00:00"
    # rewinding to a refused run puts the watermark where it stood before that run: unchanged
    r = hw("state", "rewind", "--db", db, "--stream", "events", "--to-run", failed[0]["run_id"], "--json")
    assert r.code == 0 and r.json[0]["watermark"] == "2025-01-15T09:00:00"


def test_state_set_on_a_stream_without_a_cursor_kind_is_refused(hw, tmp_path):
    db = tmp_path / "t.db"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert hw("load", "--input", empty, "--db", db, "--table", "events", "--now", NOW).code == 0
    assert hiwater.state_show(db=str(db))[0]["kind"] is None
    r = hw("state", "set", "--db", db, "--stream", "events", "20")
    assert r.code == 2 and "1970" not in r.out and "kind" in r.err
    assert hiwater.state_show(db=str(db))[0]["watermark"] is None
    assert hw("state", "set", "--db", db, "--stream", "events", "null").code == 0


# --- item 5: a stream that never succeeded is failing, not absent -----------------------------

def test_a_stream_whose_runs_all_failed_is_listed_and_fails_check(hw, tmp_path):
    db = tmp_path / "t.db"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    assert hw("load", "--input", bad, "--db", db, "--table", "events", "--now", NOW, "--strict").code != 0
    assert hiwater.state_show(db=str(db)) == []
    (row,) = hiwater.status(db=str(db), now=NOW)
    assert (row["stream"], row["last_outcome"]) == ("events", "failed")
    r = hw("check", "--db", db, "--error-after", "1d", "--now", NOW, "--json")
    assert r.code == 1 and [c["verdict"] for c in r.json] == ["error"]


# --- item 6: a project stream's own state name ------------------------------------------------

def _project(tmp_path, body: str):
    p = tmp_path / "hiwater.toml"
    p.write_text(body)
    return p


def test_status_and_check_use_a_project_streams_own_state_name(hw, tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [rec(1, "2025-05-31T23:00:00")])
    p = _project(tmp_path, '[defaults]\ndb = "t.db"\nerror-after = "1d"\n[streams.orders]\ninput = "a.jsonl"\n'
                           'stream = "orders_v2"\n')
    assert hw("run", "--project", p).code == 0
    (row,) = hiwater.status(project=str(p), now=NOW)
    assert (row["stream"], row["last_outcome"], row["watermark"]) == ("orders", "committed", "2025-05-31T23:00:00")
    r = hw("check", "--project", p, "--now", NOW, "--json")
    assert r.code == 0 and r.json[0]["verdict"] == "ok"


# --- item 8: a target that is down ------------------------------------------------------------

def test_status_shows_every_stream_when_one_target_is_down(hw, tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [rec(1, "2025-05-31T23:00:00")])
    p = _project(tmp_path, '[streams.good]\ninput = "a.jsonl"\ndb = "t.db"\n'
                           '[streams.down]\ninput = "a.jsonl"\ntarget = "postgresql://nobody@127.0.0.1:1/x"\n')
    assert hw("run", "--project", p, "good").code == 0
    r = hw("status", "--project", p, "--now", NOW, "--json")
    assert r.code == 1
    rows = {row["stream"]: row for row in r.json}
    assert rows["good"]["last_outcome"] == "committed"
    assert rows["down"]["last_outcome"] == "unreachable" and rows["down"]["last_error"]
    r = hw("status", "--project", p, "--now", NOW)
    assert r.code == 1 and "good" in r.out and "unreachable" in r.out


# --- item 12: silent defaults -----------------------------------------------------------------

def test_a_folder_without_table_warns_about_the_default(hw, tmp_path):
    folder = tmp_path / "land"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", [rec(1, "08:00")])
    r = hw("load", "--input", folder, "--db", tmp_path / "t.db", "--now", NOW)
    assert r.code == 0 and "'records'" in r.err and "--table" in r.err
    r = hw("load", "--input", str(folder / "*.jsonl"), "--db", tmp_path / "t.db", "--now", NOW)
    assert r.code == 0 and "--table" in r.err
    r = hw("load", "--input", folder, "--db", tmp_path / "u.db", "--table", "events", "--now", NOW)
    assert r.code == 0 and "--table" not in r.err


def test_read_commands_need_a_target(hw, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HIWATER_TARGET_URL", raising=False)
    for cmd in (("history",), ("state", "show"), ("quarantine", "list")):
        r = hw(*cmd)
        assert r.code == 2 and "--db" in r.err and "(none)" not in r.out, cmd


def test_a_mistyped_db_is_no_such_database(hw, tmp_path):
    missing = tmp_path / "typo.db"
    for cmd in (("history",), ("state", "show"), ("quarantine", "list"), ("status",), ("check", "--error-after", "1d"),
                ("state", "reset", "--stream", "x"), ("stream", "drop", "x")):
        r = hw(*cmd, "--db", missing)
        assert r.code == 2 and "no such database" in r.err, cmd
        assert not missing.exists(), cmd

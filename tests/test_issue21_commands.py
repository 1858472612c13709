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

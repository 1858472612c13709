"""Issue 22 item 5: ``--start VALUE`` (and ``start = "…"`` in hiwater.toml) gives a new stream its
first watermark, as dlt's ``initial_value`` and Airbyte's ``start_date`` do: records below it are
not loaded and not late (counted ``below_window``, never quarantined), and the watermark starts
there. On a stream that has state it is ignored, with a warning when it would have mattered."""

from __future__ import annotations

import sqlite3

import pytest

import hiwater
from hiwater.errors import UsageError
from conftest import NOW, rec, rows, write_jsonl


def quarantined(db) -> int:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT count(*) FROM _hiwater_quarantine").fetchone()[0]
    finally:
        con.close()


def _wm(db) -> str:
    return hiwater.state_show(db=str(db))[0]["watermark"]


def test_start_skips_older_records_on_the_first_run(hw, tmp_path):
    db = tmp_path / "t.db"
    src = write_jsonl(tmp_path / "events.jsonl", [rec(1, "08:00"), rec(2, "10:00"), rec(3, "12:00")])
    r = hw("load", "-i", src, "--db", db, "--start", "2025-01-15T10:00:00", "--now", NOW, "--details")
    assert r.code == 0, r.err
    s = r.json
    assert (s["loaded"], s["below_window"], s["late"], s["rejected"]) == (2, 1, 0, 0)
    assert sorted(rows(db)) == [2, 3]
    assert quarantined(db) == 0
    assert _wm(db) == "2025-01-15T12:00:00"


def test_the_watermark_starts_at_start_when_every_record_is_older(hw, tmp_path):
    db = tmp_path / "t.db"
    src = write_jsonl(tmp_path / "events.jsonl", [rec(1, "08:00")])
    r = hw("load", "-i", src, "--db", db, "--start", "2025-01-15T10:00:00", "--now", NOW, "--details")
    assert r.code == 0, r.err
    assert (r.json["loaded"], r.json["below_window"]) == (0, 1)
    assert _wm(db) == "2025-01-15T10:00:00"
    # The next run (without --start) goes on from there: the old record is late, not new.
    write_jsonl(src, [rec(1, "08:00"), rec(4, "11:00")])
    r = hw("load", "-i", src, "--db", db, "--now", NOW, "--details")
    assert (r.json["loaded"], r.json["late"]) == (1, 1)


def test_start_is_ignored_on_a_stream_with_state(hw, tmp_path):
    db = tmp_path / "t.db"
    src = write_jsonl(tmp_path / "events.jsonl", [rec(1, "08:00")])
    assert hw("load", "-i", src, "--db", db, "--now", NOW).code == 0
    write_jsonl(src, [rec(1, "08:00"), rec(2, "09:00")])
    r = hw("load", "-i", src, "--db", db, "--start", "2025-01-15T10:00:00", "--now", NOW, "--details")
    assert r.code == 0, r.err
    assert r.json["loaded"] == 1 and sorted(rows(db)) == [1, 2]
    assert any("--start 2025-01-15T10:00:00 is ignored" in w for w in r.json["warnings"]), r.json["warnings"]
    # A start the watermark has passed changes nothing: no word about it.
    r = hw("load", "-i", src, "--db", db, "--start", "2025-01-15T07:00:00", "--now", NOW, "--details")
    assert not any("--start" in w for w in r.json["warnings"])


def test_start_is_checked_against_the_cursor_kind(hw, tmp_path):
    db = tmp_path / "t.db"
    src = write_jsonl(tmp_path / "events.jsonl", [{"id": 1, "name": "a", "seq": 5}, {"id": 2, "name": "b", "seq": 9}])
    r = hw("load", "-i", src, "--db", db, "--cursor", "seq", "--start", "2025-01-01", "--now", NOW)
    assert r.code == 2 and "--start '2025-01-01'" in r.err
    r = hw("load", "-i", src, "--db", db, "--cursor", "seq", "--start", "not a time", "--now", NOW)
    assert r.code == 2 and "--start" in r.err
    r = hw("load", "-i", src, "--db", db, "--cursor", "seq", "--start", "7", "--now", NOW, "--details")
    assert r.code == 0 and (r.json["loaded"], r.json["below_window"]) == (1, 1)


def test_start_with_since_or_full_load_is_refused(hw, tmp_path):
    src = write_jsonl(tmp_path / "events.jsonl", [rec(1, "08:00")])
    for extra in (("--since", "2025-01-15"), ("--full-load",)):
        r = hw("load", "-i", src, "--db", tmp_path / "t.db", "--start", "2025-01-15", *extra)
        assert r.code == 2 and "--start" in r.err


def test_start_in_the_project_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "events.jsonl", [rec(1, "08:00"), rec(2, "12:00")])
    (tmp_path / "hiwater.toml").write_text(
        '[defaults]\ndb = "t.db"\n\n'
        '[streams.events]\ninput = "events.jsonl"\nstart = 2025-01-15T10:00:00\n')
    [res] = hiwater.run().streams
    assert res.ok, res.error
    assert (res.summary.loaded, res.summary.counts.below_window) == (1, 1)
    assert sorted(rows(tmp_path / "t.db")) == [2]
    (tmp_path / "hiwater.toml").write_text(
        '[defaults]\ndb = "t.db"\n\n[streams.events]\ninput = "events.jsonl"\nstart = ["x"]\n')
    with pytest.raises(UsageError, match="start"):
        hiwater.validate()

"""`hiwater state|history|quarantine`: inspect and repair a stream without SQL."""

from __future__ import annotations

import json

import hiwater
from conftest import NOW, SAMPLE, rec, rows, write_jsonl


def setup_two_runs(hw, tmp_path):
    db = tmp_path / "t.db"
    assert hw("load", "--input", SAMPLE, "--db", db, "--table", "events").code == 0
    f = write_jsonl(tmp_path / "b.jsonl", [rec(6, "12:00"), rec(7, "09:00"), rec(8, "2030-01-01T00:00:00"),
                                           {"id": 9, "modified_at": "junk"}])
    assert hw("load", "--input", f, "--db", db, "--table", "events", "--now", NOW).code == 0
    return db


def test_state_show_json_and_table(hw, tmp_path):
    db = setup_two_runs(hw, tmp_path)
    r = hw("state", "show", "--db", db, "--json")
    (s,) = r.json
    assert (s["stream"], s["watermark"], s["kind"], s["key"], s["last_run"]) == (
        "events", "2025-01-15T12:00:00", "timestamp", ["id"], 2)
    r = hw("state", "show", "--db", db)
    assert r.code == 0 and "2025-01-15T12:00:00" in r.out


def test_state_set_reset_and_rewind(hw, tmp_path):
    db = setup_two_runs(hw, tmp_path)
    assert hw("state", "set", "--db", db, "--stream", "events", "2025-01-15T10:00:00", "--json").json[0][
        "watermark"] == "2025-01-15T10:00:00"
    r = hw("load", "--input", SAMPLE, "--db", db, "--table", "events", "--now", NOW, "--details")
    assert (r.json["previous_watermark"], r.json["unchanged"], r.json["below_window"]) == (
        "2025-01-15T10:00:00", 5, 0)
    assert hw("state", "rewind", "--db", db, "--stream", "events", "--to-run", "2", "--json").json[0][
        "watermark"] == "2025-01-15T11:15:00"
    assert hw("state", "reset", "--db", db, "--stream", "events", "--json").json[0]["watermark"] is None
    r = hw("load", "--input", SAMPLE, "--db", db, "--table", "events", "--now", NOW, "--details")
    assert r.json["previous_watermark"] is None and r.json["unchanged"] == 5


def test_state_errors_name_the_problem(hw, tmp_path):
    db = setup_two_runs(hw, tmp_path)
    r = hw("state", "set", "--db", db, "--stream", "nope", "2025-01-01")
    assert r.code == 2 and r.err_lines == [f"error: no stream named 'nope' in sqlite:///{db} "
                                           f"(`hiwater state show` lists the streams)"]
    r = hw("state", "rewind", "--db", db, "--stream", "events", "--to-run", "99")
    assert r.code == 2 and r.err_lines == ["error: stream 'events' has no run 99 (`hiwater history` lists the runs)"]
    r = hw("state", "set", "--db", db, "--stream", "events", "noon")
    assert r.code == 2 and r.err_lines == ["error: state set 'noon': cursor 'noon' is not an ISO-8601 timestamp"]


def test_history_has_one_row_per_run_with_counts_and_watermarks(hw, tmp_path):
    db = setup_two_runs(hw, tmp_path)
    h = hw("history", "--db", db, "--json").json
    assert [(x["run_id"], x["inserted"], x["late"], x["future"], x["rejected"], x["watermark_before"],
             x["watermark_after"], x["outcome"]) for x in h] == [
        (1, 5, 0, 0, 0, None, "2025-01-15T11:15:00", "committed"),
        (2, 1, 1, 1, 1, "2025-01-15T11:15:00", "2025-01-15T12:00:00", "committed")]
    assert [x["max_lateness"] for x in h] == [None, "2h15m"]
    assert hw("history", "--db", db).code == 0


def test_history_has_a_row_per_committed_window(hw, tmp_path):
    db = tmp_path / "t.db"
    hw("load", "--input", SAMPLE, "--db", db, "--window", "1h")
    h = hiwater.history(db=str(db))
    assert [x["window_index"] for x in h] == [0, 1, 2, 3, 4]
    assert [x["watermark_after"] for x in h[1:]] == ["2025-01-15T08:05:00", "2025-01-15T09:30:00",
                                                      "2025-01-15T10:00:00", "2025-01-15T11:15:00"]


def test_quarantine_list_and_replay(hw, tmp_path):
    db = setup_two_runs(hw, tmp_path)
    q = hw("quarantine", "list", "--db", db, "--json").json
    assert sorted((x["reason"], json.loads(x["key"])[0]) for x in q) == [("future", 8), ("invalid", 9),
                                                                         ("late", 7)]
    assert hw("quarantine", "list", "--db", db).code == 0
    r = hw("quarantine", "replay", "--db", db, "--stream", "events", "--reason", "late", "--now", NOW)
    assert r.code == 0 and r.json["inserted"] == 1 and r.json["late_applied"] == 1
    assert 7 in rows(db)
    left = hiwater.quarantine_list(db=str(db))
    assert sorted(x["reason"] for x in left) == ["future", "invalid"]
    # replaying the rest: the invalid one fails again and stays; the future one stays until its time
    r = hw("quarantine", "replay", "--db", db, "--stream", "events", "--now", NOW)
    assert r.json["rejected"] == 1 and r.json["future"] == 1
    assert sorted(x["reason"] for x in hiwater.quarantine_list(db=str(db))) == ["future", "invalid"]
    r = hw("quarantine", "replay", "--db", db, "--stream", "events", "--reason", "future",
           "--now", "2030-01-01T12:00:00Z")
    assert r.json["inserted"] == 1 and 8 in rows(db)


def test_quarantine_does_not_grow_when_the_same_file_is_loaded_again(hw, tmp_path):
    db = setup_two_runs(hw, tmp_path)
    hw("load", "--input", tmp_path / "b.jsonl", "--db", db, "--table", "events", "--now", NOW)
    q = hiwater.quarantine_list(db=str(db))
    assert len(q) == 3 and {x["seen"] for x in q} == {2} and {x["last_run"] for x in q} == {3}


def test_meta_query_builders_render_parameters_not_values():
    from hiwater.targets.metaquery import history_query, quarantine_query
    assert history_query("_hiwater_history", "?", "s1", 5) == (
        "SELECT * FROM (SELECT * FROM _hiwater_history WHERE stream = ? ORDER BY run_id DESC, window_index DESC"
        " LIMIT ?) AS h ORDER BY run_id, window_index", ["s1", 5])
    assert quarantine_query('"x"."_hiwater_quarantine"', "%s", None, "late") == (
        'SELECT * FROM "x"."_hiwater_quarantine" WHERE 1 = 1 AND reason = %s ORDER BY id', ["late"])


def test_a_replayed_late_delete_deletes_its_key_with_the_streams_delete_field(hw, tmp_path):
    """A late delete record is quarantined like any late record; ``quarantine replay
    --delete-field`` applies it as a delete (without the flag it would come back as a row)."""
    db = tmp_path / "t.db"
    a = write_jsonl(tmp_path / "a.jsonl", [rec(1, "10:00"), rec(2, "10:00"), rec(3, "11:00")])
    common = ["--db", db, "--table", "events", "--now", NOW, "--delete-field", "gone"]
    assert hw("load", "--input", a, *common).code == 0
    b = write_jsonl(tmp_path / "b.jsonl", [rec(2, "10:30", gone=True)])  # below the 11:00 watermark
    r = hw("load", "--input", b, *common, "--details")
    assert r.code == 0 and r.json["late"] == 1 and 2 in rows(db)
    r = hw("quarantine", "replay", "--db", db, "--stream", "events", "--now", NOW, "--delete-field", "gone")
    assert r.code == 0 and r.json["deleted"] == 1, r.out
    assert 2 not in rows(db) and hiwater.quarantine_list(db=str(db)) == []

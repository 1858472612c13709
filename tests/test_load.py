"""The loader's behaviour end to end on a real SQLite file, through the CLI in-process."""

from __future__ import annotations

import json
import sqlite3

import pytest

import hiwater
from conftest import NOW, SAMPLE, rec, rows, watermark, write_jsonl

SIX = ["source_records", "loaded", "skipped", "previous_watermark", "new_watermark", "total_in_target"]


def load(hw, path, db, *extra):
    r = hw("load", "--input", path, "--db", db, "--table", "events", "--now", NOW, "--details", *extra)
    assert r.code == 0, r.err
    return r.json


def test_sample_prints_exactly_the_six_key_summary(hw, tmp_path):
    out = tmp_path / "summary.json"
    r = hw("load", "--input", SAMPLE, "--output", out)
    # No --db: an in-memory target, which says on stderr that nothing is kept; stdout is unchanged.
    assert r.code == 0 and r.err_lines == ["warning: the target is an in-memory database: nothing of this run "
                                           "is kept when it ends (give --db PATH or --target URL)"]
    expected = {"source_records": 5, "loaded": 5, "skipped": 0, "previous_watermark": None,
                "new_watermark": "2025-01-15T11:15:00", "total_in_target": 5}
    assert list(r.json) == SIX and r.json == expected
    assert r.out == json.dumps(expected, indent=2) + "\n"
    assert json.loads(out.read_text()) == expected


def test_second_run_loads_nothing_and_warns_the_source_may_be_stale(hw, tmp_path):
    db = tmp_path / "events.db"
    first = hw("load", "--input", SAMPLE, "--db", db)
    second = hw("load", "--input", SAMPLE, "--db", db)
    assert first.json["loaded"] == 5
    s = second.json
    assert list(s)[:6] == SIX
    assert (s["loaded"], s["skipped"], s["total_in_target"]) == (0, 5, 5)
    assert s["previous_watermark"] == s["new_watermark"] == "2025-01-15T11:15:00"
    assert s["stale_source"] is True
    assert second.err_lines == ["warning: every record was skipped: the source may be stale (newest source "
                                "cursor 2025-01-15T11:15:00, watermark 2025-01-15T11:15:00)"]


def test_records_older_than_the_watermark_are_skipped_and_detected_as_late_when_new(hw, tmp_path):
    db = tmp_path / "t.db"
    load(hw, write_jsonl(tmp_path / "a.jsonl", [rec(1, "10:00"), rec(2, "11:00")]), db)
    # id 1 again (already there) and id 3, new but older than the watermark: late
    s = load(hw, write_jsonl(tmp_path / "b.jsonl", [rec(1, "10:00"), rec(3, "09:00")]), db)
    assert (s["unchanged"], s["late"], s["loaded"], s["skipped"]) == (1, 1, 0, 2)
    assert 3 not in rows(db)
    q = hiwater.quarantine_list(db=str(db))
    assert [(x["reason"], json.loads(x["key"])) for x in q] == [("late", [3])]
    assert any("--lookback 2h would have caught them all" in w for w in s["warnings"])


def test_on_late_skip_counts_below_window_without_lookup(hw, tmp_path):
    db = tmp_path / "t.db"
    load(hw, write_jsonl(tmp_path / "a.jsonl", [rec(1, "10:00"), rec(2, "11:00")]), db)
    s = load(hw, write_jsonl(tmp_path / "b.jsonl", [rec(1, "10:00"), rec(3, "09:00")]), db,
             "--on-late", "skip")
    assert (s["below_window"], s["late"], s["unchanged"]) == (2, 0, 0)
    assert hiwater.quarantine_list(db=str(db)) == []


def test_on_late_load_applies_late_records(hw, tmp_path):
    db = tmp_path / "t.db"
    load(hw, write_jsonl(tmp_path / "a.jsonl", [rec(2, "11:00")]), db)
    s = load(hw, write_jsonl(tmp_path / "b.jsonl", [rec(3, "09:00")]), db, "--on-late", "load")
    assert (s["inserted"], s["late_applied"], s["late"]) == (1, 1, 0)
    assert s["new_watermark"] == "2025-01-15T11:00:00"  # a late record never lowers nor raises it
    assert 3 in rows(db)


@pytest.mark.parametrize("boundary, loaded", [("inclusive", 1), ("exclusive", 0)])
def test_identical_timestamps_at_the_watermark_inclusive_vs_exclusive(hw, tmp_path, boundary, loaded):
    db = tmp_path / "t.db"
    load(hw, write_jsonl(tmp_path / "a.jsonl", [rec(1, "10:00"), rec(2, "11:00")]), db, "--boundary", boundary)
    # id 3 shares the watermark's timestamp but arrives in a later run
    s = load(hw, write_jsonl(tmp_path / "b.jsonl", [rec(1, "10:00"), rec(2, "11:00"), rec(3, "11:00")]), db,
             "--boundary", boundary, "--on-late", "skip")
    assert s["loaded"] == loaded
    assert (3 in rows(db)) is (boundary == "inclusive")
    if boundary == "inclusive":
        assert s["unchanged"] == 1  # id 2 at the watermark is examined and not loaded twice


def test_exclusive_boundary_with_detect_quarantines_the_tie_instead_of_losing_it(hw, tmp_path):
    db = tmp_path / "t.db"
    load(hw, write_jsonl(tmp_path / "a.jsonl", [rec(2, "11:00")]), db, "--boundary", "exclusive")
    s = load(hw, write_jsonl(tmp_path / "b.jsonl", [rec(3, "11:00")]), db, "--boundary", "exclusive")
    assert s["late"] == 1


def test_out_of_order_input_gives_the_right_final_watermark(hw, tmp_path):
    db = tmp_path / "t.db"
    recs = [rec(3, "12:00"), rec(1, "08:00"), rec(5, "13:30"), rec(2, "09:00"), rec(4, "10:00")]
    s = load(hw, write_jsonl(tmp_path / "a.jsonl", recs), db)
    assert s["new_watermark"] == "2025-01-15T13:30:00" and s["loaded"] == 5


def test_every_record_skipped_warns(hw, tmp_path):
    db = tmp_path / "t.db"
    f = write_jsonl(tmp_path / "a.jsonl", [rec(1, "10:00")])
    load(hw, f, db)
    r = hw("load", "--input", f, "--db", db, "--table", "events", "--now", NOW)
    assert r.json["stale_source"] is True and "source may be stale" in r.err


def test_empty_source_warns_and_keeps_the_watermark(hw, tmp_path):
    db = tmp_path / "t.db"
    load(hw, write_jsonl(tmp_path / "a.jsonl", [rec(1, "10:00")]), db)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    r = hw("load", "--input", empty, "--db", db, "--table", "events", "--now", NOW)
    assert r.code == 0 and r.json["source_records"] == 0 and r.json["stale_source"] is True
    assert r.json["new_watermark"] == "2025-01-15T10:00:00"
    assert "is empty" in r.err


def test_change_detection_updates_a_newer_version_and_never_regresses(hw, tmp_path):
    db = tmp_path / "t.db"
    load(hw, write_jsonl(tmp_path / "a.jsonl", [rec(1, "10:00", name="v1")]), db)
    s = load(hw, write_jsonl(tmp_path / "b.jsonl", [rec(1, "10:30", name="v2")]), db)
    assert s["updated"] == 1 and rows(db)[1][0] == "v2"
    # an older version inside a wide lookback is examined but must not win
    s = load(hw, write_jsonl(tmp_path / "c.jsonl", [rec(1, "10:00", name="v1")]), db, "--lookback", "1h")
    assert (s["unchanged"], s["updated"]) == (1, 0) and rows(db)[1][0] == "v2"


def test_duplicates_in_one_run_newest_wins_and_ties_go_to_the_later_record(hw, tmp_path):
    db = tmp_path / "t.db"
    recs = [rec(1, "10:00", name="old"), rec(1, "11:00", name="new"), rec(1, "09:00", name="older"),
            rec(2, "10:00", name="first"), rec(2, "10:00", name="second")]
    s = load(hw, write_jsonl(tmp_path / "a.jsonl", recs), db)
    assert rows(db)[1][0] == "new" and rows(db)[2][0] == "second"
    assert (s["inserted"], s["unchanged"], s["source_records"]) == (2, 3, 5)


def test_ties_across_batches_go_to_the_later_record(hw, tmp_path):
    db = tmp_path / "t.db"
    recs = [rec(1, "10:00", name="first"), rec(2, "10:00"), rec(1, "10:00", name="second")]
    load(hw, write_jsonl(tmp_path / "a.jsonl", recs), db, "--batch-size", "1")
    assert rows(db)[1][0] == "second"


def test_one_far_future_record_does_not_move_the_watermark(hw, tmp_path):
    db = tmp_path / "t.db"
    s = load(hw, write_jsonl(tmp_path / "a.jsonl", [rec(1, "10:00"), rec(2, "2031-01-01T00:00:00")]), db)
    assert s["future"] == 1 and s["new_watermark"] == "2025-01-15T10:00:00"
    s = load(hw, write_jsonl(tmp_path / "b.jsonl", [rec(3, "11:00")]), db)
    assert s["inserted"] == 1  # later records are not hidden behind the bad clock
    q = hiwater.quarantine_list(db=str(db), reason="future")
    assert len(q) == 1 and json.loads(q[0]["key"]) == [2]


def test_max_future_none_turns_the_guard_off(hw, tmp_path):
    db = tmp_path / "t.db"
    s = load(hw, write_jsonl(tmp_path / "a.jsonl", [rec(2, "2031-01-01T00:00:00")]), db, "--max-future", "none")
    assert s["inserted"] == 1 and s["new_watermark"] == "2031-01-01T00:00:00"


def test_invalid_records_are_quarantined_with_their_reason(hw, tmp_path):
    db = tmp_path / "t.db"
    recs = [rec(1, "10:00"), {"id": None, "modified_at": "2025-01-15T10:00:00"},
            {"id": 3, "modified_at": "not a time"}, {"id": 4, "name": "x"},
            rec(5, "10:00", amount=1), rec(6, "10:00", amount="lots")]
    s = load(hw, write_jsonl(tmp_path / "a.jsonl", recs), db)
    assert (s["inserted"], s["rejected"], s["source_records"]) == (2, 4, 6)
    reasons = {json.loads(q["key"])[0]: q["detail"] for q in hiwater.quarantine_list(db=str(db))}
    assert reasons == {
        None: "key field 'id' is missing or null",
        3: "cursor 'not a time' is not an ISO-8601 timestamp",
        4: "cursor field 'modified_at' is missing or null",
        6: "field 'amount': value 'lots' does not fit the column's type (integer)",
    }


def test_a_value_the_column_cannot_hold_is_rejected_not_coerced(hw, tmp_path):
    db = tmp_path / "t.db"
    load(hw, write_jsonl(tmp_path / "a.jsonl", [rec(1, "10:00", amount=5)]), db)
    s = load(hw, write_jsonl(tmp_path / "b.jsonl", [rec(2, "11:00", amount="five"), rec(3, "11:00", amount=2.5),
                                                    rec(4, "11:00", amount=7.0)]), db)
    assert (s["rejected"], s["inserted"]) == (2, 1)
    con = sqlite3.connect(db)
    assert con.execute("SELECT amount, typeof(amount) FROM events WHERE id = 4").fetchone() == (7, "integer")


def test_strict_commits_nothing_and_names_the_first_bad_record(hw, tmp_path):
    db = tmp_path / "t.db"
    load(hw, write_jsonl(tmp_path / "a.jsonl", [rec(1, "10:00")]), db)
    before = db.read_bytes()
    f = write_jsonl(tmp_path / "b.jsonl", [rec(2, "11:00"), rec(3, "11:00"), {"id": 4, "modified_at": "soon"}])
    r = hw("load", "--input", f, "--db", db, "--table", "events", "--strict", "--now", NOW)
    assert r.code == 1
    assert r.err_lines == [f"error: {f}: record 3: cursor 'soon' is not an ISO-8601 timestamp "
                           f"(--strict: nothing was committed)"]
    assert set(rows(db)) == {1} and watermark(db) is not None
    assert hiwater.quarantine_list(db=str(db)) == []
    hist = hiwater.history(db=str(db))
    assert [h["outcome"] for h in hist] == ["committed", "failed"]  # the failure, noted after the rollback
    assert hist[1]["source_records"] is None and "soon" in hist[1]["error"]
    del before


def test_timestamps_with_different_offsets_compare_as_instants(hw, tmp_path):
    db = tmp_path / "t.db"
    load(hw, write_jsonl(tmp_path / "a.jsonl", [rec(1, "2025-01-15T12:00:00+01:00", name="v1")]), db)
    # the same instant written in UTC is the same version; an hour earlier in UTC is older
    s = load(hw, write_jsonl(tmp_path / "b.jsonl", [rec(1, "2025-01-15T11:00:00Z", name="same"),
                                                    rec(2, "2025-01-15T11:30:00+00:00"),
                                                    rec(3, "2025-01-15T12:00:00+02:00")]), db)
    assert rows(db)[1][0] == "v1"
    assert (s["unchanged"], s["inserted"], s["late"]) == (1, 1, 1)
    assert s["new_watermark"] == "2025-01-15T11:30:00+00:00"


def test_naive_timestamps_are_taken_in_assume_tz(hw, tmp_path):
    db = tmp_path / "t.db"
    s = load(hw, write_jsonl(tmp_path / "a.jsonl", [rec(1, "12:00")]), db, "--assume-tz", "Europe/Berlin")
    assert s["new_watermark"] == "2025-01-15T12:00:00"  # printed back naive, in the same zone
    # 11:30Z is 12:30 in Berlin: newer than the naive 12:00 Berlin (11:00Z)
    s = load(hw, write_jsonl(tmp_path / "b.jsonl", [rec(1, "2025-01-15T11:30:00Z", name="v2")]), db,
             "--assume-tz", "Europe/Berlin")
    assert s["updated"] == 1


def test_dates_and_integer_cursors(hw, tmp_path):
    db = tmp_path / "t.db"
    s = load(hw, write_jsonl(tmp_path / "d.jsonl", [{"id": 1, "modified_at": "2025-01-02"},
                                                    {"id": 2, "modified_at": "2025-01-03"}]), db)
    assert s["new_watermark"] == "2025-01-03"
    s = hw("load", "--input", write_jsonl(tmp_path / "i.jsonl", [{"id": 1, "v": 10}, {"id": 2, "v": 7}]),
           "--db", db, "--table", "ints", "--cursor", "v", "--details").json
    assert s["new_watermark"] == 10 and s["loaded"] == 2
    s = hw("load", "--input", write_jsonl(tmp_path / "j.jsonl", [{"id": 3, "v": 8}, {"id": 4, "v": 11}]),
           "--db", db, "--table", "ints", "--cursor", "v", "--lookback", "5", "--details").json
    assert (s["inserted"], s["new_watermark"]) == (2, 11)


def test_full_load_examines_everything_and_prune_deletes_missing_keys(hw, tmp_path):
    db = tmp_path / "t.db"
    load(hw, write_jsonl(tmp_path / "a.jsonl", [rec(1, "10:00"), rec(2, "11:00"), rec(3, "12:00")]), db)
    f = write_jsonl(tmp_path / "b.jsonl", [rec(1, "10:00"), rec(2, "09:00", name="older"), rec(4, "08:00")])
    s = load(hw, f, db, "--full-load")
    assert (s["inserted"], s["unchanged"], s["late"]) == (1, 2, 0)
    assert s["new_watermark"] == "2025-01-15T10:00:00"  # set from the data
    s = load(hw, f, db, "--full-load", "--prune")
    assert s["pruned"] == 1 and set(rows(db)) == {1, 2, 4}


def test_lookback_catches_late_data(hw, tmp_path):
    db = tmp_path / "t.db"
    load(hw, write_jsonl(tmp_path / "a.jsonl", [rec(1, "12:00")]), db)
    s = load(hw, write_jsonl(tmp_path / "b.jsonl", [rec(2, "11:30"), rec(3, "10:00")]), db, "--lookback", "PT45M")
    assert (s["inserted"], s["late"]) == (1, 1)


def test_since_until_backfill_never_passes_until(hw, tmp_path):
    db = tmp_path / "t.db"
    recs = [rec(1, "08:00"), rec(2, "10:00"), rec(3, "12:00")]
    s = load(hw, write_jsonl(tmp_path / "a.jsonl", recs), db, "--since", "2025-01-15T09:00:00",
             "--until", "2025-01-15T11:00:00")
    assert (s["inserted"], s["below_window"], s["beyond_until"]) == (1, 2, 1)
    # a backfill above an empty stream's (absent) watermark leaves a gap below --since: the
    # watermark does not move, so the next incremental run still reads record 1 (SPEC §4, §8)
    assert s["new_watermark"] is None and set(rows(db)) == {2}
    s = load(hw, tmp_path / "a.jsonl", db)
    assert (s["inserted"], s["unchanged"], s["new_watermark"]) == (2, 1, "2025-01-15T12:00:00")
    # a backfill that starts at or below the watermark is contiguous: it may move it (never past --until)
    s = load(hw, write_jsonl(tmp_path / "b.jsonl", [rec(4, "13:00"), rec(5, "15:00")]), db, "--since",
             "2025-01-15T12:00:00", "--until", "2025-01-15T14:00:00")
    assert (s["inserted"], s["new_watermark"]) == (1, "2025-01-15T13:00:00")


def test_settle_keeps_the_watermark_behind_now(hw, tmp_path):
    db = tmp_path / "t.db"
    s = load(hw, write_jsonl(tmp_path / "a.jsonl", [rec(1, "2025-05-31T23:50:00")]), db, "--settle", "1h")
    assert s["inserted"] == 1 and s["new_watermark"] == "2025-05-31T23:00:00"
    # a record that committed late at the source with an older timestamp is still read next run
    s = load(hw, write_jsonl(tmp_path / "b.jsonl", [rec(1, "2025-05-31T23:50:00"), rec(2, "2025-05-31T23:40:00")]),
             db, "--settle", "1h")
    assert (s["inserted"], s["unchanged"]) == (1, 1)


def test_dry_run_writes_nothing(hw, tmp_path):
    db = tmp_path / "t.db"
    load(hw, write_jsonl(tmp_path / "a.jsonl", [rec(1, "10:00")]), db)
    s = load(hw, write_jsonl(tmp_path / "b.jsonl", [rec(2, "11:00"), {"id": 3}]), db, "--dry-run")
    assert (s["inserted"], s["rejected"], s["dry_run"]) == (1, 1, True)
    assert set(rows(db)) == {1} and hiwater.quarantine_list(db=str(db)) == []
    assert len(hiwater.history(db=str(db))) == 1
    missing = tmp_path / "never.db"
    load(hw, tmp_path / "b.jsonl", missing, "--dry-run")
    assert not missing.exists()


def test_dry_run_with_window_lists_the_windows_it_would_commit(hw, tmp_path):
    db = tmp_path / "t.db"
    r = hw("load", "--input", write_jsonl(tmp_path / "a.jsonl", [rec(1, "10:00"), rec(2, "11:10")]), "--db", db,
           "--window", "1h", "--dry-run", "--now", NOW)
    assert r.code == 0 and [w["from"] for w in r.json["windows"]] == ["2025-01-15T10:00:00", "2025-01-15T11:00:00"]
    assert not db.exists()


def test_composite_key(hw, tmp_path):
    db = tmp_path / "t.db"
    recs = [{"a": 1, "b": "x", "modified_at": "2025-01-15T10:00:00", "v": 1},
            {"a": 1, "b": "y", "modified_at": "2025-01-15T10:00:00", "v": 2},
            {"a": 1, "b": "x", "modified_at": "2025-01-15T11:00:00", "v": 3}]
    s = hw("load", "--input", write_jsonl(tmp_path / "a.jsonl", recs), "--db", db, "--key", "a,b",
           "--details").json
    assert (s["inserted"], s["unchanged"], s["total_in_target"]) == (2, 1, 2)
    con = sqlite3.connect(db)
    assert con.execute("SELECT v FROM a WHERE a = 1 AND b = 'x'").fetchone() == (3,)


def test_custom_cursor_table_and_stream(hw, tmp_path):
    db = tmp_path / "t.db"
    f = write_jsonl(tmp_path / "a.jsonl", [{"id": 1, "updated": "2025-01-15T10:00:00"}])
    s = hw("load", "--input", f, "--db", db, "--cursor", "updated", "--table", "t1", "--stream", "s1",
           "--details").json
    assert (s["table"], s["stream"], s["loaded"]) == ("t1", "s1", 1)
    assert hiwater.state_show(db=str(db))[0]["stream"] == "s1"


def test_delete_field_hard_and_soft(hw, tmp_path):
    db = tmp_path / "t.db"
    load(hw, write_jsonl(tmp_path / "a.jsonl", [rec(1, "10:00"), rec(2, "10:00")]), db, "--delete-field", "gone")
    s = load(hw, write_jsonl(tmp_path / "b.jsonl", [rec(1, "11:00", gone=True), rec(3, "11:00", gone=True)]), db,
             "--delete-field", "gone")
    assert (s["deleted"], s["updated"], s["unchanged"]) == (1, 1, 1) and set(rows(db)) == {2}
    db2 = tmp_path / "soft.db"
    load(hw, tmp_path / "a.jsonl", db2, "--delete-field", "gone", "--soft-delete")
    s = load(hw, tmp_path / "b.jsonl", db2, "--delete-field", "gone", "--soft-delete")
    con = sqlite3.connect(db2)
    # a delete record for a key the target never had changes nothing (SPEC §8): not inserted
    assert dict(con.execute("SELECT id, deleted_at FROM events")) == {1: "2025-01-15T11:00:00", 2: None}
    assert (s["deleted"], s["updated"], s["inserted"], s["unchanged"]) == (1, 1, 0, 1)


def test_a_new_field_adds_a_column_and_is_logged(hw, tmp_path):
    db = tmp_path / "t.db"
    load(hw, write_jsonl(tmp_path / "a.jsonl", [rec(1, "10:00")]), db)
    s = load(hw, write_jsonl(tmp_path / "b.jsonl", [rec(2, "11:00", color="red")]), db)
    assert s["new_columns"] == ["color"]
    con = sqlite3.connect(db)
    assert con.execute("SELECT color FROM events WHERE id = 2").fetchone() == ("red",)
    assert "color" in hiwater.history(db=str(db))[-1]["detail"]


def test_nested_values_are_stored_as_json_text(hw, tmp_path):
    db = tmp_path / "t.db"
    load(hw, write_jsonl(tmp_path / "a.jsonl", [rec(1, "10:00", user={"name": "ann", "tags": [1, 2]})]), db)
    con = sqlite3.connect(db)
    assert json.loads(con.execute("SELECT user FROM events").fetchone()[0]) == {"name": "ann", "tags": [1, 2]}


def test_nested_values_stay_with_their_record_through_slices_and_reruns(hw, tmp_path):
    """The reader thread encodes nested values ahead of the writer, for whole batches (and stops
    while batches write little); a --window slice, a batch that writes some of its rows, and a
    batch written after encoding stopped must each store every record's own value."""
    db = tmp_path / "t.db"

    def r(i, t):
        return rec(i, t, user={"id": i, "name": f"u{i}"})

    hours = [10, 12, 11, 13] * 3  # out of order: each --window slice picks rows across the batch
    old = [r(i, f"{h}:00") for i, h in enumerate(hours)]
    load(hw, write_jsonl(tmp_path / "a.jsonl", old), db, "--window", "1h")
    new = [r(i, f"14:{i:02d}") for i in range(12, 18)]
    mixed = [x for pair in zip(old[:4], new[:4]) for x in pair]  # batches of one unchanged, one new
    rerun = mixed + old[4:] + new[4:]  # then only unchanged batches, then new ones again
    s = load(hw, write_jsonl(tmp_path / "b.jsonl", rerun), db, "--batch-size", "2", "--lookback", "1d")
    assert (s["unchanged"], s["inserted"]) == (12, 6)
    con = sqlite3.connect(db)
    stored = {i: json.loads(u) for i, u in con.execute("SELECT id, user FROM events")}
    assert stored == {i: {"id": i, "name": f"u{i}"} for i in range(18)}


def test_counts_always_sum(hw, tmp_path):
    db = tmp_path / "t.db"
    load(hw, write_jsonl(tmp_path / "a.jsonl", [rec(i, "10:00") for i in range(10)]), db)
    recs = [rec(1, "11:00"), rec(2, "09:00", name="old"), rec(20, "09:00"), rec(21, "2030-01-01T00:00:00"),
            {"id": 22}, rec(3, "10:00"), rec(23, "12:00")]
    s = load(hw, write_jsonl(tmp_path / "b.jsonl", recs), db)
    assert s["source_records"] == s["loaded"] + s["skipped"] + s["rejected"] == 7
    assert s["loaded"] == s["inserted"] + s["updated"]
    assert s["skipped"] == s["unchanged"] + s["late"] + s["future"] + s["below_window"]


def test_python_api_mirrors_the_cli(tmp_path):
    db = tmp_path / "t.db"
    summary = hiwater.load(str(SAMPLE), db=str(db))
    assert summary.loaded == 5 and summary.new_watermark == "2025-01-15T11:15:00"
    assert list(summary.to_dict())[:6] == SIX
    again = hiwater.load(str(SAMPLE), db=str(db))
    assert again.stale_source and again.counts.unchanged == 5


def test_hostile_table_name_is_quoted_not_pasted(hw, tmp_path):
    db = tmp_path / "t.db"
    name = 'x"; DROP TABLE _hiwater_state; --'
    r = hw("load", "--input", SAMPLE, "--db", db, "--table", name)
    assert r.code == 0
    con = sqlite3.connect(db)
    assert con.execute('SELECT count(*) FROM "x""; DROP TABLE _hiwater_state; --"').fetchone() == (5,)
    assert con.execute("SELECT count(*) FROM _hiwater_state").fetchone() == (1,)


def test_progress_callback_reports_every_batch(tmp_path):
    f = write_jsonl(tmp_path / "a.jsonl", [rec(i, "10:00") for i in range(10)])
    calls = []
    hiwater.load(str(f), db=str(tmp_path / "t.db"), batch_size=3, progress=lambda d, e: calls.append((d, e)))
    assert [d for d, _ in calls] == [3, 6, 9, 10] and all(e == 10 for _, e in calls)


def test_no_progress_bar_when_stderr_is_not_a_terminal(hw, tmp_path):
    r = hw("load", "--input", SAMPLE, "--db", tmp_path / "t.db")
    assert r.err == ""


def test_target_url_from_the_environment_and_db_wins_over_it(hw, tmp_path, monkeypatch):
    env_db = tmp_path / "env.db"
    monkeypatch.setenv("HIWATER_TARGET_URL", f"sqlite:///{env_db}")
    assert hw("load", "--input", SAMPLE).code == 0 and env_db.exists()
    explicit = tmp_path / "explicit.db"
    r = hw("load", "--input", SAMPLE, "--db", explicit)
    assert r.code == 0 and r.json["loaded"] == 5 and explicit.exists()


def test_cursor_can_be_the_key_for_an_append_only_table(hw, tmp_path):
    """Issue 10 #15: an auto-increment id is both the key and the cursor (from a table and a file)."""
    src = tmp_path / "app.db"
    con = sqlite3.connect(src)
    con.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)")
    con.executemany("INSERT INTO orders VALUES (?, ?)", [(i, f"i{i}") for i in range(1, 6)])
    con.commit()
    db = tmp_path / "t.db"
    args = ("--source", f"sqlite:///{src}", "--source-table", "orders", "--key", "id", "--cursor", "id",
            "--db", db, "--details")
    s = hw("load", *args).json
    assert (s["inserted"], s["new_watermark"]) == (5, 5)
    con.executemany("INSERT INTO orders VALUES (?, ?)", [(i, f"i{i}") for i in range(6, 9)])
    con.commit()
    s = hw("load", *args).json
    # the window starts at the watermark (inclusive): id 5 is read again and found unchanged
    assert (s["source_records"], s["inserted"], s["unchanged"], s["new_watermark"]) == (4, 3, 1, 8)
    assert dict(sqlite3.connect(db).execute("SELECT id, item FROM orders")) == {i: f"i{i}" for i in range(1, 9)}

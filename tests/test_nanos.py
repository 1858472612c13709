"""Issue 22 item 2: nanosecond cursors are kept exactly, not refused.

A stream whose first run sees an Arrow ``timestamp[ns]`` cursor column, or text timestamps
with 7 to 9 fractional digits, has the cursor kind ``timestamp_ns``: integer nanoseconds since
the epoch, compared exactly, printed back with 9 digits. These tests drive the CLI and the
Python API against SQLite; tests/db/test_nanos_targets.py runs every source into every target.
"""

from __future__ import annotations

import json
import sqlite3

import pyarrow as pa
import pytest

import hiwater
from conftest import NOW, write_jsonl

T0 = "2025-01-15T10:00:00.000000"  # + three more digits: nanoseconds past 10:00


def ns(n: int) -> str:
    """``2025-01-15T10:00:00`` plus ``n`` nanoseconds (n < 1000), with 9 digits."""
    return f"{T0}{n:03d}"


def recs(*pairs):
    return [{"id": i, "name": f"v{c}", "modified_at": c} for i, c in pairs]


def table(db, name="events") -> dict:
    con = sqlite3.connect(db)
    try:
        return {r[0]: r[1] for r in con.execute(f'SELECT id, modified_at FROM "{name}"')}
    finally:
        con.close()


def state(db) -> dict:
    return hiwater.state_show(db=str(db))[0]


def test_two_versions_one_nanosecond_apart_are_two_versions(hw, tmp_path):
    db = tmp_path / "t.db"
    src = write_jsonl(tmp_path / "events.jsonl", recs((1, ns(2)), (1, ns(1)), (2, ns(5)), (2, ns(5))))
    r = hw("load", "-i", src, "--db", db, "--now", NOW)
    assert r.code == 0, r.err
    assert r.json["new_watermark"] == ns(5)
    assert table(db) == {1: ns(2), 2: ns(5)}
    assert state(db)["kind"] == "timestamp_ns"
    again = hw("load", "-i", src, "--db", db, "--now", NOW, "--details")
    assert again.code == 0, again.err
    assert again.json["loaded"] == 0 and again.json["rejected"] == 0
    assert table(db) == {1: ns(2), 2: ns(5)}
    # one nanosecond newer replaces; the same cursor again is a tie (unchanged)
    newer = write_jsonl(tmp_path / "newer.jsonl", recs((1, ns(6)), (2, ns(5))))
    r = hw("load", "-i", newer, "--db", db, "--table", "events", "--stream", "events", "--now", NOW,
           "--details")
    assert r.code == 0, r.err
    assert table(db)[1] == ns(6)
    assert r.json["loaded"] == 1


def test_one_nanosecond_below_the_watermark_is_late_one_above_is_new(hw, tmp_path):
    db = tmp_path / "t.db"
    first = write_jsonl(tmp_path / "events.jsonl", recs((1, ns(500))))
    assert hw("load", "-i", first, "--db", db, "--now", NOW).code == 0
    second = write_jsonl(tmp_path / "events.jsonl", recs((2, ns(499)), (3, ns(501)), (4, ns(500))))
    r = hw("load", "-i", second, "--db", db, "--now", NOW, "--details")
    assert r.code == 0, r.err
    s = r.json
    assert (s["late"], s["inserted"]) == (1, 2), s
    assert sorted(table(db)) == [1, 3, 4]
    assert state(db)["watermark"] == ns(501)
    # exclusive boundary: the watermark's own value is below the window
    third = write_jsonl(tmp_path / "events.jsonl", recs((5, ns(501)), (6, ns(502))))
    r = hw("load", "-i", third, "--db", db, "--now", NOW, "--boundary", "exclusive", "--details")
    assert r.code == 0, r.err
    assert (r.json["late"], r.json["inserted"]) == (1, 1)


def test_a_lookback_reaches_back_in_nanoseconds_exactly(hw, tmp_path):
    db = tmp_path / "t.db"
    first = write_jsonl(tmp_path / "events.jsonl", [{"id": 1, "modified_at": "2025-01-15T10:00:00.000001500"}])
    assert hw("load", "-i", first, "--db", db, "--now", NOW).code == 0
    # --lookback 1us: the window starts at ...000000500; 1 ns below it is late, at it is applied
    second = write_jsonl(tmp_path / "events.jsonl", [
        {"id": 2, "modified_at": "2025-01-15T10:00:00.000000499"},
        {"id": 3, "modified_at": "2025-01-15T10:00:00.000000500"},
    ])
    r = hw("load", "-i", second, "--db", db, "--now", NOW, "--lookback", "1us", "--details")
    assert r.code == 0, r.err
    assert (r.json["late"], r.json["inserted"]) == (1, 1)
    assert sorted(table(db)) == [1, 3]
    late = hiwater.quarantine_list(db=str(db))
    assert [q["reason"] for q in late] == ["late"]


def test_state_show_json_and_state_set_carry_nine_digits(hw, tmp_path):
    db = tmp_path / "t.db"
    src = write_jsonl(tmp_path / "events.jsonl", recs((1, ns(7))))
    assert hw("load", "-i", src, "--db", db, "--now", NOW).code == 0
    shown = hw("state", "show", "--db", db, "--json")
    assert shown.code == 0, shown.err
    row = shown.json[0]
    assert (row["kind"], row["watermark"], row["watermark_value"]) == ("timestamp_ns", ns(7), 1736935200000000007)
    text = hw("state", "show", "--db", db)
    assert ns(7) in text.out and "timestamp_ns" in text.out
    r = hw("state", "set", "--db", db, "--stream", "events", ns(3))
    assert r.code == 0, r.err
    assert state(db)["watermark"] == ns(3)
    # a record between the set watermark and the old one is new again
    between = write_jsonl(tmp_path / "events.jsonl", recs((2, ns(4)), (3, ns(2))))
    r = hw("load", "-i", between, "--db", db, "--now", NOW, "--details")
    assert (r.json["inserted"], r.json["late"]) == (1, 1), r.out
    hist = hw("history", "--db", db, "--json")
    assert hist.code == 0, hist.err
    assert ns(4) in hist.out


def test_since_and_until_take_nine_digits(hw, tmp_path):
    db = tmp_path / "t.db"
    src = write_jsonl(tmp_path / "events.jsonl", recs((1, ns(1)), (2, ns(2)), (3, ns(3)), (4, ns(4))))
    r = hw("load", "-i", src, "--db", db, "--now", NOW, "--since", ns(2), "--until", ns(4), "--details")
    assert r.code == 0, r.err
    assert sorted(table(db)) == [2, 3]


def test_start_takes_nine_digits(hw, tmp_path):
    db = tmp_path / "t.db"
    src = write_jsonl(tmp_path / "events.jsonl", recs((1, ns(1)), (2, ns(2)), (3, ns(3))))
    r = hw("load", "-i", src, "--db", db, "--now", NOW, "--start", ns(2))
    assert r.code == 0, r.err
    assert sorted(table(db)) == [2, 3]


def test_values_outside_int64_nanoseconds_are_refused_per_record(hw, tmp_path):
    db = tmp_path / "t.db"
    src = write_jsonl(tmp_path / "events.jsonl", [
        {"id": 1, "modified_at": ns(1)},
        {"id": 2, "modified_at": "2262-04-12T00:00:00.000000001"},
        {"id": 3, "modified_at": "1677-09-21T00:00:00.000000000"},
        {"id": 4, "modified_at": "2262-04-11T23:47:16.854775807"},
    ])
    r = hw("load", "-i", src, "--db", db, "--now", NOW, "--max-future", "none", "--details")
    assert r.code == 0, r.err
    assert r.json["rejected"] == 2
    assert sorted(table(db)) == [1, 4]
    reasons = sorted(q["detail"] or q["reason"] for q in hiwater.quarantine_list(db=str(db)))
    assert len(reasons) == 2
    assert all("out of range for a nanosecond cursor" in x for x in reasons), reasons


def test_a_microsecond_stream_refuses_a_finer_cursor_and_says_what_to_do(hw, tmp_path):
    db = tmp_path / "t.db"
    first = write_jsonl(tmp_path / "events.jsonl", recs((1, "2025-01-15T10:00:00.000001")))
    assert hw("load", "-i", first, "--db", db, "--now", NOW).code == 0
    assert state(db)["kind"] == "timestamp"
    later = write_jsonl(tmp_path / "events.jsonl", recs((2, ns(2)), (3, "2025-01-15T10:00:00.000002000")))
    r = hw("load", "-i", later, "--db", db, "--now", NOW, "--details")
    assert r.code == 0, r.err
    assert r.json["rejected"] == 1 and sorted(table(db)) == [1, 3]
    [q] = hiwater.quarantine_list(db=str(db))
    why = q["detail"] or q["reason"]
    assert "finer than a microsecond" in why and "stream drop" in why and "timestamp_ns" in why, why


def test_a_first_run_whose_later_batch_shows_nanoseconds_starts_again_as_nanoseconds(hw, tmp_path):
    db = tmp_path / "t.db"
    folder = tmp_path / "in"
    write_jsonl(folder / "a.jsonl", recs((1, "2025-01-15T10:00:00.000001")))
    write_jsonl(folder / "b.jsonl", recs((2, ns(2)), (1, "2025-01-15T10:00:00.000001001")))
    r = hw("load", "-i", folder, "--db", db, "--table", "events", "--now", NOW, "--batch-size", "1")
    assert r.code == 0, r.err
    assert state(db)["kind"] == "timestamp_ns"
    assert table(db)[1] == "2025-01-15T10:00:00.000001001"
    assert r.json["new_watermark"] == "2025-01-15T10:00:00.000001001"


def test_arrow_timestamp_ns_chooses_the_kind_and_zones_are_exact(tmp_path):
    db = tmp_path / "t.db"
    t = pa.table({"id": [1, 1, 2], "modified_at": pa.array(
        [1736935200_000000001, 1736935200_000000002, 1736935200_000000003], pa.timestamp("ns", tz="UTC"))})
    s = hiwater.load(t, db=str(db), table="events", now=NOW)
    assert s.counts.inserted == 2 and s.counts.rejected == 0
    assert s.new_watermark == "2025-01-15T10:00:00.000000003+00:00"
    assert table(db, "events")[1] == "2025-01-15T10:00:00.000000002+00:00"
    # a naive column in another zone: the wall time moves by whole seconds, the nanoseconds stay
    db2 = tmp_path / "t2.db"
    naive = pa.table({"id": [1], "modified_at": pa.array([1736935200_000000009], pa.timestamp("ns"))})
    s = hiwater.load(naive, db=str(db2), table="events", now=NOW, assume_tz="Europe/Berlin")
    assert s.new_watermark == "2025-01-15T10:00:00.000000009"
    assert state(db2)["watermark_value"] == 1736931600_000000009


def test_durations_and_the_future_guard_work_in_nanoseconds(hw, tmp_path):
    db = tmp_path / "t.db"
    src = write_jsonl(tmp_path / "events.jsonl", [
        {"id": 1, "modified_at": "2025-05-31T23:59:59.999999999"},
        {"id": 2, "modified_at": "2025-06-01T00:00:01.000000001"},  # past now + 1s
    ])
    r = hw("load", "-i", src, "--db", db, "--now", NOW, "--max-future", "1s", "--details")
    assert r.code == 0, r.err
    assert (r.json["inserted"], r.json["future"]) == (1, 1)
    # --settle: the watermark stays 1 minute behind now
    db2 = tmp_path / "t2.db"
    r = hw("load", "-i", src, "--db", db2, "--now", NOW, "--max-future", "none", "--settle", "1m")
    assert r.code == 0, r.err
    assert state(db2)["watermark"] == "2025-05-31T23:59:00.000000000"
    st = hw("status", "--db", db, "--now", "2025-06-01T00:01:00Z", "--json")
    assert st.code == 0, st.err
    row = json.loads(st.out)[0] if isinstance(json.loads(st.out), list) else json.loads(st.out)["streams"][0]
    assert row["data_age_s"] == pytest.approx(60.0, abs=0.01)


def test_verify_finds_a_version_one_nanosecond_stale(hw, tmp_path):
    db = tmp_path / "t.db"
    src = write_jsonl(tmp_path / "events.jsonl", recs((1, ns(1)), (2, "2025-01-15T11:00:00.000000002")))
    assert hw("load", "-i", src, "--db", db, "--now", NOW).code == 0
    same = hw("verify", "events", "-i", src, "--db", db, "--json")
    assert same.code == 0, same.out + same.err
    assert same.json[0]["kind"] == "timestamp_ns" and same.json[0]["until"] == "2025-01-15T11:00:00.000000002+00:00"
    newer = write_jsonl(tmp_path / "events.jsonl", recs((1, ns(2)), (2, "2025-01-15T11:00:00.000000002")))
    r = hw("verify", "events", "-i", newer, "--db", db, "--by", "1h", "--json")
    assert r.code == 1, r.out + r.err
    out = r.json[0]
    assert out["by"] == "1h" and out["keys"]["stale"] == 1


def test_the_status_page_lag_of_a_nanosecond_stream():
    from hiwater.ui import charts
    row = {"stream": "s", "run_id": 1, "finished_at": "2025-06-01T00:01:00Z", "outcome": "committed", "loaded": 1,
           "duration_s": 1.0, "watermark_after_value": 1748736000_000000001}
    [point] = charts.runs([row], True, 1000)
    assert point["lag_s"] == pytest.approx(60.0, abs=1e-6)


def test_a_nanosecond_stream_takes_microsecond_columns_and_refuses_what_int64_cannot_hold(tmp_path):
    db = tmp_path / "t.db"
    first = pa.table({"id": [1], "modified_at": pa.array([1736935200_000000001], pa.timestamp("ns"))})
    assert hiwater.load(first, db=str(db), table="events", now=NOW).counts.inserted == 1
    later = pa.table({"id": [2, 3], "modified_at": pa.array([1736935200_000001, 32503680000_000000],
                                                            pa.timestamp("us"))})  # ..., 3000-01-01
    s = hiwater.load(later, db=str(db), table="events", now=NOW, max_future="none")
    assert (s.counts.inserted, s.counts.rejected) == (1, 1)
    assert state(db)["watermark_value"] == 1736935200_000001000
    [q] = hiwater.quarantine_list(db=str(db))
    assert "out of range for a nanosecond cursor" in q["detail"]


def test_window_slices_a_nanosecond_stream_by_microseconds(hw, tmp_path):
    db = tmp_path / "t.db"
    src = write_jsonl(tmp_path / "events.jsonl", recs((1, ns(1)), (2, "2025-01-15T10:00:00.000001002"),
                                                      (3, "2025-01-15T10:00:00.000002003")))
    r = hw("load", "-i", src, "--db", db, "--now", NOW, "--window", "1us", "--details")
    assert r.code == 0, r.err
    assert r.json["inserted"] == 3 and r.json["new_watermark"] == "2025-01-15T10:00:00.000002003"
    assert len([w for w in r.json["windows"] if w.get("source_records", 1)]) >= 3


def test_a_first_run_widens_from_dates_to_timestamps_to_nanoseconds(hw, tmp_path):
    db = tmp_path / "t.db"
    folder = tmp_path / "in"
    write_jsonl(folder / "a.jsonl", recs((1, "2025-01-14")))
    write_jsonl(folder / "b.jsonl", recs((2, "2025-01-15T09:00:00")))
    write_jsonl(folder / "c.jsonl", recs((3, ns(3))))
    r = hw("load", "-i", folder, "--db", db, "--table", "events", "--now", NOW, "--details")
    assert r.code == 0, r.err
    assert (r.json["inserted"], r.json["rejected"]) == (3, 0)
    assert state(db)["kind"] == "timestamp_ns" and r.json["new_watermark"] == ns(3)


def test_seven_to_nine_digits_choose_nanoseconds_whatever_the_batches(hw, tmp_path):
    # zeros included: `…00.0000000` in a later batch of the first run decides as in the first
    records = recs((1, "2025-01-15T10:00:00"), (2, "2025-01-15T10:00:00.0000000"))
    for batch in ("1", "65536"):
        db = tmp_path / f"t{batch}.db"
        src = write_jsonl(tmp_path / "events.jsonl", records)
        r = hw("load", "-i", src, "--db", db, "--now", NOW, "--batch-size", batch)
        assert r.code == 0, r.err
        assert state(db)["kind"] == "timestamp_ns", batch

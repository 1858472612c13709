"""The loader's behaviour (SPEC §2–§6), one suite run on every target: a SQLite file,
PostgreSQL and DuckDB. Each test takes ``target_url`` and so runs once per backend."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import hiwater
from hiwater.errors import HiwaterError, StrictError
from hiwater.sources.base import RawBatch

from .dbutil import column_types, read_table

NOW = "2025-06-01T00:00:00Z"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE = os.path.join(ROOT, "data", "sample_input.txt")
SIX = ["source_records", "loaded", "skipped", "previous_watermark", "new_watermark", "total_in_target"]


def rec(i, t, **extra):
    r = {"id": i, "name": f"n{i}", "modified_at": f"2025-01-15T{t}:00" if len(t) == 5 else t}
    r.update(extra)
    return r


@pytest.fixture
def load(target_url, tmp_path):
    """``load(records, **options)``: one run of the records into ``events`` on the target."""
    n = [0]

    def run(records, **opts):
        n[0] += 1
        path = tmp_path / f"in{n[0]}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        opts.setdefault("table", "events")
        opts.setdefault("now", NOW)
        return hiwater.load(str(path), target=target_url, **opts).to_dict(details=True)

    return run


def names(url, table="events"):
    return {r["id"]: r["name"] for r in read_table(url, table)}


def test_the_sample_through_the_cli_prints_the_six_keys(hw, target_url):
    first = hw("load", "--input", SAMPLE, "--target", target_url)
    assert first.code == 0, first.err
    assert list(first.json) == SIX
    assert first.json == {"source_records": 5, "loaded": 5, "skipped": 0, "previous_watermark": None,
                          "new_watermark": "2025-01-15T11:15:00", "total_in_target": 5}
    second = hw("load", "--input", SAMPLE, "--target", target_url)
    assert (second.json["loaded"], second.json["skipped"], second.json["total_in_target"]) == (0, 5, 5)
    assert second.json["stale_source"] is True
    rows = read_table(target_url, "sample_input")
    assert [r["modified_at"] for r in rows][:2] == ["2025-01-15T08:00:00", "2025-01-15T08:05:00"]


def test_updates_apply_and_an_older_version_never_regresses(load, target_url):
    load([rec(1, "10:00"), rec(2, "10:00")])
    s = load([rec(1, "11:00", name="new"), rec(2, "10:00", name="same-cursor")])
    assert (s["updated"], s["unchanged"]) == (1, 1)
    s = load([rec(1, "10:30", name="older")], lookback="1d")
    assert (s["unchanged"], s["loaded"]) == (1, 0)
    assert names(target_url) == {1: "new", 2: "n2"}


def test_duplicates_in_one_run_newest_wins_and_a_tie_goes_to_the_later_record(load, target_url):
    s = load([rec(1, "10:00", name="a"), rec(1, "12:00", name="b"), rec(1, "11:00", name="c"),
              rec(2, "10:00", name="x"), rec(2, "10:00", name="y")])
    assert (s["inserted"], s["unchanged"]) == (2, 3)
    assert names(target_url) == {1: "b", 2: "y"}


def test_ties_across_batches_go_to_the_later_record(load, target_url):
    s = load([rec(1, "10:00", name=f"v{i}") for i in range(5)] + [rec(2, "10:00")], batch_size=2)
    assert s["total_in_target"] == 2 and names(target_url)[1] == "v4"


@pytest.mark.parametrize("boundary, loaded", [("inclusive", 1), ("exclusive", 0)])
def test_a_record_sharing_the_watermark_arrives_later(load, target_url, boundary, loaded):
    load([rec(1, "10:00"), rec(2, "11:00")], boundary=boundary)
    s = load([rec(3, "11:00")], boundary=boundary, on_late="skip")
    assert s["loaded"] == loaded


def test_late_records_are_detected_quarantined_and_caught_by_lookback(load, target_url):
    load([rec(1, "10:00"), rec(2, "11:00")])
    s = load([rec(1, "10:00"), rec(3, "09:00")])
    assert (s["unchanged"], s["late"], s["loaded"]) == (1, 1, 0)
    assert any("--lookback 2h would have caught them all" in w for w in s["warnings"])
    q = hiwater.quarantine_list(target=target_url)
    assert [(x["reason"], json.loads(x["key"]), x["seen"]) for x in q] == [("late", [3], 1)]
    load([rec(3, "09:00")])  # seen again: the same quarantine row counts it
    assert [x["seen"] for x in hiwater.quarantine_list(target=target_url)] == [2]
    s = load([rec(3, "09:00")], lookback="2h")
    assert s["inserted"] == 1 and 3 in names(target_url)
    s = load([rec(4, "08:00")], on_late="load")
    assert (s["inserted"], s["late_applied"]) == (1, 1)
    assert s["new_watermark"] == "2025-01-15T11:00:00"


def test_future_records_are_quarantined_and_never_move_the_watermark(load, target_url):
    s = load([rec(1, "10:00"), rec(2, "2031-01-01T00:00:00")])
    assert (s["future"], s["new_watermark"]) == (1, "2025-01-15T10:00:00")
    assert [q["reason"] for q in hiwater.quarantine_list(target=target_url)] == ["future"]


def test_invalid_records_are_quarantined_and_strict_commits_nothing(load, target_url):
    s = load([rec(1, "10:00"), {"id": 2, "name": "x"}, rec(None, "10:00"), rec(4, "not a time"),
              rec(5, "10:00", name=7)])
    assert (s["rejected"], s["loaded"]) == (4, 1)
    details = sorted(q["detail"] for q in hiwater.quarantine_list(target=target_url))
    assert any("cursor" in d for d in details) and any("key" in d for d in details)
    before = hiwater.state_show(target=target_url)
    with pytest.raises(StrictError):
        load([rec(6, "12:00"), {"id": 7}], strict=True)
    assert hiwater.state_show(target=target_url) == before
    assert 6 not in names(target_url)


def test_a_value_the_column_cannot_hold_is_rejected_not_coerced(load, target_url):
    load([rec(1, "10:00", qty=5)])
    s = load([rec(2, "11:00", qty="five"), rec(3, "11:00", qty=7.0), rec(4, "11:00", qty=7.5)])
    assert (s["rejected"], s["inserted"]) == (2, 1)
    assert {r["id"]: r["qty"] for r in read_table(target_url, "events")} == {1: 5, 3: 7}


def test_a_crash_mid_run_commits_nothing(target_url):
    class Dies:
        description = "dies"

        def batches(self):
            import pyarrow as pa
            yield RawBatch(pa.table({"id": [1, 2], "modified_at": ["2025-01-15T10:00:00"] * 2}), "dies", 1)
            raise RuntimeError("the source broke")

        def close(self):
            pass

    with pytest.raises(RuntimeError):
        hiwater.load(source=Dies(), target=target_url, table="events", now=NOW, batch_size=1)
    assert hiwater.state_show(target=target_url) == []
    # nothing committed; the failure is noted in the history after the rollback
    (h,) = hiwater.history(target=target_url)
    assert h["outcome"] == "failed" and h["error"] == "RuntimeError: the source broke"
    assert h["source_records"] is None and hiwater.quarantine_list(target=target_url) == []


def test_a_key_written_by_an_earlier_batch_of_a_first_load_is_looked_up(target_url):
    """Found by the model on DuckDB: a batch holding a null key was left out of the range of
    keys a first load has written, so a later batch took key 0 for new (a plain INSERT on
    DuckDB: a duplicate-key error; elsewhere an 'inserted' where 'updated' was right)."""
    import pyarrow as pa

    class Batches:
        description = "batches"

        def batches(self):
            ts = "2025-01-15T10:00:00"
            yield RawBatch(pa.table({"id": [1], "name": ["a"], "modified_at": [ts]}), "b", 1)
            yield RawBatch(pa.table({"id": [0, None], "name": ["b", "x"], "modified_at": [ts, ts]}), "b", 2)
            yield RawBatch(pa.table({"id": [0], "name": ["last"], "modified_at": [ts]}), "b", 4)

        def close(self):
            pass

    s = hiwater.load(source=Batches(), target=target_url, table="events", now=NOW).to_dict(details=True)
    assert names(target_url) == {0: "last", 1: "a"}
    # key 0's change is counted once (issue 21 item 11): the later tie is written, counted unchanged
    assert (s["inserted"], s["updated"], s["unchanged"], s["rejected"]) == (2, 0, 1, 1)


def test_full_load_with_prune_deletes_missing_keys(load, target_url):
    load([rec(1, "10:00"), rec(2, "10:00"), rec(3, "10:00")])
    s = load([rec(1, "10:00"), rec(3, "10:00")], full_load=True, prune=True)
    assert s["pruned"] == 1 and set(names(target_url)) == {1, 3}


def test_windowed_run_commits_slices_and_equals_a_single_run(load, target_url, tmp_path):
    records = [rec(i, f"{8 + i // 4:02d}:{(i * 7) % 60:02d}") for i in range(1, 20)]
    s = load(records, window="1h")
    hist = hiwater.history(target=target_url)
    assert len(hist) == 1 + len(s["windows"]) and len(s["windows"]) >= 4
    assert [h["window_index"] for h in hist] == list(range(len(hist)))
    single = hiwater.load(str(tmp_path / "in1.jsonl"), db=str(tmp_path / "single.db"), table="events",
                          now=NOW).to_dict()
    assert s["new_watermark"] == single["new_watermark"] and s["loaded"] == single["loaded"] == 19


def test_since_until_backfill_never_passes_until(load, target_url):
    s = load([rec(1, "09:00"), rec(2, "10:00"), rec(3, "11:00")], since="2025-01-15T09:30:00",
             until="2025-01-15T11:00:00")
    # no watermark yet: the gap below --since stays open (the watermark does not move) ...
    assert s["loaded"] == 1 and s["new_watermark"] is None
    assert set(names(target_url)) == {2}
    # ... so the next run still reads record 1 instead of calling it late
    s = load([rec(1, "09:00"), rec(2, "10:00"), rec(3, "11:00")])
    assert (s["inserted"], s["unchanged"], s["late"], s["new_watermark"]) == (2, 1, 0, "2025-01-15T11:00:00")
    # a backfill starting at or below the watermark moves it, never past --until
    s = load([rec(4, "12:00"), rec(5, "14:00")], since="2025-01-15T11:00:00", until="2025-01-15T13:00:00")
    assert (s["loaded"], s["new_watermark"]) == (1, "2025-01-15T12:00:00")


def test_dry_run_writes_nothing(load, target_url):
    load([rec(1, "10:00")])
    before = read_table(target_url, "events", hidden=True)
    s = load([rec(2, "11:00"), rec(3, "2031-01-01T00:00:00"), {"id": 4}], dry_run=True)
    assert s["dry_run"] is True and s["loaded"] == 1
    assert read_table(target_url, "events", hidden=True) == before
    assert hiwater.quarantine_list(target=target_url) == []
    assert len(hiwater.history(target=target_url)) == 1


def test_settle_keeps_the_watermark_behind_now(load, target_url):
    s = load([rec(1, "2025-05-31T23:50:00")], settle="30m")
    assert s["new_watermark"] == "2025-05-31T23:30:00"


def test_delete_field_hard_and_soft(load, target_url, tmp_path):
    load([rec(1, "10:00"), rec(2, "10:00")], delete_field="gone")
    s = load([rec(1, "11:00", gone=True)], delete_field="gone")
    assert s["deleted"] == 1 and set(names(target_url)) == {2}
    load([rec(2, "10:00")], delete_field="gone", soft_delete=True, table="soft")
    s = load([rec(2, "12:00", gone=True), rec(9, "12:00", gone=True)], delete_field="gone", soft_delete=True,
             table="soft")
    rows = read_table(target_url, "soft")
    assert len(rows) == 1 and rows[0]["deleted_at"] is not None  # key 9 was never there: nothing to delete
    assert (s["deleted"], s["updated"], s["inserted"], s["unchanged"]) == (1, 1, 0, 1)


def test_a_new_field_adds_a_column_and_is_logged(load, target_url):
    load([rec(1, "10:00")])
    s = load([rec(2, "11:00", color="red", score=1.5, ok=True)])
    assert sorted(s["new_columns"]) == ["color", "ok", "score"]
    assert "color" in hiwater.history(target=target_url)[-1]["detail"]
    row = read_table(target_url, "events")[1]
    assert (row["color"], row["score"], bool(row["ok"])) == ("red", 1.5, True)


def test_composite_key_and_integer_cursor(load, target_url):
    rows = [{"a": 1, "b": "x", "version": 1}, {"a": 1, "b": "y", "version": 2}, {"a": 2, "b": "x", "version": 3}]
    s = load(rows, key="a,b", cursor="version", table="pairs")
    assert (s["inserted"], s["new_watermark"]) == (3, 3)
    s = load([{"a": 1, "b": "x", "version": 4}, {"a": 1, "b": "y", "version": 2}], key="a,b", cursor="version",
             table="pairs", lookback=5)
    assert (s["updated"], s["unchanged"]) == (1, 1)


def test_date_cursor(load, target_url):
    s = load([{"id": 1, "day": "2025-01-14"}, {"id": 2, "day": "2025-01-15"}], cursor="day", table="days")
    assert s["new_watermark"] == "2025-01-15"
    assert [r["day"] for r in read_table(target_url, "days")] == ["2025-01-14", "2025-01-15"]


def test_offsets_compare_as_instants_and_microseconds_are_kept(load, target_url):
    s = load([rec(1, "2025-01-15T12:00:00.123456+01:00"), rec(2, "2025-01-15T11:30:00.000001Z")])
    assert s["new_watermark"] == "2025-01-15T11:30:00.000001+00:00"
    got = {r["id"]: r["modified_at"] for r in read_table(target_url, "events")}
    assert got == {1: "2025-01-15T11:00:00.123456", 2: "2025-01-15T11:30:00.000001"}


def test_naive_timestamps_are_taken_in_assume_tz(load, target_url):
    s = load([rec(1, "10:00")], assume_tz="Europe/Berlin")
    assert s["new_watermark"] == "2025-01-15T10:00:00"
    row = read_table(target_url, "events", hidden=True)[0]
    assert row["_hiwater_cursor"] == 1736931600000000  # 09:00Z
    assert row["modified_at"] in ("2025-01-15T09:00:00", "2025-01-15T10:00:00")  # sqlite keeps the text


def test_column_types_follow_the_logical_mapping(load, target_url, target_kind):
    load([{"id": 1, "modified_at": "2025-01-15T10:00:00", "n": 1, "x": 1.5, "s": "a", "b": True, "z": None}])
    types = {k: v.lower() for k, v in column_types(target_url, "events").items()}
    expected = {
        "sqlite": {"id": "integer", "modified_at": "text", "n": "integer", "x": "real", "s": "text",
                   "b": "boolean"},
        "postgresql": {"id": "bigint", "modified_at": "timestamp with time zone", "n": "bigint",
                       "x": "double precision", "s": "text", "b": "boolean"},
        "duckdb": {"id": "bigint", "modified_at": "timestamp with time zone", "n": "bigint", "x": "double",
                   "s": "varchar", "b": "boolean"},
        # Delta (as polars reads it): the cursor column keeps the text as sent, like SQLite.
        "delta": {"id": "int64", "modified_at": "string", "n": "int64", "x": "float64", "s": "string",
                  "b": "boolean"},
    }[target_kind]
    assert {k: v for k, v in types.items() if not k.startswith("_hiwater_")} == expected  # no "z" column yet
    # its first value gives it its type; a later value of another type is judged against it
    s = load([{"id": 2, "modified_at": "2025-01-15T11:00:00", "z": "text"}])
    assert s["inserted"] == 1 and s["rejected"] == 0
    assert column_types(target_url, "events")["z"].lower() in ("text", "varchar", "string")
    s = load([{"id": 3, "modified_at": "2025-01-15T11:00:00", "z": 5}], max_rejected="100%")
    assert s["inserted"] == 0 and s["rejected"] == 1
    got = {r["id"]: r["z"] for r in read_table(target_url, "events")}
    assert got == {1: None, 2: "text"}


def test_state_commands_history_and_quarantine_replay(load, target_url):
    load([rec(1, "10:00")])
    load([rec(2, "11:00")])
    load([rec(3, "09:00")])  # late: quarantined
    assert [h["run_id"] for h in hiwater.history(target=target_url)] == [1, 2, 3]
    assert hiwater.history(target=target_url, limit=1)[0]["run_id"] == 3
    s = hiwater.quarantine_replay(stream="events", target=target_url, now=NOW)
    assert s.counts.inserted == 1 and hiwater.quarantine_list(target=target_url) == []
    assert hiwater.state_set(stream="events", value="2025-01-15T10:30:00", target=target_url)["watermark"] \
        == "2025-01-15T10:30:00"
    assert hiwater.state_rewind(stream="events", to_run=2, target=target_url)["watermark"] == "2025-01-15T10:00:00"
    assert hiwater.state_reset(stream="events", target=target_url)["watermark"] is None
    s = load([rec(1, "10:00"), rec(2, "11:00"), rec(3, "09:00")])
    assert (s["unchanged"], s["loaded"], s["total_in_target"]) == (3, 0, 3)


def test_hostile_names_are_quoted_not_pasted(load, target_url):
    table = 'we"ird; DROP TABLE x'
    s = load([{"id": 1, "modified_at": "2025-01-15T10:00:00", 'co"l': "v", "sp ace": 2}], table=table)
    assert s["inserted"] == 1
    assert read_table(target_url, table.replace('"', '""'))[0]['co"l'] == "v"


def test_the_same_runs_give_the_same_summaries_on_every_target(load, target_url, tmp_path):
    """The reference is SQLite in memory: every backend must agree with it, count for count."""
    runs = [[rec(1, "10:00"), rec(2, "10:00"), rec(2, "10:30")],
            [rec(2, "10:30"), rec(3, "10:30"), rec(4, "09:00"), {"id": 5}],
            [rec(1, "12:00", name="x"), rec(6, "2030-01-01T00:00:00")]]
    ref_db = str(tmp_path / "ref.db")
    for i, records in enumerate(runs):
        got = load(records)
        path = tmp_path / f"ref{i}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        ref = hiwater.load(str(path), db=ref_db, table="events", now=NOW).to_dict(details=True)
        for k in ("run_id", "duration_s"):
            got.pop(k), ref.pop(k)
        assert got == ref


# --- the lock -----------------------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys, time
    from hiwater.targets import open_target
    with open_target(target=sys.argv[1]) as t, t.lock("events", 10):
        print("locked", flush=True)
        time.sleep(60)
""")


def _hold_lock(url):
    p = subprocess.Popen([sys.executable, "-c", HOLDER, url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline().strip() == "locked", p.stderr.read()
    return p


def test_a_second_run_waits_for_the_lock_then_fails_changing_nothing(hw, target_url, tmp_path):
    if target_url.startswith("delta"):
        pytest.skip("Delta holds no lock (optimistic): tests/db/test_delta.py races two writers instead")
    holder = _hold_lock(target_url)
    try:
        t0 = time.monotonic()
        r = hw("load", "--input", SAMPLE, "--target", target_url, "--table", "events", "--lock-timeout", "1s")
        waited = time.monotonic() - t0
    finally:
        holder.kill()
        holder.wait()
    assert r.code == 1 and len(r.err_lines) == 1 and "gave up after 1s" in r.err_lines[0], r.err
    assert waited >= 0.9
    assert hiwater.state_show(target=target_url) == []


def test_a_killed_runners_lock_is_released_without_cleanup(hw, target_url):
    if target_url.startswith("delta"):
        pytest.skip("Delta holds no lock (optimistic): nothing to release")
    holder = _hold_lock(target_url)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    r = hw("load", "--input", SAMPLE, "--target", target_url, "--table", "events", "--lock-timeout", "5s")
    assert r.code == 0, r.err
    assert r.json["loaded"] == 5


def test_errors_never_show_the_password(hw, tmp_path, monkeypatch):
    monkeypatch.setenv("HW_SECRET_PW", "s3cr3t-pw")
    r = hw("load", "--input", SAMPLE, "--target", "postgresql://postgres:${HW_SECRET_PW}@127.0.0.1:1/test")
    assert r.code == 1 and "s3cr3t" not in r.err and "***" in r.err, r.err
    with pytest.raises(HiwaterError) as e:
        hiwater.load(SAMPLE, target="postgresql://u:pa55word@127.0.0.1:1/test")
    assert "pa55word" not in str(e.value)


def test_a_late_version_superseded_in_a_later_batch_is_unchanged(load, target_url):
    """SPEC §8: the same verdict whatever the batch. An old version below the window followed,
    in a later batch of the same run, by a newer one of its key is not late."""
    load([rec(1, "12:00")])
    s = load([rec(3, "11:00"), rec(5, "10:00"), rec(3, "13:00")], batch_size=1)
    assert (s["inserted"], s["unchanged"], s["late"]) == (1, 1, 1)  # key 5 alone is late
    assert [q["key"] for q in hiwater.quarantine_list(target=target_url)] == ["[5]"]
    # the warning names the worst late record that stayed late (key 5, not the superseded key 3)
    assert s["warnings"] == ["1 late record(s) quarantined: the worst was 2h behind the watermark; "
                             "--lookback 2h would have caught them all"]
    # two late versions of one key in two batches: the newer (on a tie, the later) is the late one
    s = load([rec(7, "09:00", name="old"), rec(7, "09:30", name="new"), rec(8, "09:00", name="a"),
              rec(8, "09:00", name="b")], batch_size=1)
    assert (s["late"], s["unchanged"]) == (2, 2)
    got = {(q["key"], json.loads(q["record"])["name"]) for q in hiwater.quarantine_list(target=target_url)}
    assert got == {("[5]", "n5"), ("[7]", "new"), ("[8]", "b")}

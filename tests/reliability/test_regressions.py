"""Regression tests: one per bug the reliability suite found (docs/reliability.md lists them)."""

from __future__ import annotations

import pytest

from conftest import NOW, SAMPLE, write_jsonl

pytestmark = pytest.mark.reliability


def test_lock_timeout_zero_means_fail_at_once_and_a_bare_number_names_the_option(hw, tmp_path):
    db = tmp_path / "t.db"
    r = hw("load", "--input", SAMPLE, "--db", db, "--lock-timeout", "0")
    assert r.code == 0, r.err
    r = hw("load", "--input", SAMPLE, "--db", db, "--lock-timeout", "5")
    assert r.code == 2
    assert r.err_lines == ["error: --lock-timeout '5': give a unit (for example 30s or 2m; 0 fails at once)"]


def test_a_nul_character_in_a_name_is_a_clear_error_not_an_internal_one(hw, tmp_path):
    db = tmp_path / "t.db"
    r = hw("load", "--input", SAMPLE, "--db", db, "--table", "a\x00b")
    assert r.code == 2 and "internal error" not in r.err
    assert r.err_lines == ["error: the name 'a\\x00b' contains a NUL character, which a SQLite identifier "
                           "cannot hold (rename it)"]
    f = tmp_path / "nul.jsonl"
    f.write_text('{"id": 1, "a\\u0000b": 1, "modified_at": "2025-01-15T10:00:00"}\n')
    r = hw("load", "--input", f, "--db", db, "--table", "events")
    assert r.code == 2 and "NUL character" in r.err and "internal error" not in r.err


def test_json_lines_with_a_field_name_that_is_not_utf8_names_the_byte(hw, tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_bytes(b'{"id": 0, "mo\x80dified_at": "2025-01-15T10:00:00"}\n')
    r = hw("load", "--input", f, "--db", tmp_path / "t.db")
    assert r.code == 1
    assert r.err_lines == [f"error: {f}: not UTF-8 text at byte 13 (convert the file to UTF-8)"]


def test_a_list_key_in_json_lines_is_keyed_by_its_json_text_like_a_json_array(hw, tmp_path):
    db = tmp_path / "t.db"
    recs = [{"id": [1, 2], "modified_at": "2025-01-15T10:00:00"}]
    a = write_jsonl(tmp_path / "a.jsonl", recs)
    b = tmp_path / "a.json"
    b.write_text(__import__("json").dumps(recs))
    r1 = hw("load", "--input", a, "--db", db, "--table", "events", "--now", NOW)
    assert r1.code == 0, r1.err
    r2 = hw("load", "--input", b, "--db", db, "--table", "events", "--now", NOW, "--details")
    assert r2.code == 0 and r2.json["unchanged"] == 1 and r2.json["total_in_target"] == 1



def test_a_huge_integer_inside_a_nested_value_of_a_mixed_column_is_quarantined(hw, tmp_path):
    db = tmp_path / "t.db"
    f = tmp_path / "big.jsonl"
    f.write_text('{"id":1,"name":0,"modified_at":"2025-01-15T10:00:00"}\n'
                 '{"id":2,"name":[-9223372036854775809],"modified_at":"2025-01-15T10:00:00"}\n')
    r = hw("load", "--input", f, "--db", db, "--table", "events", "--now", NOW, "--details")
    assert r.code == 0 and "internal error" not in r.err
    assert (r.json["inserted"], r.json["rejected"]) == (1, 1)


def test_an_error_naming_a_value_with_a_newline_stays_on_one_line(hw, tmp_path):
    r = hw("load", "--input", SAMPLE, "--db", tmp_path / "t.db", "--cursor", "a\nb", "--key", "a\nb")
    assert r.code == 2
    assert r.err_lines == [f"error: --key a\\nb: no record of {SAMPLE} has that field (its fields: id, modified_at, name)"]


@pytest.mark.parametrize("extra", [[], ["--window", "1h"], ["--window", "1h", "--on-late", "load"]])
def test_an_older_version_below_the_window_superseded_in_the_same_run_is_not_late(hw, tmp_path, extra):
    """Found by the model checker: with --window the first transaction judged it alone."""
    db = tmp_path / "t.db"
    first = write_jsonl(tmp_path / "a.jsonl", [{"id": 1, "name": "v1", "modified_at": "2025-01-15T08:00:00"},
                                               {"id": 2, "name": "x", "modified_at": "2025-01-15T12:00:00"}])
    assert hw("load", "--input", first, "--db", db, "--table", "events", "--now", NOW).code == 0
    src = write_jsonl(tmp_path / "b.jsonl", [{"id": 1, "name": "v2", "modified_at": "2025-01-15T09:00:00"},
                                             {"id": 1, "name": "v3", "modified_at": "2025-01-15T13:00:00"}])
    r = hw("load", "--input", src, "--db", db, "--table", "events", "--now", NOW, "--details", *extra)
    assert r.code == 0, r.err
    s = r.json
    assert (s["late"], s["late_applied"], s["updated"], s["unchanged"]) == (0, 0, 1, 1)
    assert not any("late record" in w for w in s["warnings"])
    import hiwater
    assert hiwater.quarantine_list(db=str(db)) == []


def test_switching_a_new_file_to_wal_retries_a_busy_answer(tmp_path, monkeypatch):
    """SQLite answers 'database is locked' at once (no busy handler) when two connections
    switch one new file to WAL together; the target must retry within its busy timeout."""
    import sqlite3

    from hiwater.targets.sqlite import SQLiteTarget
    t = SQLiteTarget(str(tmp_path / "t.db"))
    real, calls = SQLiteTarget._op, []

    def flaky(self, sql, params=(), many=False):
        if sql == "PRAGMA journal_mode=WAL" and len(calls) < 2:
            calls.append(sql)
            raise sqlite3.OperationalError("database is locked")
        return real(self, sql, params, many)

    monkeypatch.setattr(SQLiteTarget, "_op", flaky)
    with t:
        assert len(calls) == 2 and t.conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_new_file_gets_large_pages_and_wal(tmp_path):
    import sqlite3

    import hiwater
    db = tmp_path / "t.db"
    hiwater.load(str(write_jsonl(tmp_path / "a.jsonl", [{"id": 1, "ts": "2024-01-01T00:00:00"}])),
                 db=str(db), key=["id"], cursor="ts")
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert con.execute("PRAGMA page_size").fetchone() == (16384,)


@pytest.mark.slow
def test_loaders_creating_one_new_file_together_all_wait_their_turn(tmp_path):
    """Found by the concurrency trials: switching a new file to WAL could fail at once with
    'database is locked' (SQLite skips the busy handler there), although --lock-timeout was 30s."""
    import time

    from .harness import start
    for trial in range(6):
        db = tmp_path / f"t{trial}.db"
        at = time.time() + 0.2
        procs = [start(["load", "--input", SAMPLE, "--db", db, "--now", NOW, "--lock-timeout", "30s"], tmp_path,
                       start_at=at) for _ in range(8)]
        results = [p.wait() for p in procs]
        assert [r.code for r in results] == [0] * 8, [r.err for r in results if r.code]


def test_a_cursor_that_is_a_list_with_a_huge_integer_is_quarantined(hw, tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text('{"id": 0, "modified_at": [-9223372036854775809]}\n')
    r = hw("load", "--input", f, "--db", tmp_path / "t.db", "--details", "--max-rejected", "100%")
    assert r.code == 0 and "internal error" not in r.err
    assert r.json["rejected"] == 1


def test_a_batch_size_beyond_the_readers_range_is_bad_usage(hw, tmp_path):
    r = hw("load", "--input", SAMPLE, "--db", tmp_path / "t.db", "--batch-size", "99999999999999999999")
    assert r.code == 2 and r.err_lines == ["error: --batch-size must be at most 2147483647"]


def test_control_characters_in_an_error_are_escaped(hw, tmp_path):
    r = hw("load", "--input", SAMPLE, "--db", tmp_path / "t.db", "--cursor", "0\x0c0", "--key", "0\x0c0")
    assert r.code == 2
    assert r.err.splitlines() == [f"error: --key 0\\x0c0: no record of {SAMPLE} has that field (its fields: id, modified_at, name)"]


def test_a_timestamp_outside_the_printable_years_is_quarantined_not_a_crash(hw, tmp_path):
    """'0001-01-01T00:30:00+01:00' is year 0 in UTC: printing it back used to overflow."""
    f = write_jsonl(tmp_path / "a.jsonl", [{"id": 0, "modified_at": "0001-01-01T00:30:00+01:00"},
                                           {"id": 1, "modified_at": "9999-12-31T23:00:00-05:00"},
                                           {"id": 2, "modified_at": "2025-01-15T10:00:00"}])
    for extra in ([], ["--window", "1h"]):
        r = hw("load", "--input", f, "--db", tmp_path / f"t{len(extra)}.db", "--details", "--max-future", "none",
               *extra)
        assert r.code == 0 and "internal error" not in r.err
        assert (r.json["rejected"], r.json["inserted"], r.json["new_watermark"]) == (2, 1, "2025-01-15T10:00:00")


@pytest.mark.parametrize("option", ["--window", "--lookback", "--max-future", "--settle"])
def test_a_duration_beyond_64_bit_cursor_arithmetic_is_bad_usage(hw, tmp_path, option):
    r = hw("load", "--input", SAMPLE, "--db", tmp_path / "t.db", option, "99999999999999999999d")
    assert r.code == 2
    assert r.err_lines == [f"error: {option} '99999999999999999999d': too long "
                           f"(at most 10000 years, or 2**62 for integer cursors)"]

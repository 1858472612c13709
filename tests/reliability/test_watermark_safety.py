"""6. Watermark safety: empty sources, a future watermark, a restored target, a truncated source."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from conftest import NOW, rec, write_jsonl

from .harness import check_consistent, snapshot

pytestmark = pytest.mark.reliability


def load(hw, path, db, *extra):
    r = hw("load", "--input", path, "--db", db, "--table", "events", "--now", NOW, "--details", *extra)
    assert r.code == 0, r.err
    return r


def state_bytes(db):
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT stream, table_name, key_columns, cursor_column, kind, watermark, naive, "
                           "assume_tz, version, typeof(watermark), hex(watermark) FROM _hiwater_state").fetchall()
    finally:
        con.close()


@pytest.mark.parametrize("name, body", [("empty.jsonl", ""), ("empty.json", "[]"), ("blank.jsonl", "\n\n"),
                                        ("header.csv", "id,name,modified_at\n")])
def test_empty_source_many_runs_keeps_the_watermark_byte_identical(hw, tmp_path, name, body):
    db = tmp_path / "t.db"
    load(hw, write_jsonl(tmp_path / "a.jsonl", [rec(1, "10:00"), rec(2, "2025-01-15T11:30:00.000001+01:00")]), db)
    before = state_bytes(db)
    empty = tmp_path / name
    empty.write_text(body)
    for i in range(20):
        r = load(hw, empty, db, *(["--window", "1h"] if i % 2 else []))
        assert r.json["source_records"] == 0 and r.json["previous_watermark"] == r.json["new_watermark"]
        assert any("is empty" in w for w in r.json["warnings"])
        assert state_bytes(db) == before
    check_consistent(snapshot(db))


def test_a_stored_watermark_far_in_the_future_is_a_loud_warning(hw, tmp_path):
    db = tmp_path / "t.db"
    load(hw, write_jsonl(tmp_path / "a.jsonl", [rec(1, "10:00")]), db)
    assert hw("state", "set", "--db", db, "--stream", "events", "2099-01-01T00:00:00").code == 0
    for extra in ([], ["--window", "1h"], ["--dry-run"]):
        r = hw("load", "--input", write_jsonl(tmp_path / "b.jsonl", [rec(2, "11:00")]), "--db", db,
               "--table", "events", "--now", NOW, *extra)
        assert r.code == 0
        assert any(line.startswith("warning: the stored watermark 2099-01-01T00:00:00 is in the future")
                   for line in r.err_lines), r.err
    # the record was not lost: it waits in the quarantine as late, and the watermark did not move
    assert r.json["new_watermark"] == "2099-01-01T00:00:00"


def test_a_target_restored_from_an_older_copy_converges_in_one_run(hw, tmp_path):
    db, old = tmp_path / "t.db", tmp_path / "old.db"
    recs = [rec(i, f"{8 + i // 4:02d}:{(i % 4) * 15:02d}") for i in range(12)]
    load(hw, write_jsonl(tmp_path / "s1.jsonl", recs[:4]), db)
    shutil.copyfile(db, old)  # a file copy of a closed target (the WAL was checkpointed on close)
    for p in ("-wal",):
        if (tmp_path / f"t.db{p}").exists():
            shutil.copyfile(tmp_path / f"t.db{p}", tmp_path / f"old.db{p}")
    full = recs + [rec(1, "12:00", name="v2")]
    load(hw, write_jsonl(tmp_path / "s2.jsonl", recs[:8]), db)
    load(hw, write_jsonl(tmp_path / "s3.jsonl", full), db, "--window", "1h")
    live = snapshot(db)
    # the restore: the old copy replaces the target, state and data together
    for p in ("", "-wal", "-shm", "-journal"):
        (tmp_path / f"t.db{p}").unlink(missing_ok=True)
        if (tmp_path / f"old.db{p}").exists():
            shutil.copyfile(tmp_path / f"old.db{p}", tmp_path / f"t.db{p}")
    r = load(hw, tmp_path / "s3.jsonl", db)
    restored = snapshot(db)
    assert restored.rows == live.rows and restored.watermark == live.watermark
    check_consistent(restored)
    assert load(hw, tmp_path / "s3.jsonl", db).json["loaded"] == 0
    del r


def test_a_source_truncated_below_the_watermark_says_so(hw, tmp_path):
    db = tmp_path / "t.db"
    load(hw, write_jsonl(tmp_path / "a.jsonl", [rec(1, "10:00"), rec(2, "11:00"), rec(3, "12:00")]), db)
    truncated = write_jsonl(tmp_path / "b.jsonl", [rec(1, "10:00"), rec(2, "11:00")])
    for extra in ([], ["--on-late", "load"], ["--window", "1h"]):
        r = load(hw, truncated, db, *extra)
        assert ("warning: the newest record in the source (2025-01-15T11:00:00) is older than the watermark "
                "(2025-01-15T12:00:00): was the source truncated, or restored from an older copy?") in r.err_lines
        assert r.json["new_watermark"] == "2025-01-15T12:00:00"
    # and with a late record applied (something loaded), it still says so
    r = load(hw, write_jsonl(tmp_path / "c.jsonl", [rec(1, "10:00"), rec(4, "09:00")]), db, "--on-late", "load")
    assert r.json["loaded"] == 1 and any("older than the watermark" in x for x in r.err_lines)
    # a source whose newest record is at the watermark is not truncated: no such warning
    r = load(hw, write_jsonl(tmp_path / "d.jsonl", [rec(3, "12:00")]), db)
    assert not any("older than the watermark" in x for x in r.err_lines)
    assert json.loads(r.out)["previous_watermark"] == "2025-01-15T12:00:00"

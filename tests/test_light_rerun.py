"""Issue 14: a JSON Lines re-export read key and cursor first (src/hiwater/sources/lightjson.py).

Records whose stored version is already current are counted ``unchanged`` without their other
fields being parsed or checked; every record that will be written is read and checked in full,
and keeps its record number in the file (quarantine, errors). Real SQLite and DuckDB files.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

import hiwater
from hiwater import HiwaterError

NOW = "2025-06-01T00:00:00Z"


def write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines))
    return path


def rec(i, cursor, amount=1.5, **more):
    return {"id": i, "name": f"n{i}", "modified_at": cursor, "amount": amount, **more}


def load(src, db, **kw):
    kw.setdefault("now", NOW)
    return hiwater.load(str(src), db=str(db), table="events", key=["id"], cursor="modified_at", **kw)


def rows(db):
    with sqlite3.connect(db) as c:
        return c.execute("SELECT id, name, modified_at, amount FROM events ORDER BY id").fetchall()


BASE = [rec(i, f"2025-01-0{1 + i % 5}T00:00:00") for i in range(1, 21)]


def test_a_current_record_is_unchanged_without_its_other_fields_checked(tmp_path):
    db = tmp_path / "t.db"
    load(write_lines(tmp_path / "a.jsonl", BASE), db)
    before = rows(db)
    # Record 3 is re-exported at the same version with a value its column cannot hold: it would
    # not be written, so it is not checked (docs/concepts.md). Record 7 has a newer version with
    # the same bad value: it will be written, so it is checked and rejected, named by its line.
    again = list(BASE)
    again[2] = rec(3, BASE[2]["modified_at"], amount="not a number")
    again[6] = rec(7, "2025-02-01T00:00:00", amount="not a number")
    s = load(write_lines(tmp_path / "b.jsonl", again), db)
    assert (s.counts.unchanged, s.counts.rejected, s.counts.inserted, s.counts.updated) == (19, 1, 0, 0)
    q = hiwater.quarantine_list(db=str(db), stream="events", reason="invalid")
    assert [(r["record_no"], json.loads(r["record"])["id"]) for r in q] == [(7, 7)]
    assert rows(db) == before


def test_the_records_to_write_are_read_in_full_and_numbered_as_in_the_file(tmp_path):
    db = tmp_path / "t.db"
    load(write_lines(tmp_path / "a.jsonl", BASE), db)
    again = [dict(r) for r in BASE]
    again[4] = rec(5, "2025-03-01T00:00:00", amount=9.25, extra={"a": [1, 2]})  # updated, new field
    again.append(rec(21, "2025-03-02T00:00:00", amount=2))                      # new
    # a blank line and a late record (older than the window, not in the target)
    lines = again[:10] + [""] + again[10:] + [rec(99, "2024-01-01T00:00:00")]
    s = load(write_lines(tmp_path / "b.jsonl", lines), db, lookback="1d")
    assert (s.counts.updated, s.counts.inserted, s.counts.unchanged, s.counts.late) == (1, 1, 19, 1)
    got = {r[0]: r for r in rows(db)}
    assert got[5] == (5, "n5", "2025-03-01T00:00:00", 9.25)
    assert got[21] == (21, "n21", "2025-03-02T00:00:00", 2.0)
    with sqlite3.connect(db) as c:
        assert json.loads(c.execute("SELECT extra FROM events WHERE id = 5").fetchone()[0]) == {"a": [1, 2]}
    late = hiwater.quarantine_list(db=str(db), stream="events", reason="late")
    assert [r["record_no"] for r in late] == [22]  # 21 records before it; the blank line is not one
    assert s.to_dict()["new_watermark"].startswith("2025-03-02T00:00:00")
    # and nothing more to do the next time
    s = load(write_lines(tmp_path / "c.jsonl", lines), db, lookback="1d")
    assert (s.counts.unchanged, s.counts.loaded) == (21, 0)


def test_a_malformed_line_in_a_rerun_is_named(tmp_path):
    db = tmp_path / "t.db"
    load(write_lines(tmp_path / "a.jsonl", BASE), db)
    lines = BASE[:12] + ['{"id": 13, "modified_at": '] + BASE[13:]
    with pytest.raises(HiwaterError) as e:
        load(write_lines(tmp_path / "b.jsonl", lines), db)
    assert "b.jsonl:13:" in str(e.value) and "malformed JSON" in str(e.value)
    assert len(rows(db)) == 20


def test_duckdb_rerun_counts_and_table(tmp_path):
    url = f"duckdb:///{tmp_path / 't.duckdb'}"
    kw = dict(target=url, table="events", key=["id"], cursor="modified_at", now=NOW)
    hiwater.load(str(write_lines(tmp_path / "a.jsonl", BASE)), **kw)
    again = [dict(r) for r in BASE]
    again[0] = rec(1, "2025-04-01T00:00:00", amount=3.0)
    s = hiwater.load(str(write_lines(tmp_path / "b.jsonl", again)), **kw)
    assert (s.counts.updated, s.counts.unchanged) == (1, 19)
    s = hiwater.load(str(tmp_path / "b.jsonl"), **kw)
    assert (s.counts.updated, s.counts.unchanged) == (0, 20)
    import duckdb
    with duckdb.connect(str(tmp_path / "t.duckdb"), read_only=True) as c:
        assert c.execute("SELECT amount FROM events WHERE id = 1").fetchone()[0] == 3.0
        assert c.execute("SELECT count(*) FROM events").fetchone()[0] == 20

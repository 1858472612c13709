"""Issue 22 item 4: the quarantine keeps each record exactly as it arrived (SPEC §8).

A JSON number such as ``1e400`` is rightly rejected, but it used to be stored as ``Infinity``,
``-0.0`` as ``0.0``, ``1.0000000000000000001`` as ``1.0``, ``1E2`` as ``100.0``, and every record's
fields re-ordered. The record's text as it arrived is what ``quarantine list`` shows and what
``quarantine replay`` judges again.
"""

from __future__ import annotations

import gzip
import json

import pytest

import hiwater
from conftest import NOW

# A line the run rejects (its cursor is not a time), holding numbers whose text no float keeps.
ODD = '{"modified_at": "not a time", "id": 7, "a": -0.0, "b": 1.0000000000000000001, "c": 1E2, "d": 1.50}'
# A line rejected for its value: 1e400 is beyond any double.
HUGE = '{"id":1,"modified_at":"2025-01-15T10:00:00","v":1e400}'
GOOD = '{"id":2,"modified_at":"2025-01-15T10:00:00","v":2.5}'


def records(db) -> list[str]:
    return [q["record"] for q in hiwater.quarantine_list(db=str(db))]


@pytest.mark.parametrize("light", [False, True], ids=["first-run", "rerun-key-first"])
@pytest.mark.parametrize("fast", [True, False], ids=["fast-reader", "exact-reader"])
def test_jsonl_record_is_quarantined_as_its_line(hw, tmp_path, fast, light):
    db = tmp_path / "t.db"
    path = tmp_path / "events.jsonl"
    # A BOM sends the file to the exact reader; without it pyarrow reads it.
    bom = "" if fast else "\ufeff"
    if light:  # a run whose target holds the stream reads JSON Lines key and cursor first
        path.write_text(GOOD + "\n")
        assert hw("load", "-i", path, "--db", db, "--now", NOW).code == 0
    path.write_text(bom + GOOD + "\n\n" + ODD + "\r\n" + GOOD.replace('"id":2', '"id":3') + "\n")
    r = hw("load", "-i", path, "--db", db, "--now", NOW)
    assert r.code == 0, r.err
    assert records(db) == [ODD]


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz", "events.json"])
def test_a_rejected_number_is_kept_as_written_and_replayed_from_it(hw, tmp_path, name):
    db = tmp_path / "t.db"
    path = tmp_path / name
    text = (f"[\n  {HUGE},\n  {GOOD}\n]\n" if name.endswith(".json") else f"{HUGE}\n{GOOD}\n")
    path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    r = hw("load", "-i", path, "--db", db, "--now", NOW)
    assert r.code == 0, r.err
    [q] = hiwater.quarantine_list(db=str(db))
    assert q["record"] == HUGE and "Infinity" not in q["record"]
    # The replay judges the text again: still beyond a double, still quarantined as sent.
    r = hw("quarantine", "replay", "--db", db, "--stream", "events", "--now", NOW)
    assert r.code == 0, r.err
    assert records(db) == [HUGE]


def test_a_json_array_keeps_each_element_as_written(hw, tmp_path):
    db = tmp_path / "t.db"
    path = tmp_path / "events.json"
    path.write_text("[" + GOOD + ",\n" + ODD + "]")
    assert hw("load", "-i", path, "--db", db, "--now", NOW).code == 0
    assert records(db) == [ODD]


def test_a_huge_integer_and_key_order_are_kept(hw, tmp_path):
    db = tmp_path / "t.db"
    line = '{"z": 123456789012345678901234567890, "id": 5, "modified_at": "2025-01-15T10:00:00"}'
    (tmp_path / "events.jsonl").write_text(line + "\n")
    # (its one record is rejected: --max-rejected 100% accepts a run that rejects every record)
    assert hw("load", "-i", tmp_path / "events.jsonl", "--db", db, "--now", NOW, "--max-rejected", "100%").code == 0
    assert records(db) == [line]


def test_a_late_record_is_quarantined_as_written(hw, tmp_path):
    db = tmp_path / "t.db"
    path = tmp_path / "events.jsonl"
    path.write_text('{"id":1,"modified_at":"2025-01-15T12:00:00"}\n')
    assert hw("load", "-i", path, "--db", db, "--now", NOW).code == 0
    late = '{"id": 9, "modified_at": "2025-01-15T08:00:00", "x": 1E2}'
    path.write_text('{"id":1,"modified_at":"2025-01-15T12:00:00"}\n' + late + "\n")
    assert hw("load", "-i", path, "--db", db, "--now", NOW).code == 0
    assert records(db) == [late]


def test_python_records_and_csv_cells_keep_their_values(hw, tmp_path):
    """Records handed over in Python have no text: they are written as JSON (as before). A CSV
    cell is text unless its whole column reads as numbers that give the same text back, so the
    record's JSON holds each cell's text (``007`` stays ``"007"``)."""
    db = tmp_path / "t.db"
    hiwater.load([{"id": 1, "modified_at": "bad", "v": 1.5}], db=str(db), stream="py", table="py",
                 max_rejected="100%")  # (its one record is rejected, on purpose)
    assert json.loads(records(db)[0]) == {"id": 1, "modified_at": "bad", "v": 1.5}
    path = tmp_path / "c.csv"
    path.write_text("id,modified_at,zip,n\n1,2025-01-15T10:00:00,02134,100\n2,bad,007,200\n")
    assert hw("load", "-i", path, "--db", db, "--now", NOW).code == 0
    [q] = [q for q in hiwater.quarantine_list(db=str(db)) if q["stream"] == "c"]
    assert json.loads(q["record"]) == {"id": 2, "modified_at": "bad", "zip": "007", "n": 200}


@pytest.mark.parametrize("how", [("--buckets", "2"), ("--window", "1h")])
def test_buckets_and_windows_keep_the_text(hw, tmp_path, how):
    db = tmp_path / "t.db"
    path = tmp_path / "events.jsonl"
    path.write_text(GOOD + "\n" + HUGE + "\n" + GOOD.replace('"id":2', '"id":3') + "\n")
    r = hw("load", "-i", path, "--db", db, "--now", NOW, *how)
    assert r.code == 0, r.err
    assert records(db) == [HUGE]


def test_a_record_without_its_cursor_is_replayed_and_quarantined_again(hw, tmp_path):
    """Kept as it arrived, the record has no cursor field at all (it used to be stored with
    ``"modified_at": null``): replayed alone, it is invalid again, not a wrong --cursor."""
    db = tmp_path / "t.db"
    path = tmp_path / "events.jsonl"
    path.write_text(GOOD + '\n{"id": 900, "name": "bad"}\n')
    assert hw("load", "-i", path, "--db", db, "--now", NOW).code == 0
    r = hw("quarantine", "replay", "--db", db, "--stream", "events", "--now", NOW)
    assert r.code == 0, r.err
    assert records(db) == ['{"id": 900, "name": "bad"}']

"""Issue 10, case by case: each behaviour a new user hit, as they hit it (the CLI, real files).

The property, model and differential suites (tests/db/test_fidelity.py, test_cursor_model.py,
tests/db/test_differential.py) cover the classes; these pin the exact symptoms of the report.
"""

from __future__ import annotations

import json
import sqlite3

import pyarrow as pa
import pyarrow.parquet as pq

import hiwater
from conftest import NOW, rec, write_jsonl


def load(hw, *args):
    r = hw("load", *[str(a) for a in args], "--now", NOW, "--details")
    return r


def test_4_since_above_the_watermark_from_a_sql_source_loses_nothing(hw, tmp_path):
    """#4: from a SQL source the records --since left out were never read again."""
    src = tmp_path / "app.db"
    con = sqlite3.connect(src)
    con.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, modified_at TEXT)")
    con.executemany("INSERT INTO orders VALUES (?, ?)", [(1, "2025-01-15T08:00:00")])
    con.commit()
    db = tmp_path / "t.db"
    sql = ("--source", f"sqlite:///{src}", "--source-table", "orders", "--db", db)
    assert load(hw, *sql).json["new_watermark"] == "2025-01-15T08:00:00"
    con.executemany("INSERT INTO orders VALUES (?, ?)", [(2, "2025-01-15T09:00:00"), (3, "2025-01-15T12:00:00")])
    con.commit()
    s = load(hw, *sql, "--since", "2025-01-15T11:00:00").json
    assert (s["inserted"], s["new_watermark"]) == (1, "2025-01-15T08:00:00")  # the gap keeps it
    s = load(hw, *sql).json  # the next run reads the gap: record 2 is loaded, not lost or late
    assert (s["inserted"], s["unchanged"], s["late"], s["new_watermark"]) == (1, 2, 0, "2025-01-15T12:00:00")


def test_13_a_key_the_source_does_not_have_is_a_usage_error_with_a_suggestion(hw, tmp_path):
    """#13: `--key DELTA` on data whose field is `delta` quarantined every record, exit 0."""
    f = write_jsonl(tmp_path / "a.jsonl", [{"delta": 1, "modified_at": "2025-01-15T10:00:00", "v": "x"}])
    db = tmp_path / "t.db"
    r = load(hw, "--input", f, "--db", db, "--key", "DELTA")
    assert r.code == 2 and r.err_lines == [f"error: --key DELTA: no record of {f} has that field (its fields: "
                                           f"delta, modified_at, v) (did you mean --key delta?)"]
    r = load(hw, "--input", f, "--db", db, "--key", "delta", "--cursor", "updated")
    assert r.code == 2 and "--cursor updated: no record of" in r.err
    assert not db.exists() or hiwater.state_show(db=str(db)) == []


def test_13_every_record_rejected_says_so(hw, tmp_path):
    """#13: the warning said "every record was skipped … newest source cursor None"."""
    f = write_jsonl(tmp_path / "a.jsonl", [{"id": 1, "modified_at": "soon"}, {"id": 2, "modified_at": "later"}])
    # (such a run fails unless --max-rejected 100% accepts it: issue 21, tests/test_issue21_verdicts.py)
    r = load(hw, "--input", f, "--db", tmp_path / "t.db", "--max-rejected", "100%")
    assert r.code == 0 and r.json["rejected"] == 2
    assert r.err_lines == ["warning: every record (2) was invalid and quarantined; the watermark stays at None "
                           "(see `hiwater quarantine list`)"]


def test_19_a_replay_of_late_records_does_not_ask_about_truncation(hw, tmp_path):
    db = tmp_path / "t.db"
    assert load(hw, "--input", write_jsonl(tmp_path / "a.jsonl", [rec(1, "12:00")]), "--db", db,
                "--table", "events").code == 0
    assert load(hw, "--input", write_jsonl(tmp_path / "b.jsonl", [rec(2, "09:00")]), "--db", db,
                "--table", "events").json["late"] == 1
    r = hw("quarantine", "replay", "--db", db, "--stream", "events", "--reason", "late", "--now", NOW)
    assert r.code == 0 and r.json["inserted"] == 1
    assert not any("truncated" in line for line in r.err_lines)


def test_20_offsets_with_fractions_parse_the_same_on_every_python(hw, tmp_path):
    """#20: Python 3.10's fromisoformat rejected `…00.9+01:00`; hiwater parses it itself."""
    f = write_jsonl(tmp_path / "a.jsonl", [rec(1, "2025-01-15T10:00:00.9+01:00"), rec(2, "2025-01-15T09:00:00.95Z"),
                                           rec(3, "2025-01-15 09:30+0100"), rec(4, "2025-W03-3")])
    s = load(hw, "--input", f, "--db", tmp_path / "t.db").json
    assert (s["inserted"], s["rejected"]) == (3, 1)  # a week date is not a timestamp hiwater reads
    assert s["new_watermark"] == "2025-01-15T09:00:00.950000+00:00"


def test_3_parquet_nanosecond_cursors_are_kept_not_an_internal_error(hw, tmp_path):
    # (issue 10 refused the sub-microsecond one; issue 22 keeps it: a timestamp_ns stream)
    f = tmp_path / "a.parquet"
    pq.write_table(pa.table({"id": [1, 2], "modified_at": pa.array([1736935200123456789, 1736935200123456000],
                                                                    pa.timestamp("ns"))}), f)
    r = load(hw, "--input", f, "--db", tmp_path / "t.db")
    assert r.code == 0 and (r.json["inserted"], r.json["rejected"]) == (2, 0)
    assert r.json["new_watermark"] == "2025-01-15T10:00:00.123456789"


def test_6_full_load_applies_a_change_that_kept_its_cursor(hw, tmp_path):
    db = tmp_path / "t.db"
    load(hw, "--input", write_jsonl(tmp_path / "a.jsonl", [rec(1, "10:00", name="old")]), "--db", db, "--table", "t")
    changed = write_jsonl(tmp_path / "b.jsonl", [rec(1, "10:00", name="new")])
    assert load(hw, "--input", changed, "--db", db, "--table", "t").json["unchanged"] == 1  # incremental: as SPEC §3
    s = load(hw, "--input", changed, "--db", db, "--table", "t", "--full-load").json
    assert (s["updated"], s["unchanged"]) == (1, 0)
    assert sqlite3.connect(db).execute("SELECT name FROM t").fetchone() == ("new",)
    s = load(hw, "--input", changed, "--db", db, "--table", "t", "--full-load").json
    assert (s["updated"], s["unchanged"]) == (0, 1)  # identical rows are not rewritten


def test_5_prune_on_an_empty_export_deletes_nothing(hw, tmp_path):
    db = tmp_path / "t.db"
    good = write_jsonl(tmp_path / "a.jsonl", [rec(1, "10:00"), rec(2, "11:00")])
    load(hw, "--input", good, "--db", db, "--table", "t")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    r = load(hw, "--input", empty, "--db", db, "--table", "t", "--full-load", "--prune")
    assert r.code == 1 and "has no records: --prune would delete every row of 't'; nothing was committed" in r.err
    assert sqlite3.connect(db).execute("SELECT count(*) FROM t").fetchone() == (2,)
    s = load(hw, "--input", good, "--db", db, "--table", "t").json  # the good file again: nothing late
    assert (s["unchanged"], s["late"]) == (2, 0)


def test_7_the_quarantine_keeps_the_bad_value_and_replay_does_not_load_null(hw, tmp_path):
    db = tmp_path / "t.db"
    load(hw, "--input", write_jsonl(tmp_path / "a.jsonl", [rec(1, "10:00", x=1)]), "--db", db, "--table", "t")
    s = load(hw, "--input", write_jsonl(tmp_path / "b.jsonl", [rec(2, "11:00", x=[1, "abc"][1])]), "--db", db,
             "--table", "t", "--max-rejected", "100%").json  # (else a run of invalid records fails: issue 21)
    assert s["rejected"] == 1
    [q] = hiwater.quarantine_list(db=str(db))
    assert json.loads(q["record"])["x"] == "abc"
    r = hw("quarantine", "replay", "--db", db, "--stream", "t", "--now", NOW)
    assert r.code == 0 and (r.json["inserted"], r.json["rejected"]) == (0, 1)
    assert sqlite3.connect(db).execute("SELECT count(*) FROM t WHERE x IS NULL").fetchone() == (0,)


def test_12_the_cursor_kind_does_not_depend_on_order_or_batches(hw, tmp_path):
    """#12: a date then a timestamp gave 1 loaded + 1 rejected; the reverse loaded both."""
    dates_first = write_jsonl(tmp_path / "a.jsonl", [rec(1, "2025-01-14"), rec(2, "2025-01-15T10:00:00")])
    stamps_first = write_jsonl(tmp_path / "b.jsonl", [rec(2, "2025-01-15T10:00:00"), rec(1, "2025-01-14")])
    for f in (dates_first, stamps_first):
        for batch in ("65536", "1"):
            db = tmp_path / f"{f.stem}-{batch}.db"
            s = load(hw, "--input", f, "--db", db, "--batch-size", batch).json
            assert (s["inserted"], s["rejected"], s["new_watermark"]) == (2, 0, "2025-01-15T10:00:00"), (f, batch)
            assert hiwater.state_show(db=str(db))[0]["kind"] == "timestamp"
    # with --window too (its scan pass finds the kind before anything commits)
    s = load(hw, "--input", dates_first, "--db", tmp_path / "w.db", "--batch-size", "1", "--window", "1d").json
    assert (s["inserted"], s["rejected"]) == (2, 0)
    # a value of no kind does not decide it: an integer cursor with one "N/A" stays an integer stream
    f = write_jsonl(tmp_path / "c.jsonl", [{"id": 1, "seq": "5"}, {"id": 2, "seq": "N/A"}, {"id": 3, "seq": "7"}])
    s = load(hw, "--input", f, "--db", tmp_path / "i.db", "--cursor", "seq", "--batch-size", "1").json
    assert (s["inserted"], s["rejected"], s["new_watermark"]) == (2, 1, 7)


def test_12_a_kind_restart_from_python_data(tmp_path):
    """A list can be read again, so the run restarts with the wider kind; an iterator cannot,
    and the run is refused (nothing committed) with a hint that works."""
    import pytest
    from hiwater.errors import UsageError
    recs = [{"id": 1, "modified_at": "2025-01-14"}, {"id": 2, "modified_at": "2025-01-15T10:00:00"}]
    s = hiwater.load(recs, db=str(tmp_path / "a.db"), table="t", batch_size=1, now=NOW)
    assert (s.counts.inserted, s.counts.rejected) == (2, 0)
    with pytest.raises(UsageError, match="cannot be read twice"):
        hiwater.load(iter(recs), db=str(tmp_path / "b.db"), table="t", batch_size=1, now=NOW)
    assert hiwater.state_show(db=str(tmp_path / "b.db")) == []
    s = hiwater.load(iter(recs[::-1]), db=str(tmp_path / "b.db"), table="t", batch_size=1, now=NOW)
    assert (s.counts.inserted, s.counts.rejected) == (2, 0)  # the hint: the timestamp first


def test_a_key_beyond_64_bits_is_quarantined_as_sent(hw, tmp_path):
    """Found by the hostile-input fuzzer (CI): the quarantine's key column is JSON text too, and
    an integer key beyond 64 bits made it an internal error once the record kept its raw values."""
    f = tmp_path / "big.jsonl"
    f.write_text('{"id": -9223372036854775809, "modified_at": "2025-01-15T10:00:00"}\n'
                 '{"id": 1, "modified_at": "2025-01-15T10:00:00"}\n')
    for extra in ([], ["--window", "1h"]):
        db = tmp_path / f"t{len(extra)}.db"
        r = load(hw, "--input", f, "--db", db, *extra)
        assert r.code == 0 and (r.json["inserted"], r.json["rejected"]) == (1, 1), r.err
        [q] = hiwater.quarantine_list(db=str(db))
        assert q["key"] == "[-9223372036854775809]" and json.loads(q["record"])["id"] == -9223372036854775809

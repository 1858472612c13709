"""Issue 21, items 11 and 13: one verdict whatever the file boundaries, and the run where every
record was rejected.

11. Several records with one key in one run (SPEC §3.5): the newest wins, on a tie the later one,
    and the key's change is counted once. Split over two files (or batches) the counts are those
    of one file: the later record is still written (it wins), counted ``unchanged``.
13. A run with records where every one was rejected received nothing valid: it fails (exit 1,
    history outcome ``failed``, ``status``/``check`` failing) and its quarantine is kept (committed)
    so that the records can be fixed and replayed; ``--max-rejected 100%`` accepts it.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

import hiwater
from hiwater.errors import QualityError

from conftest import NOW
from conftest import write_jsonl as jsonl

HIWATER = [sys.executable, "-m", "hiwater.cli"]


def counts(s) -> dict:
    c = s.counts
    return {"inserted": c.inserted, "updated": c.updated, "unchanged": c.unchanged, "loaded": s.loaded}


def table(db) -> dict:
    con = sqlite3.connect(db)
    try:
        return {i: (m, v) for i, m, v in con.execute("SELECT id, modified_at, v FROM t")}
    finally:
        con.close()


A = {"id": 1, "v": "a", "modified_at": "2025-01-15T08:00:00"}
B = {"id": 2, "v": "b", "modified_at": "2025-01-15T09:00:00"}


# --- item 11 ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("second", [
    [A, B],                                           # identical records
    [dict(A, v="a2"), dict(B, v="b2")],               # a tie with other content: the later wins
    [dict(A, modified_at="2025-01-15T08:30:00"), B],  # a newer version of one key
], ids=["identical", "tie", "newer"])
def test_two_files_count_as_one(tmp_path, second):
    one, two = tmp_path / "one", tmp_path / "two"
    jsonl(one / "a.jsonl", [A, B] + second)
    jsonl(two / "a.jsonl", [A, B])
    jsonl(two / "b.jsonl", second)
    s1 = hiwater.load(str(one), db=str(tmp_path / "one.db"), table="t", now=NOW)
    s2 = hiwater.load(str(two), db=str(tmp_path / "two.db"), table="t", now=NOW)
    assert counts(s1) == counts(s2) == {"inserted": 2, "updated": 0, "unchanged": 2, "loaded": 2}
    assert table(tmp_path / "one.db") == table(tmp_path / "two.db")
    assert s1.new_watermark == s2.new_watermark


def test_identical_files_issue_reproduction_cli(tmp_path):
    folder = tmp_path / "in"
    jsonl(folder / "a.jsonl", [A, B])
    jsonl(folder / "b.jsonl", [A, B])
    out = subprocess.run(HIWATER + ["load", "--input", str(folder), "--db", str(tmp_path / "t.db"), "--table", "t",
                                    "--now", NOW, "--details"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert (res["loaded"], res["inserted"], res["updated"], res["unchanged"]) == (2, 2, 0, 2)


def test_small_batches_count_like_one_batch(tmp_path):
    """The same across batches of one file (batch size 1) and across --window slices."""
    src = jsonl(tmp_path / "a.jsonl", [A, B, dict(A, modified_at="2025-01-15T10:00:00"), B])
    whole = hiwater.load(str(src), db=str(tmp_path / "w.db"), table="t", now=NOW)
    tiny = hiwater.load(str(src), db=str(tmp_path / "b.db"), table="t", now=NOW, batch_size=1)
    sliced = hiwater.load(str(src), db=str(tmp_path / "s.db"), table="t", now=NOW, window="1h")
    assert counts(whole) == counts(tiny) == counts(sliced) == {"inserted": 2, "updated": 0, "unchanged": 2,
                                                               "loaded": 2}
    assert table(tmp_path / "w.db") == table(tmp_path / "b.db") == table(tmp_path / "s.db")


def test_an_update_of_an_existing_row_is_counted_once(tmp_path):
    src = jsonl(tmp_path / "a.jsonl", [A])
    db = str(tmp_path / "t.db")
    hiwater.load(str(src), db=db, table="t", now=NOW)
    jsonl(tmp_path / "in" / "1.jsonl", [dict(A, v="x", modified_at="2025-01-15T09:00:00")])
    jsonl(tmp_path / "in" / "2.jsonl", [dict(A, v="y", modified_at="2025-01-15T09:00:00")])
    s = hiwater.load(str(tmp_path / "in"), db=db, table="t", now=NOW)
    assert counts(s) == {"inserted": 0, "updated": 1, "unchanged": 1, "loaded": 1}
    assert table(db)[1] == ("2025-01-15T09:00:00", "y")


# --- item 13 ---------------------------------------------------------------------------------------

BAD = [{"id": 1, "modified_at": "not a time"}, {"id": None, "modified_at": "2025-01-15T08:00:00"}]


def cli(*args, cwd=None):
    return subprocess.run(HIWATER + list(args), capture_output=True, text=True, cwd=cwd)


def test_every_record_rejected_fails_and_keeps_the_quarantine(tmp_path):
    src = jsonl(tmp_path / "bad.jsonl", BAD)
    db = str(tmp_path / "t.db")
    out = cli("load", "--input", str(src), "--db", db, "--table", "t", "--now", NOW)
    assert out.returncode == 1, out.stderr
    assert "every record (2) was rejected" in out.stderr
    q = cli("quarantine", "list", "--stream", "t", "--db", db, "--json")
    assert q.returncode == 0 and len(json.loads(q.stdout)) == 2, q.stdout + q.stderr
    h = cli("history", "--stream", "t", "--db", db, "--json")
    rows = json.loads(h.stdout)
    assert [r["outcome"] for r in rows] == ["failed"] and rows[0]["rejected"] == 2
    st = cli("status", "--db", db, "--json")
    assert json.loads(st.stdout)[0]["last_outcome"] == "failed", st.stdout
    assert cli("check", "--db", db, "--error-after", "1d").returncode == 1
    # A replay of the fixed records loads them, and the stream is healthy again.
    jsonl(tmp_path / "good.jsonl", [A])
    assert cli("load", "--input", str(tmp_path / "good.jsonl"), "--db", db, "--table", "t",
               "--now", NOW).returncode == 0
    assert cli("check", "--db", db, "--error-after", "1d").returncode == 0


def test_max_rejected_100_percent_accepts_it(tmp_path):
    src = jsonl(tmp_path / "bad.jsonl", BAD)
    db = str(tmp_path / "t.db")
    s = hiwater.load(str(src), db=db, table="t", now=NOW, max_rejected="100%")
    assert s.counts.rejected == 2 and s.loaded == 0
    assert cli("check", "--db", db, "--error-after", "1d").returncode == 0


def test_the_api_raises_and_counts(tmp_path):
    src = jsonl(tmp_path / "bad.jsonl", BAD)
    with pytest.raises(QualityError) as e:
        hiwater.load(str(src), db=str(tmp_path / "t.db"), table="t", now=NOW)
    assert e.value.exit_code == 1 and e.value.rejected == e.value.source_records == 2


def test_some_valid_records_or_none_at_all_are_not_failures(tmp_path):
    db = str(tmp_path / "t.db")
    s = hiwater.load(str(jsonl(tmp_path / "mixed.jsonl", BAD + [A])), db=db, table="t", now=NOW)
    assert s.counts.rejected == 2 and s.loaded == 1
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert hiwater.load(str(empty), db=db, table="t", now=NOW).counts.source_records == 0
    # Every record valid but future: quarantined, not rejected; something valid arrived.
    fut = jsonl(tmp_path / "future.jsonl", [dict(A, modified_at="2030-01-01T00:00:00")])
    assert hiwater.load(str(fut), db=db, table="t", now=NOW).counts.future == 1


def test_window_run_every_record_rejected_fails_too(tmp_path):
    src = jsonl(tmp_path / "bad.jsonl", BAD)
    db = str(tmp_path / "t.db")
    with pytest.raises(QualityError):
        hiwater.load(str(src), db=db, table="t", now=NOW, window="1h")
    assert len(json.loads(cli("quarantine", "list", "--stream", "t", "--db", db, "--json").stdout)) == 2

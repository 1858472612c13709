"""Issue 21, items 1 and 2: what counts a file as read, and which files a folder holds.

1. A file counts as read (the manifest remembers it) only when every record of it was applied
   or deliberately counted by the run: records a ``--since``/``--until`` backfill left for later
   keep the file unread, so the next plain run reads it again and loads them. Quarantined
   records (future, invalid) are counted deliberately: their file is read.
2. A local folder and an object-store prefix follow one rule: recursive (Hive-style partition
   folders included), hidden files and folders (``.`` or ``_`` first) skipped, narrowed by a glob.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

import hiwater

try:  # the moto fixtures of the S3 suite, for the differential test (skipped without s3fs/moto)
    from test_files_s3 import s3, s3_endpoint  # noqa: F401
except BaseException:  # pytest's Skipped is not an Exception
    pass

from conftest import NOW
from conftest import write_jsonl as jsonl

HIWATER = [sys.executable, "-m", "hiwater.cli"]


def rec(i, at):
    return {"id": i, "modified_at": f"2025-01-15T{at}"}


def rows(db) -> dict:
    con = sqlite3.connect(db)
    try:
        return dict(con.execute("SELECT id, modified_at FROM t"))
    finally:
        con.close()


def manifest(db) -> set:
    con = sqlite3.connect(db)
    try:
        return {p.rsplit("/", 1)[-1] for (p,) in con.execute("SELECT path FROM _hiwater_files")}
    finally:
        con.close()


def load(src, db, **kw):
    return hiwater.load(str(src), db=str(db), table="t", now=NOW, **kw)


# --- item 1: a file is read only when all of it was ---------------------------------------------

def test_until_backfill_then_plain_run_loads_the_rest_cli(tmp_path):
    """The issue's reproduction, from the command line."""
    folder = tmp_path / "in"
    jsonl(folder / "a.jsonl", [rec(1, "08:00:00"), rec(2, "12:00:00")])
    db = tmp_path / "t.db"
    base = HIWATER + ["load", "--input", str(folder), "--db", str(db), "--table", "t", "--now", NOW]
    first = subprocess.run(base + ["--until", "2025-01-15T10:00:00"], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert rows(db) == {1: "2025-01-15T08:00:00"} and manifest(db) == set()
    second = subprocess.run(base, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert rows(db) == {1: "2025-01-15T08:00:00", 2: "2025-01-15T12:00:00"}
    assert manifest(db) == {"a.jsonl"}


def test_since_above_the_watermark_leaves_the_gap_for_the_next_run(tmp_path):
    folder = tmp_path / "in"
    jsonl(folder / "a.jsonl", [rec(1, "06:00:00")])
    db = tmp_path / "t.db"
    load(folder, db)  # watermark 06:00
    jsonl(folder / "b.jsonl", [rec(2, "08:00:00"), rec(3, "12:00:00")])
    s = load(folder, db, since="2025-01-15T10:00:00")
    assert s.counts.inserted == 1 and s.counts.below_window == 1
    assert manifest(db) == {"a.jsonl"}  # b.jsonl holds the gap's record: not read yet
    s = load(folder, db)
    assert s.counts.inserted == 1 and s.counts.unchanged == 1
    assert rows(db) == {1: "2025-01-15T06:00:00", 2: "2025-01-15T08:00:00", 3: "2025-01-15T12:00:00"}
    assert manifest(db) == {"a.jsonl", "b.jsonl"}


def test_only_the_files_with_records_left_over_stay_unread(tmp_path):
    folder = tmp_path / "in"
    jsonl(folder / "early.jsonl", [rec(1, "08:00:00")])
    jsonl(folder / "mixed.jsonl", [rec(2, "09:00:00"), rec(3, "12:00:00")])
    db = tmp_path / "t.db"
    s = load(folder, db, until="2025-01-15T10:00:00")
    assert manifest(db) == {"early.jsonl"}
    assert any("left for a later run" in w for w in s.warnings)
    s = load(folder, db)
    assert s.files == {"listed": 2, "read": 1, "skipped": 1, "vanished": 0}
    assert s.counts.inserted == 1 and s.counts.unchanged == 1
    assert set(rows(db)) == {1, 2, 3} and manifest(db) == {"early.jsonl", "mixed.jsonl"}


def test_window_slices_with_until_keep_the_file_unread(tmp_path):
    folder = tmp_path / "in"
    jsonl(folder / "a.jsonl", [rec(1, "08:00:00"), rec(2, "09:30:00"), rec(3, "12:00:00")])
    db = tmp_path / "t.db"
    s = load(folder, db, window="1h", until="2025-01-15T10:00:00")
    assert s.loaded == 2 and manifest(db) == set()
    s = load(folder, db, window="1h")
    assert set(rows(db)) == {1, 2, 3} and manifest(db) == {"a.jsonl"}


def test_window_slices_commit_the_file_with_the_last_slice(tmp_path):
    folder = tmp_path / "in"
    jsonl(folder / "a.jsonl", [rec(1, "08:00:00"), rec(2, "12:00:00")])
    db = tmp_path / "t.db"
    s = load(folder, db, window="1h")
    assert s.loaded == 2 and manifest(db) == {"a.jsonl"}
    assert load(folder, db).files["skipped"] == 1


def test_quarantined_records_are_counted_deliberately(tmp_path):
    """Future and invalid records go to the quarantine (a replay brings them back): the file is read."""
    folder = tmp_path / "in"
    jsonl(folder / "a.jsonl", [rec(1, "08:00:00"), {"id": 2, "modified_at": "2030-01-01T00:00:00"},
                               {"id": 3, "modified_at": "not a time"}])
    db = tmp_path / "t.db"
    s = load(folder, db)
    assert (s.counts.inserted, s.counts.future, s.counts.rejected) == (1, 1, 1)
    assert manifest(db) == {"a.jsonl"}


# --- item 2: one listing rule, local and in object storage ------------------------------------------

def partitioned(root):
    """The issue's layout, plus what Spark leaves beside its output (hidden: never data)."""
    jsonl(root / "top.jsonl", [rec(1, "08:00:00")])
    jsonl(root / "day=2025-01-15" / "part-0.jsonl", [rec(2, "09:00:00")])
    jsonl(root / "day=2025-01-16" / "part-0.jsonl", [rec(3, "10:00:00")])
    (root / "_SUCCESS").write_text("")
    jsonl(root / ".tmp" / "part-9.jsonl", [rec(9, "11:00:00")])
    jsonl(root / "_temporary" / "0" / "part-8.jsonl", [rec(8, "11:00:00")])
    jsonl(root / "day=2025-01-16" / ".part-0.jsonl.crc", [rec(7, "11:00:00")])


def test_a_local_folder_is_read_recursively_hidden_names_skipped(tmp_path):
    partitioned(tmp_path / "in")
    db = tmp_path / "t.db"
    s = load(tmp_path / "in", db)
    assert s.counts.source_records == 3 and set(rows(db)) == {1, 2, 3}
    assert s.files == {"listed": 3, "read": 3, "skipped": 0, "vanished": 0}


@pytest.mark.parametrize("pattern, ids", [
    ("**/*.jsonl", {1, 2, 3}),
    ("day=*/part-*.jsonl", {2, 3}),
    ("*.jsonl", {1}),
])
def test_a_glob_narrows_the_folder(tmp_path, pattern, ids):
    partitioned(tmp_path / "in")
    db = tmp_path / "t.db"
    load(f"{tmp_path / 'in'}/{pattern}", db)
    assert set(rows(db)) == ids


def test_a_hidden_folder_named_in_the_path_is_still_read(tmp_path):
    """The rule skips hidden names below what the user named, never the named folder itself."""
    jsonl(tmp_path / "_landing" / "a.jsonl", [rec(1, "08:00:00")])
    db = tmp_path / "t.db"
    assert load(tmp_path / "_landing", db).counts.inserted == 1


def test_local_folder_and_s3_prefix_load_the_same_records(tmp_path, request):
    """The same layout, local and on an S3 API (moto on 127.0.0.1): the same records, whatever
    the form of the input (the folder, a recursive glob, a partition glob)."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    client, bucket = request.getfixturevalue("s3")
    local = tmp_path / "in"
    partitioned(local)
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        client.put_object(Bucket=bucket, Key="land/" + path.relative_to(local).as_posix(), Body=path.read_bytes())
    for form in ("{}/", "{}/**/*.jsonl", "{}/day=*/part-*.jsonl"):
        got = {}
        for where, root in (("local", str(local)), ("s3", f"s3://{bucket}/land")):
            db = tmp_path / f"{where}-{abs(hash(form))}.db"
            s = load(form.format(root), db)
            got[where] = (rows(db), s.counts.source_records, s.files["listed"])
        assert got["local"] == got["s3"], form
    assert got["local"][0] == {2: "2025-01-15T09:00:00", 3: "2025-01-15T10:00:00"}

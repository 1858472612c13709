"""A bucketed file stream reads in two phases (issue 20, item 2; docs/scale-out.md): the files are
cut into splits, each split is parsed once by one read task that routes its rows to the buckets'
spill files, and each bucket applies its own share. Every split kind gives the single run's
table; no split is parsed twice; numbers in messages and the quarantine are the whole file's.
On SQLite files (HIWATER_SPLIT_BYTES makes small files cut into byte ranges)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

import hiwater

from conftest import NOW, write_jsonl
from test_buckets import records, table_rows


@pytest.fixture(autouse=True)
def small_splits(monkeypatch, tmp_path):
    monkeypatch.setenv("HIWATER_SPLIT_BYTES", "2000")
    monkeypatch.setenv("HIWATER_SPILL_URL", str(tmp_path / "spill"))


def load(hw, src, db, *args):
    return hw("load", "-i", src, "--db", db, "--table", "t", "--key", "id", "--cursor", "modified_at",
              "--now", NOW, *args)


def reading(r) -> dict:
    assert r.code == 0, r.err
    return r.json["reading"]


def same_as_one_run(hw, tmp_path, src, *args, buckets=3):
    one, db = tmp_path / "one.db", tmp_path / "b.db"
    assert load(hw, src, one, *args).code == 0
    r = load(hw, src, db, "--buckets", str(buckets), "--details", *args)
    assert r.code == 0, r.err
    assert table_rows(db) == table_rows(one)
    # the same records quarantined, each with its text as it arrived (the read phase spills the
    # texts once per split; a bucket reads back those it quarantines)
    assert {(q["record_no"], q["reason"], q["record"]) for q in hiwater.quarantine_list(db=str(db), stream="t")} == \
        {(q["record_no"], q["reason"], q["record"]) for q in hiwater.quarantine_list(db=str(one), stream="t")}
    return r


def test_json_lines_byte_ranges_give_the_single_runs_table_and_each_split_is_parsed_once(tmp_path, hw):
    recs = records(400)
    src = tmp_path / "t.jsonl"
    # blank lines and CRLF lines: the cuts fall inside records, and record numbers skip blank lines
    text = "".join(json.dumps(r) + ("\r\n" if i % 5 == 0 else "\n") + ("\n" if i % 31 == 0 else "")
                   for i, r in enumerate(recs))
    src.write_text(text)
    r = same_as_one_run(hw, tmp_path, src)
    splits = reading(r)["splits"]
    assert len(splits) > 1 and {s["kind"] for s in splits} == {"bytes"}
    assert sum(s["records"] for s in splits) == 400  # every record parsed once, not once per bucket
    assert r.json["source_records"] == 400
    assert not os.listdir(tmp_path / "spill")  # the spill folder is gone after the run


def test_a_worker_parses_only_its_split(tmp_path, hw, monkeypatch):
    monkeypatch.setenv("HIWATER_SPLIT_BYTES", "20000")
    src = write_jsonl(tmp_path / "t.jsonl", records(2000))
    r = load(hw, src, tmp_path / "b.db", "--buckets", "2", "--details")
    splits = reading(r)["splits"]
    assert len(splits) == 2 and sum(s["records"] for s in splits) == 2000
    assert all(0 < s["records"] < 2000 for s in splits)  # no worker parsed the whole file
    assert os.getpid() not in {s["pid"] for s in splits}  # parsed in the pool's workers


def test_a_syntax_error_in_a_later_split_names_the_files_line(tmp_path, hw):
    lines = [json.dumps(r) for r in records(300)]
    lines[250] = '{"id": 251, "name": oops}'
    src = tmp_path / "t.jsonl"
    src.write_text("\n".join(lines) + "\n")
    one = load(hw, src, tmp_path / "one.db")
    r = load(hw, src, tmp_path / "b.db", "--buckets", "2")
    assert one.code == r.code == 1
    assert f"{src}:251:" in one.err and f"{src}:251:" in r.err, r.err
    assert r.err_lines[0] == one.err_lines[0]
    assert hiwater.state_show(db=str(tmp_path / "b.db")) == [] or all(
        s["watermark"] is None for s in hiwater.state_show(db=str(tmp_path / "b.db")))
    assert not os.listdir(tmp_path / "spill")  # removed after a failed run too


def test_strict_names_the_whole_files_record_number(tmp_path, hw):
    # ids 194 and 291 are invalid: records 193 and 290 of the file (id 97 is left out)
    src = write_jsonl(tmp_path / "t.jsonl", [r for r in records(300) if r["id"] != 97])
    one = load(hw, src, tmp_path / "one.db", "--strict")
    r = load(hw, src, tmp_path / "b.db", "--strict", "--buckets", "2")
    assert one.code == r.code == 1
    assert "record 193:" in one.err and ("record 193:" in r.err or "record 290:" in r.err), r.err


def _write_csv(path: Path, recs, *, quoted_newline: bool) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "name", "amount", "modified_at"])
        for r in recs:
            name = r["name"] + ("\nsecond line" if quoted_newline and r["id"] == 150 else "")
            w.writerow([r["id"], f'say "{name}"' if r["id"] % 7 == 0 else name, r["amount"], r["modified_at"]])
    return path


def test_csv_is_cut_at_newlines_when_no_quoted_field_holds_one(tmp_path, hw):
    src = _write_csv(tmp_path / "t.csv", records(400), quoted_newline=False)
    r = same_as_one_run(hw, tmp_path, src)
    splits = reading(r)["splits"]
    assert len(splits) > 1 and sum(s["records"] for s in splits) == 400 and "notes" not in reading(r)


def test_csv_with_a_quoted_newline_is_read_as_one_split_with_a_note(tmp_path, hw):
    src = _write_csv(tmp_path / "t.csv", records(400), quoted_newline=True)
    r = same_as_one_run(hw, tmp_path, src)
    info = reading(r)
    assert [s["kind"] for s in info["splits"]] == ["file"]
    assert "a quoted field holds a newline" in info["notes"][0]


def test_parquet_row_groups_are_splits(tmp_path, hw):
    import pyarrow as pa
    import pyarrow.parquet as pq
    src = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pylist([{k: v for k, v in r.items() if k != "extra"} for r in records(400)]),
                   src, row_group_size=50)
    r = same_as_one_run(hw, tmp_path, src)
    splits = reading(r)["splits"]
    assert len(splits) > 1 and {s["kind"] for s in splits} == {"rows"} and sum(s["records"] for s in splits) == 400


def test_a_folders_files_are_splits_and_the_manifest_holds_each_once_every_bucket_read_it(tmp_path, hw):
    folder = tmp_path / "in"
    recs = records(300)
    for i in range(3):
        write_jsonl(folder / f"part-{i}.jsonl", recs[i * 100:(i + 1) * 100])
    r = same_as_one_run(hw, tmp_path, folder)
    assert sum(s["records"] for s in reading(r)["splits"]) == 300
    again = load(hw, folder, tmp_path / "b.db", "--buckets", "3", "--details")
    assert again.code == 0 and again.json["reading"]["splits"] == []  # every file recorded by every bucket
    write_jsonl(folder / "part-3.jsonl", records(330)[300:])
    more = load(hw, folder, tmp_path / "b.db", "--buckets", "3", "--details")
    assert [s["file"] for s in reading(more)["splits"]] == [str(folder / "part-3.jsonl")]
    assert more.json["source_records"] == 30


def test_a_crash_between_buckets_reads_the_file_again_until_every_bucket_recorded_it(tmp_path, hw, monkeypatch):
    folder = tmp_path / "in"
    recs = records(300)
    for i in range(3):
        write_jsonl(folder / f"part-{i}.jsonl", recs[i * 100:(i + 1) * 100])
    one = tmp_path / "one.db"
    assert load(hw, folder, one).code == 0
    db = tmp_path / "b.db"
    monkeypatch.setenv("HIWATER_BUCKET_FAULT", "1:1")  # bucket 1's worker is killed mid-transaction
    r = load(hw, folder, db, "--buckets", "2")
    assert r.code == 1 and "t#1/2" in r.err
    monkeypatch.delenv("HIWATER_BUCKET_FAULT")
    r = load(hw, folder, db, "--buckets", "2", "--details")
    # bucket 0 recorded the files, bucket 1 did not: they are read again, for both
    assert len({s["file"] for s in reading(r)["splits"]}) == 3
    assert table_rows(db) == table_rows(one)
    r = load(hw, folder, db, "--buckets", "2", "--details")
    assert reading(r)["splits"] == []


def test_the_next_run_reads_key_and_cursor_first_and_gives_the_single_runs_table(tmp_path, hw):
    src = tmp_path / "t.jsonl"
    write_jsonl(src, records(400))
    one, db = tmp_path / "one.db", tmp_path / "b.db"
    assert load(hw, src, one).code == 0
    assert load(hw, src, db, "--buckets", "3").code == 0
    changed = records(400)
    for r in changed[::10]:
        r["name"] += "-changed"
        r["modified_at"] = "2025-02-01T00:00:00" if r["modified_at"] != "not a time" else r["modified_at"]
    changed[4]["modified_at"], changed[4]["note"] = "no longer a time", "caf\u00e9 1.50"  # invalid now
    write_jsonl(src, changed)
    a = load(hw, src, one, "--details")
    b = load(hw, src, db, "--buckets", "3", "--details")
    assert a.code == b.code == 0, b.err
    assert table_rows(db) == table_rows(one)
    assert b.json["loaded"] == a.json["loaded"] and b.json["source_records"] == 400
    assert b.json.get("unchanged") == a.json.get("unchanged")
    # the lines each bucket parsed in full (read back from the split's spilled lines) and the
    # texts it quarantined are the file's
    assert {(q["record_no"], q["reason"], q["record"]) for q in hiwater.quarantine_list(db=str(db), stream="t")} == \
        {(q["record_no"], q["reason"], q["record"]) for q in hiwater.quarantine_list(db=str(one), stream="t")}
    assert any("no longer a time" in q["record"] for q in hiwater.quarantine_list(db=str(db), stream="t"))


def test_the_quality_gate_judges_the_spilled_rows_without_parsing_again(tmp_path, hw):
    src = write_jsonl(tmp_path / "t.jsonl", records(300))  # 3 invalid records
    one = load(hw, src, tmp_path / "one.db", "--max-rejected", "2")
    r = load(hw, src, tmp_path / "b.db", "--max-rejected", "2", "--buckets", "3")
    assert one.code == r.code == 1
    assert hiwater.state_show(db=str(tmp_path / "b.db")) == [] or all(
        s["watermark"] is None for s in hiwater.state_show(db=str(tmp_path / "b.db")))
    ok = load(hw, src, tmp_path / "b.db", "--max-rejected", "3", "--buckets", "3", "--details")
    assert ok.code == 0 and sum(s["records"] for s in reading(ok)["splits"]) == 300


# --- the pure parts ------------------------------------------------------------------------------

def test_byte_ranges_cut_after_newlines_and_know_their_first_line(tmp_path):
    from hiwater.sources.splits import _byte_ranges
    lines = [("x" * (i % 13)) + "\n" for i in range(500)]
    p = tmp_path / "f"
    p.write_text("".join(lines))
    data = p.read_bytes()
    parts = _byte_ranges(str(p), len(data), 7)
    assert parts[0].start == 0 and parts[-1].end == len(data) and len(parts) == 7
    for a, b in zip(parts, parts[1:]):
        assert a.end == b.start and data[b.start - 1:b.start] == b"\n"  # every line in one split
    for s in parts:
        assert s.first_line == data[:s.start].count(b"\n") + 1


def test_a_newline_inside_quotes_is_found_by_the_parity_of_quotes(tmp_path):
    from hiwater.sources.csvfile import CsvDialect
    from hiwater.sources.splits import _csv_unsplittable
    ok, bad = tmp_path / "ok.csv", tmp_path / "bad.csv"
    ok.write_text('a,b\n1,"say ""hi"", there"\n2,x\n')
    bad.write_text('a,b\n1,"two\nlines"\n2,x\n')
    assert _csv_unsplittable(str(ok), CsvDialect()) is None
    assert _csv_unsplittable(str(bad), CsvDialect()) == "a quoted field holds a newline"


def test_split_batch_gives_each_bucket_what_take_bucket_gives_it():
    import pyarrow as pa
    from hiwater.sources.base import RawBatch
    from hiwater.sources.bucket import split_batch, take_bucket
    raw = RawBatch(pa.table({"id": list(range(1, 200)), "v": [str(i) for i in range(1, 200)]}), "f", 11,
                   problems={5: "bad"})
    parts = split_batch(raw, ("id",), 3)
    for b in range(3):
        want = take_bucket(raw, ("id",), b, 3)
        assert parts[b].table.equals(want.table) and list(parts[b].record_numbers()) == list(want.record_numbers())
        assert parts[b].problems == want.problems
    # row 5 (id 6) is in exactly one bucket's share, its problem at its new position there
    held = [(b, i) for b in range(3) for i in parts[b].problems]
    assert len(held) == 1 and parts[held[0][0]].table.column("id")[held[0][1]].as_py() == 6
    assert parts[held[0][0]].problems[held[0][1]] == "bad"


@pytest.mark.slow
def test_a_killed_coordinators_spill_folder_is_removed_by_the_next_run(tmp_path, hw):
    """SIGKILL of the coordinator during the read phase leaves its spill folder (nothing in the
    process can remove it); the next bucketed run on this host removes it, and leaves the folder
    of a coordinator still running and one of another host alone."""
    import signal
    import subprocess
    import sys
    import time
    spill = tmp_path / "spill"
    src = write_jsonl(tmp_path / "t.jsonl", records(5_000))
    db = tmp_path / "b.db"
    args = [sys.executable, "-c", "from hiwater.cli import run; run()", "load", "-i", str(src), "--db", str(db),
            "--table", "t", "--key", "id", "--cursor", "modified_at", "--now", NOW, "--buckets", "2"]
    proc = subprocess.Popen(args, env={**os.environ, "HIWATER_SPILL_URL": str(spill), "HIWATER_SPLIT_BYTES": "2000"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(spill.glob("hiwater-spill-*/*")):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(60)
    left = list(spill.glob("hiwater-spill-*"))
    assert len(left) == 1, "the killed run left no spill folder: this test guards nothing"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        import socket
        host = socket.gethostname().replace("-", "_")
        live = spill / f"hiwater-spill-{host}-{sleeper.pid}-abc"
        other = spill / f"hiwater-spill-otherhost-{left[0].name.split('-')[3]}-abc"
        live.mkdir()
        other.mkdir()
        r = load(hw, src, db, "--buckets", "2")
        assert r.code == 0, r.err
        assert sorted(p.name for p in spill.iterdir()) == sorted([live.name, other.name])
    finally:
        sleeper.kill()
        sleeper.wait()

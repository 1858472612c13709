"""Bucketed streams (``--buckets N``) on SQLite files: the hash, the split, the union, the refusals,
status. The PostgreSQL / SQL-source / Dask cases are in tests/db/test_buckets_db.py."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import hiwater
from hiwater.errors import UsageError
from hiwater.keyhash import bucket_ids, bucket_of, bucket_sql, canonical, check_count, parse_name
from hiwater.sources.base import RawBatch
from hiwater.sources.bucket import BucketSource, take_bucket

from conftest import NOW, write_jsonl


def table_rows(db: Path, table: str = "t") -> list:
    """Every column of every row (hiwater's own columns left out), ordered by key."""
    con = sqlite3.connect(db)
    try:
        cur = con.execute(f'SELECT * FROM "{table}" ORDER BY id')
        names = [d[0] for d in cur.description]
        keep = [i for i, n in enumerate(names) if not n.startswith("_hiwater_")]
        return [tuple(r[i] for i in keep) for r in cur.fetchall()]
    finally:
        con.close()


def checksum(rows: list) -> str:
    return hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()


def records(n: int, t0: int = 0, version: int = 0):
    out = []
    for i in range(1, n + 1):
        r = {"id": i, "name": f"n{i}v{version}", "amount": f"{i}.50",
             "modified_at": f"2025-01-{1 + (i + t0) % 28:02d}T{(i * 7) % 24:02d}:00:00"}
        if i % 97 == 0:
            r["modified_at"] = "not a time"  # invalid: quarantined by exactly one bucket
        if i % 53 == 0:
            r["extra"] = i  # a column only some buckets see
        out.append(r)
    return out


# --- the hash ------------------------------------------------------------------------------------

def test_the_hash_is_md5_of_the_canonical_text_and_known_values_never_change():
    # Golden values: any change here re-buckets every user's streams.
    assert int.from_bytes(hashlib.md5(b"7").digest()[:4], "big") == 2400511071
    assert bucket_of([7], 4) == 2400511071 % 4 == 3
    assert bucket_of(["7"], 4) == bucket_of([7], 4) == bucket_of([7.0], 4)
    assert bucket_of([1, "a"], 8) == int.from_bytes(hashlib.md5("1\x1fa".encode()).digest()[:4], "big") % 8
    assert [canonical(v) for v in (None, True, False, 3, 2.5, "é")] == ["", "true", "false", "3", "2.5", "é"]
    tbl = pa.table({"id": pa.array([1, 2, None, 123456789012345], pa.int64()),
                    "k": pa.array(["a", None, "c", "ü"])})
    assert bucket_ids(tbl, ("id",), 5).tolist() == [bucket_of([v], 5) for v in tbl.column("id").to_pylist()]
    assert bucket_ids(tbl, ("id", "k"), 3).tolist() == [bucket_of(list(r.values()), 3) for r in tbl.to_pylist()]


def test_bucket_predicates_render_per_dialect():
    assert bucket_sql("postgresql", ['"id"'], 4, 1) == \
        "mod(('x' || substr(md5(coalesce(\"id\"::text, '')), 1, 8))::bit(32)::bigint, 4) = 1"
    assert bucket_sql("mysql", ["`a`", "`b`"], 2, 0) == (
        "MOD(CONV(SUBSTRING(MD5(CONCAT(COALESCE(CAST(`a` AS CHAR), ''), CHAR(31 USING utf8mb4), "
        "COALESCE(CAST(`b` AS CHAR), ''))), 1, 8), 16, 10), 2) = 0")
    assert bucket_sql("sqlite", ['"id"'], 3, 2) == 'hiwater_bucket(3, "id") = 2'
    assert "%" not in bucket_sql("duckdb", ['"id"'], 3, 2)


def test_names_and_count_checks():
    assert parse_name("orders#2/4") == ("orders", 2, 4)
    assert parse_name("a#b#0/1") == ("a#b", 0, 1)
    assert parse_name("orders#4/4") is None and parse_name("orders") is None
    check_count(["orders#0/4", "orders#1/4", "other"], "orders", 4)
    with pytest.raises(UsageError, match="loaded with 4 bucket"):
        check_count(["orders#0/4"], "orders", 2)
    with pytest.raises(UsageError, match="loaded with no buckets"):
        check_count(["orders"], "orders", 3)


def test_a_batch_split_keeps_every_row_once_with_its_record_number_and_problems():
    tbl = pa.table({"id": list(range(10)), "v": [f"x{i}" for i in range(10)]})
    raw = RawBatch(tbl, "f.jsonl", 101, problems={3: "bad", 7: "worse"},
                   sent={"v": [f"sent{i}" for i in range(10)]})
    parts = [take_bucket(raw, ("id",), b, 3) for b in range(3)]
    seen = sorted(n for p in parts for n in p.record_nos(np.arange(len(p))).tolist())
    assert seen == list(range(101, 111))
    for p in parts:
        for j in range(len(p)):
            no = int(p.record_nos([j])[0])
            assert p.table.column("id")[j].as_py() == no - 101
            assert p.sent["v"][j] == f"sent{no - 101}"
            assert p.position(no) == j
            assert p.problems.get(j) == {3: "bad", 7: "worse"}.get(no - 101)


# --- runs on a SQLite file -----------------------------------------------------------------------

def test_union_of_a_bucketed_run_equals_one_run_across_incremental_runs(tmp_path):
    src = tmp_path / "t.jsonl"
    one, four = tmp_path / "one.db", tmp_path / "four.db"
    kw = dict(table="t", now=NOW)
    write_jsonl(src, records(600))
    s1 = hiwater.load(str(src), db=str(one), **kw)
    s4 = hiwater.load(str(src), db=str(four), buckets=4, **kw)
    assert s4.to_dict()["source_records"] == s1.source_records == 600
    assert s4.counts.rejected == s1.counts.rejected == 6
    assert [b["stream"] for b in s4.buckets] == [f"t#{b}/4" for b in range(4)]
    assert sum(b["source_records"] for b in s4.buckets) == 600
    # Second run: updates of half the keys, later cursors, new keys.
    later = records(900, t0=5, version=1)
    write_jsonl(src, later[::2])
    s1 = hiwater.load(str(src), db=str(one), **kw)
    s4 = hiwater.load(str(src), db=str(four), buckets=4, **kw)
    assert (s4.loaded, s4.skipped, s4.total_in_target) == (s1.loaded, s1.skipped, s1.total_in_target)
    assert checksum(table_rows(four)) == checksum(table_rows(one))
    assert len(table_rows(four)) == s1.total_in_target
    # Every bucket keeps its own watermark; the stream's is the least of them.
    states = {s["stream"]: s for s in hiwater.state_show(db=str(four))}
    assert set(states) == {f"t#{b}/4" for b in range(4)}
    assert s4.new_watermark == min(s["watermark"] for s in states.values())
    # The quarantine names each bad record by its number in the file, as one run does.
    q1 = sorted((r["record_no"], r["reason"]) for r in hiwater.quarantine_list(db=str(one)))
    q4 = sorted((r["record_no"], r["reason"]) for r in hiwater.quarantine_list(db=str(four)))
    assert q4 == q1 and q1


def test_a_csv_folder_in_buckets_equals_one_run(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for part in range(3):
        lines = ["id,code,modified_at"] + [f"{i},{i:05d},2025-01-{1 + i % 20:02d}T10:00:00"
                                            for i in range(part * 100 + 1, part * 100 + 101)]
        (folder / f"p{part}.csv").write_text("\n".join(lines) + "\n")
    one, three = tmp_path / "one.db", tmp_path / "three.db"
    s1 = hiwater.load(str(folder), db=str(one), table="t", now=NOW)
    s3 = hiwater.load(str(folder), db=str(three), table="t", now=NOW, buckets=3, executor="local")
    assert s3.source_records == s1.source_records == 300
    assert table_rows(three) == table_rows(one)
    assert table_rows(one)[6][1] == "00007"  # text stays text


def test_changing_the_bucket_count_is_refused_with_a_hint(tmp_path, hw):
    src = write_jsonl(tmp_path / "t.jsonl", records(40))
    db = tmp_path / "b.db"
    assert hw("load", "-i", src, "--db", db, "--table", "t", "--buckets", "2", "--now", NOW).code == 0
    r = hw("load", "-i", src, "--db", db, "--table", "t", "--buckets", "3", "--now", NOW)
    assert r.code == 2
    assert r.err_lines == [r.err_lines[0]] and "loaded with 2 bucket(s)" in r.err and "--buckets 2" in r.err
    r = hw("load", "-i", src, "--db", db, "--table", "t", "--now", NOW)
    assert r.code == 2 and "asks for no --buckets" in r.err
    plain = tmp_path / "p.db"
    assert hw("load", "-i", src, "--db", plain, "--table", "t", "--now", NOW).code == 0
    r = hw("load", "-i", src, "--db", plain, "--table", "t", "--buckets", "2", "--now", NOW)
    assert r.code == 2 and "loaded with no buckets" in r.err and "without --buckets" in r.err
    # The documented way to change N: drop the bucket streams, run again (every row found unchanged).
    for b in range(2):
        assert hw("stream", "drop", f"t#{b}/2", "--db", db).code == 0
    r = hw("load", "-i", src, "--db", db, "--table", "t", "--buckets", "3", "--now", NOW, "--details")
    assert r.code == 0 and r.json["loaded"] == 0 and r.json["unchanged"] == 40


def test_bad_bucket_options_are_usage_errors(tmp_path, hw):
    src = write_jsonl(tmp_path / "t.jsonl", records(5))
    db = tmp_path / "b.db"
    for args, words in [(["--buckets", "0"], "--buckets"),
                        (["--buckets", "2", "--executor", "spark"], "--executor 'spark'"),
                        (["--buckets", "2", "--full-load", "--prune"], "--prune cannot be combined with --buckets"),
                        (["--buckets", "2", "--stream", "x#0/2"], "a bucket's")]:
        r = hw("load", "-i", src, "--db", db, *args)
        assert r.code == 2 and words in r.err, (args, r.err)
    r = hw("load", "-i", src, "--buckets", "2")
    assert r.code == 2 and "give --db PATH or --target URL" in r.err
    with pytest.raises(UsageError, match="in-memory data"):
        hiwater.load([{"id": 1, "modified_at": "2025-01-01"}], db=str(db), buckets=2)


def test_missing_dask_is_one_line_naming_the_extra(tmp_path, hw, monkeypatch):
    src = write_jsonl(tmp_path / "t.jsonl", records(5))
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if hiwater[dask] were not installed
    r = hw("load", "-i", src, "--db", tmp_path / "b.db", "--buckets", "2", "--executor", "dask")
    assert r.code == 2
    assert r.err_lines == ["error: --executor dask needs Dask distributed, which is not installed "
                           "(pip install 'hiwater[dask]')"]
    assert not (tmp_path / "b.db").exists() or not hiwater.state_show(db=str(tmp_path / "b.db"))


def test_status_shows_the_least_watermark_and_each_buckets_lag(tmp_path, hw):
    db = tmp_path / "b.db"
    src = write_jsonl(tmp_path / "t.jsonl", records(200))
    assert hw("load", "-i", src, "--db", db, "--table", "t", "--buckets", "2", "--now", NOW).code == 0
    # Move one bucket back by hand: the stream is only as fresh as its slowest bucket.
    hiwater.state_set(stream="t#1/2", value="2025-01-02T00:00:00", db=str(db))
    rows = {r["stream"]: r for r in hiwater.status(db=str(db), now="2025-01-30T00:00:00")}
    assert set(rows) == {"t", "t#0/2", "t#1/2"}
    agg = rows["t"]
    assert agg["watermark"] == "2025-01-02T00:00:00" == rows["t#1/2"]["watermark"]
    assert agg["data_age"] == "28d"
    lead = rows["t#0/2"]["watermark"]
    assert [b["stream"] for b in agg["buckets"]] == ["t#0/2", "t#1/2"]
    assert agg["buckets"][0]["lag"] == 0
    assert agg["buckets"][1]["lag"] == (np.datetime64(lead) - np.datetime64("2025-01-02T00:00:00")) \
        / np.timedelta64(1, "s")
    assert agg["last_loaded"] == 198 and agg["quarantined"] == 2
    r = hw("status", "--db", db, "--now", "2025-01-30T00:00:00")
    assert r.code == 0 and "lag" in r.out and "t#1/2" in r.out
    r = hw("status", "t", "--db", db, "--json")
    assert r.code == 0 and [x["stream"] for x in json.loads(r.out)] == ["t#0/2", "t#1/2", "t"]
    # state commands work per bucket stream
    assert hw("history", "--db", db, "--stream", "t#0/2").code == 0
    assert hw("state", "rewind", "--db", db, "--stream", "t#0/2", "--to-run", "1").code == 0


def test_bucket_source_passes_the_wrapped_sources_abilities_through(tmp_path):
    from hiwater.sources.base import Source
    from hiwater.sources.files import open_files
    src = open_files(str(write_jsonl(tmp_path / "t.jsonl", records(30))), cursor="modified_at")
    b = BucketSource(src, ("id",), 1, 2)
    # a file source has no window pushdown: Source's default set_window, passed through
    assert b.expected_records() == 30 and b.set_window.__func__ is Source.set_window
    got = sum(len(r) for r in b.batches())
    assert got == sum(1 for i in range(1, 31) if bucket_of([i], 2) == 1)
    b.close()


@pytest.mark.slow
def test_a_project_stream_with_buckets_runs_reports_and_is_checked_as_one(tmp_path, hw, monkeypatch):
    write_jsonl(tmp_path / "orders.jsonl", records(120))
    (tmp_path / "hiwater.toml").write_text(
        '[defaults]\ndb = "w.db"\nerror-after = "1h"\n\n'
        '[streams.orders]\ninput = "orders.jsonl"\nbuckets = 3\nexecutor = "local"\n')
    monkeypatch.chdir(tmp_path)
    r = hw("run", "--json")
    assert r.code == 0, r.err
    assert {s["stream"] for s in hiwater.state_show(db=str(tmp_path / "w.db"))} == {f"orders#{b}/3" for b in range(3)}
    rows = hiwater.status()
    assert [x["stream"] for x in rows] == ["orders#0/3", "orders#1/3", "orders#2/3", "orders"]
    assert rows[-1]["error_after"] == "1h" and rows[-1]["last_loaded"] == 119
    assert [c["stream"] for c in hiwater.check()] == ["orders"]
    (tmp_path / "hiwater.toml").write_text(
        '[defaults]\ndb = "w.db"\n\n[streams.orders]\ninput = "orders.jsonl"\nbuckets = "many"\n')
    r = hw("run")
    assert r.code == 2 and "buckets must be a whole number, not 'many'" in r.err  # (the project file's type table)


@pytest.mark.slow
def test_late_records_are_judged_by_the_buckets_own_watermark(tmp_path):
    """A bucket's window starts at its own watermark: a record one run calls late (below the
    stream's newest cursor) can be in its bucket's window and be applied. A superset, never less;
    with --on-late load the tables are the same."""
    a = next(i for i in range(1, 100) if bucket_of([i], 2) == 0)
    c = next(i for i in range(1, 100) if bucket_of([i], 2) == 1)
    src = tmp_path / "t.jsonl"
    first = [{"id": a, "modified_at": "2025-01-15T10:00:00"}, {"id": c, "modified_at": "2025-01-15T12:00:00"}]
    again = [{"id": a, "modified_at": "2025-01-15T11:00:00"}]  # below 12:00, above bucket 0's 10:00
    for on_late, same in (("detect", False), ("load", True)):
        one, two = tmp_path / f"one-{on_late}.db", tmp_path / f"two-{on_late}.db"
        write_jsonl(src, first)
        hiwater.load(str(src), db=str(one), table="t", now=NOW)
        hiwater.load(str(src), db=str(two), table="t", now=NOW, buckets=2)
        write_jsonl(src, again)
        s1 = hiwater.load(str(src), db=str(one), table="t", now=NOW, on_late=on_late)
        s2 = hiwater.load(str(src), db=str(two), table="t", now=NOW, buckets=2, on_late=on_late)
        assert s2.counts.updated == 1 and s2.counts.late == 0
        assert (s1.counts.late, s1.counts.updated) == ((1, 0) if on_late == "detect" else (0, 1))
        assert (table_rows(one) == table_rows(two)) is same
        assert ("2025-01-15T11:00:00", a) in table_rows(two)


def test_the_columnar_hash_and_the_per_key_hash_agree():
    """bucket_ids hashes a column in DuckDB when it can; the per-key Python MD5 must agree on
    every kind of text (empty, unicode, separators, long)."""
    import random

    import pyarrow as pa

    from hiwater.keyhash import _md5_buckets, bucket_of_text
    rnd = random.Random(5)
    alphabet = "abcXYZ019 é東京😀\x1f-_"
    texts = ["", "0", "-1", "9223372036854775807"] + [
        "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 40))) for _ in range(3000)]
    for n in (2, 3, 4, 7, 64):
        fast = _md5_buckets(pa.array(texts, pa.string()), n)
        assert [int(b) for b in fast] == [bucket_of_text(t, n) for t in texts]

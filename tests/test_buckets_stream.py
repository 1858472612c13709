"""A bucketed stream is ONE stream to every command (issue 20, SPEC §11): drop, state, history,
quarantine, status, check, the quality gate and the summary see the stream, its buckets as
detail. On SQLite files; the other targets are in tests/db/test_buckets_targets.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import hiwater

from conftest import NOW, Result, write_jsonl
from test_buckets import records, table_rows


def load(hw, src, db, *args):
    return hw("load", "-i", src, "--db", db, "--table", "t", "--key", "id", "--cursor", "modified_at",
              "--now", NOW, *args)


def test_one_bucket_cannot_drop_the_shared_table_and_the_stream_name_drops_every_bucket(tmp_path, hw):
    src = write_jsonl(tmp_path / "t.jsonl", records(200))
    db, one = tmp_path / "b.db", tmp_path / "one.db"
    assert load(hw, src, one).code == 0
    assert load(hw, src, db, "--buckets", "4").code == 0
    r = hw("stream", "drop", "t#1/4", "--table", "--db", db)
    assert r.code == 2 and "hiwater stream drop t --table" in r.err, r.err
    assert table_rows(db) == table_rows(one)  # nothing dropped
    r = hw("stream", "drop", "t", "--table", "--db", db, "--json")
    assert r.code == 0 and r.json[0]["table_dropped"] is True and len(r.json[0]["buckets"]) == 4
    assert hiwater.state_show(db=str(db)) == [] and hiwater.history(db=str(db), stream="t") == []
    assert hiwater.quarantine_list(db=str(db), stream="t#0/4") == []
    assert load(hw, src, db, "--buckets", "4").code == 0
    assert table_rows(db) == table_rows(one)  # every row back: no bucket kept a watermark


def test_state_history_and_quarantine_given_the_streams_name_act_on_all_its_buckets(tmp_path, hw):
    src = write_jsonl(tmp_path / "t.jsonl", records(200))
    db = tmp_path / "b.db"
    assert load(hw, src, db, "--buckets", "4").code == 0
    shown = hiwater.state_show(db=str(db), stream="t")
    assert [s["stream"] for s in shown] == [f"t#{b}/4" for b in range(4)]
    runs = hiwater.history(db=str(db), stream="t")
    assert sorted(r["stream"] for r in runs) == [f"t#{b}/4" for b in range(4)]
    q = hiwater.quarantine_list(db=str(db), stream="t")
    assert len(q) == 2 and {r["record_no"] for r in q} == {97, 194}  # records 97 and 194 are invalid
    assert len(hiwater.history(db=str(db), stream="t", limit=2)) == 2
    # rewind by one bucket's run id puts every bucket back to (at most) that run's start
    r = hiwater.state_rewind(db=str(db), stream="t", to_run=runs[0]["run_id"])
    assert r["watermark"] is None and all(b["watermark"] is None for b in r["buckets"])
    assert load(hw, src, db, "--buckets", "4").code == 0
    r = hw("state", "set", "--stream", "t", "2025-01-02T00:00:00", "--db", db, "--json")
    assert r.code == 0 and {b["watermark"] for b in r.json[0]["buckets"]} == {"2025-01-02T00:00:00"}
    r = hiwater.state_reset(db=str(db), stream="t")
    assert r["watermark"] is None and len(r["buckets"]) == 4
    # a bucket's own name still works for detail
    assert [s["stream"] for s in hiwater.state_show(db=str(db), stream="t#2/4")] == ["t#2/4"]
    # replay by the stream's name: each bucket replays its own records (they fail again: invalid)
    s = hiwater.quarantine_replay(db=str(db), stream="t", now=NOW)
    assert s.counts.rejected == 2 and len(hiwater.quarantine_list(db=str(db), stream="t")) == 2


def test_a_bucket_that_never_committed_keeps_the_stream_behind(tmp_path, hw, monkeypatch):
    src = write_jsonl(tmp_path / "t.jsonl", records(200))
    db = tmp_path / "b.db"
    monkeypatch.setenv("HIWATER_BUCKET_FAULT", "3:1")  # bucket 3's worker dies in its first run
    assert load(hw, src, db, "--buckets", "4").code == 1
    monkeypatch.delenv("HIWATER_BUCKET_FAULT")
    rows = {r["stream"]: r for r in hiwater.status(db=str(db))}
    assert "t#3/4" in rows and rows["t#3/4"]["last_outcome"] != "ok"
    assert rows["t"]["last_outcome"] != "ok" and rows["t"]["watermark"] is None
    assert [b["stream"] for b in rows["t"]["buckets"]] == [f"t#{b}/4" for b in range(4)]
    r = hw("check", "--db", db, "--error-after", "1000d", "--now", NOW, "--json")
    assert r.code != 0 and [c["verdict"] for c in r.json if c["stream"] == "t"] == ["error"], r.out
    assert load(hw, src, db, "--buckets", "4").code == 0
    assert hiwater.status(db=str(db), streams="t")[-1]["last_outcome"] == "ok"


def test_empty_buckets_are_not_an_empty_source(tmp_path, hw):
    # ids 1 and 3 fall in buckets 1 and 2 of 4: buckets 0 and 3 have no record at all
    src = write_jsonl(tmp_path / "t.jsonl", [{"id": 1, "modified_at": "2025-01-10T00:00:00"},
                                             {"id": 3, "modified_at": "2025-01-12T00:00:00"}])
    db = tmp_path / "b.db"
    r = load(hw, src, db, "--buckets", "4")
    assert r.code == 0 and r.json["new_watermark"] == "2025-01-10T00:00:00", r.out
    assert "empty" not in r.err and not r.json.get("warnings")
    row = hiwater.status(db=str(db), streams="t")[-1]
    assert row["stream"] == "t" and row["watermark"] == "2025-01-10T00:00:00" and row["last_outcome"] == "ok"
    r = hw("check", "--db", db, "--by", "data", "--warn-after", "1000d", "--now", NOW, "--json")
    assert r.code == 0 and r.json[0]["verdict"] == "ok", r.out
    r = load(hw, write_jsonl(tmp_path / "none.jsonl", []), db, "--buckets", "4")
    assert r.code == 0 and "is empty" in r.err  # the whole source empty: that is said, once
    assert r.err.count("is empty") == 1


def gate_source(tmp_path) -> Path:
    """108 records, 8 of them invalid, spread over the buckets."""
    recs = [{"id": i, "modified_at": f"2025-01-{1 + i % 28:02d}T00:00:00"} for i in range(1, 101)]
    recs += [{"id": 1000 + i, "modified_at": "not a time"} for i in range(8)]
    return write_jsonl(tmp_path / "g.jsonl", recs)


def test_max_rejected_judges_the_whole_stream_and_commits_nothing_past_it(tmp_path, hw):
    src, db, one = gate_source(tmp_path), tmp_path / "b.db", tmp_path / "one.db"
    r = load(hw, src, one, "--max-rejected", "5")
    assert r.code == 1 and "8 of 108" in r.err
    r = load(hw, src, db, "--max-rejected", "5", "--buckets", "4")
    assert r.code == 1 and "8 of 108" in r.err and "--max-rejected 5" in r.err, r.err
    assert hiwater.state_show(db=str(db)) == [] and hiwater.quarantine_list(db=str(db)) == []
    r = load(hw, src, db, "--max-rejected", "8", "--buckets", "4")
    assert r.code == 0 and r.json["loaded"] == 100 and r.json["source_records"] == 108
    assert len(hiwater.quarantine_list(db=str(db), stream="t")) == 8


def test_strict_fails_the_whole_stream_when_any_bucket_meets_an_invalid_record(tmp_path, hw):
    recs = [{"id": i, "modified_at": f"2025-01-{1 + i % 28:02d}T00:00:00"} for i in range(1, 101)]
    recs[2]["modified_at"] = "not a time"  # id 3: bucket 2 of 4; the other buckets are clean
    src, db = write_jsonl(tmp_path / "s.jsonl", recs), tmp_path / "b.db"
    r = load(hw, src, db, "--strict", "--buckets", "4")
    assert r.code == 1 and "--strict: nothing was committed" in r.err, r.err
    assert hiwater.state_show(db=str(db)) == []
    assert load(hw, src, db, "--strict", "--buckets", "4").code == 1  # still nothing, every time
    assert hiwater.state_show(db=str(db)) == []


@pytest.mark.slow
def test_a_rebucket_that_finds_every_row_in_place_says_so_and_not_that_the_source_is_stale(tmp_path, hw):
    """``--rebucket`` over a source the table already holds: its notice is printed (it was only in
    ``--details``), and the re-read that finds every row unchanged is not called a stale source
    (the new buckets have no watermark yet; nothing is stale). The same holds for one stream whose
    state was reset."""
    src = write_jsonl(tmp_path / "t.jsonl", records(300))
    db = tmp_path / "b.db"
    args = ["load", "-i", src, "--db", db, "--table", "t", "--key", "id", "--cursor", "modified_at", "--now", NOW]
    assert hw(*args, "--buckets", "3").code == 0
    # a process of its own: the workers' lines reach the process's stderr, which hw does not capture
    p = subprocess.run([sys.executable, "-m", "hiwater.cli", *map(str, args), "--buckets", "2", "--rebucket",
                        "--forget-quarantine"], capture_output=True, text=True, timeout=300)
    r = Result(p.returncode, p.stdout, p.stderr)
    workers = r.err_lines
    assert r.code == 0, r.err
    assert r.err_lines[0].startswith("warning: re-bucketed stream 't' from 3 to 2 bucket(s)"), r.err_lines
    assert "stale" not in r.err and "already holds each one" in r.err, r.err_lines
    assert r.json["skipped"] == 297  # (3 invalid records, quarantined again)
    # each bucket's own warning names its bucket (3 invalid records, in 2 buckets' lines)
    assert {line.split(":")[1].strip() for line in workers if "invalid record" in line} == {"t#0/2", "t#1/2"}
    assert hw("state", "reset", "--stream", "t", "--db", db).code == 0
    r = hw(*args, "--buckets", "2")
    assert r.code == 0 and "stale" not in r.err and "already holds each one" in r.err, r.err_lines
    r = hw(*args, "--buckets", "2")  # with a watermark again: a re-sent source may be stale
    assert "source may be stale" in r.err, r.err_lines


def test_the_workers_of_a_run_have_the_environment_the_run_started_with(tmp_path, hw, monkeypatch):
    """Linux: a local pool's workers are forked by a forkserver that outlives a run (it imported
    hiwater once). A variable set after an earlier run must still reach the next run's workers,
    as a spawned worker would have it (here the test hook that kills bucket 1's worker)."""
    src = write_jsonl(tmp_path / "t.jsonl", records(200))
    db = tmp_path / "b.db"
    assert load(hw, src, db, "--buckets", "2").code == 0  # the forkserver runs from here on
    write_jsonl(src, records(200, t0=1000, version=1))
    monkeypatch.setenv("HIWATER_BUCKET_FAULT", "1:1")
    r = load(hw, src, db, "--buckets", "2")
    assert r.code == 1 and "t#1/2" in r.err, r.err
    monkeypatch.delenv("HIWATER_BUCKET_FAULT")
    assert load(hw, src, db, "--buckets", "2").code == 0


def test_the_workers_import_the_coordinators_hiwater(tmp_path):
    """The forkserver that forks a local pool's workers imports hiwater from the coordinator's
    module path, not from its own environment: a coordinator that found hiwater on a path set at
    run time (or a relative PYTHONPATH, then another working folder) gets workers running the
    same code (Python 3.11's forkserver ignored the path it was given; its workers ran whatever
    hiwater the environment had installed)."""
    import subprocess
    import sys
    src = str(Path(hiwater.__file__).resolve().parent.parent)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import hiwater\n"
            "from hiwater.executor import Pool\n"
            "def where(name): import hiwater; return hiwater.__file__\n"
            "if __name__ == '__main__':\n"
            "    with Pool(1) as pool: print(hiwater.__file__, pool.submit(where, 'x').result())\n")
    (tmp_path / "probe.py").write_text(code)
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, str(tmp_path / "probe.py"), src], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    coordinator, worker = r.stdout.split()
    assert worker == coordinator


def test_a_bucketed_rerun_of_the_same_source_names_the_streams_watermark(tmp_path, hw):
    """Every record skipped: the stream says so once, with the stream's watermark (the least of its
    buckets'), not one bucket's figures."""
    recs = [{"id": i, "modified_at": f"2025-01-15T{i % 24:02d}:00:00"} for i in range(30)]
    recs[0]["modified_at"] = "2025-01-16T05:00:00"  # one bucket's watermark is past the others'
    src = write_jsonl(tmp_path / "t.jsonl", recs)
    db = tmp_path / "b.db"
    assert load(hw, src, db, "--buckets", "3").code == 0
    r = load(hw, src, db, "--buckets", "3")
    assert r.code == 0 and r.json["stale_source"] is True
    watermark = r.json["previous_watermark"]
    assert watermark != "2025-01-16T05:00:00"
    lines = [line for line in r.err_lines if "every record was skipped" in line]
    assert len(lines) == 1 and lines[0].endswith(f"the stream's watermark {watermark})"), r.err_lines

"""The file manifest (SPEC §10): a folder or glob source remembers, in the target and in the same
transaction as the data, which files its runs applied; the next run opens only new or changed
files."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest

import hiwater
from sizes import env_int
from hiwater.errors import InputError

HIWATER = [sys.executable, "-m", "hiwater.cli"]
NOW = "2025-06-01T00:00:00Z"


def write_file(path, ids, day=1, bump=0):
    """JSON Lines records ``ids``, cursor on ``day`` (plus ``bump`` seconds for every record)."""
    with open(path, "w") as f:
        for i in ids:
            f.write(json.dumps({"id": i, "v": f"v{i}", "modified_at": f"2025-01-{day:02d}T00:00:{(i % 50) + bump:02d}"})
                    + "\n")
    return path


def make_folder(d, n=20, per=10):
    d.mkdir(exist_ok=True)
    for f in range(n):
        write_file(d / f"part-{f:04d}.jsonl", range(f * per, (f + 1) * per), day=1 + f % 20)
    return d


def load(src, db, **kw):
    return hiwater.load(str(src), db=str(db), table="t", now=NOW, **kw).to_dict()


def manifest(db):
    con = sqlite3.connect(db)
    try:
        return {os.path.basename(p): (size, run) for p, size, run in
                con.execute("SELECT path, size, run_id FROM _hiwater_files")}
    finally:
        con.close()


def rows(db):
    con = sqlite3.connect(db)
    try:
        return dict(con.execute("SELECT id, modified_at FROM t"))
    finally:
        con.close()


def test_adding_one_file_reads_exactly_its_records(tmp_path):
    src, db = make_folder(tmp_path / "land"), tmp_path / "t.db"
    first = load(src, db)
    assert first["source_records"] == 200 and first["files"] == {"listed": 20, "read": 20, "skipped": 0,
                                                                  "vanished": 0}
    write_file(src / "part-9999.jsonl", range(1000, 1007), day=25)
    second = load(src, db)
    assert second["source_records"] == 7 and second["loaded"] == 7 and second["total_in_target"] == 207
    assert second["files"] == {"listed": 21, "read": 1, "skipped": 20, "vanished": 0}
    m = manifest(db)
    assert len(m) == 21 and m["part-9999.jsonl"][1] == second["run_id"] and m["part-0000.jsonl"][1] == 1


def _statements_of_one_more_file(tmp_path, monkeypatch, n):
    """The SQL statements (each row of an executemany counts) of the run after one new file, in a
    folder of ``n`` files already loaded; and how many times the manifest was read."""
    from hiwater.targets.meta import SqlLedger
    src, db = make_folder(tmp_path / f"land{n}", n=n, per=2), tmp_path / f"t{n}.db"
    load(src, db)
    write_file(src / "part-9999.jsonl", [5000, 5001], day=25)
    statements, reads = [], []
    real_connect, real_read = sqlite3.connect, SqlLedger.files

    def connect(*a, **kw):
        con = real_connect(*a, **kw)
        con.set_trace_callback(statements.append)
        return con

    def read_files(self, stream):
        reads.append(stream)
        return real_read(self, stream)
    monkeypatch.setattr(sqlite3, "connect", connect)
    monkeypatch.setattr(SqlLedger, "files", read_files)
    res = load(src, db)
    monkeypatch.undo()
    assert res["source_records"] == 2 and res["files"]["skipped"] == n
    return statements, reads


def test_the_listing_is_compared_without_a_query_per_file(tmp_path, monkeypatch):
    """One manifest read per run; the run after one new file issues as many statements in a folder
    of 300 files as in one of 30 (a query per listed file would add 270)."""
    small, small_reads = _statements_of_one_more_file(tmp_path, monkeypatch, 30)
    large, large_reads = _statements_of_one_more_file(tmp_path, monkeypatch, 300)
    assert small_reads == large_reads == ["t"]
    assert len(large) == len(small), [s for s in large if "_hiwater_files" in s][:5]
    assert sum("_hiwater_files" in s for s in large) <= 3, [s for s in large if "_hiwater_files" in s]


def test_nothing_new_reads_nothing_and_says_so(tmp_path):
    src, db = make_folder(tmp_path / "land", n=3), tmp_path / "t.db"
    load(src, db)
    again = load(src, db)
    assert again["source_records"] == 0 and again["stale_source"] is True
    assert again["files"]["read"] == 0 and again["files"]["skipped"] == 3
    assert any("no new or changed file" in w and "3 file(s) already loaded" in w for w in again["warnings"])


def test_a_changed_file_is_read_again_whole_and_only_its_changes_are_written(tmp_path):
    src, db = make_folder(tmp_path / "land", n=5), tmp_path / "t.db"
    load(src, db)
    # part-0004 holds ids 40..49 on day 5; re-exported: id 41 changed (newer cursor), id 50 new
    path = src / "part-0004.jsonl"
    with open(path, "w") as f:
        for i in range(40, 50):
            ts = "2025-01-06T00:00:00" if i == 41 else f"2025-01-05T00:00:{i % 50:02d}"
            f.write(json.dumps({"id": i, "v": f"v{i}", "modified_at": ts}) + "\n")
        f.write(json.dumps({"id": 50, "v": "v50", "modified_at": "2025-01-06T00:00:01"}) + "\n")
    res = load(src, db)
    assert res["files"]["read"] == 1 and res["files"]["skipped"] == 4
    assert res["source_records"] == 11
    assert (res["inserted"], res["updated"], res["unchanged"]) == (1, 1, 9)
    assert rows(db)[41] == "2025-01-06T00:00:00"


def test_a_touched_file_of_the_same_size_is_read_again(tmp_path):
    src, db = make_folder(tmp_path / "land", n=3), tmp_path / "t.db"
    load(src, db)
    st = os.stat(src / "part-0001.jsonl")
    os.utime(src / "part-0001.jsonl", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    res = load(src, db)
    assert res["files"]["read"] == 1 and res["source_records"] == 10 and res["loaded"] == 0


def test_a_vanished_file_is_reported_once_never_an_error(tmp_path, caplog):
    src, db = make_folder(tmp_path / "land", n=4), tmp_path / "t.db"
    load(src, db)
    os.unlink(src / "part-0002.jsonl")
    res = load(src, db)
    assert res["files"]["vanished"] == 1 and res["total_in_target"] == 40
    assert any("no longer in" in w and "part-0002.jsonl" in w for w in res["warnings"])
    assert "part-0002.jsonl" not in manifest(db)
    again = load(src, db)
    assert again["files"]["vanished"] == 0


def test_reread_files_and_full_load_ignore_the_manifest(tmp_path):
    src, db = make_folder(tmp_path / "land", n=4), tmp_path / "t.db"
    load(src, db)
    res = load(src, db, reread_files=True)
    assert res["source_records"] == 40 and res["loaded"] == 0 and res["files"]["read"] == 4
    assert {run for _, run in manifest(db).values()} == {res["run_id"]}
    full = load(src, db, full_load=True)
    assert full["source_records"] == 40 and full["files"]["read"] == 4
    assert load(src, db)["files"]["read"] == 0


def test_reread_files_on_the_command_line(tmp_path):
    src, db = make_folder(tmp_path / "land", n=2), tmp_path / "t.db"
    from hiwater.cli import main
    assert main(["load", "-i", str(src), "--db", str(db), "--now", NOW]) == 0
    assert main(["load", "-i", str(src), "--db", str(db), "--now", NOW, "--reread-files", "--output",
                 str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["source_records"] == 20


def test_a_glob_is_tracked_a_single_file_and_stdin_are_not(tmp_path):
    src, db = make_folder(tmp_path / "land", n=3), tmp_path / "t.db"
    res = load(str(src / "part-*.jsonl"), db)
    assert res["files"]["read"] == 3 and len(manifest(db)) == 3
    assert load(str(src / "part-*.jsonl"), db)["files"]["read"] == 0
    one = tmp_path / "one.db"
    single = load(src / "part-0000.jsonl", one)
    assert "files" not in single and single["source_records"] == 10
    assert load(src / "part-0000.jsonl", one)["source_records"] == 10  # read again: not tracked
    assert manifest(one) == {}


def test_stream_drop_forgets_the_files(tmp_path):
    src, db = make_folder(tmp_path / "land", n=3), tmp_path / "t.db"
    load(src, db)
    hiwater.stream_drop(stream="t", table=True, db=str(db))
    assert manifest(db) == {}
    assert load(src, db)["source_records"] == 30


def test_a_dry_run_records_no_file(tmp_path):
    src, db = make_folder(tmp_path / "land", n=3), tmp_path / "t.db"
    load(src, db)
    write_file(src / "new.jsonl", [500], day=28)
    dry = load(src, db, dry_run=True)
    assert dry["files"]["read"] == 1 and "new.jsonl" not in manifest(db)
    assert load(src, db)["source_records"] == 1


def test_a_failed_run_records_no_file(tmp_path):
    src, db = make_folder(tmp_path / "land", n=3), tmp_path / "t.db"
    load(src, db)
    write_file(src / "a-good.jsonl", [600], day=28)
    (src / "z-bad.jsonl").write_text('{"id": 1, "modified_at": \n')
    with pytest.raises(InputError):
        load(src, db)
    assert set(manifest(db)) == {f"part-{i:04d}.jsonl" for i in range(3)}
    (src / "z-bad.jsonl").write_text('{"id": 601, "modified_at": "2025-01-28T00:00:00"}\n')
    res = load(src, db)
    assert res["source_records"] == 2 and res["files"]["read"] == 2


def test_window_records_every_file_with_the_last_slice(tmp_path):
    src, db = make_folder(tmp_path / "land", n=6), tmp_path / "t.db"
    res = load(src, db, window="1d")
    assert len(res["windows"]) == 6 and len(manifest(db)) == 6
    con = sqlite3.connect(db)
    last = con.execute("SELECT max(window_index) FROM _hiwater_history").fetchone()[0]
    con.close()
    assert last == 6
    write_file(src / "later.jsonl", [900, 901], day=27)
    again = load(src, db, window="1d")
    assert again["source_records"] == 2 and again["files"]["read"] == 1


def _count_reads(monkeypatch):
    """Count each time a file is opened by a reader (one file: one call of its format's reader)."""
    import collections
    from hiwater.sources import files as F
    counts = collections.Counter()
    for name in ("read_jsonl", "read_csv", "read_json_array", "_read_parquet"):
        real = getattr(F, name)

        def counting(path, name_, *a, _real=real, **kw):
            counts[os.path.basename(name_)] += 1
            return _real(path, name_, *a, **kw)
        monkeypatch.setattr(F, name, counting)
    return counts


def test_window_reads_each_file_once_per_run_not_once_per_slice(tmp_path, monkeypatch):
    import gzip
    src, db = make_folder(tmp_path / "land", n=6), tmp_path / "t.db"
    with gzip.open(src / "zz.jsonl.gz", "wt") as f:  # a compressed file is decompressed once too
        f.write(json.dumps({"id": 700, "v": "x", "modified_at": "2025-01-09T00:00:00"}) + "\n")
    counts = _count_reads(monkeypatch)
    res = load(src, db, window="1d")
    assert len(res["windows"]) == 7 and res["source_records"] == 61 and res["loaded"] == 61
    assert dict(counts) == {f"part-{i:04d}.jsonl": 1 for i in range(6)} | {"zz.jsonl.gz": 1}
    assert len(rows(db)) == 61 and len(manifest(db)) == 7
    # the same target as a run without --window
    plain = tmp_path / "plain.db"
    load(src, plain)
    assert rows(plain) == rows(db)


def test_compressed_files_are_tracked(tmp_path):
    import gzip
    src, db = make_folder(tmp_path / "land", n=2), tmp_path / "t.db"
    with gzip.open(src / "more.jsonl.gz", "wt") as f:
        f.write(json.dumps({"id": 700, "modified_at": "2025-01-29T00:00:00"}) + "\n")
    assert load(src, db)["files"]["read"] == 3
    with gzip.open(src / "even-more.jsonl.gz", "wt") as f:
        f.write(json.dumps({"id": 701, "modified_at": "2025-01-29T00:00:01"}) + "\n")
    res = load(src, db)
    assert res["source_records"] == 1 and res["files"] == {"listed": 4, "read": 1, "skipped": 3, "vanished": 0}


# --- a SIGKILL at any operation of a multi-file --window run --------------------------------------

def _cli(argv, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("HIWATER_FAULT")}
    e.update(env or {})
    return subprocess.run(HIWATER + [str(a) for a in argv], capture_output=True, text=True, env=e)


def _target_state(db):
    con = sqlite3.connect(db)
    try:
        data = sorted(con.execute("SELECT id, v, modified_at FROM t"))
        wm = con.execute("SELECT watermark FROM _hiwater_state").fetchone()
        files = sorted((os.path.basename(p), s) for p, s in con.execute("SELECT path, size FROM _hiwater_files"))
        return data, wm, files
    finally:
        con.close()


def _kill_points(trace: str) -> list[int]:
    """Operations worth a kill: the first, the manifest write, each COMMIT (the kill comes just
    before it) and the operation after each COMMIT (just after it). A kill at every operation:
    ``pytest -m slow``."""
    ops = [(int(n), text) for n, text in (ln.split(" ", 1) for ln in open(trace).read().splitlines() if ln)]
    files = [n for n, text in ops if "_hiwater_files" in text and text.upper().startswith("INSERT")]
    assert len(files) == 1, ops
    commits = [n for n, text in ops if text.upper().startswith("COMMIT")]
    return sorted({ops[0][0], files[0], *commits, *(n + 1 for n in commits if n < ops[-1][0])})


def _sweep(tmp_path, every: bool):
    import shutil
    base = make_folder(tmp_path / "land", n=4, per=5)
    seed = tmp_path / "seed.db"
    assert _cli(["load", "-i", base, "--db", seed, "--table", "t", "--now", NOW]).returncode == 0
    for f in range(3):  # three new files, spread over several days: several slices
        write_file(base / f"new-{f}.jsonl", range(100 + 10 * f, 110 + 10 * f), day=21 + f)
    argv = ["load", "-i", base, "--db", None, "--table", "t", "--now", NOW, "--window", "12h"]

    ref = tmp_path / "ref.db"
    shutil.copy(seed, ref)
    trace = tmp_path / "trace"
    done = _cli([a if a is not None else ref for a in argv], {"HIWATER_FAULT_TRACE": str(trace)})
    assert done.returncode == 0, done.stderr
    expected = _target_state(ref)
    assert len(expected[2]) == 7
    n_ops = sum(1 for _ in open(trace))
    stride = env_int("HIWATER_SWEEP_STRIDE", 2, 1)  # CI size: every second operation
    points = range(1, n_ops + 1, stride) if every else _kill_points(str(trace))
    for n in points:
        work = tmp_path / f"k{n}.db"
        shutil.copy(seed, work)
        killed = _cli([a if a is not None else work for a in argv], {"HIWATER_FAULT_AT": f"{n}:kill"})
        assert killed.returncode == -9, (n, killed.returncode, killed.stderr)
        data, wm, files = _target_state(work)
        applied = {f for f, _ in files} - {f for f, _ in _target_state(seed)[2]}
        if applied:  # the manifest names a new file only with all of that file's rows
            assert applied == {"new-0.jsonl", "new-1.jsonl", "new-2.jsonl"} and data == expected[0], n
        rerun = _cli([a if a is not None else work for a in argv])
        assert rerun.returncode == 0, (n, rerun.stderr)
        assert _target_state(work) == expected, n
        again = json.loads(_cli([a if a is not None else work for a in argv]).stdout)
        assert again["source_records"] == 0, n  # the manifest matches the data: nothing is read again


@pytest.mark.slow
def test_a_kill_at_the_commits_and_the_manifest_write_then_a_rerun_gives_the_exact_target(tmp_path):
    _sweep(tmp_path, every=False)


@pytest.mark.slow
def test_a_kill_at_every_operation_of_a_window_run_then_a_rerun_gives_the_exact_target(tmp_path):
    _sweep(tmp_path, every=True)


def test_two_runners_on_one_folder_read_each_file_once(tmp_path):
    """Two runs of one folder stream at once: the stream lock orders them; the second sees the
    first's manifest (committed with its data) and reads nothing again; the table is exact."""
    src, db = make_folder(tmp_path / "land", n=40, per=50), tmp_path / "t.db"
    args = [*HIWATER, "load", "--input", str(src), "--db", str(db), "--table", "t", "--now", NOW, "--details",
            "--lock-timeout", "60s"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    got = [json.loads(o[0]) for o in outs]
    assert sorted(s["files"]["read"] for s in got) == [0, 40]   # one read every file, the other none
    assert sum(s["inserted"] for s in got) == 40 * 50           # no record twice, none lost
    assert len(rows(db)) == 40 * 50 and len(manifest(db)) == 40


def test_the_window_spill_holds_each_record_once_whatever_the_batch_size(tmp_path):
    """The spill of a --window run writes a batch's own rows: a reader's batches are slices of its
    blocks, and pickling a slice would write the whole block under it for every batch."""
    from hiwater.sources.files import FileSource
    from hiwater.sources.spill import Spilled
    src = make_folder(tmp_path / "land", n=2, per=2000)
    size = sum(p.stat().st_size for p in src.iterdir())
    for batch_size in (3, 65_536):
        spilled = Spilled(FileSource(str(src), batch_size=batch_size))
        first = [b.table for b in spilled.batches()]
        again = [b.table for b in spilled.batches()]
        spilled_bytes = spilled._file.tell()
        spilled.close_spill()
        assert [t.to_pylist() for t in again] == [t.to_pylist() for t in first]
        assert sum(t.num_rows for t in again) == 4000
        assert spilled_bytes < 2 * size + 1400 * len(first), (batch_size, spilled_bytes, size)

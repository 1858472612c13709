"""Observability and no silent defaults: JSON events, warnings on the `hiwater` logger, the
run's duration, a failed run's history row, --max-rejected, compressed inputs, and the
warnings for an in-memory target and a dated file name."""

from __future__ import annotations

import bz2
import gzip
import json
import logging
import sqlite3

import pyarrow as pa
import pytest

import hiwater

from conftest import NOW, SAMPLE, rec, rows, watermark, write_jsonl

SIX = ["source_records", "loaded", "skipped", "previous_watermark", "new_watermark", "total_in_target"]


# --- JSON events ---------------------------------------------------------------------------------

def _events(err: str) -> list[dict]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def test_json_log_lines_parse_and_carry_the_run_id(hw, tmp_path):
    db = tmp_path / "t.db"
    hw("load", "--input", SAMPLE, "--db", db, "--table", "events")           # run 1
    f = write_jsonl(tmp_path / "a.jsonl", [rec(6, "12:00"), rec(7, "13:30")])
    r = hw("--log-format", "json", "load", "--input", f, "--db", db, "--table", "events", "--window", "1h",
           "--now", NOW, "--details")
    assert r.code == 0, r.err
    ev = _events(r.err)
    names = [e["event"] for e in ev]
    assert names[0] == "run_started" and names[-1] == "run_finished"
    assert names.count("slice_committed") == 2
    assert len({e["run"] for e in ev}) == 1 and all(e["stream"] == "events" for e in ev)
    done = ev[-1]
    assert done["run_id"] == r.json["run_id"] == 2
    assert all(e["run_id"] == 2 for e in ev if e["event"] != "run_started")
    assert (done["loaded"], done["source_records"]) == (2, 2) and done["duration_s"] >= 0
    assert all({"ts", "level", "message"} <= set(e) for e in ev)
    assert list(r.json)[:6] == SIX  # stdout keeps the summary


def test_json_logs_carry_warnings_and_the_error(hw, tmp_path):
    db = tmp_path / "t.db"
    hw("load", "--input", SAMPLE, "--db", db)
    r = hw("--log-format", "json", "load", "--input", SAMPLE, "--db", db)
    warn = [e for e in _events(r.err) if e["event"] == "warning"]
    assert len(warn) == 1 and "stale" in warn[0]["message"] and warn[0]["level"] == "warning"
    bad = hw("--log-format", "json", "load", "--input", tmp_path / "missing.jsonl", "--db", db)
    (err,) = _events(bad.err)
    assert bad.code == 1 and err["event"] == "error" and err["error"] == "InputError"
    assert err["exit_code"] == 1 and err["retryable"] is False and "no such file" in err["message"]
    usage = hw("--log-format", "json", "load", "--input", SAMPLE, "--db", db, "--lookback", "soon")
    assert usage.code == 2 and _events(usage.err)[-1]["exit_code"] == 2


def test_a_failed_run_logs_run_failed_with_its_history_run_id(hw, tmp_path):
    db = tmp_path / "t.db"
    f = write_jsonl(tmp_path / "a.jsonl", [rec(1, "10:00"), {"id": 2, "modified_at": "soon"}])
    r = hw("--log-format", "json", "load", "--input", f, "--db", db, "--strict")
    ev = _events(r.err)
    failed = [e for e in ev if e["event"] == "run_failed"]
    assert r.code == 1 and len(failed) == 1 and failed[0]["error"] == "StrictError"
    assert failed[0]["run_id"] == hiwater.history(db=str(db))[-1]["run_id"]


def test_warnings_go_to_the_hiwater_logger(tmp_path, caplog):
    db = str(tmp_path / "t.db")
    hiwater.load(str(SAMPLE), db=db)
    with caplog.at_level(logging.WARNING, logger="hiwater"):
        s = hiwater.load(str(SAMPLE), db=db)
    got = [r for r in caplog.records if r.name == "hiwater" and r.levelno == logging.WARNING]
    assert [r.getMessage() for r in got] == s.warnings and got[0].hiwater_event == "warning"


# --- duration and the failed run's history row ----------------------------------------------

def test_the_summary_and_the_history_carry_the_duration(hw, tmp_path):
    db = tmp_path / "t.db"
    r = hw("load", "--input", SAMPLE, "--db", db, "--details")
    assert r.json["duration_s"] >= 0
    (h,) = hiwater.history(db=str(db))
    assert h["duration_s"] is not None and h["duration_s"] <= r.json["duration_s"] + 0.001


def test_a_failed_run_leaves_a_history_row_after_the_rollback(hw, tmp_path):
    db = tmp_path / "t.db"
    assert hw("load", "--input", SAMPLE, "--db", db, "--table", "events").code == 0
    f = write_jsonl(tmp_path / "b.jsonl", [rec(9, "12:00"), {"id": 10, "modified_at": "soon"}])
    r = hw("load", "--input", f, "--db", db, "--table", "events", "--strict")
    assert r.code == 1
    assert set(rows(db)) == {1, 2, 3, 4, 5}  # nothing of the run
    ok, failed = hiwater.history(db=str(db))
    assert (ok["outcome"], failed["outcome"]) == ("committed", "failed")
    assert failed["run_id"] == 2 and "soon" in failed["error"] and failed["duration_s"] >= 0
    assert failed["source_records"] is None and failed["loaded"] is None
    assert failed["watermark_before"] == failed["watermark_after"] == "2025-01-15T11:15:00"
    # run ids go on from it, and rewinding to the committed run still works
    assert hw("load", "--input", write_jsonl(tmp_path / "c.jsonl", [rec(9, "12:00")]), "--db", db,
              "--table", "events").code == 0
    assert [h["run_id"] for h in hiwater.history(db=str(db))] == [1, 2, 3]
    assert hiwater.state_rewind(db=str(db), stream="events", to_run=3)["watermark"] == "2025-01-15T11:15:00"
    assert hiwater.state_rewind(db=str(db), stream="events", to_run=2)["watermark"] == "2025-01-15T11:15:00"
    shown = hw("history", "--db", db)
    assert "failed" in shown.out


def test_a_failed_run_history_row_never_holds_a_password(tmp_path):
    from hiwater.loader import Loader
    from hiwater.options import LoadOptions
    from hiwater.sources.files import open_files
    from hiwater.targets import open_target

    class Leaky:
        description = "leaky"
        url = "postgresql://etl:s3cr3t-pw@db/x"

        def batches(self):
            raise hiwater.InputError("cannot read postgresql://etl:s3cr3t-pw@db/x: refused")
            yield  # noqa: unreachable

        def close(self):
            pass

    db = tmp_path / "t.db"
    with open_target(db=str(db)) as tgt, pytest.raises(hiwater.InputError):
        Loader(Leaky(), tgt, LoadOptions.build(), table="t").run()
    (h,) = hiwater.history(db=str(db))
    assert h["outcome"] == "failed" and "s3cr3t" not in h["error"] and "***" in h["error"]
    del open_files


def test_an_old_history_table_gains_the_new_columns(tmp_path):
    db = tmp_path / "t.db"
    hiwater.load(str(SAMPLE), db=str(db))
    con = sqlite3.connect(db)
    con.execute("ALTER TABLE _hiwater_history DROP COLUMN duration_s")
    con.execute("ALTER TABLE _hiwater_history DROP COLUMN error")
    con.commit()
    con.close()
    hiwater.load(write_jsonl(tmp_path / "x.jsonl", [rec(9, "12:00")]).as_posix(), db=str(db), table="sample_input")
    hist = hiwater.history(db=str(db))
    assert hist[0]["duration_s"] is None and hist[1]["duration_s"] is not None


# --- --max-rejected ---------------------------------------------------------------------------

def _mixed(tmp_path, bad=2, good=3):
    recs = [rec(i, "10:00") for i in range(1, good + 1)]
    recs += [{"id": 100 + i, "modified_at": "garbage"} for i in range(bad)]
    return write_jsonl(tmp_path / "mixed.jsonl", recs)


@pytest.mark.parametrize("limit,fails", [("1", True), ("2", False), ("0", True), ("30%", True), ("40%", False)])
def test_max_rejected_fails_the_run_and_commits_nothing(hw, tmp_path, limit, fails):
    db = tmp_path / "t.db"
    f = _mixed(tmp_path)  # 2 of 5 invalid (40%)
    r = hw("load", "--input", f, "--db", db, "--table", "events", "--max-rejected", limit)
    if not fails:
        assert r.code == 0 and r.json["rejected"] == 2
        return
    assert r.code == 1
    assert r.err_lines[-1].startswith(f"error: 2 of 5 record(s) (40%) were rejected, more than --max-rejected "
                                      f"{limit}: nothing was committed; the first: {f}: record 4: cursor 'garbage'")
    assert not db.exists() or (rows(db) if _has(db, "events") else {}) == {}
    assert watermark(db) is None and hiwater.quarantine_list(db=str(db)) == []
    assert [h["outcome"] for h in hiwater.history(db=str(db))] == ["failed"]


def _has(db, table):
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone() is not None
    finally:
        con.close()


def test_max_rejected_with_window_fails_before_any_slice(hw, tmp_path):
    db = tmp_path / "t.db"
    f = _mixed(tmp_path)
    r = hw("load", "--input", f, "--db", db, "--table", "events", "--window", "1h", "--max-rejected", "1")
    assert r.code == 1 and "nothing was committed" in r.err
    assert watermark(db) is None and hiwater.quarantine_list(db=str(db)) == []


def test_max_rejected_with_window_a_type_rejection_found_late_fails_that_slice_only(tmp_path):
    """A value only the columns made by an earlier slice reject: that slice fails; earlier slices stand."""
    db = tmp_path / "t.db"
    recs = [rec(1, "08:00", n=1), rec(2, "09:10", n="x"), rec(3, "09:20", n="y")]
    f = write_jsonl(tmp_path / "a.jsonl", recs)
    with pytest.raises(hiwater.QualityError) as e:
        hiwater.load(str(f), db=str(db), table="events", window="1h", max_rejected=1, now=NOW, batch_size=1)
    assert e.value.rejected == 2 and e.value.exit_code == 1 and not e.value.retryable
    assert set(rows(db)) == {1}  # the first slice committed; the second rolled back
    hist = hiwater.history(db=str(db))
    assert [(h["window_index"], h["outcome"]) for h in hist] == [(0, "committed"), (1, "committed"), (2, "failed")]
    assert hist[2]["watermark_after"] == hist[1]["watermark_after"] == "2025-01-15T08:00:00"


def test_max_rejected_bad_values_are_usage_errors(hw, tmp_path):
    for bad in ("-1", "x", "101%", "five"):
        r = hw("load", "--input", SAMPLE, "--db", tmp_path / "t.db", "--max-rejected", bad)
        assert r.code == 2 and r.err_lines[0].startswith(f"error: --max-rejected '{bad}'"), r.err


# --- compressed inputs --------------------------------------------------------------------------

LINES = "".join(json.dumps(rec(i, "10:00")) + "\n" for i in range(1, 4))


def _zstd(data: bytes) -> bytes:
    import pyarrow as pa
    out = pa.BufferOutputStream()
    with pa.CompressedOutputStream(out, "zstd") as z:
        z.write(data)
    return out.getvalue().to_pybytes()


@pytest.mark.parametrize("name,pack", [
    ("events.jsonl.gz", lambda b: gzip.compress(b)),
    ("events.jsonl.zst", _zstd),
    ("events.json.bz2", lambda b: bz2.compress(b)),
    ("events.csv.zst", _zstd),
])
def test_compressed_inputs_are_read_by_their_extension(hw, tmp_path, name, pack):
    if name.startswith("events.json."):
        data = json.dumps([rec(i, "10:00") for i in range(1, 4)]).encode()
    elif ".csv" in name:
        data = b"id,name,modified_at\n" + b"".join(f"{i},n{i},2025-01-15T10:00:00\n".encode() for i in range(1, 4))
    else:
        data = LINES.encode()
    f = tmp_path / name
    f.write_bytes(pack(data))
    db = tmp_path / "t.db"
    r = hw("load", "--input", f, "--db", db, "--now", NOW)
    assert r.code == 0, r.err
    assert r.json["loaded"] == 3 and rows(db, "events")[2] == ("n2", "2025-01-15T10:00:00")
    assert not list(tmp_path.glob("hiwater-decompressed-*"))


def test_a_compressed_file_falls_back_to_the_exact_reader_and_names_the_line(hw, tmp_path):
    f = tmp_path / "e.jsonl.gz"
    f.write_bytes(gzip.compress((LINES + '{"id": 9, "modified_at": \n').encode()))
    r = hw("load", "--input", f, "--db", tmp_path / "t.db")
    assert r.code == 1 and r.err_lines[0].startswith(f"error: {f}:4:") and "malformed JSON" in r.err


def test_a_compressed_file_with_a_window_is_read_twice(tmp_path):
    f = tmp_path / "e.jsonl.gz"
    f.write_bytes(gzip.compress("".join(json.dumps(rec(i, f"{8 + i:02d}:00")) + "\n" for i in range(3)).encode()))
    s = hiwater.load(str(f), db=str(tmp_path / "t.db"), window="1h", now=NOW)
    assert (s.loaded, len(s.windows), s.table) == (3, 3, "e")


def test_a_compressed_file_is_never_sniffed_as_text(hw, tmp_path):
    f = tmp_path / "events.txt"          # gzip inside, the name does not say so
    f.write_bytes(gzip.compress(LINES.encode()))
    r = hw("load", "--input", f, "--db", tmp_path / "t.db")
    assert r.code == 1 and r.err_lines == [f"error: {f}: the file is gzip-compressed but its name does not end in "
                                           f".gz (rename it to end in .gz (the extension before it gives the "
                                           f"format), or decompress it first)"]
    g = tmp_path / "events.jsonl"
    g.write_bytes(gzip.compress(LINES.encode()))
    assert "gzip-compressed" in hw("load", "--input", g, "--db", tmp_path / "t.db").err
    broken = tmp_path / "x.jsonl.gz"
    broken.write_bytes(b"\x1f\x8b not really gzip")
    r = hw("load", "--input", broken, "--db", tmp_path / "t.db")
    assert r.code == 1 and r.err_lines[0].startswith(f"error: {broken}: not a readable gzip file")


def test_zstd_without_support_names_the_extra(hw, tmp_path, monkeypatch):
    import sys
    f = tmp_path / "e.jsonl.zst"
    f.write_bytes(_zstd(LINES.encode()))
    from hiwater.sources import files
    monkeypatch.setattr(files, "_codec_available", lambda c: c != "zstd" and pa.Codec.is_available(c))
    monkeypatch.setitem(sys.modules, "zstandard", None)
    r = hw("load", "--input", f, "--db", tmp_path / "t.db")
    assert r.code == 2 and r.err_lines == [f"error: {f}: reading a .zst file needs zstd support, which this "
                                           f"pyarrow lacks and the zstandard package is not installed "
                                           f"(pip install 'hiwater[zstd]')"]


# --- no silent defaults -------------------------------------------------------------------------

def test_the_seed_command_keeps_its_stdout_and_says_nothing_is_kept(hw, tmp_path):
    r = hw("load", "--input", SAMPLE, "--output", tmp_path / "o.json")
    assert r.code == 0 and list(r.json) == SIX
    assert r.err_lines == ["warning: the target is an in-memory database: nothing of this run is kept when it "
                           "ends (give --db PATH or --target URL)"]
    assert hw("load", "--input", SAMPLE, "--db", tmp_path / "t.db").err == ""


def test_a_dated_file_name_warns_and_suggests_table(hw, tmp_path):
    f = write_jsonl(tmp_path / "events-2025-01-15.jsonl", [rec(1, "10:00")])
    r = hw("load", "--input", f, "--db", tmp_path / "t.db", "--now", NOW)
    assert r.code == 0 and r.err_lines == [
        "warning: the table name 'events_2025_01_15' comes from the file name, which holds a date: the next file "
        "would load into another table; pass --table events (or the name you want)"]
    assert hw("load", "--input", f, "--db", tmp_path / "u.db", "--table", "events", "--now", NOW).err == ""


@pytest.mark.parametrize("name,dated", [("events-2025-01-15", True), ("orders_20250115", True),
                                        ("sales.2024-12", True), ("events", False), ("v2", False),
                                        ("build_12345678", False), ("log-2025", False)])
def test_which_names_hold_a_date(name, dated):
    from hiwater.spec import dated_table_notice, default_table
    table = default_table(f"/x/{name}.jsonl.gz")
    assert (dated_table_notice(f"/x/{name}.jsonl.gz", table) is not None) == dated


def test_a_window_slice_quarantines_what_an_earlier_slices_column_rejects(hw, tmp_path):
    """Regression (found while building --max-rejected): with --window, a record valid at the scan but
    rejected by the type of a column an earlier slice made was counted nowhere and lost."""
    f = write_jsonl(tmp_path / "a.jsonl", [rec(1, "08:00", n=1), rec(2, "09:10", n="x"), rec(3, "09:20", n=3)])
    db = tmp_path / "t.db"
    r = hw("load", "--input", f, "--db", db, "--table", "events", "--window", "1h", "--batch-size", "1",
           "--now", NOW, "--details")
    assert r.code == 0, r.err
    s = r.json
    assert (s["source_records"], s["loaded"], s["rejected"]) == (3, 2, 1)
    (q,) = hiwater.quarantine_list(db=str(db))
    assert q["reason"] == "invalid" and q["record_no"] == 2 and "does not fit" in q["detail"]

"""Every error: one exact line on stderr, the documented exit code, nothing committed."""

from __future__ import annotations

import sqlite3

import pytest

import hiwater

from conftest import SAMPLE, rec, write_jsonl


def _state(db):
    if not db.exists():
        return None
    con = sqlite3.connect(db)
    try:
        return (con.execute("SELECT stream, watermark FROM _hiwater_state").fetchall(),
                con.execute("SELECT count(*) FROM _hiwater_history").fetchone(),
                con.execute("SELECT count(*) FROM _hiwater_quarantine").fetchone())
    finally:
        con.close()


@pytest.fixture
def db(hw, tmp_path):
    """A target that already holds one committed run."""
    path = tmp_path / "t.db"
    assert hw("load", "--input", SAMPLE, "--db", path, "--table", "events").code == 0
    return path


def check(r, code, line, db):
    before = _state(db)
    assert r.code == code
    assert r.err_lines == [line]
    assert "Traceback" not in r.err and r.out == ""
    assert _state(db) == before


def test_missing_file(hw, tmp_path, db):
    r = hw("load", "--input", tmp_path / "nope.jsonl", "--db", db, "--table", "events")
    check(r, 1, f"error: {tmp_path / 'nope.jsonl'}: no such file", db)


def test_malformed_json_lines_names_line_and_column(hw, tmp_path, db):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"id": 9, "modified_at": "2025-01-16T00:00:00"}\n{"id": 10, "modified_at": \n')
    r = hw("load", "--input", f, "--db", db, "--table", "events")
    check(r, 1, f"error: {f}:2:27: malformed JSON: Expecting value", db)


def test_malformed_json_array_names_line_and_column(hw, tmp_path, db):
    f = tmp_path / "bad.json"
    f.write_text('[{"id": 9, "modified_at": "2025-01-16T00:00:00"},\n {"id": 10,]')
    r = hw("load", "--input", f, "--db", db, "--table", "events")
    check(r, 1, f"error: {f}:2:12: malformed JSON: Expecting property name enclosed in double quotes", db)


def test_bad_csv_row(hw, tmp_path, db):
    f = tmp_path / "bad.csv"
    f.write_text("id,modified_at\n9,2025-01-16T00:00:00\n10,2025-01-16T00:00:00,extra\n")
    r = hw("load", "--input", f, "--db", db, "--table", "events")
    check(r, 1, f"error: {f}:3: expected 2 fields, found 3", db)


def test_csv_not_utf8(hw, tmp_path, db):
    f = tmp_path / "latin.csv"
    f.write_bytes("id,name,modified_at\n9,caf\xe9,2025-01-16T00:00:00\n".encode("latin-1"))
    r = hw("load", "--input", f, "--db", db, "--table", "events")
    check(r, 1, f"error: {f}: not UTF-8 text at byte 25 (pass --encoding with the file's encoding "
                f"(for example --encoding latin-1 or cp1252))", db)


@pytest.mark.parametrize("args, line", [
    (["--prune"], "error: --prune needs --full-load: only a full read of the source can tell which keys are gone"),
    (["--soft-delete"], "error: --soft-delete needs --delete-field NAME"),
    (["--full-load", "--since", "2025-01-01"],
     "error: --full-load cannot be combined with --since/--until: a full load reads everything"),
    (["--full-load", "--lookback", "1h"],
     "error: --full-load cannot be combined with --lookback: a full load has no window"),
    (["--key", "id,id"], "error: --key id,id: a column is named twice"),
    (["--key", "id,x", "--cursor", "id"], "error: --cursor id: the cursor can be the whole --key (an append-only id) "
                                          "but not one part of a composite key"),
    (["--since", "2025-01-15T12:00:00", "--until", "2025-01-15T10:00:00"],
     "error: --since 2025-01-15T12:00:00 --until 2025-01-15T10:00:00: the range is empty (--until must be later "
     "than --since)"),
    (["--since", "42", "--until", "22"], "error: --since '42': cursor '42' is not an ISO-8601 timestamp"),
    (["--window", "0s"], "error: --window '0s': must be greater than zero"),
    (["--lookback", "soon"], "error: --lookback 'soon': not a duration (use 30s, 15m, 2h, 1d, 1h30m, "
                             "ISO-8601 PT15M, or a plain integer for integer cursors)"),
    (["--settle", "PT"], "error: --settle 'PT': not a duration (use 30s, 15m, 2h, 1d, 1h30m, "
                         "ISO-8601 PT15M, or a plain integer for integer cursors)"),
    (["--lookback", "15"], "error: --lookback '15': the cursor is a timestamp, give a unit "
                           "(for example 15m, 2h, 1d or PT15M)"),
    (["--max-future", "tomorrow"], "error: --max-future 'tomorrow': not a duration (use 30s, 15m, 2h, 1d, "
                                   "1h30m, ISO-8601 PT15M, or a plain integer for integer cursors)"),
    (["--since", "yesterday"], "error: --since 'yesterday': cursor 'yesterday' is not an ISO-8601 timestamp"),
    (["--assume-tz", "Mars/Base"], "error: --assume-tz 'Mars/Base': not a known time zone "
                                   "(use an IANA name such as UTC or Europe/Berlin)"),
    (["--boundary", "sideways"], "error: Invalid value for '--boundary': 'sideways' is not one of "
                                 "'inclusive', 'exclusive'."),
    (["--bogus"], "error: No such option '--bogus'. Did you mean '--buckets'?"),  # click's suggestion
    (["--key", "name"], "error: stream 'events' was created with --key id, not name (pass --key id, or start "
                        "the stream over with `hiwater stream drop events --table --db {db}` (deletes its data), "
                        "or load into another --table)"),
    (["--assume-tz", "Europe/Berlin"], "error: stream 'events' was created with --assume-tz UTC, not "
                                       "Europe/Berlin: its stored cursors are instants read in UTC (leave "
                                       "--assume-tz out (the stream's own is used), or start the stream over "
                                       "with `hiwater stream drop events --table --db {db}` (deletes its data), "
                                       "or load into another --table)"),
])
def test_bad_options_exit_2_and_change_nothing(hw, db, args, line):
    r = hw("load", "--input", SAMPLE, "--db", db, "--table", "events", *args)
    check(r, 2, line.replace("{db}", str(db)), db)


def test_missing_input_option(hw, tmp_path):
    r = hw("load")
    assert r.code == 2 and r.err_lines == ["error: give --input PATH (a file, a folder, a glob, or - for "
                                           "standard input) or --source URL"]


def test_target_folder_missing(hw, tmp_path):
    r = hw("load", "--input", SAMPLE, "--db", tmp_path / "no" / "t.db")
    assert r.code == 1 and r.err_lines == [f"error: {tmp_path / 'no' / 't.db'}: the folder {tmp_path / 'no'} "
                                           f"does not exist"]


def test_target_not_a_database(hw, tmp_path):
    f = tmp_path / "x.db"
    f.write_text("this is not sqlite, it is a text file of some length" * 20)
    r = hw("load", "--input", SAMPLE, "--db", f)
    assert r.code == 1 and r.err_lines == [f"error: {f}: cannot open as a SQLite database: file is not a database"]


def test_hostile_table_name_loads_and_is_quoted(hw, tmp_path):
    db = tmp_path / "t.db"
    r = hw("load", "--input", SAMPLE, "--db", db, "--table", "t]; DROP TABLE x; --\"'")
    assert r.code == 0 and r.json["total_in_target"] == 5


def test_a_source_field_named_like_hiwater_columns_is_refused(hw, tmp_path):
    for field in ("_hiwater_run", "_hiwater_note", "_HIWATER_Cursor"):
        f = write_jsonl(tmp_path / "a.jsonl", [rec(1, "10:00", **{field: 3})])
        r = hw("load", "--input", f, "--db", tmp_path / "t.db")
        assert r.code == 2 and r.err_lines == [
            f"error: {f}: the source has a field named {field!r}; names starting with _hiwater_ are reserved "
            f"for hiwater's own columns (rename that field in the source)"]
    # nothing was committed, and the stream keeps working for a source without it
    assert not (tmp_path / "t.db").exists() or hiwater.state_show(db=str(tmp_path / "t.db")) == []
    f = write_jsonl(tmp_path / "b.jsonl", [rec(1, "10:00")])
    assert hw("load", "--input", f, "--db", tmp_path / "t.db", "--table", "a").code == 0


def test_lock_timeout_fails_cleanly_while_another_run_holds_the_stream(hw, tmp_path, db):
    import fcntl
    import os
    import zlib
    fd = os.open(str(db) + ".hwlock", os.O_RDWR | os.O_CREAT)
    try:
        # Hold the stream's lock from another process, as a concurrent run would.
        import multiprocessing as mp
        ready, done = mp.Event(), mp.Event()

        def holder():
            fd2 = os.open(str(db) + ".hwlock", os.O_RDWR)
            fcntl.lockf(fd2, fcntl.LOCK_EX, 1, zlib.crc32(b"events") & 0x3FFFFFFF)
            ready.set()
            done.wait(10)

        p = mp.get_context("fork").Process(target=holder)
        p.start()
        ready.wait(5)
        r = hw("load", "--input", SAMPLE, "--db", db, "--table", "events", "--lock-timeout", "0.3s")
        done.set()
        p.join()
        check(r, 1, "error: stream 'events' is being loaded by another run; gave up after 0.3s "
                    "(wait for it to finish, or raise --lock-timeout)", db)
    finally:
        os.close(fd)


def test_the_hint_for_a_changed_key_works(hw, tmp_path):
    """Issue 10 #18: `state reset` did not help; `stream drop --table` does, and so does another --table."""
    db = tmp_path / "t.db"
    f = write_jsonl(tmp_path / "events.jsonl", [rec(1, "10:00"), rec(2, "11:00")])
    assert hw("load", "--input", f, "--db", db).code == 0
    r = hw("load", "--input", f, "--db", db, "--key", "name")
    hint = f"hiwater stream drop events --table --db {db}"
    assert r.code == 2 and hint in r.err
    # the hint works as printed (pasted into a shell)
    import shlex
    assert hw(*shlex.split(hint)[1:], "--json").code == 0
    assert hw("load", "--input", f, "--db", db).code == 0  # the stream starts over
    assert hw("state", "reset", "--db", db, "--stream", "events").code == 0
    assert hw("load", "--input", f, "--db", db, "--key", "name").code == 2  # reset keeps the stream's key
    other = hw("load", "--input", f, "--db", db, "--key", "name", "--table", "by_name", "--details")
    assert other.code == 0 and other.json["inserted"] == 2
    r = hw("stream", "drop", "events", "--table", "--db", db, "--json")
    assert r.code == 0 and r.json == [{"stream": "events", "table": "events", "table_dropped": True}]
    s = hw("load", "--input", f, "--db", db, "--key", "name", "--details")
    assert s.code == 0 and s.json["inserted"] == 2
    assert [x["key"] for x in hiwater.state_show(db=str(db), stream="events")] == [["name"]]
    assert sqlite3.connect(db).execute("SELECT count(*) FROM events").fetchone() == (2,)
    r = hw("stream", "drop", "nope", "--db", db)
    assert r.code == 2 and r.err_lines == [f"error: no stream named 'nope' in sqlite:///{db} "
                                           f"(`hiwater state show` lists the streams)"]


def test_output_to_a_missing_folder_fails_before_anything_is_committed(hw, tmp_path):
    """Issue 10 #9: exit 2 used to come after the commit."""
    db = tmp_path / "t.db"
    out = tmp_path / "missing" / "summary.json"
    r = hw("load", "--input", SAMPLE, "--db", db, "--output", out)
    assert r.code == 2 and r.err_lines == [f"error: --output {out}: the folder {out.parent} does not exist; "
                                           f"nothing was loaded"]
    assert not db.exists() or hiwater.state_show(db=str(db)) == []
    r = hw("load", "--input", SAMPLE, "--db", db, "--output", tmp_path)
    assert r.code == 2 and "is a folder" in r.err


def test_an_empty_since_until_range_on_a_new_integer_stream_is_a_usage_error(hw, tmp_path):
    """Issue 10 #14: `--since 42 --until 22` ran (exit 0, a stale-source warning)."""
    f = write_jsonl(tmp_path / "a.jsonl", [{"id": 1, "seq": 30}])
    r = hw("load", "--input", f, "--db", tmp_path / "t.db", "--cursor", "seq", "--since", "42", "--until", "22")
    assert r.code == 2 and r.err_lines == ["error: --since 42 --until 22: the range is empty (--until must be "
                                           "later than --since)"]


def test_main_in_process_leaves_sigpipe_alone(tmp_path):
    """Only the command-line process takes the default SIGPIPE (quiet on `| head`). main() called
    in-process must not: a later write to a closed socket would kill the caller (exit 141); it
    killed the slow suite once."""
    import signal

    from hiwater.cli import main
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # Python's own setting at start-up
    main(["state", "show", "--db", str(tmp_path / "x.db")])
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN

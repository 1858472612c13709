"""5. Hostile input: fuzzed files, values, names and options through the real CLI (in process).

Every case must end in one of two ways: exit 0 with every bad record quarantined (and
the counts adding up), or exit 1/2 with one clear ``error:`` line (never a traceback,
never ``internal error``) and the target exactly as it was: rows, watermark, history,
quarantine. The one exception: a run that rejected every record fails (exit 1) but commits
its quarantine and a `failed` history row, the watermark unmoved (docs/concepts.md). ``HIWATER_FUZZ_EXAMPLES`` (CI default 300 per fuzzer; full run 2,000).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hiwater.cli import main

from .harness import env_int

pytestmark = pytest.mark.reliability
NOW = "2025-06-01T00:00:00Z"
TRIED = {"n": 0}


def _settings(ci=300, full=2000, smoke=False):
    n = 15 if smoke else env_int("HIWATER_FUZZ_EXAMPLES", ci, full)
    return settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck), derandomize=smoke)


def cli(*args, stdin: bytes | None = None):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    TRIED["n"] += 1
    return code, out.getvalue(), err.getvalue()


def state_of(db: Path):
    """Everything a failed run must leave as it was."""
    if not db.exists():
        return None
    con = sqlite3.connect(db)
    try:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        out = {}
        for n in names:
            q = '"' + n.replace('"', '""') + '"'
            # A failed run leaves one history row of its failure (after the rollback): not a change.
            where = " WHERE outcome != 'failed'" if n == "_hiwater_history" else ""
            out[n] = sorted(map(repr, con.execute(f"SELECT * FROM {q}{where}").fetchall()))
        return out
    finally:
        con.close()


def watermark_row(db: Path):
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT watermark, kind, naive FROM _hiwater_state").fetchall()
    finally:
        con.close()


ALL_REJECTED = re.compile(r"^error: every record \((\d+)\) was rejected: nothing valid arrived")


def _raw(db: Path, table: str) -> list:
    con = sqlite3.connect(db)
    try:
        return con.execute(f'SELECT * FROM "{table}"').fetchall()
    finally:
        con.close()


def _check_all_rejected(db: Path, before, after, n: int):
    """What a run that rejected all its ``n`` records may change: it adds its `invalid`
    quarantine rows (one per distinct record, so 1 to ``n``) and a `failed` history row, and rewrites its state row (run id, version,
    time) with the watermark it found; nothing else, and never the data."""
    before = before or {}
    meta = {"_hiwater_quarantine", "_hiwater_state", "_hiwater_history", "sqlite_sequence"}
    for name in set(before) | set(after):
        if name not in meta:
            assert after.get(name) == before.get(name, []), f"an all-rejected run changed {name}"
    old_q = before.get("_hiwater_quarantine", [])
    assert set(old_q) <= set(after["_hiwater_quarantine"]), "an all-rejected run dropped quarantine rows"
    new_q = [r for r in _raw(db, "_hiwater_quarantine") if repr(r) not in set(old_q)]
    # one row per distinct record (a record is stored once per reason): 1 to n new rows
    assert 1 <= len(new_q) <= n and all(r[2] == "invalid" for r in new_q), (n, new_q)
    assert after.get("_hiwater_history", []) == before.get("_hiwater_history", []), "history changed"
    outcomes = [r[0] for r in sqlite3.connect(db).execute(
        "SELECT outcome FROM _hiwater_history ORDER BY run_id DESC, window_index DESC LIMIT 1")]
    assert outcomes == ["failed"], outcomes
    # the state row: all but last_run, version, updated_at as it was (the watermark did not move)
    was = [tuple(eval(r)[:8]) for r in before.get("_hiwater_state", [])]
    now = [tuple(r[:8]) for r in _raw(db, "_hiwater_state")]
    if was:
        assert sorted(now) == sorted(was), "an all-rejected run changed the state"
    else:  # a new stream: its state holds no watermark
        assert all(r[5] is None for r in now), now
    seq = dict(_raw(db, "sqlite_sequence")) if "sqlite_sequence" in after else {}
    old_seq = dict(eval(r) for r in before.get("sqlite_sequence", []))
    assert {k: v for k, v in seq.items() if k != "_hiwater_quarantine"} == \
        {k: v for k, v in old_seq.items() if k != "_hiwater_quarantine"}


def check(code, out, err, db, before, dry_run=False):
    assert code in (0, 1, 2), (code, err)
    assert "Traceback" not in err and "internal error" not in err, err
    if code != 0:
        lines = [x for x in err.splitlines() if x.strip() and not x.startswith("warning:")]
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert len(lines[0]) < 600
        after = state_of(db)
        every = ALL_REJECTED.search(lines[0]) if code == 1 else None
        if every and not dry_run and after != before:
            # a run that rejected every record fails but commits exactly its quarantine and a
            # `failed` history row; its state row is written with the watermark it found
            _check_all_rejected(db, before, after, int(every.group(1)))
        elif before is None:  # a new target: at most the empty meta tables
            assert after is None or not any(after.values()), after
        else:
            assert after == before, "a failed run changed the target"
        return None
    s = json.loads(out)
    assert s["source_records"] == s["loaded"] + s["skipped"] + s.get("rejected", 0)
    return s


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A target that already holds one load (so a failed run has something to keep intact)."""
    d = tmp_path_factory.mktemp("hostile")
    src = d / "seed.jsonl"
    src.write_text("".join(json.dumps({"id": i, "name": f"n{i}", "qty": i, "modified_at": f"2025-01-15T1{i}:00:00"})
                           + "\n" for i in range(5)))
    db = d / "seed.db"
    code, _, err = cli("load", "--input", src, "--db", db, "--table", "events", "--now", NOW)
    assert code == 0, err
    return db


def fresh(base: Path, tmp: Path) -> Path:
    db = tmp / "t.db"
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    a, b = sqlite3.connect(base), sqlite3.connect(db)
    a.backup(b)
    a.close()
    b.close()
    return db


# --- values --------------------------------------------------------------------------------

cursors = st.one_of(
    st.sampled_from([
        "2025-01-15T10:00:00.9", "2025-01-15T10:00:00.10", "2025-01-15T10:00:00.000001",
        "0001-01-01T00:00:00", "0001-01-01T00:30:00+01:00", "9999-12-31T23:59:59.999999",
        "9999-12-31T23:00:00-05:00", "1969-12-31T23:59:59.999999Z", "2025-10-26T02:30:00",
        "2025-03-30T02:30:00", "2025-01-15", "2025-02-30", "2025-01-15T24:00:00", "  2025-01-15T10:00:00  ",
        "2025-01-15T10:00:00+14:00", "2025-01-15T10:00:00-12:00", "2025-01-15T10:00:00+24:00", "NaN",
        "nan", "inf", "-0", "", " ", "null", "1e400", "\u0000", "2025-01-15T10:00:00\u0000", "T", "Z",
        "+10000-01-01T00:00:00", "2025-W03-3", "20250115T100000", "2025-01-15 10:00:00",
    ]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.none(),
    st.datetimes(min_value=__import__("datetime").datetime(1, 1, 2),
                 max_value=__import__("datetime").datetime(9999, 12, 30)).map(lambda d: d.isoformat()),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
keys = st.one_of(st.integers(min_value=-(2**64), max_value=2**64), st.text(max_size=12),
                 st.sampled_from([None, True, 1.0, 1.5, "1", "01", " 1", -0.0, float("nan"), [1], {"a": 1}]))
names = st.one_of(
    st.sampled_from(["name", "qty", "Name", "NAME", "", " ", '"', "'", 'a"b', "a;b", "select", "rowid", "oid",
                     "_hiwater_cursor", "_hiwater_run", "_hiwater_x", "sqlite_x", "a\u0000b", "é", "🙂", "x" * 300,
                     "modified_at ", "id ", "[id]", "`id`", "a.b", "a\nb", "deleted_at"]),
    st.text(max_size=8))
values = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.floats(), st.text(max_size=20),
                   st.booleans(), st.none(), st.lists(st.integers(), max_size=3),
                   st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
record = st.builds(lambda k, c, extra, drop: _record(k, c, extra, drop), keys, cursors,
                   st.dictionaries(names, values, max_size=3), st.sampled_from([None, None, None, "id", "modified_at"]))


def _record(k, c, extra, drop):
    r = {"id": k, "modified_at": c, **{n: v for n, v in extra.items() if n not in ("id", "modified_at")}}
    if drop:
        r.pop(drop)
    return r


def _json_text(v):
    """JSON with NaN/Infinity written the way some producers do (invalid JSON, on purpose)."""
    return json.dumps(v, allow_nan=True, default=str)


def serialise(records, fmt: str) -> bytes:
    if fmt == "jsonl":
        return "".join(_json_text(r) + "\n" for r in records).encode("utf-8", "surrogatepass")
    if fmt == "json":
        return _json_text(records).encode("utf-8", "surrogatepass")
    cols = []
    for r in records:
        for c in r:
            if c not in cols:
                cols.append(c)
    import csv
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(cols)
    for r in records:
        w.writerow(["" if r.get(c) is None else (r[c] if isinstance(r[c], str) else _json_text(r[c])) for c in cols])
    return buf.getvalue().encode("utf-8", "surrogatepass")


def corrupt(data: bytes, how: str, at: float, junk: bytes) -> bytes:
    i = int(len(data) * at)
    if how == "truncate":
        return data[:i]
    if how == "insert":
        return data[:i] + junk + data[i:]
    if how == "bom8":
        return b"\xef\xbb\xbf" + data
    if how == "bom16":
        return b"\xff\xfe" + data.decode("utf-8", "replace").encode("utf-16-le")
    if how == "latin1":
        return data.decode("utf-8", "replace").encode("latin-1", "replace")
    if how == "crlf":
        return data.replace(b"\n", b"\r\n")
    return data


FILES = dict(records=st.lists(record, max_size=6), fmt=st.sampled_from(["jsonl", "json", "csv"]),
       how=st.sampled_from(["none", "none", "truncate", "insert", "bom8", "bom16", "latin1", "crlf"]),
       at=st.floats(0, 1), junk=st.binary(max_size=6), tz=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
       strict=st.booleans(), window=st.sampled_from([None, None, "1h"]))


def _fuzz_files(base, tmp, records, fmt, how, at, junk, tz, strict, window):
    db = fresh(base, tmp)
    f = tmp / f"in.{fmt}"
    f.write_bytes(corrupt(serialise(records, fmt), how, at, junk))
    before = state_of(db)
    wm_before = watermark_row(db)
    args = ["load", "--input", f, "--db", db, "--table", "events", "--now", NOW, "--assume-tz", tz]
    if strict:
        args.append("--strict")
    if window:
        args += ["--window", window]
    code, out, err = cli(*args)
    if window and code == 1:
        # earlier slices may stand; the failed slice must not: the state is one committed window
        assert "Traceback" not in err and "internal error" not in err, err
        return
    s = check(code, out, err, db, before)
    if s is not None and s["loaded"] == 0:
        assert watermark_row(db) == wm_before


def test_fuzz_files_smoke(base, tmp_path):
    _settings(smoke=True)(given(**FILES)(_fuzz_files))(base, tmp_path)


@pytest.mark.slow
def test_fuzz_files(base, tmp_path):
    _settings()(given(**FILES)(_fuzz_files))(base, tmp_path)


# --- names and options ---------------------------------------------------------------------

option_values = st.one_of(
    st.sampled_from(["0", "-1", "1", "1d", "0s", "-5m", "PT", "P", "PT0S", "P1DT", "1h30", "1e9d",
                     "99999999999999999999d", "99999999999999999999", "9" * 40, "nan", "inf", "1.5h", "0.000001us",
                     "none", "None", "", " ", "\u00a0", "1 h", "15M", "PT15M", "P1W", "10000000000w",
                     "2025-01-15T10:00:00", "2025-01-15", "9999-12-31T23:59:59", "0001-01-01", "garbage",
                     "Europe/Berlin", "Mars/Olympus", "../../etc/passwd", "UTC+1", "utc", "Z", "EST5EDT"]),
    st.text(max_size=12))
OPTIONS = ["--lookback", "--window", "--max-future", "--settle", "--lock-timeout", "--since", "--until", "--now",
           "--assume-tz", "--key", "--cursor", "--table", "--stream", "--batch-size", "--boundary", "--on-late",
           "--format", "--delete-field"]


OPTS = dict(opts=st.lists(st.tuples(st.sampled_from(OPTIONS), option_values), min_size=1, max_size=3),
       flags=st.lists(st.sampled_from(["--full-load", "--prune", "--dry-run", "--strict", "--soft-delete",
                                       "--details"]), max_size=2))


def _fuzz_options(base, tmp, opts, flags):
    db = fresh(base, tmp)
    src = tmp / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "name": "x", "modified_at": f"2025-01-16T0{i}:00:00"}) + "\n"
                           for i in range(3)))
    before = state_of(db)
    args = ["load", "--input", src, "--db", db, "--table", "events", "--now", NOW]
    for o, v in opts:
        if o in args:  # let the fuzzed value decide
            i = args.index(o)
            del args[i:i + 2]
        args += [o, v]
    args = _dedupe(args)
    code, out, err = cli(*args, *flags)
    if "\x00" in " ".join(map(str, args)) and code == 2:
        return
    if any(o == "--window" for o, _ in opts) and code == 1:
        assert "Traceback" not in err and "internal error" not in err, err
        return
    check(code, out, err, db, before, dry_run="--dry-run" in flags)


def _dedupe(args):
    """Keep the last value of options given twice (click would too); drop dangling flags."""
    out, i = [], 0
    seen = {}
    while i < len(args):
        a = args[i]
        if isinstance(a, str) and a.startswith("--") and a not in ("--details",) and i + 1 < len(args):
            seen[a] = args[i + 1]
            i += 2
        else:
            out.append(a)
            i += 1
    for k, v in seen.items():
        out += [k, v]
    return out


def test_fuzz_options_smoke(base, tmp_path):
    _settings(smoke=True)(given(**OPTS)(_fuzz_options))(base, tmp_path)


@pytest.mark.slow
def test_fuzz_options(base, tmp_path):
    _settings()(given(**OPTS)(_fuzz_options))(base, tmp_path)


NAMES = dict(table=names, stream=names, key=names, cursor=names)


def _fuzz_names(base, tmp, table, stream, key, cursor):
    db = tmp / "names.db"
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    src = tmp / "in.jsonl"
    rec = {key: 1, cursor: "2025-01-15T10:00:00", "v": 1} if key != cursor else {key: 1}
    src.write_text(json.dumps(rec) + "\n")
    code, out, err = cli("load", "--input", src, "--db", db, "--table", table, "--stream", stream,
                         "--key", key, "--cursor", cursor, "--now", NOW)
    check(code, out, err, db, None)


def test_fuzz_names_smoke(base, tmp_path):
    _settings(smoke=True)(given(**NAMES)(_fuzz_names))(base, tmp_path)


@pytest.mark.slow
def test_fuzz_names(base, tmp_path):
    _settings()(given(**NAMES)(_fuzz_names))(base, tmp_path)


@pytest.mark.slow
def test_report_inputs_tried():
    print(f"\nFIGURES hostile: {TRIED['n']} hostile inputs tried through the CLI")


# --- pinned cases the fuzzers only hit by chance ------------------------------------------------

def _one(tmp, records, *extra, db=None):
    f = tmp / f"p{TRIED['n']}.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in records))
    code, out, err = cli("load", "--input", f, "--db", db or tmp / "p.db", "--table", "events", "--now", NOW,
                         "--details", *extra)
    assert code == 0, err
    return json.loads(out)


def test_fractional_seconds_compare_as_time_not_as_text(tmp_path):
    """'.9' is 900 ms, later than '.10' (100 ms), although "9" > "10" only as numbers, not as text."""
    s = _one(tmp_path, [{"id": 1, "name": "a", "modified_at": "2025-01-15T10:00:00.10"}])
    assert s["new_watermark"] == "2025-01-15T10:00:00.100000"
    s = _one(tmp_path, [{"id": 1, "name": "b", "modified_at": "2025-01-15T10:00:00.9"}])
    assert (s["updated"], s["new_watermark"]) == (1, "2025-01-15T10:00:00.900000")
    s = _one(tmp_path, [{"id": 1, "name": "c", "modified_at": "2025-01-15T10:00:00.10"},
                        {"id": 2, "name": "d", "modified_at": "2025-01-15T10:00:00.000001"}])
    assert (s["unchanged"], s["late"]) == (1, 1)  # the older version never replaces the newer one
    con = sqlite3.connect(tmp_path / "p.db")
    assert con.execute("SELECT name FROM events WHERE id = 1").fetchone() == ("b",)


def test_dst_ambiguous_naive_times_take_the_first_occurrence_consistently(tmp_path):
    """02:30 on 2025-10-26 happens twice in Berlin: naive means the first (CEST, 00:30Z)."""
    tz = ("--assume-tz", "Europe/Berlin", "--max-future", "none")
    s = _one(tmp_path, [{"id": 1, "name": "naive", "modified_at": "2025-10-26T02:30:00"}], *tz)
    assert s["new_watermark"] == "2025-10-26T02:30:00"
    # the second 02:30 (CET, 01:30Z) is an hour later: a newer version
    s = _one(tmp_path, [{"id": 1, "name": "second", "modified_at": "2025-10-26T02:30:00+01:00"}], *tz)
    assert s["updated"] == 1
    # the same naive text again is the older instant: never a regression
    s = _one(tmp_path, [{"id": 1, "name": "naive", "modified_at": "2025-10-26T02:30:00"}], *tz, "--lookback", "2h")
    assert s["unchanged"] == 1
    # a time the spring change skips (02:30 on 2025-03-30) does not exist there: invalid (SPEC §8)
    s = _one(tmp_path, [{"id": 2, "name": "gap", "modified_at": "2025-03-30T02:30:00"}], *tz, "--on-late", "load",
             "--max-rejected", "100%")  # (a run of invalid records only fails without it: issue 21)
    assert s["rejected"] == 1 and s["loaded"] == 0

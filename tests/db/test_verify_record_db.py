"""A verify's result is recorded with the stream, on every target, and read back by ``status``,
``check --verified`` and the status page (issue 23's "the result is recorded with the stream").

From the user's side: load a folder, verify it, see ``status`` show it and ``check --verified``
pass; plant a difference, verify again (exit 1), see ``check --verified`` fail saying why; an old
verify fails on its age; a stream never verified fails; a target made before verify results were
recorded reads as "never verified" and reading it creates nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import pytest

from hiwater.targets import open_target
from hiwater.targets.base import Verified

from .dbutil import PG_URL, pg_connect

NOW = "2025-06-01T00:00:00Z"


def write(folder, records):
    folder.mkdir(exist_ok=True)
    (folder / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def records(n=40):
    return [{"id": i, "name": f"n{i}", "modified_at": f"2025-01-01T{i // 60:02d}:{i % 60:02d}:00"} for i in range(n)]


@pytest.fixture
def loaded(hw, tmp_path, target_url):
    src = tmp_path / "landing"
    write(src, records())
    r = hw("load", "--input", str(src), "--target", target_url, "--table", "events", "--now", NOW)
    assert r.code == 0, r.err
    return src, target_url


def status_row(hw, url, stream="events"):
    r = hw("status", "--target", url, "--json")
    assert r.code == 0, r.err
    return next(row for row in r.json if row["stream"] == stream)


def check(hw, url, *extra):
    return hw("check", "--target", url, "--verified", "1d", *extra)


def meta_tables(url) -> set:
    """The ``_hiwater_*`` tables of a SQL target (Delta: the lake's folders)."""
    kind = url.split(":", 1)[0]
    if kind == "sqlite":
        con = sqlite3.connect(url.split("sqlite:///", 1)[1])
        try:
            return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE name LIKE '\\_hiwater\\_%' ESCAPE '\\'")}
        finally:
            con.close()
    if kind == "duckdb":
        import duckdb
        con = duckdb.connect(url.split("duckdb:///", 1)[1])
        try:
            return {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables"
                                              " WHERE table_name LIKE '\\_hiwater\\_%' ESCAPE '\\'").fetchall()}
        finally:
            con.close()
    if kind == "delta":
        import pathlib
        return {p.name for p in pathlib.Path(url.split("delta://", 1)[1]).iterdir()}
    schema = url.split("schema=", 1)[1]
    with pg_connect(PG_URL) as con:
        return {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
                                          " AND table_name LIKE '\\_hiwater\\_%%'", (schema,)).fetchall()}


def drop_verify_table(url) -> None:
    """Make the target look like one an older hiwater made: no ``_hiwater_verify`` table."""
    kind = url.split(":", 1)[0]
    if kind == "sqlite":
        con = sqlite3.connect(url.split("sqlite:///", 1)[1])
        con.execute("DROP TABLE _hiwater_verify")
        con.commit()
        con.close()
    elif kind == "duckdb":
        import duckdb
        con = duckdb.connect(url.split("duckdb:///", 1)[1])
        con.execute("DROP TABLE _hiwater_verify")
        con.close()
    else:
        with pg_connect(PG_URL) as con:
            con.execute(f'DROP TABLE "{url.split("schema=", 1)[1]}"._hiwater_verify')


def test_verify_is_recorded_and_status_and_check_verified_read_it(hw, loaded):
    src, url = loaded
    row = status_row(hw, url)
    assert row["verify"] is None and row["verified"] == "never"
    r = check(hw, url)
    assert r.code == 1 and "[events] never verified" in r.err

    r = hw("verify", "--target", url, "--input", str(src))
    assert r.code == 0, r.err
    row = status_row(hw, url)
    doc = row["verify"]
    assert doc["outcome"] == "equal" and doc["equal"] is True and doc["repaired"] is False
    assert doc["verified_through"] == "2025-01-01T00:39:00+00:00"
    assert doc["windows"]["checked"] == doc["windows"]["equal"] > 0 and doc["windows"]["differing"] == 0
    assert set(doc) >= {"verified_at", "since", "until", "by", "content", "keys", "sample", "rounds",
                        "bytes_fetched", "duration_s"}
    assert row["verified"].endswith("ago, equal") and row["verify_age_s"] < 600
    assert "ago, equal" in hw("status", "--target", url).out  # the table's column
    r = check(hw, url)
    assert r.code == 0, r.err

    # the same verify, judged two days later: too old
    later = (dt.datetime.fromisoformat(doc["verified_at"]) + dt.timedelta(days=2)).isoformat()
    r = check(hw, url, "--now", later)
    assert r.code == 1 and "[events] last verify 2d ago (equal), older than --verified 1d" in r.err

    # a record deleted at the source, one updated in place below the watermark: the verify differs
    recs = records()
    del recs[7]
    recs[3] = {**recs[3], "modified_at": "2025-01-01T00:30:30"}
    write(src, recs)
    r = hw("verify", "--target", url, "--input", str(src), "--json")
    assert r.code == 1
    doc = status_row(hw, url)["verify"]
    assert doc["outcome"] == "differs" and doc["keys"]["extra"] == 1 and doc["keys"]["stale"] == 1
    assert doc["sample"]["extra"] == [{"key": [7], "source": None, "target": "2025-01-01T00:07:00+00:00"}]
    assert "ago, differs" in status_row(hw, url)["verified"]
    r = check(hw, url)
    assert r.code == 1
    assert "[events] last verify" in r.err and "differs: 1 extra, 1 stale" in r.err


def test_an_old_verify_recorded_through_the_target_fails_on_its_age(hw, loaded):
    src, url = loaded
    assert hw("verify", "--target", url, "--input", str(src)).code == 0
    doc = status_row(hw, url)["verify"]
    old = dict(doc, verified_at="2020-01-01T00:00:00+00:00")
    with open_target(target=url) as tgt, tgt.begin("events", "events", ("id",)) as tx:
        tx.record(Verified("events", old))
    assert status_row(hw, url)["verify"]["verified_at"] == "2020-01-01T00:00:00+00:00"  # the latest replaces it
    r = check(hw, url)
    assert r.code == 1 and "older than --verified 1d" in r.err
    assert check(hw, url, "--now", "2020-01-01T12:00:00Z").code == 0


def test_a_verify_in_a_discarded_transaction_records_nothing(hw, loaded):
    _, url = loaded
    with open_target(target=url) as tgt, tgt.begin("events", "events", ("id",), discard=True) as tx:
        tx.record(Verified("events", {"verified_at": "2025-01-01T00:00:00+00:00", "outcome": "equal"}))
    assert status_row(hw, url)["verify"] is None


def test_dropping_the_stream_forgets_its_verify(hw, loaded):
    src, url = loaded
    assert hw("verify", "--target", url, "--input", str(src)).code == 0
    assert status_row(hw, url)["verify"] is not None
    assert hw("stream", "drop", "events", "--target", url).code == 0
    assert hw("load", "--input", str(src), "--target", url, "--table", "events", "--now", NOW).code == 0
    assert status_row(hw, url)["verified"] == "never"


def test_a_target_made_before_verify_was_recorded_reads_never_and_gets_nothing(hw, loaded, target_kind):
    src, url = loaded
    if target_kind != "delta":
        drop_verify_table(url)
    before = meta_tables(url)
    assert "_hiwater_verify" not in before
    row = status_row(hw, url)
    assert row["verify"] is None and row["verified"] == "never"
    r = check(hw, url)
    assert r.code == 1 and "never verified" in r.err
    assert meta_tables(url) == before  # reading made nothing
    # the next verify (a writing command) records it
    assert hw("verify", "--target", url, "--input", str(src)).code == 0
    assert status_row(hw, url)["verify"]["outcome"] == "equal"

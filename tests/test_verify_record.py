"""The recorded verify result from the user's side on a SQLite target: a project (its streams'
``verify = "…"`` defaults, ``check --verified --project``), a bucketed stream (recorded once,
under its own name), the Python API, ``check`` without ``--verified`` unchanged, and the
``verified`` column on a narrow terminal. Every target: tests/db/test_verify_record_db.py."""

from __future__ import annotations

import json
import sqlite3

import hiwater
from conftest import NOW, rec, write_jsonl


def project(tmp_path, monkeypatch, extra=""):
    write_jsonl(tmp_path / "landing" / "a.jsonl", [rec(i, f"10:{i:02d}") for i in range(30)])
    write_jsonl(tmp_path / "other" / "a.jsonl", [rec(i, f"11:{i:02d}") for i in range(5)])
    (tmp_path / "hiwater.toml").write_text(
        '[defaults]\ndb = "t.db"\n\n[streams.events]\ninput = "landing"\nverify = "--by 10m"\n' + extra
        + '\n[streams.other]\ninput = "other"\n')
    monkeypatch.chdir(tmp_path)


def test_a_project_verify_uses_its_defaults_and_check_verified_judges_each_stream(tmp_path, monkeypatch, hw):
    project(tmp_path, monkeypatch)
    assert hw("run", "--project", "hiwater.toml").code == 0
    r = hw("verify", "events", "--project", "hiwater.toml")
    assert r.code == 0, r.err
    rows = {row["stream"]: row for row in hw("status", "--project", "hiwater.toml", "--json").json}
    assert rows["events"]["verify"]["by"] == "10m"  # the stream's verify = "--by 10m"
    assert rows["events"]["verified"].endswith("ago, equal") and rows["other"]["verified"] == "never"
    r = hw("check", "--project", "hiwater.toml", "--verified", "12h")
    assert r.code == 1
    assert r.err.strip() == "error: [other] never verified"  # one line per failing stream, the others pass
    assert {x["stream"]: x["verdict"] for x in json.loads(hw("check", "--project", "hiwater.toml",
                                                                "--verified", "12h", "--json").out)} == \
        {"events": "ok", "other": "error"}
    assert hw("check", "events", "--project", "hiwater.toml", "--verified", "12h").code == 0
    assert hw("verify", "--project", "hiwater.toml").code == 0
    assert hw("check", "--project", "hiwater.toml", "--verified", "12h").code == 0
    assert hw("check", "--project", "hiwater.toml", "--verified", "soon").code == 2


def test_check_verified_goes_with_the_freshness_limits(tmp_path, monkeypatch, hw):
    project(tmp_path, monkeypatch, 'error-after = "1h"\n')
    assert hw("run", "--project", "hiwater.toml").code == 0
    assert hw("verify", "--project", "hiwater.toml").code == 0
    # without --verified, check is what it was: a stream without a limit is a usage error
    r = hw("check", "--project", "hiwater.toml")
    assert r.code == 2 and "no freshness limit for stream(s) other" in r.err
    r = hw("check", "events", "--project", "hiwater.toml", "--json")
    assert r.code == 0 and set(r.json[0]) == {"stream", "by", "age_s", "age", "warn_after", "error_after",
                                              "verdict", "watermark", "last_outcome", "last_success_at"}
    # with it, the stream with a limit is judged on both, the other on its verify alone
    rows = {x["stream"]: x for x in hw("check", "--project", "hiwater.toml", "--verified", "1d", "--json").json}
    assert rows["events"]["freshness"] == "ok" and rows["events"]["verdict"] == "ok"
    assert rows["other"]["freshness"] is None and rows["other"]["verdict"] == "ok"
    later = hw("check", "--project", "hiwater.toml", "--verified", "3d", "--now", "2099-01-01T00:00:00Z")
    assert later.code == 1
    assert "[events] load age" in later.err and "past error-after 1h" in later.err
    assert "[events] last verify" in later.err and "older than --verified 3d" in later.err
    assert "[other] last verify" in later.err


def test_the_python_api_records_and_status_rows_carry_it(tmp_path):
    src = write_jsonl(tmp_path / "in" / "a.jsonl", [rec(i, f"10:{i:02d}") for i in range(20)])
    db = str(tmp_path / "t.db")
    hiwater.load(str(src.parent), db=db, table="events", now=NOW)
    assert hiwater.status(db=db)[0]["verify"] is None
    [result] = hiwater.verify(db=db, input=str(src.parent))
    [row] = hiwater.status(db=db)
    assert row["verify"]["verified_at"] == result["verified_at"]
    assert row["verify"]["verified_through"] == result["verified_through"] == "2025-01-15T10:19:00+00:00"
    assert row["verify"]["keys"] == result["keys"] and "differing_windows" not in row["verify"]
    [c] = hiwater.check(db=db, verified="1d")
    assert c["verdict"] == "ok" and c["verify_problem"] is None


def test_the_recorded_sample_is_small(tmp_path):
    folder = tmp_path / "in"
    recs = [rec(i, f"10:{i:02d}") for i in range(40)]
    write_jsonl(folder / "a.jsonl", recs)
    db = str(tmp_path / "t.db")
    hiwater.load(str(folder), db=db, table="events", now=NOW)
    write_jsonl(folder / "a.jsonl", recs[20:])  # 20 deleted at the source: 20 extra
    [result] = hiwater.verify(db=db, input=str(folder))
    doc = hiwater.status(db=db)[0]["verify"]
    assert result["keys"]["extra"] == doc["keys"]["extra"] == 20 and len(result["sample"]["extra"]) == 10
    assert len(doc["sample"]["extra"]) == 3 and doc["outcome"] == "differs" and not doc["repaired"]
    hiwater.verify(db=db, input=str(folder), repair=True, prune_extra=True)
    doc = hiwater.status(db=db)[0]["verify"]
    assert doc["outcome"] == "differs" and doc["repaired"] is True  # what it found, and that it repaired it
    assert hiwater.status(db=db)[0]["verified"].endswith("ago, repaired")
    assert hiwater.check(db=db, verified="1d")[0]["verdict"] == "ok"


def test_a_bucketed_stream_is_verified_and_recorded_as_one_stream(tmp_path, hw):
    folder = tmp_path / "in"
    write_jsonl(folder / "a.jsonl", [rec(i, f"10:{i:02d}") for i in range(30)])
    db = str(tmp_path / "b.db")
    hiwater.load(str(folder), db=db, stream="orders", table="orders", buckets=2, now=NOW)
    [result] = hiwater.verify(["orders"], db=db, input=str(folder))
    assert result["stream"] == "orders" and result["equal"] and result["windows"]["checked"] > 0
    rows = {r["stream"]: r for r in hiwater.status(db=db)}
    assert rows["orders"]["verify"]["outcome"] == "equal"
    assert rows["orders#0/2"]["verified"] is None and rows["orders#1/2"]["verified"] is None
    assert hw("check", "--db", db, "--verified", "1d").code == 0


def test_status_drops_the_verified_column_first_on_a_narrow_terminal(tmp_path, hw, monkeypatch):
    src = write_jsonl(tmp_path / "in" / "a.jsonl", [rec(i, f"10:{i:02d}") for i in range(3)])
    db = str(tmp_path / "t.db")
    hiwater.load(str(src.parent), db=db, table="events", now=NOW)
    hiwater.verify(db=db, input=str(src.parent))
    import sys
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "250")
    assert "ago, equal" in hw("status", "--db", db).out
    monkeypatch.setenv("COLUMNS", "120")
    out = hw("status", "--db", db).out
    assert "ago, equal" not in out and "verified" in out  # the note names the column left out


def test_a_result_that_cannot_be_recorded_is_still_the_result_with_a_warning(tmp_path, hw):
    src = write_jsonl(tmp_path / "in" / "a.jsonl", [rec(i, f"10:{i:02d}") for i in range(5)])
    db = str(tmp_path / "t.db")
    hiwater.load(str(src.parent), db=db, table="events", now=NOW)
    con = sqlite3.connect(db)
    con.execute("CREATE TRIGGER refuse BEFORE INSERT ON _hiwater_verify BEGIN SELECT RAISE(FAIL, 'refused'); END")
    con.commit()
    con.close()
    r = hw("verify", "--db", db, "--input", str(src.parent), "--json")
    assert r.code == 0 and r.json[0]["equal"] and r.json[0]["recorded"] is False
    assert "warning: [events] the verify result was not recorded:" in r.err and "refused" in r.err
    assert hiwater.status(db=db)[0]["verified"] == "never"

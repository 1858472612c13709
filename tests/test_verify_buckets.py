"""``hiwater verify`` of a bucketed stream (docs/scale-out.md) from the user's side: the stream is
named by its own name, differences are found across its buckets, ``--repair`` backfills through
the buckets (not as a plain stream beside them), every bucket keeps its watermark, and the next
``load --buckets 4`` finds nothing to do. SQLite target; the buckets run one after another there."""

from __future__ import annotations

import sqlite3

from conftest import rec, sqlite_dict, write_jsonl

LOAD = ["load", "--table", "orders", "--stream", "orders", "--key", "id", "--cursor", "modified_at",
        "--buckets", "4", "--now", "2025-06-01T00:00:00Z"]


def states(db) -> dict:
    return sqlite_dict(db, "SELECT stream, watermark FROM _hiwater_state")


def target(db) -> dict:
    return sqlite_dict(db, "SELECT id, _hiwater_cursor FROM orders")


def test_verify_and_repair_a_bucketed_stream_by_its_own_name(tmp_path, hw):
    src = tmp_path / "in"
    write_jsonl(src / "a.jsonl", [rec(i, f"1{i // 60}:{i % 60:02d}") for i in range(200)])
    db = str(tmp_path / "t.db")
    assert hw(*LOAD, "--input", src, "--db", db).code == 0
    loaded, wms = target(db), states(db)
    assert sorted(wms) == [f"orders#{b}/4" for b in range(4)]
    con = sqlite3.connect(db)
    con.execute("DELETE FROM orders WHERE id = 50")                                  # missing
    con.execute("UPDATE orders SET _hiwater_cursor = _hiwater_cursor - 1 WHERE id = 120")  # stale
    con.commit()
    con.close()

    r = hw("verify", "orders", "--db", db, "--input", src, "--json")
    assert r.code == 1, r.err
    [res] = r.json
    assert res["stream"] == "orders" and res["keys"]["missing"] == 1 and res["keys"]["stale"] == 1
    assert [s["key"] for s in res["sample"]["missing"]] == [[50]] and [s["key"] for s in res["sample"]["stale"]] == [[120]]
    c = hw("check", "--db", db, "--verified", "1d")
    assert c.code == 1 and "orders" in c.err and "differ" in c.err

    r = hw("verify", "orders", "--db", db, "--input", src, "--repair", "--json")
    assert r.code == 0, r.err   # the repair left nothing to fix
    [res] = r.json
    assert res["repaired"] is True and res["keys"]["missing"] == res["keys"]["stale"] == 1  # (what it found)
    after = res["repair"]["after"]
    assert after["equal"] and after["keys"]["missing"] == after["keys"]["stale"] == 0, res["repair"]
    assert target(db) == loaded                       # both rows back as the load wrote them
    assert states(db) == wms                          # no plain "orders" beside the buckets, watermarks kept
    assert hw("check", "--db", db, "--verified", "1d").code == 0   # repaired

    rerun = hw(*LOAD, "--input", src, "--db", db)
    assert rerun.code == 0, rerun.err
    assert rerun.json["loaded"] == 0 and target(db) == loaded and states(db) == wms
    r = hw("verify", "orders", "--db", db, "--input", src, "--json")
    assert r.code == 0 and r.json[0]["equal"] and r.json[0]["stream"] == "orders"
    assert hw("check", "--db", db, "--verified", "1d").code == 0

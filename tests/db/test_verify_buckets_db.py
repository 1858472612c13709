"""``verify --repair`` of a bucketed stream on PostgreSQL (its buckets load in parallel processes)
and DuckDB, from the user's side: the stream's own name, both planted rows repaired through the
buckets, every bucket's watermark kept, the next ``load --buckets 4`` loads nothing
(tests/test_verify_buckets.py: the same on SQLite, with check --verified)."""

from __future__ import annotations

import json

import pytest

from .conftest import target_for
from .dbutil import pg_connect

LOAD = ["load", "--table", "orders", "--stream", "orders", "--key", "id", "--cursor", "modified_at",
        "--buckets", "4", "--now", "2025-06-01T00:00:00Z"]


def sql(url, statement):
    if url.startswith("duckdb"):
        import duckdb
        con = duckdb.connect(url.split("duckdb:///", 1)[1])
        try:
            return con.execute(statement).fetchall() if statement.startswith("SELECT") else con.execute(statement)
        finally:
            con.close()
    base, schema = url.split("?schema=")
    with pg_connect(base) as con:
        con.execute(f'SET search_path TO "{schema}"')
        cur = con.execute(statement)
        rows = cur.fetchall() if statement.startswith("SELECT") else None
        con.commit()
        return rows


@pytest.mark.parametrize("kind", ["postgresql", "duckdb"])
def test_repair_a_bucketed_stream(kind, hw, tmp_path, request):
    url = target_for(kind, tmp_path, request)
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.jsonl").write_text("".join(
        json.dumps({"id": i, "name": f"n{i}", "modified_at": f"2025-01-01T1{i // 60}:{i % 60:02d}:00Z"}) + "\n"
        for i in range(200)))
    assert hw(*LOAD, "--input", src, "--target", url).code == 0
    table = "SELECT id, _hiwater_cursor FROM orders ORDER BY id"
    state = "SELECT stream, watermark FROM _hiwater_state ORDER BY stream"
    loaded, wms = sql(url, table), sql(url, state)
    assert [s for s, _ in wms] == [f"orders#{b}/4" for b in range(4)]
    sql(url, "DELETE FROM orders WHERE id = 50")
    sql(url, "UPDATE orders SET _hiwater_cursor = _hiwater_cursor - 1 WHERE id = 120")

    r = hw("verify", "orders", "--target", url, "--input", src, "--repair", "--json")
    assert r.code == 0, r.err
    [res] = r.json
    assert res["stream"] == "orders" and res["repaired"] is True
    assert [s["key"] for s in res["sample"]["missing"]] == [[50]] and [s["key"] for s in res["sample"]["stale"]] == [[120]]
    assert sql(url, table) == loaded and sql(url, state) == wms
    rerun = hw(*LOAD, "--input", src, "--target", url)
    assert rerun.code == 0 and rerun.json["loaded"] == 0, rerun.err
    assert sql(url, table) == loaded and sql(url, state) == wms
    assert hw("check", "--target", url, "--verified", "1d").code == 0

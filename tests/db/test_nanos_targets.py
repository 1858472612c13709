"""Issue 22 item 2 on every target: a nanosecond cursor from Parquet, Arrow, pandas, JSON Lines
and CSV is compared exactly and stored losslessly (SQLite, PostgreSQL and Delta keep its text,
DuckDB a TIMESTAMP_NS; the hidden ``_hiwater_cursor`` holds the integer nanoseconds), and a
``timestamp[ns]`` value column reads back with its nanoseconds."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import sqlite3

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hiwater

from .dbutil import delta_frame, pg_connect


NOW = "2025-06-01T00:00:00Z"
BASE_NS = 1736935200_000000000  # 2025-01-15T10:00:00Z
SOURCES = ["parquet", "arrow", "pandas", "jsonl", "csv"]


def text(n: int) -> str:
    return f"2025-01-15T10:00:00.000000{n:03d}"


def to_ns(v) -> int:
    """A cursor read back (ISO text, with or without offset) as nanoseconds since the epoch."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)?", v)
    assert m, v
    base = dt.datetime.fromisoformat(m.group(1).replace(" ", "T") + (m.group(3) or "+00:00").replace("Z", "+00:00"))
    secs = int((base - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)).total_seconds())
    return secs * 1_000_000_000 + int((m.group(2) or "").ljust(9, "0"))


def write(kind: str, tmp_path, name: str, records: list):
    """The records ``{"id", "at" (ns past BASE)}`` in one source format: a path or an in-memory table."""
    ids = [r["id"] for r in records]
    stamps = pa.array([BASE_NS + r["at"] for r in records], pa.timestamp("ns"))
    tbl = pa.table({"id": pa.array(ids, pa.int64()), "modified_at": stamps, "seen": stamps})
    if kind == "parquet":
        path = tmp_path / f"{name}.parquet"
        pq.write_table(tbl, path)
        return str(path)
    if kind == "arrow":
        return tbl
    if kind == "pandas":
        return tbl.to_pandas()
    rows = [{"id": r["id"], "modified_at": text(r["at"]), "seen": text(r["at"])} for r in records]
    if kind == "jsonl":
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return str(path)
    path = tmp_path / f"{name}.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, ["id", "modified_at", "seen"])
        w.writeheader()
        w.writerows(rows)
    return str(path)


def stored(url: str, table: str) -> dict:
    """``{id: (cursor column as ns, hidden _hiwater_cursor, seen as ns)}`` read straight from the target."""
    kind = url.split(":", 1)[0]
    if kind == "sqlite":
        con = sqlite3.connect(url.split("sqlite:///", 1)[1])
        try:
            rows = con.execute(f'SELECT id, modified_at, _hiwater_cursor, seen FROM "{table}"').fetchall()
        finally:
            con.close()
    elif kind == "duckdb":
        import duckdb
        con = duckdb.connect(url.split("duckdb:///", 1)[1])
        try:
            assert con.execute("SELECT data_type FROM duckdb_columns() WHERE table_name = ? AND column_name = "
                               "'modified_at'", [table]).fetchone()[0] == "TIMESTAMP_NS"
            rows = con.execute(f'SELECT id, epoch_ns(modified_at), _hiwater_cursor, seen FROM "{table}"').fetchall()
        finally:
            con.close()
    elif kind == "delta":
        rows = [(r["id"], r["modified_at"], r["_hiwater_cursor"], r["seen"]) for r in delta_frame(url, table).to_dicts()]
    else:
        base, schema = url.split("?schema=")
        con = pg_connect(base)
        try:
            rows = con.execute(f'SELECT id, modified_at, _hiwater_cursor, seen FROM "{schema}"."{table}"').fetchall()
        finally:
            con.close()
    return {i: (c if isinstance(c, int) else to_ns(c), h, to_ns(s)) for i, c, h, s in rows}


def load(src, url: str, **kw):
    return hiwater.load(src, target=url, table="events", stream="events", key="id", cursor="modified_at",
                        now=NOW, **kw)


@pytest.mark.parametrize("source", SOURCES)
def test_nanosecond_cursors_are_exact_on_every_target(source, target_url, tmp_path):
    first = write(source, tmp_path, "a", [{"id": 1, "at": 1}, {"id": 1, "at": 2}, {"id": 2, "at": 500}])
    s = load(first, target_url)
    assert (s.counts.inserted, s.counts.unchanged, s.counts.rejected) == (2, 1, 0)
    assert s.new_watermark.startswith(text(500))
    assert stored(target_url, "events") == {1: (BASE_NS + 2,) * 3, 2: (BASE_NS + 500,) * 3}
    [st] = hiwater.state_show(target=target_url)
    assert st["kind"] == "timestamp_ns" and st["watermark_value"] == BASE_NS + 500

    again = load(first, target_url)
    assert (again.loaded, again.counts.rejected) == (0, 0)

    # one nanosecond below the watermark is late; one above it is new; a newer version replaces
    later = write(source, tmp_path, "b", [{"id": 3, "at": 499}, {"id": 4, "at": 501}, {"id": 1, "at": 502}])
    s = load(later, target_url)
    assert (s.counts.late, s.counts.inserted, s.counts.updated) == (1, 1, 1)
    got = stored(target_url, "events")
    assert sorted(got) == [1, 2, 4]
    assert got[1] == (BASE_NS + 502,) * 3 and got[4] == (BASE_NS + 501,) * 3
    assert s.new_watermark.startswith(text(502))

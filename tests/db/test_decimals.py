"""Decimals keep the precision the source declares, never the first batch's (issue 22 item 3).

A PostgreSQL ``numeric(12,2)`` or MariaDB ``DECIMAL(12,2)`` column loaded into DuckDB or Delta used
to become ``DECIMAL(4,2)`` from a first batch of small amounts: the first larger amount made its
whole batch invalid and the stream was stuck. Now the target column is declared as the source's;
where the source declares nothing (Python ``Decimal`` values, a bare ``numeric``), the column keeps
any precision. Each case: a first run of small amounts, a second of large ones, all loaded, read
back equal to what was sent.
"""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest

import hiwater

from .conftest import target_for
from .dbutil import column_types, read_table

SMALL = [(1, "2025-01-01 00:00:00", Decimal("1.50")), (2, "2025-01-01 00:00:00", Decimal("2.25"))]
LARGE = [(3, "2025-01-02 00:00:00", Decimal("1234567890.12")), (4, "2025-01-02 00:00:00", Decimal("-9999999999.99")),
         (5, "2025-01-02 00:00:00", Decimal("3.10"))]
SENT = {i: a for i, _, a in SMALL + LARGE}


def _check(url: str, summaries) -> None:
    assert [s.counts.rejected for s in summaries] == [0, 0]
    rows = {r["id"]: r["amt"] for r in read_table(url, "amounts")}
    assert {i: Decimal(str(v)) for i, v in rows.items()} == SENT
    assert all(str(v) == str(SENT[i]) for i, v in rows.items() if isinstance(v, (str, Decimal)))  # 1.50 stays 1.50


@pytest.mark.parametrize("kind", ["duckdb", "delta"])
def test_postgresql_numeric_12_2_keeps_its_precision(kind, pg, pg_schema, tmp_path, request):
    url = target_for(kind, tmp_path, request)
    pg.execute("CREATE TABLE amounts (id int PRIMARY KEY, t timestamptz NOT NULL, amt numeric(12,2))")
    runs = []
    for rows in (SMALL, LARGE):
        for r in rows:
            pg.execute("INSERT INTO amounts VALUES (%s, %s, %s)", r)
        runs.append(hiwater.load(source_url=f"postgresql://postgres@127.0.0.1:5432/test?schema={pg_schema}",
                                 source_table="amounts", target=url, key="id", cursor="t", table="amounts"))
    _check(url, runs)
    t = column_types(url, "amounts")["amt"]
    assert "12" in t and "2" in t, t  # DECIMAL(12,2) / Decimal(precision=12, scale=2), as declared


@pytest.mark.parametrize("kind", ["duckdb", "delta"])
def test_mariadb_decimal_12_2_keeps_its_precision(kind, mysql, mysql_db, tmp_path, request):
    url = target_for(kind, tmp_path, request)
    with mysql.cursor() as cur:
        cur.execute("CREATE TABLE amounts (id int PRIMARY KEY, t datetime NOT NULL, amt DECIMAL(12,2),"
                    " pos DECIMAL(12,2) UNSIGNED)")
    runs = []
    for rows in (SMALL, LARGE):
        with mysql.cursor() as cur:
            for i, t, a in rows:
                cur.execute("INSERT INTO amounts VALUES (%s, %s, %s, %s)", (i, t, a, abs(a)))
        runs.append(hiwater.load(source_url=f"mysql://root@127.0.0.1:3306/{mysql_db}", source_table="amounts",
                                 target=url, key="id", cursor="t", table="amounts"))
    _check(url, runs)
    for col in ("amt", "pos"):
        t = column_types(url, "amounts")[col]
        assert "12" in t and "2" in t, (col, t)


@pytest.mark.parametrize("kind", ["duckdb", "delta", "sqlite", "postgresql"])
def test_python_decimals_without_a_declared_precision_grow(kind, tmp_path, request):
    url = target_for(kind, tmp_path, request)
    runs = [hiwater.load([{"id": i, "t": t + "Z", "amt": a} for i, t, a in rows], target=url, key="id", cursor="t",
                         table="amounts") for rows in (SMALL, LARGE)]
    _check(url, runs)


@pytest.mark.parametrize("kind", ["duckdb", "delta"])
def test_a_wider_decimal_batch_stores_the_values_that_fit(kind, tmp_path, request):
    """An Arrow decimal(4,2) column, then a batch typed decimal(12,2): its values that fit the
    column are stored, the one that does not is refused by name (never the whole batch)."""
    url = target_for(kind, tmp_path, request)
    ts = pa.array([0, 0], pa.timestamp("us", "UTC"))
    first = pa.table({"id": [1, 2], "t": ts, "amt": pa.array([Decimal("1.50"), Decimal("2.25")], pa.decimal128(4, 2))})
    later = pa.table({"id": [3, 4], "t": pa.array([1, 1], pa.timestamp("us", "UTC")),
                      "amt": pa.array([Decimal("3.10"), Decimal("1234567890.12")], pa.decimal128(12, 2))})
    hiwater.load(first, target=url, key="id", cursor="t", table="amounts")
    s = hiwater.load(later, target=url, key="id", cursor="t", table="amounts")
    assert (s.counts.loaded, s.counts.rejected) == (1, 1)
    assert {r["id"]: Decimal(str(r["amt"])) for r in read_table(url, "amounts")}[3] == Decimal("3.10")
    (q,) = hiwater.quarantine_list(target=url)
    assert "'amt'" in q["detail"] and "decimal(4,2)" in q["detail"]

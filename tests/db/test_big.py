"""A 1,000,000-row source table loaded in bounded memory (slow: run with ``-m slow``).

The load runs as a subprocess; its peak RSS comes from ``wait4`` and must stay under
600 MB whatever the table's size: the source streams batches through a server-side
cursor and the loader holds a couple of batches at a time. A second run reads only
the window.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

from .conftest import target_for
from .dbutil import MYSQL_URL, PG_URL, fresh_name, mysql_connect, pg_connect, server_or_skip

pytestmark = pytest.mark.slow
N = 1_000_000
RSS_LIMIT_MB = 600
NOW = "2026-01-01T00:00:00Z"


def measured(cmd) -> tuple[int, dict, float, float]:
    """Run ``cmd``; return (exit code, summary, seconds, peak RSS in MB, from wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(p.pid, 0)
        seconds = time.monotonic() - t0
        p.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        summary = json.loads(out.read()) if code == 0 else {"error": err.read().decode()}
    return code, summary, seconds, usage.ru_maxrss / 1024


@pytest.fixture(scope="module")
def pg_big():
    admin = server_or_skip("PostgreSQL", PG_URL, pg_connect)
    schema = fresh_name()
    admin.execute(f'CREATE SCHEMA "{schema}"')
    admin.execute(f"""CREATE TABLE "{schema}".big AS SELECT g::bigint AS id, 'name-' || g AS name,
        (g % 1000)::numeric(12, 2) / 7 AS amount,
        timestamptz '2025-01-01 00:00:00+00' + g * interval '317 milliseconds' AS modified_at,
        md5(g::text) AS payload FROM generate_series(1, {N}) AS g""")
    admin.execute(f'ALTER TABLE "{schema}".big ADD PRIMARY KEY (id)')
    admin.execute(f'CREATE INDEX ON "{schema}".big (modified_at, id)')
    admin.execute(f'ANALYZE "{schema}".big')
    yield schema
    admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
    admin.close()


@pytest.mark.parametrize("kind", ["postgresql", "sqlite", "duckdb"])
def test_a_million_postgres_rows_in_bounded_memory(pg_big, kind, tmp_path, request):
    url = target_for(kind, tmp_path, request)
    cmd = [sys.executable, "-m", "hiwater.cli", "load", "--source", PG_URL, "--source-table", f"{pg_big}.big",
           "--target", url, "--table", "big", "--now", NOW, "--details", "--progress", "never"]
    code, s, seconds, rss = measured(cmd)
    print(f"\n1M rows postgresql -> {kind}: {seconds:.1f}s, peak RSS {rss:.0f} MB")
    assert code == 0, s
    assert (s["loaded"], s["total_in_target"]) == (N, N)
    assert rss < RSS_LIMIT_MB
    code, s, seconds, _ = measured(cmd)
    assert code == 0 and s["source_records"] == 1 and s["unchanged"] == 1  # only the row at the watermark
    print(f"   second run (window only): {seconds:.1f}s")


def test_a_million_mariadb_rows_in_bounded_memory(tmp_path):
    admin = server_or_skip("MariaDB", MYSQL_URL, mysql_connect)
    db = fresh_name()
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{db}`")
            cur.execute(f"CREATE TABLE `{db}`.d (n int)")
            cur.execute(f"INSERT INTO `{db}`.d VALUES (0),(1),(2),(3),(4),(5),(6),(7),(8),(9)")
            cur.execute(f"""CREATE TABLE `{db}`.big (id bigint PRIMARY KEY, name varchar(40), amount decimal(12,2),
                modified_at datetime(6), payload char(32), KEY (modified_at, id))""")
            cur.execute(f"""INSERT INTO `{db}`.big
                SELECT n, concat('name-', n), (n % 1000) / 7,
                       timestamp '2025-01-01 00:00:00' + interval n * 317000 microsecond, md5(n)
                FROM (SELECT 1 + a.n + 10*b.n + 100*c.n + 1000*e.n + 10000*f.n + 100000*g.n AS n
                      FROM `{db}`.d a, `{db}`.d b, `{db}`.d c, `{db}`.d e, `{db}`.d f, `{db}`.d g) AS s""")
        url = f"sqlite:///{tmp_path / 'big.db'}"
        cmd = [sys.executable, "-m", "hiwater.cli", "load", "--source", f"{MYSQL_URL.rsplit('/', 1)[0]}/{db}",
               "--source-table", "big", "--target", url, "--table", "big", "--now", NOW, "--details",
               "--progress", "never"]
        code, s, seconds, rss = measured(cmd)
        print(f"\n1M rows mariadb -> sqlite: {seconds:.1f}s, peak RSS {rss:.0f} MB")
        assert code == 0, s
        assert (s["loaded"], s["total_in_target"]) == (N, N) and rss < RSS_LIMIT_MB
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
        admin.close()

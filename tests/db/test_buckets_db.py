"""Bucketed streams on the real servers: the SQL bucket predicate agrees with the Python hash on
PostgreSQL, MariaDB, DuckDB and SQLite; the union of the buckets equals one run (every column
compared) for file and SQL sources into SQLite and PostgreSQL, with the local and the Dask
executors; a Dask worker killed mid-run leaves its bucket all-or-nothing and a rerun completes.

``HIWATER_BUCKETS_ROWS`` sets the size of the big PostgreSQL run (default 1,000,000 under
``HIWATER_RELIABILITY=full``, else 200,000)."""

from __future__ import annotations

import os
import sqlite3

import pytest

import hiwater
from hiwater.executor import ENV_FAULT
from hiwater.keyhash import bucket_of, bucket_sql
from hiwater.errors import PipelineError

from conftest import NOW, write_jsonl

from .dbutil import PG_URL, fresh_name, read_table

KEYS = [1, 2, 3, 7, 42, 1000, 99999, 2**40, -5]
TEXTS = ["a", "b", "007", "7", "é", "日本", "", "x y", "O'Neil"]


def expected(n: int, b: int, rows) -> list:
    return sorted(r[0] for r in rows if bucket_of(r[1:], n) == b)


def test_the_sql_predicate_picks_the_python_buckets_on_every_database(pg, mysql, tmp_path):
    rows = [(i, k, t) for i, (k, t) in enumerate(zip(KEYS, TEXTS))]
    pg.execute("CREATE TABLE s (rid int, k bigint, t text)")
    with pg.cursor() as cur:
        cur.executemany("INSERT INTO s VALUES (%s, %s, %s)", rows)
    with mysql.cursor() as cur:
        cur.execute("CREATE TABLE s (rid int, k bigint, t varchar(20)) CHARACTER SET utf8mb4")
        cur.executemany("INSERT INTO s VALUES (%s, %s, %s)", rows)
    import duckdb
    dk = duckdb.connect(str(tmp_path / "s.duckdb"))
    dk.execute("CREATE TABLE s (rid int, k bigint, t varchar)")
    dk.executemany("INSERT INTO s VALUES (?, ?, ?)", rows)
    lite = sqlite3.connect(tmp_path / "s.db")
    lite.execute("CREATE TABLE s (rid int, k int, t text)")
    lite.executemany("INSERT INTO s VALUES (?, ?, ?)", rows)
    from hiwater.keyhash import sqlite_bucket
    lite.create_function("hiwater_bucket", -1, sqlite_bucket, deterministic=True)
    q = {"postgresql": ('"k"', '"t"'), "mysql": ("`k`", "`t`"), "duckdb": ('"k"', '"t"'), "sqlite": ('"k"', '"t"')}

    def run(dialect, sql):
        if dialect == "postgresql":
            return [r[0] for r in pg.execute(sql).fetchall()]
        if dialect == "mysql":
            with mysql.cursor() as cur:
                cur.execute(sql)
                return [r[0] for r in cur.fetchall()]
        if dialect == "duckdb":
            return [r[0] for r in dk.execute(sql).fetchall()]
        return [r[0] for r in lite.execute(sql).fetchall()]

    for n in (2, 3, 4):
        for b in range(n):
            for cols, data in [((0,), [(r[0], r[1]) for r in rows]), ((1,), [(r[0], r[2]) for r in rows]),
                               ((0, 1), rows)]:
                want = expected(n, b, data)
                for dialect, names in q.items():
                    pred = bucket_sql(dialect, [names[c] for c in cols], n, b)
                    got = sorted(run(dialect, f"SELECT rid FROM s WHERE {pred}"))
                    assert got == want, (dialect, n, b, cols)
    dk.close()
    lite.close()


# --- the union equals one run ----------------------------------------------------------------------

def source_rows(n: int, version: int = 0):
    return [{"id": i, "name": f"n{i}v{version}", "qty": i % 17, "price": f"{i % 100}.{i % 10}0",
             "modified_at": f"2025-{1 + version:02d}-{1 + (i + version) % 28:02d}T{(i * 7) % 24:02d}:{i % 60:02d}:00"}
            for i in range(1, n + 1)]


def make_pg_source(pg_admin, rows) -> tuple[str, str]:
    schema = fresh_name()
    pg_admin.execute(f'CREATE SCHEMA "{schema}"')
    pg_admin.execute(f'CREATE TABLE "{schema}".src (id bigint PRIMARY KEY, name text, qty int, price text, '
                     f'modified_at timestamp)')
    with pg_admin.cursor() as cur:
        with cur.copy(f'COPY "{schema}".src FROM STDIN') as cp:
            for r in rows:
                cp.write_row((r["id"], r["name"], r["qty"], r["price"], r["modified_at"]))
    return schema, f"{schema}.src"


def upsert_pg_source(pg_admin, table, rows):
    with pg_admin.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} VALUES (%s,%s,%s,%s,%s) ON CONFLICT (id) DO UPDATE SET "
                        f"name = excluded.name, modified_at = excluded.modified_at",
                        [(r["id"], r["name"], r["qty"], r["price"], r["modified_at"]) for r in rows])


def pg_target(request, pg_admin) -> str:
    name = fresh_name()
    request.addfinalizer(lambda: pg_admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    return f"{PG_URL}?schema={name}"


def targets(kind, tmp_path, request, pg_admin, label):
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / (label + '.db')}"
    return pg_target(request, pg_admin)


@pytest.mark.parametrize("target_kind,source_kind", [
    pytest.param("postgresql", "sql", marks=pytest.mark.slow),
    pytest.param("postgresql", "file", marks=pytest.mark.slow),
    pytest.param("sqlite", "sql", marks=pytest.mark.slow),
    pytest.param("sqlite", "file", marks=pytest.mark.slow),
])
def test_union_of_buckets_equals_one_run(target_kind, source_kind, tmp_path, request, pg_admin):
    one = targets(target_kind, tmp_path, request, pg_admin, "one")
    four = targets(target_kind, tmp_path, request, pg_admin, "four")
    first, second = source_rows(3000), source_rows(4000, version=1)[::3]
    if source_kind == "sql":
        schema, table = make_pg_source(pg_admin, first)
        request.addfinalizer(lambda: pg_admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        src = dict(source_url=PG_URL, source_table=table)
    else:
        path = write_jsonl(tmp_path / "src.jsonl", first)
        src = dict(input=str(path))
    for step in (1, 2):
        if step == 2:
            if source_kind == "sql":
                upsert_pg_source(pg_admin, table, second)
            else:
                write_jsonl(tmp_path / "src.jsonl", second)
        s1 = hiwater.load(**src, target=one, table="t", now=NOW)
        s4 = hiwater.load(**src, target=four, table="t", now=NOW, buckets=4)
        assert (s4.loaded, s4.total_in_target) == (s1.loaded, s1.total_in_target)
        if source_kind == "file":  # a SQL source reads each bucket's own window: its counts differ
            assert s4.source_records == s1.source_records
    assert read_table(four, "t") == read_table(one, "t")
    assert len(read_table(one, "t")) == s1.total_in_target == 3000 + sum(1 for r in second if r["id"] > 3000)


# --- Dask ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dask_threads():
    """An in-process Dask cluster (threads): fast to start."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0")
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.mark.slow
def test_buckets_on_a_dask_cluster_equal_one_run(tmp_path, request, pg_admin, dask_threads):
    one, four = pg_target(request, pg_admin), pg_target(request, pg_admin)
    schema, table = make_pg_source(pg_admin, source_rows(5000))
    request.addfinalizer(lambda: pg_admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    s1 = hiwater.load(source_url=PG_URL, source_table=table, target=one, table="t", now=NOW)
    s4 = hiwater.load(source_url=PG_URL, source_table=table, target=four, table="t", now=NOW, buckets=4,
                      executor=dask_threads)
    assert s4.source_records == s1.source_records == 5000
    assert read_table(four, "t") == read_table(one, "t")
    # the same through the CLI, with a Dask LocalCluster it starts itself (worker processes)
    path = write_jsonl(tmp_path / "src.jsonl", source_rows(2000, version=2))
    for tgt, extra in ((one, []), (four, ["--buckets", "4", "--executor", "dask"])):
        from .readback import cli
        r = cli("load", "-i", path, "--target", tgt, "--table", "t", "--now", NOW, *extra)
        assert r.code == 0, r.err
    assert read_table(four, "t") == read_table(one, "t")


@pytest.mark.slow
def test_a_killed_dask_worker_leaves_its_bucket_all_or_nothing_and_a_rerun_completes(
        tmp_path, request, pg_admin, monkeypatch):
    distributed = pytest.importorskip("distributed")
    import dask
    one, four = pg_target(request, pg_admin), pg_target(request, pg_admin)
    path = write_jsonl(tmp_path / "src.jsonl", source_rows(6000))
    kw = dict(table="t", now=NOW, batch_size=200)
    hiwater.load(str(path), target=one, **kw)
    # Bucket 0 makes the table alone first; bucket 2's worker is killed after 3 batches are written.
    monkeypatch.setenv(ENV_FAULT, "2:3")
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=":0")
        client = distributed.Client(cluster)
        try:
            with pytest.raises(PipelineError) as info:
                hiwater.load(str(path), target=four, buckets=4, executor=client, **kw)
        finally:
            client.close()
            cluster.close()
    # Bucket 2 died; a bucket Dask had already handed to the same worker fails with it (no retries
    # allowed here). Every failed bucket left nothing; every other one committed all of its rows.
    failed = {int(s.stream.split("#")[1].split("/")[0]) for s in info.value.result.streams if not s.ok}
    assert 2 in failed and 0 not in failed and "died" in str(info.value)
    states = {s["stream"]: s for s in hiwater.state_show(target=four)}
    assert set(states) == {f"t#{b}/4" for b in range(4) if b not in failed}
    ids = {r["id"] for r in read_table(four, "t")}
    assert ids == {i for i in range(1, 6001) if bucket_of([i], 4) not in failed}
    assert not [h for h in hiwater.history(target=four)
                if h["stream"] in {f"t#{b}/4" for b in failed} and h["outcome"] == "committed"]
    monkeypatch.delenv(ENV_FAULT)
    s = hiwater.load(str(path), target=four, buckets=4, executor="local", **kw)
    assert s.loaded == len([i for i in range(1, 6001) if bucket_of([i], 4) in failed])
    assert read_table(four, "t") == read_table(one, "t")


def big_rows() -> int:
    if os.environ.get("HIWATER_BUCKETS_ROWS"):
        return int(os.environ["HIWATER_BUCKETS_ROWS"])
    return 1_000_000 if os.environ.get("HIWATER_RELIABILITY") == "full" else 200_000


def column_checksums(pg_admin, url: str, table: str) -> dict:
    schema = url.split("schema=", 1)[1]
    cols = [r[0] for r in pg_admin.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "AND column_name NOT LIKE '\\_hiwater\\_%%' ORDER BY column_name", (schema, table)).fetchall()]
    out = {"count": pg_admin.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()[0]}
    for c in cols:
        out[c] = pg_admin.execute(f'SELECT md5(string_agg(coalesce("{c}"::text, \'<null>\'), \',\' ORDER BY id)) '
                                  f'FROM "{schema}"."{table}"').fetchone()[0]
    return out


def big_source(request, pg_admin):
    """A PostgreSQL table of ``big_rows()`` rows in a fresh schema (dropped after): ``(n, schema)``."""
    n = big_rows()
    schema = fresh_name()
    request.addfinalizer(lambda: pg_admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    pg_admin.execute(f'CREATE SCHEMA "{schema}"')
    pg_admin.execute(
        f'CREATE TABLE "{schema}".src AS SELECT i::bigint AS id, md5(i::text) AS name, (i % 1000)::int AS qty, '
        f"(i % 997)::numeric(10,2) AS price, timestamp '2025-01-01' + (i % 500000) * interval '1 second' "
        f"AS modified_at FROM generate_series(1, {n}) i")
    return n, schema


@pytest.mark.slow
def test_a_big_stream_in_four_dask_buckets_into_postgresql_equals_one_run(request, pg_admin):
    n, schema = big_source(request, pg_admin)
    one, four = pg_target(request, pg_admin), pg_target(request, pg_admin)
    src = dict(source_url=PG_URL, source_table=f"{schema}.src", table="t", now=NOW)
    s1 = hiwater.load(target=one, **src)
    s4 = hiwater.load(target=four, buckets=4, executor="dask", **src)
    assert s1.loaded == s4.loaded == n
    a, b = column_checksums(pg_admin, one, "t"), column_checksums(pg_admin, four, "t")
    assert a == b and a["count"] == n and len(a) == 6


def delta_checksums(url: str, table: str) -> dict:
    """Row count and an MD5 of every user column (ordered by id), as polars reads the Delta table."""
    import hashlib

    import polars as pl
    root = url.split("://", 1)[1]
    df = pl.read_delta(f"{root}/{table}").sort("id")
    out = {"count": df.height}
    for c in sorted(df.columns):
        if not c.startswith("_hiwater_"):
            out[c] = hashlib.md5(",".join("<null>" if v is None else str(v) for v in df[c].to_list()).encode()).hexdigest()
    return out


@pytest.mark.slow
def test_a_big_stream_in_four_dask_buckets_into_delta_equals_one_run(request, pg_admin, tmp_path):
    """The same source loaded once and in four Dask buckets into Delta folders: every column equal."""
    pytest.importorskip("deltalake")
    n, schema = big_source(request, pg_admin)
    one, four = f"delta://{tmp_path / 'one'}", f"delta://{tmp_path / 'four'}"
    src = dict(source_url=PG_URL, source_table=f"{schema}.src", table="t", now=NOW)
    s1 = hiwater.load(target=one, **src)
    s4 = hiwater.load(target=four, buckets=4, executor="dask", **src)
    assert s1.loaded == s4.loaded == n
    a, b = delta_checksums(one, "t"), delta_checksums(four, "t")
    assert a == b and a["count"] == n and len(a) == 6
    # a rerun of every bucket finds nothing new; status shows the stream at the least watermark
    again = hiwater.load(target=four, buckets=4, executor="dask", **src)
    assert again.loaded == 0
    rows = {r["stream"]: r for r in hiwater.status(target=four)}
    assert rows["t"]["watermark"] == min(rows[f"t#{b}/4"]["watermark"] for b in range(4))

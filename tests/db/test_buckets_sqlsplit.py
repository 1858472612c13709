"""The key-range read phase of a bucketed SQL stream (issue 20, item 2): a source keyed by one
integer column is read once, in key ranges, by read tasks; no bucket pushes the MD5 predicate down.

Every test compares from the user's side: the bucketed table with the single run's (count and a
checksum of every column), and the run's counts with those of the same bucketed run reading with
the hash pushed down (``HIWATER_BUCKET_SQL_READ=pushdown``: each bucket reads its own window, so
that is what a bucket's counts must stay). On PostgreSQL, MariaDB, DuckDB and SQLite sources; keys
with gaps, negative, NULL, and skewed (nearly all in one range); an empty window; a second run
after 2% of the rows changed; a read task that fails (nothing applied); a coordinator SIGKILLed
in the read phase, then a rerun; the ``--max-rejected`` gate; the SQL issued (no MD5).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import hiwater
from hiwater.errors import HiwaterError, PipelineError

from conftest import NOW

from .dbutil import MYSQL_URL, PG_URL, fresh_name, read_table

SRC = Path(__file__).resolve().parents[2] / "src"
T0 = dt.datetime(2025, 1, 1)


def checksum(rows: list) -> tuple[int, str]:
    text = "\n".join(sorted(json.dumps(r, sort_keys=True, default=str) for r in rows))
    return len(rows), hashlib.sha256(text.encode()).hexdigest()


def keyset(kind: str) -> list:
    if kind == "dense":  # every key from -700 on: each cut between ranges falls on a key
        return list(range(-700, 1300))
    if kind == "gaps":  # negative keys, gaps of every width, a NULL key
        return list(range(-3000, 0, 7)) + list(range(1, 4000, 3)) + [10_000, 10_001, 99_999] + [None]
    return list(range(1, 1500)) + [2**40]  # skewed: all but one key in the first range


def source_rows(keys: list, version: int = 0) -> list:
    out = []
    for i, k in enumerate(keys):
        at = T0 + dt.timedelta(minutes=(i * 37) % 5000 + version * 10_000)
        out.append((k, f"n{k}v{version}", None if i % 11 == 0 else i % 97, at))
    out.append((-701, "no cursor", 1, None))  # a NULL cursor: read by every run, invalid
    return out


class Source:
    """A ``src`` table (id bigint, name text, qty int, modified_at timestamp) in one database."""

    def __init__(self, kind: str, tmp_path, request):
        self.kind = kind
        if kind == "postgresql":
            admin = request.getfixturevalue("pg_admin")
            schema = fresh_name()
            admin.execute(f'CREATE SCHEMA "{schema}"')
            request.addfinalizer(lambda: admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            self.url, self.table = PG_URL, f"{schema}.src"
            self.conn = admin
        elif kind == "mysql":
            db = request.getfixturevalue("mysql_db")
            self.conn = request.getfixturevalue("mysql")
            self.url, self.table = MYSQL_URL.rsplit("/", 1)[0] + f"/{db}", "src"
        elif kind == "duckdb":
            self.path = str(tmp_path / "src.duckdb")
            self.url, self.table = f"duckdb:///{self.path}", "src"
        else:
            self.path = str(tmp_path / "src.db")
            self.url, self.table = f"sqlite:///{self.path}", "src"
        ts = "DATETIME" if kind == "mysql" else "TIMESTAMP" if kind != "sqlite" else "TEXT"
        name = "VARCHAR(40)" if kind == "mysql" else "TEXT"
        self.sql(f"CREATE TABLE {self.table} (id BIGINT, name {name}, qty INT, modified_at {ts})")

    def sql(self, statement: str, rows=None) -> None:
        ph = "?" if self.kind in ("sqlite", "duckdb") else "%s"
        statement = statement.replace("?", ph)
        if self.kind in ("sqlite", "duckdb"):
            if self.kind == "sqlite":
                import sqlite3 as lib
                rows = [tuple(v.isoformat() if isinstance(v, dt.datetime) else v for v in r) for r in rows or []]
            else:
                import duckdb as lib
            conn = lib.connect(self.path)
            try:
                conn.executemany(statement, rows) if rows else conn.execute(statement)
                conn.commit()
            finally:
                conn.close()
        elif self.kind == "postgresql":
            with self.conn.cursor() as cur:
                cur.executemany(statement, rows) if rows else cur.execute(statement)
        else:
            with self.conn.cursor() as cur:
                cur.executemany(statement, rows) if rows else cur.execute(statement)
            self.conn.commit()

    def insert(self, rows) -> None:
        self.sql(f"INSERT INTO {self.table} VALUES (?, ?, ?, ?)", rows)

    def change(self, keys: list, version: int) -> None:
        """``keys`` get a new name and a cursor later than any before."""
        at = T0 + dt.timedelta(days=30 * version)
        self.sql(f"UPDATE {self.table} SET name = ?, modified_at = ? WHERE id = ?",
                 [(f"n{k}changed{version}", at + dt.timedelta(seconds=i), k) for i, k in enumerate(keys)])


def load(src: Source, target: str, n: int = 1, *, pushdown: bool = False, **kw):
    os.environ.pop("HIWATER_BUCKET_SQL_READ", None)
    if pushdown:
        os.environ["HIWATER_BUCKET_SQL_READ"] = "pushdown"
    try:
        return hiwater.load(source_url=src.url, source_table=src.table, target=target, table="t", key="id",
                            cursor="modified_at", now=NOW, buckets=n, batch_size=400, **kw)
    finally:
        os.environ.pop("HIWATER_BUCKET_SQL_READ", None)


def counts(s) -> dict:
    return {**s.counts.__dict__, "buckets": sorted((b["stream"], b["source_records"], b["loaded"])
                                                  for b in (s.buckets or []))}


def quarantined(target: str) -> list:
    return sorted(json.dumps(q["key"]) for q in hiwater.quarantine_list(target=target, stream="t"))


MATRIX = [(db, n, keys) for db in ("postgresql", "mysql", "duckdb", "sqlite") for n in (2, 4)
          for keys in ("dense", "gaps", "skewed")]
FAST = {("postgresql", 4, "dense")}  # (SQLite: its text cursor is pushed down by the day, widened)


@pytest.mark.parametrize("db,n,keys", [pytest.param(*m, marks=() if m in FAST else pytest.mark.slow) for m in MATRIX])
def test_key_ranges_load_the_single_run_table_with_the_pushdown_counts(db, n, keys, tmp_path, request):
    src = Source(db, tmp_path, request)
    ks = keyset(keys)
    src.insert(source_rows(ks))
    one, ranged, hashed = (f"sqlite:///{tmp_path / f'{x}.db'}" for x in ("one", "ranged", "hashed"))
    changed = [k for k in ks if k is not None][::50]  # 2%
    for step in (1, 2, 3):  # a first load; 2% changed; nothing changed (an empty window)
        if step == 2:
            src.change(changed, step)
        s1 = load(src, one)
        sr = load(src, ranged, n)
        sh = load(src, hashed, n, pushdown=True)
        assert sr.reading is not None and sh.reading is None  # the read phase ran (the reference had none)
        assert counts(sr) == counts(sh), step
        assert sr.loaded == s1.loaded == (sum(k is not None for k in ks) if step == 1 else len(changed) if step == 2 else 0), step
        assert checksum(read_table(ranged, "t")) == checksum(read_table(one, "t")), step
        assert quarantined(ranged) == quarantined(hashed)
    rows = {r["id"]: r for r in read_table(ranged, "t")}
    assert all(rows[k]["name"] == f"n{k}changed2" for k in changed)
    states = {s["stream"]: s["watermark"] for s in hiwater.state_show(target=ranged)}
    assert states == {s["stream"]: s["watermark"] for s in hiwater.state_show(target=hashed)}


@pytest.mark.parametrize("db", [pytest.param("sqlite", marks=pytest.mark.slow), "postgresql"])
def test_an_empty_table_loads_nothing_and_then_its_rows(db, tmp_path, request):
    src = Source(db, tmp_path, request)
    ranged, one = f"sqlite:///{tmp_path / 'ranged.db'}", f"sqlite:///{tmp_path / 'one.db'}"
    s = load(src, ranged, 3)
    assert s.loaded == 0 and s.source_records == 0 and len(s.reading["splits"]) == 1
    src.insert(source_rows(list(range(1, 300))))
    s = load(src, ranged, 3)
    load(src, one)
    assert s.loaded == 299 and checksum(read_table(ranged, "t")) == checksum(read_table(one, "t"))


def test_the_buckets_read_key_ranges_and_the_server_computes_no_md5(tmp_path, request):
    """The SQL each read task issues (``-v`` logs it): a key range, no MD5 and no bucket UDF; a
    text key keeps the hash pushed down."""
    src = Source("postgresql", tmp_path, request)
    src.insert(source_rows(list(range(1, 2000))))
    target = f"sqlite:///{tmp_path / 't.db'}"
    common = ["--source", src.url, "--source-table", src.table, "--key", "id", "--cursor", "modified_at",
              "--table", "t", "--now", NOW, "--buckets", "3"]
    issued = [line for line in cli("-v", "load", "--target", target, *common).splitlines() if "source: " in line]
    assert len(issued) == 1 + max(3, os.cpu_count() or 1), issued  # the span, then one statement per range
    assert "min(" in issued[0]
    assert all("md5" not in q.lower() and "hiwater_bucket" not in q for q in issued), issued
    assert sum('"id" <' in q for q in issued) == len(issued) - 2  # every range but the last has an end
    assert sum('"id" IS NULL' in q for q in issued) == 1  # the NULL keys: read by the last range
    # a text key: each bucket pushes the hash down, as before
    src.sql(f"ALTER TABLE {src.table} ALTER COLUMN id TYPE text")
    text = ["--target", f"sqlite:///{tmp_path / 'text.db'}", *common]
    issued = [line for line in cli("-v", "load", *text).splitlines() if "source: " in line]
    assert len(issued) == 3 and all("md5(" in q for q in issued), issued


def cli(*args, env=None) -> str:
    proc = subprocess.run([sys.executable, "-c", "from hiwater.cli import run; run()", *map(str, args)],
                          env=dict(env or os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


@pytest.mark.parametrize("n", [2, pytest.param(4, marks=pytest.mark.slow)])
def test_a_read_task_that_fails_fails_the_run_with_nothing_applied(n, tmp_path, request, pg_admin):
    """A query whose value fails in one range (100/(qty+1) with qty -1, on PostgreSQL): the run fails
    naming the read, no bucket commits, and the rerun after the fix loads what one run loads."""
    src = Source("postgresql", tmp_path, request)
    src.insert(source_rows(list(range(1, 3000))))
    query = f"SELECT id, name, modified_at, 100 / (qty + 1) AS per FROM {src.table} WHERE qty IS NOT NULL"
    target, one = f"sqlite:///{tmp_path / 'ranged.db'}", f"sqlite:///{tmp_path / 'one.db'}"
    kw = dict(source_url=src.url, query=query, table="t", key="id", cursor="modified_at", now=NOW)
    hiwater.load(target=target, buckets=n, **kw)
    before = (checksum(read_table(target, "t")), hiwater.state_show(target=target), hiwater.history(target=target))
    src.change(list(range(1, 3000, 40)), 2)
    src.sql(f"UPDATE {src.table} SET qty = -1 WHERE id = 1201")
    with pytest.raises(HiwaterError) as info:
        hiwater.load(target=target, buckets=n, **kw)
    assert "division by zero" in str(info.value) and not isinstance(info.value, PipelineError)
    # no bucket ran: the table, the states and the history are as they were
    assert (checksum(read_table(target, "t")), hiwater.state_show(target=target), hiwater.history(target=target)) == before
    src.sql(f"UPDATE {src.table} SET qty = 5 WHERE id = 1201")
    s = hiwater.load(target=target, buckets=n, **kw)
    hiwater.load(target=one, **kw)
    assert s.loaded > 0 and checksum(read_table(target, "t")) == checksum(read_table(one, "t"))


@pytest.mark.parametrize("db", ["sqlite", pytest.param("mysql", marks=pytest.mark.slow)])
def test_the_rejection_gate_judges_the_key_range_read(db, tmp_path, request):
    """``--max-rejected`` on the stream's sums: the read phase's spill files are scanned, then
    applied; a limit the invalid records pass fails the run with nothing committed."""
    src = Source(db, tmp_path, request)
    src.insert(source_rows(keyset("gaps")))  # a NULL key and a NULL cursor: 2 invalid records
    target = f"sqlite:///{tmp_path / 'ranged.db'}"
    with pytest.raises(HiwaterError) as info:
        load(src, target, 3, max_rejected="1")
    assert "rejected" in str(info.value)
    assert hiwater.state_show(target=target) == []  # no bucket committed
    assert not [h for h in hiwater.history(target=target) if h["outcome"] == "committed"]
    s = load(src, target, 3, max_rejected="2")
    assert s.counts.rejected == 2 and s.loaded == len(keyset("gaps")) - 1


@pytest.mark.reliability
@pytest.mark.slow
def test_sigkill_of_the_coordinator_in_the_read_phase_then_a_rerun_converges(tmp_path, request, pg_admin):
    """The coordinator is SIGKILLed while the read tasks read their ranges: its workers die with
    it, no bucket committed, its spill folder is swept by the next run, and the rerun loads
    the single run's table."""
    schema = fresh_name()
    pg_admin.execute(f'CREATE SCHEMA "{schema}"')
    request.addfinalizer(lambda: pg_admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    pg_admin.execute(f'CREATE TABLE "{schema}".src AS SELECT i::bigint AS id, md5(i::text) AS name, '
                     f"timestamp '2025-01-01' + (i % 50000) * interval '1 second' AS modified_at "
                     f"FROM generate_series(1, 300000) i")
    bucketed, single = f"sqlite:///{tmp_path / 'b.db'}", f"sqlite:///{tmp_path / 'one.db'}"
    common = ["--source", PG_URL, "--source-table", f"{schema}.src", "--table", "t", "--key", "id",
              "--cursor", "modified_at", "--now", NOW, "--batch-size", "2000"]
    env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.Popen([sys.executable, "-c", "from hiwater.cli import run; run()", "-v", "load",
                             "--target", bucketed, "--buckets", "2", *common],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    parent = psutil.Process(proc.pid)
    seen = 0
    for line in proc.stderr:  # the read tasks log their statements as they start reading
        seen += 'source: SELECT * FROM' in line
        if seen == 2:
            break
    assert seen == 2, "the read phase did not start"
    workers = [c for c in parent.children(recursive=True) if "spawn_main" in " ".join(c.cmdline())]
    time.sleep(0.5)
    assert proc.poll() is None, "the run ended before it could be killed: make the source bigger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    gone, alive = psutil.wait_procs(workers, timeout=60)
    assert not [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    if Path(bucketed[10:]).exists():  # nothing committed: no bucket applied
        assert not [h for h in hiwater.history(target=bucketed) if h["outcome"] == "committed"]
    cli("load", "--target", bucketed, "--buckets", "2", *common)
    cli("load", "--target", single, *common)
    assert checksum(read_table(bucketed, "t")) == checksum(read_table(single, "t"))
    assert len(read_table(single, "t")) == 300000

"""hiwater verify on every source × target pair: planted missing, extra and stale keys are named
exactly, with the aggregates computed in the source database where it is one.

Differences are planted at the source after a load, as they happen: a late insert below the
watermark (missing), a delete (extra), an update in place to a later cursor still below the
watermark (stale).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import pytest

import hiwater

from .conftest import target_for
from .dbutil import MYSQL_URL, PG_URL, TARGETS

BASE = dt.datetime(2025, 3, 1)
N = 200


class Source:
    """A table ``orders (id, name, modified_at)`` in one kind of source, and how to change it."""

    kind = "timestamp"
    assume_tz = "UTC"
    pushdown = True

    def value(self, i: int):
        return BASE + dt.timedelta(minutes=17 * i)

    def rows(self):
        return [(i, f"n{i}", self.value(i)) for i in range(N)]

    def load_kw(self) -> dict:
        return {"source_url": self.url, "source_table": "orders", "table": "orders", "assume_tz": self.assume_tz}

    def verify_kw(self) -> dict:
        return {"source_url": self.url}


class SqlSource(Source):
    ph = "%s"

    def run(self, sql, params=()):
        raise NotImplementedError

    def create(self, coltype):
        self.run(f"CREATE TABLE orders (id INTEGER PRIMARY KEY, name VARCHAR(40), modified_at {coltype})")
        for r in self.rows():
            self.run(f"INSERT INTO orders VALUES ({self.ph}, {self.ph}, {self.ph})", r)

    def insert(self, i, c):
        self.run(f"INSERT INTO orders VALUES ({self.ph}, {self.ph}, {self.ph})", (i, "late", self.value(c)))

    def delete(self, i):
        self.run(f"DELETE FROM orders WHERE id = {self.ph}", (i,))

    def update(self, i, c):
        self.run(f"UPDATE orders SET modified_at = {self.ph} WHERE id = {self.ph}", (self.value(c), i))


class Postgres(SqlSource):
    def __init__(self, request, coltype="timestamptz", kind="timestamp", assume_tz="UTC"):
        schema = request.getfixturevalue("pg_schema")
        self.conn = request.getfixturevalue("pg")
        self.url = f"{PG_URL}?schema={schema}"
        self.kind, self.assume_tz = kind, assume_tz
        self.coltype = coltype
        self.create(coltype)

    def value(self, i):
        if self.kind == "int":
            return 10 * i
        if self.kind == "date":
            return BASE.date() + dt.timedelta(days=i)
        if self.coltype == "timestamptz":
            return (BASE + dt.timedelta(minutes=17 * i)).replace(tzinfo=dt.timezone.utc)
        if self.assume_tz != "UTC":  # 15-minute steps through Berlin's autumn change (02:xx twice)
            return dt.datetime(2024, 10, 26, 12) + dt.timedelta(minutes=15 * i)
        return super().value(i)

    def run(self, sql, params=()):
        self.conn.execute(sql, params)


class MySQL(SqlSource):
    def __init__(self, request, coltype="DATETIME(6)", kind="timestamp"):
        db = request.getfixturevalue("mysql_db")
        self.conn = request.getfixturevalue("mysql")
        self.url = f"{MYSQL_URL.rsplit('/', 1)[0]}/{db}"
        self.kind = kind
        if coltype.startswith("TIMESTAMP"):
            with self.conn.cursor() as cur:
                cur.execute("SET time_zone = '+00:00'")
        self.create(coltype)

    def value(self, i):
        return 10 * i if self.kind == "int" else super().value(i)

    def run(self, sql, params=()):
        with self.conn.cursor() as cur:
            cur.execute(sql, params)


class SQLite(SqlSource):
    ph = "?"
    pushdown = False  # ISO text cursors: normalised as the loader does, the table read once

    def __init__(self, request, tmp_path, kind="timestamp"):
        self.path = tmp_path / "app.db"
        self.url = f"sqlite:///{self.path}"
        self.kind = kind
        self.pushdown = kind == "int"
        self.create("INTEGER" if kind == "int" else "TEXT")

    def value(self, i):
        return 10 * i if self.kind == "int" else super().value(i).isoformat()

    def run(self, sql, params=()):
        con = sqlite3.connect(self.path)
        con.execute(sql, params)
        con.commit()
        con.close()


class DuckDB(SqlSource):
    ph = "?"

    def __init__(self, request, tmp_path):
        self.path = tmp_path / "app.duckdb"
        self.url = f"duckdb:///{self.path}"
        self.create("TIMESTAMP")

    def run(self, sql, params=()):
        import duckdb
        con = duckdb.connect(str(self.path))
        con.execute(sql, list(params))
        con.close()


class Folder(Source):
    pushdown = False

    def __init__(self, request, tmp_path):
        self.dir = tmp_path / "landing"
        self.dir.mkdir()
        self.records = {i: {"id": i, "name": n, "modified_at": c.isoformat()} for i, n, c in self.rows()}
        self.flush()

    def flush(self):
        (self.dir / "orders.jsonl").write_text("".join(json.dumps(r) + "\n" for r in self.records.values()))

    def insert(self, i, c):
        self.records[i] = {"id": i, "name": "late", "modified_at": self.value(c).isoformat()}
        self.flush()

    def delete(self, i):
        del self.records[i]
        self.flush()

    def update(self, i, c):
        self.records[i]["modified_at"] = self.value(c).isoformat()
        self.flush()

    def load_kw(self):
        return {"input": str(self.dir), "table": "orders"}

    def verify_kw(self):
        return {"input": str(self.dir)}


SOURCES = {
    "postgresql": lambda rq, tp: Postgres(rq),
    "mysql": lambda rq, tp: MySQL(rq),
    "sqlite": lambda rq, tp: SQLite(rq, tp),
    "duckdb": lambda rq, tp: DuckDB(rq, tp),
    "folder": lambda rq, tp: Folder(rq, tp),
}
VARIANTS = {  # more cursor types, on one target
    "pg-naive-berlin-dst": lambda rq, tp: Postgres(rq, "timestamp", assume_tz="Europe/Berlin"),
    "pg-naive-utc": lambda rq, tp: Postgres(rq, "timestamp"),
    "pg-int": lambda rq, tp: Postgres(rq, "bigint", kind="int"),
    "pg-date": lambda rq, tp: Postgres(rq, "date", kind="date"),
    "mysql-timestamp": lambda rq, tp: MySQL(rq, "TIMESTAMP(6) NULL"),
    "mysql-int": lambda rq, tp: MySQL(rq, "BIGINT", kind="int"),
    "sqlite-int": lambda rq, tp: SQLite(rq, tp, kind="int"),
}


def _target_kw(url: str) -> dict:
    return {"target": url}


def _scenario(src: Source, target: str):
    kw = {"now": "2030-01-01T00:00:00Z", "cursor": "modified_at", **src.load_kw()}
    summary = hiwater.load(**_target_kw(target), **kw)
    assert summary.loaded == N
    [r] = hiwater.verify(**_target_kw(target), **src.verify_kw())
    assert r["equal"], r
    assert r["windows"]["checked"] > 5 and r["rounds"] == 1
    if src.pushdown:  # only aggregates crossed the wire from the source: a few bytes per window
        assert r["bytes_fetched"]["source"] <= 40 * r["windows"]["checked"] + 64
    src.delete(7)
    src.insert(1000, 100)
    src.update(51, 150)
    [r] = hiwater.verify(**_target_kw(target), **src.verify_kw())
    named = {c: sorted(s["key"][0] for s in r["sample"][c]) for c in r["sample"] if r["sample"][c]}
    assert named == {"extra": [7], "missing": [1000], "stale": [51]}, r
    assert not r["equal"]
    [r] = hiwater.verify(**_target_kw(target), **src.verify_kw(), repair=True, prune_extra=True)
    assert r["repair"]["extra_deleted"] == 1
    assert r["repair"]["after"]["equal"], r["repair"]
    [r] = hiwater.verify(**_target_kw(target), **src.verify_kw())
    assert r["equal"], r


# In the default suite: every source into SQLite and the PostgreSQL source into every target; the
# other pairs under -m slow.
PAIRS = [pytest.param(s, t, marks=() if t == "sqlite" or s == "postgresql" else pytest.mark.slow, id=f"{s}-{t}")
         for t in TARGETS for s in SOURCES]


@pytest.mark.parametrize("source_kind, target_kind", PAIRS)
def test_planted_differences_on_every_pair(source_kind, target_kind, request, tmp_path):
    src = SOURCES[source_kind](request, tmp_path)
    _scenario(src, target_for(target_kind, tmp_path, request))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_planted_differences_on_each_cursor_type(variant, request, tmp_path):
    src = VARIANTS[variant](request, tmp_path)
    _scenario(src, target_for("sqlite", tmp_path, request))


def test_dst_wall_times_pushed_down_match_the_loader(request, tmp_path, pg):
    """Naive PostgreSQL timestamps in Europe/Berlin, through both autumn 02:xx hours and a time
    the spring change skips (quarantined by the loader, so counted quarantined, not missing)."""
    src = Postgres(request, "timestamp", assume_tz="Europe/Berlin")
    pg.execute("INSERT INTO orders VALUES (5000, 'gap', '2024-03-31 02:30:00')")
    target = target_for("sqlite", tmp_path, request)
    hiwater.load(target=target, now="2030-01-01T00:00:00Z", cursor="modified_at", **src.load_kw())
    assert [q["key"] for q in hiwater.quarantine_list(target=target)] == ["[5000]"]
    [r] = hiwater.verify(target=target, source_url=src.url, by="15m")
    assert r["equal"], r
    assert r["bytes_fetched"]["source"] < 20_000  # pushed down: not the rows


@pytest.mark.parametrize("target_kind", TARGETS)
def test_content_hashes_equal_on_every_target(target_kind, request, tmp_path, pg):
    """The same record's columns hash equal whatever each target stored them as."""
    pg.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, name TEXT, amt NUMERIC(10,2), f DOUBLE PRECISION, "
               "ok BOOLEAN, doc JSONB, n BIGINT, modified_at TIMESTAMPTZ)")
    for i in range(30):
        pg.execute("INSERT INTO orders VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                   (i, f"n{i}", f"{i}.50", i / 4, i % 2 == 0, json.dumps({"b": i, "a": [1, None]}),
                    None if i % 3 else i, BASE.replace(tzinfo=dt.timezone.utc) + dt.timedelta(hours=i)))
    url = f"{PG_URL}?schema={request.getfixturevalue('pg_schema')}"
    target = target_for(target_kind, tmp_path, request)
    hiwater.load(target=target, source_url=url, source_table="orders", cursor="modified_at",
                 now="2030-01-01T00:00:00Z")
    [r] = hiwater.verify(target=target, source_url=url, content=True)
    assert r["equal"], r
    pg.execute("UPDATE orders SET name = 'rewritten' WHERE id = 4")
    [r] = hiwater.verify(target=target, source_url=url, content=True)
    assert r["keys"]["changed"] == 1 and r["sample"]["changed"][0]["key"] == [4]


@pytest.mark.parametrize("mode", ["md5", "int"])
@pytest.mark.parametrize("flavour", ["postgresql", "mysql", "sqlite", "duckdb"])
def test_dialects_hash_exactly_as_python(flavour, mode, request, tmp_path):
    """Each SQL dialect's spelling of both checksums (md5; integer arithmetic for an integer key)
    gives Python's digests, at the edges of the integer checksum's bounds (negative and 2**62
    cursors, large and negative keys, a 32-bit key column)."""
    from hiwater.verify.plan import make_plan
    from hiwater.verify.sides import MemorySide, SqlSide
    keys = [1, 2, -3, 2**31 - 1, 77, -(2**31), 2147483647 * 3]
    curs = [0, -1, 2**62, 1736928000000000, 5, -(2**61), 2147483629 * 2]
    if mode == "int":
        keys[-1] = 2**40 + 1 if flavour == "postgresql" else keys[-1]
    keys += [2147483646, 2147483628]   # k % P = c % P = P - 1: the largest product of each half
    curs += [2147483646 + 2**30 * 2147483647, 2147483628]
    rows = list(zip(keys, curs))
    q = (lambda n: f"`{n}`") if flavour == "mysql" else (lambda n: f'"{n}"')
    int_key = mode == "int"
    keytype = "BIGINT"
    if flavour == "postgresql":
        conn = request.getfixturevalue("pg")
        conn.execute(f"CREATE TABLE t (id {keytype}, small INTEGER, _hiwater_cursor BIGINT)")
        for k, c in rows:
            conn.execute("INSERT INTO t VALUES (%s, %s, %s)", (k, k if -(2**31) <= k < 2**31 else 0, c))
    elif flavour == "mysql":
        conn = request.getfixturevalue("mysql")
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE t (id {keytype}, _hiwater_cursor BIGINT)")
            cur.executemany("INSERT INTO t VALUES (%s, %s)", rows)
    elif flavour == "sqlite":
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        conn.execute("CREATE TABLE t (id INTEGER, _hiwater_cursor INTEGER)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", rows)
    else:
        import duckdb
        conn = duckdb.connect(str(tmp_path / "t.duckdb"))
        conn.execute("CREATE TABLE t (id BIGINT, _hiwater_cursor BIGINT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", rows)
    side = SqlSide("t", conn, flavour, q("t"), ["id"], q("_hiwater_cursor"), q, int_key=int_key,
                   placeholder="%s" if flavour in ("postgresql", "mysql") else "?",
                   escape=flavour in ("postgresql", "mysql"))
    mem = MemorySide("m", [(k,) for k in keys], curs)
    assert mem.int_key
    side.use(mode)
    mem.use(mode)
    plan = make_plan(-(2**61), 2**62, kind="int", step=2**59)
    assert side.total(plan.lo, plan.hi) == mem.total(plan.lo, plan.hi) and side.total(plan.lo, plan.hi)[0] == len(keys)
    assert side.total(None, 0) == mem.total(None, 0)
    if flavour == "postgresql" and mode == "int":  # a 32-bit key column: no overflow in 32 bits
        small = SqlSide("t", conn, flavour, '"t"', ["small"], '"_hiwater_cursor"', q, int_key=True)
        small.use(mode)
        ref = MemorySide("m", [(k if -(2**31) <= k < 2**31 else 0,) for k in keys], curs)
        ref.use(mode)
        assert small.windows(plan) == ref.windows(plan)
    assert side.windows(plan) == mem.windows(plan)
    windows = list(side.windows(plan))
    top = [(w, 0) for w in windows]
    assert side.buckets(plan, 0, top, 3) == mem.buckets(plan, 0, top, 3)
    second = list(mem.buckets(plan, 0, top, 3))
    assert side.buckets(plan, 3, second, 15) == mem.buckets(plan, 3, second, 15)
    slices = [(w, 3, b) for w, b in second]
    assert side.rows(plan, slices) == mem.rows(plan, slices)
    assert side.lookup([(77,), (9,)]) == {"77": 5}


def test_integer_checksum_agrees_on_every_target_and_source(request, tmp_path):
    """The integer checksum (one integer key): one PostgreSQL table loaded into all four targets;
    every target and every kind of source holding the same records (PostgreSQL, MariaDB, SQLite,
    a folder) agree on it, gives the same digests per window and per bucket, and matches Python's
    definition row by row."""
    from hiwater.verify import digest as D
    from hiwater.verify import sides as S
    from hiwater.verify.plan import make_plan
    from hiwater.verify.rows import MemorySide

    pgsrc = Postgres(request)
    sides = {"postgresql source": S.source_side(pgsrc.url, table="orders", query=None, key=["id"],
                                                cursor="modified_at", kind="timestamp", assume_tz="UTC"),
             "mariadb source": None, "sqlite source": None, "folder source": None}
    my = MySQL(request, "DATETIME(6)")
    sides["mariadb source"] = S.source_side(my.url, table="orders", query=None, key=["id"], cursor="modified_at",
                                            kind="timestamp", assume_tz="UTC")
    lite = SQLite(request, tmp_path)
    sides["sqlite source"] = S.source_side(lite.url, table="orders", query=None, key=["id"], cursor="modified_at",
                                           kind="timestamp", assume_tz="UTC")
    folder = Folder(request, tmp_path)
    sides["folder source"] = S.files_side(str(folder.dir), fmt=None, key=["id"], cursor="modified_at",
                                          kind="timestamp", assume_tz="UTC")
    for kind in ("sqlite", "duckdb", "postgresql", "delta"):
        (tmp_path / kind).mkdir()
        url = target_for(kind, tmp_path / kind, request)
        hiwater.load(target=url, now="2030-01-01T00:00:00Z", cursor="modified_at", **pgsrc.load_kw())
        sides[f"{kind} target"] = S.target_side(url, "orders", ["id"])
    try:
        first = sides["postgresql source"]
        for name, side in sides.items():
            assert S.agree(first, side) == D.INT, name
        cursors = [int(pgsrc.value(i).timestamp()) * 1_000_000 for i in range(N)]
        ref = MemorySide("python", [(i,) for i in range(N)], cursors)
        ref.use(D.INT)
        assert [int(h) for h in ref.h] == [D.int_row_hash(i, c) for i, c in zip(range(N), cursors)]
        plan = make_plan(min(cursors), max(cursors), kind="timestamp", step=6 * 3_600_000_000)
        want = ref.windows(plan)
        assert len(want) > 5
        top = [(w, 0) for w in want]
        buckets = ref.buckets(plan, 0, top, 4)
        for name, side in sides.items():
            assert side.total(plan.lo, plan.hi) == ref.total(plan.lo, plan.hi), name
            assert side.windows(plan) == want, name
            assert side.buckets(plan, 0, top, 4) == buckets, name
        # a text key (or --content) falls back to md5 on both sides
        text = MemorySide("text", [(str(i),) for i in range(N)], cursors)
        assert S.agree(text, sides["sqlite target"]) == D.MD5 and sides["sqlite target"].mode == D.MD5
    finally:
        for side in sides.values():
            side.close()


@pytest.mark.parametrize("source_kind", ["postgresql", "mysql"])
@pytest.mark.parametrize("target_kind", ["sqlite", "duckdb", "postgresql"])
def test_composite_text_keys(source_kind, target_kind, request, tmp_path):
    """A (text, integer) key hashes alike in every dialect, whatever the collation ('a' and 'A'
    are two keys even where MySQL compares them equal)."""
    rows = [(t, i, BASE + dt.timedelta(minutes=i)) for t in ("a", "A", "007", "x y") for i in range(40)]
    if source_kind == "postgresql":
        conn = request.getfixturevalue("pg")
        url = f"{PG_URL}?schema={request.getfixturevalue('pg_schema')}"
        run = conn.execute
        ph = "%s"
    else:
        conn = request.getfixturevalue("mysql")
        url = f"{MYSQL_URL.rsplit('/', 1)[0]}/{request.getfixturevalue('mysql_db')}"

        def run(sql, params=()):
            with conn.cursor() as cur:
                cur.execute(sql, params)
        ph = "%s"
    run("CREATE TABLE orders (tenant VARCHAR(10) COLLATE " + ("\"C\"" if source_kind == "postgresql" else
                                                              "utf8mb4_bin") +
        ", id INTEGER, modified_at TIMESTAMP" + (" NULL" if source_kind == "mysql" else "") +
        ", PRIMARY KEY (tenant, id))")
    for r in rows:
        run(f"INSERT INTO orders VALUES ({ph}, {ph}, {ph})", r)
    target = target_for(target_kind, tmp_path, request)
    hiwater.load(target=target, source_url=url, source_table="orders", key="tenant,id", cursor="modified_at",
                 now="2030-01-01T00:00:00Z")
    [r] = hiwater.verify(target=target, source_url=url)
    assert r["equal"], r
    run(f"DELETE FROM orders WHERE tenant = {ph} AND id = {ph}", ("A", 5))
    run(f"INSERT INTO orders VALUES ({ph}, {ph}, {ph})", ("zz", 6, BASE + dt.timedelta(minutes=6)))
    [r] = hiwater.verify(target=target, source_url=url)
    assert r["sample"]["extra"] == [{"key": ["A", 5], "source": None, "target": "2025-03-01T00:05:00+00:00"}]
    assert r["sample"]["missing"] == [{"key": ["zz", 6], "source": "2025-03-01T00:06:00+00:00", "target": None}]

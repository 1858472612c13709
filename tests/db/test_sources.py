"""SQL sources on the real servers: the window pushed down, order, ties, NULL cursors, types.

PostgreSQL and MariaDB tables are made in the test's own schema / database; SQLite and
DuckDB sources are files. Every load goes into a SQLite file target unless a test says
otherwise (the targets have their own suite)."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pytest

import hiwater
from hiwater.sources.sql import SqlSource, window_sql

from .dbutil import MYSQL_URL, PG_URL, read_table

NOW = "2025-06-01T00:00:00Z"
UTC = dt.timezone.utc


class Recording:
    """Wraps a source and keeps every (cursor, id) it yielded, in order."""

    def __init__(self, src, cursor="modified_at"):
        self.src, self.cursor, self.seen = src, cursor, []
        self.description = src.description

    def set_window(self, *a):
        self.src.set_window(*a)

    def batches(self):
        for b in self.src.batches():
            self.seen.append(len(b))
            yield b

    def close(self):
        self.src.close()


def pg_source(schema, **kw):
    kw.setdefault("table", f"{schema}.orders")
    return SqlSource(PG_URL, **kw)


def my_source(db, **kw):
    kw.setdefault("table", "orders")
    return SqlSource(f"{MYSQL_URL.rsplit('/', 1)[0]}/{db}", **kw)


def run(src, target, **opts):
    opts.setdefault("table", "orders")
    opts.setdefault("now", NOW)
    try:
        return hiwater.load(source=src, db=str(target), **opts).to_dict(details=True)
    finally:
        src.close()


def ts(minute, second=0, micro=0):
    return dt.datetime(2025, 1, 15, 8, 0, tzinfo=UTC) + dt.timedelta(minutes=minute, seconds=second,
                                                                     microseconds=micro)


@pytest.fixture
def pg_orders(pg, pg_schema):
    pg.execute("CREATE TABLE orders (id int PRIMARY KEY, name text, modified_at timestamptz)")
    with pg.cursor() as cur:
        cur.executemany("INSERT INTO orders VALUES (%s, %s, %s)", [(i, f"n{i}", ts(i)) for i in range(1, 11)])
    return pg_schema


@pytest.fixture
def my_orders(mysql, mysql_db):
    with mysql.cursor() as cur:
        cur.execute("CREATE TABLE orders (id int PRIMARY KEY, name varchar(20), modified_at datetime(6))")
        cur.executemany("INSERT INTO orders VALUES (%s, %s, %s)",
                        [(i, f"n{i}", ts(i).replace(tzinfo=None)) for i in range(1, 11)])
    return mysql_db


# --- the SQL builder ---------------------------------------------------------------------------

def test_window_sql_renders_each_case():
    # a bucketed stream's predicate is ANDed with the whole window (NULL cursors included)
    assert window_sql('"t"', '"c"', ['"id"'], [">="], "%s", True, "B") == \
        'SELECT * FROM "t" WHERE (("c" >= %s) OR "c" IS NULL) AND (B) ORDER BY "c", "id"'
    assert window_sql('"t"', '"c"', ['"id"'], [], "?", False, "B") == 'SELECT * FROM "t" WHERE B ORDER BY "c", "id"'
    assert window_sql('"t"', '"c"', ['"id"'], [], "%s", True) == 'SELECT * FROM "t" ORDER BY "c", "id"'
    assert window_sql('"t"', '"c"', ['"a"', '"b"'], [">="], "?", False) == \
        'SELECT * FROM "t" WHERE ("c" >= ?) OR "c" IS NULL ORDER BY "c", "a", "b"'
    assert window_sql("(SELECT 1 AS c WHERE x LIKE 'a%') AS _hiwater_src", '"c"', ['"id"'], [">", "<"], "%s", True) == \
        ("SELECT * FROM (SELECT 1 AS c WHERE x LIKE 'a%%') AS _hiwater_src WHERE (\"c\" > %s AND \"c\" < %s)"
         " OR \"c\" IS NULL ORDER BY \"c\", \"id\"")


# --- PostgreSQL --------------------------------------------------------------------------------

def test_pg_first_run_reads_all_then_only_the_window(pg, pg_orders, tmp_path):
    db = tmp_path / "t.db"
    src = pg_source(pg_orders)
    s = run(src, db)
    assert src.last_sql == f'SELECT * FROM "{pg_orders}"."orders" ORDER BY "modified_at", "id"'
    assert src.last_params == [] and s["loaded"] == 10
    pg.execute("INSERT INTO orders VALUES (11, 'n11', %s), (12, 'n12', %s)", (ts(20), ts(3)))
    src = pg_source(pg_orders)
    s = run(src, db)
    assert src.last_sql == (f'SELECT * FROM "{pg_orders}"."orders" WHERE ("modified_at" >= %s)'
                            f' OR "modified_at" IS NULL ORDER BY "modified_at", "id"')
    assert src.last_params == [ts(10)]
    # id 10 (at the watermark) and id 11 are read; id 12, written late below the window, is not
    assert (s["source_records"], s["inserted"], s["unchanged"]) == (2, 1, 1)
    src = pg_source(pg_orders)
    run(src, db, lookback="15m", until="2025-01-15T09:00:00Z", boundary="exclusive")
    assert "(\"modified_at\" > %s AND \"modified_at\" < %s)" in src.last_sql and src.last_params == [ts(5), ts(60)]


def test_pg_rows_below_the_window_are_never_fetched(pg, pg_orders, tmp_path):
    """A canary raises for any row below the window the server evaluates for the client."""
    db = tmp_path / "t.db"
    run(pg_source(pg_orders), db)
    pg.execute("""CREATE FUNCTION canary(t timestamptz) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
                  BEGIN IF t < '2025-01-15 08:10:00+00' THEN RAISE EXCEPTION 'fetched a row below the window';
                  END IF; RETURN 'ok'; END $$""")
    pg.execute("INSERT INTO orders VALUES (11, 'n11', %s)", (ts(30),))
    src = SqlSource(f"{PG_URL}?schema={pg_orders}",
                    query="SELECT id, name, modified_at, canary(modified_at) AS seen FROM orders")
    s = run(src, db)
    assert (s["source_records"], s["inserted"]) == (2, 1)
    with pytest.raises(hiwater.HiwaterError, match="fetched a row below the window"):
        run(SqlSource(f"{PG_URL}?schema={pg_orders}",
                      query="SELECT id, name, modified_at, canary(modified_at) AS seen FROM orders"),
            tmp_path / "fresh.db")  # a first run reads everything: the canary fires


def test_pg_order_and_ties_across_batch_boundaries(pg, pg_schema, tmp_path):
    pg.execute("CREATE TABLE orders (id int PRIMARY KEY, name text, modified_at timestamptz)")
    ids = [7, 3, 9, 1, 5, 2, 8, 4, 6, 10, 11, 12]
    with pg.cursor() as cur:  # inserted out of order; ids 1..10 share one timestamp
        cur.executemany("INSERT INTO orders VALUES (%s, %s, %s)",
                        [(i, f"n{i}", ts(5) if i <= 10 else ts(i)) for i in ids])
    db = tmp_path / "t.db"
    src = pg_source(pg_schema, batch_size=3)
    order = []
    real = src._batch

    def spy(chunk, first):
        b = real(chunk, first)
        order.extend(zip(b.table.column("modified_at").to_pylist(), b.table.column("id").to_pylist()))
        return b

    src._batch = spy
    rec = Recording(src)
    s = run(rec, db, batch_size=3)
    assert rec.seen == [3, 3, 3, 3] and order == sorted(order) and [i for _, i in order] == list(range(1, 13))
    assert (s["inserted"], s["new_watermark"]) == (12, "2025-01-15T08:12:00+00:00")
    # a row sharing the watermark that commits later is still caught (inclusive boundary)
    pg.execute("INSERT INTO orders VALUES (13, 'n13', %s)", (ts(12),))
    s = run(pg_source(pg_schema, batch_size=3), db, batch_size=3)
    assert (s["inserted"], s["unchanged"], s["total_in_target"]) == (1, 1, 13)


def test_pg_null_cursors_are_quarantined_every_run(pg, pg_orders, tmp_path):
    pg.execute("INSERT INTO orders VALUES (20, 'no cursor', NULL)")
    db = tmp_path / "t.db"
    s = run(pg_source(pg_orders), db)
    assert (s["rejected"], s["loaded"]) == (1, 10)
    s = run(pg_source(pg_orders), db)  # the window never hides a NULL cursor
    assert s["rejected"] == 1
    q = hiwater.quarantine_list(db=str(db))
    assert [(json.loads(x["key"]), x["reason"], x["seen"]) for x in q] == [([20], "invalid", 2)]
    assert "null" in q[0]["detail"]


PG_TYPES = """CREATE TABLE typed (id int PRIMARY KEY, big bigint, num numeric(12,4), txt text, vc varchar(10),
    ts timestamp, tstz timestamptz, d date, js json, jb jsonb, flag boolean, modified_at timestamptz)"""


def test_pg_type_mapping(pg, pg_schema, tmp_path):
    pg.execute(PG_TYPES)
    pg.execute("""INSERT INTO typed VALUES (1, 9007199254740993, 1234.5678, 'tëxt', 'v',
        '2025-01-15 08:00:00.123456', '2025-01-15 09:00:00.654321+01', '2025-01-02', '{"b": 1, "a": [1,2]}',
        '{"b": 1, "a": 2}', true, '2025-01-15 08:00:00+00'), (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
        NULL, NULL, '2025-01-15 08:01:00+00')""")
    src = SqlSource(PG_URL, table=f"{pg_schema}.typed")
    schema = next(src.batches()).table.schema
    src.close()
    assert {f.name: str(f.type) for f in schema} == {
        "id": "int64", "big": "int64", "num": "decimal128(12, 4)", "txt": "string", "vc": "string",
        "ts": "timestamp[us]", "tstz": "timestamp[us, tz=UTC]", "d": "date32[day]", "js": "string",
        "jb": "string", "flag": "bool", "modified_at": "timestamp[us, tz=UTC]"}
    db = tmp_path / "t.db"
    s = run(SqlSource(PG_URL, table=f"{pg_schema}.typed"), db, table="typed")
    assert (s["inserted"], s["rejected"]) == (2, 0)
    row = read_table(f"sqlite:///{db}", "typed")[0]
    assert row == {"id": 1, "big": 9007199254740993, "num": "1234.5678", "txt": "tëxt", "vc": "v",
                   "ts": "2025-01-15T08:00:00.123456", "tstz": "2025-01-15T08:00:00.654321",
                   "d": "2025-01-02", "js": '{"b": 1, "a": [1,2]}', "jb": '{"a": 2, "b": 1}', "flag": 1,
                   "modified_at": "2025-01-15T08:00:00"}


def test_pg_to_pg_keeps_timestamptz_and_microseconds(pg, pg_schema, tmp_path, request):
    from .conftest import target_for
    pg.execute("CREATE TABLE orders (id int PRIMARY KEY, modified_at timestamptz, ts timestamp)")
    pg.execute("INSERT INTO orders VALUES (1, '2025-01-15 08:00:00.000001+00', '2025-01-15 08:00:00.999999')")
    url = target_for("postgresql", tmp_path, request)
    s = hiwater.load(source=SqlSource(PG_URL, table=f"{pg_schema}.orders"), target=url, table="orders",
                     now=NOW).to_dict()
    assert s["new_watermark"] == "2025-01-15T08:00:00.000001+00:00"
    assert read_table(url, "orders") == [{"id": 1, "modified_at": "2025-01-15T08:00:00.000001",
                                          "ts": "2025-01-15T08:00:00.999999"}]


@pytest.mark.parametrize("column, sqltype, values, param", [
    ("ts", "timestamp", ["2025-01-15 08:00:00", "2025-01-15 09:00:00"], dt.datetime(2025, 1, 15, 9, 0)),
    ("d", "date", ["2025-01-01", "2025-01-02"], dt.date(2025, 1, 2)),
    ("n", "bigint", [10, 20], 20),
])
def test_pg_cursor_kinds_push_down_as_their_own_type(pg, pg_schema, tmp_path, column, sqltype, values, param):
    pg.execute(f"CREATE TABLE k (id int PRIMARY KEY, {column} {sqltype})")
    pg.execute(f"INSERT INTO k VALUES (1, %s), (2, %s)", values)
    db = tmp_path / "t.db"
    run(SqlSource(PG_URL, table=f"{pg_schema}.k", cursor=column), db, cursor=column, table="k")
    src = SqlSource(PG_URL, table=f"{pg_schema}.k", cursor=column)
    s = run(src, db, cursor=column, table="k")
    assert src.last_params == [param] and src.exact is True and s["source_records"] == 1


def test_pg_query_with_percent_and_semicolon(pg, pg_orders, tmp_path):
    src = SqlSource(f"{PG_URL}?schema={pg_orders}", query="SELECT * FROM orders WHERE name LIKE 'n1%';")
    s = run(src, tmp_path / "t.db")
    assert s["inserted"] == 2  # n1, n10


def test_the_cli_reads_a_source_and_checks_its_options(hw, pg, pg_orders, tmp_path, monkeypatch):
    db = tmp_path / "t.db"
    r = hw("load", "--source", PG_URL, "--source-table", f"{pg_orders}.orders", "--db", db, "--now", NOW)
    assert r.code == 0, r.err
    assert r.json["loaded"] == 10 and read_table(f"sqlite:///{db}", "orders")[0]["name"] == "n1"
    monkeypatch.setenv("HIWATER_SOURCE_URL", f"{PG_URL}?schema={pg_orders}")
    r = hw("load", "--source-table", "orders", "--db", db, "--now", NOW)
    assert r.code == 0 and r.json["source_records"] == 1, r.err  # the window: only the row at the watermark
    cases = [
        (["--input", "x.json", "--source", PG_URL], "error: give --input or --source, not both"),
        (["--source", PG_URL], "error: --source needs exactly one of --source-table TABLE or --query 'SELECT …'"),
        (["--source", PG_URL, "--source-table", "t", "--query", "SELECT 1"],
         "error: --source needs exactly one of --source-table TABLE or --query 'SELECT …'"),
        (["--input", "x.json", "--query", "SELECT 1"],
         "error: --source-table and --query read a database: give --source URL too"),
        (["--source", "oracle://x/y", "--source-table", "t"],
         "error: --source oracle://x/y: unknown database kind 'oracle' (use postgresql://, mysql://, sqlite:/// "
         "or duckdb:///)"),
        (["--source", PG_URL, "--source-table", f"{pg_orders}.orders", "--cursor", "nope"],
         "error: --cursor nope: the source has no such column (it has id, name, modified_at)"),
    ]
    monkeypatch.delenv("HIWATER_SOURCE_URL")
    for args, line in cases:
        r = hw("load", "--db", tmp_path / "other.db", *args)
        assert (r.code, r.err_lines) == (2, [line]), args
    r = hw("load", "--db", tmp_path / "other.db", "--source", PG_URL, "--source-table", "no_such_table")
    assert r.code == 2 and r.err_lines[0].startswith("error: --source-table no_such_table: relation"), r.err


def test_passwords_never_appear_in_output_history_or_quarantine(hw, pg, pg_orders, tmp_path, monkeypatch):
    pg.execute("INSERT INTO orders VALUES (20, 'x', NULL)")
    monkeypatch.setenv("HW_PW", "hunter2-secret")
    url = PG_URL.replace("postgres@", "postgres:${HW_PW}@")  # trust auth: any password connects
    db = tmp_path / "t.db"
    r = hw("-v", "load", "--source", url, "--source-table", f"{pg_orders}.orders", "--db", db, "--now", NOW,
           "--details")
    assert r.code == 0, r.err
    everything = r.out + r.err + json.dumps(hiwater.history(db=str(db)), default=str) + \
        json.dumps(hiwater.quarantine_list(db=str(db)), default=str)
    assert "hunter2" not in everything and "postgres:***@" in everything
    r = hw("load", "--source", "mysql://root:hunter2-secret@127.0.0.1:3306/no_such_db", "--source-table", "t",
           "--db", db)
    assert r.code == 1 and "hunter2" not in r.err and "root:***@" in r.err, r.err


# --- MariaDB / MySQL ------------------------------------------------------------------------

def test_mysql_first_run_reads_all_then_only_the_window(mysql, my_orders, tmp_path):
    db = tmp_path / "t.db"
    src = my_source(my_orders)
    assert run(src, db)["loaded"] == 10
    assert src.last_sql == "SELECT * FROM `orders` ORDER BY `modified_at`, `id`"
    with mysql.cursor() as cur:
        cur.execute("INSERT INTO orders VALUES (11, 'n11', %s), (12, 'n12', %s)",
                    (ts(20).replace(tzinfo=None), ts(3).replace(tzinfo=None)))
    src = my_source(my_orders)
    s = run(src, db)
    assert src.last_sql == ("SELECT * FROM `orders` WHERE (`modified_at` >= %s) OR `modified_at` IS NULL"
                            " ORDER BY `modified_at`, `id`")
    assert src.last_params == [dt.datetime(2025, 1, 15, 8, 10)]
    assert (s["source_records"], s["inserted"], s["unchanged"]) == (2, 1, 1)


def test_mysql_order_ties_and_null_cursors(mysql, mysql_db, tmp_path):
    with mysql.cursor() as cur:
        cur.execute("CREATE TABLE orders (id int PRIMARY KEY, name varchar(20), modified_at datetime(6))")
        rows = [(i, f"n{i}", ts(5).replace(tzinfo=None) if i <= 7 else ts(i).replace(tzinfo=None))
                for i in [5, 3, 9, 1, 7, 2, 8, 4, 6]] + [(10, "none", None)]
        cur.executemany("INSERT INTO orders VALUES (%s, %s, %s)", rows)
    order = []
    src = my_source(mysql_db, batch_size=2)
    real = src._batch

    def spy(chunk, first):
        b = real(chunk, first)
        order.extend(b.table.column("id").to_pylist())
        return b

    src._batch = spy
    s = run(src, tmp_path / "t.db", batch_size=2)
    assert order[order.index(1):] == [1, 2, 3, 4, 5, 6, 7, 8, 9]  # MariaDB sorts NULL first
    assert (s["inserted"], s["rejected"]) == (9, 1)
    s = run(my_source(mysql_db, batch_size=2), tmp_path / "t.db", batch_size=2)
    assert (s["rejected"], s["unchanged"], s["source_records"]) == (1, 1, 2)


def test_mysql_type_mapping(mysql, mysql_db, tmp_path):
    with mysql.cursor() as cur:
        cur.execute("""CREATE TABLE typed (id int PRIMARY KEY, big bigint, num decimal(12,4), txt text,
            vc varchar(10), ts datetime(6), tstamp timestamp(6) NULL, d date, js json, flag boolean,
            modified_at datetime(6))""")
        cur.execute("SET time_zone = '+00:00'")
        cur.execute("""INSERT INTO typed VALUES (1, 9007199254740993, 1234.5678, 'tëxt', 'v',
            '2025-01-15 08:00:00.123456', '2025-01-15 08:00:00.654321', '2025-01-02', '{"a": 1}', true,
            '2025-01-15 08:00:00')""")
    src = my_source(mysql_db, table="typed")
    schema = next(src.batches()).table.schema
    src.close()
    assert {f.name: str(f.type) for f in schema} == {
        "id": "int64", "big": "int64", "num": "decimal128(12, 4)", "txt": "string", "vc": "string",
        "ts": "timestamp[us]", "tstamp": "timestamp[us, tz=UTC]", "d": "date32[day]", "js": "string",
        "flag": "int64", "modified_at": "timestamp[us]"}
    db = tmp_path / "t.db"
    s = run(my_source(mysql_db, table="typed"), db, table="typed")
    assert (s["inserted"], s["rejected"]) == (1, 0)
    assert read_table(f"sqlite:///{db}", "typed")[0] == {
        "id": 1, "big": 9007199254740993, "num": "1234.5678", "txt": "tëxt", "vc": "v",
        "ts": "2025-01-15T08:00:00.123456", "tstamp": "2025-01-15T08:00:00.654321", "d": "2025-01-02",
        "js": '{"a": 1}', "flag": 1, "modified_at": "2025-01-15T08:00:00"}


def test_mysql_timestamp_cursor_is_an_instant(mysql, mysql_db, tmp_path):
    with mysql.cursor() as cur:
        cur.execute("CREATE TABLE e (id int PRIMARY KEY, at timestamp(6) NULL)")
        cur.execute("SET time_zone = '+02:00'")  # written in another zone: still the same instants
        cur.execute("INSERT INTO e VALUES (1, '2025-01-15 10:00:00'), (2, '2025-01-15 11:00:00')")
    db = tmp_path / "t.db"
    s = run(my_source(mysql_db, table="e", cursor="at"), db, cursor="at", table="e")
    assert s["new_watermark"] == "2025-01-15T09:00:00+00:00"
    src = my_source(mysql_db, table="e", cursor="at")
    run(src, db, cursor="at", table="e")
    assert src.last_params == [dt.datetime(2025, 1, 15, 9, 0)]  # the session reads UTC


# --- SQLite and DuckDB files -------------------------------------------------------------------

def test_sqlite_source_text_timestamps_push_down_by_day(tmp_path):
    import sqlite3
    path = tmp_path / "src.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, name TEXT, modified_at TEXT)")
    con.executemany("INSERT INTO orders VALUES (?,?,?)",
                    [(1, "a", "2025-01-10T08:00:00"), (2, "b", "2025-01-15 08:00:00"),
                     (3, "c", "2025-01-15T09:00:00+01:00"), (4, "d", None), (5, "e", "2025-01-15T08:30:00Z")])
    con.commit()
    con.close()
    db = tmp_path / "t.db"
    s = run(SqlSource(f"sqlite:///{path}", table="orders"), db)
    assert (s["inserted"], s["rejected"], s["new_watermark"]) == (4, 1, "2025-01-15T08:30:00+00:00")
    src = SqlSource(f"sqlite:///{path}", table="orders")
    s = run(src, db)
    assert src.last_params == ["2025-01-13"] and src.exact is False
    assert s["source_records"] == 4  # id 1 (days below) never read; the rest re-read and unchanged


def test_duckdb_source_streams_arrow_batches(tmp_path):
    import duckdb
    path = tmp_path / "src.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE orders (id BIGINT, name VARCHAR, modified_at TIMESTAMPTZ, tags VARCHAR[])")
    con.execute("INSERT INTO orders SELECT i, 'n' || i, TIMESTAMPTZ '2025-01-15 08:00:00+00' + i * INTERVAL 1 MINUTE,"
                " ['a', 'b'] FROM range(1, 101) t(i)")
    con.close()
    db = tmp_path / "t.db"
    rec = Recording(SqlSource(f"duckdb:///{path}", table="orders", batch_size=30))
    s = run(rec, db, batch_size=30)
    assert s["inserted"] == 100 and sum(rec.seen) == 100 and max(rec.seen) <= 30 and len(rec.seen) >= 4
    assert read_table(f"sqlite:///{db}", "orders")[0]["tags"] == '["a","b"]'
    src = SqlSource(f"duckdb:///{path}", table="orders")
    s = run(src, db)
    assert 'WHERE ("modified_at" >= ?)' in src.last_sql and s["source_records"] == 1


def test_sources_yield_arrow_record_batches_of_the_batch_size(pg, pg_orders):
    src = pg_source(pg_orders, batch_size=4)
    sizes = [len(b) for b in src.batches()]
    src.close()
    assert sizes == [4, 4, 2]
    assert isinstance(pa.table({"x": [1]}), pa.Table)

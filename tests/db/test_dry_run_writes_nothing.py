"""Issue 21, item 10 (the ``--dry-run`` part): a dry run creates nothing. Against a target that
does not exist yet, no file, lock file, folder or schema appears; against one that exists without
hiwater's tables, none of the ``_hiwater_`` tables (or the data table) is made (the stream's lock
file beside an existing SQLite or DuckDB file is still taken, as by any run)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from .dbutil import PG_URL, fresh_name

HIWATER = [sys.executable, "-m", "hiwater.cli"]
NOW = "2025-06-01T00:00:00Z"


@pytest.fixture
def src(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": i, "modified_at": f"2025-01-15T0{i}:00:00"}) + "\n" for i in range(3)))
    return str(path)


def dry(src, *target):
    out = subprocess.run(HIWATER + ["load", "--input", src, "--table", "t", "--now", NOW, "--dry-run",
                                    "--details", *target], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["inserted"] == 3 and res["dry_run"] is True
    return res


def listing(folder) -> set:
    return {p.name for p in folder.iterdir()}


@pytest.mark.parametrize("how", ["--db", "sqlite", "duckdb", "delta"])
def test_a_new_local_target_is_not_created(tmp_path, src, how):
    if how == "duckdb":
        pytest.importorskip("duckdb")
    if how == "delta":
        pytest.importorskip("deltalake")
    out = tmp_path / "out"
    out.mkdir()
    path = out / ("lake" if how == "delta" else "t.db")
    flags = {"--db": ["--db", str(path)], "sqlite": ["--target", f"sqlite:///{path}"],
             "duckdb": ["--target", f"duckdb:///{path}"], "delta": ["--target", f"delta://{path}"]}[how]
    dry(src, *flags)
    assert listing(out) == set()


def test_an_existing_sqlite_file_gets_no_table(tmp_path, src):
    db = tmp_path / "mine.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE other (x)")
    con.commit()
    con.close()
    dry(src, "--db", str(db))
    con = sqlite3.connect(db)
    names = {n for (n,) in con.execute("SELECT name FROM sqlite_master")}
    con.close()
    assert names == {"other"}
    # (the run still takes the stream's lock, whose file is hiwater's own: mine.db.hwlock)
    assert listing(tmp_path) - {"mine.db.hwlock"} == {"mine.db", "in.jsonl"}


def test_an_existing_duckdb_file_gets_no_table(tmp_path, src):
    duckdb = pytest.importorskip("duckdb")
    db = tmp_path / "mine.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE other (x INTEGER)")
    con.close()
    dry(src, "--target", f"duckdb:///{db}")
    con = duckdb.connect(str(db))
    names = {n for (n,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    con.close()
    assert names == {"other"}


def test_a_new_postgres_schema_is_not_created(pg_admin, src):
    name = fresh_name()
    try:
        dry(src, "--target", f"{PG_URL}?schema={name}")
        assert pg_admin.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,)).fetchone() is None
    finally:
        pg_admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def test_an_existing_postgres_schema_gets_no_table(pg_admin, pg_schema, src):
    dry(src, "--target", f"{PG_URL}?schema={pg_schema}")
    tables = pg_admin.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                              (pg_schema,)).fetchall()
    assert tables == []

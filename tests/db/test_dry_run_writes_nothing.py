"""Issue 21, item 10 (the ``--dry-run`` part): a dry run creates nothing. Against a target that
does not exist yet, no file, lock file, folder or schema appears; against one that exists without
hiwater's tables, none of the ``_hiwater_`` tables (or the data table) is made. Against a target
that holds a loaded stream, ``load --dry-run`` and the read commands (``status``, ``check``,
``history``, ``state show``, ``quarantine list``) leave every
file as it was, bytes and mtime, and make none (no ``<file>.hwlock`` lock file beside a SQLite or
DuckDB file that has none: a dry run only takes a lock whose file exists); on PostgreSQL every
table of the schema keeps its rows. ``verify`` records its result with the stream (issue 23)
and nothing else: it takes no lock, so it makes no lock file either."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys

import pytest

from .conftest import target_for
from .dbutil import PG_URL, TARGETS, fresh_name

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
    assert listing(tmp_path) == {"mine.db", "in.jsonl"}  # no lock file, no journal left


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


def files(folder) -> dict:
    """Every file under ``folder``: its bytes' digest, size and mtime."""
    out = {}
    for root, _, names in os.walk(folder):
        for n in names:
            p = os.path.join(root, n)
            st = os.stat(p)
            with open(p, "rb") as f:
                out[os.path.relpath(p, folder)] = (hashlib.sha256(f.read()).hexdigest(), st.st_size, st.st_mtime_ns)
    return out


def pg_contents(admin, schema: str) -> dict:
    """Every table of ``schema`` and its rows (as text, sorted)."""
    tables = [t for (t,) in admin.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                                          (schema,)).fetchall()]
    return {t: sorted(str(r) for r in admin.execute(f'SELECT * FROM "{schema}"."{t}"').fetchall()) for t in tables}


def cli(*argv):
    return subprocess.run(HIWATER + [str(a) for a in argv], capture_output=True, text=True)


# SQLite in the default suite; the other targets (~10 s each) under -m slow.
@pytest.mark.parametrize("kind", [k if k == "sqlite" else pytest.param(k, marks=pytest.mark.slow) for k in TARGETS])
def test_dry_and_read_commands_change_no_file_of_a_loaded_target(tmp_path, request, kind):
    """Issue 21: a dry run against an existing SQLite or DuckDB file made ``<file>.hwlock``."""
    if kind == "duckdb":
        pytest.importorskip("duckdb")
    if kind == "delta":
        pytest.importorskip("deltalake")
    out = tmp_path / "out"
    out.mkdir()
    url = target_for(kind, out, request)
    first = tmp_path / "first.jsonl"
    first.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": 1, "modified_at": "2025-01-15T01:00:00"}, {"id": 2, "modified_at": "2025-01-15T02:00:00"},
        {"id": 3, "modified_at": "garbage"}]))
    done = cli("load", "--input", first, "--table", "t", "--now", NOW, "--target", url)
    assert done.returncode == 0, done.stderr
    for lock in out.glob("*.hwlock"):  # a target copied from elsewhere, or made by another tool
        lock.unlink()
    more = tmp_path / "more.jsonl"
    more.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": 2, "modified_at": "2025-01-16T02:00:00"}, {"id": 4, "modified_at": "2025-01-16T04:00:00"},
        {"id": 5, "modified_at": "never"}]))
    schema = url.split("schema=")[1] if kind == "postgresql" else None
    admin = request.getfixturevalue("pg_admin") if schema else None
    before = files(out), (pg_contents(admin, schema) if schema else None)
    assert before[0] or schema
    commands = [
        ["load", "--input", more, "--table", "t", "--now", NOW, "--dry-run"],
        ["status"], ["check", "--warn-after", "100000d"], ["history"], ["state", "show"], ["quarantine", "list"],
    ]
    for argv in commands:
        done = cli(*argv, "--target", url)
        assert done.returncode == 0, (argv, done.stdout, done.stderr)
        after = files(out), (pg_contents(admin, schema) if schema else None)
        assert after == before, (argv, set(after[0]) ^ set(before[0]))
    done = cli("verify", "--input", first, "t", "--target", url)  # it writes its record, and no lock file
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert not list(out.glob("*.hwlock"))

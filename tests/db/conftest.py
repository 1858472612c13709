"""Fixtures for the database suites: a fresh schema or database per test, dropped after.

``target_url`` is parametrised over every target (a SQLite file, PostgreSQL, DuckDB, a Delta folder):
a test that takes it runs once per backend. ``pg_schema`` / ``mysql_db`` give a
source test its own namespace on the real servers.

A server that does not answer skips its tests with the reason; under ``CI=true``
it fails them instead, so CI can never pass by skipping.
"""

from __future__ import annotations

import pytest

from .dbutil import MYSQL_URL, PG_URL, TARGETS, fresh_name, mysql_connect, pg_connect, server_or_skip


@pytest.fixture(scope="session")
def pg_admin():
    conn = server_or_skip("PostgreSQL", PG_URL, pg_connect)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def mysql_admin():
    conn = server_or_skip("MariaDB", MYSQL_URL, mysql_connect)
    yield conn
    conn.close()


@pytest.fixture
def pg_schema(pg_admin):
    """A fresh PostgreSQL schema, dropped (with everything in it) after the test."""
    name = fresh_name()
    pg_admin.execute(f'CREATE SCHEMA "{name}"')
    yield name
    pg_admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def pg(pg_admin, pg_schema):
    """An autocommit connection whose search_path is the test's schema."""
    import psycopg
    conn = psycopg.connect(PG_URL, autocommit=True, options=f"-c search_path={pg_schema}")
    yield conn
    conn.close()


@pytest.fixture
def mysql_db(mysql_admin):
    """A fresh MariaDB/MySQL database, dropped after the test."""
    name = fresh_name()
    with mysql_admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    yield name
    with mysql_admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def mysql(mysql_db):
    conn = mysql_connect(MYSQL_URL, database=mysql_db)
    yield conn
    conn.close()


def target_for(kind: str, tmp_path, request) -> str:
    """A URL for a fresh, empty target of ``kind``; cleaned up when the test ends."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'target.db'}"
    if kind == "duckdb":
        return f"duckdb:///{tmp_path / 'target.duckdb'}"
    if kind == "delta":
        return f"delta://{tmp_path / 'lake'}"
    admin = request.getfixturevalue("pg_admin")
    name = fresh_name()

    def drop():
        admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')

    request.addfinalizer(drop)
    return f"{PG_URL}?schema={name}"


@pytest.fixture(params=TARGETS)
def target_url(request, tmp_path):
    """Every target in turn: ``sqlite:///…``, ``postgresql://…?schema=<fresh>``, ``duckdb:///…``."""
    return target_for(request.param, tmp_path, request)


@pytest.fixture
def target_kind(target_url):
    return target_url.split(":", 1)[0]

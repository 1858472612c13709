"""What only the PostgreSQL target does: schemas from the URL, the advisory lock, the SQL it runs."""

from __future__ import annotations

import pyarrow as pa
import pytest

import hiwater
from hiwater.errors import ConfigError, ConnectError, TargetError, UsageError
from hiwater.sources.base import RawBatch
from hiwater.targets import open_target
from hiwater.targets.pgbuild import array_literal, lock_key, quote, split_url, upsert_sql

from .conftest import target_for
from .dbutil import PG_URL, fresh_name


@pytest.fixture
def target_url(pg_admin, tmp_path, request):
    """A fresh PostgreSQL target (a schema of its own)."""
    return target_for("postgresql", tmp_path, request)

NOW = "2025-06-01T00:00:00Z"
SAMPLE_ROWS = [{"id": i, "modified_at": f"2025-01-15T0{i}:00:00"} for i in range(1, 4)]


def test_builders_render_the_sql():
    assert split_url("postgres://u:p@h:5/db?schema=a&state_schema=b&sslmode=require") == \
        ("postgresql://u:p@h:5/db?sslmode=require", {"schema": "a", "state_schema": "b"})
    assert upsert_sql('"s"."t"', ["id", "v"], ("id",)) == (
        'INSERT INTO "s"."t" AS t ("id", "v", "_hiwater_cursor", "_hiwater_run")'
        ' SELECT s."id", s."v", s."_hiwater_cursor", s."_hiwater_run" FROM pg_temp._hiwater_stage AS s'
        ' ON CONFLICT ("id") DO UPDATE SET "v" = EXCLUDED."v", "_hiwater_cursor" = EXCLUDED."_hiwater_cursor",'
        ' "_hiwater_run" = EXCLUDED."_hiwater_run" WHERE EXCLUDED."_hiwater_cursor" > t."_hiwater_cursor"'
        ' OR (EXCLUDED."_hiwater_cursor" = t."_hiwater_cursor" AND (EXCLUDED."_hiwater_run" = t."_hiwater_run"))')
    # a full load also replaces a row whose cursor stayed the same but whose content changed
    assert upsert_sql('"s"."t"', ["id", "v"], ("id",), refresh=True).endswith(
        ' AND (EXCLUDED."_hiwater_run" = t."_hiwater_run" OR t."v" IS DISTINCT FROM EXCLUDED."v"))')
    assert array_literal([1, 2.0], "bigint") == "{1,2}"
    assert array_literal(['a"b', "c\\d", ""], "text") == '{"a\\"b","c\\\\d",""}'
    assert quote('a"b') == '"a""b"'
    with pytest.raises(UsageError, match="63-byte limit"):
        quote("x" * 64)
    assert lock_key("s", "a") != lock_key("s", "b") != lock_key("t", "a")


def test_state_schema_keeps_the_meta_tables_apart(pg_admin, tmp_path):
    data, meta = fresh_name(), fresh_name()
    try:
        url = f"{PG_URL}?schema={data}&state_schema={meta}"
        path = tmp_path / "in.json"
        path.write_text(str(SAMPLE_ROWS).replace("'", '"'))
        s = hiwater.load(str(path), target=url, table="events", now=NOW).to_dict()
        assert s["loaded"] == 3
        tables = {(r[0], r[1]) for r in pg_admin.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema IN (%s, %s)",
            (data, meta))}
        assert tables == {(data, "events"), (meta, "_hiwater_state"), (meta, "_hiwater_history"),
                          (meta, "_hiwater_quarantine"), (meta, "_hiwater_files"), (meta, "_hiwater_verify")}
        assert hiwater.state_show(target=url)[0]["watermark"] == "2025-01-15T03:00:00"
    finally:
        for name in (data, meta):
            pg_admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def test_the_lock_is_a_transaction_scoped_advisory_lock(target_url, pg_admin):
    with open_target(target=target_url) as t, t.lock("events", 5):
        rows = pg_admin.execute(
            "SELECT l.locktype, l.mode, a.state, a.application_name FROM pg_locks l"
            " JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory'"
            " AND (l.classid::bigint << 32 | l.objid::bigint) = (%s::bigint & x'ffffffffffffffff'::bigint)",
            (lock_key(t.state_schema, "events"),)).fetchall()
        assert rows == [("advisory", "ExclusiveLock", "idle in transaction", "hiwater")]
        with open_target(target=target_url) as other:
            with pytest.raises(hiwater.LockTimeout, match="gave up after 0.3s"):
                with other.lock("events", 0.3):
                    pass
            with other.lock("another stream", 0.3):
                pass  # streams lock independently


def test_losing_the_lock_mid_run_commits_nothing(target_url, pg_admin):
    """If the lock's connection dies (here: terminated), the run fails instead of committing."""

    with open_target(target=target_url) as probe:
        key = lock_key(probe.state_schema, "events")  # only this test's lock: other runs on the server live on

    class KillsTheLock:
        description = "test"

        def batches(self):
            yield RawBatch(pa.table({"id": [1], "modified_at": ["2025-01-15T08:00:00"]}), "test", 1)
            pg_admin.execute("SELECT pg_terminate_backend(l.pid) FROM pg_locks l WHERE l.locktype = 'advisory'"
                             " AND (l.classid::bigint << 32 | l.objid::bigint)"
                             " = (%s::bigint & x'ffffffffffffffff'::bigint)", (key,))
            yield RawBatch(pa.table({"id": [2], "modified_at": ["2025-01-15T09:00:00"]}), "test", 2)

        def close(self):
            pass

    with pytest.raises(TargetError, match="lost the stream lock"):
        hiwater.load(source=KillsTheLock(), target=target_url, table="events", now=NOW)
    assert hiwater.state_show(target=target_url) == []


def test_run_ids_come_from_a_sequence_so_concurrent_streams_never_share_one(target_url, tmp_path):
    path = tmp_path / "in.json"
    path.write_text(str(SAMPLE_ROWS).replace("'", '"'))
    for stream in ("a", "b", "a"):
        hiwater.load(str(path), target=target_url, table=stream, now=NOW)
    assert [h["run_id"] for h in hiwater.history(target=target_url)] == [1, 2, 3]


def test_a_missing_driver_or_server_is_one_clear_error(monkeypatch):
    import builtins
    real = builtins.__import__

    def no_psycopg(name, *a, **kw):
        if name == "psycopg":
            raise ImportError(name)
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_psycopg)
    with pytest.raises(ConfigError) as e:
        open_target(target="postgresql://x/y")
    assert str(e.value) == ("a PostgreSQL target needs the psycopg driver, which is not installed "
                            "(pip install 'hiwater[postgres]')")
    monkeypatch.setattr(builtins, "__import__", real)
    t = open_target(target="postgresql://u:secret@127.0.0.1:1/db")
    with pytest.raises(ConnectError) as e:
        with t:
            pass
    assert str(e.value).startswith("postgresql://u:***@127.0.0.1:1/db: cannot connect:")
    assert "secret" not in str(e.value)


def test_libpq_parameters_pass_through_the_url(pg_admin):
    with open_target(target=PG_URL + "?application_name=ignored&connect_timeout=3") as t:
        assert t.schema == "public" and t.state_schema == "public"

"""4. Least privilege on PostgreSQL: every command works, or fails with one line naming the
missing privilege, under roles that hold only what they need.

- ``writer``: USAGE and CREATE on one target schema, nothing in ``public`` (PostgreSQL 15
  gives ``public`` no CREATE by default; it is revoked explicitly too), no CREATE on the
  database. With ``?schema=`` its schema, every command works and the ``_hiwater_*`` tables
  go there; without it, or with a ``state_schema`` it may not create, the run fails with one
  line that names the refused privilege, and nothing is written.
- ``reader``: USAGE on the source schema and SELECT on the one source table. As a source it
  works; as a target, or on another table, one line naming the privilege.
- A table the writer does not own (so it cannot add a column), and then may no longer update
  (the merge is ``INSERT … ON CONFLICT DO UPDATE``, which needs UPDATE even for new keys):
  one line each, nothing committed.

The test runs in a database of its own (``wt15_db_…``), so nothing another run left in the shared
database changes what it sees; the roles (prefix ``wt15_``) and the database are dropped after it.
"""

from __future__ import annotations

import json
import uuid

import pytest

from .harness import NOW, one_error_line, run

pytestmark = pytest.mark.reliability


def _t(minute: int) -> str:
    return f"2025-01-15T{minute // 60:02d}:{minute % 60:02d}:00"


@pytest.fixture
def roles():
    from db.dbutil import PG_URL, pg_connect, server_or_skip
    server = server_or_skip("PostgreSQL", PG_URL, pg_connect)
    tag = uuid.uuid4().hex[:8]
    # A database of its own: what other runs left in the shared database's `public` schema
    # (hiwater's own tables among them) must not change what the writer is refused there.
    dbname = f"wt15_db_{tag}"
    server.execute(f'CREATE DATABASE "{dbname}"')
    db_url = PG_URL.rsplit("/", 1)[0] + "/" + dbname
    admin = pg_connect(db_url)
    names = {"writer": f"wt15_w_{tag}", "reader": f"wt15_r_{tag}", "tgt": f"wt15_tgt_{tag}",
             "src": f"wt15_src_{tag}", "shared": f"wt15_shared_{tag}"}
    w, r = names["writer"], names["reader"]
    admin.execute(f'CREATE ROLE "{w}" LOGIN')
    admin.execute(f'CREATE ROLE "{r}" LOGIN')
    admin.execute(f'REVOKE CREATE ON SCHEMA public FROM "{w}", "{r}"')
    admin.execute(f'CREATE SCHEMA "{names["tgt"]}"')
    admin.execute(f'GRANT USAGE, CREATE ON SCHEMA "{names["tgt"]}" TO "{w}"')
    admin.execute(f'CREATE SCHEMA "{names["src"]}"')
    admin.execute(f'CREATE TABLE "{names["src"]}".orders (id bigint PRIMARY KEY, name text, modified_at timestamp)')
    admin.execute(f'CREATE TABLE "{names["src"]}".secret (id bigint PRIMARY KEY, modified_at timestamp)')
    admin.execute(f'INSERT INTO "{names["src"]}".orders SELECT i, \'o\' || i, '
                  f"timestamp '2025-01-15' + i * interval '1 minute' FROM generate_series(1, 50) i")
    admin.execute(f'GRANT USAGE ON SCHEMA "{names["src"]}" TO "{r}"')
    admin.execute(f'GRANT SELECT ON "{names["src"]}".orders TO "{r}"')
    base = db_url.rsplit("@", 1)[1]
    names["url"] = lambda role, q="": f"postgresql://{names[role]}@{base}" + (f"?{q}" if q else "")
    names["admin"] = admin
    try:
        yield names
    finally:
        for s in ("tgt", "src", "shared"):
            admin.execute(f'DROP SCHEMA IF EXISTS "{names[s]}" CASCADE')
        for role in (w, r):
            admin.execute(f'DROP OWNED BY "{role}" CASCADE')
        admin.close()
        server.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        for role in (w, r):
            server.execute(f'DROP OWNED BY "{role}" CASCADE')
            server.execute(f'DROP ROLE IF EXISTS "{role}"')
        server.close()


def _refused(done, *words) -> str:
    assert done.code in (1, 2), (done.code, done.out, done.err)
    line = one_error_line(done)
    assert any(w in line for w in words), line
    return line


@pytest.mark.slow
def test_every_command_under_least_privilege_works_or_names_the_missing_privilege(roles, tmp_path):
    admin = roles["admin"]
    tgt, src = roles["tgt"], roles["src"]
    data = tmp_path / "in.jsonl"
    recs = [{"id": i, "name": f"n{i}", "modified_at": _t(i)} for i in range(1, 30)]
    recs.append({"id": 99, "name": "bad", "modified_at": "garbage"})  # one for the quarantine
    data.write_text("".join(json.dumps(r) + "\n" for r in recs))
    w_ok = roles["url"]("writer", f"schema={tgt}")

    # the writer in its own schema: everything works, the state tables land there
    done = run(["load", "--input", data, "--target", w_ok, "--table", "events", "--now", NOW], tmp_path)
    assert done.code == 0, done.err
    meta = {r[0] for r in admin.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (tgt,))}
    assert {"events", "_hiwater_state", "_hiwater_history", "_hiwater_quarantine", "_hiwater_verify"} <= meta, meta
    for argv in (["history", "--target", w_ok], ["state", "show", "--target", w_ok],
                 ["quarantine", "list", "--target", w_ok], ["check", "--target", w_ok, "--warn-after", "1000d"]):
        d = run(argv, tmp_path)
        assert d.code == 0, (argv, d.err)
    d = run(["load", "--source", roles["url"]("reader", f"schema={src}"), "--source-table", "orders",
             "--target", w_ok, "--table", "orders", "--now", NOW], tmp_path)
    assert d.code == 0, d.err  # the reader reads, the writer writes
    assert admin.execute(f'SELECT count(*) FROM "{tgt}".orders').fetchone()[0] == 50
    # verify (the reader as its source) records its result where the writer may write; check reads it
    for argv in (["verify", "orders", "--target", w_ok, "--source", roles["url"]("reader", f"schema={src}")],
                 ["verify", "events", "--target", w_ok, "--input", data],
                 ["check", "--target", w_ok, "--verified", "1d"]):
        d = run(argv, tmp_path)
        assert d.code == 0, (argv, d.err)

    # the writer without ?schema= (public): refused, the privilege named, nothing written
    before = admin.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = %s",
                           (roles["writer"],)).fetchone()[0]
    d = run(["load", "--input", data, "--target", roles["url"]("writer"), "--table", "events", "--now", NOW],
            tmp_path)
    _refused(d, "permission denied for schema public")
    assert admin.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = %s",
                         (roles["writer"],)).fetchone()[0] == before
    # a state schema it may not create
    d = run(["load", "--input", data, "--target", roles["url"]("writer", f"schema={tgt}&state_schema={roles['shared']}"),
             "--table", "events2", "--now", NOW], tmp_path)
    _refused(d, "permission denied for database")
    assert "events2" not in {r[0] for r in admin.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s",
                                                         (tgt,))}

    # the reader as a target, and on a table it may not read
    d = run(["load", "--input", data, "--target", roles["url"]("reader", f"schema={src}"), "--table", "events",
             "--now", NOW], tmp_path)
    _refused(d, "permission denied for schema")
    d = run(["load", "--source", roles["url"]("reader", f"schema={src}"), "--source-table", "secret",
             "--db", tmp_path / "t.db", "--table", "secret", "--now", NOW], tmp_path)
    _refused(d, "permission denied for table secret")
    for argv in (["history", "--target", roles["url"]("reader", f"schema={tgt}")],
                 ["state", "show", "--target", roles["url"]("reader", f"schema={tgt}")]):
        _refused(run(argv, tmp_path), "permission denied")

    # a table the writer may read and insert into, not update; one it does not own
    admin.execute(f'CREATE TABLE "{tgt}".locked (id bigint PRIMARY KEY, name text, modified_at timestamptz,'
                  ' _hiwater_cursor bigint, _hiwater_run bigint)')
    admin.execute(f'GRANT SELECT, INSERT, UPDATE ON "{tgt}".locked TO "{roles["writer"]}"')
    first = tmp_path / "l1.jsonl"
    first.write_text("".join(json.dumps({"id": i, "name": "v1", "modified_at": _t(i)}) + "\n" for i in range(1, 6)))
    d = run(["load", "--input", first, "--target", w_ok, "--table", "locked", "--now", NOW], tmp_path)
    assert d.code == 0, d.err
    # the merge is INSERT … ON CONFLICT DO UPDATE: without UPDATE even new keys are refused
    admin.execute(f'REVOKE UPDATE ON "{tgt}".locked FROM "{roles["writer"]}"')
    upd = tmp_path / "l2.jsonl"
    upd.write_text(json.dumps({"id": 1, "name": "v2", "modified_at": _t(100)}) + "\n")
    wm = admin.execute(f'SELECT watermark FROM "{tgt}"._hiwater_state WHERE stream = %s', ("locked",)).fetchone()
    _refused(run(["load", "--input", upd, "--target", w_ok, "--table", "locked", "--now", NOW], tmp_path),
             "permission denied for table locked")
    newcol = tmp_path / "l3.jsonl"
    newcol.write_text(json.dumps({"id": 7, "name": "v1", "extra": 1, "modified_at": _t(101)}) + "\n")
    _refused(run(["load", "--input", newcol, "--target", w_ok, "--table", "locked", "--now", NOW], tmp_path),
             "must be owner of table locked")
    assert admin.execute(f'SELECT watermark FROM "{tgt}"._hiwater_state WHERE stream = %s',
                         ("locked",)).fetchone() == wm
    assert admin.execute(f'SELECT name FROM "{tgt}".locked WHERE id = 1').fetchone()[0] == "v1"

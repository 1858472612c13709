"""5. Secrets at rest: no password or token planted in a URL, an environment variable or a
project file lands in a table, a log line or an error message.

Planted: a password in the target URL's user part, one in the source URL's user part, a
``password=`` query parameter, and a token that reaches the project file only through
``${WT15_TOKEN}``. (The servers here trust 127.0.0.1, so the passwords are carried all the way
to the driver and ignored by the server: every code path that might copy them runs.) The
story: a project run with ``--log-format json -v``, a ``load`` with invalid records
(quarantine), a failed run (the source table gone), a target that refuses connections,
``history``, ``quarantine list``, ``state show``, ``--details`` summaries. Then every row of
every table of the target schema, every output and every log line is searched for each
secret (raw and URL-encoded).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from urllib.parse import quote

import pytest

from .harness import NOW, run, run_real

pytestmark = pytest.mark.reliability


@pytest.fixture
def pg_admin():
    from db.dbutil import PG_URL, pg_connect, server_or_skip
    conn = server_or_skip("PostgreSQL", PG_URL, pg_connect)
    yield conn
    conn.close()


@pytest.mark.slow
def test_no_planted_secret_reaches_a_table_a_log_or_an_error(pg_admin, tmp_path):
    tag = uuid.uuid4().hex[:8]
    schema = f"wt15_sec_{tag}"
    secrets = {
        "target password": f"TgtPw-{tag}-x@y:z",
        "source password": f"SrcPw-{tag}",
        "query password": f"QryPw-{tag}",
        "env token": f"EnvTok-{tag}",
    }
    pg_admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        pg_admin.execute(f'CREATE TABLE "{schema}".wt15_src (id bigint PRIMARY KEY, name text, modified_at text)')
        pg_admin.execute(f'INSERT INTO "{schema}".wt15_src VALUES (1, %s, %s), (2, %s, %s), (3, %s, %s)',
                         ("a", "2025-01-15T01:00:00", "b", "garbage", "c", "2025-01-15T02:00:00"))
        tpw = quote(secrets["target password"], safe="")
        target = f"postgresql://postgres:{tpw}@127.0.0.1:5432/test?schema={schema}"
        source = (f"postgresql://postgres:{secrets['source password']}@127.0.0.1:5432/test?schema={schema}"
                  f"&password={secrets['query password']}")
        (tmp_path / "hiwater.toml").write_text(
            "[defaults]\n"
            f'target = "postgresql://postgres:${{WT15_TOKEN}}@127.0.0.1:5432/test?schema={schema}"\n'
            "[streams.events]\n"
            f'source = "{source}"\n'
            'source-table = "wt15_src"\n'
            'cursor = "modified_at"\n')
        env = {"WT15_TOKEN": secrets["env token"], "HIWATER_PROJECT": str(tmp_path / "hiwater.toml")}
        outputs = []

        def go(argv, real=False):
            done = (run_real(argv, env=env) if real else run(argv, tmp_path, env))
            out, err = (done.stdout, done.stderr) if real else (done.out, done.err)
            outputs.append((" ".join(map(str, argv[:4])), out + "\n" + err))
            return done

        # a project run, JSON logs, verbose
        first = go(["--log-format", "json", "-v", "run", "--json"], real=True)
        assert first.returncode == 0, first.stderr
        # a load with invalid records into another table (quarantine), details
        src_file = tmp_path / "in.jsonl"
        src_file.write_text("".join(json.dumps(r) + "\n" for r in [
            {"id": 1, "name": "x", "modified_at": "2025-01-15T01:00:00"},
            {"id": 2, "name": "y", "modified_at": "not a time"},
            {"id": None, "name": "z", "modified_at": "2025-01-15T01:00:00"}]))
        go(["--log-format", "json", "-v", "load", "--input", src_file, "--target", target, "--table", "files",
            "--now", NOW, "--details"])
        # a failed run: the source table is gone
        pg_admin.execute(f'ALTER TABLE "{schema}".wt15_src RENAME TO wt15_src_gone')
        failed = go(["--log-format", "json", "-v", "run"], real=True)
        assert failed.returncode == 1, failed.stderr
        pg_admin.execute(f'ALTER TABLE "{schema}".wt15_src_gone RENAME TO wt15_src')
        # a load from the SQL source whose target refuses connections (port 1)
        bad = f"postgresql://postgres:{tpw}@127.0.0.1:1/test?schema={schema}&connect_timeout=2"
        d = go(["--log-format", "json", "load", "--source", source, "--source-table", "wt15_src", "--target", bad,
                "--table", "events2", "--cursor", "modified_at", "--now", NOW])
        assert d.code == 1
        # a source that refuses connections
        d = go(["load", "--source", source.replace(":5432/", ":1/") + "&connect_timeout=2", "--source-table",
                "wt15_src", "--target", target, "--table", "events3", "--cursor", "modified_at", "--now", NOW])
        assert d.code == 1
        # reading it back
        go(["history", "--target", target])
        go(["history", "--target", target, "--json"])
        go(["quarantine", "list", "--target", target])
        go(["state", "show", "--target", target])
        go(["--log-format", "json", "-v", "run", "--json"], real=True)  # a second, successful run

        texts = list(outputs)
        for (t,) in pg_admin.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)).fetchall():
            rows = pg_admin.execute(f'SELECT x::text FROM "{schema}"."{t}" AS x').fetchall()
            texts.append((f"table {t}", "\n".join(r[0] for r in rows)))
        assert any(t.startswith("table _hiwater_quarantine") and "not a time" in x for t, x in texts)
        assert any(t.startswith("table _hiwater_history") and "failed" in x for t, x in texts)
        leaks = []
        for what, text in texts:
            for name, secret in secrets.items():
                for form in {secret, quote(secret, safe=""), quote(secret)}:
                    if form in text:
                        leaks.append(f"{name} in {what}")
        assert not leaks, leaks
        assert len(texts) >= 15
    finally:
        pg_admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        subprocess.run(["true"])

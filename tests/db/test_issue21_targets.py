"""Issue 21 on every target: run ids never repeat after ``stream drop``, and the read commands
(``validate --connect``, ``status``, ``check``, ``history``, ``quarantine list``) never create or
change anything on a target that does not exist yet."""

from __future__ import annotations

import os

import pytest

import hiwater

NOW = "2025-01-20T00:00:00Z"
RECORDS = [{"id": i, "modified_at": "2025-01-15T08:00:00Z", "v": i} for i in range(3)]


def load(url, **kw):
    return hiwater.load(list(RECORDS), target=url, table="t", now=NOW, **kw).to_dict()


def test_a_reload_after_drop_keeping_the_table_is_unchanged(target_url):
    """Item 3: the drop deletes the history, but not the counter of run ids: the rows of the
    kept table were written by earlier runs, so the reload finds them unchanged."""
    first = load(target_url)
    assert first["inserted"] == 3
    load(target_url)
    hiwater.stream_drop(stream="t", target=target_url)
    again = load(target_url)
    assert again["run_id"] > first["run_id"] + 1
    assert again["unchanged"] == 3 and again["updated"] == 0 and again["loaded"] == 0


def _exists(url: str) -> bool:
    """Whether anything of the target was made: its file, its folder, its PostgreSQL schema."""
    if url.startswith(("sqlite", "duckdb")):
        return os.path.exists(url.split(":///", 1)[1])
    if url.startswith("delta"):
        return os.path.exists(url.split("://", 1)[1])
    from .dbutil import PG_URL, pg_connect
    schema = url.rsplit("schema=", 1)[1]
    with pg_connect(PG_URL) as conn:
        return conn.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
                            (schema,)).fetchone() is not None


def test_read_commands_create_nothing(target_url, tmp_path):
    """Items 10 and 12: validate --connect, status, check, history and quarantine list on a target
    not made yet create no file, folder or schema; named directly, a missing file is exit 2."""
    from .readback import cli
    (tmp_path / "a.jsonl").write_text('{"id": 1, "modified_at": "2025-01-15T08:00:00Z"}\n')
    project = tmp_path / "hiwater.toml"
    project.write_text(f'[streams.t]\ninput = "a.jsonl"\ntarget = "{target_url}"\nerror-after = "1d"\n')
    assert cli("validate", "--connect", "--project", project).code == 0
    r = cli("status", "--project", project, "--json")
    assert r.code == 0 and r.json[0]["last_outcome"] == "never run"
    assert cli("check", "--project", project).code == 1  # never loaded: past every limit
    for cmd in (("history",), ("quarantine", "list"), ("status",), ("state", "show")):
        r = cli(*cmd, "--target", target_url)
        assert r.code in (0, 2), (cmd, r.err)
        assert r.code == 0 or "no such database" in r.err
    assert not _exists(target_url)

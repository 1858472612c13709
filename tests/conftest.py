"""Shared fixtures: run the CLI in-process, write input files, reopen the target."""

from __future__ import annotations

import io
import json
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from hiwater.cli import main

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample_input.txt"
NOW = "2025-06-01T00:00:00Z"  # a fixed clock for the future guard


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self):
        return json.loads(self.out)

    @property
    def err_lines(self):
        return [line for line in self.err.splitlines() if line.strip()]


@pytest.fixture
def hw(capsys, monkeypatch):
    """Run ``hiwater ARGS`` in-process; returns code, stdout, stderr."""

    def run(*args, stdin: bytes | None = None) -> Result:
        capsys.readouterr()
        if stdin is not None:
            fake = io.TextIOWrapper(io.BytesIO(stdin))
            monkeypatch.setattr(sys, "stdin", fake)
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def write_jsonl(path: Path, records) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def rec(i, t, **extra):
    """A record with id ``i`` and cursor ``2025-01-15T<t>`` (``t`` like ``"10:00"``)."""
    r = {"id": i, "name": f"n{i}", "modified_at": f"2025-01-15T{t}:00" if len(t) == 5 else t}
    r.update(extra)
    return r


def sqlite_dict(db, sql: str) -> dict:
    """``{first column: second column}`` of a query on a SQLite file, read straight from SQLite."""
    con = sqlite3.connect(db)
    try:
        return dict(con.execute(sql))
    finally:
        con.close()


def rows(db: Path, table: str = "events") -> dict:
    """The target table as ``{id: (name, modified_at)}``, read straight from SQLite."""
    con = sqlite3.connect(db)
    try:
        return {r[0]: (r[1], r[2]) for r in con.execute(f'SELECT id, name, modified_at FROM "{table}"')}
    finally:
        con.close()


def watermark(db: Path, stream: str = "events"):
    con = sqlite3.connect(db)
    try:
        row = con.execute("SELECT watermark FROM _hiwater_state WHERE stream = ?", (stream,)).fetchone()
        return row[0] if row else None
    finally:
        con.close()

"""The terminal side of issue 24: ``history`` and ``status`` tables fit the terminal (80 and 120
columns, by ``$COLUMNS``), leaving out the least important columns, never cutting a watermark;
``--wide`` shows every column; ``hiwater run`` shows each stream's progress, and after Ctrl-C
says which streams committed."""

from __future__ import annotations

import pytest

from conftest import NOW, rec, write_jsonl
from test_ui import load_runs

HISTORY = ["run_id", "window_index", "stream", "finished_at", "mode", "outcome", "source_records", "inserted",
           "updated", "unchanged", "late", "future", "rejected", "watermark_before", "watermark_after",
           "duration_s", "error"]


@pytest.fixture
def terminal(monkeypatch):
    """Standard output is a terminal of ``width`` columns (``$COLUMNS``, as a shell sets it)."""
    import sys

    def be(width: int) -> None:
        monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
        monkeypatch.setenv("COLUMNS", str(width))
        monkeypatch.setenv("NO_COLOR", "1")  # plain text, to measure
    return be


def _lines(out: str) -> list:
    return out.rstrip("\n").splitlines()


def test_a_pipe_gets_the_whole_table(hw, tmp_path, monkeypatch):
    db = tmp_path / "t.db"
    load_runs(db)
    monkeypatch.setenv("COLUMNS", "80")  # pytest-xdist's workers set it; a pipe has no width
    assert "hidden" not in hw("status", "--db", db).out


@pytest.mark.parametrize("width", [80, 120])
def test_history_and_status_fit_the_terminal_and_keep_watermarks_whole(hw, tmp_path, terminal, width):
    db = tmp_path / "t.db"
    load_runs(db, "a_rather_long_stream_name")
    load_runs(db, "events", runs=2)
    terminal(width)
    history = hw("history", "--db", db)
    status = hw("status", "--db", db, "--now", NOW)
    marks = [h["watermark_after"] for h in hw("history", "--db", db, "--json").json]
    for r in (history, status):
        assert r.code == 0
        assert max(len(line) for line in _lines(r.out)) <= width, r.out
        assert "--wide shows them" in r.out
    header = next(line for line in _lines(history.out) if "run_id" in line)
    shown = [c for c in HISTORY if f" {c} " in header]
    assert {"run_id", "stream", "outcome", "watermark_after"} <= set(shown)  # whole names, not cut
    assert all(m in history.out for m in marks)
    assert all(w["watermark"] in status.out for w in hw("status", "--db", db, "--json").json)
    if width == 120:
        assert {"inserted", "rejected"} <= set(shown)
    hidden = _lines(history.out)[-1] if "hidden" in _lines(history.out)[-1] else " ".join(_lines(history.out)[-3:])
    assert all(c in hidden for c in set(HISTORY) - set(shown) - {"error"})


def test_wide_shows_every_column(hw, tmp_path, terminal):
    db = tmp_path / "t.db"
    load_runs(db)
    terminal(80)
    r = hw("history", "--db", db, "--wide")
    header = next(line for line in _lines(r.out) if "run_id" in line)
    assert all(f" {c} " in header for c in HISTORY) and "hidden" not in r.out

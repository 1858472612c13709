"""The terminal side of issue 24: ``history`` and ``status`` tables fit the terminal (80 and 120
columns, by ``$COLUMNS``), leaving out the least important columns, never cutting a watermark;
``--wide`` shows every column; ``hiwater run`` shows each stream's progress, and after Ctrl-C
says which streams committed."""

from __future__ import annotations

import pytest

import hiwater
import hiwater.stream

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


def _project(tmp_path, names=("a", "b", "c")):
    db = tmp_path / "p.db"
    text = f'[defaults]\ndb = "{db}"\n'
    for i, n in enumerate(names):
        inp = write_jsonl(tmp_path / f"{n}.jsonl", [rec(10 * i + j, f"1{j}:00") for j in range(3)])
        text += f'[streams.{n}]\ninput = "{inp}"\n'
    project = tmp_path / "hiwater.toml"
    project.write_text(text)
    return project, db


def test_run_shows_each_stream_running_then_done_or_failed(hw, tmp_path):
    project, _ = _project(tmp_path)
    (tmp_path / "b.jsonl").write_text("{not json\n")
    r = hw("run", "--project", project, "--progress", "always")
    assert r.code == 1
    lines = [line for line in r.err_lines if line.startswith("hiwater: [")]
    assert lines[:2] == ["hiwater: [a] running", lines[1]] and lines[1].startswith("hiwater: [a] done, 3 loaded")
    assert lines[2] == "hiwater: [b] running" and lines[3].startswith("hiwater: [b] failed: ")
    assert lines[4:6] == ["hiwater: [c] running", lines[5]] and "done, 3 loaded" in lines[5]
    assert "hiwater: [" not in hw("run", "--project", project, "--progress", "never").err


def test_after_ctrl_c_run_says_which_streams_committed(hw, tmp_path, monkeypatch):
    project, db = _project(tmp_path)
    real = hiwater.stream.run

    def run(spec, **kw):
        if spec.options.stream == "b":
            raise KeyboardInterrupt  # Ctrl-C while stream b loads
        return real(spec, **kw)

    monkeypatch.setattr(hiwater.stream, "run", run)
    r = hw("run", "--project", project)
    assert r.code == 1
    assert r.err_lines[-2:] == ["interrupted: committed: a; not committed: b (interrupted), c (not started)",
                                "error: interrupted; nothing of the interrupted transaction was committed"]
    assert hiwater.state_show(db=str(db), stream="a")[0]["watermark"] is not None

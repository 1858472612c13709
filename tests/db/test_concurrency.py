"""Eight loaders started at once on one stream, on every target.

Each trial starts eight ``hiwater load`` processes together against a fresh target. The
lock must let one work at a time: exactly one run inserts the data and the other seven
find it unchanged; the runs' [started, finished] intervals in the history never overlap;
every process ends cleanly (exit 0, or 1 with the documented lock-timeout message); and
the final table and watermark equal those of a single run.

The default suite runs one trial per target; ``-m slow`` runs eight in CI and twenty with
``HIWATER_RELIABILITY=full`` (or ``HIWATER_DB_CONCURRENCY_TRIALS=N``).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import hiwater
from sizes import env_int

from .conftest import target_for
from .dbutil import read_table

NOW = "2025-06-01T00:00:00Z"
N_LOADERS = 8
N_ROWS = 2000


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("conc")
    path = d / "events.jsonl"
    with open(path, "w") as f:
        for i in range(N_ROWS):
            f.write(json.dumps({"id": i, "name": f"n{i}", "v": i * 1.5,
                                "modified_at": f"2025-01-15T{8 + i % 10:02d}:{i % 60:02d}:{(i * 7) % 60:02d}"}) + "\n")
    ref_db = d / "ref.db"
    ref = hiwater.load(str(path), db=str(ref_db), table="events", now=NOW, batch_size=500).to_dict()
    return path, ref, read_table(f"sqlite:///{ref_db}", "events")


def one_trial(kind, tmp_path, request, data, trial):
    path, ref, ref_rows = data
    folder = tmp_path / f"trial{trial}"
    folder.mkdir()
    url = target_for(kind, folder, request)
    cmd = [sys.executable, "-m", "hiwater.cli", "load", "--input", str(path), "--target", url, "--table", "events",
           "--now", NOW, "--details", "--lock-timeout", "120s", "--batch-size", "500"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(N_LOADERS)]
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    summaries = []
    for code, out, err in results:
        if code == 1:
            assert "gave up after" in err and len(err.strip().splitlines()) == 1, err
            continue
        assert code == 0, err
        summaries.append(json.loads(out))
    loaded = sorted(s["loaded"] for s in summaries)
    assert loaded == [0] * (len(summaries) - 1) + [N_ROWS], loaded  # one did the work, the rest found it done
    assert all(s["unchanged"] == N_ROWS for s in summaries if s["loaded"] == 0)
    hist = hiwater.history(target=url)
    assert len(hist) == len(summaries) and len({h["run_id"] for h in hist}) == len(hist)
    spans = sorted((h["started_at"], h["finished_at"]) for h in hist)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, spans  # one run at a time
    assert read_table(url, "events") == ref_rows
    assert hiwater.state_show(target=url)[0]["watermark"] == ref["new_watermark"]
    return len(summaries)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "duckdb"])
def test_eight_loaders_at_once_one_trial(kind, tmp_path, request, data):
    assert one_trial(kind, tmp_path, request, data, 0) == N_LOADERS


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "duckdb"])
def test_eight_loaders_at_once_many_trials(kind, tmp_path, request, data):
    trials = env_int("HIWATER_DB_CONCURRENCY_TRIALS", 8, 20)
    finished = [one_trial(kind, tmp_path, request, data, trial) for trial in range(trials)]
    assert finished == [N_LOADERS] * trials

"""What every command pays before it reads a record. pyarrow imports pandas (about 0.2 s, more on
a busy reader thread) the first time it is handed a Python list, only to ask whether the list is
a pandas object; the command line never hands it one, so ``hiwater`` answers that question for
it at start-up (cli._pyarrow_without_pandas). pandas itself stays importable."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("pandas")  # with pandas not installed there is nothing to avoid


def test_a_load_from_the_command_line_does_not_import_pandas(tmp_path):
    src = tmp_path / "a.jsonl"
    src.write_text("".join(json.dumps({"id": i, "ts": f"2024-01-01T00:00:0{i}", "tags": [i]}) + "\n"
                           for i in range(5)))
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "hiwater.cli", "load", "-i", str(src),
                           "--db", str(tmp_path / "t.db"), "--key", "id", "--cursor", "ts"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["loaded"] == 5
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time")}
    # (importtime lists the probe's refused "pandas" itself, in microseconds; nothing of it loads)
    assert "pyarrow" in imported and not [m for m in imported if m.startswith("pandas.")]


def test_pandas_still_works_after_the_probe():
    code = ("import sys; from hiwater.cli import _pyarrow_without_pandas as p; p();"
            "import pyarrow as pa; pa.array([1]); assert 'pandas' not in sys.modules;"
            "import pandas as pd; print(len(pd.DataFrame({'a': [1, 2]})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "2", done.stderr

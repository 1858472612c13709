"""docs/scale-out.md's walk-through works as written (issue 20, item 7): its commands, taken from
the page, run after the install line (which CI runs: .ci/run installs the project's extras) and
end with the 100,000 rows read back by polars. A local S3 API (moto) on a free port; the
records in a temporary folder."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "scale-out.md"

pytestmark = pytest.mark.slow


def walkthrough() -> str:
    """The page's ``bash`` block under "From a fresh clone", without its install line."""
    text = PAGE.read_text()
    start = text.index("### From a fresh clone")
    block = re.search(r"```bash\n(.*?)```", text[start:], re.S).group(1)
    lines = block.splitlines()
    assert "pip install -e '.[scale-demo]'" in lines[0]  # the install line names the one extra
    return "\n".join(lines[1:]) + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_scale_out_walkthrough_runs_as_written(tmp_path):
    for mod in ("moto", "boto3", "deltalake", "s3fs", "distributed", "polars"):
        pytest.importorskip(mod)
    script = walkthrough().replace("5555", str(free_port())).replace("/tmp/events", str(tmp_path / "events"))
    shims = tmp_path / "bin"
    shims.mkdir()
    for name, body in (("hiwater", '-c "from hiwater.cli import run; run()" "$@"'), ("python", '"$@"')):
        (shims / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" {body}\n')  # this environment's
        (shims / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{shims}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "HIWATER_TARGET_URL"):
        env.pop(k, None)
    r = subprocess.run(["bash", "-c", "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\n" + script],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "100000", r.stdout[-2000:]
    assert "events#3/4" in r.stdout  # hiwater status listed the buckets under the stream

#!/usr/bin/env bash
# Creates the benchmark's own environment (bench/.venv-bench) holding dlt and the other
# competitors' dependencies. dlt is NOT a dependency of hiwater; it lives only here.
# Usage: bash bench/setup.sh            (idempotent; pass --force to recreate)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-bench"
py="${PYTHON:-python3}"
if [[ "${1:-}" == "--force" ]]; then rm -rf "$venv"; fi
if [[ ! -x "$venv/bin/python" ]]; then
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$here/requirements-bench.txt"
"$venv/bin/python" - <<'PY'
import dlt, duckdb, sqlalchemy, pyarrow, orjson
print("bench venv ready: dlt", dlt.__version__, "duckdb", duckdb.__version__,
      "sqlalchemy", sqlalchemy.__version__, "pyarrow", pyarrow.__version__)
PY

"""Write docs/cli.md from the commands' own --help, so the reference cannot drift.

    python scripts/gen_cli_docs.py          # rewrite docs/cli.md
    python scripts/gen_cli_docs.py --check  # exit 1 if docs/cli.md is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hiwater.cli import cli

OUT = Path(__file__).resolve().parent.parent / "docs" / "cli.md"

HEADER = """# CLI reference

Generated from `hiwater --help` by `python scripts/gen_cli_docs.py`; a test fails when
this page and the commands disagree. Exit codes: **0** done; **1** the load failed and
nothing of it was committed (with `--window`: nothing of the failed slice; earlier slices
stand and a rerun resumes), `hiwater run`: a stream failed (the others committed),
`hiwater check`: a stream is past `--error-after` (or, with `--verified`, not verified
equal recently enough: [verify.md](verify.md#the-recorded-result)), `hiwater verify`: something
differs; **2** bad usage or configuration. Errors
are one line on stderr; warnings are lines starting `warning:` on stderr (with
`--log-format json`, one JSON object per event instead); the summary JSON is on stdout.
`NO_COLOR=1` turns colour off. Shell completion: `eval "$(_HIWATER_COMPLETE=bash_source hiwater)"`
in `~/.bashrc` (`zsh_source`, `fish_source` for the others). Projects: [pipelines.md](pipelines.md).

**Timeouts** are URL parameters of the database they apply to (the same in `--target`,
`--source`, a project file and the Python API, which take the same URLs), in seconds:
`connect_timeout=N` bounds connecting (default 10; PostgreSQL and MariaDB/MySQL);
`read_timeout=N` bounds every round trip once connected (PostgreSQL targets and sources,
MariaDB/MySQL sources; default: none). A server that stops answering — a hung host, a stalled
proxy — then fails the run with one line (`… did not answer within read_timeout=30s …`),
exit 1, nothing committed, instead of blocking forever. Waiting for another run's stream lock
is bounded by `--lock-timeout`, not by `read_timeout`. A server-side limit is a libpq option:
`?options=-c%20statement_timeout%3D60s`. Example:
`--target 'postgresql://loader@dwh/warehouse?schema=raw&connect_timeout=5&read_timeout=300'`.

**`${VAR}` in a URL** (`--target`, `--source`, `$HIWATER_TARGET_URL`, `$HIWATER_SOURCE_URL`, a
project file, the Python API) is the environment variable's value:
`--target 'postgresql://loader:${DWH_PASSWORD}@dwh/warehouse'` (single quotes, so the
shell leaves it to hiwater). An unset variable is an error naming it (exit 2), never an empty
string: an empty password would try to connect without one, an empty folder name would put
the database somewhere else.
"""


def _walk(cmd: click.Command, path: list[str], parent: click.Context | None = None):
    if parent is None:
        ctx = click.Context(cmd, info_name=path[-1], terminal_width=100, **cmd.context_settings)
    else:
        ctx = click.Context(cmd, info_name=path[-1], parent=parent)
    yield path, cmd, ctx
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            yield from _walk(cmd.commands[name], path + [name], ctx)


def render() -> str:
    parts = [HEADER]
    for path, cmd, ctx in _walk(cli, ["hiwater"]):
        parts.append(f"\n## `{' '.join(path)}`\n\n```\n{cmd.get_help(ctx)}\n```\n")
    return "".join(parts)


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            print("docs/cli.md is out of date: run python scripts/gen_cli_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

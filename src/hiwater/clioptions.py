"""The options several ``hiwater`` commands share (:mod:`hiwater.cli`): the target, ``--json``,
``--wide``, ``--project``, stream names with shell completion, and the command group that imports
its optional commands when first named."""

from __future__ import annotations

import click

from . import api


def target_options(f):
    """``--db`` / ``--target``: the shared way every command names its database."""
    f = click.option("--target", "target", metavar="URL",
                     help="Target database URL (sqlite:///path, postgresql://…, duckdb:///…, delta:///folder, delta+s3://bucket/prefix). "
                          "Default: $HIWATER_TARGET_URL.")(f)
    f = click.option("--db", "db", metavar="PATH",
                     help="Target SQLite file (created if missing). Without --db or --target: an in-memory "
                          "SQLite database.")(f)
    return f


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(f)


def wide_option(f):
    return click.option("--wide", is_flag=True, help="Every column, however wide (the terminal wraps the lines); "
                        "by default the least important columns are left out to fit the terminal.")(f)


def project_option(f):
    return click.option("--project", "project", metavar="FILE", envvar="HIWATER_PROJECT",
                        help="The project file (default: $HIWATER_PROJECT, else ./hiwater.toml).")(f)


def _complete_streams(ctx, param, incomplete):
    """Shell completion of stream names, from the project file (silently none if it has problems)."""
    try:
        names = [row["stream"] for row in api.validate(project=ctx.params.get("project"))]
    except Exception:  # noqa: BLE001 - completion must never fail loudly
        return []
    return [n for n in names if n.startswith(incomplete)]


def streams_argument(f):
    return click.argument("streams", nargs=-1, metavar="[STREAM]...", shell_complete=_complete_streams)(f)


class Commands(click.Group):
    """A group whose optional commands are imported when first named (a load does not pay
    for importing the simulator)."""

    lazy = {"simulate": ("hiwater.simulate.command", "simulate")}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name in self.lazy and name not in self.commands:
            module, attr = self.lazy[name]
            try:
                import importlib
                self.add_command(getattr(importlib.import_module(module), attr), name)
            except ImportError:
                return None
        return super().get_command(ctx, name)

"""What a person sees on a terminal: tables that fit it, a progress bar for one load, and the
board of ``hiwater run``'s streams. rich is imported where it is drawn, so a command that prints
JSON does not pay for it."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager

import click


@contextmanager
def progress_bar(mode: str | None):
    """A rich progress bar on stderr (rows, rate, ETA) when stderr is a terminal; else nothing."""
    show = mode == "always" or (mode in (None, "auto") and sys.stderr.isatty())
    if not show:
        yield None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    bar = Progress(TextColumn("loading"), BarColumn(), TaskProgressColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]} rows/s"), TimeElapsedColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), transient=True)
    task = bar.add_task("load", total=None, rate="-")
    import time
    start = time.monotonic()

    def update(done: int, expected: int | None) -> None:
        rate = done / max(time.monotonic() - start, 1e-6)
        bar.update(task, completed=done, total=max(expected or 0, done) or None, rate=f"{rate:,.0f}")

    with bar:
        yield update


class RunBoard:
    """``hiwater run``'s progress: each stream waiting, running (rows so far), done or failed.

    On a terminal (``--progress auto``) the lines update in place on stderr; with ``--progress
    always`` into a pipe or a log each change is one line. Either way it remembers which streams
    committed, for the message after Ctrl-C."""

    def __init__(self, names: list, mode: str):
        self.lines = {n: "waiting" for n in names}
        self.committed: list = []
        self.current = None
        self.live = None
        self.plain = mode == "always" and not sys.stderr.isatty()
        if mode != "never" and not self.plain and sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live
            self.live = Live(self._render(), console=Console(stderr=True), transient=True, refresh_per_second=4)

    def __enter__(self):
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.stop()

    def _render(self):
        from rich.table import Table
        t = Table.grid(padding=(0, 2))
        for name, line in self.lines.items():
            t.add_row(name, line)
        return t

    def _set(self, name: str, line: str) -> None:
        self.lines[name] = line
        if self.live is not None:
            self.live.update(self._render())
        elif self.plain:
            click.echo(f"hiwater: [{name}] {line}", err=True)

    def start(self, name: str) -> None:
        self.current = name
        self._set(name, "running")

    def rows(self, done: int, expected) -> None:
        if self.current is not None and not self.plain:  # a log gets state changes, not every batch
            self._set(self.current, f"running, {done:,} rows" + (f" of ~{expected:,}" if expected else ""))

    def result(self, r) -> None:
        if r.status == "ok":
            self.committed.append(r.stream)
            d = r.summary.to_dict()
            self._set(r.stream, f"done, {d['loaded']:,} loaded, {d['skipped']:,} skipped in {r.duration_s:.1f}s")
        else:
            self._set(r.stream, r.status if r.error is None else f"{r.status}: {r.error}")

    def interrupted(self) -> str:
        why = {"running": "interrupted", "failed": "failed"}
        others = [f"{n} ({why.get(s.split(',')[0].split(':')[0], 'not started')})"
                  for n, s in self.lines.items() if n not in self.committed]
        return (f"interrupted: committed: {', '.join(self.committed) or 'none'}; "
                f"not committed: {', '.join(others) or 'none'}")


def print_rows(rows, as_json, columns, *, optional=(), whole=(), wide: bool = False) -> None:
    """Print ``rows`` as JSON or as a table that fits the terminal.

    ``optional`` lists the columns that may be left out, the least important first; they go,
    one by one, until the table fits (a note names them; ``wide`` keeps them all). Columns in
    ``whole`` (a watermark, an instant) are never cut; the others fold onto more lines."""
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo("(none)")
        return
    from rich.table import Table
    cells = {c: ["" if r.get(c) is None else str(r.get(c)) for r in rows] for c in columns}
    need = {c: max(len(c), *(len(v) for v in cells[c])) + 3 for c in columns}  # padding 2, border 1
    width = term_width()
    shown, hidden = list(columns), []
    if wide:
        width = max(width, sum(need.values()) + 1)
    else:
        empty = [c for c in columns[1:] if not any(cells[c])]  # a column with nothing in it goes first
        for c in empty + [c for c in optional if c in columns and c not in empty]:
            if sum(need[k] for k in shown) - 1 <= width:  # fits, at least without the outer borders
                break
            shown.remove(c)
            hidden.append(c)
    total = sum(need[c] for c in shown)
    edge = total + 1 <= width
    keep_whole = total - 1 <= width  # else even the essential columns fold
    table = Table(show_header=True, header_style="bold", show_edge=edge)
    for c in shown:
        table.add_column(c, overflow="fold", min_width=need[c] - 3 if keep_whole and c in whole else None)
    for i in range(len(rows)):
        table.add_row(*[cells[c][i] for c in shown])
    out = console(width)
    out.print(table)
    if hidden:
        out.print(f"(hidden to fit {width} columns: {', '.join(hidden)}; --wide shows them)",
                      style="dim", highlight=False)


def console(width: int):
    """A rich console for stdout; ``NO_COLOR`` (any value) turns every colour and style off."""
    from rich.console import Console
    plain = bool(os.environ.get("NO_COLOR"))
    return Console(width=width, **({"color_system": None} if plain else {}))


def term_width() -> int:
    """The terminal's width (``$COLUMNS`` wins) when stdout is a terminal; 160 when it is a pipe or a
    file, whose reader has no width (and a test runner's ``$COLUMNS`` is not a terminal's)."""
    if not sys.stdout.isatty():
        return 160
    import shutil
    return max(shutil.get_terminal_size((160, 24)).columns, 20)


def print_verify(results) -> None:
    """``hiwater verify``'s result, one table per stream."""
    from rich.table import Table
    out = console(term_width())
    for r in results:
        after = (r.get("repair") or {}).get("after")
        title = f"{r['stream']}: {r['outcome']}" + (f" (after repair: {after['outcome']})" if after else "")
        table = Table(title=title, show_header=True, header_style="bold", title_justify="left")
        table.add_column("")
        table.add_column("value")
        w, k = r["windows"], r["keys"]
        rows = [("range", f"{r['since'] or ''} .. {r['until'] or ''} by {r['by'] or '-'}"),
                ("windows", f"{w['checked']} checked, {w['equal']} equal, {w['differing']} differing, "
                            f"{w['moving']} moving"),
                ("keys", ", ".join(f"{n} {c}" for c, n in k.items() if n) or "none differ"),
                ("cost", f"{r['rounds']} rounds, {r['bytes_fetched']['source']} + {r['bytes_fetched']['target']} "
                         f"bytes fetched, {r['duration_s']} s")]
        for cls, sample in r["sample"].items():
            if sample:
                rows.append((f"{cls} (sample)", "; ".join(
                    f"{s['key']} source {s['source']} target {s['target']}" for s in sample)))
        if r.get("note"):
            rows.append(("note", r["note"]))
        for name, value in rows:
            table.add_row(name, value)
        out.print(table)


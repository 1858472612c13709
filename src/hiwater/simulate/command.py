"""The ``hiwater simulate`` command: a thin mirror of :func:`hiwater.simulate.run_simulation`."""

from __future__ import annotations

import json
import shlex
import sys

import click

from .runner import SOURCES, run_simulation
from .scenario import SCENARIOS, Delay, scenario as make_scenario, seconds
from .strategies import DEFAULT

EPILOG = """\b
Scenarios: clean (no trouble), late (a quarter of the events late, exp:20m),
ties (3 records a run at the previous watermark), skewed (clocks running
ahead), messy (all of it: heavy-tailed delays, shuffled exports, UTC
offsets, rows delivered twice).
\b
Strategies: exclusive, inclusive, lookback:DURATION, on-late:skip|detect|load,
full, settle:DURATION, max-future:DURATION, window:DURATION; '+' combines
(lookback:1h+on-late:load); a bare value repeats the previous kind
(lookback:15m,1h).
\b
Sources: pushdown (a SQL source read with the window pushed down), reexport
(the whole table every run), delta (the changes since the previous run).
"""


@click.command("simulate", epilog=EPILOG, context_settings={"max_content_width": 100})
@click.option("--scenario", "scenario_name", type=click.Choice(list(SCENARIOS)), default="clean",
              show_default=True, help="A named preset; the options below override its parameters.")
@click.option("--runs", type=click.IntRange(min=1), help="Number of runs.  [default: 48]")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed: same seed, same table.")
@click.option("--strategies", default=DEFAULT, show_default=True, help="Comma-separated strategies.")
@click.option("--source", type=click.Choice(SOURCES), default="pushdown", show_default=True,
              help="What the simulated source exports each run.")
@click.option("--interval", metavar="DURATION", help="Time between runs.  [default: 30m]")
@click.option("--records", "new", type=click.IntRange(min=0), help="New records a run.  [default: 20]")
@click.option("--updates", type=click.IntRange(min=0), help="Updates of existing records a run.  [default: 8]")
@click.option("--late", type=click.FloatRange(0, 1), help="Fraction of events that arrive late.")
@click.option("--delay", metavar="DIST", help="Delay of late events: none, fixed:D, uniform:MAX, exp:MEAN, "
              "heavy:SCALE[:ALPHA].")
@click.option("--max-delay", metavar="DURATION", help="Cap every drawn delay.")
@click.option("--ties", type=click.IntRange(min=0), help="Records a run stamped at the previous watermark.")
@click.option("--disorder", type=click.FloatRange(0, 1), help="Fraction of an export moved out of order.")
@click.option("--skew", type=click.FloatRange(0, 1), help="Fraction stamped by a clock up to --skew-max "
              "ahead.")
@click.option("--skew-max", metavar="DURATION", help="How far ahead the skewed clock runs (skewed: 2h, messy: 1h).")
@click.option("--far-skew", type=click.FloatRange(0, 1), help="Fraction stamped 2-5 days ahead.")
@click.option("--invalid", type=click.FloatRange(0, 1), help="Fraction of new records with a null or "
              "garbled cursor.")
@click.option("--offsets", type=click.FloatRange(0, 1), help="Fraction of cursors written with a UTC offset "
              "(the same instant).")
@click.option("--duplicates", type=click.FloatRange(0, 1), help="Fraction of each export delivered again "
              "(or an older version of the key).")
@click.option("--json", "json_path", metavar="PATH", help="Write the result as JSON ('-': standard output).")
@click.option("--plot", "plot_path", metavar="PATH.png", help="Draw missed records over runs and cost per "
              "strategy.")
@click.option("--report", "report_path", metavar="PATH.md", help="Write a Markdown report with the table, "
              "the figure and an explanation.")
@click.option("--recommend", is_flag=True, help="Also answer: the smallest lookback that loses nothing, "
              "and its cost.")
@click.option("--from-history", "history_db", metavar="DB", help="Answer --recommend for a real SQLite "
              "target, from its history and quarantine, instead of simulating.")
@click.option("--stream", help="With --from-history: the stream (when the target has several).")
@click.option("--keep", "keep_dir", metavar="DIR", help="Keep each strategy's target and exports in DIR.")
@click.option("--quiet", "-q", is_flag=True, help="Print no table.")
def simulate(scenario_name, runs, seed, strategies, source, interval, new, updates, late, delay, max_delay,
             ties, disorder, skew, skew_max, far_skew, invalid, offsets, duplicates, json_path, plot_path, report_path, recommend,
             history_db, stream, keep_dir, quiet):
    """Play an evolving source through loading strategies with the real loader, and measure what each
    loses (missed, stale, extra records against the ground truth) and costs (rows read and written, time).
    """
    if history_db:
        from .history import recommend_from_history

        rec = recommend_from_history(history_db, stream)
        if json_path:
            _write_json({"recommendation": rec.to_dict()}, json_path)
        if json_path != "-":
            click.echo(rec.sentence())
        return
    if stream:
        raise click.UsageError("--stream goes with --from-history")
    if plot_path or report_path:  # before simulating: a missing extra is one line, at once
        from ..extras import require
        require("matplotlib", "plot", "--plot" if plot_path else "--report")
    base = SCENARIOS[scenario_name]
    overrides = dict(runs=runs, new=new, updates=updates, late=late, ties=ties, disorder=disorder, skew=skew,
                     far_skew=far_skew, invalid=invalid, offsets=offsets, duplicates=duplicates,
                     interval=seconds(interval, "--interval") if interval else None,
                     skew_max=seconds(skew_max, "--skew-max") if skew_max else None)
    if delay is not None or max_delay is not None:
        overrides["delay"] = Delay.parse(delay if delay is not None else _delay_text(base.delay),
                                         max_delay if max_delay is not None else base.delay.cap)
    sc = make_scenario(scenario_name, **overrides)
    if late is None and delay is not None and sc.late == 0 and overrides["delay"].kind != "none":
        raise click.UsageError("--delay has no effect with --late 0: give --late FRACTION too")
    result = run_simulation(sc, seed=seed, strategies=strategies, source=source, recommend=recommend,
                            workdir=keep_dir)
    if plot_path:
        from .plot import plot

        plot(result, plot_path)
    if report_path:
        from .report import write_report

        write_report(result, report_path, plot_path, command=_command_line())
    if json_path:
        _write_json(result.to_dict(), json_path)
    if not quiet and json_path != "-":
        from rich.console import Console

        from .report import table

        probe = Console()
        console = Console(width=probe.width if probe.is_terminal else 120)
        console.print(table(result))
        if result.recommendation:
            console.print(result.recommendation.sentence(), highlight=False)
        for path, what in ((plot_path, "figure"), (report_path, "report"), (json_path, "JSON")):
            if path:
                click.echo(f"{what}: {path}", err=True)


def _delay_text(d: Delay) -> str:
    from .scenario import format_seconds

    if d.kind == "none":
        return "none"
    return f"{d.kind}:{format_seconds(d.scale)}" + (f":{d.alpha:g}" if d.kind == "heavy" else "")


def _command_line() -> str:
    return "hiwater " + " ".join(shlex.quote(a) for a in sys.argv[sys.argv.index("simulate"):]) \
        if "simulate" in sys.argv else "hiwater simulate"


def _write_json(data: dict, path: str) -> None:
    text = json.dumps(data, indent=2) + "\n"
    if path == "-":
        click.echo(text, nl=False)
    else:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)

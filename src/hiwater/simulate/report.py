"""The terminal table (rich), and the Markdown report with its generated explanation."""

from __future__ import annotations

import os

from .result import CAUSE_TEXT, SimulationResult, StrategyResult
from .scenario import format_seconds

COLUMNS = ("strategy", "missed", "stale", "extra", "in quarantine", "rows read", "rows written",
           "quarantined", "seconds")


def rows(result: SimulationResult) -> list[list[str]]:
    """The table's cells, as text (the same for the terminal and the report)."""
    out = []
    for s in result.strategies:
        out.append([s.name, str(s.missed), str(s.stale), str(s.extra), str(s.in_quarantine),
                    f"{s.rows_read:,}", f"{s.rows_written:,}", f"{s.quarantined:,}", f"{s.seconds:.2f}"])
    return out


def table(result: SimulationResult):
    """A rich Table of the result."""
    from rich.table import Table

    p = result.feed.planted()
    t = Table(title=f"hiwater simulate · scenario {result.scenario.name} · seed {result.seed} · "
                    f"{result.scenario.runs} runs · {result.source} source",
              caption=f"truth: {p['truth_records']:,} records; planted: {_planted_text(p)}. "
                      f"missed/stale/extra after the last run.")
    for i, c in enumerate(COLUMNS):
        t.add_column(c, justify="left" if i == 0 else "right", no_wrap=True)
    for s, cells in zip(result.strategies, rows(result)):
        style = "green" if s.wrong == 0 else ("yellow" if s.missed + s.stale == s.in_quarantine else "red")
        t.add_row(*cells, style=style)
    return t


def _planted_text(p: dict) -> str:
    k = p["kinds"]
    parts = [f"{k.get('late', 0)} late", f"{k.get('tie', 0)} ties", f"{k.get('skewed', 0)} skewed",
             f"{k.get('far-skewed', 0)} far-future", f"{k.get('invalid', 0)} invalid"]
    return ", ".join(parts)


def _leanest(result: SimulationResult) -> StrategyResult | None:
    correct = [s for s in result.strategies if s.wrong == 0]
    return min(correct, key=lambda s: s.rows_read) if correct else None


def explain(result: SimulationResult) -> list[str]:
    """One paragraph per strategy: what it lost and why, what it cost."""
    out = []
    lean = min((s.rows_read for s in result.strategies), default=0) or 1
    for s in result.strategies:
        st = s.strategy
        cost = f"It read {s.rows_read:,} rows ({s.rows_read / lean:.1f}× the fewest) and wrote {s.rows_written:,}."
        if s.wrong == 0:
            text = f"**{s.name}** lost nothing. {cost}"
        else:
            text = (f"**{s.name}** ended with {s.missed + s.stale} record(s) wrong: {s.missed} missing and "
                    f"{s.stale} stale" + (f", and {s.extra} that should not be there" if s.extra else "") + ".")
            causes = s.cause_counts()
            bits = []
            if causes.get("tie"):
                bits.append(f"{causes['tie']} were stamped exactly at the watermark and arrived after the run "
                            f"that reached it: the exclusive boundary (`>`) never reads them again")
            if causes.get("late"):
                lo, hi = min(s.lost_lags), max(s.lost_lags)
                reach = f"its lookback of {st.lookback_text}" if st.lookback else "its window (no lookback)"
                bits.append(f"{causes['late']} arrived late, {format_seconds(lo)} to {format_seconds(hi)} "
                            f"behind the watermark, beyond {reach}")
            if causes.get("skew"):
                bits.append(f"{causes['skew']} fell behind a watermark that a record from a clock running "
                            f"ahead had pushed forward (a tighter `--max-future` or `--settle` prevents it)")
            if causes.get("future"):
                bits.append(f"{causes['future']} were stamped beyond the strategy's future guard and sit in "
                            f"quarantine as `future`")
            if causes.get("unexplained"):
                bits.append(f"{causes['unexplained']} have no planted cause: {CAUSE_TEXT['unexplained']}")
            if bits:
                text += " Of these, " + "; ".join(bits) + "."
            if s.in_quarantine:
                quiet = s.missed + s.stale - s.in_quarantine
                text += (f" {s.in_quarantine} of them sit in the quarantine (`hiwater quarantine replay` "
                         f"recovers them)" + (f"; {quiet} were lost silently." if quiet else "."))
            else:
                text += " All of them were lost silently: nothing in the target says they exist."
            text += " " + cost
        if result.source == "pushdown" and st.on_late != "detect" and not st.full:
            text += (" With a pushdown source a record below the window is never read, so `--on-late "
                     f"{st.on_late}` has nothing to act on; `--source reexport` shows the difference.")
        out.append(text)
    return out


def markdown(result: SimulationResult, figure: str | None = None, command: str | None = None) -> str:
    """The Markdown report: parameters, table, figure, explanation, recommendation."""
    p = result.feed.planted()
    sc = result.scenario
    lines = [f"# hiwater simulate: scenario `{sc.name}`, seed {result.seed}", ""]
    if command:
        lines += ["```", command, "```", ""]
    lines += [
        f"{sc.runs} runs, one every {format_seconds(sc.interval)}, from {sc.start}; each run {sc.new} new "
        f"records and {sc.updates} updates; late fraction {sc.late:g} with delay {sc.delay}; {sc.ties} ties "
        f"per run; skewed clocks {sc.skew:g} (up to {format_seconds(sc.skew_max)} ahead) and {sc.far_skew:g} "
        f"(days ahead); invalid {sc.invalid:g}; disorder {sc.disorder:g}; cursors written with a UTC offset "
        f"{sc.offsets:g}; rows delivered again {sc.duplicates:g}. Source: `{result.source}`.",
        "",
        f"The ground truth after the last run holds {p['truth_records']:,} records ({p['arrived']:,} versions "
        f"arrived; planted: {_planted_text(p)}; {p['behind_watermark']} arrived behind the watermark, the "
        f"worst by {format_seconds(p['max_lag_seconds'])}; {p['at_watermark']} exactly at it).",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "| " + " | ".join(["---"] + ["---:"] * (len(COLUMNS) - 1)) + " |",
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows(result)]
    lines += ["", "*missed*, *stale*, *extra*: records wrong after the last run; *in quarantine*: of the missed "
              "and stale, those whose true version sits in the quarantine; *rows read/written/quarantined*, "
              "*seconds*: totals over all runs (seconds: time inside the loader).", ""]
    if figure:
        lines += [f"![missed records over runs, and cost per strategy]({figure})", ""]
    lines += ["## What each strategy lost, and why", ""]
    for para in explain(result):
        lines += [f"- {para}"]
    lines.append("")
    if result.recommendation:
        lines += ["## Recommended lookback", "", result.recommendation.sentence(), ""]
    return "\n".join(lines)


def write_report(result: SimulationResult, path: str, figure_path: str | None = None,
                 command: str | None = None) -> str:
    """Write the Markdown report to ``path``; draws the figure beside it if none is given."""
    from .plot import plot

    if figure_path is None:
        figure_path = os.path.splitext(path)[0] + ".png"
        plot(result, figure_path)
    rel = os.path.relpath(os.path.abspath(figure_path), os.path.dirname(os.path.abspath(path)))
    with open(path, "w", encoding="utf-8") as f:
        f.write(markdown(result, rel.replace(os.sep, "/"), command))
    return path

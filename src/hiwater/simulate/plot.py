"""One figure a person understands at a glance: what each strategy got wrong, and what it cost."""

from __future__ import annotations

from .result import SimulationResult

WIDTH_IN, HEIGHT_IN, DPI = 12.0, 5.0, 100       # the PNG is 1200 x 500 pixels
STYLES = ["-", "--", "-.", ":"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]


def plot(result: SimulationResult, path: str) -> str:
    """Draw ``result`` to the PNG ``path`` (1200x500); returns the path."""
    from matplotlib.figure import Figure   # no pyplot: no global state, no display needed
    from matplotlib import colormaps

    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.35, 1.0]})
    colors = colormaps["tab10"]
    strategies = result.strategies
    n = len(strategies)
    for i, s in enumerate(strategies):
        runs = [r.run for r in s.runs]
        step = max(1, len(runs) // 8)
        wrong = [r.missed + r.stale + r.extra for r in s.runs]
        left.step(runs, wrong, where="post", color=colors(i % 10), linestyle=STYLES[i % len(STYLES)],
                  linewidth=2.2 - 1.2 * i / max(n - 1, 1), alpha=0.9,
                  marker=MARKERS[i % len(MARKERS)], markevery=(i * step // max(n, 1), step), markersize=5,
                  label=f"{s.name}: {s.wrong} wrong")
    left.set_title("Records wrong in the target after each run (missing + stale + extra)", fontsize=11)
    left.set_xlabel("run")
    left.set_ylabel("records")
    left.grid(True, alpha=0.3)
    left.set_xlim(1, max(2, result.scenario.runs))
    left.set_ylim(bottom=0, top=max(1, max((s.wrong for s in strategies), default=0)) * 1.12 + 0.5)
    left.legend(fontsize=8, loc="upper left", framealpha=0.85)

    names = [s.name for s in strategies][::-1]
    read = [s.rows_read for s in strategies][::-1]
    written = [s.rows_written for s in strategies][::-1]
    ys = range(len(names))
    right.barh([y + 0.18 for y in ys], read, height=0.36, color=[colors((n - 1 - y) % 10) for y in ys],
               label="rows read")
    right.barh([y - 0.18 for y in ys], written, height=0.36, color="0.65", label="rows written")
    top = max(read + [1])
    for y, r, s in zip(ys, read, strategies[::-1]):
        right.text(r + top * 0.01, y + 0.18, f"{r:,}", va="center", fontsize=8)
    right.set_yticks(list(ys))
    right.set_yticklabels(names, fontsize=9)
    right.set_xlim(0, top * 1.22)
    right.set_title(f"Cost over {result.scenario.runs} runs: rows read (colour), written (grey)", fontsize=11)
    right.set_xlabel("rows")
    right.grid(True, axis="x", alpha=0.3)

    fig.suptitle(f"hiwater simulate: scenario {result.scenario.name}, seed {result.seed}, "
                 f"{result.source} source, {result.feed.planted()['truth_records']:,} records in the truth",
                 fontsize=12)
    fig.subplots_adjust(left=0.05, right=0.98, top=0.86, bottom=0.11, wspace=0.28)
    fig.savefig(path, dpi=DPI, format="png")
    return path


def png_size(path: str) -> tuple[int, int]:
    """``(width, height)`` of a PNG file, read from its header."""
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG file")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")

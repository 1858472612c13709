"""Charts drawn on the server as inline SVG: no script, no library, nothing fetched.

A chart is one or more series of points in run order (x: the run's place in time, y: a value);
each point is a ``<circle>`` with a ``<title>`` (the browser shows it on hover), so a page with
20 runs has 20 points, and a test can count them. Colours come from CSS classes (``s0``,
``s1``, … and ``failed``), so the page's stylesheet decides them and the Content Security
Policy can forbid inline styles.
"""

from __future__ import annotations

from html import escape

from ..freshness import age_text, parse_instant

WIDTH, HEIGHT = 640, 180
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 24, 28


def runs(history: list, timed: bool, per_us: int = 1) -> list:
    """One point per run from history rows (a windowed run has one row per slice): when it
    finished, rows loaded (the sum of its slices), duration, outcome and lag (how far the
    watermark stood behind the run's end; only when ``timed``: a timestamp or date cursor,
    whose values are ``per_us`` units a microsecond: 1000 for nanoseconds)."""
    grouped: dict = {}
    for h in history:
        grouped.setdefault((h["stream"], h["run_id"]), []).append(h)
    out = []
    for (stream, run_id), rows in grouped.items():
        last = rows[-1]
        finished = max(r["finished_at"] for r in rows)
        failed = any(r["outcome"] == "failed" for r in rows)
        lag = None
        wm = next((r["watermark_after_value"] for r in reversed(rows) if r["watermark_after_value"] is not None), None)
        if timed and wm is not None:
            lag = (parse_instant(finished) - wm / per_us) / 1_000_000
        out.append({"stream": stream, "run_id": run_id, "finished_at": finished,
                    "loaded": sum(r["loaded"] or 0 for r in rows),
                    "duration_s": max((r["duration_s"] or 0) for r in rows),
                    "outcome": "failed" if failed else last["outcome"], "lag_s": lag})
    out.sort(key=lambda r: (r["finished_at"], r["run_id"]))
    return out


def chart(points: list, value: str, title: str, unit: str = "") -> str:
    """An SVG line chart of ``points`` (from :func:`runs`), ``value`` on the y axis; one line
    per stream (a bucketed stream: one per bucket); an empty note when no point has a value."""
    shown = [(i, p) for i, p in enumerate(points) if p.get(value) is not None]
    head = (f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
            f'data-points="{len(shown)}" aria-label="{escape(title)}"><text class="title" x="{LEFT}" y="14">'
            f'{escape(title)}</text>')
    if not shown:
        return head + f'<text class="empty" x="{LEFT}" y="{HEIGHT // 2}">no data</text></svg>'
    top = max(p[value] for _, p in shown)
    bottom = min(0, min(p[value] for _, p in shown))
    span = (top - bottom) or 1
    n = max(len(points) - 1, 1)

    def xy(i, v):
        x = LEFT + (WIDTH - LEFT - RIGHT) * (i / n if len(points) > 1 else 0.5)
        y = TOP + (HEIGHT - TOP - BOTTOM) * (1 - (v - bottom) / span)
        return round(x, 1), round(y, 1)

    parts = [head]
    for frac in (0, 0.5, 1):
        v = bottom + span * frac
        _, y = xy(0, v)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}"/>'
                     f'<text class="axis" x="{LEFT - 4}" y="{y + 4}" text-anchor="end">{escape(_fmt(v, unit))}</text>')
    parts.append(f'<text class="axis" x="{LEFT}" y="{HEIGHT - 8}">{escape(str(points[0]["finished_at"])[:16])}</text>'
                 f'<text class="axis" x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" text-anchor="end">'
                 f'{escape(str(points[-1]["finished_at"])[:16])}</text>')
    series: dict = {}
    for i, p in shown:
        series.setdefault(p["stream"], []).append((i, p))
    for k, (stream, pts) in enumerate(series.items()):
        if len(pts) > 1:
            path = " ".join(f"{x},{y}" for x, y in (xy(i, p[value]) for i, p in pts))
            parts.append(f'<polyline class="line s{k % 6}" points="{path}"/>')
        for i, p in pts:
            x, y = xy(i, p[value])
            cls = "pt failed" if p["outcome"] == "failed" else f"pt s{k % 6}"
            tip = f'{p["stream"]} run {p["run_id"]} at {p["finished_at"]}: {_fmt(p[value], unit)} ({p["outcome"]})'
            parts.append(f'<circle class="{cls}" cx="{x}" cy="{y}" r="3"><title>{escape(tip)}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def _fmt(v: float, unit: str) -> str:
    if unit == "age":
        return age_text(v) or "0s"
    if unit == "s":
        return f"{v:.3g}s"
    return f"{v:,.0f}"

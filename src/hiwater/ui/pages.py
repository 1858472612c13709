"""The HTML pages: plain server-rendered tables and inline SVG charts.

Every value goes through :func:`html.escape` (a stream name, a record or an error message is
data, never markup). The pages load one stylesheet and one small script from ``/static/``
(sorting by a column, refreshing the streams page); they work without the script, and
nothing is fetched from anywhere else.
"""

from __future__ import annotations

import json
import time
from html import escape
from urllib.parse import urlencode

from . import charts
from .view import REASONS

REFRESH_S = 30


def _page(title: str, body: str, *, active: str, refresh: bool = False) -> str:
    nav = "".join(f'<a href="{href}"{" class=active" if key == active else ""}>{label}</a>'
                  for key, href, label in (("streams", "/", "Streams"), ("quarantine", "/quarantine", "Quarantine"),
                                           ("api", "/api/status", "JSON"), ("metrics", "/metrics", "Metrics")))
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)} · hiwater</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="stylesheet" href="/static/ui.css"><script src="/static/ui.js" defer></script></head>'
            f'<body{f" data-refresh={REFRESH_S}" if refresh else ""}><header><span class="brand">hiwater</span>'
            f'<nav>{nav}</nav></header><main><h1>{escape(title)}</h1>{body}</main></body></html>')


def _cell(value, sort=None, cls: str = "") -> str:
    text = "" if value is None else str(value)
    key = "" if sort is None else f' data-v="{escape(str(sort))}"'
    return f'<td{key}{f" class={cls!r}" if cls else ""}>{escape(text)}</td>'


def _table(headers: list, rows: list, cls: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return (f'<table class="sortable {cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            if rows else '<p class="empty">(none)</p>')


def _errors(errors: list) -> str:
    return "".join(f'<p class="error">{escape(e["target"])}: {escape(e["message"])}</p>' for e in errors)


def stream_link(name: str) -> str:
    return f'<a href="/stream?{escape(urlencode({"name": name}))}">{escape(name)}</a>'


def _verify(row: dict) -> str:
    """The last verify as ``status`` reports it (``2h ago, equal``), else ``never``."""
    v = row.get("verify")
    if not v:
        return "never"
    if isinstance(v, dict):
        return row.get("verified") or str(v.get("outcome"))
    return str(v)


def _run(row: dict) -> str:
    if row.get("last_outcome") in (None, "never run"):
        return "never run"
    parts = [row["last_outcome"]]
    if row.get("last_loaded") is not None:
        parts.append(f'{row["last_loaded"]:,} loaded')
    if row.get("last_rejected"):
        parts.append(f'{row["last_rejected"]:,} rejected')
    if row.get("last_duration_s") is not None:
        parts.append(f'{row["last_duration_s"]:.3g}s')
    return ", ".join(parts)


def streams_page(snapshot) -> str:
    """Every stream, one row each; a row past warn-after or error-after is marked."""
    rows = []
    for r in snapshot.streams():
        mark = {"warn": "warn", "error": "bad"}.get(r["verdict"] or "", "")
        if r.get("last_outcome") == "failed":
            mark = "bad"
        buckets = f' ({len(r["buckets"])} buckets)' if r.get("buckets") else ""
        rows.append(
            f'<tr class="{mark}" data-stream="{escape(r["stream"])}"><td data-v="{escape(r["stream"])}">'
            f'{stream_link(r["stream"])}{escape(buckets)}</td>'
            + _cell(r["target"]) + _cell(r["watermark"], r["watermark"], "t")
            + _cell(r["data_age"], r["data_age_s"], "num") + _cell(r["load_age"], r["load_age_s"], "num")
            + _cell(r["last_outcome"]) + _cell(r["last_loaded"], r["last_loaded"], "num")
            + _cell(r["last_rejected"], r["last_rejected"], "num")
            + _cell(None if r["last_duration_s"] is None else f'{r["last_duration_s"]:.3f}', r["last_duration_s"], "num")
            + _cell(r["quarantined"], r["quarantined"], "num") + _cell(_verify(r))
            + _cell(r["verdict"] or "") + _cell(r.get("last_error")) + "</tr>")
    table = _table(["stream", "target", "watermark", "data age", "load age", "last run", "loaded", "rejected",
                    "duration s", "quarantine", "last verify", "freshness", "error"], rows, "streams")
    note = f'<p class="note">Refreshes every {REFRESH_S}s. As of {escape(_when(snapshot.now))}.</p>'
    return _page("Streams", _errors(snapshot.errors) + table + note, active="streams", refresh=True)


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def stream_page(data: dict) -> str:
    """One stream: its summary, charts of its runs, the run history and the state."""
    s = data["status"]
    timed = s.get("kind") in ("timestamp", "date", "timestamp_ns")
    points = charts.runs(data["history"], timed, 1000 if s.get("kind") == "timestamp_ns" else 1)
    facts = [("target", s["target"]), ("table", s.get("table")), ("watermark", s["watermark"]),
             ("data age", s["data_age"]), ("load age", s["load_age"]), ("last run", _run(s)),
             ("quarantine", s["quarantined"]), ("last verify", _verify(s)),
             ("warn after", s.get("warn_after")), ("error after", s.get("error_after"))]
    dl = "".join(f"<dt>{escape(k)}</dt><dd>{escape('' if v is None else str(v))}</dd>" for k, v in facts)
    if s.get("last_error"):
        dl += f'<dt>error</dt><dd class="error">{escape(s["last_error"])}</dd>'
    figs = (charts.chart(points, "loaded", "Rows loaded per run")
            + charts.chart(points, "duration_s", "Run duration", "s")
            + (charts.chart(points, "lag_s", "Lag at the end of each run (run end − watermark)", "age") if timed else ""))
    hist_cols = ["stream", "run_id", "window_index", "finished_at", "mode", "outcome", "source_records", "inserted",
                 "updated", "unchanged", "late", "future", "rejected", "watermark_after", "duration_s", "error"]
    if len(data["members"]) == 1:
        hist_cols.remove("stream")
    hist = [("<tr>" + "".join(_cell(h.get(c), *_kind(h.get(c), c)) for c in hist_cols) + "</tr>")
            for h in reversed(data["history"])]
    state_cols = ["stream", "key", "cursor", "kind", "assume_tz", "watermark", "last_run"]
    state = [("<tr>" + "".join(_cell(", ".join(v) if isinstance(v, list) else v) for v in
                              (st.get(c) for c in state_cols)) + "</tr>") for st in data["state"]]
    body = (f'<dl class="facts">{dl}</dl><section class="charts">{figs}</section>'
            f'<p><a href="/quarantine?{escape(urlencode({"stream": s["stream"]}))}">Quarantine of this stream</a> · '
            f'<a href="/api/history?{escape(urlencode({"stream": s["stream"]}))}">history as JSON</a></p>'
            f'<h2>Runs</h2>{_table(hist_cols, hist, "history")}<h2>State</h2>{_table(state_cols, state, "state")}')
    return _page(f'Stream {s["stream"]}', body, active="streams")


def _kind(value, column: str) -> tuple:
    """A history cell's sort key and class: numbers sort as numbers and align right; instants do not wrap."""
    if isinstance(value, (int, float)):
        return value, "num"
    return None, "t" if column in ("finished_at", "watermark_after", "watermark") else ""


def quarantine_page(rows: list, *, streams: list, stream, reason, actions: bool, note: str | None) -> str:
    """The quarantined records, filtered by stream and reason, with a replay button per stream."""
    opts = lambda values, chosen: "".join(  # noqa: E731 - two <select>s below
        f'<option value="{escape(v)}"{" selected" if v == chosen else ""}>{escape(v or "all")}</option>'
        for v in ["", *values])
    form = (f'<form class="filter" method="get" action="/quarantine"><label>stream <select name="stream">'
            f'{opts(streams, stream or "")}</select></label> <label>reason <select name="reason">'
            f'{opts(list(REASONS), reason or "")}</select></label> <button type="submit">Filter</button></form>')
    counts: dict = {}
    for r in rows:
        counts.setdefault(r["stream"], {}).setdefault(r["reason"], 0)
        counts[r["stream"]][r["reason"]] += 1
    summary = []
    for name, by_reason in counts.items():
        button = ""
        if actions:
            button = (f'<form method="post" action="/actions/replay" class="replay">'
                      f'<input type="hidden" name="stream" value="{escape(name)}">'
                      f'<input type="hidden" name="reason" value="{escape(reason or "")}">'
                      f'<button type="submit">Replay {sum(by_reason.values())}</button></form>')
        summary.append("<tr>" + _cell(name) + _cell(", ".join(f"{k}: {v}" for k, v in sorted(by_reason.items())))
                       + f"<td>{button}</td></tr>")
    hint = "" if actions else ('<p class="note">Replay is off: start <code>hiwater ui</code> with '
                               '<code>--allow-actions</code> and a token to replay from here.</p>')
    cols = ["id", "stream", "reason", "detail", "source", "record_no", "key", "cursor", "first_run", "last_run",
            "seen", "record"]
    records = [("<tr>" + "".join(_cell(r.get(c), r.get(c) if isinstance(r.get(c), int) else None,
                                       "record" if c == "record" else "") for c in cols) + "</tr>") for r in rows]
    body = (form + (f'<p class="ok">{escape(note)}</p>' if note else "")
            + _table(["stream", "records", "replay"], summary, "by-stream") + hint
            + f"<h2>Records ({len(rows)})</h2>" + _table(cols, records, "records"))
    return _page("Quarantine", body, active="quarantine")


def error_page(status: int, message: str) -> str:
    return _page(f"{status}", f'<p class="error">{escape(message)}</p>', active="")


def as_json(value) -> bytes:
    return json.dumps(value, indent=2, default=str).encode()

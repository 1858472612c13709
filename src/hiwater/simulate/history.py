"""``--recommend --from-history DB``: the same answer for a real feed, from what the loader recorded.

The evidence is the quarantine: a record quarantined as ``late`` carries its
cursor value and the first run that saw it, and the history gives that run's
watermark before it started. ``watermark_before - cursor`` is how far behind
the window the record arrived (measured at its first sighting, so a record that
a full re-export hands the loader again and again is not counted as later each
time). When no late record was quarantined, the history's ``max_lateness``
column is used if the loader filled it. Records applied with ``--on-late load``
leave no per-record trace, so a feed loaded that way shows no lateness here.

The cost is estimated from the target itself: for each committed incremental
run, the rows whose cursor lies in ``[watermark_before - lookback,
watermark_before)`` are the rows the wider window would have read again.
"""

from __future__ import annotations

import math
import os
import sqlite3

from ..errors import UsageError
from ..values import INT
from .result import Recommendation
from .scenario import format_seconds

US = 1_000_000


def _percentile(values: list, q: float):
    values = sorted(values)
    if not values:
        return 0
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def recommend_from_history(db: str, stream: str | None = None) -> Recommendation:
    """The smallest lookback that would have caught every late record of a real stream."""
    import hiwater

    if not os.path.exists(db):
        raise UsageError(f"--from-history {db}: no such file")
    states = hiwater.state_show(db=db)
    if not states:
        raise UsageError(f"--from-history {db}: no hiwater stream in this database")
    if stream is None:
        if len(states) > 1:
            names = ", ".join(s["stream"] for s in states)
            raise UsageError(f"--from-history {db}: several streams ({names}); choose one with --stream")
        state = states[0]
    else:
        found = [s for s in states if s["stream"] == stream]
        if not found:
            raise UsageError(f"--from-history {db}: no stream named {stream!r}")
        state = found[0]
    name, kind = state["stream"], state.get("kind")
    unit = 1 if kind == INT else US                       # normalised cursor units per second (or per 1)
    runs = {r["run_id"]: r for r in hiwater.history(db=db, stream=name) if r.get("window_index", 0) == 0
            and r.get("outcome") != "failed"}
    late = hiwater.quarantine_list(db=db, stream=name, reason="late")
    lags = []
    for q in late:
        run = runs.get(q.get("first_run"))
        before = run.get("watermark_before_value") if run else None
        if before is not None and q.get("cursor_value") is not None and before > q["cursor_value"]:
            lags.append(before - q["cursor_value"])
    basis = f"{len(late)} late record(s) in the quarantine of stream {name!r} in {db}"
    if not lags:
        for r in runs.values():
            text = r.get("max_lateness")
            if text:
                try:
                    lags.append(int(float(str(text).rstrip("s")) * unit))
                except ValueError:
                    pass
        if lags:
            basis = f"the max_lateness of {len(lags)} run(s) in the history of stream {name!r} in {db}"
    worst = max(lags) if lags else 0
    per_second = kind != INT
    if per_second:
        rec_units = int(math.ceil(worst / unit / 60) * 60)        # whole minutes, in seconds
        to_s = (lambda v: v / unit)
    else:
        rec_units = int(worst)
        to_s = (lambda v: v)
    rec = Recommendation(
        lookback_seconds=rec_units, basis=basis, behind=len(lags), max_lag=int(math.ceil(to_s(worst))),
        percentiles={k: int(math.ceil(to_s(_percentile(lags, q)))) for k, q in
                     (("p50", .5), ("p90", .9), ("p99", .99))},
    )
    if not per_second:
        rec.notes.append(f"The cursor is an integer: the lookback is {rec_units} cursor units "
                         f"(`--lookback {rec_units}`), not seconds.")
    # cost: rows a window widened by the lookback would have read again, per run
    table = state.get("table")
    extra_rows, read_rows, counted = 0, 0, 0
    if rec_units and table:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            cols = [r[1] for r in con.execute('SELECT * FROM pragma_table_info(?)', (table,))]
            if "_hiwater_cursor" in cols:
                width = rec_units * (unit if per_second else 1)
                for r in runs.values():
                    before = r.get("watermark_before_value")
                    if r.get("outcome") != "committed" or r.get("mode") != "incremental" or before is None:
                        continue
                    n = con.execute(f'SELECT count(*) FROM "{table.replace(chr(34), chr(34) * 2)}" '
                                    f'WHERE "_hiwater_cursor" >= ? AND "_hiwater_cursor" < ?',
                                    (before - width, before)).fetchone()[0]
                    extra_rows += n
                    read_rows += r.get("source_records") or 0
                    counted += 1
        finally:
            con.close()
    if counted:
        rec.strategy = f"lookback:{format_seconds(rec_units) if per_second else rec_units}"
        rec.notes.append(
            f"Over the {counted} incremental run(s) in the history, that window would have re-read about "
            f"{extra_rows:,} rows already in the target ({extra_rows / counted:,.1f} a run) on top of the "
            f"{read_rows:,} the runs read.")
    return rec

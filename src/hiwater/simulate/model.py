"""A reference model of the loader's decisions (SPEC §3–4), for the simulator's records only.

It is deliberately tiny and slow: a dict per record, no batching. The simulator
never uses it on its own; the tests run a feed through it and through the real
loader and compare them run by run, so any difference is either a bug in the
loader or a misreading of the spec, named with the run and the strategy.
It knows only what the simulator needs: key ``id``, a naive ISO cursor, SQLite.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

from ..errors import QualityError
from ..summary import Counts, Summary
from .generator import from_text, to_text
from .scenario import seconds


def _cursor(value) -> int | None:
    """Seconds since the epoch, or None when the value is not a full ISO timestamp."""
    if not isinstance(value, str) or len(value.strip()) < 19:
        return None
    try:
        return from_text(value.strip())
    except ValueError:
        return None


def load(*, input, db, table="events", key="id", cursor="modified_at", boundary="inclusive", lookback=None,
         on_late="detect", full_load=False, max_future="1d", settle=None, now=None, max_rejected=None,
         **_ignored) -> Summary:
    """Load the JSON Lines file ``input`` into SQLite ``db`` the way SPEC §3 says."""
    with open(input, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    now_s = from_text(now.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat())
    con = sqlite3.connect(db)
    try:
        con.execute(f'CREATE TABLE IF NOT EXISTS "{table}" (id INTEGER PRIMARY KEY, name TEXT, '
                    f'modified_at TEXT, version INTEGER, _cursor INTEGER)')
        con.execute('CREATE TABLE IF NOT EXISTS _hiwater_quarantine (stream TEXT, reason TEXT, record TEXT)')
        con.execute('CREATE TABLE IF NOT EXISTS _model_state (stream TEXT PRIMARY KEY, watermark INTEGER)')
        got = con.execute('SELECT watermark FROM _model_state WHERE stream=?', (table,)).fetchone()
        previous = got[0] if got else None
        target = {k: c for k, c in con.execute(f'SELECT id, _cursor FROM "{table}"')}
        counts = Counts()
        guard = None if max_future is None else seconds(max_future, "--max-future")
        lb = seconds(lookback, "--lookback") if lookback else 0
        low = None if (full_load or previous is None) else previous - lb
        best: dict = {}
        quarantine = []
        for i, rec in enumerate(rows):
            c = _cursor(rec.get(cursor))
            if rec.get(key) is None or c is None:
                counts.rejected += 1
                quarantine.append(("invalid", rec))
                continue
            if guard is not None and c > now_s + guard:
                counts.future += 1
                quarantine.append(("future", rec))
                continue
            inside = low is None or c > low or (c == low and boundary == "inclusive")
            if not inside and on_late == "skip":     # counted without any lookup
                counts.below_window += 1
                continue
            k = rec[key]
            if k in best:                       # several records with one key: the newest wins,
                counts.unchanged += 1           # on a tie the later one
                if c < best[k][0]:
                    continue
            best[k] = (c, rec, inside)
        top = previous
        for k, (c, rec, inside) in best.items():
            have = target.get(k)
            if not inside:
                if have is not None and have >= c:
                    counts.unchanged += 1
                    continue
                if on_late == "detect":
                    counts.late += 1
                    quarantine.append(("late", rec))
                    continue
                counts.late_applied += 1
            if have is not None and have >= c:
                counts.unchanged += 1
            else:
                if have is None:
                    counts.inserted += 1
                else:
                    counts.updated += 1
                con.execute(f'INSERT OR REPLACE INTO "{table}" VALUES (?,?,?,?,?)',
                            (k, rec.get("name"), rec.get(cursor), rec.get("version"), c))
            if inside:
                top = c if top is None else max(top, c)
        if settle is not None and top is not None:
            cap = now_s - seconds(settle, "--settle")
            top = max(previous, min(top, cap)) if previous is not None else min(top, cap)
        for reason, rec in quarantine:
            con.execute('INSERT INTO _hiwater_quarantine VALUES (?,?,?)', (table, reason, json.dumps(rec)))
        con.execute('INSERT OR REPLACE INTO _model_state VALUES (?,?)', (table, top))
        total = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
        con.commit()
    finally:
        con.close()
    if rows and counts.rejected == len(rows) and str(max_rejected).strip() != "100%":
        # every record rejected: the quarantine is committed (above), the run fails (the
        # simulator's runner passes max_rejected="100%": it measures loss, not quality gates)
        raise QualityError(f"every record ({len(rows)}) was rejected: nothing valid arrived",
                           rejected=counts.rejected, source_records=len(rows), limit="100%")
    fmt = (lambda v: None if v is None else to_text(v))
    return Summary(counts, fmt(previous), fmt(top), total, table, table,
                   "full" if full_load else "incremental", None)

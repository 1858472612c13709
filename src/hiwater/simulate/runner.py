"""Play a feed through each strategy with the real loader, and measure every run.

Each strategy has its own SQLite target in a work folder. For every run the
simulated source *exports* a JSON Lines file, and ``hiwater.load`` (the same code
path as ``hiwater load``) loads it. What the export holds is the source mode:

``pushdown`` (default)
    The source is a table the loader queries with its window pushed down, as a
    SQL source is read: rows whose cursor is ``>= watermark - lookback`` (``>``
    for the exclusive boundary), everything for a full reload or a first run.
    Rows-read cost differs honestly between strategies; a record below the
    window is never even read, so ``--on-late`` has nothing to act on.
``reexport``
    Every run exports the whole table (a file dump). Every strategy reads
    everything; ``--on-late detect`` now sees the late rows and quarantines them,
    ``load`` applies them, ``skip`` counts them below the window.
``delta``
    Every run exports the changes that arrived since the previous run (a change
    feed: a key changed twice appears twice); a full reload still reads the
    whole table.

Rows whose cursor is null or does not parse cannot be placed in a window; the
``pushdown`` and ``delta`` exports pass each on once, in the run it arrives.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import random
import shutil
import sqlite3
import tempfile
import time

import orjson

from ..errors import UsageError
from ..events import muted
from .generator import TIE, Feed, RunState, from_text, generate, to_text
from .result import Recommendation, RunMetrics, SimulationResult, StrategyResult
from .scenario import Scenario, format_seconds, scenario as make_scenario
from .strategies import Strategy, lookback_strategy, parse_strategies
from .truth import QuarantineReader, compare, read_target

SOURCES = ("pushdown", "reexport", "delta")
TABLE = "events"


def export_rows(state: RunState, strategy: Strategy, watermark: int | None, source: str) -> list:
    """The Versions the simulated source hands this strategy at this run, in export order."""
    rows = state.source.values()
    valid = [v for v in rows if v.valid]
    invalid = [v for v in rows if not v.valid]
    new_invalid = [v for v in invalid if v.run == state.run]
    if strategy.full or source == "reexport":
        chosen, bad = valid, invalid
    elif source == "delta":
        chosen = [v for v in state.arrived if v.valid]    # every change, superseded ones too
        bad = new_invalid
    else:
        low, inclusive = strategy.window_low(watermark)
        if low is None:
            chosen = valid
        elif inclusive:
            chosen = [v for v in valid if v.cursor >= low]
        else:
            chosen = [v for v in valid if v.cursor > low]
        bad = new_invalid
    chosen = sorted(chosen, key=lambda v: (v.cursor, v.key))   # ORDER BY cursor, key
    return chosen + sorted(bad, key=lambda v: v.key)


def _disorder(rows: list, fraction: float, rng: random.Random) -> list:
    """Move a fraction of the rows out of cursor order (random swaps)."""
    if fraction <= 0 or len(rows) < 2:
        return rows
    rows = list(rows)
    for _ in range(int(round(fraction * len(rows)))):
        i, j = rng.randrange(len(rows)), rng.randrange(len(rows))
        rows[i], rows[j] = rows[j], rows[i]
    return rows


def _redeliver(rows: list, fraction: float, rng: random.Random, older: dict, run: int) -> list:
    """At-least-once delivery: send a fraction of the rows again, or an older version of their key."""
    if fraction <= 0 or not rows:
        return rows
    rows = list(rows)
    for _ in range(int(round(fraction * len(rows)))):
        v = rows[rng.randrange(len(rows))]
        earlier = [o for o in older.get(v.key, ()) if o.v < v.v and 0 < o.run <= run and o.valid]
        if earlier and rng.random() < 0.5:
            v = earlier[rng.randrange(len(earlier))]
        rows.insert(rng.randrange(len(rows) + 1), v)
    return rows


def _parse_watermark(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return from_text(value.isoformat())
    text = str(value).strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return from_text(parsed.isoformat())


def _classify(result: StrategyResult, feed: Feed, watermarks: list, quarantine: QuarantineReader,
              source: str) -> None:
    """Give every key the strategy got wrong a cause, from what the generator planted."""
    s = result.strategy
    truth = feed.final.truth
    honest = [None] + [st.honest_watermark for st in feed.states]   # honest[j] = after run j
    for key in sorted(result.missed_keys | result.stale_keys):
        v = truth[key]
        reason = quarantine.versions.get((key, v.v))
        before = watermarks[v.run - 1]          # the strategy's watermark when v arrived
        below = False
        if not s.full and before is not None:
            low = before - s.lookback
            below = v.cursor < low or (s.boundary == "exclusive" and v.cursor == low)
        fair = honest[v.run - 1]                # the watermark had no clock run ahead
        if reason and "future" in str(reason):
            cause = "future"
        elif below and s.on_late == "load" and source == "reexport":
            cause = "unexplained"       # a late record that was re-read must have been applied
        elif below and v.kind == TIE and v.lag == 0 and s.boundary == "exclusive" and s.lookback == 0:
            cause = "tie"
        elif below and fair is not None and before > fair and v.cursor >= fair - s.lookback:
            cause = "skew"
        elif below:
            cause = "late"
            result.lost_lags.append(before - v.cursor)
        else:
            cause = "unexplained"
        result.causes[key] = cause


def _play(feed: Feed, strategy: Strategy, folder: str, source: str, load, progress=None) -> StrategyResult:
    os.makedirs(folder, exist_ok=True)
    db = os.path.join(folder, "target.sqlite")
    if os.path.exists(db):
        raise UsageError(f"{db} exists from an earlier simulation: give an empty folder to keep the targets in")
    result = StrategyResult(strategy)
    quarantine = QuarantineReader()
    watermark: int | None = None
    watermarks: list = [None]                   # watermarks[j] = after run j
    sc = feed.scenario
    older: dict = {}
    for v in feed.versions:
        older.setdefault(v.key, []).append(v)
    for state in feed.states:
        rng = random.Random(f"{feed.seed}:{state.run}:{strategy.name}")
        rows = export_rows(state, strategy, watermark, source)
        rows = _disorder(rows, sc.disorder, rng)
        rows = _redeliver(rows, sc.duplicates, rng, older, state.run)
        path = os.path.join(folder, f"run_{state.run:04d}.jsonl")
        with open(path, "wb") as f:
            for v in rows:
                f.write(orjson.dumps(v.row()))
                f.write(b"\n")
        now = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=state.time)
        started = time.perf_counter()
        # max_rejected="100%": the simulator measures loss, not quality gates; a run whose every
        # exported record is invalid (a feed may produce one) quarantines them and goes on
        summary = load(input=path, db=db, table=TABLE, key="id", cursor="modified_at", now=now,
                       max_rejected="100%", **strategy.load_options())
        elapsed = time.perf_counter() - started
        watermark = _parse_watermark(summary.new_watermark)
        watermarks.append(watermark)
        con = sqlite3.connect(db)
        try:
            quarantine.read(con)
            target, nrows = read_target(con, TABLE)
        finally:
            con.close()
        snap = compare(target, nrows, state.truth, quarantine)
        counts = summary.counts
        result.runs.append(RunMetrics(
            run=state.run, at=to_text(state.time), missed=len(snap.missed), stale=len(snap.stale),
            extra=snap.extra, in_quarantine=len(snap.in_quarantine), rows_read=len(rows),
            rows_written=summary.loaded, quarantined=counts.late + counts.future + counts.rejected,
            seconds=elapsed,
            watermark=None if watermark is None else to_text(watermark),
            counts={name: getattr(counts, name) for name in
                    ("inserted", "updated", "unchanged", "late", "future", "below_window", "rejected")},
        ))
        result.missed_keys, result.stale_keys = snap.missed, snap.stale
        if progress:
            progress(strategy.name, state.run)
        if len(rows) != summary.source_records:
            raise AssertionError(f"{strategy.name} run {state.run}: exported {len(rows)} rows, "
                                 f"the loader counted {summary.source_records}")
    _classify(result, feed, watermarks, quarantine, source)
    return result


def _scratch() -> str | None:
    """Where the throw-away targets go: memory-backed /dev/shm when there is one (every run commits,
    and an fsync per commit would measure the disk, the same for every strategy), else the temp folder."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        return shm
    return None


def _percentile(values: list, q: float) -> int:
    values = sorted(values)
    if not values:
        return 0
    i = min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))
    return values[i]


def recommend_from_feed(feed: Feed) -> Recommendation:
    """The smallest lookback (rounded up to a minute) that loses no record of this feed.

    A record arriving ``lag`` seconds behind the watermark is read again by an
    inclusive window with ``lookback >= lag``; so the answer is the largest lag
    observed, rounded up to a whole minute.
    """
    mattered = [v for st in feed.states for v in st.arrived
                if v.valid and v.lag is not None and v.lag > 0 and st.truth.get(v.key) is v]
    lags = [v.lag for v in mattered]
    worst = max(lags) if lags else 0
    rec = Recommendation(
        lookback_seconds=int(math.ceil(worst / 60) * 60), basis="the simulated feed",
        behind=len(lags), max_lag=worst,
        percentiles={"p50": _percentile(lags, .5), "p90": _percentile(lags, .9), "p99": _percentile(lags, .99)},
    )
    honest = max([v.honest_lag for v in mattered if v.honest_lag is not None] + [0])
    if honest < worst:
        enough = int(math.ceil(honest / 60) * 60)
        rec.notes.append(
            f"Of that, {format_seconds(worst - honest)} is a clock running ahead pushing the watermark forward: "
            f"with the watermark kept honest (a tighter --max-future, or --settle) "
            + (f"--lookback {format_seconds(enough)} would do." if enough else "no lookback would be needed."))
    return rec


def run_simulation(scenario: str | Scenario = "clean", *, seed: int = 1, strategies=None,
                   source: str = "pushdown", recommend: bool = False, workdir: str | None = None,
                   keep: bool = False, progress=None, loader=None, **overrides) -> SimulationResult:
    """Generate a feed, play it through every strategy with the real loader, measure each run.

    ``scenario`` is a preset name (``clean``, ``late``, ``ties``, ``skewed``,
    ``messy``) or a :class:`Scenario`; ``overrides`` replace its fields (``runs=12``,
    ``late=0.3``, ``delay=Delay.parse("exp:20m")``…). ``strategies`` is the
    ``--strategies`` text or a list of :class:`Strategy`. With ``recommend`` the
    smallest safe lookback is computed from the feed and simulated too.
    Targets go to ``workdir`` (by default a temporary folder, in memory-backed
    ``/dev/shm`` where there is one, removed unless ``keep``).
    ``loader`` replaces ``hiwater.load`` (the tests pass the reference model, to
    check the simulator itself and to cross-check the loader against it).
    """
    if source not in SOURCES:
        raise UsageError(f"--source {source!r}: choose {', '.join(SOURCES)}")
    if isinstance(scenario, Scenario):
        sc = scenario.replace(**{k: v for k, v in overrides.items() if v is not None}).check()
    else:
        sc = make_scenario(scenario, **overrides)
    chosen = list(strategies) if strategies and not isinstance(strategies, str) and \
        all(isinstance(s, Strategy) for s in strategies) else parse_strategies(strategies)
    feed = generate(sc, seed)
    rec = None
    if recommend:
        rec = recommend_from_feed(feed)
        extra = lookback_strategy(rec.lookback_seconds) if rec.lookback_seconds else \
            parse_strategies("inclusive")[0]
        match = [s for s in chosen if not s.full and s.boundary == "inclusive" and s.on_late == "detect"
                 and s.lookback == extra.lookback and not s.settle and s.max_future == "1d"]
        if match:
            extra = match[0]
        else:
            chosen.append(extra)
        rec.strategy = extra.name

    if loader is None:
        from .. import load as loader   # late: hiwater's package imports its CLI, which imports this module

    own = workdir is None
    folder = workdir or tempfile.mkdtemp(prefix="hiwater-simulate-", dir=_scratch())
    try:
        with muted():  # the runs' warnings (stale sources, late records) are the simulation's data
            results = [_play(feed, s, os.path.join(folder, s.slug), source, loader, progress) for s in chosen]
    finally:
        if own and not keep:
            shutil.rmtree(folder, ignore_errors=True)
    out = SimulationResult(feed, source, results, rec, folder if (keep or not own) else None)
    if rec is not None:
        mine = out.strategy(rec.strategy)
        rec.rows_read, rec.missed = mine.rows_read, mine.missed + mine.stale
        rec.compare = {s.name: s.rows_read for s in results if s.name in ("inclusive", "full")
                       and s.name != rec.strategy}
    return out

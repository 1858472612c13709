"""The Python API. Every CLI command is one of these functions; their keyword
arguments are the command's flags.

>>> import hiwater
>>> summary = hiwater.load("data/sample_input.txt", db="events.db")   # doctest: +SKIP
>>> summary.to_dict()["new_watermark"]                                 # doctest: +SKIP
'2025-01-15T11:15:00'
"""

from __future__ import annotations

# Imports: what `hiwater load` needs is imported here; what only some commands need (the
# schedulers for --buckets and `hiwater run`, the SQL source, verify) is imported by the function
# that needs it, as the heavy drivers are: every command pays a module's import at start-up
# (docs/benchmarks.md measures whole runs). tests/test_layers.py checks these imports all the same.
import functools
import os

from . import stream as _stream
from . import values as V
from .errors import ConfigError, HiwaterError, UsageError
from .keyhash import members, parse_name
from .project import load_project
from .sources.files import resolve_paths
from .spec import StreamSpec, absent, connected, spec_from
from .status import UNREACHABLE, check, status  # noqa: F401 - UNREACHABLE for the CLI (it imports the API only)
from .summary import Summary
from .targets import open_target
from .targets.base import Dropped, State

__all__ = ["load", "run", "status", "check", "validate", "state_show", "state_set", "state_reset", "state_rewind",
           "stream_drop", "history", "quarantine_list", "quarantine_replay"]


def load(input=None, *, db: str | None = None, target: str | None = None,
         source=None, source_url: str | None = None, source_table: str | None = None,
         query: str | None = None, stdin=None, progress=None, **options) -> Summary:
    """Load ``input`` into the target; return the run's summary.

    ``input`` is a file, folder, glob or ``-`` (standard input), or data in memory: a list or
    iterator of dicts, a pyarrow Table, RecordBatch or RecordBatchReader, or a pandas DataFrame
    (read exactly as a file would be: the same checks, verdicts and guarantees).
    ``db`` is a SQLite file (created if missing; in memory when neither ``db`` nor
    ``target`` is given, with a warning that nothing is kept); ``target`` a database URL.
    ``options`` are the ``hiwater load`` flags as keyword arguments (``full_load=True``,
    ``lookback="15m"``, ``max_rejected="1%"``, ...).
    ``source_url`` reads a database instead of files (``postgresql://…``, ``mysql://…``,
    ``sqlite:///…``, ``duckdb:///…``; default ``$HIWATER_SOURCE_URL`` when no ``input``),
    with ``source_table`` or ``query``, the window pushed down.
    ``source`` may be any object with ``batches()``/``close()`` in place of ``input``.
    ``progress``, if given, is called as ``progress(records_done, records_expected)`` after each
    batch (``records_expected`` is an estimate, or ``None``).
    ``buckets=N`` (N > 1) splits the stream into N key-hash buckets run in parallel by
    ``executor`` (``"local"``: a process pool, the default; ``"dask"``: a Dask LocalCluster;
    ``"dask:tcp://host:8786"`` or a ``distributed.Client``: an existing cluster); the summary is the
    union's, with each bucket's in ``summary.buckets`` (docs/scale-out.md).
    Warnings go to the ``logging`` logger ``hiwater`` and into ``summary.warnings``.
    """
    spec = spec_from(input, db=db, target=target, source=source, source_url=source_url,
                     source_table=source_table, query=query, **options)
    return _run(spec, stdin=stdin, progress=progress)


def _run(spec: StreamSpec, *, stdin=None, progress=None) -> Summary:
    """Run one stream's spec: split into buckets when it asks for them, else in this process
    (``--rebucket``: the stream's buckets of another count forgotten first)."""
    if spec.options.rebucket:
        from .rebucket import rebucket
        spec = rebucket(spec)
    if spec.options.buckets > 1:
        from .buckets import load_bucketed  # (start-up: see the module's note on imports)
        return load_bucketed(spec)
    return _stream.run(spec, stdin=stdin, progress=progress)


# --- state -----------------------------------------------------------------------------------

def _stream_names(tgt, stream):
    states = tgt.ledger.states()
    if stream is None:
        return states
    found = [s for s in states if s.stream == stream] or _committed(states, members(
        [s.stream for s in states], stream))
    if not found:
        raise UsageError(f"no stream named {stream!r} in {tgt.description}",
                         hint="`hiwater state show` lists the streams")
    return found


def state_show(*, db=None, target=None, stream=None) -> list[dict]:
    """Every stream's state (or one stream's)."""
    with connected(db, target, existing="state show") as tgt:
        return [s.to_public() for s in _stream_names(tgt, stream)]


def state_set(*, stream, value, db=None, target=None) -> dict:
    """Set a stream's watermark by hand (a repair; it may move backwards). A bucketed stream's
    name sets every bucket's."""
    with connected(db, target, existing="state set") as tgt:
        buckets = _buckets(tgt, stream)
        if buckets:
            return _whole(stream, [_set(tgt, s.stream, value) for s in _committed(tgt.ledger.states(), buckets)])
        return _set(tgt, stream, value)


def _set(tgt, stream, value) -> dict:
    with tgt.lock(stream, 30), tgt.begin(stream) as tx:
        s = _stream_names(tgt, stream)[0]
        tz = V.zone(s.assume_tz)
        if value is None or str(value).lower() in ("null", "none"):
            s.watermark = None
        elif s.kind is None:
            # no run has seen a record: a guess (20 as an integer? an instant?) could misread the data
            raise UsageError(f"stream {stream!r} has no cursor kind yet (no run has seen a record): "
                             f"there is nothing to read {value!r} against",
                             hint="load it once first, or bound that load with --since")
        else:
            s.watermark, s.naive = V.parse_bound(value, s.kind, tz, "state set")
        tx.record(State(s))
        return s.to_public()


def state_reset(*, stream, db=None, target=None) -> dict:
    """Forget a stream's watermark: the next run reads everything (the data stays)."""
    return state_set(stream=stream, value=None, db=db, target=target)


def stream_drop(*, stream, table: bool = False, db=None, target=None) -> dict:
    """Forget a stream: its state, history and quarantine rows; with ``table=True`` also drop
    its data table. The next run starts the stream afresh (with any --key/--cursor/--assume-tz).
    A bucketed stream's name drops all its buckets; one bucket cannot take the shared table along."""
    with connected(db, target, existing="stream drop") as tgt:
        buckets = _buckets(tgt, stream)
        if buckets:
            return _drop_buckets(tgt, stream, buckets, table)
        p = parse_name(stream)
        if p is not None and table:
            raise UsageError(f"{stream!r} is one bucket of the stream {p[0]!r}: its table holds all {p[2]} "
                             f"buckets' rows, so it cannot be dropped with one bucket",
                             hint=f"drop the whole stream: hiwater stream drop {p[0]} --table")
        with tgt.lock(stream, 30), tgt.begin(stream) as tx:
            s = _stream_names(tgt, stream)[0]
            tx.record(Dropped(s.table if table else None))
            return {"stream": stream, "table": s.table, "table_dropped": bool(table)}


def state_rewind(*, stream, to_run: int, db=None, target=None) -> dict:
    """Put the watermark back where it stood before run ``to_run``, so that run is replayed.
    A bucketed stream's name takes run ``to_run`` of any of its buckets and puts every bucket
    back to that run's starting watermark (a bucket already behind it stays)."""
    with connected(db, target, existing="state rewind") as tgt:
        buckets = _buckets(tgt, stream)
        if buckets:
            return _rewind_buckets(tgt, stream, buckets, to_run)
        with tgt.lock(stream, 30), tgt.begin(stream) as tx:
            s = _stream_names(tgt, stream)[0]
            rows = [r for r in tgt.ledger.history(stream) if r["run_id"] == to_run]
            if not rows:
                raise UsageError(f"stream {stream!r} has no run {to_run}",
                                 hint="`hiwater history` lists the runs")
            s.watermark = rows[0]["watermark_before_value"]
            tx.record(State(s))
            return s.to_public()


def history(*, db=None, target=None, stream=None, limit=None) -> list[dict]:
    """One row per run and per committed window, oldest first (a bucketed stream's name: its
    buckets' rows)."""
    with connected(db, target, existing="history") as tgt:
        buckets = _buckets(tgt, stream)
        if buckets:
            rows = sorted((r for b in buckets for r in tgt.ledger.history(b, limit)),
                          key=lambda r: (r["run_id"], r.get("window_index") or 0))
            return rows[-limit:] if limit else rows
        return tgt.ledger.history(stream, limit)


# --- quarantine ------------------------------------------------------------------------------

def quarantine_list(*, db=None, target=None, stream=None, reason=None, limit=None) -> list[dict]:
    """The records runs did not apply, with the reason and the runs that saw them (a bucketed
    stream's name: its buckets' records)."""
    with connected(db, target, existing="quarantine list") as tgt:
        buckets = _buckets(tgt, stream)
        if buckets:
            rows = sorted((r for b in buckets for r in tgt.ledger.quarantine(b, reason, limit)), key=lambda r: r["id"])
            return rows[:limit] if limit else rows
        return tgt.ledger.quarantine(stream, reason, limit)


def quarantine_replay(*, stream, db=None, target=None, reason=None, on_late="load", **options) -> Summary:
    """Run quarantined records through the loader again, in one transaction.

    Late records are applied (``on_late="load"``) unless the target already holds
    them or something newer; records that still fail (invalid, still in the future)
    are quarantined again. Replayed records leave the quarantine. A bucketed stream's name
    replays each bucket's records (each bucket in its own transaction).
    """
    with connected(db, target, existing="quarantine replay") as tgt:
        buckets = [s.stream for s in _committed(tgt.ledger.states(), _buckets(tgt, stream))]
    if buckets:
        from .buckets import replay_buckets
        return replay_buckets(stream, buckets, db=db, target=target, reason=reason, on_late=on_late, **options)
    return _stream.replay(stream, db=db, target=target, reason=reason, on_late=on_late, **options)


# --- a bucketed stream's own name: the admin commands act on all its buckets (docs/scale-out.md) ---

def _buckets(tgt, stream) -> list[str]:
    """The bucket streams of ``stream`` when it names a bucketed stream (not a plain stream,
    not one bucket): every bucket of its count, a bucket that never committed included."""
    if stream is None or parse_name(stream) is not None:
        return []
    names = [s.stream for s in tgt.ledger.states()]
    return [] if stream in names else members(names, stream)


def _committed(states, names: list) -> list:
    """The states of the buckets ``names`` that have one (a bucket never committed has none)."""
    by = {s.stream: s for s in states}
    return [by[n] for n in names if n in by]


def _whole(stream: str, rows: list) -> dict:
    """One admin command's answer for a bucketed stream: its least watermark, each bucket's row."""
    held = [r for r in rows if r["watermark_value"] is not None]
    least = min(held, key=lambda r: r["watermark_value"]) if len(held) == len(rows) and held else None
    return {"stream": stream, "watermark": least["watermark"] if least else None,
            "kind": rows[0]["kind"] if rows else None, "buckets": rows}


def _drop_buckets(tgt, stream: str, buckets: list, table: bool) -> dict:
    """Forget every bucket; the shared table goes with the last one, so a drop cut short leaves
    the table with buckets that re-read everything, never a bucket's watermark without its rows."""
    names = [s.table for s in _committed(tgt.ledger.states(), buckets)]
    for i, name in enumerate(buckets):
        last = i == len(buckets) - 1
        with tgt.lock(name, 30), tgt.begin(name) as tx:
            tx.record(Dropped(names[0] if table and last and names else None))
    return {"stream": stream, "table": names[0] if names else None, "table_dropped": bool(table and names),
            "buckets": buckets}


def _rewind_buckets(tgt, stream: str, buckets: list, to_run: int) -> dict:
    runs = [r for b in buckets for r in tgt.ledger.history(b) if r["run_id"] == to_run]
    if not runs:
        raise UsageError(f"stream {stream!r} has no run {to_run} in any of its buckets",
                         hint="`hiwater history --stream NAME` lists the runs")
    to = runs[0]["watermark_before_value"]
    out = []
    for s in _committed(tgt.ledger.states(), buckets):
        with tgt.lock(s.stream, 30), tgt.begin(s.stream) as tx:
            if to is None or (s.watermark is not None and to < s.watermark):
                s.watermark = to
            tx.record(State(s))
            out.append(s.to_public())
    return _whole(stream, out)


# --- projects: run, status, check, validate ----------------------------------------------------

def run(streams=None, *, project=None, jobs: int = 1, fail_fast: bool = False, dry_run: bool = False,
        raise_on_failure: bool = True, on_result=None, on_start=None, progress=None):
    """``hiwater run``: load the project's streams (all, or those named), ``jobs`` at a time.

    Each stream is one :func:`load` call with its options from the project file and commits on
    its own; a failed stream does not stop the others (unless ``fail_fast``). Returns a
    :class:`~hiwater.executor.PipelineResult`; when a stream failed and ``raise_on_failure``
    (the default) it raises :class:`~hiwater.errors.PipelineError` instead, whose ``result``
    holds every stream's outcome (the others committed). ``project`` is the file (default:
    ``$HIWATER_PROJECT``, else ``./hiwater.toml``). ``on_start(name)`` is called as each stream
    starts, ``on_result(StreamResult)`` as each ends; with ``jobs=1`` (the streams load in this
    process) ``progress`` is each stream's :func:`load` progress callback.
    """
    if isinstance(streams, str):
        streams = [streams]
    proj = load_project(project)
    configs = proj.select(streams)
    # with jobs=1 the streams load in this process: each run reports its progress
    work = _run if progress is None or jobs != 1 else functools.partial(_run, progress=progress)
    from .pipeline import run_streams
    result = run_streams(configs, run=work, jobs=jobs, fail_fast=fail_fast, on_result=on_result,
                         on_start=on_start, overrides={"dry_run": True} if dry_run else None)
    return result.raise_for_failures() if raise_on_failure else result


def validate(*, project=None, connect: bool = False) -> list[dict]:
    """``hiwater validate``: read and check the project file (a usage error names the first
    problem). With ``connect``, also open each stream's target and source (files found, the
    database answers, the table and its key and cursor columns exist); each stream's row then
    lists its ``problems`` (empty when it is ready to run)."""
    proj = load_project(project)
    rows = []
    for cfg in proj.streams.values():
        row = cfg.describe()
        row["problems"] = []
        if connect:
            row["problems"] = _probe(cfg)
        rows.append(row)
    return rows


def _probe(cfg) -> list[dict]:
    """Open a stream's target and source without writing anything; the errors met."""
    problems = []
    try:
        path = absent(open_target(**cfg.target_kw))
        if path is not None:
            # A database file or Delta folder not made yet: the first run makes it; validating must not.
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                raise ConfigError(f"{path}: the folder {folder} does not exist")
        else:
            with connected(**cfg.target_kw):
                pass
    except HiwaterError as exc:
        problems.append({"where": "target", **exc.to_dict()})
    load = cfg.load
    try:
        if "input" in load:
            resolve_paths(load["input"])
        else:
            o = cfg.options
            from .sources.sql import open_sql
            src = open_sql(load["source_url"], table=load.get("source_table"), query=load.get("query"),
                           key=o.key, cursor=o.cursor, batch_size=o.batch_size, assume_tz=o.assume_tz or "UTC")
            try:
                src.ensure_open()
            finally:
                src.close()
    except HiwaterError as exc:
        problems.append({"where": "source", **exc.to_dict()})
    return problems


# --- verify -------------------------------------------------------------------------------------

def verify(streams=None, *, project=None, db=None, target=None, input=None, source_url=None, source_table=None,
           query=None, format=None, data=None, by=None, since=None, until=None, content: bool = False,
           repair: bool = False, prune_extra: bool = False) -> list[dict]:
    """``hiwater verify``: prove, window by window of the cursor, that each stream's target table
    holds what its source holds up to the watermark; name what differs (docs/verify.md).

    The streams and their sources come from the project file, or from ``db``/``target`` and
    ``input``/``source_url`` (or ``data`` in memory). Returns one result record per stream;
    ``result["equal"]`` is False when a key is missing, extra, stale, ahead or changed.
    """
    from .project import load_project
    from .verify.run import Api, verify_streams
    return verify_streams(streams, api=Api(state_show, quarantine_list, load, load_project), project=project,
                          db=db, target=target, input=input, source_url=source_url, source_table=source_table,
                          query=query, format=format, data=data, by=by, since=since, until=until,
                          content=content, repair=repair, prune_extra=prune_extra)

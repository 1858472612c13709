"""The Python API. Every CLI command is one of these functions; their keyword
arguments are the command's flags.

>>> import hiwater
>>> summary = hiwater.load("data/sample_input.txt", db="events.db")   # doctest: +SKIP
>>> summary.to_dict()["new_watermark"]                                 # doctest: +SKIP
'2025-01-15T11:15:00'
"""

from __future__ import annotations

import os
from contextlib import contextmanager

from . import values as V
from .errors import ConfigError, UsageError
from .loader import Loader, dated_table_notice, default_table
from .options import LoadOptions
from .sources.files import open_files
from .summary import Summary
from .targets import open_target


@contextmanager
def _target(db=None, target=None):
    tgt = open_target(db=db, target=target)
    try:
        tgt.connect()
        yield tgt
    finally:
        tgt.close()


def load(input=None, *, db: str | None = None, target: str | None = None,
         source=None, source_url: str | None = None, source_table: str | None = None,
         query: str | None = None, stdin=None, progress=None, _bucket=None, **options) -> Summary:
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
    from .sources.memory import DataSource, is_data
    opts = LoadOptions.build(**options)
    notices = []
    if isinstance(input, dict):
        raise UsageError("hiwater.load: got one dict; pass a list of records ([record])")
    if is_data(input):
        source, input = DataSource(input, cursor=opts.cursor, batch_size=opts.batch_size,
                                   keep=opts.window is not None), None
        if opts.table is None:
            notices.append("the data has no name: it loads into the table 'records' (pass table=... to name it)")
    if source_url is None and input is None and source is None:
        source_url = os.environ.get("HIWATER_SOURCE_URL") or None
    if source_url is not None and input is not None:
        raise UsageError("give --input or --source, not both")
    if source_url is None and (source_table is not None or query is not None):
        raise UsageError("--source-table and --query read a database: give --source URL too")
    if source is None and input is None and source_url is None:
        raise UsageError("give --input PATH (a file, a folder, a glob, or - for standard input) or --source URL")
    if input is not None and not isinstance(input, str):
        input = os.fspath(input)
    if opts.buckets > 1 and _bucket is None:
        from .buckets import load_bucketed
        return load_bucketed(input, opts, options, db=db, target=target, source=source, source_url=source_url,
                             source_table=source_table, query=query, notices=notices)
    if source_url is not None and source is None:
        from .sources.sql import default_table as sql_table, open_sql
        source = open_sql(source_url, table=source_table, query=query, key=opts.key, cursor=opts.cursor,
                          batch_size=opts.batch_size, assume_tz=opts.assume_tz or "UTC", bucket=_bucket)
        table = opts.table or sql_table(source_table)
    else:
        table = opts.table or default_table(input)
        if opts.table is None and input is not None:
            notice = dated_table_notice(input, table)
            if notice:
                notices.append(notice)
    if opts.dry_run and db is not None and not os.path.exists(db):
        db = None  # a dry run against a file that does not exist yet writes nothing, not even the file
    tgt = open_target(db=db, target=target)
    if getattr(tgt, "memory", False) and not opts.dry_run:
        notices.insert(0, "the target is an in-memory database: nothing of this run is kept when it ends "
                          "(give --db PATH or --target URL)")
    try:
        src = source or open_files(input, opts.format, cursor=opts.cursor, batch_size=opts.batch_size,
                                   stdin=stdin)
        if _bucket is not None:  # one bucket of a bucketed stream: its own name, its own rows
            from .buckets import BucketSource, bucket_name
            opts.stream = bucket_name(opts.stream or table, *_bucket)
            if source_url is None:
                src = BucketSource(src, opts.key, *_bucket)
    except BaseException:
        tgt.close()
        raise
    try:
        return Loader(src, tgt, opts, table=table, progress=progress, notices=notices).run()
    finally:
        src.close()
        tgt.close()


# --- state -----------------------------------------------------------------------------------

def _stream_names(tgt, stream):
    states = tgt.list_states()
    if stream is None:
        return states
    found = [s for s in states if s.stream == stream]
    if not found:
        raise UsageError(f"no stream named {stream!r} in {tgt.description}",
                         hint="`hiwater state show` lists the streams")
    return found


def state_show(*, db=None, target=None, stream=None) -> list[dict]:
    """Every stream's state (or one stream's)."""
    with _target(db, target) as tgt:
        return [s.to_public() for s in _stream_names(tgt, stream)]


def state_set(*, stream, value, db=None, target=None) -> dict:
    """Set a stream's watermark by hand (a repair; it may move backwards)."""
    with _target(db, target) as tgt:
        with tgt.stream_lock(stream, 30), tgt.transaction():
            s = _stream_names(tgt, stream)[0]
            tz = V.zone(s.assume_tz)
            if value is None or str(value).lower() in ("null", "none"):
                s.watermark = None
            else:
                s.watermark, s.naive = V.parse_bound(value, s.kind, tz, "state set")
            tgt.write_state(s)
            return s.to_public()


def state_reset(*, stream, db=None, target=None) -> dict:
    """Forget a stream's watermark: the next run reads everything (the data stays)."""
    return state_set(stream=stream, value=None, db=db, target=target)


def stream_drop(*, stream, table: bool = False, db=None, target=None) -> dict:
    """Forget a stream: its state, history and quarantine rows; with ``table=True`` also drop
    its data table. The next run starts the stream afresh (with any --key/--cursor/--assume-tz)."""
    with _target(db, target) as tgt:
        with tgt.stream_lock(stream, 30), tgt.transaction():
            s = _stream_names(tgt, stream)[0]
            tgt.drop_stream(stream, s.table if table else None)
            return {"stream": stream, "table": s.table, "table_dropped": bool(table)}


def state_rewind(*, stream, to_run: int, db=None, target=None) -> dict:
    """Put the watermark back where it stood before run ``to_run``, so that run is replayed."""
    with _target(db, target) as tgt:
        with tgt.stream_lock(stream, 30), tgt.transaction():
            s = _stream_names(tgt, stream)[0]
            rows = [r for r in tgt.read_history(stream) if r["run_id"] == to_run]
            if not rows:
                raise UsageError(f"stream {stream!r} has no run {to_run}",
                                 hint="`hiwater history` lists the runs")
            s.watermark = rows[0]["watermark_before_value"]
            tgt.write_state(s)
            return s.to_public()


def history(*, db=None, target=None, stream=None, limit=None) -> list[dict]:
    """One row per run and per committed window, oldest first."""
    with _target(db, target) as tgt:
        return tgt.read_history(stream, limit)


# --- quarantine ------------------------------------------------------------------------------

def quarantine_list(*, db=None, target=None, stream=None, reason=None, limit=None) -> list[dict]:
    """The records runs did not apply, with the reason and the runs that saw them."""
    with _target(db, target) as tgt:
        return tgt.read_quarantine(stream, reason, limit)


def quarantine_replay(*, stream, db=None, target=None, reason=None, on_late="load", **options) -> Summary:
    """Run quarantined records through the loader again, in one transaction.

    Late records are applied (``on_late="load"``) unless the target already holds
    them or something newer; records that still fail (invalid, still in the future)
    are quarantined again. Replayed records leave the quarantine.
    """
    from .sources.quarantine import QuarantineSource
    tgt = open_target(db=db, target=target)
    tgt.connect()
    try:
        states = {s.stream: s for s in tgt.list_states()}
        if stream not in states:
            raise UsageError(f"no stream named {stream!r}", hint="`hiwater state show` lists the streams")
        s = states[stream]
        rows = tgt.read_quarantine(stream, reason)
        src = QuarantineSource(rows, tgt, s.cursor)
        opts = LoadOptions.build(key=s.key, cursor=s.cursor, table=s.table, stream=stream,
                                 on_late=on_late, assume_tz=s.assume_tz, **options)
        return Loader(src, tgt, opts, table=s.table).run()
    finally:
        tgt.close()


# --- projects: run, status, check, validate ----------------------------------------------------

def run(streams=None, *, project=None, jobs: int = 1, fail_fast: bool = False, dry_run: bool = False,
        raise_on_failure: bool = True, on_result=None):
    """``hiwater run``: load the project's streams (all, or those named), ``jobs`` at a time.

    Each stream is one :func:`load` call with its options from the project file and commits on
    its own; a failed stream does not stop the others (unless ``fail_fast``). Returns a
    :class:`~hiwater.pipeline.PipelineResult`; when a stream failed and ``raise_on_failure``
    (the default) it raises :class:`~hiwater.errors.PipelineError` instead, whose ``result``
    holds every stream's outcome (the others committed). ``project`` is the file (default:
    ``$HIWATER_PROJECT``, else ``./hiwater.toml``).
    """
    from .pipeline import run_streams
    from .project import load_project
    if isinstance(streams, str):
        streams = [streams]
    proj = load_project(project)
    configs = proj.select(streams)
    result = run_streams(configs, jobs=jobs, fail_fast=fail_fast, on_result=on_result,
                         overrides={"dry_run": True} if dry_run else None)
    return result.raise_for_failures() if raise_on_failure else result


def _project_groups(project, streams, db, target):
    """``(target keywords, [(stream name, StreamConfig or None)])`` per target: the target's own
    streams when ``db``/``target`` is given, else the project's (grouped by their target)."""
    if db is not None or target is not None:
        return [({"db": db, "target": target}, None if not streams else [(s, None) for s in streams])]
    from .project import load_project
    proj = load_project(project)
    groups: dict = {}
    for cfg in proj.select(streams):
        kw = cfg.target_kw
        groups.setdefault((kw["db"], kw["target"]), []).append((cfg.name, cfg))
    return [({"db": d, "target": t}, members) for (d, t), members in groups.items()]


def _now_us(now) -> int:
    if now is None:
        return V.now_us()
    return V.now_us(LoadOptions.build(now=now).now)


def status(streams=None, *, project=None, db=None, target=None, now=None) -> list[dict]:
    """``hiwater status``: every stream of the project (or of the target ``db``/``target``): its
    watermark, its two ages (load age: since the latest successful run; data age: now −
    watermark), the latest run (when, outcome, counts, duration, error) and the quarantine size."""
    from . import freshness as F
    if isinstance(streams, str):
        streams = [streams]
    now_us = _now_us(now)
    rows = []
    for kw, members in _project_groups(project, streams, db, target):
        with _target(**kw) as tgt:
            from .buckets import buckets_of, status_rows
            states = {s.stream: s for s in tgt.list_states()}
            names = [(n, c) for n, c in members] if members is not None else [(n, None) for n in states]
            if members is not None and (db is not None or target is not None):
                for n, _ in names:
                    if n not in states and not buckets_of(states, n):
                        raise UsageError(f"no stream named {n!r} in {tgt.description}",
                                         hint="`hiwater status` lists the streams")
            # A bucketed stream: one row for the stream (the least watermark of its buckets), then
            # one row per bucket (docs/scale-out.md).
            names = status_rows(names, states)
            for name, cfg in names:
                if isinstance(name, tuple):
                    from .buckets import aggregate_row
                    rows.append(aggregate_row(name[0], name[1], rows, states, cfg, now_us))
                    continue
                s = states.get(name)
                facts = tgt.stream_facts(name)
                last = facts["last_run"]
                failed = [r for r in last if r.get("outcome") == "failed"]
                head = failed[0] if failed else (last[-1] if last else None)
                load_age = F.load_age_s(facts["last_success_at"], now_us)
                data_age = F.data_age_s(s.watermark if s else None, s.kind if s else None, now_us)
                row = {
                    "stream": name, "table": s.table if s else (cfg.load.get("table") if cfg else None),
                    "target": tgt.description, "kind": s.kind if s else None,
                    "watermark": s.watermark_text() if s else None,
                    "load_age_s": None if load_age is None else round(load_age, 3),
                    "load_age": F.age_text(load_age),
                    "data_age_s": None if data_age is None else round(data_age, 3),
                    "data_age": F.age_text(data_age),
                    "last_success_at": facts["last_success_at"],
                    "last_run_id": head["run_id"] if head else None,
                    "last_run_at": max(r["finished_at"] for r in last) if last else None,
                    "last_outcome": ("failed" if failed else head["outcome"]) if head else "never run",
                    "last_source_records": _sum(last, "source_records"),
                    "last_loaded": _sum(last, "loaded"), "last_skipped": _sum(last, "skipped"),
                    "last_rejected": _sum(last, "rejected"),
                    "last_duration_s": max((r.get("duration_s") or 0 for r in last), default=None) if last else None,
                    "last_error": failed[0].get("error") if failed else None,
                    "quarantined": facts["quarantined"],
                }
                if cfg is not None:
                    row["warn_after"] = cfg.warn_after.text if cfg.warn_after else None
                    row["error_after"] = cfg.error_after.text if cfg.error_after else None
                rows.append(row)
    return rows


def _sum(rows, name):
    values = [r.get(name) for r in rows if r.get(name) is not None]
    return sum(values) if values else None


def check(streams=None, *, project=None, db=None, target=None, warn_after=None, error_after=None,
          by: str = "load", now=None) -> list[dict]:
    """``hiwater check``: each stream's freshness verdict (``ok``, ``warn``, ``error``) on its load
    age (``by="data"``: its data age). ``warn_after``/``error_after`` apply to every stream and
    win over the project file's ``warn-after``/``error-after`` (the file's apply to its streams
    otherwise). A stream with no limit at all is a usage error, never a silent "ok"."""
    from . import freshness as F
    from .durations import parse_duration
    if by not in F.BY:
        raise UsageError(f"--by {by!r}: choose load or data")
    limits = {}
    for name, v in (("--warn-after", warn_after), ("--error-after", error_after)):
        d = None if v is None else parse_duration(v, name)
        if d is not None and d.micros is None:
            raise UsageError(f"{name} {d.text!r}: give a unit", hint="for example 30m, 6h or 1d")
        limits[name] = d
    from .buckets import parse_name
    rows = status(streams, project=project, db=db, target=target, now=now)
    out, unlimited, no_data_age = [], [], []
    for r in rows:
        if parse_name(r["stream"]) is not None:
            continue  # a bucket: its stream's row judges the least watermark and the oldest load
        warn = limits["--warn-after"] or _dur(r.get("warn_after"), "warn-after")
        error = limits["--error-after"] or _dur(r.get("error_after"), "error-after")
        if warn is None and error is None:
            unlimited.append(r["stream"])
            continue
        if by == "data" and r["kind"] == V.INT:
            no_data_age.append(r["stream"])
            continue
        age = r["load_age_s"] if by == "load" else r["data_age_s"]
        out.append({"stream": r["stream"], "by": by, "age_s": age, "age": F.age_text(age),
                    "warn_after": warn.text if warn else None, "error_after": error.text if error else None,
                    "verdict": F.verdict(age, warn, error), "watermark": r["watermark"],
                    "last_outcome": r["last_outcome"], "last_success_at": r["last_success_at"]})
    if unlimited:
        raise UsageError(f"no freshness limit for stream(s) {', '.join(unlimited)}",
                         hint="give --warn-after / --error-after, or warn-after / error-after in the project file")
    if no_data_age:
        raise UsageError(f"stream(s) {', '.join(no_data_age)} have an integer cursor: their data has no age",
                         hint="use --by load, or check those streams separately")
    return out


def _dur(text, name):
    from .durations import parse_duration
    return None if text is None else parse_duration(text, name)


def validate(*, project=None, connect: bool = False) -> list[dict]:
    """``hiwater validate``: read and check the project file (a usage error names the first
    problem). With ``connect``, also open each stream's target and source (files found, the
    database answers, the table and its key and cursor columns exist); each stream's row then
    lists its ``problems`` (empty when it is ready to run)."""
    from .project import load_project
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
    from .errors import HiwaterError
    problems = []
    try:
        tgt = open_target(**cfg.target_kw)
        path = getattr(tgt, "path", None)
        if isinstance(path, str) and path != ":memory:" and not os.path.exists(path):
            # A database file not made yet: the first run makes it; validating must not.
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                raise ConfigError(f"{path}: the folder {folder} does not exist")
        else:
            with _target(**cfg.target_kw):
                pass
    except HiwaterError as exc:
        problems.append({"where": "target", **exc.to_dict()})
    load = cfg.load
    try:
        if "input" in load:
            from .sources.files import resolve_paths
            resolve_paths(load["input"])
        else:
            from .sources.sql import open_sql
            o = cfg.options
            src = open_sql(load["source_url"], table=load.get("source_table"), query=load.get("query"),
                           key=o.key, cursor=o.cursor, batch_size=o.batch_size, assume_tz=o.assume_tz or "UTC")
            try:
                src._ensure_open()
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

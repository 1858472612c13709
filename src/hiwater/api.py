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
from .errors import UsageError
from .loader import Loader, default_table
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


def load(input: str | None = None, *, db: str | None = None, target: str | None = None,
         source=None, source_url: str | None = None, source_table: str | None = None,
         query: str | None = None, stdin=None, progress=None, **options) -> Summary:
    """Load ``input`` (a file, folder, glob or ``-``) into the target; return the run's summary.

    ``db`` is a SQLite file (created if missing; in memory when neither ``db`` nor
    ``target`` is given); ``target`` a database URL. ``options`` are the ``hiwater
    load`` flags as keyword arguments (``full_load=True``, ``lookback="15m"``, ...).
    ``source_url`` reads a database instead of files (``postgresql://…``, ``mysql://…``,
    ``sqlite:///…``, ``duckdb:///…``; default ``$HIWATER_SOURCE_URL`` when no ``input``),
    with ``source_table`` or ``query``, the window pushed down.
    ``source`` may be any object with ``batches()``/``close()`` in place of ``input``.
    ``progress``, if given, is called as ``progress(records_done, records_expected)`` after each
    batch (``records_expected`` is an estimate, or ``None``).
    """
    opts = LoadOptions.build(**options)
    if source_url is None and input is None and source is None:
        source_url = os.environ.get("HIWATER_SOURCE_URL") or None
    if source_url is not None and input is not None:
        raise UsageError("give --input or --source, not both")
    if source_url is None and (source_table is not None or query is not None):
        raise UsageError("--source-table and --query read a database: give --source URL too")
    if source is None and input is None and source_url is None:
        raise UsageError("give --input PATH (a file, a folder, a glob, or - for standard input) or --source URL")
    if source_url is not None and source is None:
        from .sources.sql import default_table as sql_table, open_sql
        source = open_sql(source_url, table=source_table, query=query, key=opts.key, cursor=opts.cursor,
                          batch_size=opts.batch_size, assume_tz=opts.assume_tz or "UTC")
        table = opts.table or sql_table(source_table)
    else:
        table = opts.table or default_table(input)
    if opts.dry_run and db is not None and not os.path.exists(db):
        db = None  # a dry run against a file that does not exist yet writes nothing, not even the file
    tgt = open_target(db=db, target=target)
    src = source or open_files(input, opts.format, cursor=opts.cursor, batch_size=opts.batch_size,
                               stdin=stdin)
    try:
        return Loader(src, tgt, opts, table=table, progress=progress).run()
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

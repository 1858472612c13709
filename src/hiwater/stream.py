"""Run ONE stream: open its target and source, run the :class:`~hiwater.loader.Loader`, close.

Every way of loading comes down to this module: ``hiwater.load`` in this process, a project
stream (``hiwater run``), a bucket in a worker process or a Dask task, and a quarantine replay.
The spec is already built and checked (:mod:`hiwater.spec`); nothing here reads keyword dicts.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from .errors import HiwaterError, UsageError
from .loader import Loader
from .options import LoadOptions
from .sources.bucket import BucketSource
from .sources.csvfile import CsvDialect
from .sources.files import open_files
from .sources.quarantine import QuarantineSource
from .sources.shuffled import ShuffledSource
from .spec import StreamSpec
from .summary import Summary
from .targets import open_target


def run(spec: StreamSpec, *, stdin=None, progress=None) -> Summary:
    """Load ``spec`` (one stream, or one bucket of one); return the run's summary."""
    o = spec.options
    source, db, notices = spec.source, spec.db, list(spec.notices)
    if spec.source_url is not None and source is None and spec.share is None:
        from .sources.sql import open_sql  # (a SQL source only: the drivers' dialects load with it)
        source = open_sql(spec.source_url, table=spec.source_table, query=spec.query, key=o.key, cursor=o.cursor,
                          batch_size=o.batch_size, assume_tz=o.assume_tz or "UTC", bucket=spec.bucket)
    tgt = open_target(db=db, target=spec.target)
    if o.dry_run and not_made(tgt):
        # A dry run makes nothing, not even the target's file or folder: against a target that
        # does not exist yet it runs against an empty database in memory, which is what the
        # real first run would find. (An existing target's dry run rolls back what it staged.)
        tgt = open_target(db=":memory:")
    tgt.dry_run = o.dry_run  # (an existing target: no lock file made, its journal mode kept)
    if getattr(tgt, "memory", False) and not o.dry_run:
        notices.insert(0, "the target is an in-memory database: nothing of this run is kept when it ends "
                          "(give --db PATH or --target URL)")
    if spec.share is not None:  # a bucket's rows, as the read phase spilled them
        if spec.share.sql is None:
            src = ShuffledSource(spec.share)
        else:  # (a SQL source's key ranges)
            from .sources.sqlsplits import SqlShuffledSource
            src = SqlShuffledSource(spec.share)
    else:
        src = source or open_files(spec.input, o.format, cursor=o.cursor, batch_size=o.batch_size, stdin=stdin,
                                   csv=CsvDialect(o.csv_delimiter, o.csv_quote, o.encoding))
    if spec.bucket is not None and spec.source_url is None and spec.share is None:  # (SQL: pushed down)
        src = BucketSource(src, o.key, *spec.bucket)
    try:
        with tgt:
            return Loader(src, tgt, o, table=spec.table, progress=progress, notices=notices).run()
    finally:
        src.close()


def not_made(tgt) -> bool:
    """Whether ``tgt`` is a local file or folder (SQLite, DuckDB, Delta) that does not exist yet,
    in a folder that does (a missing folder stays the target's own error)."""
    if getattr(tgt, "memory", False) or getattr(tgt, "remote", False):
        return False
    path = getattr(tgt, "path", None) or getattr(tgt, "root", None)
    if not isinstance(path, str) or os.path.exists(path):
        return False
    return os.path.isdir(os.path.dirname(os.path.abspath(path)))


def replay(stream: str, *, db=None, target=None, reason=None, on_late="load", **options) -> Summary:
    """Run a stream's quarantined records through the loader again, in one transaction, with
    the key, cursor, table and zone the stream was made with."""
    with open_target(db=db, target=target) as tgt:
        states = {s.stream: s for s in tgt.ledger.states()}
        if stream not in states:
            raise UsageError(f"no stream named {stream!r}", hint="`hiwater state show` lists the streams")
        s = states[stream]
        src = QuarantineSource(tgt.ledger.quarantine(stream, reason), s.cursor, s.key)
        opts = LoadOptions.build(key=s.key, cursor=s.cursor, table=s.table, stream=stream,
                                 on_late=on_late, assume_tz=s.assume_tz, **options)
        return Loader(src, tgt, opts, table=s.table).run()


@dataclass
class StreamResult:
    """One stream's outcome: ``status`` is ``ok``, ``failed`` or ``not run`` (after ``fail_fast``)."""

    stream: str
    status: str
    summary: Summary | None = None
    error: HiwaterError | None = None
    duration_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        out = {"stream": self.stream, "status": self.status}
        if self.summary is not None:
            out.update(self.summary.to_dict(details=True))
        if self.error is not None:
            out.update(self.error.to_dict())
        out["duration_s"] = self.duration_s
        return out


def attempt(name: str, work, *args, **kw) -> StreamResult:
    """``work(*args, **kw)`` (a run, returning its Summary) as stream ``name``'s result. Never
    raises: a worker hands back every stream's outcome, and one stream's error never hides the
    others'."""
    start = time.monotonic()
    try:
        summary = work(*args, **kw)
        return StreamResult(name, "ok", summary=summary, duration_s=round(time.monotonic() - start, 3))
    except Exception as exc:  # noqa: BLE001 - a bug in one stream must not hide the others' results
        return failed(name, exc, start)


def failed(name: str, exc: Exception, start: float) -> StreamResult:
    """Stream ``name`` failed with ``exc`` (a bug becomes an internal error to report)."""
    if not isinstance(exc, HiwaterError):
        exc = HiwaterError(f"internal error: {type(exc).__name__}: {exc} (please report it)")
    return StreamResult(name, "failed", error=exc, duration_s=round(time.monotonic() - start, 3))

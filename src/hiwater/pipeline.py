"""``hiwater run``: the streams of a project, each one ``hiwater.load`` call, ``jobs`` at a time.

- Each stream commits on its own (its own transaction, lock and history); a failed stream
  changes nothing of its own and nothing of the others, which go on (unless ``fail_fast``:
  then no further stream starts, and those are reported as not run).
- ``jobs`` > 1 runs streams in separate worker processes (``spawn``: a fresh interpreter,
  the same on every platform). Errors come back pickled (every :class:`HiwaterError` does).
- Streams whose target is the same SQLite or DuckDB *file* form one lane and run one after
  another: such a file has one writer at a time, and a second writer would wait on the
  database's busy timeout, which a long first load can outlast. So they are serialised by
  the scheduler, deterministically; each load still takes its stream lock, which keeps out
  any other process (an overlapping cron run of the same stream waits, then fails cleanly).
  Streams into PostgreSQL (or different files) run in parallel.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from .errors import HiwaterError, PipelineError
from .events import emit
from .project import StreamConfig
from .summary import Counts, Summary


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


@dataclass
class PipelineResult:
    streams: list = field(default_factory=list)  # StreamResult, in the project's order
    duration_s: float | None = None

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.streams)

    @property
    def failed(self) -> list:
        return [s for s in self.streams if s.status == "failed"]

    def total(self) -> dict:
        c = Counts()
        for s in self.streams:
            if s.summary is not None:
                c.add(s.summary.counts)
        return {"streams": len(self.streams), "ok": sum(s.ok for s in self.streams),
                "failed": len(self.failed), "not_run": sum(s.status == "not run" for s in self.streams),
                "source_records": c.source_records, "loaded": c.loaded, "skipped": c.skipped,
                "rejected": c.rejected, "duration_s": self.duration_s}

    def to_dict(self) -> dict:
        return {"streams": [s.to_dict() for s in self.streams], "total": self.total()}

    def raise_for_failures(self) -> "PipelineResult":
        if self.ok:
            return self
        names = ", ".join(s.stream for s in self.streams if not s.ok)
        first = self.failed[0].error if self.failed else None
        raise PipelineError(f"{len(self.streams) - sum(s.ok for s in self.streams)} of {len(self.streams)} "
                            f"stream(s) did not load: {names}" + (f" (first: {first})" if first else ""),
                            result=self)


def lane_of(cfg: StreamConfig) -> str:
    """Streams with the same lane run one after another: the same SQLite/DuckDB file."""
    db, target = cfg.load.get("db"), cfg.load.get("target")
    if db is not None:
        return "file:" + os.path.realpath(db)
    if target is None:
        target = os.environ.get("HIWATER_TARGET_URL") or ""
    scheme = target.split(":", 1)[0].lower()
    if scheme in ("sqlite", "duckdb"):
        from .urls import file_path
        path = file_path(target)
        if path != ":memory:":
            return "file:" + os.path.realpath(path)
    return "stream:" + cfg.name


def run_stream(name: str, load_kw: dict, overrides: dict) -> StreamResult:
    """One stream: one ``hiwater.load`` call. Never raises: the error is in the result."""
    from .api import load
    start = time.monotonic()
    try:
        summary = load(**{**load_kw, **overrides})
        return StreamResult(name, "ok", summary=summary, duration_s=round(time.monotonic() - start, 3))
    except HiwaterError as exc:
        return StreamResult(name, "failed", error=exc, duration_s=round(time.monotonic() - start, 3))
    except Exception as exc:  # noqa: BLE001 - a bug in one stream must not hide the others' results
        err = HiwaterError(f"internal error: {type(exc).__name__}: {exc} (please report it)")
        return StreamResult(name, "failed", error=err, duration_s=round(time.monotonic() - start, 3))


def _worker_init(log_setup) -> None:
    """A worker process prints its events as the parent does (``--log-format``, ``-v``)."""
    if log_setup is not None:
        from . import events
        fmt, verbose, with_stream = log_setup
        events.configure(fmt, verbose=verbose, with_stream=with_stream)


def run_streams(configs: list, *, jobs: int = 1, fail_fast: bool = False, overrides: dict | None = None,
                on_result=None, on_start=None) -> PipelineResult:
    """Run ``configs`` (StreamConfig), ``jobs`` at a time; ``on_start(name)`` as each starts and
    ``on_result(StreamResult)`` as each ends."""
    from . import events
    overrides = dict(overrides or {})
    started = time.monotonic()
    if jobs < 1:
        from .errors import UsageError
        raise UsageError(f"--jobs {jobs}: give 1 or more")
    emit("pipeline_started", f"running {len(configs)} stream(s), {jobs} at a time",
         streams=[c.name for c in configs], jobs=jobs)
    results: dict = {}

    def done(r: StreamResult) -> None:
        results[r.stream] = r
        if on_result is not None:
            on_result(r)

    lanes: dict = {}
    for c in configs:
        lanes.setdefault(lane_of(c), []).append(c)
    stop = False
    if jobs == 1 or len(configs) == 1:
        for c in configs:
            if stop:
                done(StreamResult(c.name, "not run"))
                continue
            if on_start is not None:
                on_start(c.name)
            r = run_stream(c.name, c.load, overrides)
            done(r)
            stop = fail_fast and not r.ok
    else:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        queues = [list(v) for v in lanes.values()]
        ctx = multiprocessing.get_context("spawn")
        workers = min(jobs, len(queues))
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                 initargs=(events.current(),)) as pool:
            running: dict = {}

            def submit_next():
                # Start the next stream of each idle lane, up to `workers` at once.
                busy = {lane for lane, _ in running.values()}
                for i, q in enumerate(queues):
                    if len(running) >= workers:
                        return
                    if q and i not in busy:
                        c = q.pop(0)
                        running[pool.submit(run_stream, c.name, c.load, overrides)] = (i, c)
                        if on_start is not None:
                            on_start(c.name)
                        busy.add(i)

            submit_next()
            while running:
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in finished:
                    _, c = running.pop(fut)
                    try:
                        r = fut.result()
                    except Exception as exc:  # noqa: BLE001 - a worker died (killed, out of memory)
                        r = StreamResult(c.name, "failed", error=HiwaterError(
                            f"the worker process running stream {c.name!r} died: {type(exc).__name__}: {exc}"))
                    done(r)
                    stop = stop or (fail_fast and not r.ok)
                if not stop:
                    submit_next()
            for q in queues:
                for c in q:
                    done(StreamResult(c.name, "not run"))
    out = PipelineResult([results[c.name] for c in configs], round(time.monotonic() - started, 3))
    t = out.total()
    emit("pipeline_finished", f"{t['ok']} of {t['streams']} stream(s) loaded in {out.duration_s:.3f}s"
         + (f"; failed: {', '.join(s.stream for s in out.failed)}" if out.failed else ""), **t)
    return out

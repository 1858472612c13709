"""``hiwater run``: the streams of a project, each one stream spec, ``jobs`` at a time.

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
from concurrent.futures import FIRST_COMPLETED, wait

from .errors import UsageError
from .events import emit
from .executor import PipelineResult, Pool
from .project import StreamConfig
from .spec import spec_from
from .stream import StreamResult, attempt, failed
from .urls import file_path


def lane_of(cfg: StreamConfig) -> str:
    """Streams with the same lane run one after another: the same SQLite/DuckDB file."""
    db, target = cfg.load.get("db"), cfg.load.get("target")
    if db is not None:
        return "file:" + os.path.realpath(db)
    if target is None:
        target = os.environ.get("HIWATER_TARGET_URL") or ""
    scheme = target.split(":", 1)[0].lower()
    if scheme in ("sqlite", "duckdb"):
        path = file_path(target)
        if path != ":memory:":
            return "file:" + os.path.realpath(path)
    return "stream:" + cfg.name


def run_streams(configs: list, *, run, jobs: int = 1, fail_fast: bool = False, overrides: dict | None = None,
                on_result=None, on_start=None) -> PipelineResult:
    """Run ``configs`` (StreamConfig), ``jobs`` at a time; ``on_start(name)`` as each starts and
    ``on_result(StreamResult)`` as each ends.

    Each stream's spec is built here, once, when its turn comes (a stream whose options do not
    hold fails alone); ``run(spec)`` loads it, in this process or in a worker. It is the
    caller's, so a bucketed project stream is split by the layer that knows buckets."""
    overrides = dict(overrides or {})
    started = time.monotonic()
    if jobs < 1:
        raise UsageError(f"--jobs {jobs}: give 1 or more")
    emit("pipeline_started", f"running {len(configs)} stream(s), {jobs} at a time",
         streams=[c.name for c in configs], jobs=jobs)
    results: dict = {}
    stop = [False]  # fail_fast and a stream failed: no further stream starts

    def done(r: StreamResult) -> None:
        results[r.stream] = r
        if on_result is not None:
            on_result(r)
        stop[0] = stop[0] or (fail_fast and not r.ok)

    def spec_of(c: StreamConfig):
        """``c``'s spec, or ``None`` when it cannot be built (then its failed result is in)."""
        t0 = time.monotonic()
        try:
            return spec_from(**{**c.load, **overrides})
        except Exception as exc:  # noqa: BLE001 - one stream's bad options must not hide the others' results
            done(failed(c.name, exc, t0))
            return None

    if jobs == 1 or len(configs) == 1:
        for c in configs:
            if stop[0]:
                done(StreamResult(c.name, "not run"))
                continue
            spec = spec_of(c)
            if spec is not None:
                if on_start is not None:
                    on_start(c.name)
                done(attempt(c.name, run, spec))
    else:
        lanes: dict = {}
        for c in configs:
            lanes.setdefault(lane_of(c), []).append(c)
        queues = [list(v) for v in lanes.values()]
        workers = min(jobs, len(queues))
        with Pool(workers) as pool:
            running: dict = {}

            def submit_next():
                # Start the next stream of each idle lane, up to `workers` at once.
                busy = {lane for lane, _ in running.values()}
                for i, q in enumerate(queues):
                    while q and i not in busy and len(running) < workers and not stop[0]:
                        c = q.pop(0)
                        spec = spec_of(c)
                        if spec is not None:
                            running[pool.submit(attempt, c.name, run, spec)] = (i, c)
                            if on_start is not None:
                                on_start(c.name)
                            busy.add(i)

            submit_next()
            while running:
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in finished:
                    _, c = running.pop(fut)
                    done(pool.result(fut, c.name))
                if not stop[0]:
                    submit_next()
            for q in queues:
                for c in q:
                    done(StreamResult(c.name, "not run"))
    out = PipelineResult([results[c.name] for c in configs], round(time.monotonic() - started, 3))
    t = out.total()
    emit("pipeline_finished", f"{t['ok']} of {t['streams']} stream(s) loaded in {out.duration_s:.3f}s"
         + (f"; failed: {', '.join(s.stream for s in out.failed)}" if out.failed else ""), **t)
    return out

"""Run stream specs in other processes: a ``spawn`` process pool, or a Dask cluster.

One pool for both schedulers above it: ``hiwater run --jobs`` (:mod:`hiwater.pipeline`) and a
bucketed stream (:mod:`hiwater.buckets`). A worker never raises (it hands back a
:class:`~hiwater.stream.StreamResult`); a worker that *dies* (killed, out of memory) is turned
into a failed result here, once (:meth:`Pool.result`). On Linux the workers are forked by a
``forkserver`` that imported hiwater and its readers and stores once (:data:`PRELOAD`; a fresh
interpreter of its own, so no thread of the coordinator is forked), so a worker starts without
re-importing them (that cost about 1 CPU-s per worker); elsewhere they are ``spawn``-ed. Either
way a worker has the coordinator's environment and working folder as the pool starts, and
prints its events as the coordinator does.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

from . import deathsig, events
from .errors import ConfigError, HiwaterError, PipelineError
from .sources.splits import read_split
from .spec import Plan, StreamSpec
from .stream import StreamResult, attempt, run
from .summary import Counts

ENV_START = "HIWATER_START_METHOD"  # "spawn": a local pool spawns its workers (no forkserver)
ENV_FAULT = "HIWATER_BUCKET_FAULT"  # test hook "<b>:<k>": SIGKILL bucket b's worker after its k-th batch
# A bucket's warnings about its own share (empty, all skipped, all invalid) say nothing of the
# stream: a bucket with no keys in this run is not an empty source. A bucket's worker keeps them
# to itself; the coordinator judges them on the sums (hiwater.buckets.combine).
SHARE = ("the source ", "no new or changed file", "every record was skipped", "every record (")


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


def _ready() -> None:
    """A task that does nothing (it starts a worker)."""


# What the forkserver imports once, for every worker it forks: first the module that ties its
# life to the coordinator's, then what a read task and a bucket's run use.
# (A module that is not installed is skipped. None of these starts a thread when imported.)
PRELOAD = ["hiwater.deathsig", "hiwater.executor", "hiwater.sources.splits", "hiwater.sources.shuffled",
           "hiwater.sources.sql", "hiwater.targets.delta", "hiwater.targets.postgres", "pyarrow.dataset",
           "pyarrow.json", "pyarrow.parquet", "pyarrow.acero", "duckdb", "deltalake", "psycopg"]


def _context():
    """The start method of a local pool: a forkserver with hiwater imported (Linux: its workers
    die with the coordinator through it, see :mod:`hiwater.deathsig`), else spawn."""
    import multiprocessing
    if not sys.platform.startswith("linux") or os.environ.get(ENV_START) == "spawn":
        return multiprocessing.get_context("spawn")
    from multiprocessing import forkserver
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    # The process's forkserver starts now if it is not running (it then serves every later pool
    # of this process). It imports hiwater from this process's module path (Python 3.11's
    # forkserver would use its own, from its environment: a relative PYTHONPATH, another
    # working folder, a path set at run time would give its workers another hiwater), and the
    # variable tells it that it is one (hiwater.deathsig), and only it.
    start = {deathsig.ENV: str(os.getpid()),
             "PYTHONPATH": os.pathsep.join(os.path.abspath(p) if p else os.getcwd() for p in sys.path)}
    was = {k: os.environ.get(k) for k in start}
    os.environ.update(start)
    try:
        forkserver.ensure_running()
    finally:
        for k, v in was.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return ctx


def _worker_init(log_setup, parent: int, env: dict | None = None) -> None:
    """A worker process prints its events as the parent does (``--log-format``, ``-v``), and
    dies with it (it was started by ``parent``: a parent gone already is dead). A forked worker
    takes the coordinator's environment as it is now (its forkserver's is as it was when it
    started: a variable set since, a credential, a test hook, would be missing)."""
    die_with(parent, ours=True)
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    if log_setup is not None:
        fmt, verbose, with_stream = log_setup
        events.configure(fmt, verbose=verbose, with_stream=with_stream)


class Pool:
    """``with Pool(workers) as pool: fut = pool.submit(fn, *args)``, then ``pool.result(fut, name)``.

    ``executor`` is ``local`` (a spawn process pool of ``workers``) or ``dask`` (``scheduler``: an
    address, a ``distributed.Client`` the caller owns, or ``None`` for a LocalCluster of
    ``workers``). ``what`` (``stream`` or ``bucket``) is what a dead worker's message names."""

    def __init__(self, workers: int, *, what: str = "stream", executor: str = "local", scheduler=None):
        self.workers, self.what, self.executor, self.scheduler = workers, what, executor, scheduler
        self._close: list = []
        self._submit = None
        self._futures: list = []

    def __enter__(self) -> "Pool":
        if self.executor == "local":
            from concurrent.futures import ProcessPoolExecutor
            pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=_context(), initializer=_worker_init,
                                       initargs=(events.current(), os.getpid(), dict(os.environ)))
            self._close.append(lambda: pool.shutdown(wait=True, cancel_futures=True))
            self._submit = pool.submit
            # Every worker starts now (the pool would start them one per task): a worker started
            # late, for a bucket after the read phase, would be importing, its parent-death signal
            # not armed yet, when the coordinator is killed.
            for _ in range(self.workers if self.what == "bucket" else 0):
                pool.submit(_ready)
        else:
            client = self._dask_client()
            self._submit = lambda fn, *args: client.submit(fn, *args, key=f"hiwater-{args[0]}-{time.time_ns()}",
                                                           pure=False)
        return self

    def submit(self, fn, name: str, *args):
        """Start ``fn(name, *args)`` (it returns a StreamResult) in a worker; a future. A pool
        that cannot start it (broken by a worker that died) gives a future holding that error."""
        try:
            fut = self._submit(fn, name, *args)
        except Exception as exc:  # noqa: BLE001 - BrokenProcessPool and the like: that task failed
            from concurrent.futures import Future
            fut = Future()
            fut.set_exception(exc)
        self._futures.append(fut)
        return fut

    def result(self, fut, name: str) -> StreamResult:
        """The future's StreamResult; a failed one when the worker running it died."""
        try:
            return fut.result()
        except Exception as exc:  # noqa: BLE001 - a worker died (killed, out of memory): that stream failed
            return StreamResult(name, "failed", error=_died(self.what, name, exc))

    def _dask_client(self):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ConfigError("--executor dask needs Dask distributed, which is not installed",
                              hint="pip install 'hiwater[dask]'") from None
        if self.scheduler is not None and not isinstance(self.scheduler, str):
            return self.scheduler  # a Client the caller owns
        if self.scheduler is not None:
            try:
                client = Client(self.scheduler, timeout="10s")
            except (OSError, TimeoutError) as exc:
                raise ConfigError(f"--executor dask:{self.scheduler}: cannot reach the Dask scheduler: {exc}",
                                  hint="start one with `dask scheduler` and `dask worker ADDRESS`") from None
            self._close.append(client.close)
            return client
        cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
        client = Client(cluster)
        self._close += [cluster.close, client.close]
        return client

    def __exit__(self, *exc):
        if exc[0] is not None:  # interrupted: no task of this run may start (or go on, on Dask) after it
            for fut in self._futures:
                fut.cancel()
        for close in reversed(self._close):
            try:
                close()
            except Exception:  # noqa: BLE001 - closing a pool or cluster must not hide the run's outcome
                pass
        return False


def die_with(parent: int, ours: bool = False) -> None:
    """End this worker process when ``parent`` (the coordinator that started it) ends, however
    it ends (SIGKILL included): a worker must not go on committing for a run nobody waits for.
    Its open transaction dies with it (rolled back: SPEC §3). Linux: the kernel's parent-death
    signal (``prctl(PR_SET_PDEATHSIG, SIGKILL)``); elsewhere a thread watching ``getppid()``.
    A worker forked by ``parent``'s forkserver (whose parent is ``parent``, and which dies with
    it: :mod:`hiwater.deathsig`) ends with that forkserver. A process that is not ``parent``'s
    child (a worker of a remote Dask cluster) is left alone, unless ``parent`` started it
    (``ours``: a worker of its local pool): then its parent died while it was starting (before
    this ran), and it ends now."""
    ppid = os.getppid()
    if ppid != parent:
        if ours and parent_of(ppid) == parent:  # forked by the coordinator's forkserver
            if not deathsig.arm(ppid):
                threading.Thread(target=_watch, args=(ppid,), name="hiwater-parent-watch", daemon=True).start()
            return
        if ours:
            os._exit(1)
        return
    if not deathsig.arm(parent):
        threading.Thread(target=_watch, args=(parent,), name="hiwater-parent-watch", daemon=True).start()


def parent_of(pid: int) -> int | None:
    """The parent process id of process ``pid`` (Linux: /proc), ``None`` when unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _died(what: str, name: str, exc: Exception) -> HiwaterError:
    if what == "bucket":
        return HiwaterError(f"the worker running bucket {name!r} died: {type(exc).__name__}: {exc}; nothing of "
                            f"that bucket's run was committed, run the stream again", retryable=True)
    return HiwaterError(f"the worker process running stream {name!r} died: {type(exc).__name__}: {exc}")


# --- buckets ---------------------------------------------------------------------------------

def execute(p: Plan, specs: list, pool: "Pool | None" = None) -> list:
    """Run every bucket of ``p`` (``specs[b]`` is bucket b's); their StreamResults in bucket order
    (on ``pool`` when given: the run's pool, which its read phase used too)."""
    if pool is None:
        with bucket_pool(p) as pool:
            return execute(p, specs, pool)
    results: dict = {}
    todo = list(range(p.n))
    if p.first_alone or p.serial:
        # A new stream's first bucket makes the table alone (concurrent CREATE TABLE races);
        # one file's buckets all go one at a time (they would only queue on its lock).
        head = todo if p.serial else todo[:1]
        todo = [b for b in todo if b not in head]
    else:
        head = []
    me = os.getpid()
    for b in head:
        results[b] = pool.result(pool.submit(run_bucket, p.names[b], specs[b], me), p.names[b])
    futures = {b: pool.submit(run_bucket, p.names[b], specs[b], me) for b in todo}
    for b, fut in futures.items():
        results[b] = pool.result(fut, p.names[b])
    return [results.get(b) or StreamResult(p.names[b], "not run") for b in range(p.n)]


def bucket_pool(p: Plan, splits: int = 0) -> Pool:
    """The one pool of a bucketed run, for its read phase (``splits`` tasks) and its buckets: a
    worker per task up to the core count (a file target's buckets still run one at a time)."""
    cores = max(1, min(max(p.n, splits), os.cpu_count() or 1))
    workers = 1 if p.serial and p.executor == "local" and splits <= 1 else cores
    return Pool(workers, what="bucket", executor=p.executor, scheduler=p.scheduler)


def read_splits(pool: "Pool", splits: list, cfg, out_dir: str) -> list:
    """The read phase of a bucketed file stream: one task per split on ``pool``
    (:func:`hiwater.sources.splits.read_split`); their :class:`SplitRead` in split order. The
    first failure is raised (a parse error names the file and line), after every task ended."""
    me = os.getpid()
    futures = [(s, pool.submit(run_read, f"split {s.index} ({s.name})", s, cfg, out_dir, me)) for s in splits]
    out, first = [], None
    for s, fut in futures:
        try:
            out.append(fut.result())
        except HiwaterError as exc:
            first = first or exc
        except Exception as exc:  # noqa: BLE001 - a worker died (killed, out of memory)
            first = first or HiwaterError(f"the worker reading {s.name} (split {s.index}) died: "
                                          f"{type(exc).__name__}: {exc}; nothing was committed, run the stream "
                                          f"again", retryable=True)
    if first is not None:
        raise first
    return out


def run_read(name: str, split, cfg, out_dir: str, coordinator: int):
    """One read task in a worker (see :func:`read_splits`)."""
    if os.getpid() != coordinator:
        die_with(coordinator)
    try:
        return read_split(split, cfg, out_dir)
    except HiwaterError:
        raise
    except Exception as exc:  # noqa: BLE001 - a bug: one line, never a traceback through the pool
        raise HiwaterError(f"internal error reading {split.name}: {type(exc).__name__}: {exc} (please report it)")


def run_bucket(name: str, spec: StreamSpec, coordinator: int) -> StreamResult:
    """One bucket's run in a worker (a process, or a Dask task); a worker process of this
    machine dies with the ``coordinator`` process (:func:`die_with`)."""
    if os.getpid() != coordinator:
        die_with(coordinator)
    progress = None
    fault = os.environ.get(ENV_FAULT, "")
    if fault.partition(":")[0] == str(spec.bucket[0]):
        progress = _killer(int(fault.partition(":")[2] or 1))
    keep = _bucket_warnings(spec.stream)
    events.log.addFilter(keep)
    try:
        return attempt(name, run, spec, progress=progress)
    finally:
        events.log.removeFilter(keep)


def _bucket_warnings(bucket: str):
    """A logging filter for a bucket's run: a warning about its own share is not printed (see
    SHARE; the coordinator says it once for the stream); every other warning is prefixed with the
    bucket's name, so that N buckets' lines read as one stream's parts."""
    def keep(record) -> bool:
        if getattr(record, "hiwater_event", None) != "warning":
            return True
        text = record.getMessage()
        if text.startswith(SHARE):
            return False
        if not text.startswith(f"{bucket}: "):
            record.msg, record.args = "%s", (f"{bucket}: {text}",)
        return True
    return keep


def _killer(after: int):
    """A progress callback that SIGKILLs its own process after ``after`` batches (mid-transaction:
    the batches are written, nothing is committed)."""
    seen = [0]

    def progress(done, expected):
        seen[0] += 1
        if seen[0] >= after:
            os.kill(os.getpid(), signal.SIGKILL)
    return progress

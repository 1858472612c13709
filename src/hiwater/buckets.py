"""Bucketed streams: one stream split by a stable hash of its key, run as parallel tasks.

``--buckets N`` makes N streams of one, named ``<stream>#<b>/<N>`` (``orders#0/4`` …
``orders#3/4``). Each is an ordinary stream: its own watermark, state, history, quarantine
and lock, and its own atomic commit, so SPEC §3 holds per bucket. The buckets share the
target table; their keys are disjoint, so their rows never meet, and the union of the
buckets is what one run would have loaded.

The hash (stable across processes, machines, Python and database versions)::

    text   = the key's canonical text; a composite key joins its parts with U+001F
    bucket = (first 4 bytes of MD5(UTF-8 of text), as a big-endian unsigned int) mod N

Canonical text: an integer in decimal, a string as itself, a boolean ``true``/``false``,
a float that holds an integer as that integer, a missing or null part as the empty string,
anything else as its ``str()``. MD5 is not used for security here, only because PostgreSQL
(``md5``), MariaDB/MySQL (``MD5``) and DuckDB (``md5``) all compute it, so a SQL source
filters its rows with the same function in SQL (:func:`bucket_sql`); SQLite gets the same
function as a registered ``hiwater_bucket`` UDF. A record without a key (invalid) belongs to
bucket 0, so it is quarantined exactly once.

A file or in-memory source is read whole by every bucket, and each keeps its own rows
(:class:`BucketSource`); a SQL source reads only its bucket's rows (the predicate is
pushed down). docs/scale-out.md has the design, and docs/benchmarks-buckets.md the cost.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import ConfigError, HiwaterError, UsageError

SEP = "\x1f"
_NAME = re.compile(r"^(?P<base>.*)#(?P<b>\d+)/(?P<n>\d+)$")
EXECUTORS = ("local", "dask")


# --- names ---------------------------------------------------------------------------------------

def bucket_name(stream: str, b: int, n: int) -> str:
    return f"{stream}#{b}/{n}"


def parse_name(name: str) -> tuple[str, int, int] | None:
    """``(stream, b, n)`` for a bucket stream's name, else ``None``."""
    m = _NAME.match(name)
    if not m:
        return None
    b, n = int(m["b"]), int(m["n"])
    return (m["base"], b, n) if 0 <= b < n else None


def buckets_of(names, stream: str) -> dict[int, list[str]]:
    """``{N: [bucket stream names]}`` among ``names`` for the stream ``stream``."""
    out: dict = {}
    for name in names:
        p = parse_name(name)
        if p is not None and p[0] == stream:
            out.setdefault(p[2], []).append(name)
    return out


# --- the hash ------------------------------------------------------------------------------------

def canonical(v) -> str:
    """One key part's canonical text (see the module docstring)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def bucket_of_text(text: str, n: int) -> int:
    return int.from_bytes(hashlib.md5(text.encode("utf-8")).digest()[:4], "big") % n


def bucket_of(values, n: int) -> int:
    """The bucket of one key given as its parts (Python values)."""
    return bucket_of_text(SEP.join(canonical(v) for v in values), n)


def _text_array(tbl: pa.Table, k, mixed: dict | None, rows: int) -> pa.Array:
    """A key column's canonical texts as an Arrow string array (no Python object per row for
    integer and string columns)."""
    if mixed and k in mixed:
        return pa.array([canonical(v) for v in mixed[k]], pa.string())
    if k not in tbl.column_names:
        return pa.array([""] * rows, pa.string())
    col = tbl.column(k)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    t = col.type
    if pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
        return pc.fill_null(col.cast(pa.string()), "")
    return pa.array([canonical(v) for v in col.to_pylist()], pa.string())


def _md5_buckets(texts: pa.Array, n: int) -> np.ndarray:
    """The first 4 bytes of each text's MD5, big-endian, mod ``n``. DuckDB (when installed)
    hashes the whole column in C (a million keys in ~0.1 s instead of ~1.5 s); the result is
    the same number either way (tests/test_buckets.py pins both)."""
    try:
        import duckdb
    except ImportError:
        duckdb = None
    if duckdb is not None and len(texts) > 1000:
        con = duckdb.connect()
        try:
            con.register("hiwater_keys", pa.table({"t": texts}))
            got = con.execute(f"SELECT (('0x' || substr(md5(t), 1, 8))::UBIGINT % {int(n)})::BIGINT AS b "
                              f"FROM hiwater_keys").fetchnumpy()["b"]
        finally:
            con.close()
        return np.asarray(got, dtype=np.int64)
    md5 = hashlib.md5
    return np.fromiter((int.from_bytes(md5(s.encode("utf-8")).digest()[:4], "big") % n for s in texts.to_pylist()),
                       dtype=np.int64, count=len(texts))


def bucket_ids(tbl: pa.Table, key, n: int, mixed: dict | None = None) -> np.ndarray:
    """The bucket of every row of ``tbl`` (a key column missing from the table counts as null).

    ``mixed`` maps a column holding values of several types to their Python values (a
    :class:`~hiwater.sources.base.RawBatch` keeps them there)."""
    rows = tbl.num_rows
    parts = [_text_array(tbl, k, mixed, rows) for k in key]
    texts = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, SEP)
    out = _md5_buckets(texts, n)
    if all(k not in tbl.column_names and not (mixed and k in mixed) for k in key):
        out[:] = 0  # no key at all: every record is invalid, and bucket 0 quarantines it
    return out


# --- SQL pushdown (pure builder) -------------------------------------------------------------

def bucket_sql(dialect: str, keys: list, n: int, b: int) -> str:
    """The predicate ``<bucket of the row> = b`` in ``dialect`` (postgresql, mysql, duckdb,
    sqlite), for the quoted key columns ``keys``. It has no ``%`` and no placeholder."""
    if dialect == "postgresql":
        text = " || chr(31) || ".join(f"coalesce({k}::text, '')" for k in keys)
        return f"mod(('x' || substr(md5({text}), 1, 8))::bit(32)::bigint, {n}) = {b}"
    if dialect == "mysql":
        text = "CONCAT(" + ", CHAR(31 USING utf8mb4), ".join(
            f"COALESCE(CAST({k} AS CHAR), '')" for k in keys) + ")"
        return f"MOD(CONV(SUBSTRING(MD5({text}), 1, 8), 16, 10), {n}) = {b}"
    if dialect == "duckdb":
        text = " || chr(31) || ".join(f"coalesce(CAST({k} AS VARCHAR), '')" for k in keys)
        return f"mod(('0x' || substr(md5({text}), 1, 8))::UBIGINT, {n}) = {b}"
    if dialect == "sqlite":
        return f"hiwater_bucket({n}, {', '.join(keys)}) = {b}"
    raise ConfigError(f"--buckets: no bucket predicate for a {dialect} source")


def sqlite_bucket(n, *values) -> int:
    """``hiwater_bucket(n, key…)``: the SQLite UDF behind :func:`bucket_sql`."""
    return bucket_of(values, int(n))


# --- file and in-memory sources: keep the bucket's rows --------------------------------------

class BucketSource:
    """A source that yields only the rows of bucket ``b`` of ``n`` of another source.

    Record numbers stay those of the file (``RawBatch.numbers``), so an error still names the
    record as the whole file counts it. Every other attribute is the wrapped source's."""

    def __init__(self, inner, key, b: int, n: int):
        self._inner, self._key, self._b, self._n = inner, tuple(key), b, n

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def batches(self):
        for raw in self._inner.batches():
            yield take_bucket(raw, self._key, self._b, self._n)

    def close(self) -> None:
        self._inner.close()


def take_bucket(raw, key, b: int, n: int):
    """The rows of bucket ``b`` of one :class:`~hiwater.sources.base.RawBatch`."""
    from .sources.base import RawBatch
    count = len(raw)
    if count == 0:
        return raw
    if raw.table.num_columns == 0:  # no key: all invalid, all in bucket 0
        return raw if b == 0 else RawBatch(raw.table, raw.path, raw.first_record, rows=0)
    keep = bucket_ids(raw.table, key, n, raw.mixed) == b
    if keep.all():
        return raw
    idx = np.flatnonzero(keep)
    take = pa.array(idx)
    pos = {int(i): j for j, i in enumerate(idx)}
    numbers = raw.record_nos(idx)
    return RawBatch(
        raw.table.take(take), raw.path, int(numbers[0]) if len(idx) else raw.first_record,
        problems={pos[i]: why for i, why in raw.problems.items() if i in pos},
        rows=None if raw.rows is None else len(idx),
        mixed={c: [v[i] for i in idx] for c, v in raw.mixed.items()},
        stored={c: v.take(take) for c, v in raw.stored.items()},
        sent={c: [v[i] for i in idx] for c, v in raw.sent.items()},
        csv=raw.csv,
        texts={c: v.take(take) for c, v in raw.texts.items()},
        numbers=numbers)


# --- running the buckets ---------------------------------------------------------------------

@dataclass
class Plan:
    """How a bucketed run runs: which tasks, on what, in which order."""

    stream: str
    n: int
    executor: str                 # local | dask
    scheduler: object = None      # dask: an address, a distributed.Client, or None (a LocalCluster)
    serial: bool = False          # one SQLite/DuckDB file: one bucket at a time (its file lock)
    first_alone: bool = False     # no table yet: bucket 0 makes it, then the others run
    names: list = field(default_factory=list)


def parse_executor(value) -> tuple[str, object]:
    """``local`` | ``dask`` | ``dask:tcp://host:8786`` (or a ``distributed.Client``, API only)."""
    if value is None:
        return "local", None
    if not isinstance(value, str):
        if type(value).__name__ == "Client":
            return "dask", value
        raise UsageError(f"--executor {value!r}: give local, dask or dask:SCHEDULER-ADDRESS")
    kind, _, where = value.partition(":")
    if kind not in EXECUTORS or (kind == "local" and where):
        raise UsageError(f"--executor {value!r}: give local, dask or dask:SCHEDULER-ADDRESS",
                         hint="for example --executor dask:tcp://10.0.0.5:8786")
    if kind == "dask" and where:
        return "dask", where
    return kind, None


def _file_target(db, target) -> bool:
    if db is not None:
        return True
    url = target or os.environ.get("HIWATER_TARGET_URL") or ""
    return url.split(":", 1)[0].lower() in ("sqlite", "duckdb", "")


def plan(tgt, stream: str, table: str, n: int, executor, db, target) -> Plan:
    """Check the stream's bucket count against the target's state and say how to run."""
    names = [s.stream for s in tgt.list_states()]
    check_count(names, stream, n)
    kind, where = parse_executor(executor)
    return Plan(stream, n, kind, where, serial=_file_target(db, target),
                first_alone=tgt.table_columns(table) is None,
                names=[bucket_name(stream, b, n) for b in range(n)])


def check_count(names, stream: str, n: int) -> None:
    """Refuse a run whose bucket count (1: not bucketed) differs from the stream's."""
    names = list(names)
    counts = set(buckets_of(names, stream))
    if stream in names:
        counts.add(1)
    counts.discard(n)
    if not counts:
        return
    was = max(counts)
    now_text = f"--buckets {n}" if n > 1 else "no --buckets"
    was_text = f"{was} bucket(s)" if was > 1 else "no buckets"
    raise UsageError(
        f"stream {stream!r} was loaded with {was_text}; this run asks for {now_text}",
        hint=(f"run it with --buckets {was} as before" if was > 1 else "run it without --buckets as before")
        + "; to change the count, drop the old stream(s) with `hiwater stream drop` and run again: the "
          "re-read finds every row unchanged (docs/scale-out.md, re-bucketing)")


def check_new_stream(names, stream: str) -> None:
    """A stream's first run: refuse it when the stream exists with another bucket count."""
    p = parse_name(stream)
    check_count(names, p[0], p[2]) if p is not None else check_count(names, stream, 1)


def run_bucket(name: str, load_kw: dict, b: int, n: int):
    """One bucket: one ``hiwater.load`` call in a worker (a process, or a Dask task)."""
    from .pipeline import run_stream
    kw = {**load_kw, "_bucket": (b, n)}
    fault = os.environ.get(ENV_FAULT, "")
    if fault.partition(":")[0] == str(b):
        kw["progress"] = _killer(int(fault.partition(":")[2] or 1))
    return run_stream(name, kw, {})


ENV_FAULT = "HIWATER_BUCKET_FAULT"  # test hook "<b>:<k>": SIGKILL bucket b's worker after its k-th batch


def _killer(after: int):
    """A progress callback that SIGKILLs its own process after ``after`` batches (mid-transaction:
    the batches are written, nothing is committed)."""
    seen = [0]

    def progress(done, expected):
        seen[0] += 1
        if seen[0] >= after:
            import signal
            os.kill(os.getpid(), signal.SIGKILL)
    return progress


def execute(p: Plan, load_kw: dict) -> list:
    """Run every bucket of ``p``; return their :class:`~hiwater.pipeline.StreamResult` in bucket order."""
    from .pipeline import StreamResult
    results: dict = {}
    todo = list(range(p.n))
    if p.first_alone or p.serial:
        # A new stream's first bucket makes the table alone (concurrent CREATE TABLE races);
        # one file's buckets all go one at a time (they would only queue on its lock).
        head = todo if p.serial else todo[:1]
        todo = [b for b in todo if b not in head]
    else:
        head = []
    with _executor(p) as submit:
        for b in head:
            results[b] = _result(submit(p.names[b], load_kw, b, p.n), p.names[b])
        futures = {b: submit(p.names[b], load_kw, b, p.n) for b in todo}
        for b, fut in futures.items():
            results[b] = _result(fut, p.names[b])
    return [results.get(b) or StreamResult(p.names[b], "not run") for b in range(p.n)]


def _result(fut, name):
    from .pipeline import StreamResult
    try:
        return fut.result()
    except Exception as exc:  # noqa: BLE001 - a worker died (killed, out of memory): the bucket failed
        return StreamResult(name, "failed", error=HiwaterError(
            f"the worker running bucket {name!r} died: {type(exc).__name__}: {exc}; nothing of that "
            f"bucket's run was committed, run the stream again", retryable=True))


class _executor:
    """``with _executor(plan) as submit: submit(name, kw, b, n) -> future``."""

    def __init__(self, p: Plan):
        self.p = p
        self._close = []

    def __enter__(self):
        p = self.p
        if p.executor == "local":
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            from . import events
            from .pipeline import _worker_init
            workers = 1 if p.serial else max(1, min(p.n, os.cpu_count() or 1))
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_worker_init, initargs=(events.current(),))
            self._close.append(lambda: pool.shutdown(wait=True, cancel_futures=True))
            return lambda name, kw, b, n: pool.submit(run_bucket, name, kw, b, n)
        client = self._dask_client()
        return lambda name, kw, b, n: client.submit(
            run_bucket, name, kw, b, n, key=f"hiwater-{name}-{time.time_ns()}", pure=False)

    def _dask_client(self):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ConfigError("--executor dask needs Dask distributed, which is not installed",
                              hint="pip install 'hiwater[dask]'") from None
        p = self.p
        if p.scheduler is not None and not isinstance(p.scheduler, str):
            return p.scheduler  # a Client the caller owns
        if p.scheduler is not None:
            try:
                client = Client(p.scheduler, timeout="10s")
            except (OSError, TimeoutError) as exc:
                raise ConfigError(f"--executor dask:{p.scheduler}: cannot reach the Dask scheduler: {exc}",
                                  hint="start one with `dask scheduler` and `dask worker ADDRESS`") from None
            self._close.append(client.close)
            return client
        workers = max(1, min(p.n, os.cpu_count() or 1))
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
        client = Client(cluster)
        self._close += [cluster.close, client.close]
        return client

    def __exit__(self, *exc):
        for close in reversed(self._close):
            try:
                close()
            except Exception:  # noqa: BLE001 - closing a pool or cluster must not hide the run's outcome
                pass
        return False


def combine(results: list, stream: str, table: str, total: int | None, duration_s: float):
    """One :class:`~hiwater.summary.Summary` for the bucketed run (its watermarks: the minimum
    over the buckets), or a :class:`~hiwater.errors.PipelineError` naming the failed buckets."""
    from .pipeline import PipelineResult
    from .summary import Counts, Summary
    ok = [r for r in results if r.ok]
    if len(ok) < len(results):
        PipelineResult(results, duration_s).raise_for_failures()
    counts = Counts()
    warnings, new_columns = [], []
    for r in ok:
        counts.add(r.summary.counts)
        warnings += [f"{r.stream}: {w}" for w in r.summary.warnings]
        new_columns += [c for c in r.summary.new_columns if c not in new_columns]
    s0 = ok[0].summary
    prev = [r.summary.previous_watermark for r in ok]
    new = [r.summary.new_watermark for r in ok]
    out = Summary(counts, _least(prev), _least(new), total if total is not None else max(
        r.summary.total_in_target for r in ok), stream, table, s0.mode, None, dry_run=s0.dry_run,
        stale_source=all(r.summary.stale_source for r in ok), warnings=warnings, new_columns=new_columns,
        duration_s=round(duration_s, 3))
    out.buckets = [{"stream": r.stream, **r.summary.headline(), "run_id": r.summary.run_id,
                    "duration_s": r.summary.duration_s} for r in ok]
    return out


def _least(values):
    """The stream's watermark: the least of its buckets' (``None`` if one has none). Values of one
    stream have one kind and print in one form, so their text order is their order for ISO text
    of one offset and for dates; integers compare as integers."""
    if any(v is None for v in values):
        return None
    return min(values)


def load_bucketed(input, opts, options: dict, *, db, target, source, source_url, source_table, query,
                  notices):
    """``hiwater.load(..., buckets=N)``: N bucket streams as tasks, and one summary of their union."""
    from .loader import default_table
    from .sources.sql import default_table as sql_table
    from .targets import open_target
    n = opts.buckets
    if source is not None:
        raise UsageError(f"--buckets {n} reads a file, a folder or a database; in-memory data and source "
                         f"objects load without --buckets")
    if input == "-":
        raise UsageError(f"--buckets {n}: standard input can be read only once; give a file or --source")
    if db is None and target is None and not os.environ.get("HIWATER_TARGET_URL"):
        raise UsageError(f"--buckets {n}: the buckets run in other processes; give --db PATH or --target URL "
                         f"(an in-memory target would keep nothing)")
    table = opts.table or (sql_table(source_table) if source_url is not None else default_table(input))
    stream = opts.stream or table
    if parse_name(stream) is not None:
        raise UsageError(f"--stream {stream!r}: a name ending in #B/N is a bucket's; give the stream's own name")
    started = time.monotonic()
    tgt = open_target(db=db, target=target)
    try:
        tgt.connect()
        p = plan(tgt, stream, table, n, opts.executor, db, target)
        before = {s.stream: s for s in tgt.list_states()}
    finally:
        tgt.close()
    load_kw = {k: v for k, v in options.items() if k not in ("buckets", "executor")}
    load_kw.update(input=input, db=db, target=target, source_url=source_url, source_table=source_table,
                   query=query, table=table, stream=stream)
    results = execute(p, load_kw)
    total = None
    states: dict = {}
    if all(r.ok for r in results):
        tgt = open_target(db=db, target=target)
        try:
            tgt.connect()
            states = {s.stream: s for s in tgt.list_states() if s.stream in p.names}
            total = tgt.count_rows(table) if not opts.dry_run and tgt.table_columns(table) is not None else None
        finally:
            tgt.close()
    out = combine(results, stream, table, total, time.monotonic() - started)
    if not opts.dry_run and len(states) == n:
        out.new_watermark = least_state(list(states.values())).watermark_text() \
            if all(s.watermark is not None for s in states.values()) else None
    olds = [before.get(name) for name in p.names]
    out.previous_watermark = (least_state(olds).watermark_text()
                              if all(s is not None and s.watermark is not None for s in olds) else None)
    out.warnings = list(notices) + out.warnings
    return out


def least_state(states):
    """The bucket state with the least watermark (they share one kind: integers compare)."""
    return min(states, key=lambda s: s.watermark)


# --- status ----------------------------------------------------------------------------------

def status_rows(names: list, states: dict) -> list:
    """``hiwater status``'s rows in order: each bucketed stream's buckets, then a marker
    ``((stream, bucket names), cfg)`` for its aggregate row. A bucket is listed once."""
    out, seen = [], set()
    for name, cfg in names:
        p = parse_name(name)
        base = p[0] if p is not None else name
        groups = buckets_of(states, base)
        if not groups or (p is None and name in states):
            if name not in seen:
                out.append((name, cfg))
                seen.add(name)
            continue
        if base in seen:
            continue
        seen.add(base)
        for n in sorted(groups):
            members = sorted(groups[n], key=lambda x: parse_name(x)[1])
            out += [(m, None) for m in members]
            seen.update(members)
            out.append(((base, members), cfg))
    return out


def aggregate_row(stream: str, members: list, rows: list, states: dict, cfg, now_us: int) -> dict:
    """The stream's row from its buckets' rows: the least watermark (a bucket never run: none),
    the oldest load age, the sum of the counts; each bucket's lag behind the most advanced one."""
    from . import freshness as F
    from . import values as V
    mine = {r["stream"]: r for r in rows if r["stream"] in members}
    ss = [states[m] for m in members]
    done = [s for s in ss if s.watermark is not None]
    least = least_state(done) if len(done) == len(ss) and done else None
    lead = max((s.watermark for s in done), default=None)
    kind = ss[0].kind
    per_unit = 1_000_000 if kind in (V.TIMESTAMP, V.DATE) else 1
    data_age = F.data_age_s(least.watermark if least else None, kind, now_us)
    load_ages = [r["load_age_s"] for r in mine.values()]
    load_age = None if any(a is None for a in load_ages) else max(load_ages)
    outcomes = [r["last_outcome"] for r in mine.values()]
    bucket_rows = []
    for m, s in zip(members, ss):
        lag = None if s.watermark is None or lead is None else (lead - s.watermark) / per_unit
        bucket_rows.append({"stream": m, "watermark": mine[m]["watermark"], "lag": lag,
                            "lag_text": F.age_text(lag) if per_unit != 1 else lag,
                            "last_outcome": mine[m]["last_outcome"]})
        mine[m]["lag"] = bucket_rows[-1]["lag_text"]
    row = {
        "stream": stream, "table": ss[0].table, "target": next(iter(mine.values()))["target"], "kind": kind,
        "watermark": least.watermark_text() if least else None,
        "load_age_s": load_age, "load_age": F.age_text(load_age),
        "data_age_s": None if data_age is None else round(data_age, 3), "data_age": F.age_text(data_age),
        "last_success_at": min((r["last_success_at"] for r in mine.values() if r["last_success_at"]), default=None),
        "last_run_id": None,
        "last_run_at": max((r["last_run_at"] for r in mine.values() if r["last_run_at"]), default=None),
        "last_outcome": "failed" if "failed" in outcomes else "never run" if "never run" in outcomes else "ok",
        "last_source_records": _sum(mine.values(), "last_source_records"),
        "last_loaded": _sum(mine.values(), "last_loaded"), "last_skipped": _sum(mine.values(), "last_skipped"),
        "last_rejected": _sum(mine.values(), "last_rejected"),
        "last_duration_s": max((r["last_duration_s"] or 0 for r in mine.values()), default=None),
        "last_error": next((r["last_error"] for r in mine.values() if r["last_error"]), None),
        "quarantined": sum(r["quarantined"] or 0 for r in mine.values()),
        "buckets": bucket_rows, "lag": None,
    }
    if cfg is not None:
        row["warn_after"] = cfg.warn_after.text if cfg.warn_after else None
        row["error_after"] = cfg.error_after.text if cfg.error_after else None
    return row


def _sum(rows, name):
    values = [r.get(name) for r in rows if r.get(name) is not None]
    return sum(values) if values else None

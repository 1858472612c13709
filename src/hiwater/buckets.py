"""Bucketed streams: one stream split by a stable hash of its key, run as parallel tasks.

``--buckets N`` splits a stream into N buckets, named ``<stream>#<b>/<N>`` (``orders#0/4`` …
``orders#3/4``). Underneath, each is an ordinary stream: its own watermark, state, history,
quarantine and lock, and its own atomic commit, so SPEC §3 holds per bucket. The buckets share
the target table; their keys are disjoint, so their rows never meet, and the union of the
buckets is what one run would have loaded. Above them it is ONE stream (SPEC §11): the run is
judged as one (the quality gate's scan phase, :func:`gated`), its summary and watermark are the
stream's (:func:`combine`), and the admin commands given its name act on every bucket
(:mod:`hiwater.api`, :func:`replay_buckets`).

This module is the orchestration: check the stream's bucket count and plan the run (:func:`plan`),
run one spec per bucket on the executor (:func:`hiwater.executor.execute`), and combine the
buckets' summaries into the stream's (:func:`combine`). The hash and the names are in
:mod:`hiwater.keyhash`. A file source is read in two phases on one pool: a read phase parses
each split once and spills every bucket's rows (:mod:`hiwater.shuffle`), then each bucket
applies its share; so is a SQL source whose key is one integer column (its splits are key
ranges); another SQL source's buckets read only their rows (the hash predicate pushed down).
docs/scale-out.md has the design, and docs/benchmarks-buckets.md the cost.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

from . import events, report, shuffle
from .errors import StrictError, UsageError
from .executor import SHARE as _SHARE
from .executor import PipelineResult, bucket_pool, execute, read_splits
from .keyhash import bucket_name, check_count, parse_name, stream_watermark
from .options import RejectLimit, parse_executor
from .report import quality_gate
from .spec import Plan, StreamSpec, connected
from .stream import attempt, replay
from .summary import Counts, Summary
from .targets.delta import DeltaTarget
from .targets.deltabuckets import by_bucket, place_buckets


def _file_target(db, target) -> bool:
    if db is not None:
        return True
    url = target or os.environ.get("HIWATER_TARGET_URL") or ""
    # One file, one writer: a SQLite or DuckDB file's buckets take turns (a Delta table: plan()).
    return url.split(":", 1)[0].lower() in ("sqlite", "duckdb", "")


def plan(tgt, stream: str, table: str, n: int, key, executor, db, target) -> Plan:
    """Check the stream's bucket count against the target's state and say how to run."""
    states = tgt.ledger.states()
    names = [s.stream for s in states]
    check_count(names, stream, n)
    mine = [bucket_name(stream, b, n) for b in range(n)]
    if isinstance(tgt, DeltaTarget) and not all(name in names for name in mine):  # partitioned by bucket
        # A bucket starts afresh (the count changed, or the stream was dropped): the table's rows
        # go to their buckets' partitions first, where this count's buckets will look for them.
        key = key or next((s.key for s in states if s.stream in mine), None)
        if key:
            place_buckets(tgt, table, tuple(key), n)
    kind, where = parse_executor(executor)
    # A Delta table's buckets commit side by side into their partitions (targets/deltacommit.py);
    # a table made by a plain stream has none, so there they take turns.
    serial = _file_target(db, target) or (isinstance(tgt, DeltaTarget) and not by_bucket(tgt, table))
    return Plan(stream, n, kind, where, serial=serial,
                first_alone=tgt.table(table) is None,
                names=[bucket_name(stream, b, n) for b in range(n)])


def combine(results: list, stream: str, table: str, total: int | None, duration_s: float):
    """One :class:`~hiwater.summary.Summary` for the bucketed run (its watermarks: the least of
    the buckets that hold one), or a :class:`~hiwater.errors.PipelineError` naming the failed buckets."""
    ok = [r for r in results if r.ok]
    if len(ok) < len(results):
        PipelineResult(results, duration_s).raise_for_failures()
    counts = Counts()
    new_columns = []
    for r in ok:
        counts.add(r.summary.counts)
        new_columns += [c for c in r.summary.new_columns if c not in new_columns]
    s0 = ok[0].summary
    prev = [r.summary.previous_watermark for r in ok]
    new = [r.summary.new_watermark for r in ok]
    out = Summary(counts, _least(prev), _least(new), total if total is not None else max(
        r.summary.total_in_target for r in ok), stream, table, s0.mode, None, dry_run=s0.dry_run,
        stale_source=all(r.summary.stale_source for r in ok), warnings=_warnings(ok, counts),
        new_columns=new_columns, duration_s=round(duration_s, 3))
    out.buckets = [{"stream": r.stream, **r.summary.headline(), "run_id": r.summary.run_id,
                    "duration_s": r.summary.duration_s} for r in ok]
    return out


def _warnings(ok: list, counts: Counts) -> list:
    """The stream's warnings: each bucket's (named), but a warning about a bucket's own share
    only when the sums say it of the whole stream (once, unnamed)."""
    share = [w for r in ok for w in r.summary.warnings if w.startswith(_SHARE)]
    out = [f"{r.stream}: {w}" for r in ok for w in r.summary.warnings if not w.startswith(_SHARE)]
    whole = counts.source_records == 0 or counts.loaded == 0 or counts.rejected == counts.source_records
    if whole and share:
        out.insert(0, share[0])
    return out


def _least(values):
    """The stream's watermark: the least of the buckets' that hold one (a bucket with no record
    yet holds nothing to be behind on; ``None`` when none does). Values of one stream have one
    kind and print in one form, so their text order is their order for ISO text of one offset
    and for dates; integers compare as integers."""
    held = [v for v in values if v is not None]
    return min(held) if held else None


def load_bucketed(spec: StreamSpec) -> Summary:
    """``hiwater.load(..., buckets=N)``: N bucket streams as tasks, and one summary of their union."""
    opts, db, target, table = spec.options, spec.db, spec.target, spec.table
    n = opts.buckets
    if spec.source is not None:
        raise UsageError(f"--buckets {n} reads a file, a folder or a database; in-memory data and source "
                         f"objects load without --buckets")
    if spec.input == "-":
        raise UsageError(f"--buckets {n}: standard input can be read only once; give a file or --source")
    if db is None and target is None and not os.environ.get("HIWATER_TARGET_URL"):
        raise UsageError(f"--buckets {n}: the buckets run in other processes; give --db PATH or --target URL "
                         f"(an in-memory target would keep nothing)")
    stream = spec.stream
    if parse_name(stream) is not None:
        raise UsageError(f"--stream {stream!r}: a name ending in #B/N is a bucket's; give the stream's own name")
    started = time.monotonic()
    for notice in spec.notices:  # said as the run starts, as a plain run's loader says them
        events.emit("warning", notice, level=logging.WARNING, stream=stream)
    with connected(db, target) as tgt:
        p = plan(tgt, stream, table, n, opts.key, opts.executor, db, target)
        before = {s.stream: s for s in tgt.ledger.states()}
        manifests = [tgt.ledger.files(name) for name in p.names] if spec.source_url is None else None
    specs = [spec.for_bucket(b, n) for b in range(n)]
    gate = opts.max_rejected is not None or opts.strict
    split = shuffle.plan_sql(spec, p, before) if spec.source_url is not None else \
        shuffle.plan(spec, p, before, manifests)
    try:
        with bucket_pool(p, 0 if split is None else len(split.splits)) as pool:
            reading = None
            if split is not None:  # the read phase: every split parsed once, its rows spilled by bucket
                read_at = time.monotonic()
                shares, reading = split.shares(read_splits(pool, split.splits, split.cfg, split.dir))
                reading["seconds"] = round(time.monotonic() - read_at, 3)
                specs = [dataclasses.replace(s, share=share) for s, share in zip(specs, shares)]
            if gate:  # a dry run is its own scan: judged on its sums below
                specs = _ungated(specs) if opts.dry_run else gated(p, specs, opts.max_rejected, pool)
            results = execute(p, specs, pool)
    finally:
        if split is not None:
            split.remove()
    total = None
    states: dict = {}
    if all(r.ok for r in results):
        with connected(db, target) as tgt:
            states = {s.stream: s for s in tgt.ledger.states() if s.stream in p.names}
            info = None if opts.dry_run else tgt.table(table, count=True)
            total = info.rows if info is not None else None
    out = combine(results, stream, table, total, time.monotonic() - started)
    out.reading = reading
    if gate and opts.dry_run:
        quality_gate(opts.max_rejected, out.counts.rejected, out.counts.source_records, None)
    if not opts.dry_run and len(states) == n:
        out.new_watermark = stream_watermark(list(states.values()))
    olds = [before.get(name) for name in p.names]
    out.previous_watermark = stream_watermark(olds) if all(s is not None for s in olds) else None
    stale = report.STALE
    if out.warnings and out.warnings[0].startswith(stale) and out.previous_watermark is not None:
        # (a bucket's own figures: the stream's are its newest record's and its watermark's)
        out.warnings[0] = (f"{stale}no bucket's source holds a record newer than its watermark; the stream's "
                           f"watermark {out.previous_watermark})")
    if out.warnings and out.warnings[0].startswith(_SHARE):  # the workers kept it to themselves
        events.emit("warning", out.warnings[0], level=logging.WARNING, stream=stream)
    out.warnings = list(spec.notices) + out.warnings
    return out


def gated(p: Plan, specs: list, limit, pool=None) -> list:
    """The quality gate of a bucketed run, judged on the whole stream (``--max-rejected``,
    ``--strict``): a scan phase first. Every bucket makes a dry run of its share (its reading
    and deciding, nothing committed) and hands back its counts; the coordinator sums them and
    fails the stream, with nothing committed anywhere, where one run would have failed. Then
    the buckets apply, each allowed no more rejections than its scan found, so a source that
    changed in between cannot carry the stream past the limit (a bucket that finds more fails
    alone, committing nothing). The price: the stream is read twice when a gate is set
    (docs/scale-out.md, "The quality gate")."""
    scan = [dataclasses.replace(s, options=dataclasses.replace(s.options, dry_run=True)) for s in _ungated(specs)]
    results = execute(dataclasses.replace(p, first_alone=False), scan, pool)
    strict = next((r.error for r in results if isinstance(r.error, StrictError)), None)
    if strict is not None:
        raise strict
    if not all(r.ok for r in results):
        PipelineResult(results).raise_for_failures()
    counts = Counts()
    for r in results:
        counts.add(r.summary.counts)
    quality_gate(limit, counts.rejected, counts.source_records, None)
    if limit is None:
        return specs
    return [dataclasses.replace(s, options=dataclasses.replace(s.options, max_rejected=RejectLimit(
        f"{limit.text} (its share: {r.summary.counts.rejected}, as its scan found)",
        count=r.summary.counts.rejected))) for s, r in zip(specs, results)]


def _ungated(specs: list) -> list:
    """The bucket specs without a per-bucket ``--max-rejected`` (the stream's sums are judged)."""
    return [dataclasses.replace(s, options=dataclasses.replace(s.options, max_rejected=None)) for s in specs]


def replay_buckets(stream: str, buckets: list, *, db=None, target=None, **options) -> Summary:
    """``quarantine replay`` of a bucketed stream: each bucket's records in that bucket's own
    transaction (its keys, its partition), one summary of them all."""
    started = time.monotonic()
    results = [attempt(b, replay, b, db=db, target=target, **options) for b in buckets]
    table = next((r.summary.table for r in results if r.summary is not None), None)
    return combine(results, stream, table, None, time.monotonic() - started)

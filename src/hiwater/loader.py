"""The run: source batches -> prepare -> decide -> target, one transaction per run or slice.

This module holds the only loop that touches both a source and a target. The
decisions themselves are in :mod:`hiwater.decide` (pure); the SQL is in
:mod:`hiwater.targets`.
"""

from __future__ import annotations

import gc
import logging
import secrets
import time
from contextlib import nullcontext

from . import decide as D
from . import report
from . import values as V
from .apply import Applier, PassResult, table_columns
from .events import emit
from .keyhash import check_new_stream
from .options import LoadOptions
from .prepare import CsvColumnIsText, Judged, KindChanged, check_fields, prepare
from .sources.base import Source, as_source
from .sources.lightjson import LightBatch
from .sources.prefetch import prefetch
from .sources.spill import read_once
from .state import StreamState, zone_name
from .summary import Summary
from .targets.base import FilesGone, FilesRead, History, Released, State, Target
from .window import check_durations, next_watermark, window_for

log = logging.getLogger("hiwater")




class Loader:
    """One run of one stream: its plan (lock, state, transactions, passes, restarts, events).
    Use :func:`hiwater.load` rather than this class directly."""

    def __init__(self, source: Source, target: Target, opts: LoadOptions, *, table: str, progress=None,
                 notices: list | None = None):
        self.progress = progress  # called as progress(records_done, records_expected or None)
        self.notices = list(notices or [])  # warnings known before the run (in-memory target, ...)
        self.run_uuid = secrets.token_hex(6)  # shared by every event of this run
        self.t0 = time.monotonic()
        self.source, self.target, self.opts, self.table = as_source(source), target, opts, table
        self.stream = opts.stream or table
        self.tz = V.zone(opts.assume_tz or "UTC")
        self.now = V.now_us(opts.now)
        self.warnings: list[str] = []
        self.run_id: int | None = None
        self.files = None  # a tracked file source: this run's FileSelection
        self.judged = Judged()  # what restarts learn about the input (see _run and _run_widening)
        self.state: StreamState | None = None  # (this and below: set as the run starts, again on a restart)
        self.prev: int | None = None  # the watermark the run found
        self.start = None  # --start, for a new stream only
        self.batch: Applier | None = None
        self._started_at: str | None = None
        self._committed_index: int | None = None  # --window: the last committed slice's index
        self._committed_wm: int | None = None  # ... and the watermark it left
        self._dry = None  # a dry run: its one transaction, rolled back at the end
        self._recorded: BaseException | None = None  # a failure its own transaction recorded already

    @property
    def kind(self) -> str | None:
        """The cursor's kind: the stream's, or judged on this run's first batch."""
        return None if self.state is None else self.state.kind

    # --- the run ------------------------------------------------------------------------------
    def run(self) -> Summary:
        # The run allocates millions of short-lived objects and no cycles worth collecting:
        # the cyclic GC only costs time here (5% of a first load). Reference counting still frees.
        gc_was = gc.isenabled()
        gc.disable()
        self.t0 = time.monotonic()
        emit("run_started", f"run of stream {self.stream!r} started", **self._ids(), table=self.table,
             target=self.target.description, source=self.source.description,
             mode=self.opts.mode, dry_run=self.opts.dry_run)
        try:
            summary = self._run()
        except BaseException as exc:
            self._emit_failure(exc)
            raise
        finally:
            if gc_was:
                gc.enable()
        summary.duration_s = report.elapsed(self.t0)
        for w in summary.warnings:
            emit("warning", w, level=logging.WARNING, **self._ids())
        emit("run_finished", f"run {self.run_id} of stream {self.stream!r} finished: {summary.loaded} loaded, "
             f"{summary.skipped} skipped, {summary.counts.rejected} rejected in {summary.duration_s:.3f}s",
             **{**report.finished_fields(summary), **self._ids()})
        return summary

    def _ids(self) -> dict:
        return {"run": self.run_uuid, "run_id": self.run_id, "stream": self.stream}

    def _run(self) -> Summary:
        """Under the stream's lock (the target is open: see :func:`hiwater.stream.run`)."""
        with self.target.lock(self.stream, self.opts.lock_timeout.seconds):
            try:
                while True:  # (at most twice again: date or int -> timestamp -> timestamp_ns)
                    try:
                        return self._run_widening()
                    except KindChanged as change:
                        # The first run judged the cursor's kind on its first batch, and a later
                        # batch shows a wider one (a timestamp after dates): nothing was committed,
                        # so the run starts again with the kind that fits every batch, as if they
                        # were one.
                        if not self.source.rereadable:
                            raise report.kind_changed(self.opts.cursor, change.was, change.seen) from None
                        log.info("cursor kind is %s, not %s: the run starts again", change.kind, change.was)
                        self.judged.kind = change.kind
            except Exception as exc:
                if exc is not self._recorded and not self.opts.dry_run:  # (a dry run records nothing)
                    self._record_failure(exc)  # after the rollback, in a transaction of its own
                raise

    def _run_widening(self) -> Summary:
        """Run (a dry run in one transaction, rolled back); while a later CSV batch shows a column
        this run made as a number to be text (`007` after `7`), start again with it as text:
        nothing was committed, and it gets the type the whole file would have given it."""
        while True:
            try:
                if not self.opts.dry_run:
                    return self._run_locked()
                # A dry run is one transaction around everything, every slice's work included,
                # rolled back at the end.
                with self.target.begin(self.stream, self.table, tuple(self.opts.key), discard=True) as tx:
                    self._dry = tx
                    return self._run_locked()
            except CsvColumnIsText as change:
                log.info("CSV column %r holds text after numbers: the run starts again", change.column)
                self.judged.text_columns.add(change.column)

    def _error_text(self, exc: BaseException) -> str:
        return report.error_text(exc, (self.source.url, getattr(self.target, "url", None)))

    def _record_failure(self, exc: BaseException) -> None:
        """A failed run leaves one history row (outcome ``failed``, the error, the duration), written
        after its transaction was rolled back, in a transaction of its own. Its run id is a new one
        unless ``--window`` slices of this run were committed (then the failed slice's index)."""
        try:
            committed = self._committed_index
            with self.target.begin(self.stream, run_id=None if committed is None else self.run_id) as tx:
                self.run_id = tx.run_id
                index, left = (0, self.prev) if committed is None else (committed + 1, self._committed_wm)
                tx.record(History(report.failed_row(
                    exc, run_id=self.run_id, index=index, stream=self.stream, opts=self.opts,
                    started_at=self._started_at, prev=self.prev, left=left, kind=self.kind,
                    naive=self.state.naive if self.state is not None else True, tz=self.tz,
                    duration=report.elapsed(self.t0), error=self._error_text(exc))))
        except Exception as again:  # noqa: BLE001 - the run's own error is the one to report
            log.debug("could not record the failed run in the history: %s", again)

    def _emit_failure(self, exc: BaseException) -> None:
        info = report.failure_info(exc, self._error_text(exc))
        emit("run_failed", f"run of stream {self.stream!r} failed: {info['error_message']}", level=logging.ERROR,
             **{**info, **self._ids(), "duration_s": report.elapsed(self.t0)})

    def _run_locked(self) -> Summary:
        t, o = self.target, self.opts
        self._started_at = report.iso_now()
        stored = state = next(iter(t.ledger.states(self.stream)), None)
        self.start = o.start if state is None else None  # --start: a new stream's first watermark
        if state is None:
            check_new_stream([s.stream for s in t.ledger.states()], self.stream)
            state = StreamState(self.stream, self.table, tuple(o.key), o.cursor,
                                assume_tz=zone_name(o.assume_tz or "UTC"))
        # set before the checks: a refused run's history row carries the stream's watermark
        self.tz = V.zone(state.assume_tz)
        self.state = state
        self.prev = state.watermark
        if stored is not None:
            state.check(self.table, o.key, o.cursor, o.assume_tz, t.flags)
        o.check_range(state.assume_tz, state.kind)
        self.warnings = list(self.notices)  # (again on a restart: a run's warnings are its own)
        if o.start is not None and self.start is None:
            self.warnings += report.start_ignored(o.start, state, self.tz)
        self.judged.start(state)
        if state.kind is not None:
            check_durations(o, state.kind, self.tz)
        columns, empty_at_start = table_columns(t, self.table)
        # (the first rejected record outlives a restart, as it always has)
        self.batch = Applier(o, table=self.table, stream=self.stream, state=state, tz=self.tz, columns=columns,
                             empty_at_start=empty_at_start,
                             first_reject=None if self.batch is None else self.batch.first_reject)
        prev_text = state.watermark_text()
        future = report.future_watermark(o.max_future, self.prev, prev_text, self.kind, self.now, self.tz)
        self.warnings += [future] if future else []
        self._select_files()
        if o.window is None:
            return self._run_single(prev_text)
        source = self.source
        with read_once(source) as self.source:
            try:
                return self._run_windowed(prev_text)
            finally:
                self.source = source

    def _gate(self, rejected: int, source_records: int) -> None:
        report.quality_gate(self.opts.max_rejected, rejected, source_records, self.batch.first_reject)

    def _window(self):
        return window_for(self.opts, self.prev, self.kind, self.now, self.tz, self.start)

    def _next_watermark(self, candidate: int | None) -> int | None:
        return next_watermark(self.opts, self.prev, candidate, self.kind, self.now, self.tz, self.start)

    # --- one transaction ------------------------------------------------------------------
    def _run_single(self, prev_text) -> Summary:
        o = self.opts
        started = report.iso_now()
        with self._begin() as tx:
            self.run_id = tx.run_id
            self._release(tx)
            res = self._pass(tx, part=None)
            self._gate(res.counts.rejected, res.counts.source_records)
            if o.prune and res.counts.source_records == 0:
                raise report.prune_empty(self.source.description, self.table, self.stream, self.target.flags)
            pruned = tx.prune() if o.prune and self.batch.columns is not None else 0
            failure = self._recorded = report.nothing_valid(self.opts.max_rejected, res.counts.rejected,
                                                            res.counts.source_records, self.batch.first_reject,
                                                            replay=self.source.replay)
            # a run that rejected every record leaves the watermark where it was (a full load's too)
            new_wm = self.prev if failure is not None else self._next_watermark(res.candidate)
            self._save_state(tx, new_wm)
            self._record_files(tx)
            summary = self._summary(res, prev_text, new_wm, tx.count(), pruned)
            self._history(tx, 0, started, res, new_wm, None, None, failure)
        if failure is not None:
            raise failure
        return summary

    def _begin(self, run_id: int | None = None):
        """The transaction of the run (or of one --window slice); a dry run's one, kept open."""
        if self.opts.dry_run:
            return nullcontext(self._dry)
        return self.target.begin(self.stream, self.table, tuple(self.opts.key), run_id=run_id)

    def _release(self, tx) -> None:
        """A quarantine replay: the replayed records leave the quarantine in the transaction
        that judges them again, before any of them is quarantined again."""
        if self.source.replay:
            tx.record(Released(self.source.ids))

    def _run_windowed(self, prev_text) -> Summary:
        o = self.opts
        started = report.iso_now()
        # Scan: which slices hold records, and how many records are invalid already.
        scan = self._pass(None, part=None)
        # The quality gate on what the scan already knows to be invalid: nothing is committed.
        self._gate(scan.invalid, scan.records)
        total_res, windows, new_wm = PassResult(), [], self.prev
        # Transaction 0: records outside the window (invalid, future, late, below).
        with self._begin() as tx:
            self.run_id = tx.run_id
            self._release(tx)
            # (its late records wait for the last slice: a newer version there supersedes them)
            res = self._pass(tx, part=(0, 0, True), settle=not scan.slices)
            total_res.merge(res)
            self._gate(total_res.counts.rejected, scan.records)
            failure = None
            if not scan.slices:
                failure = self._recorded = report.nothing_valid(o.max_rejected, total_res.counts.rejected,
                                                                scan.records, self.batch.first_reject,
                                                                replay=self.source.replay)
                if failure is None:  # no slice: the watermark a run in one transaction leaves (a
                    new_wm = self._next_watermark(total_res.candidate)  # full load's: from no data)
            self._save_state(tx, new_wm)
            if not scan.slices:
                self._record_files(tx)
            self._history(tx, 0, started, res, new_wm, None, None, failure)
        if failure is not None:
            raise failure
        self._committed_index, self._committed_wm = 0, new_wm
        width = o.window.for_kind(self.kind, "--window") if scan.slices else None
        for i, s in enumerate(sorted(scan.slices), start=1):
            lo, hi = s * width, (s + 1) * width
            with self._begin(self.run_id) as tx:
                res = self._pass(tx, part=(lo, hi, False), settle=False)
                # A value the columns made by an earlier slice cannot hold is found only now: past
                # the limit, this slice fails (earlier slices stand, as for any failed slice).
                self._gate(total_res.counts.rejected + res.counts.rejected, scan.records)
                total_res.merge(res)
                if i == len(scan.slices):
                    # the late records held since transaction 0 are quarantined with the last slice,
                    # but those a newer version applied by a slice superseded (as in one pass); a
                    # run killed before it reads them again (below the committed watermark: late)
                    self.batch.settle_late(total_res)
                new_wm = self._next_watermark(total_res.candidate)
                self._save_state(tx, new_wm)
                if i == len(scan.slices):
                    # A file is applied when its last record is: the manifest commits with the last
                    # slice (a run killed earlier reads the same files again; the target absorbs it).
                    self._record_files(tx)
                lo_t, hi_t, wm_t = (V.format_value(v, self.kind, self.state.naive, self.tz) for v in (lo, hi, new_wm))
                self._history(tx, i, report.iso_now(), res, new_wm, lo_t, hi_t)
                windows.append(report.slice_entry(i, lo_t, hi_t, res.counts, wm_t))
            if o.dry_run is False:
                self._committed_index, self._committed_wm = i, new_wm
                emit("slice_committed", f"committed window {i} [{lo_t}, {hi_t})", **self._ids(),
                     **windows[-1])
        if o.dry_run:
            total = self._dry.count()  # as staged
        else:
            info = self.target.table(self.table, count=True)
            total = info.rows if info is not None else 0
        summary = self._summary(total_res, prev_text, new_wm, total, 0)
        summary.windows = windows
        return summary

    # --- one pass over the source -----------------------------------------------------------
    def _pass(self, tx, *, part: tuple | None, settle: bool = True) -> PassResult:
        """Read the source once; decide (and, in a transaction ``tx``, apply) the records of
        ``part`` (a ``--window`` slice's ``(lo, hi, outside)``, see :meth:`Applier.apply`; None:
        all). Without ``tx`` it is the scan of a ``--window`` run: it counts, writes nothing.
        Late records found are held to the end of the pass, or with ``settle`` False beyond it
        (a ``--window`` run's: until its last slice has applied every newer version)."""
        o, b = self.opts, self.batch
        write = tx is not None
        res = PassResult()
        window, window_kind = None, None
        done = 0
        expected = self.source.expected_records() if self.progress is not None and write else None
        if self.kind not in (None, V.TIMESTAMP_NS) and self.source.pushdown:
            # (a nanosecond stream's window is applied here: SQL sources hold microseconds)
            w = self._window()  # a SQL source reads only the window (pushdown)
            self.source.set_window(w.lo, w.lo_inclusive, w.hi, self.kind, self.tz)
        fields: set = set()
        b.begin_pass(tx, hold_late=write and (part is None or part[2]), keep_held=write and part is not None)
        light = write and part is None and b.light_ok()
        self.source.light_key = tuple(o.key) if light else None
        for raw in prefetch(self.source.batches(), early=b.store_early):
            if len(raw) == 0:
                continue
            if isinstance(raw, LightBatch):
                fields.update(raw.table.column_names)
                n_light = len(raw)
                raw = b.skip_current(raw, res, self._window(), self.run_id)
                done += n_light - (0 if raw is None else len(raw))
                if raw is None:
                    if self.progress is not None:
                        self.progress(done, expected)
                    continue
            fields.update(raw.table.column_names)
            self.judged.check(raw, o.cursor, self.kind, b.columns)
            p = prepare(raw, key=tuple(o.key), cursor=o.cursor, kind=self.kind, tz=self.tz,
                        columns=b.columns, delete_field=o.delete_field, text_columns=self.judged.text_columns,
                        text_nul=self.target.capabilities.text_nul,
                        fold_case=self.target.capabilities.fold_case)
            self.judged.check_parsed(p)
            if self.kind is None and p.kind is not None:
                self.state.kind = p.kind
                check_durations(o, self.kind, self.tz)
            if o.strict:
                p.check_strict()
            if window is None or window_kind != self.kind:
                window, window_kind = self._window(), self.kind
            places = D.place(p.cursor, p.valid, window)
            res.see(p.cursor, p.valid, places)
            if self.files is not None and (window.ranged or window.hi is not None):
                self.files.leave(raw.path, (places == D.Place.OUTSIDE) | (places == D.Place.BEYOND))
            if not write:
                b.scan(res, raw, p, places, window)
                continue
            if not b.apply(p, places, window, res, self.run_id, part):
                continue
            if self.progress is not None:
                done += p.n
                self.progress(done, expected)
        self.source.light_key = None
        check_fields(fields, o.key, o.cursor, self.source.description)
        b.end_pass(res, settle)
        return res

    # --- the file manifest (SPEC §10) ------------------------------------------------------------
    def _select_files(self) -> None:
        """A folder or glob source reads only the files the stream's manifest does not hold at
        their listed version (all of them with ``--reread-files`` or ``--full-load``); files
        the manifest holds that are no longer listed are reported, never an error."""
        src, o = self.source, self.opts
        self.files = None
        if src.tracked:
            self.files = src.select(self.target.ledger.files(self.stream), reread=o.reread_files or o.full_load)
        if self.files is not None and self.files.vanished:
            self.warnings.append(report.vanished_files(self.files.vanished, src.description))

    def _record_files(self, tx) -> None:
        """Record the files this run applied completely (and forget the vanished ones), in the
        transaction that commits the run's (or its last slice's) data; the others stay unread."""
        if self.files is None:
            return
        tx.record(FilesRead(self.files.applied()), FilesGone(self.files.vanished))
        if self.files.left:
            self.warnings.append(report.files_left(len(self.files.left), self.source.description))

    # --- state, history, summary -------------------------------------------------------------
    def _save_state(self, tx, new_wm) -> None:
        self.state.advance(new_wm, self.run_id, self.batch.cand_naive)
        tx.record(State(self.state))

    def _history(self, tx, index, started, res, new_wm, lo_t, hi_t, failure=None) -> None:
        tx.record(History(report.history_row(
            res, self.state, self.tz, stream=self.stream, run_id=self.run_id, index=index, started=started,
            opts=self.opts, prev=self.prev, new_wm=new_wm, lo_t=lo_t, hi_t=hi_t,
            new_columns=self.batch.new_columns, warnings=self.warnings, files=self.files, t0=self.t0,
            error=None if failure is None else self._error_text(failure))))

    def _summary(self, res: PassResult, prev_text, new_wm, total, pruned) -> Summary:
        return report.summary(
            res, self.state, self.tz, opts=self.opts, stream=self.stream, table=self.table, run_id=self.run_id,
            source=self.source, files=self.files, prev=self.prev, prev_text=prev_text, new_wm=new_wm, total=total,
            pruned=pruned, warnings=self.warnings, new_columns=self.batch.new_columns)


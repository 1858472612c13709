"""The run: source batches -> prepare -> decide -> target, one transaction per run or slice.

This module holds the only loop that touches both a source and a target. The
decisions themselves are in :mod:`hiwater.decide` (pure); the SQL is in
:mod:`hiwater.targets`.
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import logging
import secrets
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from . import decide as D
from . import values as V
from .errors import HiwaterError, QualityError, StrictError, UsageError
from .events import emit
from .keyhash import check_new_stream
from .options import LoadOptions
from .prepare import Prepared, key_groups, prepare
from .sources.base import Source
from .sources.lightjson import LightBatch
from .sources.jsontext import to_json_text
from .state import StreamState
from .summary import Counts, Summary
from .targets.base import CURSOR_COL, RUN_COL, Target

log = logging.getLogger("hiwater")
LATE_HELD = 50_000  # late records held per run to see whether a later batch supersedes them
DELETED_AT = "deleted_at"


@dataclass
class PassResult:
    counts: Counts = field(default_factory=Counts)
    candidate: int | None = None
    max_source: int | None = None
    min_late: int | None = None
    slices: set = field(default_factory=set)
    outside: int = 0
    new_columns: list = field(default_factory=list)
    records: int = 0   # the scan (write=False): records read
    invalid: int = 0   # the scan: records prepare already found invalid


class Loader:
    """One run of one stream. Use :func:`hiwater.load` rather than this class directly."""

    def __init__(self, source: Source, target: Target, opts: LoadOptions, *, table: str, progress=None,
                 notices: list | None = None):
        self.progress = progress  # called as progress(records_done, records_expected or None)
        self.notices = list(notices or [])  # warnings known before the run (in-memory target, ...)
        self.run_uuid = secrets.token_hex(6)  # shared by every event of this run
        self.t0 = time.monotonic()
        self._committed_index: int | None = None  # --window: the last committed slice's index
        self._first_reject: str | None = None
        self.source = source
        self.target = target
        self.opts = opts
        self.table = table
        self.stream = opts.stream or table
        self.tz = V.zone(opts.assume_tz or "UTC")
        self.now = V.now_us(opts.now)
        self.warnings: list[str] = []
        self.columns: dict | None = None
        self.run_id: int | None = None
        self.files = None  # a tracked file source: this run's FileSelection
        self.forced_kind: str | None = None
        self.text_columns: set = set()  # CSV columns a later batch showed to be text (see _run_widening)
        self._late: list | None = None  # late records held until the end of a one-transaction pass
        self._late_min: int | None = None

    # --- the run ------------------------------------------------------------------------------
    def run(self) -> Summary:
        # The run allocates millions of short-lived objects and no cycles worth collecting:
        # the cyclic GC only costs time here (5% of a first load). Reference counting still frees.
        gc_was = gc.isenabled()
        gc.disable()
        self.t0 = time.monotonic()
        emit("run_started", f"run of stream {self.stream!r} started", **self._ids(), table=self.table,
             target=self.target.description, source=getattr(self.source, "description", None),
             mode=self.opts.mode, dry_run=self.opts.dry_run)
        try:
            summary = self._run()
        except BaseException as exc:
            self._emit_failure(exc)
            raise
        finally:
            if gc_was:
                gc.enable()
        summary.duration_s = self._elapsed()
        for w in summary.warnings:
            emit("warning", w, level=logging.WARNING, **self._ids())
        data = summary.to_dict(details=True)
        data.pop("warnings", None)
        data.pop("windows", None)
        emit("run_finished", f"run {self.run_id} of stream {self.stream!r} finished: {summary.loaded} loaded, "
             f"{summary.skipped} skipped, {summary.counts.rejected} rejected in {summary.duration_s:.3f}s",
             **{**data, **self._ids()})
        return summary

    def _ids(self) -> dict:
        return {"run": self.run_uuid, "run_id": self.run_id, "stream": self.stream}

    def _elapsed(self) -> float:
        return round(time.monotonic() - self.t0, 3)

    def _run(self) -> Summary:
        t = self.target
        t.connect()
        with t.stream_lock(self.stream, self.opts.lock_timeout.seconds):
            with t.transaction():
                t.ensure_meta()
            try:
                try:
                    return self._run_widening()
                except _KindChanged as change:
                    # The first run judged the cursor's kind on its first batch, and a later batch
                    # shows a wider one (a timestamp after dates): nothing was committed, so the
                    # run starts again with the kind that fits every batch, as if they were one.
                    if not getattr(self.source, "rereadable", True):
                        raise UsageError(f"the cursor {self.opts.cursor!r} holds {change.seen} values after a "
                                         f"first batch of {change.was} values; this source cannot be read twice",
                                         hint="load it from a file, or put a record showing the kind first") from None
                    log.info("cursor kind is %s, not %s: the run starts again", change.kind, change.was)
                    self.forced_kind = change.kind
                    return self._run_widening()
            except Exception as exc:
                self._record_failure(exc)  # after the rollback, in a transaction of its own
                raise

    def _run_widening(self) -> Summary:
        """Run; while a later CSV batch shows a column this run made as a number to be text (a
        `007` after `7`), start again with that column as text: nothing was committed, and the
        column then gets the type the whole file would have given it."""
        while True:
            try:
                return self._run_once()
            except _CsvColumnIsText as change:
                log.info("CSV column %r holds text after numbers: the run starts again", change.column)
                self.text_columns.add(change.column)

    def _run_once(self) -> Summary:
        if self.opts.dry_run:
            try:
                with self.target.transaction():
                    raise _Rollback(self._run_locked())
            except _Rollback as done:
                return done.summary
        return self._run_locked()

    def _error_text(self, exc: BaseException) -> str:
        """The error as one line, with any password of the source's or target's URL masked."""
        from .urls import scrub
        text = str(exc) if isinstance(exc, HiwaterError) else f"{type(exc).__name__}: {exc}"
        for url in (getattr(self.source, "url", None), getattr(self.target, "url", None)):
            if isinstance(url, str):
                text = scrub(text, url)
        return text

    def _record_failure(self, exc: BaseException) -> None:
        """A failed run leaves one history row (outcome ``failed``, the error, the duration), written
        after its transaction was rolled back, in a transaction of its own. Its run id is a new one
        unless ``--window`` slices of this run were committed (then the failed slice's index)."""
        t = self.target
        try:
            with t.transaction():
                if self._committed_index is None:
                    self.run_id = t.next_run_id()
                    index = 0
                else:
                    index = self._committed_index + 1
                state = getattr(self, "state", None)
                prev = getattr(self, "prev", None)
                kind = getattr(self, "kind", None)
                naive = state.naive if state is not None else True
                left = prev if self._committed_index is None else self._committed_wm  # the watermark it left
                row = {
                    "run_id": self.run_id, "window_index": index, "stream": self.stream,
                    "started_at": getattr(self, "_started_at", None) or _iso_now(), "finished_at": _iso_now(),
                    "mode": self.opts.mode + ("/window" if self.opts.window else ""), "outcome": "failed",
                    "watermark_before": V.format_value(prev, kind, naive, self.tz),
                    "watermark_after": V.format_value(left, kind, naive, self.tz),
                    "watermark_before_value": prev, "watermark_after_value": left,
                    "duration_s": self._elapsed(), "error": self._error_text(exc),
                    "detail": orjson.dumps({"error": type(exc).__name__,
                                            "exit_code": getattr(exc, "exit_code", 1)}).decode(),
                }
                t.write_history(row)
        except Exception as again:  # noqa: BLE001 - the run's own error is the one to report
            log.debug("could not record the failed run in the history: %s", again)

    def _emit_failure(self, exc: BaseException) -> None:
        if isinstance(exc, HiwaterError):
            info = exc.to_dict()
        else:
            info = {"error": type(exc).__name__, "message": str(exc), "exit_code": 1, "retryable": False}
        info.pop("message", None)
        info["error_message"] = self._error_text(exc)
        emit("run_failed", f"run of stream {self.stream!r} failed: {info['error_message']}", level=logging.ERROR,
             **{**info, **self._ids(), "duration_s": self._elapsed()})

    def _run_locked(self) -> Summary:
        t, o = self.target, self.opts
        self._started_at = _iso_now()
        state = t.read_state(self.stream)
        if state is None:
            check_new_stream([s.stream for s in t.list_states()], self.stream)
            state = StreamState(self.stream, self.table, tuple(o.key), o.cursor,
                                assume_tz=_zone_name(o.assume_tz or "UTC"))
        else:
            self._check_state(state)
        self.tz = V.zone(state.assume_tz)
        o.check_range(state.assume_tz, state.kind)
        self.state = state
        self.prev = state.watermark
        self.warnings = list(self.notices)  # (again on a restart: a run's warnings are its own)
        self.new_columns_logged = []
        self._cand_naive = None
        if state.kind is None and self.forced_kind is not None:
            state.kind = self.forced_kind
        self.kind = state.kind
        self._kind_this_run = self.kind is None  # judged on this run's first batch
        self._csv_types: dict = {}  # CSV column -> the type its first batch in this run gave it
        if self.kind is not None:
            self._check_durations()
        self.columns = t.table_columns(self.table)
        # A table that is empty now can only hold what this run writes (see _fresh_keys).
        self.empty_at_start = self.columns is None or not t.has_rows(self.table)
        self.written_range = None
        if self.columns is not None:
            from .targets.base import CURSOR_COL
            if CURSOR_COL not in self.columns:
                raise UsageError(f"table {self.table!r} exists and was not made by hiwater",
                                 hint="choose another --table, or drop that table")
            self.columns = {c: ty for c, ty in self.columns.items() if not c.startswith("_hiwater_")}
        prev_text = state.watermark_text()
        if (self.prev is not None and self.kind in (V.TIMESTAMP, V.DATE) and o.max_future is not None
                and self.prev > self.now + o.max_future.for_kind(self.kind, "--max-future")):
            self.warnings.append(
                f"the stored watermark {prev_text} is in the future (now is "
                f"{V.format_value(self.now, V.TIMESTAMP, False, self.tz)}): records older than it are "
                f"treated as late; check the source's clock, then `hiwater state set` or `state rewind`")

        self._select_files()
        if o.window is not None:
            source = self.source
            if getattr(source, "spill_for_window", False):
                # Each file is read once per run, not once per slice: the scan spills what it reads.
                from .sources.spill import Spilled
                self.source = Spilled(source)
            try:
                summary = self._run_windowed(prev_text)
            finally:
                if self.source is not source:
                    self.source.close_spill()
                    self.source = source
        else:
            summary = self._run_single(prev_text)
        return summary

    def _check_state(self, s: StreamState) -> None:
        """A stream keeps what it was created with: its table, key, cursor and time zone."""
        o = self.opts
        if s.table != self.table:
            raise UsageError(f"stream {self.stream!r} loads table {s.table!r}, not {self.table!r}",
                             hint="pass the same --table, or another --stream")
        start_over = (f"or start the stream over with `hiwater stream drop {s.stream} --table"
                      f"{self.target.cli_flags()}` (deletes its data), or load into another --table")
        if tuple(s.key) != tuple(o.key):
            raise UsageError(f"stream {self.stream!r} was created with --key {','.join(s.key)}, "
                             f"not {','.join(o.key)}", hint=f"pass --key {','.join(s.key)}, {start_over}")
        if s.cursor != o.cursor:
            raise UsageError(f"stream {self.stream!r} was created with --cursor {s.cursor}, not {o.cursor}",
                             hint=f"pass --cursor {s.cursor}, {start_over}")
        if o.assume_tz is not None and _zone_name(o.assume_tz) != _zone_name(s.assume_tz):
            V.zone(o.assume_tz)  # an unknown zone is reported as such first
            raise UsageError(f"stream {self.stream!r} was created with --assume-tz {s.assume_tz}, not "
                             f"{o.assume_tz}: its stored cursors are instants read in {s.assume_tz}",
                             hint=f"leave --assume-tz out (the stream's own is used), {start_over}")

    def _check_durations(self) -> None:
        """Each duration option must suit the cursor's kind (checked as soon as the kind is known)."""
        o = self.opts
        for name in ("lookback", "window", "settle"):
            d = getattr(o, name)
            if d is not None:
                d.for_kind(self.kind, "--" + name)
        for name in ("since", "until"):
            if getattr(o, name) is not None:
                V.parse_bound(getattr(o, name), self.kind, self.tz, "--" + name)

    # --- windows --------------------------------------------------------------------------
    def _window(self) -> D.Window:
        o = self.opts
        kind = self.kind
        future = None
        if o.max_future is not None and kind != V.INT:
            future = self.now + o.max_future.for_kind(kind, "--max-future")
        hi = None
        if o.until is not None:
            hi, _ = V.parse_bound(o.until, kind, self.tz, "--until")
        if o.since is not None:
            lo, _ = V.parse_bound(o.since, kind, self.tz, "--since")
            return D.Window(lo, True, hi, future, o.on_late, ranged=True)
        if o.full_load or self.prev is None:
            return D.Window(None, True, hi, future, o.on_late)
        lo = self.prev
        if o.lookback is not None:
            lo -= o.lookback.for_kind(kind, "--lookback")
        return D.Window(lo, o.boundary == "inclusive", hi, future, o.on_late)

    def _finish_watermark(self, candidate: int | None) -> int | None:
        o = self.opts
        wm = candidate
        if o.since is not None:
            since, _ = V.parse_bound(o.since, self.kind, self.tz, "--since")
            if self.prev is None or since > self.prev:
                # A backfill that starts above the watermark leaves a gap below it: moving the
                # watermark would skip the gap's records for good. It stays.
                return self.prev
        if o.full_load:
            pass  # set from the data, even if lower (or None when no record was examined)
        elif wm is None:
            return self.prev
        if wm is None:
            return None
        if o.settle is not None and self.kind is not None:
            wm = min(wm, self.now - o.settle.for_kind(self.kind, "--settle"))
        if o.until is not None:
            hi, _ = V.parse_bound(o.until, self.kind, self.tz, "--until")
            wm = min(wm, hi)
        if self.prev is not None and not o.full_load:
            wm = max(wm, self.prev)
        return wm

    # --- one transaction ------------------------------------------------------------------
    def _run_single(self, prev_text) -> Summary:
        t, o = self.target, self.opts
        started = _iso_now()
        ctx = nullcontext() if o.dry_run else t.transaction()
        with ctx:
            self.run_id = t.next_run_id()
            if o.prune:
                t.prune_begin(tuple(o.key))
            res = self._pass(lo_slice=None, hi_slice=None, outside=True, write=True)
            self._check_quality(res.counts.rejected, res.counts.source_records)
            pruned = 0
            if o.prune and res.counts.source_records == 0:
                raise HiwaterError(f"the source {self.source.description} has no records: --prune would delete "
                                   f"every row of {self.table!r}; nothing was committed",
                                   hint="check the export; to empty the table on purpose, "
                                        f"`hiwater stream drop {self.stream} --table{self.target.cli_flags()}`")
            if o.prune and self.columns is not None:
                pruned = t.prune_finish(self.table, tuple(o.key))
            new_wm = self._finish_watermark(res.candidate)
            self._save_state(new_wm, res)
            self._record_files()
            total = t.count_rows(self.table)
            summary = self._summary(res, prev_text, new_wm, total, pruned)
            self._history(0, started, res, new_wm, summary, None, None)
        return summary

    def _run_windowed(self, prev_text) -> Summary:
        t, o = self.target, self.opts
        started = _iso_now()
        # Scan: which slices hold records, and how many records are outside the window.
        scan = self._pass(lo_slice=None, hi_slice=None, outside=True, write=False)
        # The quality gate on what the scan already knows to be invalid: nothing is committed.
        self._check_quality(scan.invalid, scan.records)
        total_res = PassResult()
        windows = []
        width = None
        new_wm = self.prev
        # Transaction 0: records outside the window (invalid, future, late, below).
        with (nullcontext() if o.dry_run else t.transaction()):
            self.run_id = t.next_run_id()
            res = self._pass(lo_slice=0, hi_slice=0, outside=True, write=True)
            total_res.counts.add(res.counts)
            total_res.new_columns += res.new_columns
            self._merge_extremes(total_res, res)
            self._check_quality(total_res.counts.rejected, scan.records)
            self._save_state(new_wm, res)
            if not scan.slices:
                self._record_files()
            self._history(0, started, res, new_wm, None, None, None)
        self._committed_index, self._committed_wm = 0, new_wm
        if scan.slices:
            width = o.window.for_kind(self.kind, "--window")
        for i, s in enumerate(sorted(scan.slices), start=1):
            lo, hi = s * width, (s + 1) * width
            with (nullcontext() if o.dry_run else t.transaction()):
                res = self._pass(lo_slice=lo, hi_slice=hi, outside=False, write=True)
                # A value the columns made by an earlier slice cannot hold is found only now: past
                # the limit, this slice fails (earlier slices stand, as for any failed slice).
                self._check_quality(total_res.counts.rejected + res.counts.rejected, scan.records)
                total_res.counts.add(res.counts)
                total_res.new_columns += res.new_columns
                self._merge_extremes(total_res, res)
                if res.candidate is not None:
                    total_res.candidate = max(total_res.candidate or res.candidate, res.candidate)
                new_wm = self._finish_watermark(total_res.candidate)
                self._save_state(new_wm, res)
                if i == len(scan.slices):
                    # A file is applied when its last record is: the manifest commits with the last
                    # slice (a run killed earlier reads the same files again; the target absorbs it).
                    self._record_files()
                lo_t = V.format_value(lo, self.kind, self.state.naive, self.tz)
                hi_t = V.format_value(hi, self.kind, self.state.naive, self.tz)
                self._history(i, _iso_now(), res, new_wm, None, lo_t, hi_t)
                windows.append({"window": i, "from": lo_t, "to": hi_t, "loaded": res.counts.loaded,
                                "skipped": res.counts.skipped,
                                "watermark": V.format_value(new_wm, self.kind, self.state.naive, self.tz)})
            if o.dry_run is False:
                self._committed_index, self._committed_wm = i, new_wm
                emit("slice_committed", f"committed window {i} [{lo_t}, {hi_t})", **self._ids(), window=i,
                     **{"from": lo_t, "to": hi_t}, loaded=res.counts.loaded, skipped=res.counts.skipped,
                     watermark=windows[-1]["watermark"])
        total = t.count_rows(self.table)
        summary = self._summary(total_res, prev_text, new_wm, total, 0)
        summary.windows = windows
        return summary

    @staticmethod
    def _merge_extremes(into: PassResult, res: PassResult) -> None:
        if res.max_source is not None:
            into.max_source = max(into.max_source if into.max_source is not None else res.max_source,
                                  res.max_source)
        if res.min_late is not None:
            into.min_late = min(into.min_late if into.min_late is not None else res.min_late, res.min_late)

    # --- one pass over the source -----------------------------------------------------------
    def _pass(self, *, lo_slice, hi_slice, outside: bool, write: bool) -> PassResult:
        """Read the source once; decide (and, if ``write``, apply) the selected records.

        ``lo_slice``/``hi_slice`` select in-window records by cursor (``None``: all);
        ``outside`` includes the records outside the window.
        """
        o = self.opts
        res = PassResult()
        window, window_kind = None, None
        done, expected = 0, None
        if self.progress is not None and write and hasattr(self.source, "expected_records"):
            expected = self.source.expected_records()
        if self.kind is not None and hasattr(self.source, "set_window"):
            w = self._window()  # a SQL source reads only the window (pushdown)
            self.source.set_window(w.lo, w.lo_inclusive, w.hi, self.kind, self.tz)
        # Nested values are encoded for writing in the reader thread while most rows get
        # written; a re-read that writes (almost) nothing stops paying for it.
        self._encode_early = True
        early = lambda raw: _store_early(raw) if self._encode_early else None  # noqa: E731
        fields: set = set()
        self._late = [] if write and lo_slice is None else None
        self._late_min = None
        light = write and lo_slice is None and self._light_ok()
        if hasattr(self.source, "light_key"):
            self.source.light_key = tuple(o.key) if light else None
        for raw in prefetch(self.source.batches(), early=early):
            if len(raw) == 0:
                continue
            if isinstance(raw, LightBatch):
                fields.update(raw.table.column_names)
                n_light = len(raw)
                raw = self._skip_current(raw, res)
                if raw is None:
                    if self.progress is not None:
                        done += n_light
                        self.progress(done, expected)
                    continue
                done += n_light - len(raw)
            fields.update(raw.table.column_names)
            if self._kind_this_run and self.kind in (V.DATE, V.INT) and o.cursor in raw.table.column_names:
                seen = V.detect_kind(raw.table.column(o.cursor))
                if seen is not None and seen != self.kind:
                    raise _KindChanged(V.TIMESTAMP, self.kind, seen)
            if raw.csv:
                self._check_csv_types(raw)
            p = prepare(raw, key=tuple(o.key), cursor=o.cursor, kind=self.kind, tz=self.tz,
                        columns=self.columns, delete_field=o.delete_field, text_columns=self.text_columns)
            if self.kind is None and p.kind is not None:
                self.kind = p.kind
                self.state.kind = p.kind
                self._check_durations()
            if o.strict and not p.valid.all():
                i = int(np.flatnonzero(~p.valid)[0])
                raise StrictError(p.reasons[i], path=raw.path, row=int(raw.record_nos([i])[0]))
            if window is None or window_kind != self.kind:
                window, window_kind = self._window(), self.kind
            places = D.place(p.cursor, p.valid, window)
            if p.valid.any():
                m = int(p.cursor[p.valid & (places != D.Place.FUTURE)].max(initial=np.iinfo(np.int64).min))
                if m != np.iinfo(np.int64).min:
                    res.max_source = m if res.max_source is None else max(res.max_source, m)
            # --window: a record invalid only for a column's type (and in the window by its cursor)
            # belongs to its slice, where the columns made by earlier slices judge it.
            typed_in = np.zeros(p.n, bool)
            if o.window is not None and not p.valid.all() and p.fixed_invalid is not None:
                typed_in = ~p.valid & ~p.fixed_invalid & (D.place(p.cursor, np.ones(p.n, bool), window)
                                                          == D.Place.IN)
            if not write:
                res.records += p.n
                bad = np.flatnonzero(~p.valid)
                res.invalid += len(bad)
                if len(bad) and self._first_reject is None:
                    self._first_reject = f"{raw.path}: record {int(raw.record_nos([int(bad[0])])[0])}: {p.reasons[int(bad[0])]}"
                inwin = (places == D.Place.IN) | typed_in
                if o.window is not None and inwin.any() and self.kind is not None:
                    width = o.window.for_kind(self.kind, "--window")
                    res.slices.update(np.unique(p.cursor[inwin] // width).tolist())
                res.outside += int((~inwin).sum())
                continue
            select = np.ones(p.n, bool)
            if lo_slice is not None:
                inwin = (places == D.Place.IN) | typed_in
                in_slice = inwin & (p.cursor >= lo_slice) & (p.cursor < hi_slice)
                select = in_slice | (~inwin if outside else np.zeros(p.n, bool))
                if not select.any():
                    continue
            # An older version below the window that a newer one of its key in this batch
            # supersedes is unchanged, also when a --window slice applies the newer one later
            # (without slices, decide() sees both and says so itself).
            superseded = None
            below = places == D.Place.BELOW
            if lo_slice is not None and below.any() and o.on_late != "skip":
                examined = D.needs_lookup(places, window)
                superseded = below & ~D.winners(p.groups, p.cursor, examined)
            self._apply(p, places, window, select, res, superseded)
            if self.progress is not None:
                done += p.n
                self.progress(done, expected)
        if hasattr(self.source, "light_key"):
            self.source.light_key = None
        self._check_fields(fields)
        if self._late is not None:
            self._settle_late(res)
        if self._late_min is not None:
            res.min_late = self._late_min if res.min_late is None else min(res.min_late, self._late_min)
        return res

    def _light_ok(self) -> bool:
        """Whether this pass may read JSON Lines key and cursor first (see sources/lightjson.py):
        the target holds the stream already, and no option needs every record in full."""
        o = self.opts
        return (self.kind is not None and self.columns is not None and not self.empty_at_start
                and not o.full_load and not o.prune and not o.strict and o.delete_field is None
                and o.on_late != "skip" and o.cursor not in o.key
                and all(k in self.columns for k in o.key))

    def _skip_current(self, raw: LightBatch, res: PassResult):
        """Count ``unchanged`` the records of a key-and-cursor batch whose stored version is
        already current (same key, same cursor, not written by this run, one record of its key in
        the batch, inside or below the window); the others come back fully read (or None)."""
        o = self.opts
        key = tuple(o.key)
        tbl = raw.table
        n = len(raw)
        ok = np.ones(n, bool)
        for k in key:
            col = tbl.column(k)
            if col.null_count:
                ok &= col.is_valid().to_numpy(zero_copy_only=False)
        col = tbl.column(o.cursor).combine_chunks()
        parsed = V.parse_column(col, self.kind, self.tz)
        ok &= parsed.valid
        window = self._window()
        places = D.place(parsed.values, ok, window)
        cand = ok & ((places == D.Place.IN) | (places == D.Place.BELOW))
        if cand.any():
            groups = key_groups(tbl, key, ok)
            cand &= np.bincount(groups)[groups] == 1
        idx = np.flatnonzero(cand)
        drop = np.zeros(n, bool)
        if len(idx):
            found = self._lookup(tbl, key, idx, parsed.values[idx])
            current = found.exists & (found.cursor == parsed.values[idx]) & (found.run != self.run_id)
            drop[idx[current]] = True
        if drop.any():
            res.counts.unchanged += int(drop.sum())
            cur = parsed.values[drop]
            m = int(cur.max())
            res.max_source = m if res.max_source is None else max(res.max_source, m)
            inside = drop & (places == D.Place.IN)
            if inside.any():
                cand_wm = int(parsed.values[inside].max())
                if res.candidate is None or cand_wm >= res.candidate:
                    res.candidate = cand_wm
                    j = int(np.flatnonzero(inside & (parsed.values == cand_wm))[0])
                    self._cand_naive = bool(parsed.naive[j])
        rest = np.flatnonzero(~drop)
        if not len(rest):
            return None
        return raw.expand(rest)

    def _check_csv_types(self, raw) -> None:
        """A CSV column's type is judged per batch; one that is a number in an earlier batch of
        this run and text (or another number) in a later one is text for the whole file, as one
        batch would have found. Only columns this run makes can still change type."""
        for f in raw.table.schema:
            if f.name in self.text_columns or (self.columns is not None and f.name in self.columns
                                               and f.name not in self._csv_types):
                continue
            t = "int" if pa.types.is_integer(f.type) else "real" if pa.types.is_floating(f.type) else \
                None if pa.types.is_null(f.type) else "text"
            if t is None:
                continue
            was = self._csv_types.setdefault(f.name, t)
            if was != t and was != "text":
                raise _CsvColumnIsText(f.name)

    def _check_fields(self, fields: set) -> None:
        """A key or cursor that no record of the source has is a usage error (a typo, a wrong
        column), not a run that quarantines every record."""
        if not fields:
            return
        o = self.opts
        for option, names in (("--key", o.key), ("--cursor", (o.cursor,))):
            for name in names:
                if name in fields:
                    continue
                alike = [f for f in sorted(fields) if f.lower() == name.lower()]
                hint = f"did you mean {option} {alike[0]}?" if alike else None
                shown = ", ".join(sorted(fields)[:20]) + (", …" if len(fields) > 20 else "")
                raise UsageError(f"{option} {name}: no record of {self.source.description} has that field "
                                 f"(its fields: {shown})", hint=hint)

    def _apply(self, p: Prepared, places: np.ndarray, window: D.Window, select: np.ndarray,
               res: PassResult, superseded: np.ndarray | None = None) -> None:
        o, t = self.opts, self.target
        key = tuple(o.key)
        tbl = p.table
        if not select.all():
            idx = np.flatnonzero(select)
            tbl = tbl.take(pa.array(idx))
            p = Prepared(p.raw, len(idx), p.cursor[idx], p.naive[idx], p.valid[idx],
                         [p.reasons[i] for i in idx], p.groups[idx],
                         None if p.is_delete is None else p.is_delete[idx], p.data_columns, p.new_columns,
                         p.kind, tbl, {k: v.take(pa.array(idx)) for k, v in p.stored.items()})
            places = places[idx]
            superseded = None if superseded is None else superseded[idx]
            first_records = p.raw.record_nos(idx)
        else:
            first_records = p.raw.record_nos(np.arange(p.n))

        # The table and its columns, made or widened as the data shows them.
        if p.valid.any():
            self._ensure_columns(p)

        # Which keys to look up: the winners among records the window examines.
        examined = D.needs_lookup(places, window)
        win = D.winners(p.groups, p.cursor, examined)
        need = np.flatnonzero(win)
        target = D.Target.empty(p.n)
        fresh = self._fresh_keys(tbl, key, need)
        if len(need) and self.columns is not None and not fresh:
            found = self._lookup(tbl, key, need, p.cursor[need])
            target.exists[need] = found.exists
            target.cursor[need] = found.cursor
            target.this_run[need] = found.run == self.run_id
        verdicts, late_applied = D.decide(places, p.cursor, p.groups, target, window,
                                          p.is_delete, o.soft_delete)
        if superseded is not None and superseded.any():
            verdicts[superseded] = D.Verdict.UNCHANGED
            late_applied = late_applied & ~superseded

        # Apply: upserts, deletes, quarantine.
        up = np.flatnonzero((verdicts == D.Verdict.INSERT) | (verdicts == D.Verdict.UPDATE))
        self._encode_early = len(up) * 4 >= p.n
        if len(up):
            t.upsert_arrow(self.table, self._rows_to_write(tbl, p, up), key, fresh=fresh)
            if o.soft_delete and p.is_delete is not None:
                res.counts.deleted += int(p.is_delete[up].sum())
        refreshed = 0
        if o.full_load and self.columns is not None:
            # A full load distrusts the cursor: a row whose cursor stayed the same is still
            # written, and the target's guard replaces it only where its content differs.
            same = ((verdicts == D.Verdict.UNCHANGED) & win & target.exists & ~target.this_run
                    & (p.cursor == target.cursor) & (places == D.Place.IN))
            if p.is_delete is not None:
                same &= ~p.is_delete
            idx = np.flatnonzero(same)
            if len(idx):
                t.refresh = True
                try:
                    t.upsert_arrow(self.table, self._rows_to_write(tbl, p, idx), key)
                finally:
                    t.refresh = False
                refreshed = len(idx) if t.last_written is None else int(t.last_written)
        dele = np.flatnonzero(verdicts == D.Verdict.DELETE)
        if len(dele):
            t.delete_keys(self.table, key, _key_values(tbl, key, dele))
        q = np.flatnonzero(np.isin(verdicts, (D.Verdict.LATE, D.Verdict.FUTURE, D.Verdict.REJECTED)))
        if len(q):
            self._quarantine(tbl, p, verdicts, places, window, q, first_records)
        if o.prune:
            seen = np.flatnonzero(_keys_present(tbl, key))
            if len(seen):
                t.prune_seen(key, _key_values(tbl, key, seen))

        # Counts and the watermark candidate.
        c = D.count(verdicts, late_applied, places)
        c["updated"] += refreshed
        c["unchanged"] -= refreshed
        for name, v in c.items():
            setattr(res.counts, name, getattr(res.counts, name) + v)
        cand = D.watermark_candidate(places, p.cursor, verdicts)
        if cand is not None:
            res.candidate = cand if res.candidate is None else max(res.candidate, cand)
            if p.naive.size:
                # Print the watermark back the way the newest record was written.
                j = int(np.flatnonzero((p.cursor == cand) & (places == D.Place.IN))[0])
                if res.candidate == cand:
                    self._cand_naive = bool(p.naive[j])
        late_mask = late_applied if self._late is not None else (verdicts == D.Verdict.LATE) | late_applied
        if late_mask.any():
            m = int(p.cursor[late_mask].min())
            res.min_late = m if res.min_late is None else min(res.min_late, m)

    def _lookup(self, tbl, key, idx, cursors):
        """What the target holds for the keys of rows ``idx`` (arriving with ``cursors``): its
        Arrow lookup where it has one, else the one with Python keys."""
        t = self.target
        take = None if len(idx) == tbl.num_rows else pa.array(idx)
        arrays = [tbl.column(k).combine_chunks() if take is None else tbl.column(k).take(take).combine_chunks()
                  for k in key]
        found = t.lookup_arrow(self.table, key, arrays, cursors, self.run_id)
        if found is None:
            found = t.lookup_versions(self.table, key, _key_values(tbl, key, idx), cursors, self.run_id)
        return found

    def _fresh_keys(self, tbl: pa.Table, key: tuple, need: np.ndarray) -> bool:
        """True when the target cannot hold any of these keys, so the lookup can be skipped.

        That is the case when the table was empty when this run began and the batch's
        integer keys all lie beyond every key this run has written so far (an export in key
        order, on a first load). Anything else is looked up.
        """
        if not self.empty_at_start or len(key) != 1 or not len(need):
            return False
        col = tbl.column(key[0])
        if not pa.types.is_integer(col.type):
            self.empty_at_start = False
            return False
        picked = col.take(pa.array(need))
        if picked.null_count:  # cannot happen (these records are valid); stop tracking, look up
            self.empty_at_start = False
            return False
        # Only this batch's winners (``need``) can be written, and all of them are tracked: a
        # null key elsewhere in the batch must not leave its written keys out of the range.
        vals = picked.to_numpy(zero_copy_only=False)
        lo, hi = int(vals.min()), int(vals.max())
        seen = self.written_range
        fresh = seen is None or lo > seen[1] or hi < seen[0]
        self.written_range = (lo, hi) if seen is None else (min(lo, seen[0]), max(hi, seen[1]))
        return fresh

    def _rows_to_write(self, tbl: pa.Table, p: Prepared, up: np.ndarray) -> pa.Table:
        """The rows to upsert as one Arrow table: the user's columns as stored (nested values as
        JSON text), then ``deleted_at`` with ``--soft-delete``, then the two hidden columns."""
        o = self.opts
        sub = tbl if len(up) == p.n else tbl.take(pa.array(up))
        names, arrays = [], []
        for c in sub.column_names:
            if c not in self.columns:
                continue  # null in every record so far: its column comes with its first value
            names.append(c)
            early = p.stored.get(c)  # made by the reader thread while the last batch was written
            if early is None:
                arrays.append(_storable(sub.column(c)))
            else:
                arrays.append(early if len(up) == p.n else early.take(pa.array(up)))
        if o.soft_delete:
            flags = p.is_delete[up] if p.is_delete is not None else np.zeros(len(up), bool)
            cur_text = _storable(sub.column(o.cursor)).cast(pa.string())
            names.append(DELETED_AT)
            arrays.append(pc.if_else(pa.array(flags), cur_text, pa.scalar(None, pa.string())))
        names += [CURSOR_COL, RUN_COL]
        arrays += [pa.array(p.cursor[up], pa.int64()), pa.array(np.full(len(up), self.run_id, np.int64))]
        return pa.Table.from_arrays(arrays, names=names)

    def _ensure_columns(self, p: Prepared) -> None:
        t, o = self.target, self.opts
        t.set_cursor(o.cursor, self.kind)
        new = dict(p.new_columns)
        if o.soft_delete and (self.columns is None or DELETED_AT not in self.columns):
            new.setdefault(DELETED_AT, "text")
        if self.columns is None:
            for k in o.key:
                if new.get(k) == "any":
                    new[k] = "text"
            t.create_table(self.table, new, tuple(o.key))
            self.columns = dict(new)
        elif new:
            t.add_columns(self.table, new)
            self.columns.update(new)
            self.new_columns_logged = getattr(self, "new_columns_logged", []) + list(new)
            log.info("added column(s) %s to %s", ", ".join(new), self.table)
        p.new_columns.clear()

    def _quarantine(self, tbl, p, verdicts, places, window, q, first_records) -> None:
        o = self.opts
        from .sources.files import _iso_columns  # typed timestamps as ISO text, nanoseconds kept
        records = _iso_columns(tbl.take(pa.array(q)), "").to_pylist() if tbl.num_columns else [{} for _ in q]
        rows = []
        for j, i in enumerate(q):
            v = D.Verdict(int(verdicts[i]))
            reason = D.QUARANTINE[v]
            if v == D.Verdict.REJECTED:
                detail = p.reasons[i]
                if self._first_reject is None:
                    self._first_reject = f"{p.raw.path}: record {int(first_records[i])}: {detail}"
            elif v == D.Verdict.FUTURE:
                detail = (f"cursor is past now + --max-future "
                          f"({V.format_value(window.future_limit, self.kind, True, self.tz)})")
            else:
                detail = (f"below the window ({V.format_value(window.lo, self.kind, self.state.naive, self.tz)})"
                          f" and not in the target")
            rec = records[j]
            row = p.raw.position(int(first_records[i]))
            for name, values in (p.raw.mixed | p.raw.sent).items():  # the value as it arrived
                if name in rec:
                    rec[name] = values[row]
            text = record_text(rec)
            keyv = [rec.get(k) for k in o.key] if isinstance(rec, dict) else None
            held = None
            if v == D.Verdict.LATE and self._late is not None:
                held = {}
                self._late.append((held, _key_values(tbl, o.key, np.array([i]))[0], int(p.cursor[i])))
            row_dict = {
                "stream": self.stream, "reason": reason, "detail": detail, "source": p.raw.path,
                "record_no": int(first_records[i]),
                "key": record_text(keyv),  # a key as sent, huge integers too
                "cursor": None if not isinstance(rec, dict) or rec.get(o.cursor) is None else str(rec.get(o.cursor)),
                "cursor_value": int(p.cursor[i]) if p.valid[i] else None,
                "record": text, "fingerprint": hashlib.sha1(text.encode()).hexdigest(), "run": self.run_id,
            }
            if held is not None:
                held.update(row_dict)  # held until the run has read every batch
            else:
                rows.append(row_dict)
        self.target.write_quarantine(rows)
        if self._late is not None and len(self._late) > LATE_HELD:
            self._settle_late(None)

    def _settle_late(self, res: PassResult | None) -> None:
        """Quarantine the held late records, except those a newer version of their key, applied
        later in this run, has superseded: those are ``unchanged``, as they would be had both
        versions come in one batch (SPEC §3.5, §8). With ``res`` None (too many held) the
        held ones are quarantined as they are, and the counts stay as decided."""
        held, self._late = self._late, ([] if res is None else None)
        if not held:
            return
        superseded = np.zeros(len(held), bool)
        if res is not None:
            # Of several late versions of one key (from different batches), the newest wins
            # (on a tie, the later one), as in one batch; the others are superseded.
            newest: dict = {}
            for j, (_, k, c) in enumerate(held):
                k = tuple(k) if isinstance(k, list) else k
                if k not in newest or c >= held[newest[k]][2]:
                    newest[k] = j
            superseded[:] = True
            superseded[list(newest.values())] = False
            if self.columns is not None:  # ... and so is one a newer version applied in this run holds
                found = self.target.lookup(self.table, tuple(self.opts.key), [k for _, k, _ in held])
                cursors = np.array([c for _, _, c in held], dtype=np.int64)
                superseded |= found.exists & (found.cursor >= cursors)
            n = int(superseded.sum())
            res.counts.late -= n
            res.counts.unchanged += n
        keep = [row for (row, _, _), s in zip(held, superseded) if not s]
        self.target.write_quarantine(keep)
        if res is not None:
            left = [c for (_, _, c), s in zip(held, superseded) if not s]
            if left:
                res.min_late = min(left) if res.min_late is None else min(res.min_late, min(left))
        else:
            self._late_min = min([c for _, _, c in held] + ([self._late_min] if self._late_min is not None else []))

    # --- the file manifest (SPEC §10) ------------------------------------------------------------
    def _select_files(self) -> None:
        """A folder or glob source reads only the files the stream's manifest does not hold at
        their listed version (all of them with ``--reread-files`` or ``--full-load``); files
        the manifest holds that are no longer listed are reported, never an error."""
        src, o = self.source, self.opts
        self.files = None
        if not getattr(src, "tracked", False):
            return
        known = self.target.read_files(self.stream)
        self.files = src.select(known, reread=o.reread_files or o.full_load)
        gone = self.files.vanished
        if gone:
            shown = ", ".join(gone[:3]) + (f" and {len(gone) - 3} more" if len(gone) > 3 else "")
            self.warnings.append(f"{len(gone)} file(s) loaded by earlier runs are no longer in "
                                 f"{src.description}: {shown} (their rows stay in the target; the file list "
                                 f"forgets them)")

    def _record_files(self) -> None:
        """Record the files this run read (and forget the vanished ones), in the transaction that
        commits the run's (or its last slice's) data."""
        if self.files is None:
            return
        self.target.write_files(self.stream, self.files.read, self.run_id)
        self.target.delete_files(self.stream, self.files.vanished)

    # --- the quality gate ----------------------------------------------------------------------
    def _check_quality(self, rejected: int, source_records: int) -> None:
        """``--max-rejected``: past the limit the run fails inside its transaction (nothing of it
        is committed), naming the count, the limit and the first rejected record."""
        limit = self.opts.max_rejected
        if limit is None or not limit.exceeded(rejected, source_records):
            return
        share = f" ({100 * rejected / source_records:.3g}%)" if source_records else ""
        first = f"; the first: {self._first_reject}" if self._first_reject else ""
        raise QualityError(
            f"{rejected} of {source_records} record(s){share} were rejected, more than --max-rejected "
            f"{limit.text}: nothing was committed{first}",
            rejected=rejected, source_records=source_records, limit=limit.text,
            hint="fix the source, or raise --max-rejected; --dry-run --details shows the counts")

    # --- state, history, summary -------------------------------------------------------------
    def _save_state(self, new_wm, res) -> None:
        s = self.state
        if new_wm is not None and new_wm != s.watermark and getattr(self, "_cand_naive", None) is not None:
            s.naive = self._cand_naive
        s.watermark = new_wm
        s.last_run = self.run_id
        s.assume_tz = s.assume_tz or "UTC"
        if s.kind is None and self.kind is not None:
            s.kind = self.kind
        self.target.write_state(s)

    def _history(self, index, started, res, new_wm, summary, lo_t, hi_t) -> None:
        c = res.counts
        self.target.write_history({
            "run_id": self.run_id, "window_index": index, "stream": self.stream, "started_at": started,
            "finished_at": _iso_now(), "mode": self.opts.mode + ("/window" if self.opts.window else ""),
            "outcome": "committed", "source_records": c.source_records, "loaded": c.loaded,
            "skipped": c.skipped, "inserted": c.inserted, "updated": c.updated, "unchanged": c.unchanged,
            "late": c.late, "late_applied": c.late_applied, "future": c.future,
            "below_window": c.below_window, "rejected": c.rejected, "deleted": c.deleted,
            "watermark_before": V.format_value(self.prev, self.kind, self.state.naive, self.tz),
            "watermark_after": V.format_value(new_wm, self.kind, self.state.naive, self.tz),
            "watermark_before_value": self.prev, "watermark_after_value": new_wm,
            "window_lo": lo_t, "window_hi": hi_t,
            "max_lateness": (_amount(self.prev - res.min_late, self.kind, option=True)
                             if res.min_late is not None and self.prev is not None else None),
            "detail": orjson.dumps({"new_columns": getattr(self, "new_columns_logged", []),
                                    "warnings": self.warnings, **self._files_detail()}).decode(),
            "duration_s": self._elapsed(),
        })

    def _files_detail(self) -> dict:
        files = getattr(self, "files", None)
        return {} if files is None else {"files": files.to_dict()}

    def _summary(self, res: PassResult, prev_text, new_wm, total, pruned) -> Summary:
        o = self.opts
        c = res.counts
        new_text = V.format_value(new_wm, self.kind, self.state.naive, self.tz)
        s = Summary(counts=c, previous_watermark=prev_text, new_watermark=new_text, total_in_target=total,
                    stream=self.stream, table=self.table, mode=o.mode, run_id=self.run_id,
                    dry_run=o.dry_run, warnings=self.warnings, pruned=pruned,
                    new_columns=getattr(self, "new_columns_logged", []),
                    files=self._files_detail().get("files"))
        fmt = lambda v: V.format_value(v, self.kind, self.state.naive, self.tz)  # noqa: E731
        if c.source_records == 0:
            s.stale_source = True
            if self.files is not None and not self.files.read:
                self.warnings.append(f"no new or changed file in {self.source.description} "
                                     f"({self.files.skipped} file(s) already loaded); the watermark stays at "
                                     f"{prev_text}")
            else:
                self.warnings.append(f"the source {self.source.description} is empty; the watermark stays at "
                                     f"{prev_text}")
        elif c.rejected == c.source_records:
            self.warnings.append(f"every record ({c.rejected}) was invalid and quarantined; the watermark stays at "
                                 f"{prev_text} (see `hiwater quarantine list`)")
        elif c.loaded == 0:
            s.stale_source = True
            self.warnings.append(
                f"every record was skipped: the source may be stale (newest source cursor "
                f"{fmt(res.max_source)}, watermark {prev_text})")
        if (res.max_source is not None and self.prev is not None and res.max_source < self.prev
                and o.mode == "incremental" and not getattr(self.source, "replay", False)):
            self.warnings.append(
                f"the newest record in the source ({fmt(res.max_source)}) is older than the watermark "
                f"({prev_text}): was the source truncated, or restored from an older copy?")
        if res.min_late is not None and self.prev is not None:
            behind = self.prev - res.min_late
            n_late = c.late + c.late_applied
            action = "quarantined" if o.on_late == "detect" else "applied"
            self.warnings.append(
                f"{n_late} late record(s) {action}: the worst was {_amount(behind, self.kind)} behind the "
                f"watermark; --lookback {_amount(behind, self.kind, option=True)} would have caught them all")
        if c.future:
            self.warnings.append(f"{c.future} record(s) with a cursor in the future were quarantined"
                                 f" and did not move the watermark")
        if c.rejected and c.rejected != c.source_records:
            self.warnings.append(f"{c.rejected} invalid record(s) were quarantined (see `hiwater quarantine list`)")
        return s


class _CsvColumnIsText(Exception):
    def __init__(self, column: str):
        super().__init__(column)
        self.column = column


class _KindChanged(Exception):
    """A later batch of a stream's first run shows a wider cursor kind than its first batch."""

    def __init__(self, kind: str, was: str, seen: str):
        super().__init__(kind)
        self.kind, self.was, self.seen = kind, was, seen


class _Rollback(Exception):
    def __init__(self, summary):
        super().__init__("dry run")
        self.summary = summary


def _amount(delta: int, kind: str | None, option: bool = False) -> str:
    """A cursor distance for people: ``2h15m``, ``45s``, ``3d``; a plain number for integer cursors."""
    if kind == V.INT:
        return str(delta)
    secs = -(-delta // 1_000_000) if option else delta // 1_000_000  # round up for a suggestion
    if secs <= 0:
        return "1s" if option else f"{delta / 1_000_000:g}s"
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if secs >= size:
            out += f"{secs // size}{unit}"
            secs %= size
    return out


def prefetch(batches, depth: int = 2, early=None):
    """Read the next batches in a background thread while this one is decided and written.

    Parsing (pyarrow, in C++) and SQLite both release the GIL for most of their work, so on
    two cores reading overlaps writing. At most ``depth`` batches wait, so memory stays
    bounded; an error in the reader is raised here, in order, after the batches before it.
    ``early(batch)``, if given, runs in the reader thread on each batch before it is handed on.
    """
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce():
        try:
            for b in batches:
                if early is not None:
                    early(b)
                while not stop.is_set():
                    try:
                        q.put(("batch", b), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", done))
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(("error", exc))

    t = threading.Thread(target=produce, name="hiwater-reader", daemon=True)
    t.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "batch":
                yield item
            elif kind == "error":
                raise item
            else:
                return
    finally:
        stop.set()
        while t.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            t.join(0.05)


def record_text(rec) -> str:
    """A quarantined record as JSON text, exactly as it arrived: NaN and ±Infinity stay
    (as the JSON extension tokens the replay reads back), datetimes as ISO text."""
    from .prepare import _py_non_finite
    if not _py_non_finite(rec):  # orjson would write NaN as null
        try:
            return orjson.dumps(rec, default=_json_default,
                                option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:  # an integer beyond 64 bits
            pass
    import json
    return json.dumps(rec, default=_json_default, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _json_default(v):
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    return str(v)


def _zone_name(name: str) -> str:
    return "UTC" if name.upper() in ("UTC", "Z") else name


def _iso_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _pylist(col, idx: np.ndarray) -> list:
    """The values of ``col`` at ``idx`` as Python values, in their stored form."""
    return _storable(col if len(idx) == len(col) else col.take(pa.array(idx))).to_pylist()


def _store_early(raw) -> None:
    """In the reader thread: nested values as JSON text (Arrow kernels, which leave the GIL
    to the writer), so the writer only picks rows. Best effort: a column that fails here is
    converted later in the usual place, where its error is reported."""
    tbl = raw.table
    for name, col in zip(tbl.column_names, tbl.columns):
        if _nested(col.type):
            try:
                raw.stored[name] = _storable(col)
            except Exception:  # noqa: BLE001 - reported later, on the writer's path
                pass


def _storable(arr) -> pa.Array:
    """A column as targets store it: nested values as JSON text, timestamps as ISO text."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if _nested(t):
        return to_json_text(arr)
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return pa.array([None if v is None else v.isoformat() for v in arr.to_pylist()], pa.string())
    return arr  # decimals stay exact: each target stores them in an exact type


def _nested(t: pa.DataType) -> bool:
    """Values targets keep as JSON text."""
    return pa.types.is_struct(t) or pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_map(t)


def _key_values(tbl: pa.Table, key: tuple, idx: np.ndarray) -> list:
    cols = [_pylist(tbl.column(k), idx) for k in key]
    if len(key) == 1:
        return cols[0]
    return [list(t) for t in zip(*cols)]


def _keys_present(tbl: pa.Table, key: tuple) -> np.ndarray:
    ok = np.ones(tbl.num_rows, bool)
    for k in key:
        if k not in tbl.column_names:
            return np.zeros(tbl.num_rows, bool)
        ok &= tbl.column(k).is_valid().to_numpy(zero_copy_only=False)
    return ok

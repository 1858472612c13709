"""One batch against the target: decide, then write, delete and quarantine what was decided.

:class:`Applier` holds what a run learns batch by batch and needs again in the next one: the
table's columns, the range of integer keys written into a table that was empty (lookups it
can skip), the late records held until the run has read every batch, whether nested values
are still worth encoding in the reader thread, and how the newest applied cursor was spelt.
The loader makes one per run (again on a restart) and drives it through each pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import decide as D
from . import report
from . import values as V
from .encode import pylist, storable, store_early
from .options import LoadOptions
from .prepare import Prepared, key_groups
from .sources.records import iso_columns
from .sources.lightjson import LightBatch
from .state import StreamState
from .summary import Counts
from .errors import UsageError
from .targets.base import CURSOR_COL, RUN_COL, Quarantined, Target, Transaction

log = logging.getLogger("hiwater")
LATE_HELD = 50_000  # late records held per run to see whether a later batch supersedes them
DELETED_AT = "deleted_at"


def table_columns(target: Target, table: str) -> tuple[dict | None, bool]:
    """The user columns of ``table`` (None: no such table yet), and whether it is empty."""
    info = target.table(table)
    if info is None:
        return None, True
    if not info.managed:
        raise UsageError(f"table {table!r} exists and was not made by hiwater",
                         hint="choose another --table, or drop that table")
    return dict(info.columns), not info.has_rows


@dataclass
class PassResult:
    """What one pass over the source found (the scan) or did (a writing pass)."""
    counts: Counts = field(default_factory=Counts)
    candidate: int | None = None
    max_source: int | None = None
    min_late: int | None = None
    slices: set = field(default_factory=set)  # the scan (write=False): the --window slices holding records
    records: int = 0   # the scan: records read
    invalid: int = 0   # the scan: records prepare already found invalid

    def see(self, cursor: np.ndarray, valid: np.ndarray, places: np.ndarray) -> None:
        """Note the newest valid cursor of a batch that is not in the future."""
        if valid.any():
            m = int(cursor[valid & (places != D.Place.FUTURE)].max(initial=np.iinfo(np.int64).min))
            if m != np.iinfo(np.int64).min:
                self.max_source = m if self.max_source is None else max(self.max_source, m)

    def merge(self, res: PassResult) -> None:
        """Add a ``--window`` slice's result to the run's."""
        self.counts.add(res.counts)
        if res.max_source is not None:
            self.max_source = max(self.max_source if self.max_source is not None else res.max_source,
                                  res.max_source)
        if res.min_late is not None:
            self.min_late = min(self.min_late if self.min_late is not None else res.min_late, res.min_late)
        if res.candidate is not None:
            self.candidate = max(self.candidate or res.candidate, res.candidate)


class Applier:
    """One run's batches, applied through the transaction of the pass (see the module's docstring)."""

    def __init__(self, opts: LoadOptions, *, table: str, stream: str, state: StreamState,
                 tz, columns: dict | None, empty_at_start: bool, first_reject: str | None = None):
        self.opts, self.table, self.stream = opts, table, stream
        self.tx: Transaction | None = None  # the pass's transaction (None: the scan of a --window run)
        self.state = state  # the cursor's kind, and how the stored watermark is printed
        self.tz = tz
        self.columns = columns  # the table's user columns (None: no table yet)
        # A table that is empty now can only hold what this run writes (see _fresh_keys).
        self.empty_at_start = empty_at_start
        self.written_range: tuple | None = None
        self.new_columns: list = []  # columns this run added to an existing table
        self.cand_naive: bool | None = None  # whether the newest applied cursor came without an offset
        self.first_reject = first_reject  # the first rejected record, for --max-rejected's message
        self.encode_early = True
        self.late: list | None = None  # late records held until the end of a one-transaction pass
        self.deletes: dict | None = {}  # while late records are held: key -> newest delete record's cursor
        self.late_min: int | None = None

    # --- a pass -----------------------------------------------------------------------------
    def begin_pass(self, tx: Transaction | None, hold_late: bool, keep_held: bool = False) -> None:
        """A pass applies its batches through ``tx`` (None: a scan, which writes nothing).
        Nested values are encoded for writing in the reader thread while most rows get
        written; a re-read that writes (almost) nothing stops paying for it. Late records are
        held (``hold_late``) until the run has applied every version of their keys: to the end
        of a run's only pass, or (``keep_held``, a ``--window`` slice) across the slices after
        the pass that found them."""
        self.tx = tx
        self.encode_early = True
        if not (keep_held and self.late is not None):
            self.late = [] if hold_late else None
            self.deletes = {}
        self.late_min = None

    def store_early(self, raw) -> None:
        """The reader thread's part (see :func:`hiwater.encode.store_early`), while it pays."""
        if self.encode_early:
            store_early(raw)

    def end_pass(self, res: PassResult, settle: bool = True) -> None:
        if self.late is not None and settle:
            self.settle_late(res)
        if self.late_min is not None:
            res.min_late = self.late_min if res.min_late is None else min(res.min_late, self.late_min)

    def _typed_in(self, p: Prepared, window: D.Window) -> np.ndarray:
        """--window: a record invalid only for a column's type (and in the window by its cursor)
        belongs to its slice, where the columns made by earlier slices judge it."""
        typed_in = np.zeros(p.n, bool)
        if self.opts.window is not None and not p.valid.all() and p.fixed_invalid is not None:
            typed_in = ~p.valid & ~p.fixed_invalid & (D.place(p.cursor, np.ones(p.n, bool), window) == D.Place.IN)
        return typed_in

    def scan(self, res: PassResult, raw, p: Prepared, places: np.ndarray, window: D.Window) -> None:
        """The scan of a ``--window`` run: count the records and the invalid ones, and note the
        slices that hold records; nothing is written."""
        o = self.opts
        typed_in = self._typed_in(p, window)
        res.records += p.n
        bad = np.flatnonzero(~p.valid)
        res.invalid += len(bad)
        if len(bad) and self.first_reject is None:
            self.first_reject = f"{raw.path}: record {int(raw.record_nos([int(bad[0])])[0])}: {p.reasons[int(bad[0])]}"
        inwin = (places == D.Place.IN) | typed_in
        if o.window is not None and inwin.any() and self.state.kind is not None:
            width = o.window.for_kind(self.state.kind, "--window")
            res.slices.update(np.unique(p.cursor[inwin] // width).tolist())

    # --- JSON Lines: key and cursor first -------------------------------------------------------
    def light_ok(self) -> bool:
        """Whether this pass may read JSON Lines key and cursor first (see sources/lightjson.py):
        the target holds the stream already, and no option needs every record in full."""
        o = self.opts
        return (self.state.kind is not None and self.columns is not None and not self.empty_at_start
                and not o.full_load and not o.prune and not o.strict and o.delete_field is None
                and o.on_late != "skip" and o.cursor not in o.key
                and all(k in self.columns for k in o.key))

    def skip_current(self, raw: LightBatch, res: PassResult, window: D.Window, run_id):
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
        parsed = V.parse_column(col, self.state.kind, self.tz)
        ok &= parsed.valid
        places = D.place(parsed.values, ok, window)
        cand = ok & ((places == D.Place.IN) | (places == D.Place.BELOW))
        if cand.any():
            groups = key_groups(tbl, key, ok)
            cand &= np.bincount(groups)[groups] == 1
        idx = np.flatnonzero(cand)
        drop = np.zeros(n, bool)
        if len(idx):
            found = self._lookup(tbl, key, idx, parsed.values[idx], run_id)
            current = found.exists & (found.cursor == parsed.values[idx]) & (found.run != run_id)
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
                    self.cand_naive = bool(parsed.naive[j])
        rest = np.flatnonzero(~drop)
        if not len(rest):
            return None
        return raw.expand(rest)

    # --- one batch ------------------------------------------------------------------------------
    def apply(self, p: Prepared, places: np.ndarray, window: D.Window, res: PassResult, run_id,
              part: tuple | None) -> bool:
        """Decide the records of ``p`` against the target and apply the verdicts: upserts,
        deletes, quarantine, prune keys; add the counts and the watermark candidate.

        ``part`` is a ``--window`` slice's ``(lo, hi, outside)``: the in-window records with a
        cursor in ``[lo, hi)``, and the records outside the window if ``outside``. False when
        the batch holds none of them."""
        o, tx = self.opts, self.tx
        select = np.ones(p.n, bool)
        superseded = None
        if part is not None:
            lo, hi, outside = part
            inwin = (places == D.Place.IN) | self._typed_in(p, window)
            in_slice = inwin & (p.cursor >= lo) & (p.cursor < hi)
            select = in_slice | (~inwin if outside else np.zeros(p.n, bool))
            if not select.any():
                return False
            # An older version below the window that a newer one of its key in this batch
            # supersedes is unchanged, also when the slice that applies the newer one comes
            # later (without slices, decide() sees both and says so itself).
            below = places == D.Place.BELOW
            if below.any() and o.on_late != "skip":
                superseded = below & ~D.winners(p.groups, p.cursor, D.needs_lookup(places, window))
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
            found = self._lookup(tbl, key, need, p.cursor[need], run_id)
            target.exists[need] = found.exists
            target.cursor[need] = found.cursor
            target.this_run[need] = found.run == run_id
        verdicts, late_applied = D.decide(places, p.cursor, p.groups, target, window,
                                          p.is_delete, o.soft_delete)
        if superseded is not None and superseded.any():
            verdicts[superseded] = D.Verdict.UNCHANGED
            late_applied = late_applied & ~superseded
        if p.is_delete is not None and self.late is not None:
            # (a delete that is itself late is quarantined, not applied: it supersedes nothing,
            # itself least of all)
            applied = p.is_delete & examined & p.valid & (verdicts != D.Verdict.LATE)
            self._note_deletes(tbl, key, np.flatnonzero(applied), p.cursor)

        # Apply: upserts, deletes, quarantine.
        up = np.flatnonzero(np.isin(verdicts, D.WRITE))
        self.encode_early = len(up) * 4 >= p.n
        if len(up):
            tx.write(self._rows_to_write(tbl, p, up, run_id), mode="fresh" if fresh else "upsert")
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
                written = tx.write(self._rows_to_write(tbl, p, idx, run_id), mode="refresh")
                refreshed = len(idx) if written is None else int(written)
        dele = np.flatnonzero(verdicts == D.Verdict.DELETE)
        if len(dele):
            tx.delete(key_arrays(tbl, key, dele))
        q = np.flatnonzero(np.isin(verdicts, (D.Verdict.LATE, D.Verdict.FUTURE, D.Verdict.REJECTED)))
        if len(q):
            self._quarantine(tbl, p, verdicts, window, q, first_records, run_id)
        if o.prune:
            seen = np.flatnonzero(keys_present(tbl, key))
            if len(seen):
                tx.seen(key_arrays(tbl, key, seen))

        # Counts and the watermark candidate.
        c = D.count(verdicts, late_applied, places)
        c["updated"] += refreshed
        c["unchanged"] -= refreshed
        c["late_applied"] -= D.late_superseded(verdicts, places, target, window)
        for name, v in c.items():
            setattr(res.counts, name, getattr(res.counts, name) + v)
        cand = D.watermark_candidate(places, p.cursor, verdicts)
        if cand is not None:
            res.candidate = cand if res.candidate is None else max(res.candidate, cand)
            if p.naive.size:
                # Print the watermark back the way the newest record was written.
                j = int(np.flatnonzero((p.cursor == cand) & (places == D.Place.IN))[0])
                if res.candidate == cand:
                    self.cand_naive = bool(p.naive[j])
        late_mask = late_applied if self.late is not None else (verdicts == D.Verdict.LATE) | late_applied
        if late_mask.any():
            m = int(p.cursor[late_mask].min())
            res.min_late = m if res.min_late is None else min(res.min_late, m)
        return True

    def _note_deletes(self, tbl: pa.Table, key: tuple, idx: np.ndarray, cursor: np.ndarray) -> None:
        """Remember the run's delete records (key, newest cursor) while late records are held: a
        delete leaves no row to look up, yet it supersedes an older late version of its key in
        another batch, as it would in one (up to LATE_HELD keys; past that, as decided)."""
        if self.deletes is None or not len(idx):
            return
        for k, c in zip(key_values(tbl, key, idx), cursor[idx].tolist()):
            k = tuple(k) if isinstance(k, list) else k
            if c > self.deletes.get(k, c - 1):
                self.deletes[k] = c
        if len(self.deletes) > LATE_HELD:
            self.deletes = None

    def _lookup(self, tbl, key, idx, cursors, run_id):
        """What the target holds for the keys of rows ``idx`` (arriving with ``cursors``)."""
        return self.tx.held(key_arrays(tbl, key, idx), cursors)

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

    def _rows_to_write(self, tbl: pa.Table, p: Prepared, up: np.ndarray, run_id) -> pa.Table:
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
                arrays.append(storable(sub.column(c)))
            else:
                arrays.append(early if len(up) == p.n else early.take(pa.array(up)))
        # A column the table has and no record of this batch carries is null in the new version,
        # as it is for a record without it in a batch where others carry it: the stored row is
        # the record, never a mix of two versions (whatever the batch's other records hold).
        for c in self.columns:
            if c not in names and not (o.soft_delete and c == DELETED_AT):
                names.append(c)
                arrays.append(pa.nulls(len(up)))
        if o.soft_delete:
            flags = p.is_delete[up] if p.is_delete is not None else np.zeros(len(up), bool)
            cur_text = storable(sub.column(o.cursor)).cast(pa.string())
            names.append(DELETED_AT)
            arrays.append(pc.if_else(pa.array(flags), cur_text, pa.scalar(None, pa.string())))
        names += [CURSOR_COL, RUN_COL]
        arrays += [pa.array(p.cursor[up], pa.int64()), pa.array(np.full(len(up), run_id, np.int64))]
        return pa.Table.from_arrays(arrays, names=names)

    def _ensure_columns(self, p: Prepared) -> None:
        o = self.opts
        new = dict(p.new_columns)
        if o.soft_delete and (self.columns is None or DELETED_AT not in self.columns):
            new.setdefault(DELETED_AT, "text")
        if self.columns is None:
            for k in o.key:
                if new.get(k) == "any":
                    new[k] = "text"
            self.tx.evolve(new, (o.cursor, self.state.kind))
            self.columns = dict(new)
            p.new_columns.clear()
            return
        self.tx.evolve(new, (o.cursor, self.state.kind))  # (no new column: it only names the cursor)
        if new:
            self.columns.update(new)
            self.new_columns = self.new_columns + list(new)
            log.info("added column(s) %s to %s", ", ".join(new), self.table)
        p.new_columns.clear()

    # --- quarantine and late holding --------------------------------------------------------------
    def _quarantine(self, tbl, p, verdicts, window, q, first_records, run_id) -> None:
        o = self.opts
        kind, naive = self.state.kind, self.state.naive
        # typed timestamps as ISO text, nanoseconds kept
        records = iso_columns(tbl.take(pa.array(q)), "").to_pylist() if tbl.num_columns else [{} for _ in q]
        rows = []
        for j, i in enumerate(q):
            v = D.Verdict(int(verdicts[i]))
            if v == D.Verdict.REJECTED and self.first_reject is None:
                self.first_reject = f"{p.raw.path}: record {int(first_records[i])}: {p.reasons[i]}"
            rec = records[j]
            row = p.raw.position(int(first_records[i]))
            for name, values in (p.raw.mixed | p.raw.sent).items():  # the value as it arrived
                if name in rec:
                    rec[name] = values[row]
            row_dict = report.quarantine_row(
                rec, stream=self.stream, reason=D.QUARANTINE[v],
                detail=report.quarantine_detail(v, p.reasons[i], window, kind, naive, self.tz),
                source=p.raw.path, record_no=int(first_records[i]), key=o.key, cursor=o.cursor,
                cursor_value=int(p.cursor[i]) if p.valid[i] else None, run_id=run_id,
                sent=None if p.raw.record_texts is None else p.raw.record_texts[row])
            if v == D.Verdict.LATE and self.late is not None:
                # held until the run has read every batch
                self.late.append((row_dict, key_values(tbl, o.key, np.array([i]))[0], int(p.cursor[i])))
            else:
                rows.append(row_dict)
        self.tx.record(Quarantined(rows))
        if self.late is not None and len(self.late) > LATE_HELD:
            self.settle_late(None)

    def settle_late(self, res: PassResult | None) -> None:
        """Quarantine the held late records, except those a newer version of their key, applied
        later in this run, has superseded: those are ``unchanged``, as they would be had both
        versions come in one batch (SPEC §3.5, §8). With ``res`` None (too many held) the
        held ones are quarantined as they are, and the counts stay as decided."""
        held, self.late = self.late, ([] if res is None else None)
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
                found = self.tx.held(_key_columns([k for _, k, _ in held], len(self.opts.key)))
                cursors = np.array([c for _, _, c in held], dtype=np.int64)
                superseded |= found.exists & (found.cursor >= cursors)
            if self.deletes:  # ... or a delete record of its key, as new or newer, in this run
                superseded |= np.array([self.deletes.get(tuple(k) if isinstance(k, list) else k, c - 1) >= c
                                        for _, k, c in held], bool)
            n = int(superseded.sum())
            res.counts.late -= n
            res.counts.unchanged += n
        keep = [row for (row, _, _), s in zip(held, superseded) if not s]
        self.tx.record(Quarantined(keep))
        if res is not None:
            left = [c for (_, _, c), s in zip(held, superseded) if not s]
            if left:
                res.min_late = min(left) if res.min_late is None else min(res.min_late, min(left))
        else:
            self.late_min = min([c for _, _, c in held] + ([self.late_min] if self.late_min is not None else []))


def key_values(tbl: pa.Table, key: tuple, idx: np.ndarray) -> list:
    """The keys of rows ``idx`` as Python values in their stored form (a list per row for a
    composite key)."""
    cols = [pylist(tbl.column(k), idx) for k in key]
    if len(key) == 1:
        return cols[0]
    return [list(t) for t in zip(*cols)]


def keys_present(tbl: pa.Table, key: tuple) -> np.ndarray:
    """The rows whose key parts are all there (not null, not missing)."""
    ok = np.ones(tbl.num_rows, bool)
    for k in key:
        if k not in tbl.column_names:
            return np.zeros(tbl.num_rows, bool)
        ok &= tbl.column(k).is_valid().to_numpy(zero_copy_only=False)
    return ok


def key_arrays(tbl: pa.Table, key: tuple, idx: np.ndarray) -> list:
    """The keys of rows ``idx`` as one Arrow array per key column (what a transaction takes)."""
    take = None if len(idx) == tbl.num_rows else pa.array(idx)
    return [tbl.column(k).combine_chunks() if take is None else tbl.column(k).take(take).combine_chunks()
            for k in key]


def _key_columns(keys: list, width: int) -> list:
    """Keys held as Python values (a list per composite key) as one Arrow array per key column;
    a column whose values have no common type is compared as text (as a text key column stores them)."""
    cols = [keys] if width == 1 else [[k[i] for k in keys] for i in range(width)]
    out = []
    for values in cols:
        try:
            out.append(pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            out.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
    return out

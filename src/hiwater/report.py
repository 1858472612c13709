"""What a run tells: its summary and warnings, its history rows, its quarantine rows.

Pure builders: the loader and :mod:`hiwater.apply` compute, these put the results into the
words and rows people and the admin commands read (SPEC §7). The loader records them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time

import orjson

from . import decide as D
from . import values as V
from .encode import record_text
from .errors import HiwaterError, QualityError, UsageError
from .options import LoadOptions
from .state import StreamState
from .summary import Summary
from .urls import scrub

# The warning of a run that skipped every record past a watermark (a bucketed stream rewrites its
# figures with the stream's own: hiwater.buckets).
STALE = "every record was skipped: the source may be stale ("


def amount(delta: int, kind: str | None, option: bool = False) -> str:
    """A cursor distance for people: ``2h15m``, ``45s``, ``3d``; a plain number for integer cursors."""
    if kind == V.INT:
        return str(delta)
    per_s = 1_000_000 * V.scale(kind)
    secs = -(-delta // per_s) if option else delta // per_s  # round up for a suggestion
    if secs <= 0:
        return "1s" if option else f"{delta / per_s:g}s"
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if secs >= size:
            out += f"{secs // size}{unit}"
            secs %= size
    return out


def iso_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def elapsed(t0: float) -> float:
    """Seconds since ``t0`` (a ``time.monotonic()`` reading), to the millisecond."""
    return round(time.monotonic() - t0, 3)


def error_text(exc: BaseException, urls) -> str:
    """The error as one line, with any password of the source's or target's URL masked."""
    text = str(exc) if isinstance(exc, HiwaterError) else f"{type(exc).__name__}: {exc}"
    for url in urls:
        if isinstance(url, str):
            text = scrub(text, url)
    return text


def files_detail(files) -> dict:
    """A tracked file source's selection for the history's detail (nothing for other sources)."""
    return {} if files is None else {"files": files.to_dict()}


def _mode(opts: LoadOptions) -> str:
    return opts.mode + ("/window" if opts.window else "")


def finished_fields(summary: Summary) -> dict:
    """The ``run_finished`` event's fields: the detailed summary without its warnings (each has
    its own event) and windows (each slice had its own)."""
    data = summary.to_dict(details=True)
    data.pop("warnings", None)
    data.pop("windows", None)
    return data


def failed_row(exc: BaseException, *, run_id, index: int, stream: str, opts: LoadOptions, started_at,
               prev, left, kind, naive: bool, tz, duration: float, error: str) -> dict:
    """The history row of a failed run: the watermark it found (``prev``) and left (``left``)."""
    return {
        "run_id": run_id, "window_index": index, "stream": stream,
        "started_at": started_at or iso_now(), "finished_at": iso_now(),
        "mode": _mode(opts), "outcome": "failed",
        "watermark_before": V.format_value(prev, kind, naive, tz),
        "watermark_after": V.format_value(left, kind, naive, tz),
        "watermark_before_value": prev, "watermark_after_value": left,
        "duration_s": duration, "error": error,
        "detail": orjson.dumps({"error": type(exc).__name__, "exit_code": getattr(exc, "exit_code", 1)}).decode(),
    }


def history_row(res, state: StreamState, tz, *, stream: str, run_id, index: int, started, opts: LoadOptions,
                prev, new_wm, lo_t, hi_t, new_columns: list, warnings: list, files, t0: float,
                error: str | None = None) -> dict:
    """The history row of a committed run (or ``--window`` slice ``index``) of ``state``'s stream
    (its cursor's kind, how its watermark is printed); outcome ``failed`` with the ``error`` of a
    run that committed what it quarantined but failed (see :func:`nothing_valid`)."""
    c = res.counts
    kind, naive = state.kind, state.naive
    return {
        "run_id": run_id, "window_index": index, "stream": stream, "started_at": started,
        "finished_at": iso_now(), "mode": _mode(opts),
        "outcome": "committed" if error is None else "failed", "source_records": c.source_records, "loaded": c.loaded,
        "skipped": c.skipped, "inserted": c.inserted, "updated": c.updated, "unchanged": c.unchanged,
        "late": c.late, "late_applied": c.late_applied, "future": c.future,
        "below_window": c.below_window, "rejected": c.rejected, "deleted": c.deleted,
        "watermark_before": V.format_value(prev, kind, naive, tz),
        "watermark_after": V.format_value(new_wm, kind, naive, tz),
        "watermark_before_value": prev, "watermark_after_value": new_wm,
        "window_lo": lo_t, "window_hi": hi_t,
        "max_lateness": (amount(prev - res.min_late, kind, option=True)
                         if res.min_late is not None and prev is not None else None),
        "detail": orjson.dumps({"new_columns": new_columns, "warnings": warnings, **files_detail(files)}).decode(),
        "duration_s": elapsed(t0), **({} if error is None else {"error": error}),
    }


def summary(res, state: StreamState, tz, *, opts: LoadOptions, stream: str, table: str, run_id, source, files,
            prev, prev_text, new_wm, total: int, pruned: int, warnings: list, new_columns: list) -> Summary:
    """The run's summary; what it shows that needs a word is appended to ``warnings`` (the
    summary's own list)."""
    o = opts
    kind, naive = state.kind, state.naive
    c = res.counts
    new_text = V.format_value(new_wm, kind, naive, tz)
    s = Summary(counts=c, previous_watermark=prev_text, new_watermark=new_text, total_in_target=total,
                stream=stream, table=table, mode=o.mode, run_id=run_id,
                dry_run=o.dry_run, warnings=warnings, pruned=pruned,
                new_columns=new_columns, files=files_detail(files).get("files"),
                csv=getattr(source, "csv_dialects", None))
    fmt = lambda v: V.format_value(v, kind, naive, tz)  # noqa: E731
    # (a full load sets the watermark from the data: from no usable record, it has none)
    stays = (f"the watermark stays at {prev_text}" if new_text == prev_text else
             f"a full load of no usable record leaves no watermark (it was {prev_text}): the next run reads "
             f"everything")
    if c.source_records == 0:
        s.stale_source = True
        if files is not None and not files.read:
            warnings.append(f"no new or changed file in {source.description} "
                            f"({files.skipped} file(s) already loaded); {stays}")
        else:
            warnings.append(f"the source {source.description} is empty; {stays}")
    elif c.rejected == c.source_records:
        warnings.append(f"every record ({c.rejected}) was invalid and quarantined; {stays} "
                        f"(see `hiwater quarantine list`)")
    elif c.loaded == 0 and prev is None and c.unchanged == c.source_records - c.rejected:
        # No watermark yet, yet the table holds every record: its rows were loaded before the
        # stream's state was reset or forgotten (`--rebucket`), or by another stream. Nothing stale.
        warnings.append("every record was skipped: the table already holds each one at its cursor (the stream "
                        "had no watermark yet: its state was reset or forgotten, or another stream loaded them)")
    elif c.loaded == 0:
        s.stale_source = True
        warnings.append(
            f"{STALE}newest source cursor "
            f"{fmt(res.max_source)}, watermark {prev_text})")
    if (res.max_source is not None and prev is not None and res.max_source < prev
            and o.mode == "incremental" and not source.replay):
        warnings.append(
            f"the newest record in the source ({fmt(res.max_source)}) is older than the watermark "
            f"({prev_text}): was the source truncated, or restored from an older copy?")
    if res.min_late is not None and prev is not None:
        behind = prev - res.min_late
        n_late = c.late + c.late_applied
        action = "quarantined" if o.on_late == "detect" else "applied"
        warnings.append(
            f"{n_late} late record(s) {action}: the worst was {amount(behind, kind)} behind the "
            f"watermark; --lookback {amount(behind, kind, option=True)} would have caught them all")
    if c.future:
        warnings.append(f"{c.future} record(s) with a cursor in the future were quarantined"
                        f" and did not move the watermark")
    if c.rejected and c.rejected != c.source_records:
        warnings.append(f"{c.rejected} invalid record(s) were quarantined (see `hiwater quarantine list`)")
    return s


def start_ignored(start, state: StreamState, tz) -> list:
    """The warning for ``--start`` on a stream that has state, when it would have mattered (the
    watermark is below it, or there is none); a start the watermark has passed says nothing, so a
    project file's ``start`` is quiet once the stream is under way."""
    if state.watermark is not None and state.kind is not None \
            and V.parse_bound(start, state.kind, tz, "--start")[0] <= state.watermark:
        return []
    return [f"--start {start} is ignored: the stream {state.stream!r} has state (watermark "
            f"{state.watermark_text()}); `hiwater state set` moves a watermark"]


def quality_gate(limit, rejected: int, source_records: int, first_reject: str | None) -> None:
    """``--max-rejected`` (``limit``): past it the run fails inside its transaction (nothing of
    it is committed), naming the count, the limit and the first rejected record."""
    if limit is None or not limit.exceeded(rejected, source_records):
        return
    share = f" ({100 * rejected / source_records:.3g}%)" if source_records else ""
    first = f"; the first: {first_reject}" if first_reject else ""
    raise QualityError(
        f"{rejected} of {source_records} record(s){share} were rejected, more than --max-rejected "
        f"{limit.text}: nothing was committed{first}",
        rejected=rejected, source_records=source_records, limit=limit.text,
        hint="fix the source, or raise --max-rejected; --dry-run --details shows the counts")


def nothing_valid(limit, rejected: int, source_records: int, first_reject: str | None, *, replay: bool = False):
    """The error of a run that read records and rejected every one (None for any other run):
    nothing valid arrived, so the run failed (exit 1), although it commits its quarantine (the
    records are kept, to be fixed and replayed) and leaves the watermark where it was. Only
    ``--max-rejected 100%`` accepts such a run (docs/concepts.md). A quarantine replay is never
    one: its records were judged when they arrived, and one that finds them still invalid
    leaves them where they were."""
    if replay or source_records == 0 or rejected < source_records or (limit is not None and limit.percent == 100):
        return None
    first = f"; the first: {first_reject}" if first_reject else ""
    return QualityError(
        f"every record ({rejected}) was rejected: nothing valid arrived and the run failed; the records "
        f"are kept in the quarantine and the watermark does not move{first}",
        rejected=rejected, source_records=source_records, limit="100%",
        hint="`hiwater quarantine list` shows why; fix the source and load it again (or `hiwater quarantine "
             "replay`), or accept such runs with --max-rejected 100%")


def future_watermark(max_future, prev, prev_text, kind, now: int, tz) -> str | None:
    """The warning for a stored watermark past now + ``--max-future`` (None when it is not)."""
    if prev is None or kind not in V.TIME_KINDS or max_future is None \
            or prev <= now * V.scale(kind) + max_future.for_kind(kind, "--max-future"):
        return None
    return (f"the stored watermark {prev_text} is in the future (now is "
            f"{V.format_value(now, V.TIMESTAMP, False, tz)}): records older than it are "
            f"treated as late; check the source's clock, then `hiwater state set` or `state rewind`")


def failure_info(exc: BaseException, error: str) -> dict:
    """The ``run_failed`` event's fields: the error's own, with its text as ``error_message``."""
    if isinstance(exc, HiwaterError):
        info = exc.to_dict()
    else:
        info = {"error": type(exc).__name__, "message": str(exc), "exit_code": 1, "retryable": False}
    info.pop("message", None)
    info["error_message"] = error
    return info


def kind_changed(cursor: str, was: str, seen: str) -> UsageError:
    """The error for a cursor kind that widens after the first batch of a source that cannot
    be read again."""
    return UsageError(f"the cursor {cursor!r} holds {seen} values after a "
                      f"first batch of {was} values; this source cannot be read twice",
                      hint="load it from a file, or put a record showing the kind first")


def prune_empty(description: str, table: str, stream: str, cli_flags: str) -> HiwaterError:
    """The error for ``--prune`` on a source without records (it would empty the table)."""
    return HiwaterError(f"the source {description} has no records: --prune would delete "
                        f"every row of {table!r}; nothing was committed",
                        hint="check the export; to empty the table on purpose, "
                             f"`hiwater stream drop {stream} --table{cli_flags}`")


def slice_entry(index: int, lo_t, hi_t, counts, watermark) -> dict:
    """A committed ``--window`` slice, as the summary's ``windows`` and the event show it."""
    return {"window": index, "from": lo_t, "to": hi_t, "loaded": counts.loaded, "skipped": counts.skipped,
            "watermark": watermark}


def vanished_files(gone: list, description: str) -> str:
    """The warning for files earlier runs loaded that the source no longer lists."""
    shown = ", ".join(gone[:3]) + (f" and {len(gone) - 3} more" if len(gone) > 3 else "")
    return (f"{len(gone)} file(s) loaded by earlier runs are no longer in "
            f"{description}: {shown} (their rows stay in the target; the file list "
            f"forgets them)")


def files_left(n: int, description: str) -> str:
    """The warning for files holding records a bounded run left for a later run."""
    return (f"{n} file(s) of {description} hold records outside --since/--until, left for a later run: "
            f"they are not marked read, and the next run opens them again")


def quarantine_detail(verdict: D.Verdict, reason, window: D.Window, kind, naive: bool, tz) -> str:
    """Why a record is quarantined, in words: its invalid ``reason``, or where its cursor lies."""
    if verdict == D.Verdict.REJECTED:
        return reason
    if verdict == D.Verdict.FUTURE:
        return f"cursor is past now + --max-future ({V.format_value(window.future_limit, kind, True, tz)})"
    return f"below the window ({V.format_value(window.lo, kind, naive, tz)}) and not in the target"


def quarantine_row(rec, *, stream: str, reason: str, detail: str, source, record_no: int, key: tuple,
                   cursor: str, cursor_value, run_id, sent: str | None = None) -> dict:
    """A quarantine row for record ``rec`` (its values as they arrived): ``sent`` is its text as it
    arrived, where the source sent text (SPEC §8: ``1e400`` stays ``1e400``); else ``rec`` as JSON."""
    text = record_text(rec) if sent is None else sent
    keyv = [rec.get(k) for k in key] if isinstance(rec, dict) else None
    return {
        "stream": stream, "reason": reason, "detail": detail, "source": source,
        "record_no": record_no,
        "key": record_text(keyv),  # a key as sent, huge integers too
        "cursor": None if not isinstance(rec, dict) or rec.get(cursor) is None else str(rec.get(cursor)),
        "cursor_value": cursor_value,
        "record": text, "fingerprint": hashlib.sha1(text.encode()).hexdigest(), "run": run_id,
    }

"""What a run tells the world while it works: events on the ``logging`` logger ``hiwater``.

Every event is a log record on the logger ``hiwater`` with two extra attributes,
``hiwater_event`` (its name) and ``hiwater_fields`` (a dict of plain values), so an
orchestrator's task log shows them with no set-up, and a handler can print them as
text or as one JSON object per line (``hiwater --log-format json``).

Events of a load (each carries ``run``, a random id shared by every event of one run,
``stream`` and, once the target has numbered the run, ``run_id``):

=================  =======  ============================================================
event              level    fields
=================  =======  ============================================================
run_started        INFO     table, target, source, mode
slice_committed    INFO     window, from, to, loaded, skipped, watermark (``--window``)
warning            WARNING  (the message: a stale source, late records, ...)
run_finished       INFO     the summary's counts, watermarks, duration_s, dry_run
run_failed         ERROR    error, error_message, exit_code, retryable, duration_s
=================  =======  ============================================================

``hiwater run`` adds ``pipeline_started`` / ``pipeline_finished`` (INFO), and the CLI
writes ``error`` (ERROR) for the error it exits with.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import sys
from contextlib import contextmanager

import orjson

log = logging.getLogger("hiwater")
_muted: contextvars.ContextVar[bool] = contextvars.ContextVar("hiwater_events_muted", default=False)
FORMATS = ("text", "json")


def emit(_event: str, _message: str, *, level: int = logging.INFO, **fields) -> None:
    """Log one event (nothing while :func:`muted`)."""
    if _muted.get() or not log.isEnabledFor(level):
        return
    log.log(level, "%s", _message, extra={"hiwater_event": _event, "hiwater_fields": fields})


@contextmanager
def muted():
    """No events inside (the simulator runs hundreds of loads whose warnings are its data)."""
    token = _muted.set(True)
    try:
        yield
    finally:
        _muted.reset(token)


def iso_time(created: float) -> str:
    """A ``time.time()`` value as the ``ts`` of a JSON event (UTC, milliseconds, ``Z``)."""
    return dt.datetime.fromtimestamp(created, dt.timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts``, ``level``, ``event``, ``message``, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": iso_time(record.created), "level": record.levelname.lower(),
               "event": getattr(record, "hiwater_event", "log"), "message": record.getMessage()}
        for k, v in getattr(record, "hiwater_fields", {}).items():
            out.setdefault(k, v)
        if record.exc_info and record.exc_info[1] is not None:
            out.setdefault("exception", f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}")
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """``warning: …`` / ``error: …`` / ``hiwater: …``; with ``with_stream`` the stream's name
    in brackets after the prefix (``hiwater run`` prints several streams' lines)."""

    def __init__(self, with_stream: bool = False):
        super().__init__()
        self.with_stream = with_stream

    def format(self, record: logging.LogRecord) -> str:
        prefix = "error" if record.levelno >= logging.ERROR else \
            "warning" if record.levelno >= logging.WARNING else "hiwater"
        stream = getattr(record, "hiwater_fields", {}).get("stream") if self.with_stream else None
        return f"{prefix}: [{stream}] {record.getMessage()}" if stream else f"{prefix}: {record.getMessage()}"


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is when a record comes (tests swap it), one line per record,
    in one write (lines of parallel workers sharing a pipe do not interleave)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record) + "\n"
            sys.stderr.write(text)
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never break a run
            self.handleError(record)


class _TextOnly(logging.Filter):
    """Text mode: the CLI prints a failed run's error itself (one line), so ``run_failed`` is left
    out; so are records of other loggers' INFO noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "hiwater_event", None) != "run_failed"


_installed: logging.Handler | None = None


def configure(fmt: str = "text", *, verbose: bool = False, with_stream: bool = False) -> logging.Handler:
    """Print the ``hiwater`` logger's records on stderr, as ``text`` or ``json`` (the CLI calls this;
    a library user configures ``logging`` as they like instead). Replaces the handler an earlier
    call installed."""
    global _installed
    if fmt not in FORMATS:
        from .errors import UsageError
        raise UsageError(f"--log-format {fmt!r}: choose text or json")
    if _installed is not None:
        log.removeHandler(_installed)
    handler = _StderrHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
        level = logging.DEBUG if verbose else logging.INFO
    else:
        handler.setFormatter(TextFormatter(with_stream))
        handler.addFilter(_TextOnly())
        level = logging.INFO if verbose else logging.WARNING
    handler.setLevel(level)
    log.addHandler(handler)
    log.setLevel(min(level, logging.INFO) if fmt == "json" else level)
    _installed = handler
    return handler


def current() -> tuple[str, bool, bool] | None:
    """How :func:`configure` was last called (``hiwater run`` hands it to its worker processes)."""
    if _installed is None:
        return None
    f = _installed.formatter
    if isinstance(f, JsonFormatter):
        return "json", _installed.level <= logging.DEBUG, False
    return "text", _installed.level <= logging.INFO, bool(getattr(f, "with_stream", False))

"""The ``hiwater`` command: a thin mirror of :mod:`hiwater.api`.

Each command calls one library function; its flags are that function's keyword
arguments. Errors become exit codes here, and only here:

- 0: done
- 1: the load failed and nothing of it was committed (with ``--window``: nothing of
  the failed slice; earlier slices stand and a rerun resumes); ``hiwater run``: a stream
  failed (the others committed); ``hiwater check``: a stream is past ``--error-after`` (or, with
  ``--verified``, its last verify differed, is too old or never ran); ``hiwater verify``: it differs;
  ``hiwater status``: a project target did not answer (its streams' rows say ``unreachable``)
- 2: bad usage or configuration

Warnings and progress go to stderr through the ``hiwater`` logger (:mod:`hiwater.events`):
``warning: …`` lines, or one JSON object per event with ``--log-format json``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys

import click

from . import api, events
from .clioptions import Commands, json_option, project_option, streams_argument, target_options, wide_option
from .errors import HiwaterError, UsageError
from .terminal import RunBoard, print_rows, print_verify, progress_bar

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


EPILOG = """\b
Shell completion (bash, zsh, fish), e.g. in ~/.bashrc:
  eval "$(_HIWATER_COMPLETE=bash_source hiwater)"
NO_COLOR=1 turns colour off."""


@click.group(cls=Commands, invoke_without_command=True, epilog=EPILOG,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="hiwater")
@click.option("-v", "--verbose", is_flag=True, help="Log what each step does on stderr.")
@click.option("--log-format", type=click.Choice(events.FORMATS), default="text", show_default=True,
              help="Warnings and events on stderr: text lines, or one JSON object per event (run started, "
                   "slice committed, warning, run finished with counts and duration, error).")
@click.pass_context
def cli(ctx, verbose, log_format):
    """hiwater: incremental loading with a high-water mark that does not lose records."""
    events.configure(log_format, verbose=verbose)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
        ctx.exit(0)


@cli.command()
@click.option("--input", "-i", "input", metavar="PATH",
              help="A file, a folder, a glob, or - for standard input (or read a database with --source).")
@click.option("--source", "source_url", metavar="URL",
              help="Read a database instead: postgresql://…, mysql://…, sqlite:///…, duckdb:///…, with the "
                   "window pushed down (default: $HIWATER_SOURCE_URL when no --input).")
@click.option("--source-table", metavar="TABLE", help="With --source: the table to read (or schema.table).")
@click.option("--query", metavar="SQL", help="With --source: a SELECT to read instead of a table.")
@click.option("--output", "-o", metavar="PATH", help="Also write the summary JSON to this file.")
@target_options
@click.option("--format", "format", type=click.Choice(["json", "jsonl", "csv", "parquet"]),
              help="Input format (default: from the extension, else sniffed).")
@click.option("--csv-delimiter", metavar="CHAR", help="CSV: the field delimiter ('\\t' or tab for a tab; default: "
              "sniffed per file among , ; tab |, shown by --details).")
@click.option("--csv-quote", metavar="CHAR", help="CSV: the quote character.  [default: \"]")
@click.option("--encoding", metavar="CODEC", help="CSV: the files' text encoding, any Python codec (latin-1, "
              "cp1252, utf-16...); default UTF-8, and a file that is not is refused.")
@click.option("--table", help="Target table (default: the input file's name; 'records' for standard input, and for "
              "a folder or glob with a warning: two folders loaded without --table share it and its watermark).")
@click.option("--stream", help="Stream name for the state (default: the table).")
@click.option("--key", default="id", show_default=True, help="Primary key column(s), comma-separated.")
@click.option("--cursor", default="modified_at", show_default=True,
              help="The column that grows when a record changes: timestamp, date or integer.")
@click.option("--full-load", is_flag=True, help="Ignore the watermark, examine every record, then set "
              "the watermark from the data.")
@click.option("--reread-files", is_flag=True, help="A folder or glob: read every file again, ignoring the "
              "list of files earlier runs applied (the list is rewritten).")
@click.option("--prune", is_flag=True, help="With --full-load: delete target rows whose key is absent "
              "from the source.")
@click.option("--lookback", metavar="DURATION", help="Widen the window below the watermark (15m, 2h, 1d, "
              "PT15M; an integer for integer cursors).")
@click.option("--boundary", type=click.Choice(["inclusive", "exclusive"]), default="inclusive",
              show_default=True, help="Whether a record at the watermark is examined (inclusive) or "
              "not (exclusive, the textbook >).")
@click.option("--on-late", type=click.Choice(["detect", "skip", "load"]), default="detect",
              show_default=True, help="Records below the window: detect (look up; quarantine the new "
              "ones), skip (count as below_window), load (apply them).")
@click.option("--max-future", default="1d", show_default=True, metavar="DURATION",
              help="Quarantine cursors later than now + this; 'none' turns the guard off.")
@click.option("--strict", is_flag=True, help="Fail the whole run on the first invalid record.")
@click.option("--max-rejected", metavar="N|P%", help="Fail the run (nothing committed, exit 1) when more than N "
              "records, or P% of them, are rejected as invalid.")
@click.option("--window", metavar="DURATION", help="Apply in consecutive cursor slices, each committed "
              "with its own watermark.")
@click.option("--since", metavar="VALUE", help="Bounded backfill: only records with cursor >= VALUE.")
@click.option("--until", metavar="VALUE", help="Bounded backfill: only records with cursor < VALUE; the "
              "watermark never passes it.")
@click.option("--start", metavar="VALUE", help="A new stream's first watermark: records with cursor < VALUE "
              "are not loaded (counted below_window, not late). Ignored once the stream has state.")
@click.option("--settle", metavar="DURATION", help="The watermark never passes now - DURATION.")
@click.option("--dry-run", is_flag=True, help="Decide and print the summary; write nothing.")
@click.option("--assume-tz", metavar="ZONE", help="Time zone of naive timestamps (default: the stream's own; UTC "
              "for a new stream).")
@click.option("--delete-field", metavar="NAME", help="A record whose NAME is true deletes its key.")
@click.option("--soft-delete", is_flag=True, help="With --delete-field: keep the row, set deleted_at.")
@click.option("--lock-timeout", default="30s", show_default=True, metavar="DURATION",
              help="How long to wait for another run of the same stream.")
@click.option("--batch-size", default=65536, show_default=True, type=int, help="Records per batch.")
@click.option("--now", metavar="TIMESTAMP", help="Pretend it is this instant (for tests and replays).")
@click.option("--buckets", default=1, show_default=True, type=click.IntRange(1, 4096),
              help="Split the stream by a hash of its key into N buckets, each a stream NAME#B/N with its "
                   "own watermark and commit, run in parallel (docs/scale-out.md).")
@click.option("--executor", metavar="local|dask|dask:ADDRESS",
              help="How --buckets run: local (a process pool, the default), dask (a Dask LocalCluster) or "
                   "dask:tcp://HOST:8786 (an existing Dask cluster; needs hiwater[dask]).")
@click.option("--rebucket", is_flag=True, help="Change the stream's bucket count to --buckets: forget its old "
              "buckets (the table stays) and re-read the whole source; safe to repeat (docs/scale-out.md).")
@click.option("--forget-quarantine", is_flag=True, help="With --rebucket: forget the old buckets' quarantined records.")
@click.option("--details", is_flag=True, help="Print every count, not just the six-key summary.")
@click.option("--progress", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True,
              help="A progress bar on stderr (rows, rate, ETA); auto: only when stderr is a terminal.")
def load(input, output, details, **kw):
    """Load new and changed records from INPUT into the target."""
    if output:
        _check_writable(output)  # before the load: a failing exit must mean nothing was committed
    with progress_bar(kw.pop("progress")) as progress:
        summary = api.load(input, progress=progress, **kw)  # its warnings go to stderr as it logs them
    data = summary.to_dict(details=True) if details else summary.short()
    text = json.dumps(data, indent=2)
    if output:
        try:
            with open(output, "w") as f:
                f.write(text + "\n")
        except OSError as exc:
            raise UsageError(f"--output {output}: {exc.strerror}") from None
    click.echo(text)


def _check_writable(path: str) -> None:
    """``--output`` must be writable before anything is loaded."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"--output {path}: the folder {folder} does not exist; nothing was loaded")
    if os.path.isdir(path):
        raise UsageError(f"--output {path}: is a folder; nothing was loaded")
    if not os.access(path if os.path.exists(path) else folder, os.W_OK):
        raise UsageError(f"--output {path}: not writable; nothing was loaded")


@cli.group()
def state():
    """Inspect and repair a stream's watermark."""


@state.command("show")
@target_options
@click.option("--stream", help="One stream (default: all).")
@json_option
def state_show(as_json, **kw):
    """Show each stream's watermark and settings."""
    rows = api.state_show(**kw)
    print_rows(rows, as_json, ["stream", "table", "key", "cursor", "kind", "watermark", "last_run"])


@state.command("set")
@target_options
@click.option("--stream", required=True)
@click.argument("value")
@json_option
def state_set(as_json, **kw):
    """Set a stream's watermark to VALUE (or 'null')."""
    print_rows([api.state_set(**kw)], as_json, ["stream", "watermark", "kind"])


@state.command("reset")
@target_options
@click.option("--stream", required=True)
@json_option
def state_reset(as_json, **kw):
    """Forget a stream's watermark: the next run examines everything."""
    print_rows([api.state_reset(**kw)], as_json, ["stream", "watermark", "kind"])


@state.command("rewind")
@target_options
@click.option("--stream", required=True)
@click.option("--to-run", "to_run", required=True, type=int, help="Put the watermark back to before run N.")
@json_option
def state_rewind(as_json, **kw):
    """Put the watermark back to where it stood before run N."""
    print_rows([api.state_rewind(**kw)], as_json, ["stream", "watermark", "kind"])


@cli.group()
def stream():
    """Manage whole streams."""


@stream.command("drop")
@target_options
@click.argument("stream")
@click.option("--table", "table", is_flag=True, help="Also drop the stream's data table (its rows are deleted).")
@json_option
def stream_drop(as_json, **kw):
    """Forget STREAM (state, history, quarantine) so it can start over; --table drops its data too.

    Run ids are never reused within a target: a reload into a kept table finds its rows unchanged."""
    print_rows([api.stream_drop(**kw)], as_json, ["stream", "table", "table_dropped"])


@cli.command()
@target_options
@click.option("--stream", help="One stream (default: all).")
@click.option("--limit", type=int, help="Only the last N rows.")
@json_option
@wide_option
def history(as_json, wide, **kw):
    """One row per run and per committed window."""
    rows = api.history(**kw)
    print_rows(rows, as_json, ["run_id", "window_index", "stream", "finished_at", "mode", "outcome",
                                "source_records", "inserted", "updated", "unchanged", "late", "future",
                                "rejected", "watermark_before", "watermark_after", "duration_s", "error"],
                optional=["watermark_before", "window_index", "mode", "unchanged", "late", "future", "updated",
                          "source_records", "duration_s", "finished_at", "inserted", "rejected"],
                whole=["stream", "finished_at", "watermark_before", "watermark_after"], wide=wide)


@cli.group()
def quarantine():
    """Records a run did not apply, and why."""


@quarantine.command("list")
@target_options
@click.option("--stream")
@click.option("--reason", type=click.Choice(["invalid", "future", "late"]))
@click.option("--limit", type=int)
@json_option
@wide_option
def quarantine_list(as_json, wide, **kw):
    """List quarantined records."""
    rows = api.quarantine_list(**kw)
    print_rows(rows, as_json, ["id", "stream", "reason", "detail", "source", "record_no", "key", "cursor",
                                "first_run", "last_run", "seen"],
                optional=["seen", "first_run", "last_run", "record_no", "source"], whole=["stream", "cursor"], wide=wide)


@quarantine.command("replay")
@target_options
@click.option("--stream", required=True)
@click.option("--reason", type=click.Choice(["invalid", "future", "late"]))
@click.option("--on-late", type=click.Choice(["detect", "skip", "load"]), default="load", show_default=True)
@click.option("--max-future", default="1d", show_default=True, metavar="DURATION")
@click.option("--now", metavar="TIMESTAMP")
@click.option("--delete-field", metavar="NAME", help="As the stream's loads give it: a record whose NAME is true "
              "deletes its key (a replayed late delete deletes, it does not load as a row).")
@click.option("--soft-delete", is_flag=True, help="With --delete-field: keep the row, set deleted_at.")
def quarantine_replay(**kw):
    """Run quarantined records through the loader again; replayed ones leave the quarantine."""
    summary = api.quarantine_replay(**kw)
    click.echo(json.dumps(summary.to_dict(details=True), indent=2))


@cli.command("run")
@streams_argument
@project_option
@click.option("--jobs", "-j", default=1, show_default=True, type=click.IntRange(min=1),
              help="Streams loaded at once, each in its own process (streams into one SQLite or DuckDB file "
                   "still run one after another).")
@click.option("--fail-fast", is_flag=True, help="Start no further stream once one has failed.")
@click.option("--dry-run", is_flag=True, help="Decide and report every stream; write nothing.")
@json_option
@click.option("--progress", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True,
              help="One line per stream on stderr (waiting, running with its rows, done or failed); auto: only "
                   "when stderr is a terminal, where the lines update in place.")
def run_cmd(streams, as_json, progress, **kw):
    """Load the project's streams (all, or each STREAM named): one summary per stream and a total.

    Each stream commits on its own; exit 1 when any failed (the others still committed). After Ctrl-C it
    says which streams committed."""
    setup = events.current()
    if setup is not None and setup[0] == "text":
        events.configure("text", verbose=setup[1], with_stream=True)  # name the stream on each line
    names = list(streams) or [r["stream"] for r in api.validate(project=kw["project"])]
    board = RunBoard(names, progress)
    try:
        with board:
            result = api.run(list(streams), raise_on_failure=False, on_start=board.start, on_result=board.result,
                             progress=board.rows, **kw)
    except KeyboardInterrupt:
        click.echo(board.interrupted(), err=True)
        raise
    for r in result.streams:
        if r.error is not None and (setup is None or setup[0] == "text"):
            click.echo(f"error: [{r.stream}] {r.error}", err=True)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        rows = []
        for r in result.streams:
            d = r.summary.to_dict() if r.summary is not None else {}
            rows.append({"stream": r.stream, "status": r.status, "source_records": d.get("source_records"),
                         "loaded": d.get("loaded"), "skipped": d.get("skipped"), "rejected": d.get("rejected"),
                         "watermark": d.get("new_watermark"), "duration_s": r.duration_s})
        t = result.total()
        rows.append({"stream": "total", "status": f"{t['ok']}/{t['streams']} ok", "source_records": t["source_records"],
                     "loaded": t["loaded"], "skipped": t["skipped"], "rejected": t["rejected"],
                     "duration_s": t["duration_s"]})
        print_rows(rows, False, ["stream", "status", "source_records", "loaded", "skipped", "rejected",
                                  "watermark", "duration_s"])
    if not result.ok:
        raise click.exceptions.Exit(EXIT_FAILED)


@cli.command("status")
@streams_argument
@project_option
@target_options
@click.option("--now", metavar="TIMESTAMP", help="Pretend it is this instant (for tests and replays).")
@json_option
@wide_option
def status_cmd(streams, as_json, wide, **kw):
    """Every stream of the project (or of the target --db/--target): watermark, data age (now - watermark),
    load age (since the latest successful run), the latest run, the quarantine size and the last verify.

    A project target that does not answer marks each of its streams 'unreachable' (with the error) and
    the command exits 1 after printing every row."""
    rows = api.status(list(streams), **kw)
    cols = ["stream", "watermark", "data_age", "load_age", "last_outcome", "last_loaded",
            "last_rejected", "last_duration_s", "quarantined", "verified", "last_error"]
    if any("lag" in r for r in rows):  # a bucketed stream: each bucket's lag behind its most advanced bucket
        cols.insert(2, "lag")
    print_rows(rows, as_json, cols, optional=["verified", "last_duration_s", "last_rejected", "lag", "data_age",
                                              "last_loaded", "quarantined", "load_age"],
                whole=["stream", "watermark"], wide=wide)
    if any(r["last_outcome"] == api.UNREACHABLE for r in rows):
        raise click.exceptions.Exit(EXIT_FAILED)


@cli.command("check")
@streams_argument
@project_option
@target_options
@click.option("--warn-after", metavar="DURATION", help="Warn about a stream older than this (default: the "
              "project file's warn-after).")
@click.option("--error-after", metavar="DURATION", help="Fail (exit 1) when a stream is older than this "
              "(default: the project file's error-after).")
@click.option("--by", type=click.Choice(["load", "data"]), default="load", show_default=True,
              help="Judge the load age (since the latest successful run) or the data age (now - watermark).")
@click.option("--verified", metavar="MAX_AGE", help="Also fail a stream whose last `hiwater verify` differed, "
              "is older than MAX_AGE (1d, 12h), or never ran.")
@click.option("--now", metavar="TIMESTAMP", help="Pretend it is this instant (for tests and replays).")
@json_option
def check_cmd(streams, as_json, **kw):
    """Freshness gate for a monitoring cron: each stream's verdict (ok, warn, error); exit 1 when any stream
    is past --error-after (or, with --verified, not verified equal within MAX_AGE)."""
    rows = api.check(list(streams), **kw)
    for r in rows:
        if r.get("verify_problem"):
            events.emit("verified", f"[{r['stream']}] {r['verify_problem']}", level=logging.ERROR, **r)
        fresh = r.get("freshness", r["verdict"])  # with --verified, "verdict" also judges the verify
        if fresh not in (None, "ok"):
            limit = r["error_after"] if fresh == "error" else r["warn_after"]
            age = (f"{r['by']} age {r['age']}" if r["age"] is not None
                   else "target unreachable" if r["last_outcome"] == api.UNREACHABLE else "never loaded")
            events.emit("freshness", f"[{r['stream']}] {age}, past {fresh}-after {limit}",
                        level=logging.ERROR if fresh == "error" else logging.WARNING, **r)
    print_rows(rows, as_json, ["stream", "verdict", "by", "age", "warn_after", "error_after", "watermark",
                                "last_outcome"] + (["verified"] if kw.get("verified") else []))
    if any(r["verdict"] == "error" for r in rows):
        raise click.exceptions.Exit(EXIT_FAILED)


@cli.command("validate")
@project_option
@click.option("--connect", is_flag=True, help="Also open each stream's target and source (the files exist, the "
              "databases answer, the table and its key and cursor columns exist); nothing is written.")
@json_option
def validate_cmd(as_json, **kw):
    """Check the project file (keys, values, ${VAR}s, option conflicts); exit 2 on the first problem."""
    rows = api.validate(**kw)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
    else:
        shown = [{"stream": r["stream"], "table": r["table"],
                  "source": r.get("input") or " ".join(filter(None, (r.get("source_url"), r.get("source_table")))),
                  "target": r.get("target") or r.get("db"),
                  "problems": "; ".join(f"{p['where']}: {p['message']}" for p in r["problems"]) or "ok"}
                 for r in rows]
        print_rows(shown, False, ["stream", "table", "source", "target", "problems"])
    codes = [p["exit_code"] for r in rows for p in r["problems"]]
    if codes:
        raise click.exceptions.Exit(max(codes))


@cli.command("ui")
@project_option
@target_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any other than 127.0.0.1/localhost needs --token.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free one).")
@click.option("--token", envvar="HIWATER_UI_TOKEN", metavar="TOKEN",
              help="Require this token on every request (Authorization: Bearer TOKEN, or open ?token=TOKEN once). "
                   "Default: $HIWATER_UI_TOKEN.")
@click.option("--allow-actions", is_flag=True, help="Allow replaying quarantined records from the page (POST, "
              "same origin, needs --token).")
def ui_cmd(**kw):
    """Serve a status page (streams, charts per stream, quarantine), a JSON API and /metrics from the
    target's own state, history and quarantine (docs/ui.md)."""
    from .ui import serve
    serve(**kw)


@cli.command("verify")
@streams_argument
@project_option
@target_options
@click.option("--input", "-i", "input", metavar="PATH", help="The stream's source: a file, folder or glob.")
@click.option("--source", "source_url", metavar="URL", help="The stream's source: a database URL.")
@click.option("--source-table", metavar="TABLE", help="With --source: the table (default: the stream's table).")
@click.option("--query", metavar="SQL", help="With --source: a SELECT to read instead of a table.")
@click.option("--format", "format", type=click.Choice(["json", "jsonl", "csv", "parquet"]),
              help="With --input: the file format (default: from the extension).")
@click.option("--by", metavar="DURATION|N", help="Window size: 1d, 6h, … (an integer for integer cursors). "
              "Default: a round size giving about 32 windows.")
@click.option("--since", metavar="VALUE", help="Check only cursors >= VALUE.")
@click.option("--until", metavar="VALUE", help="Check only cursors <= VALUE (default: the watermark).")
@click.option("--content", is_flag=True, help="Also compare every column, not only (key, cursor).")
@click.option("--repair", is_flag=True, help="Reload the windows that differ through the loader, then verify "
              "them again.")
@click.option("--prune-extra", is_flag=True, help="With --repair: delete keys the target holds and the source "
              "does not.")
@json_option
def verify_cmd(streams, as_json, **kw):
    """Prove, window by window of the cursor, that each stream's target holds what its source holds up to
    the watermark; name missing, extra and stale keys. Exit 0 equal (with --repair: equal once
    repaired), 1 different, 2 bad input."""
    results = api.verify(list(streams), **kw)
    if as_json:
        click.echo(json.dumps(results, indent=2, default=str))
    else:
        print_verify(results)
    if any(not r["equal"] and not r.get("repaired") for r in results):  # (--repair: what it left)
        raise click.exceptions.Exit(EXIT_FAILED)


def _json_logs(argv) -> bool:
    """Whether ``--log-format json`` was asked for (known even when parsing failed)."""
    args = list(sys.argv[1:] if argv is None else argv)
    for i, a in enumerate(args):
        if a == "--log-format=json" or (a == "--log-format" and args[i + 1:i + 2] == ["json"]):
            return True
    return False


def _fail(argv, message: str, code: int, err: BaseException | None = None) -> int:
    """The error the CLI exits with: one ``error:`` line, or one JSON ``error`` event."""
    if _json_logs(argv):
        info = err.to_dict() if isinstance(err, HiwaterError) else {
            "error": type(err).__name__ if err is not None else "Interrupted", "exit_code": code, "retryable": False}
        info.update(message=message, exit_code=code)
        line = {"ts": events.iso_time(__import__("time").time()), "level": "error", "event": "error", **info}
        click.echo(json.dumps(line, default=str, separators=(",", ":")), err=True)
    else:
        click.echo(f"error: {message}", err=True)
    return code


def main(argv=None) -> int:
    """Entry point: run the CLI and map every error to one stderr line and an exit code."""
    interrupted = "interrupted; nothing of the interrupted transaction was committed"
    try:
        code = cli.main(args=argv, prog_name="hiwater", standalone_mode=False)
        return code if isinstance(code, int) else EXIT_OK  # a command's click Exit(code) comes back here
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        return _fail(argv, interrupted, EXIT_FAILED)
    except click.UsageError as exc:
        return _fail(argv, exc.format_message(), EXIT_USAGE, exc)
    except HiwaterError as exc:
        return _fail(argv, str(exc), exc.exit_code, exc)
    except KeyboardInterrupt:
        return _fail(argv, interrupted, EXIT_FAILED)
    except Exception as exc:  # a bug: still one line, and the traceback on request
        if os.environ.get("HIWATER_DEBUG"):
            raise
        return _fail(argv, f"internal error: {type(exc).__name__}: {exc} (set HIWATER_DEBUG=1 for the "
                           f"traceback, and please report it)", EXIT_FAILED, exc)


def _pyarrow_without_pandas() -> None:
    """The first time pyarrow is handed a Python list it imports pandas, when installed, only to
    ask whether the list is a pandas object: about 0.2 s of every command. The command line never
    gives pyarrow a pandas object, so its check runs once here with pandas hidden, and pyarrow
    remembers the answer. ``import pandas`` itself still works afterwards; a program calling the
    library in-process (where a DataFrame is a valid source) never comes through here."""
    if "pandas" in sys.modules:
        return
    hide = _HidePandas()
    sys.meta_path.insert(0, hide)  # for the probe, pandas looks not installed
    try:
        import pyarrow as pa
        pa.array([0])
    except Exception:  # noqa: BLE001 - a speed-up only; pyarrow decides for itself later
        pass
    finally:
        sys.meta_path.remove(hide)


class _HidePandas:
    def find_spec(self, name, path=None, target=None):
        if name == "pandas":
            raise ModuleNotFoundError("No module named 'pandas'", name=name)
        return None


def run() -> None:
    _pyarrow_without_pandas()
    # Quiet on `| head`: only the command-line process takes the default SIGPIPE. A program that
    # calls main() in-process (the tests, an orchestrator) keeps Python's own handling, or a
    # write to a closed socket anywhere in it would kill it silently (exit 141).
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    code = main()
    if "deltalake" in sys.modules:
        # delta-rs's background threads can abort the interpreter's teardown ("terminate called
        # without an active exception", exit 134: delta-io/delta-rs#2184). The exit code is part
        # of the contract: once the output is flushed, end the process with the code decided.
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()

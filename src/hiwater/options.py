"""Load options: one typed record, validated once, before any input is read.

The CLI builds a :class:`LoadOptions` from its flags and the Python API from its
keyword arguments, so both check the same conflicts with the same sentences.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from .durations import Duration, parse_duration
from .errors import UsageError
from .values import EPOCH, parse_bound, parse_iso, zone

BOUNDARIES = ("inclusive", "exclusive")
ON_LATE = ("detect", "skip", "load")
FORMATS = ("json", "jsonl", "csv", "parquet")
EXECUTORS = ("local", "dask")


@dataclass(frozen=True)
class RejectLimit:
    """``--max-rejected N`` (records) or ``P%`` (of the run's source records): a run that rejects
    more fails, and nothing of it is committed."""

    text: str
    count: int | None = None
    percent: float | None = None

    @classmethod
    def parse(cls, value) -> "RejectLimit":
        if isinstance(value, RejectLimit):
            return value
        if isinstance(value, bool):
            raise UsageError(f"--max-rejected {value!r}: give a number of records or a percentage")
        if isinstance(value, int):
            text = str(value)
        else:
            text = str(value).strip()
        try:
            if text.endswith("%"):
                pct = float(text[:-1])
                if not 0 <= pct <= 100:
                    raise ValueError
                return cls(text, percent=pct)
            n = int(text)
            if n < 0:
                raise ValueError
            return cls(text, count=n)
        except ValueError:
            raise UsageError(f"--max-rejected {text!r}: give a number of records (0 or more) or a "
                             f"percentage (0% to 100%)", hint="for example 0, 100 or 2.5%") from None

    def exceeded(self, rejected: int, source_records: int) -> bool:
        if self.count is not None:
            return rejected > self.count
        return source_records > 0 and rejected * 100 > self.percent * source_records


@dataclass
class LoadOptions:
    key: tuple = ("id",)
    cursor: str = "modified_at"
    table: str | None = None
    stream: str | None = None
    format: str | None = None
    full_load: bool = False
    reread_files: bool = False  # a folder/glob source: ignore the file manifest for this run
    prune: bool = False
    lookback: Duration | None = None
    boundary: str = "inclusive"
    on_late: str = "detect"
    max_future: Duration | None = field(default_factory=lambda: parse_duration("1d", "--max-future"))
    strict: bool = False
    window: Duration | None = None
    since: object = None
    until: object = None
    start: object = None  # a new stream's first watermark (ignored once the stream has state)
    csv_delimiter: str | None = None  # None: sniffed per file (hiwater.sources.csvfile)
    csv_quote: str = '"'
    encoding: str | None = None  # a Python codec for CSV files; None: UTF-8
    settle: Duration | None = None
    dry_run: bool = False
    assume_tz: str | None = None  # None: the stream's own (UTC for a new stream)
    delete_field: str | None = None
    soft_delete: bool = False
    lock_timeout: Duration = field(default_factory=lambda: parse_duration("30s", "--lock-timeout"))
    batch_size: int = 65_536
    now: dt.datetime | None = None
    max_rejected: RejectLimit | None = None
    buckets: int = 1              # split the stream into N key-hash buckets (hiwater.keyhash)
    executor: object = None       # how buckets run: local | dask | dask:ADDRESS (or a distributed.Client)
    rebucket: bool = False        # change the stream's bucket count to `buckets` first (hiwater.rebucket)
    forget_quarantine: bool = False  # with rebucket: the old buckets' quarantined records may be forgotten

    @classmethod
    def build(cls, **kw) -> "LoadOptions":
        """Normalise loose values (strings, lists) and check every conflict."""
        key = kw.get("key", ("id",))
        if isinstance(key, str):
            key = tuple(k.strip() for k in key.split(",") if k.strip())
        kw["key"] = tuple(key)
        for name in ("lookback", "window", "settle", "lock_timeout"):
            if kw.get(name) is not None:
                kw[name] = parse_duration(kw[name], "--" + name.replace("_", "-"))
        if kw.get("max_rejected") is not None:
            kw["max_rejected"] = RejectLimit.parse(kw["max_rejected"])
        if "max_future" in kw:
            mf = kw["max_future"]
            kw["max_future"] = None if mf is None or str(mf).lower() == "none" else parse_duration(mf, "--max-future")
        if kw.get("csv_delimiter") in ("\\t", "tab", "TAB"):
            kw["csv_delimiter"] = "\t"
        now = kw.get("now")
        if isinstance(now, str):
            try:
                us, naive = parse_iso(now.strip(), dt.timezone.utc)
            except ValueError:
                raise UsageError(f"--now {now!r}: not an ISO-8601 timestamp") from None
            now = EPOCH + dt.timedelta(microseconds=us)
        if now is not None and now.tzinfo is None:
            now = now.replace(tzinfo=dt.timezone.utc)
        kw["now"] = now
        unknown = set(kw) - set(cls.__dataclass_fields__)
        if unknown:
            import difflib
            close = {u: m[0] for u in sorted(unknown)
                     if (m := difflib.get_close_matches(u, list(cls.__dataclass_fields__), 1))}
            hint = None
            if len(unknown) == 1 and close:
                hint = f"did you mean {next(iter(close.values()))}?"
            elif close:
                hint = "did you mean " + ", ".join(f"{m} for {u}" for u, m in close.items()) + "?"
            raise UsageError(f"unknown option(s): {', '.join(sorted(unknown))}", hint=hint)
        opts = cls(**{k: v for k, v in kw.items() if v is not None or k in ("max_future", "now")})
        opts.check()
        return opts

    def check(self) -> None:
        if not self.key or any(not k for k in self.key):
            raise UsageError("--key: give at least one column name")
        if len(set(self.key)) != len(self.key):
            raise UsageError(f"--key {','.join(self.key)}: a column is named twice")
        if not self.cursor:
            raise UsageError("--cursor: give a column name")
        if self.cursor in self.key and self.key != (self.cursor,):
            raise UsageError(f"--cursor {self.cursor}: the cursor can be the whole --key (an append-only id) "
                             f"but not one part of a composite key")
        if self.boundary not in BOUNDARIES:
            raise UsageError(f"--boundary {self.boundary!r}: choose inclusive or exclusive")
        if self.on_late not in ON_LATE:
            raise UsageError(f"--on-late {self.on_late!r}: choose detect, skip or load")
        if self.format is not None and self.format not in FORMATS:
            raise UsageError(f"--format {self.format!r}: choose json, jsonl, csv or parquet")
        if self.prune and not self.full_load:
            raise UsageError("--prune needs --full-load: only a full read of the source can tell which keys are gone")
        if self.soft_delete and not self.delete_field:
            raise UsageError("--soft-delete needs --delete-field NAME")
        if self.delete_field and (self.delete_field in self.key or self.delete_field == self.cursor):
            raise UsageError(f"--delete-field {self.delete_field}: cannot be the key or the cursor")
        if self.full_load and (self.since is not None or self.until is not None):
            raise UsageError("--full-load cannot be combined with --since/--until: a full load reads everything")
        if self.start is not None:
            if self.full_load or self.since is not None:
                raise UsageError("--start cannot be combined with --full-load or --since: --start gives a new "
                                 "stream its first watermark, they choose the records to read themselves")
            parse_bound(self.start, None, zone("UTC"), "--start")  # the kind is checked once known
        self.check_csv()
        if self.full_load and self.lookback is not None:
            raise UsageError("--full-load cannot be combined with --lookback: a full load has no window")
        if self.assume_tz is not None:  # without it the stream's own zone decides (the loader checks)
            self.check_range(self.assume_tz, None)
        if self.window is not None and (self.window.micros or 0) <= 0 and (self.window.units or 0) <= 0:
            raise UsageError(f"--window {self.window.text!r}: must be greater than zero")
        if self.window is not None and self.prune:
            raise UsageError("--window cannot be combined with --prune: pruning needs the whole source in one transaction")
        if isinstance(self.buckets, bool) or not isinstance(self.buckets, int) or not 1 <= self.buckets <= 4096:
            raise UsageError(f"--buckets {self.buckets!r}: give a whole number from 1 to 4096")
        if self.buckets > 1:
            parse_executor(self.executor)
            if self.prune:
                raise UsageError("--prune cannot be combined with --buckets: a bucket sees only its own keys, "
                                 "so it cannot tell which keys are gone", hint="prune with one run, without --buckets")
        if self.rebucket and self.dry_run:
            raise UsageError("--rebucket cannot be combined with --dry-run: it forgets the old buckets before the run",
                             hint="dry-run the new count on a copy, or run --rebucket for real")
        if self.forget_quarantine and not self.rebucket:
            raise UsageError("--forget-quarantine goes with --rebucket")
        if self.batch_size < 1:
            raise UsageError("--batch-size must be at least 1")
        if self.batch_size > 2**31 - 1:
            raise UsageError(f"--batch-size must be at most {2**31 - 1}")
        if self.lock_timeout.micros is None:  # a bare number: only 0 needs no unit
            if self.lock_timeout.units != 0:
                raise UsageError(f"--lock-timeout {self.lock_timeout.text!r}: give a unit",
                                 hint="for example 30s or 2m; 0 fails at once")
            self.lock_timeout = Duration(self.lock_timeout.text, micros=0)

    def check_csv(self) -> None:
        """The CSV dialect: one character each (not a line break, not the same two), and an
        encoding Python knows."""
        for flag, char in (("--csv-delimiter", self.csv_delimiter), ("--csv-quote", self.csv_quote)):
            if char is not None and (not isinstance(char, str) or len(char) != 1 or char in "\r\n"):
                raise UsageError(f"{flag} {char!r}: give one character", hint="for a tab: --csv-delimiter '\\t'")
        if self.csv_delimiter is not None and self.csv_delimiter == self.csv_quote:
            raise UsageError(f"--csv-delimiter and --csv-quote are both {self.csv_delimiter!r}")
        if self.encoding is not None:
            import codecs
            try:
                codecs.lookup(self.encoding).incrementaldecoder
            except (LookupError, TypeError):
                raise UsageError(f"--encoding {self.encoding!r}: not an encoding Python knows",
                                 hint="for example utf-8, latin-1, cp1252, utf-16") from None

    def check_range(self, tz_name: str, kind: str | None) -> None:
        """``--until`` must be later than ``--since``, both read as the stream reads cursors."""
        if self.since is None or self.until is None:
            return
        tz = zone(tz_name)
        (lo, _), (hi, _) = parse_bound(self.since, kind, tz, "--since"), parse_bound(self.until, kind, tz, "--until")
        if hi <= lo:
            raise UsageError(f"--since {self.since} --until {self.until}: the range is empty "
                             f"(--until must be later than --since)")

    @property
    def mode(self) -> str:
        if self.full_load:
            return "full"
        if self.since is not None or self.until is not None:
            return "backfill"
        return "incremental"


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

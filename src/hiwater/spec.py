"""One stream, resolved: the load keywords turned once into a :class:`StreamSpec`.

``hiwater.load(**kwargs)``, a project stream and a bucket all become a spec here, before any
worker starts: the options are validated once, the source is chosen, the table and stream
are named. The layers above (``stream``, ``executor``, ``buckets``, ``pipeline``) pass the
built spec around, pickled into worker processes or Dask tasks, and never re-validate raw
keyword dicts. A bucket's spec is a copy with its own stream name (:meth:`StreamSpec.for_bucket`),
so no options object is shared and changed under another run.
"""

from __future__ import annotations

import dataclasses
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field

from .errors import UsageError
from .keyhash import bucket_name
from .options import LoadOptions
from .project import load_project
from .sources.files import COMPRESSIONS
from .sources.memory import DataSource, is_data
from .targets import open_target


@dataclass(frozen=True)
class StreamSpec:
    """A stream's resolved options: what to read, where to write, under which names.

    Picklable unless ``source`` holds an object (in-memory data or a caller's source), which
    runs in this process only."""

    options: LoadOptions
    table: str
    input: str | None = None
    db: str | None = None
    target: str | None = None
    source_url: str | None = None
    source_table: str | None = None
    query: str | None = None
    source: object = None                  # a source object (in-memory data, a caller's) instead of input
    bucket: tuple[int, int] | None = None  # (b, n): this spec is bucket b of n
    share: object = None                   # a bucket of a file source: its spilled rows (sources.shuffled.BucketShare)
    notices: tuple[str, ...] = ()          # warnings known before the run (no table name, a dated one)

    @property
    def stream(self) -> str:
        return self.options.stream or self.table

    def for_bucket(self, b: int, n: int) -> "StreamSpec":
        """Bucket ``b`` of ``n`` of this stream: its own stream name, its own rows, and options
        that run it as one plain stream (a bucket does not split again)."""
        options = dataclasses.replace(self.options, buckets=1, executor=None, table=self.table,
                                      stream=bucket_name(self.stream, b, n))
        return dataclasses.replace(self, options=options, bucket=(b, n), notices=())


def spec_from(input=None, *, db: str | None = None, target: str | None = None, source=None,
              source_url: str | None = None, source_table: str | None = None, query: str | None = None,
              **options) -> StreamSpec:
    """The spec of one ``hiwater.load(input, ...)`` call; usage errors are raised here, before
    anything is opened."""
    opts = LoadOptions.build(**options)
    notices = []
    if isinstance(input, dict):
        raise UsageError("hiwater.load: got one dict; pass a list of records ([record])")
    if is_data(input):
        source, input = DataSource(input, cursor=opts.cursor, batch_size=opts.batch_size,
                                   keep=opts.window is not None), None
        if opts.table is None:
            notices.append("the data has no name: it loads into the table 'records' (pass table=... to name it)")
    if source_url is None and input is None and source is None:
        source_url = os.environ.get("HIWATER_SOURCE_URL") or None
    if source_url is not None and input is not None:
        raise UsageError("give --input or --source, not both")
    if source_url is None and (source_table is not None or query is not None):
        raise UsageError("--source-table and --query read a database: give --source URL too")
    if source is None and input is None and source_url is None:
        raise UsageError("give --input PATH (a file, a folder, a glob, or - for standard input) or --source URL")
    if input is not None and not isinstance(input, str):
        input = os.fspath(input)
    if source_url is not None and source is None:
        from .sources.sql import default_table as sql_table  # (a SQL source only)
        table = opts.table or sql_table(source_table)
    else:
        table = opts.table or default_table(input)
        if opts.table is None and input is not None and opts.buckets == 1:  # a bucketed run has no notice
            notice = dated_table_notice(input, table) or folder_table_notice(input, table)
            if notice:
                notices.append(notice)
    return StreamSpec(opts, table, input=input, db=db, target=target, source_url=source_url,
                      source_table=source_table, query=query, source=source, notices=tuple(notices))


def default_table(spec: str | None) -> str:
    """A table named after a single input file's stem (``events.jsonl.gz`` -> ``events``);
    ``records`` otherwise."""
    if not spec or spec == "-" or any(ch in spec for ch in "*?[") or os.path.isdir(spec):
        return "records"
    stem, ext = os.path.splitext(os.path.basename(spec))
    if ext.lower() in COMPRESSIONS:
        stem = os.path.splitext(stem)[0]
    name = re.sub(r"\W+", "_", stem).strip("_")
    return name or "records"


# A date in a file name: 2025-01-15, 2025_01_15, 20250115, 2025-01 (a month's file).
_DATED = re.compile(r"(?<!\d)(?:19|20)\d{2}(?:[-_.]?(?:0[1-9]|1[0-2])[-_.]?(?:0[1-9]|[12]\d|3[01])|[-_.](?:0[1-9]|1[0-2]))(?!\d)")


def dated_table_notice(spec: str | None, table: str) -> str | None:
    """A warning when the default table name comes from a file name holding a date: the next
    day's file would load into another table (and another stream) without a word."""
    if not spec or table == "records" or not _DATED.search(table):
        return None
    plain = re.sub(r"_+", "_", _DATED.sub("", table)).strip("_") or "records"
    return (f"the table name {table!r} comes from the file name, which holds a date: the next file would "
            f"load into another table; pass --table {plain} (or the name you want)")


def folder_table_notice(spec: str, table: str) -> str | None:
    """A warning when a folder or glob loads into the default table: a second folder loaded the
    same way would merge into it, under one watermark."""
    if table != "records" or not (any(ch in spec for ch in "*?[") or spec.endswith("/") or os.path.isdir(spec)):
        return None
    return (f"{spec} is a folder or a glob: it loads into the default table 'records' (stream 'records'), "
            f"which any other folder loaded without --table shares, watermark included; pass --table NAME")


@dataclass
class Plan:
    """How a bucketed run runs: which tasks, on what, in which order."""

    stream: str
    n: int
    executor: str                 # local | dask
    scheduler: object = None      # dask: an address, a distributed.Client, or None (a LocalCluster)
    serial: bool = False          # one SQLite/DuckDB file (its file lock), or a Delta table not partitioned by bucket
    first_alone: bool = False     # no table yet: bucket 0 makes it, then the others run
    names: list = field(default_factory=list)


@contextmanager
def connected(db=None, target=None, *, existing: str | None = None):
    """The target ``db``/``target`` names, connected for the ``with`` block, then closed.

    ``existing`` names a command that works on what loads left (``history``, ``state show``,
    ``stream drop``…): it needs a target named (an in-memory database holds nothing) and never
    creates one, so a mistyped ``--db`` is an error, not a new empty file."""
    tgt = open_target(db=db, target=target)
    if existing is not None:
        if getattr(tgt, "memory", False):
            raise UsageError(f"{existing}: no target: give --db PATH or --target URL",
                             hint="or set HIWATER_TARGET_URL; `hiwater status` reads the project file's targets")
        missing = absent(tgt)
        if missing is not None:
            raise UsageError(f"no such database: {missing}", hint="check the path (only a load creates a target)")
    with tgt:
        yield tgt


def absent(tgt) -> str | None:
    """The local file (SQLite, DuckDB) or folder (Delta) a target keeps its data in, when it does
    not exist yet: connecting would create it, which a command that only reads must not do."""
    path = getattr(tgt, "path", None)
    if path is None and getattr(tgt, "remote", True) is False:
        path = tgt.root
    if isinstance(path, str) and path not in (":memory:", "") and not os.path.exists(path):
        return path
    return None


def project_groups(project, streams, db, target):
    """``(target keywords, [(stream name, StreamConfig or None)])`` per target: the target's own
    streams when ``db``/``target`` is given, else the project's (grouped by their target)."""
    if db is not None or target is not None:
        return [({"db": db, "target": target}, None if not streams else [(s, None) for s in streams])]
    proj = load_project(project)
    groups: dict = {}
    for cfg in proj.select(streams):
        kw = cfg.target_kw
        groups.setdefault((kw["db"], kw["target"]), []).append((cfg.name, cfg))
    return [({"db": d, "target": t}, members) for (d, t), members in groups.items()]

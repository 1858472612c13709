"""A bucketed file stream's read phase, planned: its splits, its spill folder, each bucket's share.

The coordinator of ``--buckets N`` over files (a file, a folder, a glob, a prefix) does here what
is cheap and needs the whole picture: list the files once, choose the files to read from every
bucket's manifest (a file counts as read only when all N buckets recorded it), cut them into
splits (:func:`hiwater.sources.splits.plan_splits`) and make the spill folder. The read tasks
run on the executor (:func:`hiwater.executor.read_splits`); from what they hand back,
:meth:`ShufflePlan.shares` makes each bucket's :class:`~hiwater.sources.shuffled.BucketShare`
(its spill files in split order, each split's record offset in its file). The folder is removed
when the run ends, failed or not (:meth:`ShufflePlan.remove`); the folder of a coordinator that
was killed is removed by the next bucketed run on this host (:func:`sweep`). docs/scale-out.md has the design.

A SQL source whose key is one integer column is read the same way (:func:`plan_sql`): its splits
are key ranges (:mod:`hiwater.sources.sqlsplits`), planned from the buckets' windows and one
``min``/``max`` query. Any other key keeps the hash pushed down, each bucket reading its rows.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass, field

from . import values as V
from .errors import UsageError
from .sources.csvfile import CsvDialect
from .sources.files import open_files
from .sources.shuffled import BucketShare
from .sources.splits import ReadConfig, plan_splits
from .spec import Plan, StreamSpec
from .window import window_for

ENV_SPILL = "HIWATER_SPILL_URL"  # where the spill folders are made (a local or shared folder)
# "pushdown": a bucketed SQL source reads with the hash pushed down even for an integer key (the
# figures before the key-range read phase, docs/benchmarks-buckets.md; and the tests' reference)
ENV_SQL_READ = "HIWATER_BUCKET_SQL_READ"


@dataclass
class ShufflePlan:
    splits: list
    cfg: ReadConfig
    dir: str
    n: int
    description: str
    notes: list = field(default_factory=list)
    tracked: bool = False
    listed: int = 0
    read: tuple = ()
    names: tuple = ()
    skipped: int = 0
    listed_paths: frozenset = frozenset()
    sql: object = None  # a SQL read phase: what it read (sources.sqlsplits.ReadWindow)

    def shares(self, reads: list) -> tuple[list, dict]:
        """Each bucket's share of the read phase's spill files, and the phase's details (each
        split's file, records and the worker process that parsed it) for the summary."""
        offsets, seen = [], {}
        for s, r in zip(self.splits, reads):
            offsets.append(seen.get(s.path, 0) if s.kind in ("bytes", "sql") else 0)
            seen[s.path] = seen.get(s.path, 0) + r.records
        shares = []
        for b in range(self.n):
            parts = tuple((r.files[b], off) for r, off in zip(reads, offsets) if r.files[b] is not None)
            shares.append(BucketShare(parts, sum(r.rows[b] for r in reads), self.description, self.tracked,
                                      self.listed, self.read, self.names, self.skipped, self.listed_paths,
                                      sql=self.sql))
        detail = {"splits": [{"split": s.index, "file": s.name, "kind": s.kind, "records": r.records,
                              "pid": r.pid} for s, r in zip(self.splits, reads)]}
        if self.notes:
            detail["notes"] = list(self.notes)
        return shares, detail

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def plan(spec: StreamSpec, p: Plan, before: dict, manifests: list) -> ShufflePlan:
    """The read phase of bucketed run ``p`` of the file source of ``spec``: the files to read
    (those some bucket's manifest does not hold at their version), cut into splits."""
    o = spec.options
    dialect = CsvDialect(o.csv_delimiter, o.csv_quote, o.encoding)
    src = open_files(spec.input, o.format, cursor=o.cursor, batch_size=o.batch_size, csv=dialect)
    try:
        out = ShufflePlan([], ReadConfig(tuple(o.key), o.cursor, p.n, o.batch_size, o.format, dialect,
                                         light=_light(o, [before.get(name) for name in p.names])),
                          "", p.n, src.description, tracked=src.tracked)
        if src.tracked:
            # A file counts as read when every bucket recorded it at this version.
            first = manifests[0] if manifests else {}
            known = {path: v for path, v in first.items() if all(m.get(path) == v for m in manifests[1:])}
            sel = src.select(known, reread=o.reread_files or o.full_load)
            out.listed, out.read, out.names, out.skipped = sel.listed, tuple(sel.read), tuple(sel.names), sel.skipped
            out.listed_paths = frozenset(e.path for e in src.entries.values())
        cores = os.cpu_count() or 1
        splits = plan_splits(src, max(p.n, cores))
        out.splits, out.notes = splits.splits, splits.notes
    finally:
        src.close()
    out.dir = _spill_dir(spec)
    return out


def _spill_dir(spec: StreamSpec) -> str:
    """A new spill folder for this run, named after its coordinator (after sweeping the folders
    that killed coordinators of this host left)."""
    root = _spill_root(spec)
    sweep(root)
    return tempfile.mkdtemp(prefix=f"{PREFIX}{_owner()}-", dir=root)


PREFIX = "hiwater-spill-"


def _owner() -> str:
    """``<host>-<pid>`` of this coordinator, in its spill folder's name (the host without ``-``)."""
    return f"{socket.gethostname().replace('-', '_')}-{os.getpid()}"


def sweep(root: str | None) -> list:
    """Remove the spill folders under ``root`` (the system's temporary folder for ``None``) that a
    coordinator of this host left when it was killed (SIGKILL, out of memory): its process no
    longer runs. A folder of another host (a shared spill folder) or of a live process is left
    alone. Returns the folders removed."""
    root = root or tempfile.gettempdir()
    host = socket.gethostname().replace("-", "_")
    gone = []
    try:
        names = os.listdir(root)
    except OSError:
        return gone
    for name in names:
        parts = name[len(PREFIX):].split("-") if name.startswith(PREFIX) else []
        if len(parts) < 3 or parts[0] != host or not parts[1].isdigit():
            continue  # another host's, or a folder of an older version (named without its owner)
        if not _alive(int(parts[1])):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            gone.append(name)
    return gone


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def plan_sql(spec: StreamSpec, p: Plan, before: dict) -> ShufflePlan | None:
    """The read phase of bucketed run ``p`` of the SQL source of ``spec``: key ranges, when its
    key is one integer column (``None``: each bucket reads its rows, the hash pushed down)."""
    from .sources.dialects import INT
    from .sources.sql import open_sql
    from .sources.sqlsplits import SqlRead, key_span, ranges
    o = spec.options
    if os.environ.get(ENV_SQL_READ) == "pushdown" or len(o.key) != 1:
        return None
    window = _read_window(spec, [before.get(name) for name in p.names])
    if window is None:
        return None
    tz = next((s.assume_tz for s in before.values() if s is not None), o.assume_tz or "UTC")
    read = SqlRead(spec.source_url, spec.source_table, spec.query, tuple(o.key), o.cursor, o.batch_size,
                   o.assume_tz or "UTC", tz, window)
    src = open_sql(spec.source_url, table=spec.source_table, query=spec.query, key=o.key, cursor=o.cursor,
                   batch_size=o.batch_size, assume_tz=o.assume_tz or "UTC")
    try:
        src.ensure_open()
        if src._column(o.key[0]).kind != INT:
            return None
        src.dialect.tz = V.zone(tz)
        if window.los:
            window = _drop_unpushed(src, window)
            read = dataclasses.replace(read, window=window)
        b = window.bounds()
        if b is not None:
            src.set_window(b.lo, b.lo_inclusive, b.hi, b.kind, V.zone(tz))
        span = key_span(src)
    finally:
        src.close()
    if span is None:  # a key value that is not an integer (SQLite)
        return None
    splits = ranges(read, span, max(p.n, os.cpu_count() or 1))
    out = ShufflePlan(splits, ReadConfig(tuple(o.key), o.cursor, p.n, o.batch_size), "", p.n, src.description,
                      sql=window)
    out.dir = _spill_dir(spec)
    return out


def _read_window(spec: StreamSpec, states: list):
    """What the read phase must read: every bucket's window (as its loader will push it down),
    and their union; ``None`` when they cannot be told apart by their lower bounds alone (another
    upper bound, kind or zone per bucket: the hash stays pushed down)."""
    from .sources.sqlsplits import ReadWindow
    o = spec.options
    now = V.now_us(o.now)
    windows = []
    for s in states:
        if s is None or s.kind in (None, V.TIMESTAMP_NS):  # the loader pushes no window down
            windows.append(None)
            continue
        windows.append((window_for(o, s.watermark, s.kind, now, V.zone(s.assume_tz)), s.kind, s.assume_tz))
    pushed = [w for w in windows if w is not None]
    if len({(w.hi, w.lo_inclusive, kind, tz) for w, kind, tz in pushed}) > 1 or (pushed and len(pushed) < len(windows)
                                                                                and pushed[0][0].hi is not None):
        return None
    if not pushed:
        return ReadWindow(spec.source_url)
    w0, kind, _ = pushed[0]
    los = sorted({w.lo for w, _, _ in pushed if w.lo is not None})
    floor = None if len(pushed) < len(windows) or any(w.lo is None for w, _, _ in pushed) else los[0]
    return ReadWindow(spec.source_url, kind, w0.lo_inclusive, tuple(los), floor,
                      w0.hi if len(pushed) == len(windows) else None)


def _drop_unpushed(src, window):
    """The window without the lower bounds the source's column cannot take (a bucket with such a
    bound reads every row, as its own statement would)."""
    from .sources.sql import WindowBounds
    keep = tuple(lo for lo in window.los
                 if src.conditions(WindowBounds(lo, window.lo_inclusive, None, window.kind))[0])
    floor = window.floor if len(keep) == len(window.los) else None
    return dataclasses.replace(window, los=keep, floor=floor)


def _light(o, states: list) -> bool:
    """Whether the read tasks read JSON Lines key and cursor first (the loader's ``light_ok``, as
    far as the coordinator can tell): every bucket's table holds its stream already. A bucket
    whose pass needs every record in full expands the batches it is given (no parse is lost)."""
    return (all(s is not None and s.kind is not None and s.watermark is not None for s in states)
            and not o.full_load and not o.prune and not o.strict and o.delete_field is None
            and o.on_late != "skip" and o.cursor not in o.key and o.window is None)


def _spill_root(spec: StreamSpec) -> str | None:
    """``HIWATER_SPILL_URL`` (a folder every worker can read and write), else the folder of a
    local target file, else the system's temporary folder."""
    root = os.environ.get(ENV_SPILL) or None
    if root is not None:
        if root.startswith("file://"):
            root = root[len("file://"):]
        if "://" in root:
            raise UsageError(f"{ENV_SPILL}={root}: the spill location must be a folder (local, or shared by "
                             f"every worker); an object-store URL is not supported yet")
        os.makedirs(root, exist_ok=True)
        return root
    if spec.db not in (None, ":memory:"):
        folder = os.path.dirname(os.path.abspath(spec.db))
        if os.path.isdir(folder) and os.access(folder, os.W_OK):
            return folder
    return None

"""File sources: JSON array, JSON Lines, CSV, Parquet, standard input, globs and folders.

This module lists the files (a path, a folder, a glob, an object-storage prefix, with each file's
version for the manifest), decompresses them, and hands each to its format's reader: JSON and
JSON Lines in :mod:`hiwater.sources.jsonl` (and :mod:`hiwater.sources.lightjson` for a re-read),
CSV in :mod:`hiwater.sources.csvfile` (with its dialect), Parquet here.

The fast path is pyarrow's own readers (streaming, columnar, bounded by the block
size). When a file is messier than they accept (a column whose type changes, a
malformed line), the exact path takes over for that file: it reads with the json or
csv module, names the line and column of a syntax error, and marks values of
the wrong type per record instead of failing the file.

A compressed file (``.gz``, ``.zst``, ``.bz2``) is decompressed by its extension, and the
extension inside decides the format (``events.jsonl.gz`` is JSON Lines); its content is never
sniffed while compressed. It is decompressed into a temporary file (one at a time, removed
when read), so both paths, and a ``--window`` load that reads the source again, work on it as
on any file. A file whose first bytes are a compressed stream but whose name does not say so
is refused with a hint, never read as text.

Either path gives every value other than the cursor as the source carried it (SPEC §8):
a JSON string stays that string whatever it looks like, a CSV cell is text unless the
whole column reads as numbers that give the same text back (the cells go along in
``RawBatch.texts``), a Parquet timestamp becomes ISO text at its full precision.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Iterator

import pyarrow as pa

from ..errors import ConfigError, HiwaterError, InputError, UsageError
from .base import RawBatch, Source
from .csvfile import CsvDialect, read_csv
from .jsonl import read_json_array, read_jsonl
from .lightjson import read_jsonl_light
from .records import BLOCK_BYTES, iso_columns

EXTENSIONS = {
    ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv",
    ".parquet": "parquet", ".pq": "parquet", ".txt": None,
}
# Compressed files, by extension: the codec (pyarrow's name for it).
COMPRESSIONS = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2"}
_MAGIC = ((b"\x1f\x8b", "gzip", ".gz"), (b"\x28\xb5\x2f\xfd", "zstd", ".zst"), (b"BZh", "bz2", ".bz2"))


def compression_of(path: str) -> str | None:
    """The codec a file's extension names (``gzip``, ``zstd``, ``bz2``), or ``None``."""
    return COMPRESSIONS.get(os.path.splitext(path)[1].lower())


def _inner_name(path: str) -> str:
    """``events.jsonl.gz`` -> ``events.jsonl``: the name whose extension gives the format."""
    return os.path.splitext(path)[0] if compression_of(path) else path


def _refuse_compressed(path: str, name: str) -> None:
    """A file that starts like a compressed stream but is not named so is never read as text."""
    with open(path, "rb") as f:
        head = f.read(4)
    for magic, codec, ext in _MAGIC:
        if head.startswith(magic) and not (codec == "bz2" and not head[3:4].isdigit()):
            raise InputError(f"the file is {codec}-compressed but its name does not end in {ext}", path=name,
                             hint=f"rename it to end in {ext} (the extension before it gives the format), "
                                  f"or decompress it first")


def _codec_available(codec: str) -> bool:
    return pa.Codec.is_available(codec)


def decompress(path: str, name: str, codec: str, dest: str) -> None:
    """Decompress ``path`` into the file ``dest``: pyarrow's codecs (gzip, bz2 and zstd are in
    the wheels on PyPI); else the standard library (gzip, bz2) or the ``zstandard`` package."""
    import bz2
    import gzip
    import zlib
    errors = (OSError, EOFError, ValueError, zlib.error, pa.ArrowInvalid, pa.ArrowIOError)
    try:
        if _codec_available(codec):
            with pa.input_stream(path, compression=codec) as src, open(dest, "wb") as out:
                while chunk := src.read(BLOCK_BYTES):
                    out.write(chunk)
            return
        if codec in ("gzip", "bz2"):
            opener = gzip.open if codec == "gzip" else bz2.open
            with opener(path, "rb") as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, BLOCK_BYTES)
            return
        try:
            import zstandard
        except ImportError:
            raise ConfigError(f"{name}: reading a .zst file needs zstd support, which this pyarrow lacks and "
                              f"the zstandard package is not installed",
                              hint="pip install 'hiwater[zstd]'") from None
        errors += (zstandard.ZstdError,)
        with open(path, "rb") as raw, open(dest, "wb") as out:
            zstandard.ZstdDecompressor().copy_stream(raw, out, read_size=BLOCK_BYTES)
    except errors as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"not a readable {codec} file: {text}", path=name) from None


def _sniff(path: str, name: str | None = None) -> str:
    """Guess a format from the first non-blank byte (for .txt files and stdin)."""
    _refuse_compressed(path, name or path)
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith(b"PAR1"):
        return "parquet"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"["):
        return "json"
    if text.startswith(b"{"):
        return "jsonl"
    return "csv"


def hidden(rel: str) -> bool:
    """Whether a path below the listed root is hidden, as Spark and Hive treat them: a part that
    starts with ``.`` (``.tmp/``, ``.part-0.crc``) or with ``_`` (``_SUCCESS``, ``_temporary/``)
    unless it is a partition folder (``_x=1``). Such files are a writer's bookkeeping, not data."""
    return any(part[:1] == "." or (part[:1] == "_" and "=" not in part) for part in rel.split("/") if part)


def list_root(spec: str) -> str:
    """The part of a folder, prefix or glob the user named literally: the hidden rule applies
    only below it (a folder named ``_landing`` is read when named)."""
    cut = min((spec.find(ch) for ch in "*?[" if ch in spec), default=-1)
    if cut < 0:
        return spec
    return spec[:cut].rpartition("/")[0]


def _visible(paths, root: str) -> list:
    """``paths`` without the hidden ones below ``root``."""
    root = root.rstrip("/")
    return [p for p in paths if not hidden(p[len(root):] if p.startswith(root) else os.path.basename(p))]


def resolve_paths(spec: str) -> list[str]:
    """A path, a folder (its files, recursively, sorted) or a glob, to a list of files. A folder
    and a glob skip hidden files and folders below the part named literally (:func:`hidden`)."""
    if spec == "-":
        return ["-"]
    if os.path.isdir(spec):
        paths = []
        for top, dirs, files in os.walk(spec):
            dirs[:] = [d for d in dirs if not hidden(d)]
            paths += [os.path.join(top, name) for name in files
                      if not hidden(name) and os.path.isfile(os.path.join(top, name))]
        if not paths:
            raise InputError("folder has no files", path=spec)
        return sorted(paths)
    if any(ch in spec for ch in "*?["):
        found = (p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
        paths = sorted(_visible(found, list_root(spec)))
        if not paths:
            raise InputError("no file matches this pattern", path=spec)
        return paths
    if not os.path.exists(spec):
        raise InputError("no such file", path=spec)
    if not os.path.isfile(spec):
        raise InputError("not a regular file", path=spec)
    return [spec]


@dataclass(frozen=True)
class FileEntry:
    """One listed file, as the manifest remembers it (SPEC §10): ``path`` is its identity
    (an absolute local path, or the object's URL), ``size`` in bytes, and its version:
    ``mtime_ns`` for a local file, ``etag`` for an object in object storage."""

    path: str
    size: int
    mtime_ns: int | None = None
    etag: str | None = None

    def version(self) -> tuple:
        return (self.size, self.mtime_ns, self.etag)


@dataclass
class FileSelection:
    """What a run does with a tracked source's listing, given the manifest."""

    listed: int
    read: list           # FileEntry of the files this run opens (new or changed, or all)
    skipped: int         # files the manifest already holds at this version
    vanished: list       # manifest paths no longer listed
    names: list          # the names the records of ``read`` carry (RawBatch.path), aligned with it
    left: set = field(default_factory=set)  # names of the files holding records left for later

    def leave(self, name: str, left_out) -> None:
        """A batch of file ``name`` holds records the run leaves for a later one (``left_out``, a
        mask: outside ``--since``/``--until``): that file is not applied completely (SPEC §10).
        Records the run counts deliberately (quarantined, below the window) do not count."""
        if name not in self.left and left_out.any():
            self.left.add(name)

    def applied(self) -> list:
        """The files read whole (SPEC §10): ``read`` less those :meth:`leave` named. Only these are
        recorded: the others are opened again by the next run, which loads what was left."""
        return [e for name, e in zip(self.names, self.read) if name not in self.left]

    def to_dict(self) -> dict:
        return {"listed": self.listed, "read": len(self.read), "skipped": self.skipped,
                "vanished": len(self.vanished)}


def is_remote(spec: str) -> bool:
    """An object-storage URL (``s3://``, ``gs://``, ``az://``…), read through fsspec."""
    scheme, sep, _ = spec.partition("://")
    return bool(sep) and scheme.isalnum() and scheme.lower() != "file"


def is_tracked(spec: str) -> bool:
    """A folder or a glob is tracked by the file manifest; one named file and stdin are not."""
    if is_remote(spec):
        return spec.endswith("/") or any(ch in spec for ch in "*?[")
    return spec != "-" and (os.path.isdir(spec) or any(ch in spec for ch in "*?["))


# An object-storage scheme -> (the fsspec package that serves it, the hiwater extra that installs it).
SCHEMES = {"s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"), "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs"),
           "az": ("adlfs", "azure"), "abfs": ("adlfs", "azure"), "abfss": ("adlfs", "azure")}


def remote_fs(spec: str):
    """The fsspec filesystem for ``spec``'s scheme. Credentials come from the standard chains
    (environment, profiles); for S3 the endpoint from ``AWS_ENDPOINT_URL`` (MinIO, moto…).
    No listing cache: every run lists afresh."""
    from ..extras import require
    scheme = spec.partition("://")[0].lower()
    package, extra = SCHEMES.get(scheme, (None, None))
    if package is None:
        raise UsageError(f"{spec}: the scheme {scheme}:// is not supported", hint="use s3://, gs:// or az://")
    require(package, extra, f"reading {scheme}:// URLs")
    import fsspec
    kw: dict = {"skip_instance_cache": True, "use_listings_cache": False}
    if package == "s3fs":
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            kw["endpoint_url"] = endpoint
    return fsspec.filesystem(scheme, **kw)


def _remote_error(exc: BaseException, spec: str) -> HiwaterError:
    """One line for a failure to list or fetch: a refused credential is a configuration error
    (exit 2), never with the secret; anything else fails the run (exit 1)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    for secret in (os.environ.get("AWS_SECRET_ACCESS_KEY"), os.environ.get("AWS_SESSION_TOKEN")):
        if secret:
            text = text.replace(secret, "***")
    names = {type(exc).__name__, *(type(c).__name__ for c in (exc.__cause__, exc.__context__) if c)}
    if isinstance(exc, PermissionError) or names & {"NoCredentialsError", "PartialCredentialsError",
                                                    "ClientError", "InvalidAccessKeyId"}:
        return ConfigError(f"{spec}: access refused: {text}",
                           hint="check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE) "
                                "and AWS_ENDPOINT_URL")
    if names & {"EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError", "ClientConnectorError",
                "ServerDisconnectedError", "ConnectionRefusedError"}:
        from ..errors import ConnectError
        return ConnectError(f"{spec}: cannot reach the object store: {text}",
                            hint="check AWS_ENDPOINT_URL (or the network); the run can be retried")
    return InputError(f"cannot read from object storage: {text}", path=spec)


def remote_entries(fs, spec: str) -> dict:
    """One listing of a prefix or glob: ``{object URL: FileEntry}`` keyed by ETag, sorted."""
    scheme = spec.partition("://")[0]
    try:
        if any(ch in spec for ch in "*?["):
            found = fs.glob(spec, detail=True)
        elif spec.endswith("/"):
            found = fs.find(spec, detail=True)
        else:
            found = {spec: fs.info(spec)}
    except FileNotFoundError:
        raise InputError("no such object or prefix", path=spec) from None
    except Exception as exc:  # noqa: BLE001 - botocore's and fsspec's errors, one line each
        raise _remote_error(exc, spec) from None
    out = {}
    root = list_root(spec)
    for key, info in sorted(found.items()):
        if info.get("type") == "directory" or key.endswith("/"):
            continue
        url = key if "://" in key else f"{scheme}://{key}"
        if not _visible([url], root):
            continue
        etag = info.get("ETag") or info.get("etag") or info.get("md5Hash")
        out[url] = FileEntry(url, int(info.get("size") or 0), None, None if etag is None else str(etag).strip('"'))
    if not out:
        raise InputError("no object matches" if any(ch in spec for ch in "*?[") else "no object under this prefix",
                         path=spec)
    return out


def local_entries(paths: list[str]) -> dict:
    """``{path as read: FileEntry}`` for local files: one ``stat`` each, taken before reading (a
    file rewritten while it is read then shows another version next run and is read again)."""
    out = {}
    for p in paths:
        st = os.stat(p)
        out[p] = FileEntry(os.path.abspath(p), st.st_size, st.st_mtime_ns)
    return out


class FileSource(Source):
    """One or more files read as one source, in order.

    Standard input (``-``) is spooled to a temporary file first, so that a
    ``--window`` load can read it more than once.

    A folder or a glob is *tracked* (SPEC §10): the listing is taken once, with each file's
    size and modification time, and :meth:`select` narrows the files read to those the
    stream's manifest does not hold at that version.

    A ``--window`` run reads the files once and replays them for each slice
    (:mod:`hiwater.sources.spill`).
    """

    spill_for_window = True
    # light_key (set by the loader for a run whose target already holds the stream): JSON Lines
    # files are then read key and cursor first (LightBatch), and other fields only for the records
    # the stored versions do not show to be current.

    def __init__(self, spec: str, fmt: str | None = None, *, cursor: str = "modified_at",
                 batch_size: int = 65_536, stdin=None, csv: CsvDialect | None = None):
        self.spec = spec
        self.fmt = fmt
        self.csv = csv or CsvDialect()
        self.csv_read: dict = {}  # CSV file name -> what it was read with (its dialect)
        self.cursor = cursor
        self.batch_size = batch_size
        self._tmp = None
        self._spool: str | None = None  # a folder for the decompressed copy of a compressed file
        self._fs = remote_fs(spec) if is_remote(spec) else None
        remote = remote_entries(self._fs, spec) if self._fs is not None else None
        paths = list(remote) if remote is not None else resolve_paths(spec)
        if paths == ["-"]:
            self._tmp = tempfile.NamedTemporaryFile(prefix="hiwater-stdin-", delete=False)
            stream = stdin if stdin is not None else sys.stdin.buffer
            shutil.copyfileobj(stream, self._tmp)
            self._tmp.close()
            self.paths = [self._tmp.name]
            self.names = {self._tmp.name: "<stdin>"}
        else:
            self.paths = paths
            self.names = {p: p for p in paths}
        self.description = spec if spec != "-" else "<stdin>"
        self.tracked = is_tracked(spec)
        if remote is not None:
            self.entries = remote if self.tracked else {}
        else:
            self.entries = local_entries(paths) if self.tracked else {}
        self._listed = list(self.paths)

    @property
    def csv_dialects(self) -> list | None:
        """What the CSV files this run read were read with: each distinct dialect once, with its
        number of files (the summary's ``csv`` detail); ``None`` when no CSV file was read."""
        if not self.csv_read:
            return None
        out: dict = {}
        for d in self.csv_read.values():
            key = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in d.items())
            out.setdefault(key, {**d, "files": 0})["files"] += 1
        return list(out.values())

    def select(self, known: dict, reread: bool = False) -> FileSelection:
        """Read only the listed files that ``known`` (the manifest: ``{path: (size, mtime_ns,
        etag)}``) does not hold at their listed version; all of them with ``reread``. Compared
        in memory: one listing and one manifest read per run, whatever the number of files."""
        read, skipped = [], 0
        self.paths = []
        for p in self._listed:
            e = self.entries[p]
            if not reread and known.get(e.path) == e.version():
                skipped += 1
                continue
            self.paths.append(p)
            read.append(e)
        listed = {e.path for e in self.entries.values()}
        vanished = sorted(p for p in known if p not in listed)
        return FileSelection(len(self._listed), read, skipped, vanished, [self.names[p] for p in self.paths])

    def expected_records(self) -> int | None:
        """An estimate of the number of records, for a progress bar's ETA (cheap: reads 1 MiB)."""
        total = 0
        if self._fs is not None:
            return None  # sizing an object's records would fetch it
        for path in self.paths:
            if compression_of(path):
                return None  # a compressed file's record count cannot be guessed from its size
            try:
                if self.format_of(path) == "parquet":
                    import pyarrow.parquet as pq
                    total += pq.ParquetFile(path).metadata.num_rows
                    continue
                size = os.path.getsize(path)
                with open(path, "rb") as f:
                    sample = f.read(1 << 20)
                lines = sample.count(b"\n") or 1
                total += int(size / (len(sample) / lines)) if sample else 0
            except (OSError, pa.ArrowInvalid):
                return None
        return total

    def format_of(self, path: str, data: str | None = None) -> str:
        """The format of ``path``: ``--format``, else the extension (inside a compression
        extension), else sniffed from ``data`` (the decompressed file) or the file itself."""
        if self.fmt:
            return self.fmt
        ext = os.path.splitext(_inner_name(path))[1].lower()
        if ext in EXTENSIONS and EXTENSIONS[ext]:
            return EXTENSIONS[ext]
        return _sniff(data or path, self.names.get(path, path))

    def _fetch(self, url: str) -> str:
        """An object downloaded whole into the spool folder (then read like a local file)."""
        local = os.path.join(self._spool_dir(), "object")
        try:
            self._fs.get_file(url, local)
        except FileNotFoundError:
            raise InputError("the object vanished after it was listed", path=url) from None
        except Exception as exc:  # noqa: BLE001 - one line, never a secret
            raise _remote_error(exc, url) from None
        return local

    def _spool_dir(self) -> str:
        if self._spool is None:
            self._spool = tempfile.mkdtemp(prefix="hiwater-decompressed-")
        return self._spool

    def batches(self) -> Iterator[RawBatch]:
        for path in self.paths:
            name = self.names[path]
            codec = compression_of(path)
            local = self._fetch(path) if self._fs is not None else path
            data = local
            if codec is not None:
                data = os.path.join(self._spool_dir(), "data")
                decompress(local, name, codec, data)
            else:
                _refuse_compressed(local, name)
            try:
                fmt = self.format_of(path, data)
                if fmt == "jsonl" and self.light_key:
                    yield from read_jsonl_light(data, name, self.cursor, self.batch_size, self.light_key)
                    continue
                if fmt == "csv":
                    yield from read_csv(data, name, self.cursor, self.batch_size, self.csv, self.csv_read)
                    continue
                reader = {"json": read_json_array, "jsonl": read_jsonl, "parquet": _read_parquet}[fmt]
                yield from reader(data, name, self.cursor, self.batch_size)
            finally:
                for tmp in {data, local} - {path}:
                    try:
                        os.unlink(tmp)
                    except OSError:
                        pass

    def close(self) -> None:
        if self._spool is not None:
            shutil.rmtree(self._spool, ignore_errors=True)
            self._spool = None
        if self._tmp is not None:
            try:
                os.unlink(self._tmp.name)
            except OSError:
                pass
            self._tmp = None


def open_files(spec: str, fmt: str | None = None, **kw) -> FileSource:
    if fmt is not None and fmt not in ("json", "jsonl", "csv", "parquet"):
        raise UsageError(f"--format {fmt!r}: choose json, jsonl, csv or parquet")
    return FileSource(spec, fmt, **kw)


def _read_parquet(path: str, name: str, cursor: str, batch_size: int) -> Iterator[RawBatch]:
    try:
        import pyarrow.parquet as pq
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"not a readable Parquet file: {exc}", path=name) from None
    record = 1
    for rb in pf.iter_batches(batch_size=batch_size):
        tbl = pa.Table.from_batches([rb])
        yield RawBatch(iso_columns(tbl, cursor), name, record, {})
        record += tbl.num_rows



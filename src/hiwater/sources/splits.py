"""The read phase of a bucketed file stream: cut the files into splits, read each split once.

A bucketed run (``--buckets N``) reads its files in two phases (docs/scale-out.md, "How a
bucketed stream reads"): the coordinator plans **splits** from metadata and a newline count
(:func:`plan_splits`), one **read task** per split parses it once and routes each batch's rows
to their buckets by :func:`hiwater.keyhash.bucket_ids` (:func:`read_split`), writing each
bucket's share to a spill file; then one apply task per bucket replays its spill files
(:class:`hiwater.sources.shuffled.ShuffledSource`). No worker parses a row it does not apply.

Splits: a whole file (a folder's files; a compressed, remote or JSON array file); byte ranges of
a big JSON Lines file, cut at line boundaries (a split starts after the first newline at or
after its offset and ends at the first newline at or after its end); a CSV file likewise when
no quoted field holds a newline (checked by the parity of quote characters at each newline;
else one split, with a note); groups of a Parquet file's row groups.

Numbers stay the whole file's: the plan counts the newlines before each byte range, so a
syntax error names the file's line; a split's records are numbered from 1 by its read task and
renumbered by the apply source once the read phase has counted every split's records.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa

from ..errors import InputError
from .bucket import split_batch
from .csvfile import CsvDialect, read_csv
from .files import FileSource, compression_of
from .jsonl import read_jsonl
from .lightjson import CHUNK_BYTES, LightBatch, read_jsonl_light
from .spill import _dumps

SPLIT_BYTES = 16 << 20  # a byte range is at least this big (smaller files are one split)
ENV_SPLIT_BYTES = "HIWATER_SPLIT_BYTES"  # (tests: cut small files too)
_SCAN = 8 << 20
READ_BATCH_ROWS = 262_144  # the most rows a read task's batch holds (see read_batch_size)


@dataclass(frozen=True)
class Split:
    """One piece of the source for one read task. ``kind``: ``file`` (the whole file), ``bytes``
    (``[start, end)`` of the file, whole lines; ``header`` bytes of a CSV file's header line go
    first) or ``rows`` (Parquet row groups ``[start, end)``, whose first record is known)."""

    index: int
    path: str                  # as listed (a local path or an object's URL)
    name: str                  # the name its records carry
    kind: str = "file"
    fmt: str | None = None
    start: int = 0
    end: int = 0
    first_line: int = 1        # bytes: the file's line number of the split's first line
    first_record: int = 1      # rows: the file's record number of the split's first row
    header: int = 0            # bytes (CSV): the length of the header line, read with every split


@dataclass
class SplitPlan:
    splits: list = field(default_factory=list)
    notes: list = field(default_factory=list)   # why a file was not cut (for --details)


def plan_splits(src: FileSource, parts: int, min_bytes: int | None = None) -> SplitPlan:
    """The splits of the files ``src`` will read (after its manifest selection), about ``parts``
    per big file."""
    if min_bytes is None:
        min_bytes = int(os.environ.get(ENV_SPLIT_BYTES) or SPLIT_BYTES)
    out = SplitPlan()
    for path in src.paths:
        name = src.names[path]
        local = src._fs is None and compression_of(path) is None
        fmt = src.format_of(path) if local else None
        size = os.path.getsize(path) if local else 0
        k = max(1, min(parts, size // max(1, min_bytes)))
        pieces = None
        if local and fmt == "parquet":
            pieces = _row_groups(path, parts)
        elif local and k > 1 and fmt == "jsonl":
            pieces = _byte_ranges(path, size, k)
        elif local and k > 1 and fmt == "csv":
            why = _csv_unsplittable(path, src.csv)
            if why is None:
                header = _header_length(path)
                pieces = _byte_ranges(path, size, k, first=header, line=2)
                pieces = [replace(p, header=header) for p in pieces]
            else:
                out.notes.append(f"{name}: read as one split: {why}")
        for p in pieces or [Split(0, path, name, "file", fmt)]:
            out.splits.append(replace(p, index=len(out.splits), path=path, name=name, fmt=fmt))
    return out


def _byte_ranges(path: str, size: int, k: int, first: int = 0, line: int = 1) -> list:
    """``k`` byte ranges of ``[first, size)`` cut after newlines, with each one's first line."""
    targets = [first + (size - first) * i // k for i in range(1, k)]
    cuts = [(first, line)]
    pos, ti = first, 0
    with open(path, "rb") as f:
        f.seek(first)
        while ti < len(targets):
            chunk = f.read(_SCAN)
            if not chunk:
                break
            while ti < len(targets) and targets[ti] < pos + len(chunk):
                nl = chunk.find(b"\n", max(0, targets[ti] - pos))
                if nl < 0:
                    targets[ti] = pos + len(chunk)  # look on in the next chunk
                    break
                off = pos + nl + 1
                if off > cuts[-1][0] and off < size:
                    cuts.append((off, line + chunk.count(b"\n", 0, nl + 1)))
                ti += 1
            line += chunk.count(b"\n")
            pos += len(chunk)
    ends = [c[0] for c in cuts[1:]] + [size]
    return [Split(0, path, path, "bytes", start=s, end=e, first_line=ln) for (s, ln), e in zip(cuts, ends)]


def _header_length(path: str) -> int:
    with open(path, "rb") as f:
        return len(f.readline())


def _csv_unsplittable(path: str, dialect: CsvDialect) -> str | None:
    """Why a CSV file cannot be cut at newlines (``None``: it can). A newline inside a quoted field
    is one where an odd number of quote characters came before it (a doubled quote counts two)."""
    if dialect.codec not in ("utf-8", "utf-8-sig"):
        return f"its encoding ({dialect.encoding}) is transcoded whole"
    quote = dialect.quote.encode()
    if len(quote) != 1:
        return "its quote character is not one byte"
    odd = 0
    with open(path, "rb") as f:
        while chunk := f.read(_SCAN):
            if quote not in chunk:
                if odd and b"\n" in chunk:
                    return "a quoted field holds a newline"
                continue
            arr = np.frombuffer(chunk, dtype=np.uint8)
            count = np.cumsum(arr == quote[0], dtype=np.int64) + odd
            if (count[arr == 10] % 2).any():
                return "a quoted field holds a newline"
            odd = int(count[-1] % 2)
    return None


def _row_groups(path: str, parts: int) -> list | None:
    """Groups of consecutive row groups of about equal rows, with each group's first record."""
    import pyarrow.parquet as pq
    try:
        meta = pq.ParquetFile(path).metadata
    except (pa.ArrowInvalid, OSError):
        return None  # the read task names the error as a whole-file read does
    rows = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    if len(rows) < 2:
        return None
    total = sum(rows)
    out, start, record, acc = [], 0, 1, 0
    k = min(parts, len(rows))
    for i, r in enumerate(rows):
        acc += r
        if acc >= total * (len(out) + 1) / k or i == len(rows) - 1:
            n = sum(rows[start:i + 1])
            out.append(Split(0, path, path, "rows", start=start, end=i + 1, first_record=record))
            record += n
            start = i + 1
    return out


@dataclass(frozen=True)
class ReadConfig:
    """How every split of a run is read (from the stream's options)."""

    key: tuple
    cursor: str
    n: int
    batch_size: int
    fmt: str | None = None
    csv: CsvDialect = CsvDialect()
    light: bool = False       # JSON Lines key and cursor first (the target holds every bucket already)


@dataclass
class SplitRead:
    """What a read task hands back: its split's record count and each bucket's spill file."""

    index: int
    records: int
    files: list                 # bucket b's spill file path, or None when it got no row
    rows: list                  # rows routed to each bucket
    pid: int = 0


def read_split(split: Split, cfg: ReadConfig, out_dir: str) -> SplitRead:
    """Parse ``split`` once; write each bucket's rows to its own spill file under ``out_dir``
    (a sequence of length-prefixed pickled batches, Arrow data as Arrow IPC), and the records'
    texts once, to the split's texts file there (the batches point into it)."""
    paths = [os.path.join(out_dir, f"split{split.index:06d}-bucket{b:04d}.spill") for b in range(cfg.n)]
    outs: list = [None] * cfg.n
    rows = [0] * cfg.n
    records = 0
    texts_path = os.path.join(out_dir, f"split{split.index:06d}.texts")
    texts = None
    try:
        for raw in _batches(split, cfg, out_dir):
            records += len(raw)
            if raw.record_texts is not None:
                # Each record's text as it arrived (for the quarantine; a key-and-cursor batch's
                # lines, to parse in full): written once for every bucket, whose shares point
                # into it, not gathered into each share.
                texts = texts or open(texts_path, "wb")
                if isinstance(raw, LightBatch):
                    raw.spill(texts, texts_path)
                else:
                    raw.record_texts = raw.record_texts.spill(texts, texts_path)
            for b, part in enumerate(split_batch(raw, cfg.key, cfg.n)):
                if part is None or len(part) == 0:
                    continue
                if outs[b] is None:
                    outs[b] = open(paths[b], "wb")
                data = _dumps(part)
                outs[b].write(struct.pack("<Q", len(data)))
                outs[b].write(data)
                rows[b] += len(part)
    finally:
        for f in outs + [texts]:
            if f is not None:
                f.close()
    return SplitRead(split.index, records, [p if f is not None else None for p, f in zip(paths, outs)], rows,
                     os.getpid())


def read_batch_size(cfg: ReadConfig) -> int:
    """The batch size a read task reads with: ``n`` times the stream's, so each bucket's share of
    a batch is about a batch of the stream's size (the loader's fixed cost per batch, its lookups
    and joins, is not paid ``n`` times over), up to READ_BATCH_ROWS rows (the read task holds one
    such batch; a bigger ``--batch-size`` is kept as it is)."""
    return max(cfg.batch_size, min(cfg.batch_size * cfg.n, READ_BATCH_ROWS))


def _batches(split: Split, cfg: ReadConfig, out_dir: str):
    if split.kind == "sql":  # a key range of a SQL source (sources.sqlsplits.KeyRange)
        yield from split.batches()
        return
    grow = read_batch_size(cfg) // cfg.batch_size  # (the key-and-cursor reader's blocks grow alike)
    cfg = replace(cfg, batch_size=read_batch_size(cfg))
    if split.kind == "file":
        src = FileSource(split.path, cfg.fmt, cursor=cfg.cursor, batch_size=cfg.batch_size, csv=cfg.csv)
        src.names = {p: split.name for p in src.paths}
        src.light_key = cfg.key if cfg.light and src._fs is None and compression_of(split.path) is None else None
        try:
            yield from src.batches()
        finally:
            src.close()
        return
    if split.kind == "rows":
        import pyarrow.parquet as pq
        from .records import iso_columns
        from .base import RawBatch
        record = split.first_record
        pf = pq.ParquetFile(split.path)
        for rb in pf.iter_batches(batch_size=cfg.batch_size, row_groups=list(range(split.start, split.end))):
            tbl = pa.Table.from_batches([rb])
            yield RawBatch(iso_columns(tbl, cfg.cursor), split.name, record, {})
            record += tbl.num_rows
        return
    tmp = os.path.join(out_dir, f"split{split.index:06d}.part")
    _copy(split, tmp)
    shift = split.first_line - (2 if split.header else 1)  # a line of the part -> the file's line
    try:
        if split.fmt == "csv":
            reader = read_csv(tmp, split.name, cfg.cursor, cfg.batch_size, cfg.csv)
        elif cfg.light:
            reader = read_jsonl_light(tmp, split.name, cfg.cursor, cfg.batch_size, cfg.key, CHUNK_BYTES * grow)
        else:
            reader = read_jsonl(tmp, split.name, cfg.cursor, cfg.batch_size)
        for raw in reader:
            if getattr(raw, "_lines", None) is not None:  # a LightBatch: the file's lines, the file itself
                raw._lines = raw._lines + shift
                raw._file = split.path
            yield raw
    except InputError as exc:
        if exc.line is None or not shift:
            raise
        where = f"{exc.path or '<input>'}:{exc.line}" + (f":{exc.column}" if exc.column is not None else "")
        raise InputError(exc.message[len(where) + 2:], path=exc.path, line=exc.line + shift, column=exc.column,
                         hint=exc.hint) from None
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _copy(split: Split, dest: str) -> None:
    """The split's bytes (after the CSV header line, when it has one) into ``dest``."""
    with open(split.path, "rb") as src, open(dest, "wb") as out:
        if split.header:
            out.write(src.read(split.header))
            out.flush()  # (copy_file_range writes at the descriptor's position)
        todo = split.end - split.start
        offset = split.start
        while todo > 0:
            try:
                n = os.copy_file_range(src.fileno(), out.fileno(), todo, offset)
            except (AttributeError, OSError):
                src.seek(offset)
                while todo > 0:
                    chunk = src.read(min(todo, _SCAN))
                    if not chunk:
                        return
                    out.write(chunk)
                    todo -= len(chunk)
                return
            if n == 0:
                return
            todo -= n
            offset += n


def spilled(path: str):
    """The batches of one spill file, in the order they were written."""
    import pickle
    with open(path, "rb") as f:
        while head := f.read(8):
            (length,) = struct.unpack("<Q", head)
            yield pickle.loads(f.read(length))

"""What the readers share: Python rows as a batch, and the fix-ups more than one reader applies.

The exact path of every reader (JSON, JSON Lines, records handed over in Python, a quarantine
replay) turns Python rows into a :class:`~hiwater.sources.base.RawBatch` here, one type per
column; Arrow data (Parquet, tables handed over in Python) gets its times as ISO text here. Both
JSON Lines readers (whole and key-first) drop the cursor column pyarrow invents, and every text
reader names the first byte that is not UTF-8, with the helpers here. A module of its own so that
the readers that use these need not import each other.

Every JSON reader also keeps the text each record arrived as (:class:`SentText`): the quarantine
stores that text, never the record written again from its parsed values (SPEC §8), so ``1e400``
stays ``1e400`` (not ``Infinity``), ``-0.0`` and ``1.50`` keep their digits, and the fields keep
their order.
"""

from __future__ import annotations

import json
import os
from typing import Iterator

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..encode import NotStorable, py_json
from ..errors import InputError
from .base import RawBatch

BLOCK_BYTES = 4 << 20  # pyarrow's block (the longest line or row it takes), and a copy's chunk


class SentText:
    """The text each record of a batch arrived as: spans of the blocks of the file as read (a
    batch may span several), so the readers copy nothing per record; decoded only for the few
    records the quarantine stores. Picklable, for a window run's spill."""

    def __init__(self, data: bytes, starts: np.ndarray, ends: np.ndarray):
        self.parts = [(data, starts, ends)]

    @classmethod
    def joined(cls, parts: list) -> SentText:
        """The texts of several ``(data, starts, ends)`` parts, one after the other."""
        out = cls.__new__(cls)
        out.parts = [p for p in parts if len(p[1])] or [(b"", np.zeros(0, np.int64), np.zeros(0, np.int64))]
        return out

    @classmethod
    def of(cls, texts: list) -> SentText:
        """From one text (``bytes`` or ``str``) per record."""
        parts = [t.encode() if isinstance(t, str) else bytes(t) for t in texts]
        lengths = np.array([len(t) for t in parts], dtype=np.int64)
        ends = np.cumsum(lengths, dtype=np.int64)
        return cls(b"".join(parts), ends - lengths, ends)

    def __len__(self) -> int:
        return sum(len(starts) for _, starts, _ in self.parts)

    def __getitem__(self, row: int) -> str:
        for data, starts, ends in self.parts:
            if row < len(starts):
                return data[int(starts[row]):int(ends[row])].rstrip(b"\r").decode("utf-8", "replace")
            row -= len(starts)
        raise IndexError(row)

    def take(self, rows) -> SentText:
        """The texts of the rows at these positions (ascending)."""
        rows = np.asarray(rows, dtype=np.int64)
        bounds = np.cumsum([0] + [len(starts) for _, starts, _ in self.parts])
        part_of = np.searchsorted(bounds, rows, side="right") - 1
        out = []
        for i, (data, starts, ends) in enumerate(self.parts):
            local = rows[part_of == i] - bounds[i]
            out.append((data, starts[local], ends[local]))
        return SentText.joined(out)

    def spill(self, out, path: str) -> SentText:
        """The same texts, their bytes written once to the open file ``out`` (at ``path``): each
        part's stretch of its block as it is (no copy per record). The result reads a text back
        from the file when asked (:class:`FileBytes`), and pickles as a reference to it: the read
        phase of a bucketed run spills the texts of a split once, not once per bucket's share,
        and a bucket reads back only those of the records it quarantines."""
        return SentText.joined([spill_spans(data, starts, ends, out, path) for data, starts, ends in self.parts])

    def __getstate__(self):
        """Pickled (a window run's spill) with its own texts only, not the blocks they point into
        (texts spilled to a file: a reference to it)."""
        compact = []
        for data, starts, ends in self.parts:
            if isinstance(data, FileBytes):
                compact.append((data, starts, ends))
                continue
            lo, hi = (int(starts.min()), int(ends.max())) if len(starts) else (0, 0)
            if int((ends - starts).sum()) < (hi - lo) // 2:  # a few rows of a block (a bucket's share)
                compact.append(gather(data, starts, ends))
            else:
                compact.append((data[lo:hi], starts - lo, ends - lo))
        return compact

    def __setstate__(self, state):
        self.parts = state


class FileBytes:
    """``size`` bytes of the file at ``path`` from ``offset``, read when sliced (see
    :meth:`SentText.spill`); the file must stay as written while this is used."""

    def __init__(self, path: str, offset: int, size: int):
        self.path, self.offset, self.size = path, offset, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, cut: slice) -> bytes:
        start, stop, _ = cut.indices(self.size)
        with open(self.path, "rb") as f:
            f.seek(self.offset + start)
            return f.read(max(0, stop - start))


def spill_spans(data, starts: np.ndarray, ends: np.ndarray, out, path: str) -> tuple:
    """``(data, starts, ends)`` with the stretch of ``data`` the spans cover written to the open
    file ``out`` (at ``path``) and ``data`` a :class:`FileBytes` of it (spans already in a file,
    or none, stay as they are)."""
    if not len(starts) or isinstance(data, FileBytes):
        return data, starts, ends
    lo, hi = int(starts.min()), int(ends.max())
    offset = out.tell()
    with memoryview(data) as mv:
        out.write(mv[lo:hi])
    return FileBytes(path, offset, hi - lo), starts - lo, ends - lo


def materialized(data, starts: np.ndarray, ends: np.ndarray) -> tuple:
    """``(bytes, starts, ends)`` for spans of ``data``, a :class:`FileBytes` read once for all of them."""
    if not isinstance(data, FileBytes) or not len(starts):
        return data, starts, ends
    lo, hi = int(starts.min()), int(ends.max())
    return data[lo:hi], starts - lo, ends - lo


def gather(data, starts: np.ndarray, ends: np.ndarray) -> tuple:
    """The spans ``[starts, ends)`` of ``data`` copied one after the other: ``(bytes, starts, ends)``
    (spans of a :class:`FileBytes` are not copied: the file holds them, as they are)."""
    if isinstance(data, FileBytes):
        return data, np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(ends, dtype=np.int64) - starts
    new_ends = np.cumsum(lengths, dtype=np.int64)
    mv = memoryview(data)
    try:
        out = b"".join([mv[s:e] for s, e in zip(starts.tolist(), np.asarray(ends).tolist())])
    finally:
        mv.release()
    return out, new_ends - lengths, new_ends


def blocks(path: str, size: int) -> Iterator[bytes]:
    """The file in blocks of whole lines of about ``size`` bytes (the last may lack its newline)."""
    rest = b""
    with open(path, "rb") as f:
        while True:
            chunk = f.read(size)
            if not chunk:
                break
            buf = rest + chunk if rest else chunk
            cut = buf.rfind(b"\n")
            if cut < 0:
                rest = buf
                continue
            rest = buf[cut + 1:]
            yield buf[:cut + 1]
    if rest:
        yield rest


def line_spans(block: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The lines of a block that are records (blank ones are not: the readers skip them), as
    ``(starts, ends, line offsets within the block)``; an end excludes the newline."""
    arr = np.frombuffer(block, dtype=np.uint8)
    nl = np.flatnonzero(arr == 10)
    ends = (nl if block.endswith(b"\n") else np.append(nl, len(block))).astype(np.int64)
    starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64)
    keep = _not_blank(block, starts, ends)
    lines = np.arange(len(starts), dtype=np.int64)
    if not keep.all():
        starts, ends, lines = starts[keep], ends[keep], lines[keep]
    return starts, ends, lines


class LineReader:
    """The record lines of a JSON Lines file, handed out in the order pyarrow reads the records:
    :meth:`take` gives the next ``n`` as a :class:`SentText`. The file is mapped, not read: the
    texts point into the mapping (which outlives a temporary file's removal), nothing is copied."""

    def __init__(self, path: str):
        import mmap
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            self._data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        self._pos = 0
        self._pending: list = []  # (starts, ends) of a scanned stretch not yet handed out

    def _scan(self) -> bool:
        """The record lines of the next stretch of about BLOCK_BYTES (whole lines)."""
        data, lo = self._data, self._pos
        if lo >= len(data):
            return False
        hi = min(len(data), lo + BLOCK_BYTES)
        while hi < len(data) and data.rfind(b"\n", lo, hi) < 0:
            hi = min(len(data), hi + BLOCK_BYTES)  # a line longer than a block
        if hi < len(data):
            hi = data.rfind(b"\n", lo, hi) + 1
        arr = np.frombuffer(data, dtype=np.uint8, count=hi - lo, offset=lo)
        nl = np.flatnonzero(arr == 10)
        ends = nl if arr[-1] == 10 else np.append(nl, hi - lo)
        starts = np.concatenate(([0], ends[:-1] + 1))
        starts, ends = starts.astype(np.int64) + lo, ends.astype(np.int64) + lo
        keep = _not_blank(data, starts, ends)
        self._pending.append((starts[keep], ends[keep]) if not keep.all() else (starts, ends))
        self._pos = hi
        return True

    def take(self, n: int) -> SentText:
        parts, have = [], 0
        while have < n:
            if not self._pending:
                if not self._scan():
                    break
                continue
            starts, ends = self._pending[0]
            k = min(n - have, len(starts))
            parts.append((self._data, starts[:k], ends[:k]))
            have += k
            if k == len(starts):
                self._pending.pop(0)
            else:
                self._pending[0] = (starts[k:], ends[k:])
        return SentText.joined(parts)


def _not_blank(data, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Which lines are records: blank ones are not (the readers skip them)."""
    keep = (ends - starts) > 0
    for i in np.flatnonzero(keep & ((ends - starts) <= 4)).tolist():
        if not bytes(data[starts[i]:ends[i]]).strip():
            keep[i] = False
    return keep


def rows_to_batch(rows: list, path: str, first_record: int, cursor: str, texts: list | None = None) -> RawBatch:
    """Python rows (dicts, or anything else: an invalid record) as one batch. A column whose values
    have several types is left in ``mixed`` for prepare to judge against the target's column.
    ``texts``: each row's text as it arrived, when it came as text."""
    names: dict = {}
    problems: dict = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            problems[i] = f"record is a {_pykind(row)}, not an object"
            continue
        bad = next((k for k in row if not isinstance(k, str)), None)
        if bad is not None:  # (a DataFrame's or a dict's non-string column name: never a str() of it)
            problems[i] = f"field name {bad!r} is a {type(bad).__name__}, not a string"
            continue
        for k in row:
            names.setdefault(k, None)
    columns, fields, mixed, sent = [], [], {}, {}
    for name in names:
        values = [row.get(name) if isinstance(row, dict) and i not in problems else None
                  for i, row in enumerate(rows)]
        if name == cursor:
            # The cursor keeps its raw values; its parser judges them.
            values = [v if v is None or isinstance(v, (str, int)) and not isinstance(v, bool)
                      else _cursor_text(v) for v in values]
        arr = _column(values)
        if arr is None:
            mixed[name] = values
            arr = pa.nulls(len(rows))
        elif pa.types.is_string(arr.type) and any(isinstance(v, (dict, list)) for v in values):
            sent[name] = values  # nested values, now JSON text: the quarantine keeps the objects
        columns.append(arr)
        fields.append(name)
    sent_text = None if texts is None else SentText.of(texts)
    if not fields:
        return RawBatch(pa.table({}), path, first_record, problems, rows=len(rows), record_texts=sent_text)
    undeclared = frozenset(f for f, a in zip(fields, columns) if pa.types.is_decimal(a.type))
    return RawBatch(pa.Table.from_arrays(columns, names=fields), path, first_record, problems, mixed=mixed,
                    sent=sent, record_texts=sent_text, undeclared=undeclared)


def _column(values: list):
    """One Arrow column, or ``None`` when its values have several types.

    A column of mixed types is left to :mod:`hiwater.prepare`, which knows the
    target column's type and judges each value against it.
    """
    try:
        arr = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return None
    t = arr.type
    if pa.types.is_floating(t) and any(isinstance(v, bool) for v in values):
        return None  # pyarrow makes False after a float 0.0
    if pa.types.is_struct(t) or pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_map(t):
        if non_finite_or_beyond(arr, float("inf")):
            return None  # JSON text cannot hold NaN or Infinity: prepare judges the values
        try:
            return pa.array([None if v is None else py_json(v) for v in values], pa.string())
        except NotStorable:
            return None  # prepare gives each value that JSON cannot keep its reason
    return arr


def _pykind(v) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "dict"
    if isinstance(v, list):
        return "list"
    return type(v).__name__


def _cursor_text(v) -> str:
    try:
        return orjson.dumps(v).decode()
    except TypeError:  # an integer beyond 64 bits inside a list or object: the parser rejects it
        return json.dumps(v, default=str)


def non_finite_or_beyond(arr, limit: float) -> bool:
    t = arr.type
    if pa.types.is_floating(t):
        m = pc.max(pc.abs(arr)).as_py()  # ignores NaN
        return (m is not None and m >= limit) or pc.any(pc.is_nan(arr)).as_py() is True
    if isinstance(arr, pa.ChunkedArray):
        return any(non_finite_or_beyond(chunk, limit) for chunk in arr.chunks)
    if pa.types.is_struct(t):
        return any(non_finite_or_beyond(arr.field(i), limit) for i in range(t.num_fields))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return non_finite_or_beyond(arr.flatten(), limit)
    return False


def iso_columns(tbl: pa.Table, cursor: str) -> pa.Table:
    """Timestamps and dates (other than the cursor) become ISO 8601 text at their full
    precision: as Python's isoformat() prints whole microseconds (no fraction for whole
    seconds, else six digits; ``+00:00`` for an offset), nine digits for finer nanoseconds.
    Decimals stay Arrow decimals: the targets store them exactly."""
    for i, f in enumerate(tbl.schema):
        t = f.type
        if f.name == cursor or not (pa.types.is_timestamp(t) or pa.types.is_date(t)):
            continue
        col = tbl.column(i)
        if pa.types.is_date(t):
            text = col.cast(pa.string())
        else:
            if t.unit in ("s", "ms"):
                col = col.cast(pa.timestamp("us", t.tz))
            text = pc.strftime(col, "%Y-%m-%dT%H:%M:%S%z" if t.tz else "%Y-%m-%dT%H:%M:%S")  # 6 or 9 digits
            text = pc.replace_substring_regex(text, r"(\.[0-9]{6})000", r"\1")
            text = pc.replace_substring_regex(text, r"\.000000([+-]|$)", r"\1")
            if t.tz:
                text = pc.replace_substring_regex(text, r"([+-][0-9]{2})([0-9]{2})$", r"\1:\2")
        tbl = tbl.set_column(i, f.name, text)
    return tbl


def without_phantom(tbl: pa.Table, cursor: str, path: str) -> pa.Table:
    """The reader is told the cursor's type, so it gives a cursor column even when no line has
    the field. A column of nulls whose name the file never mentions is dropped: the field is
    missing, which the loader reports as a usage error, not as every record being invalid."""
    col = tbl.column(cursor)
    if col.null_count < len(col) or _mentions(path, cursor):
        return tbl
    return tbl.drop_columns([cursor])


def _mentions(path: str, name: str) -> bool:
    """Whether the file holds ``"name"`` anywhere (a key written with escapes is not seen, and
    then the column stays: the safe side)."""
    import mmap
    needle = json.dumps(name, ensure_ascii=False).encode()
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return False
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return m.find(needle) >= 0


def not_utf8(path: str, name: str, hint: str = "convert the file to UTF-8") -> InputError:
    """The error for a text file that is not UTF-8, naming the first bad byte."""
    return InputError(f"not UTF-8 text at byte {_first_bad_utf8(path)}", path=name, hint=hint)


def _first_bad_utf8(path: str) -> int:
    """The file offset of the first byte that is not valid UTF-8."""
    import codecs
    dec = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            try:
                dec.decode(chunk)
            except UnicodeDecodeError as exc:
                return offset + exc.start - len(dec.getstate()[0])
            offset += len(chunk)
    return offset

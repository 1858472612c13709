"""A file source read once per ``--window`` run.

A ``--window`` run passes over its records several times: a scan (which slices hold records),
the records outside the window, then one pass per slice. Reading the files again for each pass
would cost one parse (and, for objects, one download; for compressed files, one decompression)
per slice. :class:`Spilled` reads the source once, during the first pass, and writes each batch
as the reader gave it to a private temporary file; every later pass replays that file.

Memory stays bounded (one batch at a time, plus an offset per batch); the disk holds about the
Arrow size of the records read. The file is unlinked as soon as it is made, so a process that
is killed leaves nothing behind. It holds no state of the run: what is committed, and the file
manifest, are as without it.
"""

from __future__ import annotations

import mmap
import pickle
import tempfile
from contextlib import contextmanager
from typing import Iterator

import io

import pyarrow as pa

from .base import RawBatch, Source


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def _table(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()


def _array(data: bytes) -> pa.Array:
    return _table(data).column(0).combine_chunks()


def _chunked(data: bytes) -> pa.ChunkedArray:
    return _table(data).column(0)


class _Pickler(pickle.Pickler):
    """Arrow data through its IPC format, which writes a slice's own rows: pickling a slice of a
    larger table writes every row of the table under it (a reader's batches are slices of its
    blocks, so a small ``--batch-size`` would spill each block many times over)."""

    def reducer_override(self, obj):
        if isinstance(obj, pa.Table):
            return _table, (_ipc(obj),)
        if isinstance(obj, pa.ChunkedArray):
            return _chunked, (_ipc(pa.table({"c": obj})),)
        if isinstance(obj, pa.Array):
            return _array, (_ipc(pa.table({"c": obj})),)
        return NotImplemented


def _dumps(raw: RawBatch) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(raw)
    return buf.getvalue()


class Spilled(Source):
    """Wraps a source: the first :meth:`batches` reads it and spills; the next ones replay.

    Every other attribute is the wrapped source's, its declared abilities too, except
    ``light_key``: the loader sets that on the spill, so the wrapped source reads each record in
    full, which is what the replays must give.
    """

    def __init__(self, source):
        self.source = source
        self._file = None
        self._index: list[tuple[int, int]] = []  # (offset, length) of each spilled batch
        self._complete = False
        self._map = None

    def __getattr__(self, name):
        return getattr(self.source, name)

    # Source declares these with defaults, which __getattr__ would never reach.
    description = property(lambda self: self.source.description)
    rereadable = property(lambda self: self.source.rereadable)
    url = property(lambda self: self.source.url)
    spill_for_window = property(lambda self: self.source.spill_for_window)
    tracked = property(lambda self: self.source.tracked)
    replay = property(lambda self: self.source.replay)
    pushdown = property(lambda self: self.source.pushdown)

    def close(self) -> None:
        self.source.close()

    def expected_records(self) -> int | None:
        return self.source.expected_records()

    def set_window(self, lo, lo_inclusive, hi, kind, tz=None) -> None:
        self.source.set_window(lo, lo_inclusive, hi, kind, tz)

    def select(self, known: dict, reread: bool = False):
        return self.source.select(known, reread)

    def batches(self) -> Iterator[RawBatch]:
        if self._complete:
            yield from self._replay()
            return
        if self._file is not None:
            raise RuntimeError("a spilled source is read by one pass at a time")
        self._file = tempfile.TemporaryFile(prefix="hiwater-window-")
        offset = 0
        for raw in self.source.batches():
            # Pickled before it is handed on: the loader adds to a batch (its early-encoded
            # columns), and the replay must give the batch as the reader made it.
            data = _dumps(raw)
            self._file.write(data)
            self._index.append((offset, len(data)))
            offset += len(data)
            yield raw
        self._file.flush()
        self._complete = True

    def _replay(self) -> Iterator[RawBatch]:
        if not self._index:
            return
        if self._map is None:
            self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        view = memoryview(self._map)
        try:
            for offset, length in self._index:
                yield pickle.loads(view[offset:offset + length])
        finally:
            view.release()

    def close_spill(self) -> None:
        """Drop the spilled copy (the wrapped source stays open: its owner closes it)."""
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                pass  # a replay still holds a view; the file closes with the process
            self._map = None
        if self._file is not None:
            self._file.close()
            self._file = None
        self._index = []
        self._complete = False


@contextmanager
def read_once(source: Source):
    """The source for a ``--window`` run: a file source is spilled as its first pass reads it, so
    each file is read once per run, not once per slice; other sources are read as they are."""
    if not source.spill_for_window:
        yield source
        return
    spilled = Spilled(source)
    try:
        yield spilled
    finally:
        spilled.close_spill()

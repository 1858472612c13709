"""Data handed over in Python: ``hiwater.load(records, ...)``.

Accepted: a list (or tuple) of dicts, any iterable or iterator of dicts (a generator), a
pyarrow ``Table``, ``RecordBatch`` or ``RecordBatchReader``, and a pandas ``DataFrame``
(pandas is not imported unless one is passed). Each becomes the same :class:`RawBatch`
objects a file gives, so prepare, decide and the target treat them exactly as a file:

- dicts take the JSON exact path (:func:`~hiwater.sources.records.rows_to_batch`): a value
  keeps its Python type; a ``datetime``/``date`` cursor is read as its ISO text (a naive one
  in ``--assume-tz``), other ``datetime`` values are stored as ISO text;
- Arrow data takes the Parquet path: its types are kept, timestamps other than the cursor
  become ISO text at their full precision;
- a DataFrame is converted by pyarrow (``Table.from_pandas``, no index): NaN, NaT and None
  are pandas' missing values, so they load as NULL (in a list of dicts a NaN is a value,
  and an invalid one, as in JSON).

A one-shot input (an iterator, a generator, a RecordBatchReader) is read once; a run that
reads its source twice (``window=``) keeps the batches of the first reading in memory.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Iterator

import pyarrow as pa

from ..errors import UsageError
from .base import RawBatch, Source
from .records import iso_columns, rows_to_batch


def is_data(obj) -> bool:
    """Whether ``obj`` is in-memory data rather than a path (``str``/``PathLike``) or a source."""
    if obj is None or isinstance(obj, (str, bytes)) or hasattr(obj, "__fspath__"):
        return False
    if hasattr(obj, "batches") and hasattr(obj, "close"):
        return False  # a Source object
    if isinstance(obj, (pa.Table, pa.RecordBatch, pa.RecordBatchReader)) or _is_dataframe(obj):
        return True
    if isinstance(obj, dict):
        return False  # one dict is a mistake the caller hears about (see open_data)
    return hasattr(obj, "__iter__")


def _is_dataframe(obj) -> bool:
    t = type(obj)
    return t.__name__ == "DataFrame" and t.__module__.split(".")[0] == "pandas"


class DataSource(Source):
    """In-memory data as a source."""

    def __init__(self, obj, *, cursor: str = "modified_at", batch_size: int = 65_536, keep: bool = False):
        if isinstance(obj, dict):
            raise UsageError("hiwater.load: got one dict; pass a list of records ([record])")
        self.cursor = cursor
        self.batch_size = batch_size
        self._keep = keep          # read more than once: keep the batches of a one-shot input
        self._kept: list | None = None
        self._read = False
        if _is_dataframe(obj):
            try:
                obj = pa.Table.from_pandas(obj, preserve_index=False)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                raise UsageError(f"hiwater.load: the DataFrame cannot be read: {exc}") from None
            self.description = "<DataFrame>"
        elif isinstance(obj, (pa.Table, pa.RecordBatch)):
            self.description = "<arrow table>"
        elif isinstance(obj, pa.RecordBatchReader):
            self.description = "<arrow stream>"
        else:
            self.description = "<records>"
        if isinstance(obj, pa.RecordBatch):
            obj = pa.Table.from_batches([obj])
        self.obj = obj
        self.one_shot = isinstance(obj, pa.RecordBatchReader) or (
            not isinstance(obj, pa.Table) and iter(obj) is obj)

    @property
    def rereadable(self) -> bool:
        """Whether a run may read it again from the start (a list or a table; not an iterator)."""
        return not self.one_shot

    def batches(self) -> Iterator[RawBatch]:
        if self._kept is not None:
            yield from self._kept
            return
        if self.one_shot and self._read:
            raise UsageError(f"{self.description} was already read (an iterator can be read once); "
                             f"pass a list or a table")
        self._read = True
        keep = [] if (self.one_shot and self._keep) else None
        for b in self._produce():
            if keep is not None:
                keep.append(b)
            yield b
        if keep is not None:
            self._kept = keep

    def _produce(self) -> Iterator[RawBatch]:
        obj = self.obj
        first = 1
        if isinstance(obj, (pa.Table, pa.RecordBatchReader)):
            name = self.description
            batches = obj.to_batches(max_chunksize=self.batch_size) if isinstance(obj, pa.Table) else obj
            for rb in batches:
                for start in range(0, rb.num_rows, self.batch_size):
                    part = pa.Table.from_batches([rb.slice(start, self.batch_size)])
                    if part.num_rows == 0:
                        continue
                    yield RawBatch(iso_columns(part, self.cursor), name, first, {})
                    first += part.num_rows
            return
        it = iter(obj)
        while True:
            rows = list(itertools.islice(it, self.batch_size))
            if not rows:
                return
            yield rows_to_batch([self._cursor_text(r) for r in rows], self.description, first, self.cursor)
            first += len(rows)

    def _cursor_text(self, row):
        """A ``datetime``/``date`` cursor as ISO text (the cursor's parser reads text and integers)."""
        if isinstance(row, dict):
            v = row.get(self.cursor)
            if isinstance(v, (dt.date, dt.datetime)):
                row = dict(row)
                row[self.cursor] = v.isoformat()
        return row

    def close(self) -> None:
        self._kept = None

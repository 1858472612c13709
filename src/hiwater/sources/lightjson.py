"""JSON Lines read key and cursor first, for a run whose target already holds the stream.

A re-export is mostly records the target holds already, at the same version. Parsing and checking
all their fields only to count them ``unchanged`` is most of the cost of such a run. Here the
file is cut into blocks of whole lines; each block is parsed by pyarrow for the key and the cursor
only, and handed to the loader as a :class:`LightBatch`. The loader looks the keys up and asks
:meth:`LightBatch.expand` for the records whose stored version is not already current: only those
lines are parsed in full (by pyarrow with the file's schema, or by the exact reader when pyarrow
refuses them, as for a whole file), and they are checked exactly as any record is.

A block pyarrow cannot read for the key and cursor alone (a malformed line, a key of another
type, a BOM) is expanded whole, so the exact reader names the line as it always does.
"""

from __future__ import annotations

import json
import os
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.json as pajson

from .base import RawBatch
from .jsonl import FAST_REFUSED, json_error, open_jsonl, read_jsonl, refuse_filled_fields, refuse_inexact_floats
from .records import (BLOCK_BYTES, SentText, blocks, line_spans, materialized, not_utf8, rows_to_batch, spill_spans,
                      without_phantom)

CHUNK_BYTES = 8 << 20


class LightBatch(RawBatch):
    """Key and cursor of a block of records; :meth:`expand` gives some of them in full."""

    def __init__(self, table, name, first_record, file, block, starts, ends, lines, full_schema, cursor):
        super().__init__(table, name, first_record)
        self._file, self._block, self._starts, self._ends = file, block, starts, ends
        self._lines, self._schema, self._cursor = lines, full_schema, cursor

    def spill(self, out, path: str) -> None:
        """Write its lines once to the open file ``out`` (at ``path``) and point into it from now
        on (a bucketed run's read phase: see :meth:`SentText.spill`)."""
        self._block, self._starts, self._ends = spill_spans(self._block, self._starts, self._ends, out, path)
        self.record_texts = SentText(self._block, self._starts, self._ends)

    def expand(self, rows: np.ndarray) -> RawBatch:
        """The records at these row indices (ascending), fully parsed, numbered as in the file."""
        return _expand(self._block, self._starts[rows], self._ends[rows], self._lines[rows],
                       self.record_nos(rows), self.path, self._file, self._schema, self._cursor)


def _expand(block, starts, ends, lines, numbers, name, file, schema, cursor) -> RawBatch:
    block, starts, ends = materialized(block, starts, ends)
    mv = memoryview(block)
    raw = [bytes(mv[s:e]) for s, e in zip(starts.tolist(), ends.tolist())]
    numbers = np.asarray(numbers, dtype=np.int64)
    if schema is not None:
        try:
            tbl = pajson.read_json(pa.BufferReader(b"\n".join(raw)),
                                   read_options=pajson.ReadOptions(block_size=max(1 << 20, len(block) + 1),
                                                                   use_threads=False),
                                   parse_options=pajson.ParseOptions(explicit_schema=schema,
                                                                     unexpected_field_behavior="infer"))
            if tbl.num_rows != len(raw) or any(f.name not in schema.names for f in tbl.schema):
                raise pa.ArrowInvalid("a field the file's first block did not have")
            tbl.validate()
            for col in tbl.columns:
                refuse_inexact_floats(col)
                refuse_filled_fields(col)
            b = RawBatch(without_phantom(tbl, cursor, file), name, int(numbers[0]), {}, record_texts=SentText.of(raw))
            b.numbers = numbers
            return b
        except FAST_REFUSED:
            pass
    rows = []
    for line, lineno in zip(raw, lines.tolist()):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise json_error(exc, name, int(lineno)) from None
        except UnicodeDecodeError:
            raise not_utf8(file, name) from None
    b = rows_to_batch(rows, name, int(numbers[0]), cursor, texts=raw)
    b.numbers = numbers
    return b


def _light_schema(path: str, key: tuple, cursor: str) -> pa.Schema | None:
    """Key and cursor types from the file's first record: an integer or a string each (a block
    where a record has another type is read whole)."""
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                break
        else:
            return None
    try:
        first = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(first, dict):
        return None
    fields = []
    for name in (*key, cursor):
        v = first.get(name)
        if isinstance(v, bool) or not isinstance(v, (int, str)) or (isinstance(v, int) and abs(v) >= 2**63):
            return None
        fields.append(pa.field(name, pa.int64() if isinstance(v, int) else pa.string()))
    return pa.schema(fields)


def read_jsonl_light(path: str, name: str, cursor: str, batch_size: int, key: tuple,
                     chunk_bytes: int = CHUNK_BYTES) -> Iterator[RawBatch]:
    if os.path.getsize(path) == 0:
        return
    with open(path, "rb") as f:
        bom = f.read(3) == b"\xef\xbb\xbf"
    schema = None  # the whole file's schema as pyarrow reads it (None: the exact reader's)
    if not bom:
        try:
            schema = open_jsonl(path, cursor).schema
        except FAST_REFUSED:
            schema = None
    light = None if bom or cursor in key else _light_schema(path, key, cursor)
    if light is None:  # the whole file as it is always read
        yield from read_jsonl(path, name, cursor, batch_size)
        return
    record, line = 1, 1
    for block in blocks(path, chunk_bytes):
        starts, ends, offsets = line_spans(block)
        lines = line + offsets
        line += block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
        n = len(starts)
        if n == 0:
            continue
        tbl = None
        try:
            tbl = pajson.read_json(pa.BufferReader(block),
                                   read_options=pajson.ReadOptions(block_size=BLOCK_BYTES),
                                   parse_options=pajson.ParseOptions(explicit_schema=light,
                                                                     unexpected_field_behavior="ignore"))
            if tbl.num_rows != n:
                tbl = None
        except FAST_REFUSED:
            tbl = None
        for lo in range(0, n, batch_size):  # batches of at most batch_size records, as read whole
            hi = min(n, lo + batch_size)
            if tbl is None:  # read the block whole (the exact reader names a bad line)
                yield _expand(block, starts[lo:hi], ends[lo:hi], lines[lo:hi], record + np.arange(hi - lo),
                              name, path, schema, cursor)
            else:
                b = LightBatch(tbl.slice(lo, hi - lo), name, record, path, block, starts[lo:hi], ends[lo:hi],
                               lines[lo:hi], schema, cursor)
                b.record_texts = SentText(block, starts[lo:hi], ends[lo:hi])
                yield b
            record += hi - lo

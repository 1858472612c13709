"""JSON and JSON Lines files: pyarrow's streaming reader, or the exact reader when it refuses.

The fast path is pyarrow's JSON reader (streaming, columnar, bounded by the block size). When a
file is messier than it accepts (a field whose type changes, a malformed line, a number it would
round), the exact reader takes over for that file: it parses with the standard library, names the
line and column of a syntax error, and leaves values of the wrong type for prepare to judge per
record. A JSON array is always read exactly (whole: it is one value).
"""

from __future__ import annotations

import json
import os
import re
from typing import Iterator

import pyarrow as pa
import pyarrow.json as pajson

from ..errors import InputError
from .base import RawBatch
from .records import BLOCK_BYTES, LineReader, non_finite_or_beyond, not_utf8, rows_to_batch, without_phantom


def json_error(exc: json.JSONDecodeError, name: str, line: int | None = None) -> InputError:
    return InputError(f"malformed JSON: {exc.msg}", path=name,
                      line=line if line is not None else exc.lineno, column=exc.colno)


def read_json_array(path: str, name: str, cursor: str, batch_size: int) -> Iterator[RawBatch]:
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.strip():
        return
    try:
        records, texts = _array_items(data)
    except (json.JSONDecodeError, UnicodeDecodeError, _NotAnArray):
        records, texts = _whole(data, path, name), None
    del data
    if isinstance(records, dict):
        records = [records]
    if not isinstance(records, list):
        raise InputError("a JSON file must hold an array of objects (or use JSON Lines)", path=name)
    for start in range(0, len(records), batch_size):
        part = None if texts is None else texts[start:start + batch_size]
        yield rows_to_batch(records[start:start + batch_size], name, start + 1, cursor, part)


class _NotAnArray(ValueError):
    """The file is not a JSON array (its whole parse says what it is instead)."""


_SPACE = re.compile(r"[ \t\n\r]*")


def _array_items(data: bytes) -> tuple[list, list]:
    """The elements of a JSON array and the text of each, as written (for the quarantine). The
    standard parser keeps integers of any size exactly (orjson turns huge ones into floats). Any
    error, and a file that is not an array, is left to :func:`_whole`, which names it as always."""
    text = data.decode("utf-8")
    decode = json.JSONDecoder().raw_decode
    pos = _SPACE.match(text, 0).end()
    if text[pos:pos + 1] != "[":
        raise _NotAnArray
    records, texts = [], []
    pos = _SPACE.match(text, pos + 1).end()
    if text[pos:pos + 1] == "]":
        pos += 1
    else:
        while True:
            value, end = decode(text, pos)
            records.append(value)
            texts.append(text[pos:end])
            pos = _SPACE.match(text, end).end()
            if text[pos:pos + 1] == "]":
                pos += 1
                break
            if text[pos:pos + 1] != ",":
                raise _NotAnArray
            pos = _SPACE.match(text, pos + 1).end()
    if _SPACE.match(text, pos).end() != len(text):
        raise _NotAnArray
    return records, texts


def _whole(data: bytes, path: str, name: str):
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise json_error(exc, name) from None
    except UnicodeDecodeError:
        raise not_utf8(path, name) from None


# pyarrow's JSON reader refuses a file, or accepts bytes that are not UTF-8 in a field name and
# fails when the name is read: the exact reader then names the line and byte.
FAST_REFUSED = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, UnicodeDecodeError)


def read_jsonl(path: str, name: str, cursor: str, batch_size: int) -> Iterator[RawBatch]:
    """JSON Lines: pyarrow's streaming reader, or the exact reader if it refuses the file."""
    if os.path.getsize(path) == 0:
        return
    fast = _read_jsonl_fast(path, name, cursor, batch_size)
    emitted = 0
    try:
        first = next(fast)
    except StopIteration:
        return
    except FAST_REFUSED:
        first = None
    if first is not None:
        # pyarrow may still refuse a later block: a file of up to one batch is probed whole
        # before anything is yielded (one reader judges it all); a larger one starts streaming
        # after its first batch, so writing begins early.
        batches = [first]
        try:
            for b in fast:
                batches.append(b)
                if sum(len(x) for x in batches) >= batch_size:
                    break
            else:
                yield from batches
                return
        except FAST_REFUSED:
            batches = None
        if batches is not None:
            # A large file: stream on, falling back if a later block is refused.
            try:
                for b in batches:
                    yield b
                    emitted += len(b)
                for b in fast:
                    yield b
                    emitted += len(b)
                return
            except FAST_REFUSED:
                pass
    yield from _read_jsonl_exact(path, name, cursor, batch_size, skip=emitted)


def open_jsonl(path: str, cursor: str):
    """pyarrow's JSON reader with every JSON string read as a string.

    pyarrow turns strings that look like timestamps or dates into timestamps (at any depth), and
    their text cannot be given back. Its schema comes from the first block (a later block with
    another field is refused), so when that schema has one, the file is opened again with the
    same schema where those are strings: only the first block is parsed twice.
    """
    def open_with(schema):
        parse = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
        return pajson.open_json(path, read_options=pajson.ReadOptions(block_size=BLOCK_BYTES),
                                parse_options=parse)

    reader = open_with(pa.schema([(cursor, pa.string())]))
    text = pa.schema([f.with_type(_strings_for_times(f.type)) for f in reader.schema])
    return reader if text.equals(reader.schema) else open_with(text)


def _strings_for_times(t: pa.DataType) -> pa.DataType:
    if pa.types.is_temporal(t):
        return pa.string()
    if pa.types.is_struct(t):
        return pa.struct([t.field(i).with_type(_strings_for_times(t.field(i).type)) for i in range(t.num_fields)])
    if pa.types.is_list(t):
        return pa.list_(t.value_field.with_type(_strings_for_times(t.value_type)))
    return t


def _read_jsonl_fast(path: str, name: str, cursor: str, batch_size: int) -> Iterator[RawBatch]:
    with open(path, "rb") as f:
        if f.read(3) == b"\xef\xbb\xbf":
            raise pa.ArrowInvalid("BOM")
    reader = open_jsonl(path, cursor)
    lines = LineReader(path)  # each record's text, for the quarantine
    record = 1
    pending: list = []  # blocks (one schema: the reader enforces it) not yet handed on
    for rb in reader:
        tbl = pa.Table.from_batches([rb])
        tbl.validate()  # pyarrow 26 builds a broken list from [null, "x"]: the exact reader takes it
        for col in tbl.columns:
            refuse_inexact_floats(col)
            refuse_filled_fields(col)
        pending.append(tbl)
        if record > 1 and sum(t.num_rows for t in pending) < batch_size:
            continue  # small blocks make batches of up to batch_size; the first goes at once
        tbl = pa.concat_tables(pending) if len(pending) > 1 else pending[0]
        pending = []
        for start in range(0, tbl.num_rows, batch_size):
            part = tbl.slice(start, batch_size)
            if part.num_rows < batch_size and record > 1 and start > 0:
                pending = [part]  # a remainder waits for the next block
                break
            yield RawBatch(without_phantom(part, cursor, path), name, record, {},
                           record_texts=lines.take(part.num_rows))
            record += part.num_rows
    if pending:
        tbl = pa.concat_tables(pending) if len(pending) > 1 else pending[0]
        yield RawBatch(without_phantom(tbl, cursor, path), name, record, {}, record_texts=lines.take(tbl.num_rows))


def refuse_inexact_floats(arr) -> None:
    """Send a block to the exact reader when a number in it (at any depth) may not be the
    source's: integers too large for int64 arrive from pyarrow as doubles, rounded; and pyarrow
    reads ``NaN``/``Infinity`` (also ``-NaN`` and ``Inf``, which are not JSON), which the exact
    reader keeps as Python floats for prepare to refuse, nested ones too."""
    if non_finite_or_beyond(arr, 2**53):
        raise pa.ArrowInvalid("numbers beyond 2**53, NaN or Infinity")


def refuse_filled_fields(arr) -> None:
    """pyarrow gives every object of a column every field any of them has, as null: ``{}``
    would come back as ``{"a": null}``. Where a nested object holds a null field the reader
    cannot say whether the source had it, so the exact reader takes the block."""
    if isinstance(arr, pa.ChunkedArray):
        for chunk in arr.chunks:
            refuse_filled_fields(chunk)
        return
    t = arr.type
    if pa.types.is_struct(t):
        import pyarrow.compute as pc
        valid = arr.is_valid()
        for i in range(t.num_fields):
            child = arr.field(i)
            if child.null_count and pc.any(pc.and_(valid, child.is_null())).as_py():
                raise pa.ArrowInvalid("a nested object with a null or missing field")
            refuse_filled_fields(child)
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        refuse_filled_fields(arr.flatten())


def _read_jsonl_exact(path: str, name: str, cursor: str, batch_size: int, skip: int = 0) -> Iterator[RawBatch]:
    rows: list = []
    texts: list = []
    record = 0
    first = skip + 1
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            if not line.strip():
                continue
            record += 1
            if record <= skip:
                continue
            line = line.rstrip(b"\r\n")
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise json_error(exc, name, lineno) from None
            except UnicodeDecodeError:
                raise not_utf8(path, name) from None
            texts.append(line)
            if len(rows) >= batch_size:
                yield rows_to_batch(rows, name, first, cursor, texts)
                first += len(rows)
                rows, texts = [], []
    if rows:
        yield rows_to_batch(rows, name, first, cursor, texts)

"""CSV files: the dialect (delimiter, quote, encoding), pyarrow's reader, or the exact reader.

A file is read with the delimiter and quote given (``--csv-delimiter``, ``--csv-quote``), else
the delimiter is sniffed per file: among ``,`` ``;`` tab and ``|``, the one that splits the first
rows (quotes respected) into the same number of fields, the most fields winning, ``,`` when
none does. The text must be UTF-8 (a UTF-8 BOM is skipped) unless ``--encoding`` names another
Python codec: the file is then transcoded to UTF-8 first, and a byte that is not text in that
encoding is one error naming the file and its offset. Nothing guesses an encoding: a file that
is not UTF-8 is refused with a hint to pass ``--encoding``. What each file was read with is
reported (:attr:`CsvDialect.described`), for the summary's details.

Every cell is read as text; a column becomes a number only when every cell is a number that
gives the same text back (SPEC §8: ``02134`` stays text).
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import tempfile
from dataclasses import dataclass
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..errors import InputError
from .base import RawBatch
from .records import BLOCK_BYTES, not_utf8

DELIMITERS = (",", ";", "\t", "|")
_SNIFF_BYTES = 1 << 16
_SNIFF_ROWS = 20
ENCODING_HINT = "pass --encoding with the file's encoding (for example --encoding latin-1 or cp1252)"


@dataclass(frozen=True)
class CsvDialect:
    """How CSV files are read: ``None`` for the delimiter means sniffed per file, for the
    encoding UTF-8."""

    delimiter: str | None = None
    quote: str = '"'
    encoding: str | None = None

    @property
    def codec(self) -> str:
        """The encoding's Python name (``utf-8`` by default)."""
        return codecs.lookup(self.encoding or "utf-8").name

    def described(self, delimiter: str) -> dict:
        """What a file was read with, for the summary."""
        return {"delimiter": delimiter, "quote": self.quote, "encoding": self.encoding or "utf-8",
                "sniffed": [] if self.delimiter else ["delimiter"]}


def read_csv(path: str, name: str, cursor: str, batch_size: int, dialect: CsvDialect | None = None,
             seen: dict | None = None) -> Iterator[RawBatch]:
    """The records of a CSV file; what it was read with goes into ``seen[name]``."""
    dialect = dialect or CsvDialect()
    if os.path.getsize(path) == 0:
        return
    text = path
    if dialect.codec not in ("utf-8", "utf-8-sig"):
        text = _transcode(path, name, dialect)
    try:
        delimiter = dialect.delimiter or sniff_delimiter(text, dialect.quote)
        if seen is not None:
            seen[name] = dialect.described(delimiter)
        yield from _read(text, name, cursor, batch_size, delimiter, dialect.quote)
    finally:
        if text != path:
            os.unlink(text)


def _read(path: str, name: str, cursor: str, batch_size: int, delimiter: str, quote: str) -> Iterator[RawBatch]:
    emitted = 0
    try:
        for rb in _open_csv(path, delimiter, quote):
            tbl = pa.Table.from_batches([rb])
            for start in range(0, tbl.num_rows, batch_size):
                part = tbl.slice(start, batch_size)
                yield _csv_batch(part, name, emitted + 1, cursor)
                emitted += part.num_rows
        return
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError):
        pass  # the exact reader names the line (or the byte that is not UTF-8)
    yield from read_csv_exact(path, name, cursor, batch_size, skip=emitted, delimiter=delimiter, quote=quote)


def _transcode(path: str, name: str, dialect: CsvDialect) -> str:
    """A UTF-8 copy of a file in another encoding (a temporary file next to the spool)."""
    fd, out = tempfile.mkstemp(prefix="hiwater-utf8-", suffix=".csv")
    decoder = codecs.getincrementaldecoder(dialect.codec)()
    offset = 0
    try:
        with open(path, "rb") as src, os.fdopen(fd, "w", encoding="utf-8", newline="") as dst:
            while chunk := src.read(BLOCK_BYTES):
                try:
                    dst.write(decoder.decode(chunk))
                except UnicodeDecodeError as exc:
                    at = offset + exc.start - len(decoder.getstate()[0])
                    raise InputError(f"not {dialect.encoding} text at byte {at}", path=name,
                                     hint="check --encoding") from None
                offset += len(chunk)
            try:
                dst.write(decoder.decode(b"", final=True))
            except UnicodeDecodeError:
                raise InputError(f"not {dialect.encoding} text at byte {offset - 1}: the file ends inside a "
                                 f"character", path=name, hint="check --encoding") from None
    except BaseException:
        os.unlink(out)
        raise
    return out


def sniff_delimiter(path: str, quote: str = '"') -> str:
    """The delimiter among :data:`DELIMITERS` that splits the first rows into the same number of
    fields (more than one), the most fields winning (then the order of the list); else ``,``."""
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
        whole = not f.read(1)
    sample = head.decode("utf-8", "ignore").lstrip("\ufeff")
    if not whole:
        sample = sample[:sample.rfind("\n") + 1]  # whole lines only
    best, most = ",", 1
    for d in DELIMITERS:
        if d == quote:
            continue
        try:
            rows = [r for r in csv.reader(io.StringIO(sample, newline=""), delimiter=d, quotechar=quote) if r]
        except csv.Error:
            continue
        if not whole and len(rows) > 1:
            rows = rows[:-1]  # the last row may be cut inside a quoted field
        widths = {len(r) for r in rows[:_SNIFF_ROWS]}
        if len(widths) == 1 and (n := widths.pop()) > most:
            best, most = d, n
    return best


def _open_csv(path: str, delimiter: str = ",", quote: str = '"'):
    """pyarrow's CSV reader with every column read as text, an empty cell as null. It has no
    option for "every column", so the header's names come from a first reading of the first block."""
    read = pacsv.ReadOptions(block_size=BLOCK_BYTES)
    parse = pacsv.ParseOptions(delimiter=delimiter, quote_char=quote)
    try:
        names = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 16),
                               parse_options=parse).schema.names
    except pa.ArrowInvalid:  # a header (or first row) longer than that
        names = pacsv.open_csv(path, read_options=read, parse_options=parse).schema.names
    convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                   strings_can_be_null=True, null_values=[""])
    reader = pacsv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)
    if any(f.type != pa.string() for f in reader.schema):
        raise pa.ArrowInvalid("a CSV column was not read as text")
    return reader


# A cell is a number only when the number gives the same text back: canonical integers
# ("007", "+7" and "-0" are not), and reals (not "-0.0": no target keeps a negative zero) in the form Python's repr() prints (fixed
# notation with ".0" for 1e-4 <= |x| < 1e16, else d[.ddd]e±XX; no trailing zeros), with the
# shortest digits that give the float back (checked against Arrow's own shortest text).
_INT_TEXT = r"^(0|-?[1-9][0-9]*)$"
_REAL_TEXT = (r"^-?([1-9][0-9]{0,15}\.(0|[0-9]*[1-9])|0\.0{0,3}[1-9]([0-9]*[1-9])?)$|^0\.0$"  # not -0.0
              r"|^-?[1-9](\.[0-9]*[1-9])?e(\+(1[6-9]|[2-9][0-9]|[1-9][0-9]{2})|-(0[5-9]|[1-9][0-9]|[1-9][0-9]{2}))$")


def _csv_batch(tbl: pa.Table, path: str, first_record: int, cursor: str) -> RawBatch:
    """A batch of CSV cells (text, empty = null) with each column typed where that loses nothing
    (SPEC §8): int64 if every cell is canonical integer text within 64 bits, float64 if every
    cell is the shortest text of a finite float, else text. The cells of a column typed as a
    number go along in ``texts``; a column with no value at all has no type yet (like JSON's)."""
    texts = {}
    for i, name in enumerate(tbl.column_names):
        if name == cursor:
            continue
        col = tbl.column(i).combine_chunks()
        if col.null_count == len(col):
            tbl = tbl.set_column(i, name, pa.nulls(len(col)))
            continue
        number = _csv_number(col)
        if number is not None:
            tbl = tbl.set_column(i, name, number)
            texts[name] = col
    return RawBatch(tbl, path, first_record, {}, texts=texts, csv=True)


def _csv_number(col: pa.Array):
    if _all_match(col, _INT_TEXT):
        try:
            return pc.cast(col, pa.int64())
        except pa.ArrowInvalid:
            return None  # beyond 64 bits
    if _all_match(col, _REAL_TEXT):
        real = pc.cast(col, pa.float64())
        shortest = real.cast(pa.string())  # Arrow's shortest text, often the cell itself ("306.16")
        other = pc.invert(pc.fill_null(pc.equal(col, shortest), True))
        if pc.all(pc.equal(_digits(col.filter(other)), _digits(shortest.filter(other)))).as_py() is not False:
            return real
    return None


def _all_match(col: pa.Array, pattern: str) -> bool:
    """Every cell matches; a look at the first ones first (where most text columns stop)."""
    return all(pc.all(pc.match_substring_regex(part, pattern)).as_py() is not False
               for part in (col.slice(0, 64), col))


def _digits(text: pa.Array) -> pa.Array:
    """The significant digits of decimal number text ("-1.50e+16" -> "15")."""
    return pc.utf8_trim(pc.replace_substring_regex(text, r"^-|\.|e.*$", ""), "0")


def read_csv_exact(path: str, name: str, cursor: str, batch_size: int, skip: int = 0, delimiter: str = ",",
                   quote: str = '"') -> Iterator[RawBatch]:
    try:
        with open(path, "r", encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, strict=True, delimiter=delimiter, quotechar=quote)
            try:
                header = next(reader)
            except StopIteration:
                return
            if len(set(header)) != len(header):
                raise InputError("the header names a column twice", path=name, line=1)
            rows: list = []
            first = skip + 1
            record = 0
            for row in reader:
                if not row:
                    continue  # a blank line (pyarrow skips them too)
                record += 1
                if record <= skip:
                    continue
                if len(row) != len(header):
                    raise InputError(f"expected {len(header)} fields, found {len(row)}", path=name,
                                     line=reader.line_num)
                rows.append(row)
                if len(rows) >= batch_size:
                    yield _csv_batch(_csv_table(header, rows), name, first, cursor)
                    first += len(rows)
                    rows = []
            if rows:
                yield _csv_batch(_csv_table(header, rows), name, first, cursor)
    except csv.Error as exc:
        raise InputError(f"malformed CSV: {exc}", path=name, line=getattr(reader, "line_num", None)) from None
    except UnicodeDecodeError:
        raise not_utf8(path, name, hint=ENCODING_HINT) from None


def _csv_table(header: list, rows: list) -> pa.Table:
    return pa.Table.from_arrays([pa.array([v or None for v in col], pa.string()) for col in zip(*rows)],
                                names=header)

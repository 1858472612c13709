"""What every source gives the loader."""

from __future__ import annotations

from dataclasses import dataclass, field
from abc import ABC, abstractmethod
from typing import Iterator

import pyarrow as pa


@dataclass
class RawBatch:
    """A bounded slice of a source, in source order.

    ``first_record`` is the 1-based number of the batch's first record within
    ``path``, so an error can name "file: record N". ``problems`` maps a row
    index of the batch to a reason the reader already knows the row is invalid
    (for example a value of another type than the rest of its column).
    ``texts`` keeps, for each CSV column the reader typed as a number, the cells as
    they were written (empty = null), so a TEXT target column can store them as sent.
    """

    table: pa.Table
    path: str
    first_record: int
    problems: dict = field(default_factory=dict)
    rows: int | None = None  # set when the table has no columns at all
    mixed: dict = field(default_factory=dict)  # column -> Python values of several types
    stored: dict = field(default_factory=dict)  # column -> its stored form (JSON/ISO text), made early
    sent: dict = field(default_factory=dict)  # column -> Python values as sent, where the table holds another form
    csv: bool = False  # cells that were text, typed by the reader (a column's type is a guess)
    texts: dict = field(default_factory=dict)  # CSV column read as a number -> its cells' text (pa.string)
    # Each record's text as it arrived (a records.SentText, from the JSON readers): the quarantine keeps it.
    record_texts: object = None
    # The 1-based record number of each row, when the rows are not consecutive records (a
    # bucket's rows, or the records of a LightBatch that must be written); sorted ascending.
    numbers: object = None
    # Columns whose decimal type was inferred from the values (Python Decimals, a SQL numeric
    # without precision), not declared by the source: their column keeps any precision.
    undeclared: frozenset = frozenset()

    def record_numbers(self):
        """Every row's record number."""
        import numpy as np
        if self.numbers is not None:
            return np.asarray(self.numbers)
        return self.first_record + np.arange(len(self), dtype=np.int64)

    def __len__(self) -> int:
        return self.rows if self.rows is not None else self.table.num_rows

    def record_nos(self, idx):
        """The record numbers (1-based, within ``path``) of the rows at positions ``idx``."""
        import numpy as np
        idx = np.asarray(idx, dtype=np.int64)
        return self.first_record + idx if self.numbers is None else np.asarray(self.numbers)[idx]

    def position(self, record_no: int) -> int:
        """The row of this batch that holds record ``record_no``."""
        if self.numbers is None:
            return record_no - self.first_record
        import numpy as np
        return int(np.searchsorted(self.numbers, record_no))


class Source(ABC):
    """A source as the loader sees it: ``description`` and :meth:`batches` (and :meth:`close`),
    plus the optional abilities only some sources have.

    Each ability is declared here with the default that means "this source does not have it", so
    the loader asks every source the same way. A source that has one overrides it: a file source
    is spilled for a window run, tracked by the manifest and read key-first; a SQL source takes
    the window as a pushdown and has a URL to mask; in-memory data may be read only once.
    """

    description: str
    # Whether a run may read it again from the start (a run restarts when a later batch shows a
    # wider cursor kind); an iterator handed over in Python cannot.
    rereadable: bool = True
    # The source's URL: any password in it is masked in the error text a failed run records.
    url: str | None = None
    # It takes the run's window as a pushdown (:meth:`set_window`): a SQL source reads only the window.
    pushdown: bool = False
    # A --window run reads it once and replays a spilled copy per slice (hiwater.sources.spill).
    spill_for_window: bool = False
    # A folder or glob that the file manifest narrows with :meth:`select` (SPEC §10).
    tracked: bool = False
    # A quarantine replay: a newest cursor older than the watermark is no sign of a truncated source.
    replay: bool = False
    # Set by the loader before a pass: JSON Lines read key and cursor first (sources/lightjson.py).
    # A source that reads every record in full whatever it is ignores it.
    light_key: tuple | None = None

    @abstractmethod
    def batches(self) -> Iterator[RawBatch]:
        """The records, in bounded batches in source order."""

    def close(self) -> None:
        """Release what the source holds (temporary files, a connection)."""

    def expected_records(self) -> int | None:
        """An estimate of the number of records, for a progress bar's ETA; ``None`` when unknown."""
        return None

    def set_window(self, lo: int | None, lo_inclusive: bool, hi: int | None, kind: str, tz=None) -> None:
        """Read only the run's window from now on (a pushdown). By default the source gives every
        record and the loader places each one against the window itself."""

    def select(self, known: dict, reread: bool = False):
        """Narrow a tracked source to the files the manifest ``known`` does not hold at their
        version; the loader calls it only when :attr:`tracked` is true."""
        raise NotImplementedError(f"{type(self).__name__} is not tracked by the file manifest")

    def close_spill(self) -> None:
        """Drop a spilled copy (:class:`~hiwater.sources.spill.Spilled`); a source has none."""


def as_source(obj) -> Source:
    """``obj`` as a :class:`Source`. ``hiwater.load(source=...)`` takes any object with
    ``batches()`` and ``close()``; one that does not inherit :class:`Source` is wrapped, so the
    loader reads every ability the same way and gets the declared default where the object has none."""
    return obj if isinstance(obj, Source) else _Adapted(obj)


class _Adapted(Source):
    """Another object's attributes where it has them, :class:`Source`'s defaults elsewhere (an
    ability the loader sets, ``light_key``, reaches the object only if it has one, as before)."""

    def __init__(self, obj):
        object.__setattr__(self, "_adapted", obj)

    def __getattribute__(self, name):
        try:
            return getattr(object.__getattribute__(self, "_adapted"), name)
        except AttributeError:
            return object.__getattribute__(self, name)

    def __setattr__(self, name, value):
        obj = object.__getattribute__(self, "_adapted")
        if hasattr(obj, name):
            setattr(obj, name, value)
        else:
            object.__setattr__(self, name, value)

    def batches(self) -> Iterator[RawBatch]:
        return object.__getattribute__(self, "_adapted").batches()

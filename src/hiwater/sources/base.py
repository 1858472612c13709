"""What every source gives the loader."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Protocol

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
    # The 1-based record number of each row, when the rows are not consecutive records (a
    # bucket's rows, or the records of a LightBatch that must be written); sorted ascending.
    numbers: object = None

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


class Source(Protocol):
    description: str

    def batches(self) -> Iterator[RawBatch]: ...

    def close(self) -> None: ...

"""The apply phase's source: one bucket's rows, as the read phase spilled them.

The read tasks (:mod:`hiwater.sources.splits`) wrote each bucket's share of each split to a
spill file. :class:`ShuffledSource` gives a bucket's apply task those batches in split order
(the files' order, and within a file its byte ranges' order), numbered as in the whole file,
and stands for the file source towards the loader: its description, its file manifest
selection (the files the coordinator planned: a file counts as read only once every bucket has
recorded it), its record count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .base import RawBatch, Source
from .files import FileSelection
from .lightjson import LightBatch
from .splits import spilled


@dataclass(frozen=True)
class BucketShare:
    """What one bucket's apply task reads: ``parts``, its spill files in split order with the
    number to add to each one's record numbers, and the planned file selection."""

    parts: tuple                 # ((spill file path, record offset), ...)
    records: int
    description: str
    tracked: bool = False
    listed: int = 0
    read: tuple = ()             # FileEntry of each file read
    names: tuple = ()            # the name its records carry, aligned with ``read``
    skipped: int = 0
    listed_paths: frozenset = frozenset()  # the FileEntry.path of every listed file
    sql: object = None           # a SQL source's read phase: what it read (sources.sqlsplits.ReadWindow)


class ShuffledSource(Source):
    """A bucket's spilled rows (see the module's docstring)."""

    rereadable = True

    def __init__(self, share: BucketShare):
        self.share = share
        self.description = share.description
        self.tracked = share.tracked

    def expected_records(self) -> int | None:
        return self.share.records

    def select(self, known: dict, reread: bool = False) -> FileSelection:
        """The files the coordinator planned for every bucket (it took every bucket's manifest
        into account); the vanished ones against this bucket's own manifest."""
        s = self.share
        vanished = sorted(p for p in known if p not in s.listed_paths)
        return FileSelection(s.listed, list(s.read), s.skipped, vanished, list(s.names))

    def batches(self) -> Iterator[RawBatch]:
        for path, offset in self.share.parts:
            for raw in spilled(path):
                if offset:
                    raw.first_record += offset
                    if raw.numbers is not None:
                        raw.numbers = np.asarray(raw.numbers) + offset
                if isinstance(raw, LightBatch) and self.light_key is None:
                    raw = raw.expand(np.arange(len(raw)))  # this pass reads every record in full
                yield raw

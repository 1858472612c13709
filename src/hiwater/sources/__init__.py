"""Sources yield :class:`~hiwater.sources.base.RawBatch` objects: bounded Arrow batches in source order."""

from .base import RawBatch, Source
from .files import FileSource, open_files

__all__ = ["RawBatch", "Source", "FileSource", "open_files"]

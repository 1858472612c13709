"""The run summary: six keys first, always in the same order, then the details."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

HEADLINE = ("source_records", "loaded", "skipped", "previous_watermark", "new_watermark", "total_in_target")
COUNTS = ("inserted", "updated", "unchanged", "late", "late_applied", "future", "below_window", "rejected", "deleted")


@dataclass
class Counts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    late: int = 0           # late records NOT applied (quarantined) -> skipped
    late_applied: int = 0   # late records applied with --on-late load -> inside inserted/updated
    future: int = 0
    below_window: int = 0
    rejected: int = 0
    deleted: int = 0        # deletes applied -> inside updated
    beyond_until: int = 0   # records past --until -> inside below_window

    def add(self, other: "Counts") -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def loaded(self) -> int:
        return self.inserted + self.updated

    @property
    def skipped(self) -> int:
        return self.unchanged + self.late + self.future + self.below_window

    @property
    def source_records(self) -> int:
        return self.loaded + self.skipped + self.rejected


@dataclass
class Summary:
    """What a run did. ``to_dict()`` is the JSON the CLI prints."""

    counts: Counts
    previous_watermark: object
    new_watermark: object
    total_in_target: int
    stream: str
    table: str
    mode: str
    run_id: int | None
    dry_run: bool = False
    stale_source: bool = False
    warnings: list = field(default_factory=list)
    windows: list = field(default_factory=list)
    pruned: int = 0
    new_columns: list = field(default_factory=list)
    duration_s: float | None = None  # seconds from the start of the run to its end
    files: dict | None = None  # a folder/glob source: files listed, read, skipped, vanished
    csv: list | None = None  # CSV files read: each dialect (delimiter, quote, encoding, sniffed) and its files
    buckets: list | None = None  # a bucketed run: each bucket's stream, six-key summary and run id
    reading: dict | None = None  # a bucketed file run: its read phase (each split's records, the worker's pid)

    @property
    def source_records(self) -> int:
        return self.counts.source_records

    @property
    def loaded(self) -> int:
        return self.counts.loaded

    @property
    def skipped(self) -> int:
        return self.counts.skipped

    def short(self) -> dict:
        """What ``hiwater load`` prints without --details: the six keys, then what must not pass
        unseen (a stale source, rejected records, a dry run and its windows)."""
        out = self.headline()
        if self.stale_source:
            out["stale_source"] = True
        if self.counts.rejected:
            out["rejected"] = self.counts.rejected
        if self.dry_run:
            out["dry_run"] = True
            if self.windows:
                out["windows"] = self.windows
        return out

    def headline(self) -> dict:
        return {
            "source_records": self.counts.source_records,
            "loaded": self.counts.loaded,
            "skipped": self.counts.skipped,
            "previous_watermark": self.previous_watermark,
            "new_watermark": self.new_watermark,
            "total_in_target": self.total_in_target,
        }

    def to_dict(self, details: bool = True) -> dict:
        out = self.headline()
        if not details:
            return out
        c = self.counts
        out.update({name: getattr(c, name) for name in COUNTS})
        out["rejected"] = c.rejected
        if c.beyond_until:
            out["beyond_until"] = c.beyond_until
        out.update({
            "stale_source": self.stale_source,
            "stream": self.stream,
            "table": self.table,
            "mode": self.mode,
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "duration_s": self.duration_s,
        })
        if self.pruned:
            out["pruned"] = self.pruned
        if self.new_columns:
            out["new_columns"] = self.new_columns
        if self.files is not None:
            out["files"] = self.files
        if self.csv:
            out["csv"] = self.csv
        if self.windows:
            out["windows"] = self.windows
        if self.buckets is not None:
            out["buckets"] = self.buckets
        if self.reading is not None:
            out["reading"] = self.reading
        out["warnings"] = list(self.warnings)
        return out

    def to_json(self, details: bool = True) -> str:
        return json.dumps(self.to_dict(details), indent=2)

"""Measure a target against the ground truth: what is missing, stale, extra, quarantined.

The target is read with plain SQL (it is the loader's own SQLite file); the
comparison is by key and by the ``version`` number the generator wrote into each
record, so it does not depend on how the loader stores the cursor.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field

QUARANTINE = "_hiwater_quarantine"


@dataclass
class Snapshot:
    """A target compared with the truth after one run."""

    missed: set = field(default_factory=set)      # keys in the truth, absent from the target
    stale: set = field(default_factory=set)       # keys whose target version is older than the truth's
    extra: int = 0                                # duplicate rows, keys not in the truth, versions ahead
    in_quarantine: set = field(default_factory=set)   # missed/stale keys whose true version sits in quarantine
    target_rows: int = 0

    @property
    def silent(self) -> int:
        return len(self.missed) + len(self.stale) - len(self.in_quarantine)


class QuarantineReader:
    """Reads a target's quarantine incrementally (rowid order) and remembers what it has seen."""

    def __init__(self) -> None:
        self.last_rowid = 0
        self.versions: dict[tuple, str] = {}   # (id, version) -> reason
        self.rows = 0

    def read(self, con: sqlite3.Connection) -> int:
        """Read new quarantine rows; returns how many were added since the last call."""
        try:
            cols = [r[1] for r in con.execute(f'PRAGMA table_info("{QUARANTINE}")')]
        except sqlite3.Error:
            return 0
        if not cols or "record" not in cols:
            return 0
        reason = '"reason"' if "reason" in cols else "NULL"
        cur = con.execute(
            f'SELECT rowid, {reason}, "record" FROM "{QUARANTINE}" WHERE rowid > ? ORDER BY rowid',
            (self.last_rowid,))
        added = 0
        for rowid, why, record in cur:
            self.last_rowid = rowid
            added += 1
            try:
                rec = json.loads(record) if isinstance(record, (str, bytes)) else {}
            except ValueError:
                rec = {}
            if isinstance(rec, dict) and "id" in rec:
                self.versions[(rec.get("id"), rec.get("version"))] = why
        self.rows += added
        return added


def read_target(con: sqlite3.Connection, table: str) -> tuple[dict, int]:
    """``({key: version}, rows)`` of the target table (empty before its first load)."""
    exists = con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)).fetchone()
    if not exists:
        return {}, 0
    out: dict = {}
    rows = 0
    dup = 0
    for key, version in con.execute(f'SELECT "id", "version" FROM "{table}"'):
        rows += 1
        if key in out:
            dup += 1
            version = max(version, out[key])
        out[key] = version
    return out, rows


def compare(target: dict, rows: int, truth: dict, quarantine: QuarantineReader) -> Snapshot:
    """Compare ``{key: version}`` of the target with ``{key: Version}`` of the truth."""
    snap = Snapshot(target_rows=rows)
    snap.extra = rows - len(target)
    for key, v in truth.items():
        have = target.get(key)
        if have is None:
            snap.missed.add(key)
        elif have < v.v:
            snap.stale.add(key)
        elif have > v.v:
            snap.extra += 1
        else:
            continue
        if (key, v.v) in quarantine.versions:
            snap.in_quarantine.add(key)
    snap.extra += sum(1 for key in target if key not in truth)
    return snap

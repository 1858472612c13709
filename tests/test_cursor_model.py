"""Cursor soundness (issue 10): a reference model of cursors and run sequences.

The model below is written from the issue-10 rules (docs/concepts.md "Cursors", "Bounded
backfills", full load; SPEC §3, §4, §8), without importing anything from hiwater: its own ISO-8601 parser, its own kind rule, its own
window and watermark rules. Example tests pin each rule with the issue's reproductions; property
tests play random run sequences (varied cursor text forms, two time zones, ``--since/--until``,
``--full-load [--prune]``, late records and ``quarantine replay``, ``--cursor id --key id``)
through the model and the real loader (SQLite files, read back with sqlite3) and compare counts,
table and watermark after every run.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st

import hiwater
from hiwater import HiwaterError, UsageError

from conftest import write_jsonl

NOW = "2025-06-01T00:00:00Z"
UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
DAY = 86_400_000_000
NY = "America/New_York"



def committed_runs(db) -> int:
    """History rows of committed runs (a refused or failed run adds only a row of its failure)."""
    return len([h for h in hiwater.history(db=str(db)) if h["outcome"] == "committed"])

def us(aware: dt.datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    return (aware - EPOCH) // dt.timedelta(microseconds=1)


def utc_us(text: str) -> int:
    """Microseconds of a UTC instant written ``YYYY-MM-DDTHH:MM:SS[.ffffff]``."""
    return us(dt.datetime.fromisoformat(text).replace(tzinfo=UTC))


NOW_US = utc_us("2025-06-01T00:00:00")


# --- the model's own cursor parser (semantics.md, "Cursor soundness") --------------------------

class Invalid(ValueError):
    """A cursor value the stream must reject."""


DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
TS_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?)?"
    r"(?:(Z)|([+-])(\d{2})(?::?(\d{2}))?)?"
)


def zone(name: str) -> dt.tzinfo:
    return UTC if name == "UTC" else ZoneInfo(name)


NS_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}\.\d{7,9}(?:$|[^0-9])")


def kind_of(values) -> str | None:
    """The stream's kind from the whole first batch: all dates → date, all integers → int,
    any timestamp written with 7 to 9 fractional digits → timestamp_ns, otherwise timestamp."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    if any(isinstance(v, str) and NS_TEXT.match(v) for v in vals):
        return "timestamp_ns"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        return "int"
    if all(isinstance(v, str) and DATE_RE.fullmatch(v) for v in vals):
        return "date"
    return "timestamp"


def parse_cursor(value, kind: str, tz: dt.tzinfo) -> int:
    """Microseconds UTC (timestamp), nanoseconds UTC (timestamp_ns), microseconds at UTC
    midnight (date) or the integer."""
    if kind == "timestamp_ns":
        text = value if isinstance(value, str) else None
        frac = re.search(r":\d{2}\.(\d+)", text or "")
        digits = frac.group(1) if frac else ""
        if any(c != "0" for c in digits[9:]):
            raise Invalid(f"{value!r} is finer than a nanosecond")
        if frac:  # the microseconds as a timestamp stream reads them, then the nanoseconds
            text = text[:frac.start(1)] + digits[:6].ljust(6, "0") + text[frac.end(1):]
        return parse_cursor(text if text is not None else value, "timestamp", tz) * 1000 \
            + int(digits[6:9].ljust(3, "0"))
    if value is None:
        raise Invalid("missing")
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise Invalid(f"{value!r} is not an integer")
    if not isinstance(value, str):
        raise Invalid(f"{value!r} is not a {kind}")
    if kind == "date":
        if not DATE_RE.fullmatch(value):
            raise Invalid(f"{value!r} is not a date")
        try:
            return (dt.date.fromisoformat(value) - dt.date(1970, 1, 1)).days * DAY
        except ValueError:
            raise Invalid(f"{value!r} is not a valid date") from None
    m = TS_RE.fullmatch(value)
    if not m:
        raise Invalid(f"{value!r} is not ISO-8601")
    y, mo, d, hh, mi, ss, frac, z, sign, oh, om = m.groups()
    frac = frac or ""
    if any(c != "0" for c in frac[6:]):
        raise Invalid(f"{value!r} is finer than a microsecond")
    try:
        naive = dt.datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0),
                            int(frac[:6].ljust(6, "0")))
    except ValueError:
        raise Invalid(f"{value!r} is not a valid timestamp") from None
    if z:
        return us(naive.replace(tzinfo=UTC))
    if sign:
        off = dt.timedelta(hours=int(oh), minutes=int(om or 0))
        return us(naive.replace(tzinfo=dt.timezone(off if sign == "+" else -off)))
    local = naive.replace(tzinfo=tz, fold=0)  # a time that exists twice: the first occurrence
    if local.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive:
        raise Invalid(f"{value!r} does not exist in {tz}")  # the spring-forward gap
    return us(local)


# --- the model ------------------------------------------------------------------------------------

COUNTS = ("inserted", "updated", "unchanged", "late", "late_applied", "future", "below_window", "rejected")


class Refused(Exception):
    def __init__(self, exit_code: int):
        super().__init__(exit_code)
        self.exit_code = exit_code


@dataclass
class Row:
    cursor: int
    text: object      # the cursor as the record wrote it
    fields: tuple     # the other (non-key, non-cursor) fields


@dataclass
class Expect:
    counts: dict
    pruned: int = 0
    either: list = field(default_factory=list)  # full-load ties whose only difference is the
    # cursor's spelling: (key, new row); the loader may count them all updated or all unchanged


@dataclass
class Model:
    """One stream: the target table, the watermark, the kind, and the late quarantine."""

    tz: str = "UTC"
    key: str = "id"
    cursor: str = "modified_at"
    rows: dict = field(default_factory=dict)      # key -> Row
    wm: int | None = None
    kind: str | None = None
    exists: bool = False                          # the stream has committed a run
    late_q: list = field(default_factory=list)    # quarantined `late` records, oldest first

    def parse(self, value, kind=None) -> int:
        return parse_cursor(value, kind or self.kind or "timestamp", zone(self.tz))

    def bound(self, text: str, kind=None) -> int:
        """A --since/--until value, read in the stream's kind and zone."""
        kind = kind or self.kind or "timestamp"
        return int(text) if kind == "int" else self.parse(text, kind)

    def content(self, r: dict) -> tuple:
        return tuple(sorted((k, json.dumps(v)) for k, v in r.items() if k not in (self.key, self.cursor)))

    def run(self, records, *, full=False, prune=False, since=None, until=None, max_future="1d",
            on_late="detect") -> Expect:
        """Predict one load; mutates the model as the load must change the target."""
        if prune and not records:
            raise Refused(1)  # an empty source would prune everything: the run fails, nothing changes
        kind = self.kind or kind_of([r.get(self.cursor) for r in records])
        lo_since = None if since is None else self.bound(since, kind)
        hi = None if until is None else self.bound(until, kind)
        future_limit = None if max_future == "none" or kind == "int" else NOW_US + DAY
        if future_limit is not None and kind == "timestamp_ns":
            future_limit *= 1000
        c = dict.fromkeys(COUNTS, 0)
        out = Expect(c)

        # Place every record.
        places, curs = [], []
        for r in records:
            try:
                cur = parse_cursor(r.get(self.cursor), kind, zone(self.tz)) if kind else None
                if cur is None or r.get(self.key) is None:
                    raise Invalid("missing")
            except Invalid:
                places.append("invalid")
                curs.append(None)
                continue
            curs.append(cur)
            if future_limit is not None and cur > future_limit:
                places.append("future")
            elif hi is not None and cur >= hi:
                places.append("outside")
            elif lo_since is not None and cur < lo_since:
                places.append("outside")
            elif lo_since is None and not full and self.wm is not None and cur < self.wm:
                places.append("below")
            else:
                places.append("in")

        # Winners: among examined records of one key, the newest cursor, then the later one.
        examined = [i for i, p in enumerate(places) if p == "in" or (p == "below" and on_late != "skip")]
        best: dict = {}
        for i in examined:
            k = records[i][self.key]
            if k not in best or (curs[i], i) >= (curs[best[k]], best[k]):
                best[k] = i

        candidate = None
        new_late = []
        for i, (r, p, cur) in enumerate(zip(records, places, curs)):
            if p == "invalid":
                c["rejected"] += 1
                continue
            if p == "future":
                c["future"] += 1
                continue
            if p == "outside" or (p == "below" and on_late == "skip"):
                c["below_window"] += 1
                continue
            k = r[self.key]
            if best[k] != i:
                c["unchanged"] += 1
            else:
                held = self.rows.get(k)
                new = Row(cur, r.get(self.cursor), self.content(r))
                if held is None:
                    verdict = "inserted"
                elif held.cursor > cur:
                    verdict = "unchanged"
                elif held.cursor == cur:
                    verdict = "unchanged"
                    if full and held.fields != new.fields:
                        verdict = "updated"     # full load: same cursor, changed content
                    elif full and held.text != new.text:
                        out.either.append((k, new))  # only the cursor's spelling differs
                else:
                    verdict = "updated"
                if verdict != "unchanged" and p == "below":
                    if on_late == "detect":
                        c["late"] += 1
                        new_late.append(r)
                        continue
                    c["late_applied"] += 1
                c[verdict] += 1
                if verdict != "unchanged":
                    self.rows[k] = new
            if p == "in":
                candidate = cur if candidate is None else max(candidate, cur)

        if prune:
            present = {r.get(self.key) for r in records if r.get(self.key) is not None}
            gone = [k for k in self.rows if k not in present]
            for k in gone:
                del self.rows[k]
            out.pruned = len(gone)

        # The watermark.
        if full:
            self.wm = candidate  # from the data, even if lower; None when no record was examined
        elif candidate is None:
            pass
        elif since is not None:
            if self.wm is not None and lo_since <= self.wm:
                self.wm = max(self.wm, candidate if hi is None else min(candidate, hi))
            # else: a gap below --since, or no watermark yet: the watermark stays
        else:
            self.wm = candidate if self.wm is None else max(self.wm, candidate)

        # the quarantine keeps one row per distinct record text: a record is kept as sent, its
        # fields in their order (docs/concepts.md), so the same fields in another order are another
        seen = {json.dumps(r) for r in self.late_q}
        for r in new_late:
            fp = json.dumps(r)
            if fp not in seen:
                seen.add(fp)
                self.late_q.append(r)
        if self.kind is None:
            self.kind = kind
        self.exists = True
        return out

    def replay(self, max_future="1d") -> Expect:
        """``quarantine replay --reason late``: the late records, applied unless the target
        holds that version or newer."""
        if not self.exists:
            raise Refused(2)
        records, self.late_q = self.late_q, []
        return self.run(records, max_future=max_future, on_late="load")


# --- reading the real target ------------------------------------------------------------------

def table_rows(db: Path, cols: list[str]) -> list[tuple] | None:
    con = sqlite3.connect(db)
    try:
        names = ", ".join(f'"{c}"' for c in cols)
        return con.execute(f'SELECT {names} FROM "events"').fetchall()
    except sqlite3.OperationalError:
        return None
    finally:
        con.close()


def state(db: Path) -> dict | None:
    found = [s for s in hiwater.state_show(db=str(db)) if s["stream"] == "events"]
    return found[0] if found else None


def wm_value(db: Path):
    s = state(db)
    return None if s is None else s["watermark_value"]


def load(src: Path, db: Path, **kw):
    kw.setdefault("now", NOW)
    kw.setdefault("max_rejected", "100%")  # the model counts a run of invalid records (issue 21 fails it)
    return hiwater.load(str(src), db=str(db), table="events", **kw)


def counts(s) -> dict:
    return {name: getattr(s.counts, name) for name in COUNTS}


def rows_by_id(db: Path, tz: str = "UTC", kind: str = "timestamp") -> dict:
    """``{id: (cursor instant, name)}`` read back from SQLite, the cursor re-parsed by the model."""
    got = table_rows(db, ["id", "modified_at", "name"]) or []
    return {i: (parse_cursor(m, kind, zone(tz)), n) for i, m, n in got}


def quarantined(db: Path, reason: str) -> list[dict]:
    return hiwater.quarantine_list(db=str(db), stream="events", reason=reason)


def check_against_model(model: Model, db: Path, exp: Expect, got_counts: dict, pruned, where: str,
                        loose: bool = False):
    """Counts, table and watermark of the real target against the model's. ``loose``: only the table
    and the watermark (small batches: see test_a_superseded_version_in_an_earlier_batch_is_not_late)."""
    want = dict(exp.counts)
    if exp.either and got_counts["updated"] - want["updated"] == len(exp.either):
        # A full load's tie that only re-spells the cursor (`11:00Z` then `12:00+01:00`): semantics.md
        # does not say whether that is "changed content"; accept "updated" too, consistently.
        want["updated"] += len(exp.either)
        want["unchanged"] -= len(exp.either)
        for k, row in exp.either:
            model.rows[k] = row
    assert loose or got_counts == want, f"{where}: counts"
    if pruned is not None and not loose:
        assert pruned == exp.pruned, f"{where}: pruned"
    kind = model.kind or "timestamp"
    tz = zone(model.tz)
    if model.cursor == model.key:
        got = {k: (k, n) for k, n in table_rows(db, [model.key, "name"]) or []}
    else:
        got = {k: (_instant(c, kind, tz), n) for k, c, n in table_rows(db, [model.key, model.cursor, "name"]) or []}
    want_rows = {k: (r.cursor, json.loads(dict(r.fields)["name"])) for k, r in model.rows.items()}
    assert got == want_rows, f"{where}: table"
    late = [json.loads(q["record"]) for q in quarantined(db, "late")] if model.exists else []
    assert loose or late == model.late_q, f"{where}: the late records in quarantine"
    s = state(db)
    if not model.exists:
        assert s is None or s["watermark_value"] is None, f"{where}: a stream that committed nothing"
        return
    assert s is not None, f"{where}: no state"
    if model.kind is not None:
        assert s["kind"] == model.kind, f"{where}: kind"
    if model.kind == "date":
        want_text = None if model.wm is None else (EPOCH + dt.timedelta(microseconds=model.wm)).date().isoformat()
        assert s["watermark"] == want_text, f"{where}: watermark"
    else:
        assert s["watermark_value"] == model.wm, f"{where}: watermark"


def _instant(text, kind, tz):
    try:
        return parse_cursor(text, kind, tz)
    except Invalid:
        return ("unparseable stored cursor", text)


# ================================================================================================
# Example tests: one per rule, the reproductions first.
# ================================================================================================

def R(i, cursor, name="a"):
    return {"id": i, "name": name, "modified_at": cursor}


def test_model_parser_itself():
    ny = ZoneInfo(NY)
    assert parse_cursor("2025-01-15T12:00:00+01:00", "timestamp", UTC) == utc_us("2025-01-15T11:00:00")
    assert parse_cursor("2025-01-15T11:00:00Z", "timestamp", UTC) == utc_us("2025-01-15T11:00:00")
    assert parse_cursor("2025-01-15 11:00:00+0100", "timestamp", UTC) == utc_us("2025-01-15T10:00:00")
    assert parse_cursor("2025-01-15T10:00:00.1234560", "timestamp", UTC) == \
        parse_cursor("2025-01-15T10:00:00.123456", "timestamp", UTC)
    with pytest.raises(Invalid):
        parse_cursor("2025-01-15T10:00:00.1234567", "timestamp", UTC)
    with pytest.raises(Invalid):
        parse_cursor("2025-03-09T02:30:00", "timestamp", ny)
    assert parse_cursor("2025-03-09T02:30:00", "timestamp", UTC) == utc_us("2025-03-09T02:30:00")
    assert parse_cursor("2025-11-02T01:30:00", "timestamp", ny) == utc_us("2025-11-02T05:30:00")
    assert parse_cursor("2025-01-15", "timestamp", ny) == utc_us("2025-01-15T05:00:00")
    assert kind_of(["2025-01-15", "2025-01-15T10:00:00"]) == "timestamp"
    assert kind_of(["2025-01-15", "2025-01-16"]) == "date"
    assert kind_of([3, 4]) == "int"


# --- precision --------------------------------------------------------------------------------

def test_finer_than_a_microsecond_is_another_version_not_one(tmp_path):
    """Issue 10: ``…00.1234567`` then ``…00.1234568`` were one version (the second `unchanged`);
    issue 22: they are two versions of a nanosecond stream, not refused."""
    db = tmp_path / "t.db"
    s1 = load(write_jsonl(tmp_path / "a.jsonl", [R(1, "2025-01-15T10:00:00.1234567")]), db)
    s2 = load(write_jsonl(tmp_path / "b.jsonl", [R(1, "2025-01-15T10:00:00.1234568")]), db)
    assert (s1.counts.rejected, s1.counts.inserted) == (0, 1)
    assert (s2.counts.rejected, s2.counts.updated) == (0, 1)
    assert state(db)["kind"] == "timestamp_ns"
    assert wm_value(db) == utc_us("2025-01-15T10:00:00.123456") * 1000 + 800


def test_finer_than_a_microsecond_is_refused_by_a_microsecond_stream(tmp_path):
    db = tmp_path / "t.db"
    load(write_jsonl(tmp_path / "a.jsonl", [R(1, "2025-01-15T10:00:00.123456")]), db)
    s2 = load(write_jsonl(tmp_path / "b.jsonl", [R(1, "2025-01-15T10:00:00.1234568")]), db)
    assert (s2.counts.rejected, s2.counts.unchanged, s2.loaded) == (1, 0, 0)
    assert rows_by_id(db) == {1: (utc_us("2025-01-15T10:00:00.123456"), "a")}
    details = [q["detail"] for q in quarantined(db, "invalid")]
    assert len(details) == 1 and all("microsecond" in d for d in details), details


@pytest.mark.parametrize("text", ["2025-01-15T10:00:00.000000001", "2025-01-15T10:00:00.123456789",
                                  "2025-01-15T10:00:00.12345601Z", "2025-01-15T10:00:00.1234567+01:00"])
def test_seventh_to_ninth_fractional_digit_makes_a_nanosecond_stream(tmp_path, text):
    db = tmp_path / "t.db"
    s = load(write_jsonl(tmp_path / "a.jsonl", [R(1, text), R(2, "2025-01-15T09:00:00")]), db)
    assert (s.counts.rejected, s.counts.inserted) == (0, 2)
    assert state(db)["kind"] == "timestamp_ns"
    assert wm_value(db) == parse_cursor(text, "timestamp_ns", UTC)


def test_trailing_zeros_beyond_six_digits_are_the_same_instant(tmp_path):
    db = tmp_path / "t.db"
    s1 = load(write_jsonl(tmp_path / "a.jsonl", [R(1, "2025-01-15T10:00:00.123456")]), db)
    s2 = load(write_jsonl(tmp_path / "b.jsonl", [R(1, "2025-01-15T10:00:00.1234560"),
                                                R(1, "2025-01-15T10:00:00.123456000Z"),
                                                R(2, "2025-01-15T10:00:01.000000000")]), db)
    assert s1.counts.inserted == 1
    assert (s2.counts.unchanged, s2.counts.inserted, s2.counts.rejected) == (2, 1, 0)
    assert rows_by_id(db)[1][0] == utc_us("2025-01-15T10:00:00.123456")
    assert wm_value(db) == utc_us("2025-01-15T10:00:01")


# --- kind from the whole first batch ------------------------------------------------------------

@pytest.mark.parametrize("order", ["date first", "timestamp first"])
def test_dates_and_timestamps_in_the_first_batch_load_both(tmp_path, order):
    recs = [R(1, "2025-01-15"), R(2, "2025-01-15T10:00:00")]
    if order == "timestamp first":
        recs.reverse()
    db = tmp_path / "t.db"
    s = load(write_jsonl(tmp_path / "a.jsonl", recs), db)
    assert (s.counts.inserted, s.counts.rejected) == (2, 0)
    assert state(db)["kind"] == "timestamp"
    assert rows_by_id(db) == {1: (utc_us("2025-01-15T00:00:00"), "a"), 2: (utc_us("2025-01-15T10:00:00"), "a")}
    assert wm_value(db) == utc_us("2025-01-15T10:00:00")


def test_a_bare_date_in_a_timestamp_stream_is_midnight_in_assume_tz(tmp_path):
    db = tmp_path / "t.db"
    s = load(write_jsonl(tmp_path / "a.jsonl", [R(1, "2025-01-15T23:00:00"), R(2, "2025-01-16")]), db,
             assume_tz=NY)
    assert s.counts.inserted == 2
    assert wm_value(db) == utc_us("2025-01-16T05:00:00")  # 2025-01-16 00:00 EST


def test_an_all_date_stream_rejects_a_later_timestamp(tmp_path):
    db = tmp_path / "t.db"
    load(write_jsonl(tmp_path / "a.jsonl", [R(1, "2025-01-15"), R(2, "2025-01-16")]), db)
    s = load(write_jsonl(tmp_path / "b.jsonl", [R(3, "2025-01-17T10:00:00"), R(4, "2025-01-17")]), db)
    assert state(db)["kind"] == "date"
    assert (s.counts.rejected, s.counts.inserted) == (1, 1)
    assert state(db)["watermark"] == "2025-01-17"


# --- instants, zones ---------------------------------------------------------------------------

def test_offsets_compare_as_instants(tmp_path):
    db = tmp_path / "t.db"
    load(write_jsonl(tmp_path / "a.jsonl", [R(1, "2025-01-15T12:00:00+01:00")]), db)
    s = load(write_jsonl(tmp_path / "b.jsonl", [R(1, "2025-01-15T11:00:00Z", "b"),
                                               R(2, "2025-01-15T06:00:00-0500")]), db)
    assert (s.counts.unchanged, s.counts.inserted, s.counts.updated, s.counts.late) == (1, 1, 0, 0)
    assert rows_by_id(db)[1] == (utc_us("2025-01-15T11:00:00"), "a")  # never the tie's other spelling
    assert wm_value(db) == utc_us("2025-01-15T11:00:00")


def test_spring_forward_gap_rejected_and_later_records_not_late(tmp_path):
    """Issue 10: 02:30 on 2025-03-09 in New York became 07:30Z, so 03:15 (07:15Z) went to quarantine."""
    db = tmp_path / "t.db"
    s1 = load(write_jsonl(tmp_path / "a.jsonl", [R(1, "2025-03-09T01:30:00"), R(2, "2025-03-09T02:30:00")]),
              db, assume_tz=NY)
    assert (s1.counts.inserted, s1.counts.rejected) == (1, 1)
    assert wm_value(db) == utc_us("2025-03-09T06:30:00")
    detail = quarantined(db, "invalid")[0]["detail"]
    assert "exist" in detail, detail
    s2 = load(write_jsonl(tmp_path / "b.jsonl", [R(3, "2025-03-09T03:15:00"), R(4, "2025-03-09T03:00:00")]),
              db, assume_tz=NY)
    assert (s2.counts.inserted, s2.counts.late) == (2, 0)
    assert quarantined(db, "late") == []
    assert wm_value(db) == utc_us("2025-03-09T07:15:00")


def test_fall_back_fold_is_the_first_occurrence(tmp_path):
    db = tmp_path / "t.db"
    kw = dict(assume_tz=NY, max_future="none")
    load(write_jsonl(tmp_path / "a.jsonl", [R(1, "2025-11-02T01:30:00")]), db, **kw)
    assert wm_value(db) == utc_us("2025-11-02T05:30:00")  # EDT, UTC-4
    s = load(write_jsonl(tmp_path / "b.jsonl", [R(1, "2025-11-02T01:30:00-04:00", "b"),
                                               R(2, "2025-11-02T05:30:00Z")]), db, **kw)
    assert (s.counts.unchanged, s.counts.inserted) == (1, 1)
    s = load(write_jsonl(tmp_path / "c.jsonl", [R(1, "2025-11-02T01:30:00-05:00", "c")]), db, **kw)
    assert s.counts.updated == 1
    assert wm_value(db) == utc_us("2025-11-02T06:30:00")


def test_a_different_assume_tz_is_refused_exit_2_and_changes_nothing(tmp_path, hw):
    db = tmp_path / "t.db"
    src = write_jsonl(tmp_path / "a.jsonl", [R(1, "2025-01-15T10:00:00")])
    base = ["load", "--input", src, "--db", db, "--table", "events", "--now", NOW]
    r = hw(*base, "--assume-tz", NY)
    assert r.code == 0, r.err
    before = (rows_by_id(db, NY), wm_value(db), committed_runs(db))
    r = hw(*base, "--assume-tz", "UTC")
    assert r.code == 2, (r.code, r.err)
    assert "assume-tz" in r.err or NY in r.err, r.err
    assert (rows_by_id(db, NY), wm_value(db), committed_runs(db)) == before
    assert state(db)["assume_tz"] == NY
    # the hint is a command that works
    assert "stream drop" in r.err or "--table" in r.err, r.err
    if "stream drop" in r.err:
        assert hw("stream", "drop", "events", "--table", "--db", db).code == 0
        r = hw(*base, "--assume-tz", "UTC")
        assert r.code == 0, r.err
        assert wm_value(db) == utc_us("2025-01-15T10:00:00")


def test_a_different_assume_tz_raises_usage_error_in_the_api(tmp_path):
    db = tmp_path / "t.db"
    src = write_jsonl(tmp_path / "a.jsonl", [R(1, "2025-01-15T10:00:00")])
    load(src, db, assume_tz=NY)
    with pytest.raises(UsageError):
        load(src, db, assume_tz="Europe/Berlin")
    assert state(db)["assume_tz"] == NY and wm_value(db) == utc_us("2025-01-15T15:00:00")


def test_omitted_assume_tz_is_the_streams_stored_zone(tmp_path, hw):
    db = tmp_path / "t.db"
    a = write_jsonl(tmp_path / "a.jsonl", [R(1, "2025-01-15T10:00:00")])
    b = write_jsonl(tmp_path / "b.jsonl", [R(1, "2025-01-15T10:00:00"), R(2, "2025-01-15T10:30:00")])
    assert hw("load", "--input", a, "--db", db, "--table", "events", "--now", NOW, "--assume-tz", NY).code == 0
    r = hw("load", "--input", b, "--db", db, "--table", "events", "--now", NOW, "--details")
    assert r.code == 0, r.err
    assert (r.json["unchanged"], r.json["inserted"], r.json["late"]) == (1, 1, 0)
    assert state(db)["assume_tz"] == NY
    assert wm_value(db) == utc_us("2025-01-15T15:30:00")
    s = load(b, db)  # the API too
    assert (s.counts.unchanged, s.loaded) == (2, 0)
    assert state(db)["assume_tz"] == NY


# --- --since / --until ----------------------------------------------------------------------------

def test_since_above_the_watermark_leaves_the_gap_for_the_next_run(tmp_path):
    """Issue 10: --since above the watermark moved it, and the gap records came back as late."""
    db = tmp_path / "t.db"
    load(write_jsonl(tmp_path / "a.jsonl", [R(1, "2025-01-15T10:00:00")]), db)
    grown = write_jsonl(tmp_path / "b.jsonl", [R(1, "2025-01-15T10:00:00"), R(2, "2025-01-15T11:00:00"),
                                               R(3, "2025-01-15T12:00:00"), R(4, "2025-01-15T13:00:00")])
    s = load(grown, db, since="2025-01-15T12:00:00")
    assert (s.counts.inserted, s.counts.below_window) == (2, 2)
    assert wm_value(db) == utc_us("2025-01-15T10:00:00")  # not moved: 10:00..12:00 not read yet
    s = load(grown, db)
    assert (s.counts.inserted, s.counts.late, s.counts.unchanged) == (1, 0, 3)
    assert set(rows_by_id(db)) == {1, 2, 3, 4}
    assert wm_value(db) == utc_us("2025-01-15T13:00:00")


def test_since_on_a_new_stream_leaves_no_watermark(tmp_path):
    db = tmp_path / "t.db"
    src = write_jsonl(tmp_path / "a.jsonl", [R(1, "2025-01-15T10:00:00"), R(2, "2025-01-15T12:00:00")])
    s = load(src, db, since="2025-01-15T11:00:00", until="2025-01-15T13:00:00")
    assert (s.counts.inserted, s.counts.below_window) == (1, 1)
    assert wm_value(db) is None
    s = load(src, db)
    assert (s.counts.inserted, s.counts.unchanged, s.counts.late) == (1, 1, 0)
    assert wm_value(db) == utc_us("2025-01-15T12:00:00")


def test_since_at_or_below_the_watermark_advances_it_never_past_until(tmp_path):
    db = tmp_path / "t.db"
    load(write_jsonl(tmp_path / "a.jsonl", [R(1, "2025-01-15T10:00:00")]), db)
    s = load(write_jsonl(tmp_path / "b.jsonl", [R(2, "2025-01-15T09:30:00"), R(3, "2025-01-15T11:00:00"),
                                               R(4, "2025-01-15T12:00:00"), R(5, "2025-01-15T13:00:00")]),
             db, since="2025-01-15T09:00:00", until="2025-01-15T12:00:00")
    assert (s.counts.inserted, s.counts.below_window, s.counts.late) == (2, 2, 0)
    assert wm_value(db) == utc_us("2025-01-15T11:00:00")


def test_since_equal_to_the_watermark_is_contiguous(tmp_path):
    db = tmp_path / "t.db"
    load(write_jsonl(tmp_path / "a.jsonl", [R(1, "2025-01-15T10:00:00")]), db)
    load(write_jsonl(tmp_path / "b.jsonl", [R(2, "2025-01-15T11:00:00")]), db, since="2025-01-15T10:00:00Z")
    assert wm_value(db) == utc_us("2025-01-15T11:00:00")


@pytest.mark.parametrize("since,until", [("2025-01-15T12:00:00", "2025-01-15T12:00:00"),
                                         ("2025-01-15T12:00:00", "2025-01-15T11:00:00"),
                                         ("2025-01-15T12:00:00+01:00", "2025-01-15T11:00:00Z")])
def test_until_not_after_since_is_a_usage_error(tmp_path, hw, since, until):
    db = tmp_path / "t.db"
    src = write_jsonl(tmp_path / "a.jsonl", [R(1, "2025-01-15T10:00:00")])
    r = hw("load", "--input", src, "--db", db, "--table", "events", "--now", NOW, "--since", since,
           "--until", until)
    assert r.code == 2, (r.code, r.err)
    assert table_rows(db, ["id"]) is None and wm_value(db) is None


def test_since_until_order_is_judged_in_the_streams_zone(tmp_path):
    """A New York stream, --assume-tz left out: --until 10:00 (naive, New York) is 15:00Z, after
    --since 14:00Z. Read in UTC it would look earlier and the range empty."""
    db = tmp_path / "t.db"
    load(write_jsonl(tmp_path / "a.jsonl", [R(1, "2025-01-15T08:00:00")]), db, assume_tz=NY)
    src = write_jsonl(tmp_path / "b.jsonl", [R(2, "2025-01-15T09:30:00"), R(3, "2025-01-15T10:30:00")])
    s = load(src, db, since="2025-01-15T14:00:00Z", until="2025-01-15T10:00:00")
    assert (s.counts.inserted, s.counts.below_window) == (1, 1)
    assert rows_by_id(db, NY)[2] == (utc_us("2025-01-15T14:30:00"), "a")
    # and the other way round: a range empty in New York is refused even though UTC would accept it
    with pytest.raises(UsageError):
        load(src, db, since="2025-01-15T09:00:00", until="2025-01-15T10:00:00Z")


# --- cursor = key ---------------------------------------------------------------------------------

def test_cursor_is_the_key_append_only(tmp_path):
    db = tmp_path / "t.db"
    kw = dict(key="id", cursor="id")
    s1 = load(write_jsonl(tmp_path / "a.jsonl", [{"id": i, "name": f"n{i}"} for i in (1, 2, 3)]), db, **kw)
    s2 = load(write_jsonl(tmp_path / "b.jsonl", [{"id": i, "name": f"n{i}"} for i in (1, 2, 3, 4, 5)]), db, **kw)
    assert s1.counts.inserted == 3
    assert (s2.counts.inserted, s2.counts.unchanged, s2.counts.late) == (2, 3, 0)
    assert state(db)["kind"] == "int" and wm_value(db) == 5
    assert sorted(table_rows(db, ["id", "name"])) == [(i, f"n{i}") for i in range(1, 6)]


def test_cursor_is_the_key_late_id_is_quarantined_then_replayed(tmp_path):
    db = tmp_path / "t.db"
    kw = dict(key="id", cursor="id")
    load(write_jsonl(tmp_path / "a.jsonl", [{"id": i, "name": "x"} for i in (1, 2, 5)]), db, **kw)
    s = load(write_jsonl(tmp_path / "b.jsonl", [{"id": i, "name": "x"} for i in (3, 5, 6)]), db, **kw)
    assert (s.counts.late, s.counts.unchanged, s.counts.inserted) == (1, 1, 1)
    s = hiwater.quarantine_replay(stream="events", db=str(db), reason="late", now=NOW)
    assert (s.counts.inserted, s.counts.late_applied) == (1, 1)
    assert sorted(r[0] for r in table_rows(db, ["id"])) == [1, 2, 3, 5, 6]
    assert wm_value(db) == 6


def test_integer_cursor_in_its_own_field(tmp_path):
    db = tmp_path / "t.db"
    kw = dict(cursor="seq")
    load(write_jsonl(tmp_path / "a.jsonl", [{"id": 1, "seq": 10, "name": "a"}, {"id": 2, "seq": 7, "name": "a"}]),
         db, **kw)
    s = load(write_jsonl(tmp_path / "b.jsonl", [{"id": 1, "seq": 11, "name": "b"},
                                               {"id": 3, "seq": "2025-01-15T10:00:00", "name": "a"}]), db, **kw)
    assert (s.counts.updated, s.counts.rejected) == (1, 1)
    assert state(db)["kind"] == "int" and wm_value(db) == 11


# --- full load, prune -------------------------------------------------------------------------------

def test_full_load_updates_changed_content_at_the_same_cursor(tmp_path):
    db = tmp_path / "t.db"
    load(write_jsonl(tmp_path / "a.jsonl", [R(1, "2025-01-15T10:00:00", "a"), R(2, "2025-01-15T11:00:00", "b")]), db)
    s = load(write_jsonl(tmp_path / "b.jsonl", [R(1, "2025-01-15T10:00:00", "a2"), R(2, "2025-01-15T11:00:00", "b")]),
             db, full_load=True)
    assert (s.counts.updated, s.counts.unchanged) == (1, 1)
    assert rows_by_id(db) == {1: (utc_us("2025-01-15T10:00:00"), "a2"), 2: (utc_us("2025-01-15T11:00:00"), "b")}


def test_full_load_sets_the_watermark_from_the_data_even_lower(tmp_path):
    db = tmp_path / "t.db"
    load(write_jsonl(tmp_path / "a.jsonl", [R(1, "2025-01-15T12:00:00")]), db)
    s = load(write_jsonl(tmp_path / "b.jsonl", [R(2, "2025-01-15T10:00:00"), R(3, "2025-01-15T09:00:00")]),
             db, full_load=True)
    assert s.counts.inserted == 2
    assert wm_value(db) == utc_us("2025-01-15T10:00:00")
    assert set(rows_by_id(db)) == {1, 2, 3}


def test_full_load_never_regresses_a_row(tmp_path):
    db = tmp_path / "t.db"
    load(write_jsonl(tmp_path / "a.jsonl", [R(1, "2025-01-15T12:00:00", "new")]), db)
    s = load(write_jsonl(tmp_path / "b.jsonl", [R(1, "2025-01-15T10:00:00", "old")]), db, full_load=True)
    assert (s.counts.unchanged, s.loaded) == (1, 0)
    assert rows_by_id(db) == {1: (utc_us("2025-01-15T12:00:00"), "new")}


def test_full_load_prune_deletes_absent_keys(tmp_path):
    db = tmp_path / "t.db"
    load(write_jsonl(tmp_path / "a.jsonl", [R(i, f"2025-01-15T1{i}:00:00") for i in (1, 2, 3)]), db)
    s = load(write_jsonl(tmp_path / "b.jsonl", [R(1, "2025-01-15T11:00:00"), R(3, "2025-01-15T13:00:00")]),
             db, full_load=True, prune=True)
    assert (s.pruned, s.counts.unchanged) == (1, 2)
    assert set(rows_by_id(db)) == {1, 3}


def test_full_load_prune_of_an_empty_source_fails_and_changes_nothing(tmp_path, hw):
    db = tmp_path / "t.db"
    load(write_jsonl(tmp_path / "a.jsonl", [R(1, "2025-01-15T10:00:00"), R(2, "2025-01-15T11:00:00")]), db)
    before = (rows_by_id(db), wm_value(db), committed_runs(db))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    r = hw("load", "--input", empty, "--db", db, "--table", "events", "--now", NOW, "--full-load", "--prune")
    assert r.code == 1, (r.code, r.err)
    assert (rows_by_id(db), wm_value(db), committed_runs(db)) == before
    with pytest.raises(HiwaterError) as exc:
        load(empty, db, full_load=True, prune=True)
    assert exc.value.exit_code == 1
    assert (rows_by_id(db), wm_value(db), committed_runs(db)) == before


# --- late records, quarantine replay ----------------------------------------------------------------

def test_late_record_is_quarantined_then_replayed(tmp_path):
    db = tmp_path / "t.db"
    load(write_jsonl(tmp_path / "a.jsonl", [R(1, "2025-01-15T10:00:00"), R(2, "2025-01-15T12:00:00")]), db)
    s = load(write_jsonl(tmp_path / "b.jsonl", [R(3, "2025-01-15T11:00:00"), R(1, "2025-01-15T09:00:00")]), db)
    assert (s.counts.late, s.counts.unchanged) == (1, 1)
    assert 3 not in rows_by_id(db) and len(quarantined(db, "late")) == 1
    s = hiwater.quarantine_replay(stream="events", db=str(db), reason="late", now=NOW)
    assert (s.counts.inserted, s.counts.late_applied) == (1, 1)
    assert rows_by_id(db)[3] == (utc_us("2025-01-15T11:00:00"), "a")
    assert quarantined(db, "late") == []
    assert wm_value(db) == utc_us("2025-01-15T12:00:00")


def test_replay_leaves_a_row_the_target_already_has_newer(tmp_path):
    db = tmp_path / "t.db"
    load(write_jsonl(tmp_path / "a.jsonl", [R(1, "2025-01-15T12:00:00")]), db)
    load(write_jsonl(tmp_path / "b.jsonl", [R(3, "2025-01-15T11:00:00", "old")]), db)
    load(write_jsonl(tmp_path / "c.jsonl", [R(3, "2025-01-15T13:00:00", "new")]), db)
    s = hiwater.quarantine_replay(stream="events", db=str(db), reason="late", now=NOW)
    assert (s.counts.unchanged, s.loaded) == (1, 0)
    assert rows_by_id(db)[3] == (utc_us("2025-01-15T13:00:00"), "new")


# ================================================================================================
# Property tests: run sequences through the model and the real loader.
# ================================================================================================

# Local wall times in the stream's zone; each is written in several text forms.
BASES = [
    dt.datetime(2025, 1, 15, 10, 0),                # 0
    dt.datetime(2025, 1, 15, 0, 0),                 # 1 midnight: also a bare date
    dt.datetime(2025, 1, 15, 10, 0, 0, 123456),     # 2 microseconds
    dt.datetime(2025, 1, 15, 11, 0),                # 3
    dt.datetime(2025, 1, 16, 0, 0),                 # 4 midnight
    dt.datetime(2025, 3, 9, 1, 30),                 # 5 just before the New York gap
    dt.datetime(2025, 3, 9, 3, 15),                 # 6 just after it
    dt.datetime(2025, 11, 2, 1, 30),                # 7 the New York fold; past now + 1d
]
FORMS = ["T", "space", "Z", "+01:00", "-0500", "+01", "zeros7", "zeros9", "date"]
RAW = [
    "2025-01-15T10:00:00.1234567",      # finer than a microsecond: rejected
    "2025-01-15T10:00:00.1234568",
    "2025-01-15T10:00:00.123456789",
    "2025-03-09T02:30:00",              # in the New York gap: rejected there, fine in UTC
    "2025-03-09T02:30:00-05:00",        # an offset makes it exist
    "2025-11-02T01:30:00-05:00",        # the fold's second occurrence, written out
]
PLAIN_FORMS = ["T", "space", "Z", "+01:00", "-0500", "+01"]


def _wall(d: dt.datetime, sep="T") -> str:
    return d.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + (f".{d.microsecond:06d}" if d.microsecond else "")


def render(spec, tz: str) -> str:
    if spec[0] == "raw":
        return spec[1]
    _, b, form = spec
    local = BASES[b]
    u = local.replace(tzinfo=zone(tz)).astimezone(UTC).replace(tzinfo=None)
    if form == "T":
        return _wall(local)
    if form == "space":
        return _wall(local, " ")
    if form == "Z":
        return _wall(u) + "Z"
    if form == "+01:00":
        return _wall(u + dt.timedelta(hours=1)) + "+01:00"
    if form == "+01":
        return _wall(u + dt.timedelta(hours=1)) + "+01"
    if form == "-0500":
        return _wall(u - dt.timedelta(hours=5)) + "-0500"
    if form == "zeros7":
        return _wall(local) + ("0" if local.microsecond else ".0000000")
    if form == "zeros9":
        return _wall(local) + ("000" if local.microsecond else ".000000000")
    if form == "date":
        return local.date().isoformat() if local.time() == dt.time(0) else _wall(local)
    if form == "bare-date":
        return local.date().isoformat()
    raise AssertionError(form)


def render_bound(b, form: str, tz: str, kind: str | None) -> str:
    """A --since/--until value: a base wall time, or an instant (``("at", µs)``) in ``form``."""
    if isinstance(b, tuple):
        inst = EPOCH + dt.timedelta(microseconds=b[1] // (1000 if kind == "timestamp_ns" else 1))
        if kind == "date":
            return inst.date().isoformat()
        u = inst.replace(tzinfo=None)
        if form == "Z":
            return _wall(u) + "Z"
        if form == "+01:00":
            return _wall(u + dt.timedelta(hours=1)) + "+01:00"
        return _wall(inst.astimezone(zone(tz)).replace(tzinfo=None))
    if kind == "date":
        return BASES[b].date().isoformat()
    return render(("b", b, form), tz)


def _since_at(spec, model: Model):
    """``("wm", form)``: the watermark of the moment; ``("wm-1h", form)``: one hour (day) below."""
    where, form = spec
    if not isinstance(where, str):
        return spec
    if model.wm is None:
        return 0, form
    step = DAY if model.kind == "date" else 3_600_000_000 * (1000 if model.kind == "timestamp_ns" else 1)
    return ("at", model.wm - (step if where == "wm-1h" else 0)), form


def _as_date(spec):
    return spec if spec[0] == "raw" else ("b", spec[1], "bare-date")


def _specs(bases, forms, raw, weight_january=2):
    out = []
    for b in bases:
        for f in forms:
            out += [("b", b, f)] * (weight_january if b <= 4 else 1)
    return out + [("raw", t) for t in raw]


ALL_SPECS = _specs(range(8), FORMS, RAW)
# What today's loader already gets right (UTC, no dates, no sub-microsecond or DST-edge values):
PLAIN_SPECS = _specs([0, 2, 3, 5, 6], PLAIN_FORMS, [])

MODES_ALL = ["inc", "inc", "inc", "since", "full", "prune", "replay"]


def ts_runs(specs, modes, tzs, min_runs=3, max_runs=6, names=("a", "b"), empty=(False, False, False, True),
            dates=(False,) * 6 + (True,)):
    rec = st.fixed_dictionaries({
        "id": st.sampled_from([1, 2, 3, 4]),
        "name": st.sampled_from(names),
        "modified_at": st.sampled_from(specs),
    })
    run = st.fixed_dictionaries({
        "mode": st.sampled_from(modes),
        "records": st.lists(rec, min_size=1, max_size=8),
        "empty": st.sampled_from(empty),   # only for prune runs
        "max_future": st.sampled_from(["1d", "1d", "1d", "none"]),
        # --since: a fixed instant, or at/below the watermark of the moment (a contiguous backfill)
        "since": st.one_of(st.tuples(st.integers(0, 6), st.sampled_from(["T", "Z", "+01:00"])),
                           st.sampled_from([("wm", "Z"), ("wm", "T"), ("wm-1h", "+01:00")])),
        "dates": st.sampled_from(dates),   # every cursor of the run a bare date
        "until": st.one_of(st.none(), st.tuples(st.integers(0, 6), st.sampled_from(["T", "Z"]))),
        "tz_given": st.booleans(),
    })
    return st.tuples(st.sampled_from(tzs), st.lists(run, min_size=min_runs, max_size=max_runs))


def play_timestamps(tz, runs, *, omit_tz=True, batch_size=None):
    model = Model(tz=tz)
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "t.db"
        for n, run in enumerate(runs):
            mode = "inc" if n == 0 and run["mode"] == "replay" else run["mode"]
            records = [] if mode == "prune" and run["empty"] else [
                {**r, "modified_at": render(_as_date(r["modified_at"]) if run.get("dates") else r["modified_at"], tz)}
                for r in run["records"]]
            kw = dict(now=NOW, max_future=run["max_future"])
            if batch_size is not None:
                kw["batch_size"] = batch_size
            if not model.exists or run["tz_given"] or not omit_tz:
                kw["assume_tz"] = tz  # a new stream takes its zone from its first committed run
            mk = dict(max_future=run["max_future"])
            if mode == "since":
                kind = model.kind or kind_of([r["modified_at"] for r in records]) or "timestamp"
                kw["since"] = mk["since"] = render_bound(*_since_at(run["since"], model), tz, kind)
                if run["until"] is not None:
                    u = render_bound(*run["until"], tz, kind)
                    if model.bound(u, kind) > model.bound(kw["since"], kind):
                        kw["until"] = mk["until"] = u
            elif mode in ("full", "prune"):
                kw["full_load"] = mk["full"] = True
                kw["prune"] = mk["prune"] = mode == "prune"
            where = f"run {n} ({mode}, {tz}, {kw})"
            note(f"{where}: {records}")
            _one(model, db, where, mode, records, kw, mk, loose=batch_size is not None)


def _one(model, db, where, mode, records, kw, mk, loose=False):
    wm_before = model.wm
    try:
        exp = model.replay(mk["max_future"]) if mode == "replay" else model.run(records, **mk)
    except Refused as r:
        event(f"{mode}: refused")
        with pytest.raises(HiwaterError) as exc:
            if mode == "replay":
                hiwater.quarantine_replay(stream="events", db=str(db), reason="late", now=NOW,
                                          max_future=mk["max_future"])
            else:
                src = write_jsonl(db.parent / "run.jsonl", records)
                hiwater.load(str(src), db=str(db), table="events", **{"max_rejected": "100%", **kw})
        assert exc.value.exit_code == r.exit_code, where
        check_against_model(model, db, Expect(dict.fromkeys(COUNTS, 0)), dict.fromkeys(COUNTS, 0), None, where,
                            loose)
        return
    if mode == "replay":
        s = hiwater.quarantine_replay(stream="events", db=str(db), reason="late", now=NOW,
                                      max_future=mk["max_future"])
    else:
        src = write_jsonl(db.parent / "run.jsonl", records)
        s = hiwater.load(str(src), db=str(db), table="events", **{"max_rejected": "100%", **kw})
    note(f"  model: {exp}; loader: {counts(s)}")
    for name, v in exp.counts.items():  # what the sequences exercise: --hypothesis-show-statistics
        if v:
            event(f"{mode}: {name}")
    if exp.pruned:
        event("prune: pruned rows")
    if exp.either:
        event("full: re-spelled cursor tie")
    if model.kind == "date":
        event("date stream")
    if mk.get("max_future") == "none" and exp.counts["inserted"] + exp.counts["updated"] and \
            any("2025-11-02" in str(r.get(model.cursor)) for r in records):
        event("the New York fold, future guard off")
    for r in records:
        if r.get(model.cursor) in RAW:
            event(f"{model.tz}: {r[model.cursor]}")
    if mode == "since":
        event(f"since: watermark {'moved' if wm_before != model.wm else 'stayed'}")
    check_against_model(model, db, exp, counts(s), s.pruned if mk.get("prune") else None, where, loose)
    if mode != "replay":
        assert s.counts.source_records == len(records), where


PROPERTY = dict(deadline=None, derandomize=True, database=None,
                phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@settings(max_examples=40, **PROPERTY)
@given(ts_runs(PLAIN_SPECS, ["inc", "inc", "full", "prune", "replay"], ["UTC"], names=("a",), empty=(False,),
               dates=(False,)))
def test_model_agrees_with_the_loader_on_plain_cases(case):
    """The harness itself: UTC, µs-or-coarser timestamps with offsets (no bare dates), full loads
    whose content never changes at one cursor, no empty prunes. This passes on the code of before issue 10, so a failure of the
    tests below is the loader's, not the model's."""
    tz, runs = case
    play_timestamps(tz, runs)


@settings(max_examples=40, **PROPERTY)
@given(ts_runs(ALL_SPECS, MODES_ALL, ["UTC", NY]))
def test_cursor_forms_zones_and_modes_match_the_model(case):
    tz, runs = case
    play_timestamps(tz, runs)


@settings(max_examples=25, **PROPERTY)
@given(ts_runs(ALL_SPECS, ["inc", "inc", "replay"], ["UTC", NY]))
def test_incremental_runs_and_replays_match_the_model(case):
    tz, runs = case
    play_timestamps(tz, runs, omit_tz=False)


@settings(max_examples=25, **PROPERTY)
@given(ts_runs(_specs(range(7), PLAIN_FORMS, []), ["inc", "since", "since"], ["UTC"]))
def test_backfills_match_the_model(case):
    tz, runs = case
    play_timestamps(tz, runs)


@settings(max_examples=25, **PROPERTY)
@given(ts_runs(_specs(range(7), FORMS, RAW[:3]), ["inc", "full", "prune"], ["UTC"]))
def test_full_loads_match_the_model(case):
    tz, runs = case
    play_timestamps(tz, runs)


@settings(max_examples=25, **PROPERTY)
@given(ts_runs(_specs(range(8), [f for f in FORMS if f != "date"], RAW), MODES_ALL, ["UTC", NY]),
       st.integers(1, 3))
def test_small_batches_match_the_model(case, batch_size):
    """Ties, late records, full loads and prunes across batch boundaries reach the same table and
    watermark. (Counts are not compared: a version superseded in a later batch is counted, and
    quarantined, differently, see the xfail tests below. No bare dates: with small batches the kind
    is judged on fewer values.)"""
    tz, runs = case
    runs = [{**r, "dates": False} for r in runs]
    play_timestamps(tz, runs, batch_size=batch_size)


def test_the_kind_does_not_depend_on_the_batch_size(tmp_path):
    db = tmp_path / "t.db"
    s = load(write_jsonl(tmp_path / "a.jsonl", [R(1, "2025-01-15"), R(2, "2025-01-15T10:00:00")]), db,
             batch_size=1)
    assert (s.counts.inserted, s.counts.rejected) == (2, 0)
    assert state(db)["kind"] == "timestamp"


def test_a_superseded_version_in_an_earlier_batch_is_not_late(tmp_path, monkeypatch):
    """Late records are held until the run has read every batch: one that a newer version of its
    key applied later in the run supersedes is unchanged, as it is within one batch."""
    db = tmp_path / "t.db"
    load(write_jsonl(tmp_path / "a.jsonl", [R(1, "2025-01-15T12:00:00")]), db, batch_size=1)
    s = load(write_jsonl(tmp_path / "b.jsonl", [R(3, "2025-01-15T11:00:00"), R(3, "2025-01-15T13:00:00")]), db,
             batch_size=1)
    assert (s.counts.inserted, s.counts.unchanged, s.counts.late) == (1, 1, 0)
    assert quarantined(db, "late") == []
    # past the number held (hiwater.apply.LATE_HELD) they are quarantined as decided: the
    # documented bound of this look-ahead
    import hiwater.apply
    monkeypatch.setattr(hiwater.apply, "LATE_HELD", 0)
    s = load(write_jsonl(tmp_path / "c.jsonl", [R(4, "2025-01-15T11:00:00"), R(4, "2025-01-15T14:00:00")]), db,
             batch_size=1)
    assert (s.counts.inserted, s.counts.late) == (1, 1)


# --- integer cursors: the key itself, or a field of its own -----------------------------------------

def int_runs(cursor_is_key: bool, modes, names=("a", "b"), empty=(False, False, False, True)):
    if cursor_is_key:
        rec = st.fixed_dictionaries({"id": st.integers(0, 7), "name": st.sampled_from(names)})
    else:
        rec = st.fixed_dictionaries({"id": st.integers(1, 4), "seq": st.integers(0, 9),
                                     "name": st.sampled_from(names)})
    run = st.fixed_dictionaries({
        "mode": st.sampled_from(modes),
        "records": st.lists(rec, min_size=1, max_size=8),
        "empty": st.sampled_from(empty),
        "since": st.one_of(st.integers(0, 8), st.sampled_from(["wm", "wm-1"])),
        "until": st.one_of(st.none(), st.integers(1, 9)),
    })
    return st.lists(run, min_size=3, max_size=6)


def play_ints(runs, cursor_is_key: bool):
    cursor = "id" if cursor_is_key else "seq"
    model = Model(key="id", cursor=cursor)
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "t.db"
        for n, run in enumerate(runs):
            mode = "inc" if n == 0 and run["mode"] == "replay" else run["mode"]
            records = [] if mode == "prune" and run["empty"] else run["records"]
            kw = dict(now=NOW, key="id", cursor=cursor)
            mk = dict(max_future="1d")
            if mode == "since":
                since = run["since"]
                if isinstance(since, str):  # at or just below the watermark of the moment
                    since = 0 if model.wm is None else model.wm - (since == "wm-1")
                kw["since"] = mk["since"] = str(since)
                if run["until"] is not None and run["until"] > since:
                    kw["until"] = mk["until"] = str(run["until"])
            elif mode in ("full", "prune"):
                kw["full_load"] = mk["full"] = True
                kw["prune"] = mk["prune"] = mode == "prune"
            where = f"run {n} ({mode}, {kw})"
            note(f"{where}: {records}")
            _one(model, db, where, mode, records, kw, mk)


@settings(max_examples=20, **PROPERTY)
@given(int_runs(False, ["inc", "inc", "full", "prune", "replay"], names=("a",), empty=(False,)))
def test_integer_cursor_field_matches_the_model(runs):
    """Also part of the harness check: integer cursors in their own field work before issue 10."""
    play_ints(runs, cursor_is_key=False)


@settings(max_examples=30, **PROPERTY)
@given(int_runs(True, ["inc", "inc", "inc", "since", "full", "prune", "replay"]))
def test_cursor_is_key_matches_the_model(runs):
    play_ints(runs, cursor_is_key=True)


# --- larger variants ---------------------------------------------------------------------------------

@pytest.mark.slow
@settings(max_examples=400, **PROPERTY)
@given(ts_runs(ALL_SPECS, MODES_ALL, ["UTC", NY], max_runs=8))
def test_cursor_forms_zones_and_modes_match_the_model_long(case):
    tz, runs = case
    play_timestamps(tz, runs)


@pytest.mark.slow
@settings(max_examples=300, **PROPERTY)
@given(int_runs(True, ["inc", "inc", "inc", "since", "full", "prune", "replay"]))
def test_cursor_is_key_matches_the_model_long(runs):
    play_ints(runs, cursor_is_key=True)

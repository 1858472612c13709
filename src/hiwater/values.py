"""Cursor values: parsing to comparable integers, and printing them back.

A stream's cursor has one *kind*, fixed by its first run and kept in its state:

- ``timestamp``: ISO-8601 date-times, with or without an offset. Compared as
  instants: normalised to integer microseconds since the epoch, UTC. Naive values
  are taken in ``assume_tz``.
- ``date``: ``YYYY-MM-DD``; normalised to microseconds at midnight UTC, so the
  same durations (``1d``) work for lookbacks.
- ``timestamp_ns``: the same instants at nanosecond precision: integer nanoseconds since
  the epoch, UTC, so 1677-09-21 to 2262-04-11 (int64). Chosen by a first run whose cursor
  column is Arrow ``timestamp[ns]`` or whose text carries 7 to 9 fractional digits; a
  ``timestamp`` stream refuses a value finer than a microsecond (see docs/concepts.md).
- ``int``: integers, compared as they are.

Everything here is pure and vectorised over pyarrow arrays where it pays.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import UsageError

TIMESTAMP = "timestamp"
DATE = "date"
INT = "int"
TIMESTAMP_NS = "timestamp_ns"
KINDS = (TIMESTAMP, DATE, INT, TIMESTAMP_NS)
TIME_KINDS = (TIMESTAMP, DATE, TIMESTAMP_NS)  # kinds whose values are instants (durations, now)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
US_PER_DAY = 86_400_000_000
# Arrow timestamps in microseconds hold years 1..9999 comfortably inside int64.
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def zone(name: str) -> dt.tzinfo:
    if name.upper() in ("UTC", "Z"):
        return dt.timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"--assume-tz {name!r}: not a known time zone",
                         hint="use an IANA name such as UTC or Europe/Berlin") from None


@dataclass(frozen=True)
class Parsed:
    """The result of parsing one batch's cursor column.

    ``values`` are the normalised integers (0 where invalid), ``valid`` marks the
    records that parsed, ``naive`` marks timestamps that carried no offset, and
    ``reasons`` explains the invalid ones (``None`` where valid).
    """

    values: np.ndarray
    valid: np.ndarray
    naive: np.ndarray
    reasons: list
    # (kind timestamp) the batch shows nanosecond cursors: a value finer than a microsecond, or
    # text with 7 to 9 fractional digits, as detect_kind judges a first batch
    finer: bool = False


class FinerThanMicrosecond(ValueError):
    """A ``timestamp`` (microsecond) stream's cursor with a sub-microsecond part."""


# A timestamp written with 7 to 9 fractional digits: a nanosecond cursor.
_NS_TEXT = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}\.\d{7,9}(?:$|[^0-9])"


def detect_kind(column: pa.Array) -> str | None:
    """The cursor kind a batch's cursor column shows, judged on all its values (not the first),
    so the order of records never decides it: all dates -> date, all integers -> int, any
    timestamp (or dates mixed with integers) -> timestamp, where a bare date is its midnight;
    an Arrow ``timestamp[ns]`` column, or any text timestamp with 7 to 9 fractional digits,
    -> timestamp_ns.
    Values of no kind do not vote; a batch of only those shows none (``None``). A later batch
    of a stream's first run that shows a wider kind restarts the run (see the loader)."""
    t = column.type
    if pa.types.is_integer(t):
        return INT
    if pa.types.is_date(t):
        return DATE
    if pa.types.is_timestamp(t):
        return TIMESTAMP_NS if t.unit == "ns" else TIMESTAMP
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        # Values of no kind at all ("N/A") are invalid under any kind: they do not decide it.
        text = pc.utf8_trim_whitespace(column.drop_null())
        dates = pc.match_substring_regex(text, r"^\d{4}-\d{2}-\d{2}$")
        ints = pc.match_substring_regex(text, r"^-?\d+$")
        stamps = pc.match_substring_regex(text, r"^\d{4}-\d{2}-\d{2}[T ]\d")
        n_dates, n_ints, n_stamps = (pc.sum(m.cast(pa.int64())).as_py() or 0 for m in (dates, ints, stamps))
        if n_stamps and pc.any(pc.match_substring_regex(text, _NS_TEXT)).as_py():
            return TIMESTAMP_NS
        if n_stamps or (n_dates and n_ints):
            return TIMESTAMP
        if n_dates:
            return DATE
        if n_ints:
            return INT
        return None
    return None


def _to_utc_us(value: dt.datetime, tz: dt.tzinfo, shown=None) -> int:
    """Microseconds since the epoch. A naive value is a wall-clock time in ``tz``: one that the
    zone skips (the spring-forward gap) is refused; one that it shows twice (fall-back) is the
    first of the two instants (``fold=0``, the earlier one)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz, fold=0)
        if not isinstance(tz, dt.timezone):  # a zone with transitions: check the wall time exists
            back = value.astimezone(dt.timezone.utc).astimezone(tz)
            if back.replace(tzinfo=None) != value.replace(tzinfo=None):
                raise ValueError(f"cursor {shown if shown is not None else value.isoformat()!r} does not exist in "
                                 f"{tz} (the clocks skipped that hour)")
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


# Timestamps are kept between 0001-01-02 and 9999-12-30 UTC, so that printing one back in any
# zone stays inside the years Python's datetime can hold.
MIN_US = -62135510400000000      # 0001-01-02T00:00:00Z
MAX_US = 253402128000000000      # 9999-12-30T00:00:00Z


def _in_range(us: int, value) -> int:
    if not MIN_US <= us <= MAX_US:
        raise ValueError(f"cursor {value!r} is out of range (0001-01-02 to 9999-12-30 UTC)")
    return us


def parse_one(value, kind: str, tz: dt.tzinfo) -> tuple[int, bool]:
    """Parse one cursor value; returns ``(normalised, naive)``; raises ValueError."""
    if kind == TIMESTAMP_NS:
        return parse_one_ns(value, tz)
    if value is None:
        raise ValueError("cursor is missing")
    if kind == INT:
        if isinstance(value, bool):
            raise ValueError(f"cursor {value!r} is not an integer")
        if isinstance(value, int):
            return value, False
        if isinstance(value, float) and value.is_integer():
            return int(value), False
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            return int(value), False
        raise ValueError(f"cursor {value!r} is not an integer")
    if isinstance(value, dt.datetime):
        if kind == DATE:
            raise ValueError(f"cursor {value.isoformat()!r} is a date-time, the stream's cursor is a date")
        return _in_range(_to_utc_us(value, tz, value.isoformat()), value.isoformat()), value.tzinfo is None
    if isinstance(value, dt.date):
        if kind != DATE:
            raise ValueError(f"cursor {value.isoformat()!r} is a date, the stream's cursor is a timestamp")
        return (value - dt.date(1970, 1, 1)).days * US_PER_DAY, True
    if not isinstance(value, str):
        raise ValueError(f"cursor {value!r} is not a {kind}")
    text = value.strip()
    if kind == DATE:
        if not _DATE_RE.match(text):
            raise ValueError(f"cursor {value!r} is not a date (YYYY-MM-DD)")
        try:
            d = dt.date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"cursor {value!r} is not a valid date") from None
        return (d - dt.date(1970, 1, 1)).days * US_PER_DAY, True
    # A bare date in a timestamp stream is its midnight (in assume_tz).
    return parse_iso(text, tz, value)


# One ISO-8601 grammar on every Python version (3.10's fromisoformat is narrower than 3.11's,
# and 3.11's also takes forms such as week dates that no export means as a timestamp):
# YYYY-MM-DD, then optionally 'T' or ' ' and hh[:mm[:ss[.fraction]]], then optionally
# Z, +hh:mm, +hhmm or +hh. Arrow's vectorised cast (the fast path) accepts a subset of it.
_ISO_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?"
    r"(Z|z|[+-]\d{2}(?::?\d{2})?)?)?")


def parse_iso(text: str, tz: dt.tzinfo, original=None) -> tuple[int, bool]:
    """Parse ISO-8601 text to ``(microseconds UTC, naive)``; raises ValueError with a reason."""
    us, naive, rest = _iso(text, tz, original, False)
    return us, naive


def parse_iso_ns(text: str, tz: dt.tzinfo, original=None) -> tuple[int, bool]:
    """Parse ISO-8601 text to ``(nanoseconds UTC, naive)``; raises ValueError with a reason."""
    shown = original if original is not None else text
    us, naive, rest = _iso(text, tz, original, True)
    return _ns_in_range(us * 1000 + rest, shown), naive


def finer_than_us(shown) -> str:
    """Why a ``timestamp`` (microsecond) stream refuses a cursor with a sub-microsecond part."""
    return (f"cursor {shown!r} is finer than a microsecond, and this stream's cursor kind is timestamp "
            f"(microseconds, fixed by its first run): round it at the source, or start the stream over "
            f"(`hiwater stream drop`) so that its first run keeps nanoseconds (kind timestamp_ns)")


def _iso(text: str, tz: dt.tzinfo, original, ns: bool) -> tuple[int, bool, int]:
    """``(microseconds UTC, naive, nanoseconds past the microsecond)``: the nanoseconds are
    refused (not rounded) unless ``ns``."""
    shown = original if original is not None else text
    m = _ISO_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"cursor {shown!r} is not an ISO-8601 timestamp")
    y, mo, d, hh, mi, ss, frac, off = m.groups()
    micro = rest = 0
    if frac:
        if not ns and len(frac) > 6 and frac[6:].strip("0"):
            raise FinerThanMicrosecond(finer_than_us(shown))
        if ns and len(frac) > 9 and frac[9:].strip("0"):
            raise ValueError(f"cursor {shown!r} is finer than a nanosecond, which hiwater cannot compare "
                             f"exactly (cut it to 9 fractional digits)")
        micro = int(frac[:6].ljust(6, "0"))
        rest = int(frac[6:9].ljust(3, "0")) if ns else 0
    try:
        value = dt.datetime(int(y), int(mo), int(d), int(hh or 0), int(mi or 0), int(ss or 0), micro)
    except ValueError as exc:
        raise ValueError(f"cursor {shown!r} is not a valid timestamp ({exc})") from None
    if off:
        if off in ("Z", "z"):
            offset = dt.timedelta(0)
        else:
            digits = off[1:].replace(":", "")
            hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
            if hours > 23 or minutes > 59:
                raise ValueError(f"cursor {shown!r} has an invalid UTC offset")
            offset = dt.timedelta(hours=hours, minutes=minutes) * (-1 if off[0] == "-" else 1)
        value = value.replace(tzinfo=dt.timezone(offset))
    return _in_range(_to_utc_us(value, tz, shown), shown), value.tzinfo is None, rest


# A nanosecond cursor is an int64 of nanoseconds since the epoch (Arrow's and pandas' range,
# less pandas' NaT): 1677-09-21T00:12:43.145224193Z to 2262-04-11T23:47:16.854775807Z.
MIN_NS = -(2**63) + 1
MAX_NS = 2**63 - 1
NS_RANGE = "1677-09-21T00:12:43.145224193 to 2262-04-11T23:47:16.854775807 UTC"


def _ns_in_range(ns: int, value) -> int:
    if not MIN_NS <= ns <= MAX_NS:
        raise ValueError(f"cursor {value!r} is out of range for a nanosecond cursor ({NS_RANGE})")
    return ns


def parse_one_ns(value, tz: dt.tzinfo) -> tuple[int, bool]:
    """Parse one cursor value of a ``timestamp_ns`` stream; returns ``(nanoseconds, naive)``."""
    if value is None:
        raise ValueError("cursor is missing")
    if isinstance(value, dt.datetime):  # pandas' Timestamp too, with its nanosecond
        shown = value.isoformat()
        us = _in_range(_to_utc_us(value, tz, shown), shown)
        return _ns_in_range(us * 1000 + int(getattr(value, "nanosecond", 0)), shown), value.tzinfo is None
    if isinstance(value, dt.date):
        raise ValueError(f"cursor {value.isoformat()!r} is a date, the stream's cursor is a timestamp")
    if not isinstance(value, str):
        raise ValueError(f"cursor {value!r} is not a timestamp")
    return parse_iso_ns(value.strip(), tz, value)


def parse_column(column: pa.Array, kind: str, tz: dt.tzinfo) -> Parsed:
    """Parse a whole cursor column. Vectorised for the common shapes, exact for the rest."""
    n = len(column)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if kind == TIMESTAMP_NS:
        return _parse_column_ns(column, tz)
    if pa.types.is_timestamp(column.type) and column.type.unit == "ns":
        return _parse_ns(column, kind, tz)
    fast = _parse_fast(column, kind, tz)
    if fast is not None:
        return fast
    values = np.zeros(n, dtype=np.int64)
    valid = np.zeros(n, dtype=bool)
    naive = np.zeros(n, dtype=bool)
    reasons: list = [None] * n
    finer = False
    for i, v in enumerate(column.to_pylist()):
        try:
            values[i], naive[i] = parse_one(v, kind, tz)
            valid[i] = True
        except FinerThanMicrosecond as exc:
            reasons[i], finer = str(exc), True
        except ValueError as exc:
            reasons[i] = str(exc)
        except OverflowError:
            reasons[i] = f"cursor {v!r} is out of range"
    if kind == TIMESTAMP and not finer and (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        # (only here: the fast path's cast refuses any text with 7 or more fractional digits)
        finer = bool(pc.any(pc.match_substring_regex(pc.utf8_trim_whitespace(column), _NS_TEXT)).as_py())
    return Parsed(values, valid, naive, reasons, finer)


def _parse_fast(column: pa.Array, kind: str, tz: dt.tzinfo) -> Parsed | None:
    """Vectorised parse when every value has one clean shape; ``None`` to fall back."""
    n = len(column)
    if column.null_count:
        return None
    t = column.type
    try:
        if kind == INT and pa.types.is_integer(t):
            vals = column.cast(pa.int64()).to_numpy(zero_copy_only=False)
            return Parsed(vals, np.ones(n, bool), np.zeros(n, bool), [None] * n)
        if kind == TIMESTAMP and (pa.types.is_string(t) or pa.types.is_large_string(t)):
            # Arrow's ISO-8601 cast takes naive values only ("...T10:00:00[.ffffff]", a space for
            # the T, a bare date as midnight); any offset, 'Z', 7+ fractional digits or odd value
            # makes it refuse the whole column, and the exact per-value parser takes over.
            if tz is not dt.timezone.utc:
                return None  # naive values in a zone with DST: the exact path handles them
            ts = pc.cast(column, pa.timestamp("us"))
            vals = ts.cast(pa.int64()).to_numpy(zero_copy_only=False)
            if n and (vals.min() < MIN_US or vals.max() > MAX_US):
                return None  # the exact path names the values out of range
            return Parsed(vals, np.ones(n, bool), np.ones(n, bool), [None] * n)
        if kind == TIMESTAMP and pa.types.is_timestamp(t):
            if t.tz is None and tz is not dt.timezone.utc:
                return None
            vals = column.cast(pa.timestamp("us", tz=t.tz)).cast(pa.int64()).to_numpy(zero_copy_only=False)
            if n and (vals.min() < MIN_US or vals.max() > MAX_US):
                return None
            return Parsed(vals, np.ones(n, bool), np.full(n, t.tz is None), [None] * n)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
        return None
    return None


def _parse_ns(column: pa.Array, kind: str, tz: dt.tzinfo) -> Parsed:
    """A nanosecond timestamp column (pandas' default) in a ``timestamp`` (microsecond) stream:
    whole microseconds compare exactly; a value with a non-zero sub-microsecond part is
    refused, never rounded into another version."""
    ns = pc.fill_null(column.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    fine = (ns % 1000 != 0) & column.is_valid().to_numpy(zero_copy_only=False)
    us = pa.array(np.where(fine, 0, ns // 1000), pa.int64(), mask=column.is_null().to_numpy(zero_copy_only=False))
    parsed = parse_column(us.cast(pa.timestamp("us", tz=column.type.tz)), kind, tz)
    for i in np.flatnonzero(fine):
        parsed.valid[i] = False
        parsed.reasons[i] = finer_than_us(_ns_text(int(ns[i])))
    return parsed if not fine.any() else Parsed(parsed.values, parsed.valid, parsed.naive, parsed.reasons, True)


def _parse_column_ns(column: pa.Array, tz: dt.tzinfo) -> Parsed:
    """A ``timestamp_ns`` stream's cursor column, to nanoseconds. A timestamp column is split
    into whole microseconds (parsed as a ``timestamp`` stream parses them: zones, ranges) and
    the nanoseconds past them, which time zones never touch; text is cast by Arrow when every
    value is naive in UTC, else parsed value by value."""
    n = len(column)
    t = column.type
    if pa.types.is_timestamp(t):
        valid_in = column.is_valid().to_numpy(zero_copy_only=False)
        if t.unit == "ns":
            raw = pc.fill_null(column.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
            us_v, rest = raw // 1000, raw % 1000
        else:
            try:
                us_col = column.cast(pa.timestamp("us", tz=t.tz))
            except (pa.ArrowInvalid, OverflowError):
                return _parse_each_ns(column, tz)
            us_v = pc.fill_null(us_col.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
            rest = np.zeros(n, np.int64)
        us_arr = pa.array(us_v, pa.int64(), mask=~valid_in).cast(pa.timestamp("us", tz=t.tz))
        parsed = parse_column(us_arr, TIMESTAMP, tz)
        lo_us, hi_us = MIN_NS // 1000, MAX_NS // 1000
        us = np.where(parsed.valid, parsed.values, 0)
        edge = parsed.valid & ((us <= lo_us) | (us >= hi_us))
        values = np.where(edge, 0, us) * 1000 + np.where(edge, 0, rest)
        valid = parsed.valid.copy()
        for i in np.flatnonzero(edge):
            total = int(us[i]) * 1000 + int(rest[i])
            if MIN_NS <= total <= MAX_NS:
                values[i] = total
            else:
                valid[i] = False
                parsed.reasons[i] = (f"cursor {_ns_text(total)!r} is out of range for a nanosecond cursor "
                                     f"({NS_RANGE})")
        return Parsed(np.where(valid, values, 0), valid, parsed.naive, parsed.reasons)
    if (pa.types.is_string(t) or pa.types.is_large_string(t)) and not column.null_count \
            and tz is dt.timezone.utc:
        try:  # Arrow's cast: naive ISO text in UTC, up to 9 fractional digits (see _parse_fast)
            vals = pc.cast(column, pa.timestamp("ns")).cast(pa.int64()).to_numpy(zero_copy_only=False)
            if n == 0 or (vals.min() >= MIN_NS):
                return Parsed(vals, np.ones(n, bool), np.ones(n, bool), [None] * n)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
            pass
    return _parse_each_ns(column, tz)


def _parse_each_ns(column: pa.Array, tz: dt.tzinfo) -> Parsed:
    n = len(column)
    values = np.zeros(n, dtype=np.int64)
    valid = np.zeros(n, dtype=bool)
    naive = np.zeros(n, dtype=bool)
    reasons: list = [None] * n
    for i, v in enumerate(column.to_pylist()):
        try:
            values[i], naive[i] = parse_one_ns(v, tz)
            valid[i] = True
        except ValueError as exc:
            reasons[i] = str(exc)
        except OverflowError:
            reasons[i] = f"cursor {v!r} is out of range for a nanosecond cursor ({NS_RANGE})"
    return Parsed(values, valid, naive, reasons)


def _ns_text(ns: int) -> str:
    us, rest = divmod(ns, 1000)
    return (EPOCH + dt.timedelta(microseconds=us)).replace(tzinfo=None).isoformat(timespec="microseconds") + f"{rest:03d}"


def format_value(value: int | None, kind: str | None, naive: bool, tz: dt.tzinfo):
    """Print a normalised cursor value back as the user wrote its kind."""
    if value is None:
        return None
    if kind == INT:
        return int(value)
    if kind == DATE:
        return (dt.date(1970, 1, 1) + dt.timedelta(microseconds=int(value))).isoformat()
    if kind == TIMESTAMP_NS:
        return _format_ns(int(value), naive, tz)
    instant = EPOCH + dt.timedelta(microseconds=int(value))
    if naive:
        return instant.astimezone(tz).replace(tzinfo=None).isoformat()
    return instant.isoformat()


def _format_ns(ns: int, naive: bool, tz: dt.tzinfo) -> str:
    """A nanosecond cursor as ISO-8601 text, always with 9 fractional digits."""
    us, rest = divmod(ns, 1000)
    instant = EPOCH + dt.timedelta(microseconds=us)
    if naive:
        instant = instant.astimezone(tz).replace(tzinfo=None)
    text = instant.isoformat(timespec="microseconds")
    return text[:26] + f"{rest:03d}" + text[26:]


def scale(kind: str | None) -> int:
    """A kind's cursor units per microsecond (durations and clocks are kept in microseconds)."""
    return 1000 if kind == TIMESTAMP_NS else 1


def parse_bound(text, kind: str | None, tz: dt.tzinfo, option: str) -> tuple[int, bool]:
    """Parse a ``--since``/``--until``/``state set`` value against a kind (or guess it)."""
    if kind is None:
        s = str(text).strip()
        kind = DATE if _DATE_RE.match(s) else INT if s.lstrip("-").isdigit() else \
            TIMESTAMP_NS if re.match(_NS_TEXT, s) else TIMESTAMP
    try:
        return parse_one(text if not isinstance(text, str) else text, kind, tz)
    except (ValueError, OverflowError) as exc:
        raise UsageError(f"{option} {text!r}: {exc}") from None


def now_us(now: dt.datetime | None = None) -> int:
    now = now or dt.datetime.now(dt.timezone.utc)
    return _to_utc_us(now, dt.timezone.utc)

"""Stored forms: how a value looks once a target holds it, or a quarantined record as text.

Targets keep nested values (structs, lists, maps) as JSON text and times as ISO text; the
quarantine keeps a record as JSON text exactly as it arrived. These rules are shared by the
writer, the lookups (keys are compared in their stored form) and the reader thread, so they
live here, below all of them.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from .jsontext import to_json_text


def record_text(rec) -> str:
    """A quarantined record as JSON text, exactly as it arrived: NaN and ±Infinity stay
    (as the JSON extension tokens the replay reads back), datetimes as ISO text."""
    if not py_non_finite(rec):  # orjson would write NaN as null
        try:
            return orjson.dumps(rec, default=_json_default,
                                option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:  # an integer beyond 64 bits
            pass
    return json.dumps(rec, default=_json_default, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _json_default(v):
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    return str(v)


class NotStorable(ValueError):
    """A Python value that no JSON text keeps as it was sent; ``str()`` is the reason."""


def py_json(v) -> str:
    """A nested Python value (dict, list, tuple) as JSON text, exactly as sent: decimals keep their
    digits, dates and times their ISO text, a timedelta its ISO 8601 seconds. Raises
    :class:`NotStorable` with the reason for what JSON cannot keep (an object key that is not a
    string, a set, bytes, an integer beyond 64 bits, any other object)."""
    try:
        return orjson.dumps(v, default=_nested_default).decode()
    except TypeError:
        raise NotStorable(py_not_storable(v) or "holds a value JSON text cannot keep") from None


def _nested_default(v):
    import decimal
    if isinstance(v, decimal.Decimal) and v.is_finite():
        return orjson.Fragment(str(v))
    if isinstance(v, dt.timedelta):
        return duration_iso(v)
    raise TypeError


def duration_iso(v: dt.timedelta) -> str:
    """A timedelta as ISO 8601 seconds, exact (``PT86400S``, ``-PT0.000001S``)."""
    us = (v.days * 86_400 + v.seconds) * 1_000_000 + v.microseconds
    whole, frac = divmod(abs(us), 1_000_000)
    text = f"{whole}.{frac:06d}".rstrip("0").rstrip(".")
    return f"{'-' if us < 0 else ''}PT{text}S"


def py_not_storable(v) -> str | None:
    """Why a Python value (at any depth) cannot be kept as JSON text, or None."""
    import decimal
    import uuid
    if v is None or isinstance(v, (bool, str, float, dt.date, dt.time, dt.timedelta, uuid.UUID)):
        return None
    if isinstance(v, int):
        return None if -(2**63) <= v < 2**64 else "holds a number JSON text cannot keep"
    if isinstance(v, decimal.Decimal):
        return None if v.is_finite() else f"holds {v}, not a finite number"
    if isinstance(v, dict):
        for k, x in v.items():
            if not isinstance(k, str):
                return f"has an object key {k!r} ({type(k).__name__}), not a string"
            why = py_not_storable(x)
            if why:
                return why
        return None
    if isinstance(v, (list, tuple)):
        return next((why for why in map(py_not_storable, v) if why), None)
    if isinstance(v, (set, frozenset)):
        return "holds a set, which has no order to keep (send a list)"
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "holds bytes inside an object or list (JSON has no bytes; send them as a field of their own)"
    return f"holds a {type(v).__name__}, which is not a value hiwater stores"


def py_non_finite(v) -> bool:
    """Whether a Python value holds NaN or ±Infinity anywhere (nested values too)."""
    if isinstance(v, float):
        return v != v or v in (float("inf"), float("-inf"))
    if isinstance(v, dict):
        return any(py_non_finite(x) for x in v.values())
    if isinstance(v, (list, tuple)):
        return any(py_non_finite(x) for x in v)
    return False


def pylist(col, idx: np.ndarray) -> list:
    """The values of ``col`` at ``idx`` as Python values, in their stored form."""
    return storable(col if len(idx) == len(col) else col.take(pa.array(idx))).to_pylist()


def store_early(raw) -> None:
    """In the reader thread: nested values as JSON text (Arrow kernels, which leave the GIL
    to the writer), so the writer only picks rows. Best effort: a column that fails here is
    converted later in the usual place, where its error is reported."""
    tbl = raw.table
    for name, col in zip(tbl.column_names, tbl.columns):
        if nested(col.type):
            try:
                raw.stored[name] = storable(col)
            except Exception:  # noqa: BLE001 - reported later, on the writer's path
                pass


def storable(arr) -> pa.Array:
    """A column as targets store it: nested values as JSON text, timestamps as ISO text."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if nested(t):
        return to_json_text(arr)
    if pa.types.is_timestamp(t) and t.unit == "ns":
        return ns_text(arr)
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return pa.array([None if v is None else v.isoformat() for v in arr.to_pylist()], pa.string())
    return arr  # decimals stay exact: each target stores them in an exact type


def ns_text(arr: pa.Array) -> pa.Array:
    """A ``timestamp[ns]`` column as ISO text at its full precision, as Python's isoformat()
    prints it (no fraction for whole seconds, six digits for whole microseconds, else nine;
    ``+00:00`` for a zone-aware value)."""
    tz = arr.type.tz
    text = pc.strftime(arr, "%Y-%m-%dT%H:%M:%S%z" if tz else "%Y-%m-%dT%H:%M:%S")  # 9 digits
    text = pc.replace_substring_regex(text, r"(\.[0-9]{6})000", r"\1")
    text = pc.replace_substring_regex(text, r"\.000000([+-]|$)", r"\1")
    if tz:
        text = pc.replace_substring_regex(text, r"([+-][0-9]{2})([0-9]{2})$", r"\1:\2")
    return text


def nested(t: pa.DataType) -> bool:
    """Values targets keep as JSON text."""
    return pa.types.is_struct(t) or pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_map(t)

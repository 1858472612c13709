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

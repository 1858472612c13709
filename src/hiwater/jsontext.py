"""Nested values to JSON text, vectorised with Arrow compute where the shapes allow.

Targets store nested objects as JSON text. Encoding a million small objects one by one
in Python costs more than parsing the whole file; for structs of scalars (the common
shape) Arrow's string kernels build the same text in a few passes. Anything else
(lists, control characters, non-finite floats) takes the exact per-value path.
"""

from __future__ import annotations

import json

import orjson
import pyarrow as pa
import pyarrow.compute as pc


class _Fallback(Exception):
    pass


def to_json_text(arr) -> pa.Array:
    """A string array holding each value of ``arr`` as JSON text (null stays null)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    try:
        if pa.types.is_struct(arr.type):
            out = _encode(arr)
            return out if arr.null_count == 0 else pc.if_else(arr.is_valid(), out, pa.scalar(None, pa.string()))
    except (_Fallback, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    return pa.array([None if v is None else orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS).decode()
                     for v in arr.to_pylist()], pa.string())


def _encode(arr: pa.Array) -> pa.Array:
    """JSON text for every slot (``null`` for nulls)."""
    t = arr.type
    null = pa.scalar("null", pa.string())
    if pa.types.is_null(t):
        return pa.array(["null"] * len(arr), pa.string())
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        s = arr.cast(pa.string())
        if pc.any(pc.match_substring_regex(s, '[\\x00-\\x1f"\\\\]')).as_py():  # one pass when none needs escaping
            if pc.any(pc.match_substring_regex(s, "[\\x00-\\x1f]")).as_py():
                raise _Fallback
            s = pc.replace_substring(s, "\\", "\\\\")
            s = pc.replace_substring(s, '"', '\\"')
        quoted = pc.binary_join_element_wise('"', s, '"', "")
        return pc.fill_null(quoted, null)
    if pa.types.is_boolean(t):
        return pc.fill_null(pc.if_else(arr, "true", "false"), null)
    if pa.types.is_integer(t):
        return pc.fill_null(arr.cast(pa.string()), null)
    if pa.types.is_floating(t):
        if not pc.all(pc.fill_null(pc.is_finite(arr), True)).as_py():
            raise _Fallback
        return pc.fill_null(arr.cast(pa.string()), null)
    if pa.types.is_struct(t) and t.num_fields == 0:  # {} (a join of scalars alone is a scalar)
        return pc.if_else(arr.is_valid(), pa.scalar("{}", pa.string()), null)
    if pa.types.is_struct(t):
        parts = [pa.scalar("{", pa.string())]
        for i in range(t.num_fields):
            name = t.field(i).name
            child = arr.field(i)
            parts.append(pa.scalar(("," if i else "") + json.dumps(name) + ":", pa.string()))
            parts.append(_encode(child))
        parts.append(pa.scalar("}", pa.string()))
        text = pc.binary_join_element_wise(*parts, "")
        return text if arr.null_count == 0 else pc.if_else(arr.is_valid(), text, null)
    raise _Fallback

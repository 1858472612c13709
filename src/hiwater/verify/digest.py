"""The one checksum every side computes: what a row contributes to its window's digest.

A window's digest is ``(count, sum)``: the number of rows and the sum, modulo 2**64, of each row's
hash. A sum does not depend on the order rows are read in, so a database can compute it with
``GROUP BY`` and only the two numbers cross the wire. The definition, byte for byte:

- **key text**: each key column's text joined by ``0x1e``. Integers print in decimal, text is
  itself (so ``007`` and ``7`` stay two keys, as they are two keys in the target).
- **row hash**: the first 8 bytes, big-endian, of ``md5(key text || 0x1f || cursor)``, where
  ``cursor`` is the stream's normalised integer (:mod:`hiwater.values`) in decimal. With
  ``--content`` the row also carries ``0x1f || content text`` (:func:`content_text`) before hashing.
- **key hash**: the first 60 bits of ``md5(key text)``: where a key lies when a differing window
  is split into key ranges. Hashing the key (not comparing its values) gives every side the same
  order whatever its collation, and even ranges on skewed or composite keys.

SQL sides spell the same definition in their dialect (:mod:`hiwater.verify.sides`); the tests
hold every dialect to these Python functions.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import math

import orjson

KEY_SEP = "\x1e"
FIELD_SEP = "\x1f"
NULL = "\x00"
MOD = 1 << 64
KEY_BITS = 60
KEY_SPACE = 1 << KEY_BITS


def key_text(values) -> str:
    return KEY_SEP.join(_key_part(v) for v in values)


def _key_part(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def row_hash(ktext: str, cursor: int, content: str | None = None) -> int:
    text = f"{ktext}{FIELD_SEP}{int(cursor)}"
    if content is not None:
        text += FIELD_SEP + content
    return int.from_bytes(hashlib.md5(text.encode()).digest()[:8], "big")


def key_hash(ktext: str) -> int:
    return int.from_bytes(hashlib.md5(ktext.encode()).digest()[:8], "big") >> (64 - KEY_BITS)


def content_text(values) -> str:
    """The stored-as-sent text of a row's other columns (in the target's column order), each by
    :func:`canonical`, joined by ``0x1f``."""
    return FIELD_SEP.join(canonical(v) for v in values)


def canonical(v) -> str:
    """One text per value, whatever type a side's driver hands back for it.

    ``NULL`` is ``0x00``; booleans ``true``/``false``; integers decimal; a finite float its
    shortest round-trip decimal, an integral one as an integer (``7.0`` is ``7``: JSON does not
    tell them apart); an exact decimal as sent, scale included (``1.50`` stays ``1.50``, the text
    a target that keeps decimals as text holds); NaN and infinities ``nan``/``inf``/``-inf``;
    text itself; an aware date-time as UTC ``YYYY-MM-DDTHH:MM:SS.ffffffZ``,
    a naive one the same without ``Z``; a date ``YYYY-MM-DD``; JSON objects and arrays as compact
    JSON with sorted keys (text that holds JSON is parsed first, so drivers that return JSON as a
    string agree with those that return it parsed); bytes as lowercase hex.
    """
    if v is None:
        return NULL
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return _number(decimal.Decimal(repr(v)))
    if isinstance(v, decimal.Decimal):
        if v.is_nan():
            return "nan"
        if v.is_infinite():
            return "inf" if v > 0 else "-inf"
        return format(v, "f")
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            return v.astimezone(dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
        return v.isoformat(timespec="microseconds")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, (dict, list)):
        return orjson.dumps(v, option=orjson.OPT_SORT_KEYS).decode()
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, str):
        s = v.strip()
        if s[:1] in ("{", "[") and s[-1:] in ("}", "]"):
            try:
                return orjson.dumps(orjson.loads(s), option=orjson.OPT_SORT_KEYS).decode()
            except orjson.JSONDecodeError:
                return v
        return v
    return str(v)


def _number(d: decimal.Decimal) -> str:
    if d == d.to_integral_value():
        return str(int(d))
    return format(d.normalize(), "f")


def add(total: int, h: int) -> int:
    return (total + h) % MOD

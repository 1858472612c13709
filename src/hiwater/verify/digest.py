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

**Integer keys** (one integer key column on both sides, no ``--content``) use a second definition
that every database computes in plain 64-bit integer arithmetic, with no md5 and no per-row call
into Python (SQLite has no md5): :func:`int_row_hash` and :func:`int_key_hash`. Both sides of one
comparison always use the same definition (:func:`hiwater.verify.sides.agree`).
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


# --- integer keys: the same digest in integer arithmetic every SQL dialect has -------------------
#
# A row ``(k, c)`` (both 64-bit integers) hashes to two halves, each over the prime field of
# ``P1`` and ``P2`` (< 2**31):
#
#     a, b = k % P, c % P                  (% keeps the dividend's sign, as in every SQL dialect)
#     half = ((a + D) * (b + A)) % P
#
# The cross term ``a*b`` keeps a sum of row hashes from cancelling when two keys swap cursors
# (the sum changes by ``(a1 - a2)(b2 - b1)``); a cursor that moves changes it by ``(a + D) * Δb``;
# two halves with other primes and constants make a structured cancellation (two keys' changes
# cancelling in one field) vanishingly unlikely in both. It is deliberately few operations (six
# per half: ``k`` and ``c`` each reduced once): a database evaluates it once per row, SQLite as
# bytecode with no common subexpressions, and PostgreSQL pays a function call per operator.
# Every intermediate stays below 2**63 (SQLite turns an overflow into a float, PostgreSQL and
# MySQL raise): ``|a + D|, |b + A| < 2**31 + 2**29`` (``A, D < 2**29``), and each half below 2**31, so a database sums a half over 2**32 rows exactly with
# its own ``SUM``. The row hash is ``(hi * 2**32 + lo) mod 2**64``: a window's digest is still the
# sum modulo 2**64 of its row hashes, recombined from the two sums in Python (:func:`combine`).

INT = "int"
MD5 = "md5"
P1, P2 = 2147483647, 2147483629
_ROW = ((P1, 0x1545F491, 0x1B873593), (P2, 0x17D4EB2F, 0x165667B1))          # (P, A, D), all < 2**29
_KEY = ((P1, 0x1F83D9AB, 0x1BE0CD19, 0x2F6B8F3D), (P2, 0x0A8E3C5F, 0x3A6F1D9B, 0x1C3B5E27))
_LOW_BITS = KEY_BITS - 31   # the key hash: the P1 half above, the P2 half's low bits below


def _tmod(x: int, p: int) -> int:
    r = abs(x) % p
    return r if x >= 0 else -r


def _half(a: int, b: int, p: int, A: int, Dc: int, E: int) -> int:
    x = _tmod(a * A + b, p)
    x = _tmod(x * (a + Dc) + a, p)
    return _tmod(x * (a + E) + a, p)


def _row_half(a: int, b: int, p: int, A: int, Dc: int) -> int:
    return _tmod((a + Dc) * (b + A), p)


def int_row_hash(k: int, c: int) -> int:
    hi, lo = (_row_half(_tmod(k, p), _tmod(c, p), p, A, Dc) for p, A, Dc in _ROW)
    return (hi * (1 << 32) + lo) % MOD


def int_key_hash(k: int) -> int:
    u, v = (_half(_tmod(k, p), _tmod(k, p), p, A, Dc, E) for p, A, Dc, E in _KEY)
    return ((u + P1) % P1 << _LOW_BITS) + (v + P2) % P2 % (1 << _LOW_BITS)


def combine(hi_sum, lo_sum) -> int:
    """A window's sum of row hashes from the sums of its halves (what SQL returns)."""
    return (int(hi_sum) * (1 << 32) + int(lo_sum)) % MOD


def int_row_sql(k: str, c: str) -> tuple[str, str]:
    """The two halves of :func:`int_row_hash` as SQL on the 64-bit integer expressions ``k`` and
    ``c`` (give column names: each appears once in each half)."""
    return tuple(f"(((({k} % {p}) + {Dc}) * (({c} % {p}) + {A})) % {p})" for p, A, Dc in _ROW)


def int_key_sql(k: str) -> str:
    """:func:`int_key_hash` as SQL on the 64-bit integer expression ``k``."""
    u, v = (_half_sql(f"({k} % {p})", f"({k} % {p})", p, A, Dc, E) for p, A, Dc, E in _KEY)
    return f"((({u}) + {P1}) % {P1} * {1 << _LOW_BITS} + (({v}) + {P2}) % {P2} % {1 << _LOW_BITS})"


def _half_sql(a: str, b: str, p: int, A: int, Dc: int, E: int) -> str:
    x = f"(({a} * {A} + {b}) % {p})"
    x = f"(({x} * ({a} + {Dc}) + {a}) % {p})"
    return f"(({x} * ({a} + {E}) + {a}) % {p})"


def int_hashes(keys, cursors):
    """:func:`int_row_hash` and :func:`int_key_hash` of numpy int64 arrays, vectorised."""
    import numpy as np

    def tmod(x, p):
        return np.fmod(x, p)   # C's remainder: the dividend's sign, as SQL's %

    def half(a, b, p, A, Dc, E):
        x = tmod(a * A + b, p)
        x = tmod(x * (a + Dc) + a, p)
        return tmod(x * (a + E) + a, p)

    k = np.asarray(keys, dtype=np.int64)
    c = np.asarray(cursors, dtype=np.int64)
    hi, lo = (tmod((tmod(k, p) + Dc) * (tmod(c, p) + A), p) for p, A, Dc in _ROW)
    h = (hi.astype(np.uint64) << np.uint64(32)) + lo.astype(np.uint64)   # wraps: modulo 2**64
    u, v = (half(tmod(k, p), tmod(k, p), p, A, Dc, E) for p, A, Dc, E in _KEY)
    kh = (((u + P1) % P1) << _LOW_BITS) + (v + P2) % P2 % (1 << _LOW_BITS)
    return h, kh.astype(np.int64)

"""Logical column types: what a column holds, whatever database keeps it (pure).

Each target maps them to its own types (SQL types, Arrow types for Delta); ``prepare`` judges
values against them. Nothing here does I/O.
"""

from __future__ import annotations

import re

import pyarrow as pa

# Logical column types. Each target maps them to its own SQL types.
INTEGER, REAL, TEXT, BOOLEAN, ANY = "integer", "real", "text", "boolean", "any"
# Bytes (Arrow binary, large_binary, fixed_size_binary; Python bytes): BLOB / bytea / binary.
BINARY = "binary"
# Exact decimals: "decimal" (any scale, PostgreSQL numeric) or "decimal(P,S)" (a fixed precision
# and scale, DuckDB DECIMAL). SQLite keeps them as TEXT, the decimal's own digits.
DECIMAL = "decimal"
# The widest exact decimal every target keeps (DuckDB's and Delta's DECIMAL(38,S)).
MAX_PRECISION = 38
INT64_MAX = 2**63 - 1


def logical_type(t: pa.DataType) -> str:
    """The logical type a new column gets from the first batch that shows it."""
    if pa.types.is_boolean(t):
        return BOOLEAN
    if pa.types.is_integer(t):
        return INTEGER
    if pa.types.is_decimal(t):
        if t.precision > MAX_PRECISION or t.scale < 0:  # (``stored_form`` makes these text / scale 0)
            return TEXT
        return f"{DECIMAL}({t.precision},{t.scale})"
    if pa.types.is_floating(t):
        return REAL
    if pa.types.is_null(t):
        return ANY
    if is_binary(t):
        return BINARY
    return TEXT


def is_binary(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t) \
        or str(t) == "binary_view"


def stored_form(col) -> tuple:
    """A source column in the form its logical type holds, and the rows it cannot hold.

    Returns ``(array, bad, why)``: ``bad`` is None or a boolean mask of the rows refused (their
    value set to null) and ``why`` the reason's tail (naming the Arrow type). The one place
    where an Arrow type that no target stores as it is becomes one that every target does:

    - dictionary-encoded values: the values (the dictionary is a storage detail); a UUID: its text;
    - string_view: string; binary_view / large / fixed-size binary: binary (bytes);
    - time32/time64: ISO text at the unit's precision (``23:59:59.999999999``);
    - duration: ISO 8601 text in seconds (``PT86400S``, ``-PT0.000001S``);
    - decimal with a negative scale: the same values at scale 0 (``decimal(5,-3)`` → ``(8,0)``);
      more digits than DECIMAL(38) holds: text, the decimal's own digits;
    - uint64: int64; a value above 2**63-1 is refused (no target has an unsigned 64-bit column).
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    t = col.type
    if pa.types.is_dictionary(t):
        return stored_form(col.cast(t.value_type))
    if isinstance(t, pa.BaseExtensionType):  # a UUID as its text; any other as its storage type
        if getattr(t, "extension_name", "") == "arrow.uuid":
            return pa.array([None if v is None else str(v) for v in col.to_pylist()], pa.string()), None, None
        return stored_form(col.storage)
    if str(t) == "string_view":
        return col.cast(pa.string()), None, None
    if is_binary(t) and not pa.types.is_binary(t):
        return col.cast(pa.binary()), None, None
    if pa.types.is_time(t):
        return col.cast(pa.string()), None, None
    if pa.types.is_duration(t):
        return duration_text(col), None, None
    if pa.types.is_decimal(t):
        if t.scale < 0 and t.precision - t.scale <= MAX_PRECISION:
            return col.cast(pa.decimal128(t.precision - t.scale, 0)), None, None
        if t.precision > MAX_PRECISION or t.scale < 0:
            return col.cast(pa.string()), None, None
        if pa.types.is_decimal256(t):
            return col.cast(pa.decimal128(t.precision, t.scale)), None, None
        return col, None, None
    if pa.types.is_uint64(t):
        import pyarrow.compute as pc
        big = pc.fill_null(pc.greater(col, pa.scalar(INT64_MAX, pa.uint64())), False)
        if not pc.any(big).as_py():
            return col.cast(pa.int64()), None, None
        kept = pc.if_else(big, pa.scalar(None, pa.uint64()), col).cast(pa.int64())
        return kept, big.to_numpy(zero_copy_only=False), \
            f"is above {INT64_MAX}, the largest integer every target keeps (uint64)"
    return col, None, None


def duration_text(col) -> pa.Array:
    """An Arrow duration column as ISO 8601 text in seconds, exact at its unit."""
    digits = {"s": 0, "ms": 3, "us": 6, "ns": 9}[col.type.unit]
    out = []
    for v in col.cast(pa.int64()).to_pylist():
        if v is None:
            out.append(None)
            continue
        sign, v = ("-" if v < 0 else ""), abs(v)
        whole, frac = divmod(v, 10 ** digits) if digits else (v, 0)
        text = f"{whole}.{frac:0{digits}d}".rstrip("0").rstrip(".") if digits else str(whole)
        out.append(f"{sign}PT{text}S")
    return pa.array(out, pa.string())


def fits(t: pa.DataType, logical: str) -> str:
    """Whether values of Arrow type ``t`` fit a column: 'yes', 'no' or 'check' (per value)."""
    if logical == ANY or pa.types.is_null(t):
        return "yes"
    got = logical_type(t)
    if got == logical:
        return "yes"
    if logical.startswith(DECIMAL):
        if got == INTEGER:
            return "yes"
        if got.startswith(DECIMAL):  # a wider type may still hold values that fit: judged per value
            return "yes" if decimal_fits(t.precision, t.scale, logical) else "check"
        return "check" if got == TEXT else "no"  # decimal text (a replayed record) is judged per value
    if got.startswith(DECIMAL):
        return "yes" if logical in (TEXT, REAL) else "no"  # TEXT: the decimal's digits (SQLite)
    if logical == REAL and got == INTEGER:
        return "yes"
    if logical == INTEGER and got == REAL:
        return "check"  # whole numbers fit, fractions do not
    return "no"


def decimal_fits(precision: int, scale: int, logical: str) -> bool:
    """Whether a decimal(precision, scale) fits the column ``logical`` without rounding."""
    m = re.fullmatch(r"decimal\((\d+),(\d+)\)", logical)
    if m is None:
        return True  # unconstrained numeric
    p, s = int(m.group(1)), int(m.group(2))
    return scale <= s and precision - scale <= p - s



"""Logical column types: what a column holds, whatever database keeps it (pure).

Each target maps them to its own types (SQL types, Arrow types for Delta); ``prepare`` judges
values against them. Nothing here does I/O.
"""

from __future__ import annotations

import re

import pyarrow as pa

# Logical column types. Each target maps them to its own SQL types.
INTEGER, REAL, TEXT, BOOLEAN, ANY = "integer", "real", "text", "boolean", "any"
# Exact decimals: "decimal" (any scale, PostgreSQL numeric) or "decimal(P,S)" (a fixed precision
# and scale, DuckDB DECIMAL). SQLite keeps them as TEXT, the decimal's own digits.
DECIMAL = "decimal"
def logical_type(t: pa.DataType) -> str:
    """The logical type a new column gets from the first batch that shows it."""
    if pa.types.is_boolean(t):
        return BOOLEAN
    if pa.types.is_integer(t):
        return INTEGER
    if pa.types.is_decimal(t):
        return f"{DECIMAL}({min(t.precision, 38)},{t.scale})"
    if pa.types.is_floating(t):
        return REAL
    if pa.types.is_null(t):
        return ANY
    return TEXT


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
        if got.startswith(DECIMAL):
            return "yes" if decimal_fits(t.precision, t.scale, logical) else "no"
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



"""From a raw source batch to checked columns: keys, cursors, types, delete flags.

Pure apart from reading the batch: it decides which records are invalid and why,
parses cursors, and checks every value against the target column it must fit.
The loader hands the result to :mod:`hiwater.decide`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import values as V
from .errors import UsageError
from .sources.base import RawBatch
from .targets.base import ANY, BOOLEAN, HIDDEN, INTEGER, REAL, TEXT, fits, logical_type

TRUE_TEXT = {"true", "1", "yes", "y", "t"}


@dataclass
class Prepared:
    raw: RawBatch
    n: int
    cursor: np.ndarray
    naive: np.ndarray
    valid: np.ndarray
    reasons: list
    groups: np.ndarray
    is_delete: np.ndarray | None
    data_columns: list
    new_columns: dict = field(default_factory=dict)
    kind: str | None = None
    table: pa.Table | None = None  # the batch after mixed columns were given one type
    stored: dict = field(default_factory=dict)  # column -> stored form, aligned with ``table``


def _reason(reasons: list, mask: np.ndarray, text) -> None:
    for i in np.flatnonzero(mask):
        if reasons[i] is None:
            reasons[i] = text(i) if callable(text) else text


def key_groups(tbl: pa.Table, key: tuple, valid: np.ndarray) -> np.ndarray:
    """Number the distinct keys of a batch (0..k-1); invalid rows get their own numbers."""
    n = tbl.num_rows
    if n == 0:
        return np.zeros(0, np.int64)
    codes = []
    for k in key:
        col = tbl.column(k)
        if pa.types.is_integer(col.type) and col.null_count == 0:
            arr = col.to_numpy()
            _, inv = np.unique(arr, return_inverse=True)
            codes.append(inv.astype(np.int64))
        else:
            enc = pc.dictionary_encode(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
            idx = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
            codes.append(idx)
    if len(codes) == 1:
        g = codes[0]
    else:
        _, g = np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True)
        g = g.reshape(-1).astype(np.int64)
    g = g.copy()
    bad = ~valid
    if bad.any():
        g[bad] = g.max(initial=0) + 1 + np.arange(int(bad.sum()))
    return g


def prepare(raw: RawBatch, *, key: tuple, cursor: str, kind: str | None, tz: dt.tzinfo,
            columns: dict | None, delete_field: str | None) -> Prepared:
    """Check one batch. ``columns`` is the target table's ``{name: logical type}`` (or None)."""
    tbl = raw.table
    n = len(raw)
    reasons: list = [None] * n
    for i, why in raw.problems.items():
        reasons[i] = why
    for name in tbl.column_names:
        if name in HIDDEN:
            raise UsageError(f"{raw.path}: the source has a field named {name!r}, which hiwater keeps for itself",
                             hint="rename that field in the source")

    if raw.mixed:
        tbl = _settle_mixed(tbl, raw.mixed, columns, reasons)
    for k in key:  # a list or object key is keyed by its JSON text, as the JSON array reader gives it
        if k in tbl.column_names and pa.types.is_nested(tbl.column(k).type):
            from .sources.jsontext import to_json_text
            tbl = tbl.set_column(tbl.column_names.index(k), k, to_json_text(tbl.column(k)))

    # Keys: present and not null.
    for k in key:
        if k not in tbl.column_names:
            _reason(reasons, np.ones(n, bool), f"key field {k!r} is missing")
        else:
            nulls = tbl.column(k).is_null().to_numpy(zero_copy_only=False)
            if nulls.any():
                _reason(reasons, nulls, f"key field {k!r} is missing or null")
            col = tbl.column(k)
            if pa.types.is_floating(col.type) or pa.types.is_boolean(col.type):
                _reason(reasons, ~nulls, lambda i, k=k, col=col:
                        f"key field {k!r} is {col[i].as_py()!r}, a key must be a string or an integer")

    # Cursor: present, parses, one kind.
    cur = np.zeros(n, np.int64)
    naive = np.zeros(n, bool)
    if cursor not in tbl.column_names:
        _reason(reasons, np.ones(n, bool), f"cursor field {cursor!r} is missing")
    else:
        col = tbl.column(cursor)
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        if col.null_count:
            _reason(reasons, col.is_null().to_numpy(zero_copy_only=False),
                    f"cursor field {cursor!r} is missing or null")
        if kind is None:
            kind = V.detect_kind(col)
        if kind is None:
            nn = col.drop_null()
            if len(nn):
                _reason(reasons, np.ones(n, bool), lambda i: f"cursor {col[i].as_py()!r} is not a timestamp, date or integer")
            else:
                _reason(reasons, np.ones(n, bool), f"cursor field {cursor!r} is missing or null")
        else:
            parsed = V.parse_column(col, kind, tz)
            cur, naive = parsed.values, parsed.naive
            for i in np.flatnonzero(~parsed.valid):
                if reasons[i] is None:
                    reasons[i] = parsed.reasons[i]

    # Types: every value must fit its target column; new fields add columns.
    data_columns = [c for c in tbl.column_names]
    new_columns: dict = {}
    for name in data_columns:
        col = tbl.column(name)
        t = col.type
        if columns is not None and name in columns:
            logical = columns[name]
        else:
            logical = logical_type(t) if name != cursor or kind != V.INT else INTEGER
            if name == cursor and kind in (V.TIMESTAMP, V.DATE):
                logical = "text"
            new_columns[name] = logical
            continue
        if name == cursor:
            continue  # the cursor parser judged these values already
        verdict = fits(t, logical)
        if verdict == "yes":
            if pa.types.is_floating(t) and logical in (REAL, ANY):
                bad = pc.fill_null(pc.invert(pc.is_finite(col)), False).to_numpy(zero_copy_only=False)
                _reason(reasons, bad, lambda i, name=name, col=col:
                        f"field {name!r}: {col[i].as_py()!r} is not a finite number")
            continue
        nonnull = col.is_valid().to_numpy(zero_copy_only=False)
        if verdict == "check":
            whole = pc.fill_null(pc.equal(pc.floor(col), col), False).to_numpy(zero_copy_only=False)
            bad = nonnull & ~whole
        else:
            bad = nonnull
        _reason(reasons, bad, lambda i, name=name, col=col, logical=logical:
                f"field {name!r}: value {_short(col[i].as_py())} does not fit the column's type ({logical})")

    is_delete = None
    if delete_field is not None and delete_field in tbl.column_names:
        col = tbl.column(delete_field)
        if pa.types.is_boolean(col.type):
            is_delete = pc.fill_null(col, False).to_numpy(zero_copy_only=False).astype(bool)
        elif pa.types.is_integer(col.type):
            is_delete = pc.fill_null(col, 0).to_numpy(zero_copy_only=False) != 0
        else:
            text = pc.utf8_lower(pc.utf8_trim_whitespace(col.cast(pa.string())))
            is_delete = pc.fill_null(pc.is_in(text, pa.array(sorted(TRUE_TEXT))), False).to_numpy(
                zero_copy_only=False).astype(bool)

    if reasons.count(None) == n:  # no record has a problem (a C-level scan of the list)
        valid = np.ones(n, bool)
    else:
        valid = np.array([r is None for r in reasons], dtype=bool)
    groups = key_groups(tbl, key, valid) if all(k in tbl.column_names for k in key) else np.arange(n)
    stored = {k: v for k, v in raw.stored.items() if k not in raw.mixed and k not in key}
    return Prepared(raw, n, cur, naive, valid, reasons, groups, is_delete, data_columns, new_columns, kind, tbl,
                    stored)


_PY_LOGICAL = {bool: BOOLEAN, int: INTEGER, float: REAL, str: TEXT, dict: TEXT, list: TEXT}
_ARROW = {BOOLEAN: pa.bool_(), INTEGER: pa.int64(), REAL: pa.float64(), TEXT: pa.string()}


def _settle_mixed(tbl: pa.Table, mixed: dict, columns: dict | None, reasons: list) -> pa.Table:
    """Give a column of mixed Python types one type; values that do not fit it are invalid.

    The type is the target column's when it exists, else the first value's.
    """
    for name, values in mixed.items():
        logical = (columns or {}).get(name)
        if logical is None or logical == ANY:
            first = next((v for v in values if v is not None), None)
            logical = _PY_LOGICAL.get(type(first), TEXT)
        clean = []
        for i, v in enumerate(values):
            kind = _PY_LOGICAL.get(type(v))
            ok = v is None or kind == logical or (logical == REAL and kind == INTEGER) or \
                (logical == INTEGER and kind == REAL and float(v).is_integer())
            if ok and logical == INTEGER and v is not None and not (-(2**63) <= int(v) < 2**63):
                ok = False
            if not ok:
                if reasons[i] is None:
                    reasons[i] = (f"field {name!r}: value {_short(v)} does not fit the column's type "
                                  f"({logical})")
                v = None
            elif v is not None and isinstance(v, (dict, list)):
                import orjson
                try:
                    v = orjson.dumps(v).decode()
                except TypeError:  # an integer outside 64 bits inside the object
                    if reasons[i] is None:
                        reasons[i] = f"field {name!r}: value {_short(v)} holds a number JSON text cannot keep"
                    v = None
            elif v is not None and logical == INTEGER:
                v = int(v)
            clean.append(v)
        tbl = tbl.set_column(tbl.column_names.index(name), name, pa.array(clean, _ARROW[logical]))
    return tbl


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."

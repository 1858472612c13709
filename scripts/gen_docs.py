"""Write the parts of the docs that restate the code or a measurement, so they cannot drift:

- each target's type table in docs/databases/*.md, from the targets' own type maps (SQL_TYPES,
  CURSOR_TYPES, the decimal rule of each target's column type, Delta's Arrow types);
- the README's speed figures, from the bench/results run that docs/benchmarks.md shows.

    python scripts/gen_docs.py          # rewrite those parts
    python scripts/gen_docs.py --check  # exit 1 (naming the files) if any is out of date

Each part sits between ``<!-- generated: NAME ... -->`` and ``<!-- end: NAME -->``; the text
around it is written by hand. tests/test_docs.py runs the check.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

from hiwater import values as V
from hiwater.types import ANY, BINARY, BOOLEAN, DECIMAL, INTEGER, REAL, TEXT

ROOT = Path(__file__).resolve().parent.parent
CURSOR = "c"  # a cursor column's name, for asking a target its column type
# A constrained decimal, with digits unlikely elsewhere in a type name: shown as P and S.
P, S = 31, 7

# The rows of every table: (what the column holds, its logical type or cursor kind).
ROWS = [
    ("integer", INTEGER),
    ("real (floats)", REAL),
    ("text (strings, nested values as JSON text, non-cursor timestamps, times and durations as ISO text)",
     TEXT),
    ("boolean", BOOLEAN),
    ("binary (bytes: Arrow binary, large_binary, fixed_size_binary; Python bytes)", BINARY),
    ("any (a field seen only as null so far)", ANY),
    ("decimal(P,S) (Parquet/Arrow decimals, a database column declared `numeric(P,S)`/`DECIMAL(P,S)`: "
     "the declared precision, whatever the first values)", f"{DECIMAL}({P},{S})"),
    ("decimal without a declared precision (Python `Decimal` values, a `numeric` column without one)",
     DECIMAL),
]
CURSORS = [("the cursor, timestamps", V.TIMESTAMP), ("the cursor, dates", V.DATE),
           ("the cursor, integers", V.INT), ("the cursor, nanosecond timestamps (`timestamp_ns`)", V.TIMESTAMP_NS)]

# What a type alone does not say, per target and row (by logical type or cursor kind).
NOTES = {
    "sqlite": {ANY: "holds whatever comes", BOOLEAN: "stored as 0/1",
               f"{DECIMAL}({P},{S})": "the decimal's own digits (`1.50` stays `1.50`; SQLite has no exact decimal)",
               DECIMAL: "the decimal's own digits"},
    "postgresql": {ANY: "later values of any type are kept as JSON", V.TIMESTAMP: "microseconds kept",
                   V.TIMESTAMP_NS: "the text as sent, nanoseconds kept (`timestamptz` holds microseconds only)",
                   f"{DECIMAL}({P},{S})": "exact, any scale", DECIMAL: "exact, any scale"},
    "duckdb": {V.TIMESTAMP: "microseconds kept", V.TIMESTAMP_NS: "nanoseconds kept, the instant in UTC",
               f"{DECIMAL}({P},{S})": "exact",
               DECIMAL: "the decimal's own digits, exact whatever precision a later value has"},
    "delta": {DECIMAL: "its digits, exact", TEXT: "also the cursor's text as sent"},
}


def _sql_column(cls, logical: str, kind: str | None = None) -> str:
    """A SQL target's column type for a logical type (or, with ``kind``, for the cursor column)."""
    me = SimpleNamespace(_cursor_column=CURSOR if kind else None, _cursor_kind=kind)
    return cls._column_type(me, CURSOR if kind else "x", logical)


def _columns() -> dict:
    """``{target: [(label, key, column type)]}`` from the targets' code."""
    from hiwater.targets import deltatypes, sqlite
    from hiwater.targets.duckdb import DuckDBTarget
    from hiwater.targets.postgres import PostgresTarget

    out = {"sqlite": [(label, t, sqlite.sql_type(t) or "(no declared type)") for label, t in ROWS]}
    out["sqlite"].append(("the cursor", None, "as the source gave it: ISO-8601 text for timestamps and dates, "
                                              f"`{sqlite.sql_type(INTEGER)}` for integers"))
    for name, cls in (("postgresql", PostgresTarget), ("duckdb", DuckDBTarget)):
        out[name] = [(label, t, _sql_column(cls, t)) for label, t in ROWS]
        out[name] += [(label, k, _sql_column(cls, INTEGER, k)) for label, k in CURSORS]
    out["delta"] = [(label, t, deltatypes.delta_type(deltatypes.arrow_type(t))) for label, t in ROWS
                    if t != ANY]
    out["delta"].append(("the cursor", None, "as sent (`string`), compared by the hidden `_hiwater_cursor`"))
    return out


HIDDEN = {"sqlite": "`INTEGER NOT NULL`", "postgresql": "`bigint NOT NULL`", "duckdb": "`BIGINT NOT NULL`",
          "delta": "`long` (the cursor as microseconds UTC, nanoseconds for `timestamp_ns`, a date's day, or "
                   "the integer)"}
TITLE = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "duckdb": "DuckDB", "delta": "Delta"}


def type_table(target: str) -> str:
    """The markdown type table of one target."""
    lines = [f"| hiwater's logical type | {TITLE[target]} column |", "| --- | --- |"]
    notes = NOTES.get(target, {})
    for label, key, column in _columns()[target]:
        shown = column if column.startswith(("as ", "(")) else f"`{column}`"
        shown = shown.replace(f"({P},{S})", "(P,S)")
        note = notes.get(key)
        lines.append(f"| {label} | {shown}{' — ' + note if note else ''} |")
    lines.append(f"| `_hiwater_cursor`, `_hiwater_run` (hidden bookkeeping) | {HIDDEN[target]} |")
    return "\n".join(lines) + "\n"


def _arrow_samples() -> list:
    """``[(Arrow type name, type)]``: the types the Arrow table of docs/files.md shows."""
    import pyarrow as pa
    return [("int8 … int64, uint8 … uint32", pa.int32()), ("uint64", pa.uint64()),
            ("float16, float32, float64", pa.float64()), ("bool", pa.bool_()),
            ("decimal128(P,S), decimal256(P,S) with P ≤ 38", pa.decimal128(P, S)),
            ("decimal256(P,S) with P > 38", pa.decimal256(76, S)),
            ("decimal(P,S) with a negative scale", pa.decimal128(5, -3)),
            ("string, large_string, string_view, dictionary-encoded", pa.string()),
            ("binary, large_binary, fixed_size_binary", pa.binary()),
            ("date32, date64", pa.date32()), ("timestamp[s/ms/us] (with or without a zone)", pa.timestamp("us")),
            ("time32, time64", pa.time64("ns")), ("duration", pa.duration("us")),
            ("list, large_list, struct, map", pa.list_(pa.int64())), ("null", pa.null())]


ARROW_NOTES = {
    "uint64": "a value above 2⁶³−1 is refused (per record: no target has an unsigned 64-bit column)",
    "decimal256(P,S) with P > 38": "the decimal's own digits (no target but PostgreSQL keeps more than 38)",
    "decimal(P,S) with a negative scale": "the same values at scale 0: `decimal(5,-3)` → `decimal(8,0)`",
    "date32, date64": "ISO text (`2024-02-29`)",
    "timestamp[s/ms/us] (with or without a zone)": "ISO text at full precision, its offset kept",
    "time32, time64": "ISO text at the unit's precision (`23:59:59.999999999`)",
    "duration": "ISO 8601 seconds, exact (`PT86400S`, `-PT0.000001S`)",
    "list, large_list, struct, map": "JSON text (a map as a list of `[key, value]` pairs)",
    "null": "no column until a value arrives",
}


def arrow_table() -> str:
    """How each Arrow type is stored: its logical type, from hiwater.types (stored_form, logical_type)."""
    import pyarrow as pa

    from hiwater.types import logical_type, stored_form
    lines = ["| Arrow type (Parquet, Arrow, pandas) | logical type | |", "| --- | --- | --- |"]
    for label, t in _arrow_samples():
        arr, _, _ = stored_form(pa.nulls(1, t))
        logical = logical_type(arr.type).replace(f"({P},{S})", "(P,S)")
        lines.append(f"| {label} | {logical} | {ARROW_NOTES.get(label, '')} |")
    return "\n".join(lines) + "\n"


def _median(results: dict, tool: str, target: str, step: str):
    for section in results["sections"]:
        for cell in section["cells"]:
            if cell["tool"] == tool and cell["target"] == target:
                st = cell["steps"].get(step) or {}
                if st.get("status") == "ok":
                    return st["median_s"], section["n"]
    return None, None


def bench_results() -> tuple[str, dict]:
    """The raw results docs/benchmarks.md names (``- Raw results: `bench/results/…json```)."""
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    m = re.search(r"Raw results: `([^`]+)`", page)
    if m is None:
        raise SystemExit("docs/benchmarks.md names no raw results file")
    return m.group(1), json.loads((ROOT / m.group(1)).read_text())


def readme_figures() -> str:
    """The README's sentence on speed, from the run the benchmarks page shows."""
    path, res = bench_results()
    first, n = _median(res, "hiwater", "sqlite", "first")
    delta, _ = _median(res, "hiwater", "sqlite", "delta")
    rerun, _ = _median(res, "hiwater", "sqlite", "rerun")
    raw, _ = _median(res, "raw-incremental", "sqlite", "first")
    upsert, _ = _median(res, "raw-upsert-all", "sqlite", "first")
    duck, _ = _median(res, "hiwater", "duckdb", "first")
    dlt, _ = _median(res, "dlt-duckdb-arrow", "duckdb", "first")
    cores = res.get("machine", {}).get("nproc")
    text = (f"On {cores} cores, " if cores else "") + (
        f"a {n:,}-record JSON Lines export loads into SQLite in {first:.2f} s (a raw incremental "
        f"script without any checks: {raw:.2f} s; a raw upsert of every line: {upsert:.2f} s), its "
        f"re-export with 2% changed in {delta:.2f} s and an unchanged rerun in {rerun:.2f} s")
    if duck is not None:
        text += f"; into DuckDB in {duck:.2f} s" + (f" (dlt with Arrow batches: {dlt:.2f} s)" if dlt else "")
    return text + f". Medians of `{path}`; see [docs/benchmarks.md](docs/benchmarks.md).\n"


def _wrap(text: str, width: int = 98, indent: str = "  ") -> str:
    """A README list item's continuation lines, as the rest of the list is written."""
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(indent + line + " " + w) > width:
            lines.append(indent + line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    lines.append(indent + line)
    return "\n".join(lines) + "\n"


def parts() -> dict:
    """``{file: {part name: generated text}}``."""
    out = {ROOT / "docs" / "databases" / f"{t}.md": {"types": type_table(t)}
           for t in TITLE}
    out[ROOT / "README.md"] = {"speed": _wrap(readme_figures())}
    out[ROOT / "docs" / "files.md"] = {"arrow-types": arrow_table()}
    return out


def render(text: str, name: str, body: str, where: Path) -> str:
    pattern = re.compile(rf"(<!-- generated: {name}\b[^\n]*-->\n)(.*?)([ ]*<!-- end: {name} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{where}: no <!-- generated: {name} --> part")
    return pattern.sub(lambda m: m.group(1) + body + m.group(3), text, count=1)


def outdated(write: bool = False) -> list:
    """The files whose generated parts differ from the code and results (rewritten with ``write``)."""
    stale = []
    for path, generated in parts().items():
        text = path.read_text()
        new = text
        for name, body in generated.items():
            new = render(new, name, body, path)
        if new != text:
            stale.append(str(path.relative_to(ROOT)))
            if write:
                path.write_text(new)
    return stale


def main() -> int:
    if "--check" in sys.argv:
        stale = outdated()
        if stale:
            print(f"out of date: {', '.join(stale)}: run python scripts/gen_docs.py", file=sys.stderr)
            return 1
        return 0
    outdated(write=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

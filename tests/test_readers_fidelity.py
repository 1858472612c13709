"""The file readers give every non-cursor value as the source carried it (SPEC §8).

These call the readers directly (no target): what a reader hands to ``prepare`` must already
be the source's value. JSON strings stay strings, whatever they look like, at any depth; CSV
cells are text unless the whole column is canonical integers or shortest-round-trip reals;
Parquet timestamps become ISO text at their full precision.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import json
import math
import re
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hiwater.errors import InputError
from hiwater.sources import csvfile, jsonl
from hiwater.sources.files import open_files

CURSOR = "modified_at"
T0 = "2025-01-15T07:00:00"

LOOKALIKES = ["2025-01-15 07:00:00", "2025-01-15T07:00:00Z", "2025-01-15", "2025-01-15T07:00:00+01:00",
              "2025-01-15T07:00:00.123456789", "07:00:00", "007", "02134", "1.50", "1e3", "true", "False",
              "NaN", "Infinity", "-0", "", " 7", "Zürich ☃", "null"]


def batches(path, fmt=None, batch_size=65_536):
    src = open_files(str(path), fmt, cursor=CURSOR, batch_size=batch_size)
    try:
        return list(src.batches())
    finally:
        src.close()


def values(bs) -> list[dict]:
    """Every record as the readers hand it on: a column's Python values (the reader's own
    Python values for a column of mixed types), with JSON text of nested values decoded."""
    out = []
    for b in bs:
        cols = {}
        for name in b.table.column_names:
            vals = b.mixed[name] if name in b.mixed else b.table.column(name).to_pylist()
            cols[name] = vals
        for i in range(len(b)):
            out.append({name: vals[i] for name, vals in cols.items()})
    return out


def same(read, sent) -> bool:
    """``read`` is ``sent`` exactly: strings byte for byte, numbers equal (NaN is NaN), nested
    values compared as JSON text decoded (the exact reader encodes them early)."""
    if isinstance(sent, (dict, list)) and isinstance(read, str):
        read = json.loads(read)
    if isinstance(sent, dict):
        return isinstance(read, dict) and read.keys() == sent.keys() and all(same(read[k], v) for k, v in sent.items())
    if isinstance(sent, list):
        return isinstance(read, list) and len(read) == len(sent) and all(map(same, read, sent))
    if isinstance(sent, float) and math.isnan(sent):
        return isinstance(read, float) and math.isnan(read)
    if isinstance(sent, str) or sent is None or isinstance(sent, bool):
        return type(read) is type(sent) and read == sent
    return read == sent and isinstance(read, (int, float)) and not isinstance(read, bool)


def assert_records(read: list[dict], sent: list[dict]):
    assert len(read) == len(sent)
    for i, (r, s) in enumerate(zip(read, sent)):
        for k, v in s.items():
            assert same(r.get(k), v), (i, k, r.get(k), v)
        assert all(r[k] is None for k in r.keys() - s.keys()), (i, r)


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


# --- JSON Lines and JSON arrays ------------------------------------------------------------

def test_jsonl_timestamp_like_strings_stay_strings(tmp_path):
    recs = [{"id": 1, CURSOR: T0, "a": "2025-01-15 07:00:00", "b": "2025-01-15T07:00:00Z", "c": "2025-01-15",
             "d": "2025-01-15T07:00:00+01:00", "n": {"x": "2025-01-15", "y": ["2025-01-15T07:00:00Z"]},
             "l": ["2025-01-15 07:00:00"], "ls": [{"at": "2025-01-15"}]},
            {"id": 2, CURSOR: T0, "a": "2025-01-16 08:00:00", "b": None, "c": "2025-01-16", "d": None,
             "n": {"x": None, "y": []}, "l": None, "ls": [{"at": None}]}]
    bs = batches(write_jsonl(tmp_path / "a.jsonl", recs))
    assert not bs[0].mixed  # the fast reader took it
    assert_records(values(bs), recs)
    # no Arrow timestamp anywhere: the nested ones come back as the same strings too
    assert "timestamp" not in str(bs[0].table.schema)
    # the columns keep the file's order
    assert [c for c in bs[0].table.column_names if c != CURSOR] == ["id", "a", "b", "c", "d", "n", "l", "ls"]


def test_json_array_timestamp_like_strings_stay_strings(tmp_path):
    recs = [{"id": 1, CURSOR: T0, "a": s, "n": {"x": s, "y": [s]}} for s in LOOKALIKES]
    f = tmp_path / "a.json"
    f.write_text(json.dumps(recs, ensure_ascii=False), encoding="utf-8")
    assert_records(values(batches(f)), recs)


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_a_boolean_after_a_float_stays_a_boolean(tmp_path, fmt):
    recs = [{"id": 1, CURSOR: T0, "v": 0.0}, {"id": 2, CURSOR: T0, "v": False}, {"id": 3, CURSOR: T0, "v": True}]
    f = tmp_path / f"a.{fmt}"
    f.write_text("".join(json.dumps(r) + "\n" for r in recs) if fmt == "jsonl" else json.dumps(recs))
    assert_records(values(batches(f)), recs)


@pytest.mark.parametrize("later", [
    {"a": "abc"},                     # the column inferred as a timestamp gets a plain string
    {"a": "2025-01-16"},              # the same shape again
    {"a": "x", "new": "2025-01-15"},  # a new field in a later block
    {"a": "x", "n": {"x": "2025-01-15", "z": "2025-01-15 07:00:00"}},  # a new nested field
    {"a": 5},                         # a field that changes type
])
def test_jsonl_later_blocks_keep_strings_too(tmp_path, monkeypatch, later):
    monkeypatch.setattr(jsonl, "BLOCK_BYTES", 1 << 10)  # many blocks in a small file
    recs = [{"id": i, CURSOR: T0, "a": "2025-01-15 07:00:00", "n": {"x": "2025-01-15"}} for i in range(200)]
    recs.append({"id": 200, CURSOR: T0, **later})
    recs += [{"id": i, CURSOR: T0, "a": "2025-01-15T07:00:00Z", "n": {"x": "2025-01-15"}} for i in range(201, 260)]
    f = write_jsonl(tmp_path / "a.jsonl", recs)
    for batch_size in (1000, 32):  # the whole file probed first, and streamed in batches
        assert_records(values(batches(f, batch_size=batch_size)), recs)


@pytest.mark.parametrize("value", [[None, "2025-01-15"], [None, 1], [None, None], {"l": [None, "x"]}])
def test_jsonl_list_starting_with_null(tmp_path, value):
    """pyarrow builds a broken list from ``[null, "x"]`` (fewer values than its offsets span):
    reading it gives wrong values or crashes, so such a block goes to the exact reader."""
    recs = [{"id": 1, CURSOR: T0, "v": value}, {"id": 2, CURSOR: T0, "v": None}]
    assert_records(values(batches(write_jsonl(tmp_path / "a.jsonl", recs))), recs)


def test_jsonl_non_finite_tokens_come_through_as_floats(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text(f'{{"id": 1, "{CURSOR}": "{T0}", "x": 1.5, "n": {{"y": 1.0}}}}\n'
                 f'{{"id": 2, "{CURSOR}": "{T0}", "x": NaN, "n": {{"y": Infinity}}}}\n'
                 f'{{"id": 3, "{CURSOR}": "{T0}", "x": -Infinity, "n": {{"y": NaN}}}}\n')
    read = values(batches(f))
    assert same([r["x"] for r in read], [1.5, float("nan"), float("-inf")])
    # nested ones stay Python floats for prepare to reject (not JSON text where NaN became null)
    assert same([r["n"] for r in read], [{"y": 1.0}, {"y": float("inf")}, {"y": float("nan")}])
    g = tmp_path / "a.json"
    g.write_text("[" + ",".join(f.read_text().splitlines()) + "]")
    read = values(batches(g))
    assert same([r["x"] for r in read], [1.5, float("nan"), float("-inf")])
    assert same([r["n"] for r in read], [{"y": 1.0}, {"y": float("inf")}, {"y": float("nan")}])


@pytest.mark.parametrize("token", ["-NaN", "Inf", "1e400"])
def test_jsonl_reads_the_json_the_array_reader_reads(tmp_path, token):
    """pyarrow accepts ``-NaN`` and ``Inf``, Python's JSON does not: one verdict whichever reader."""
    body = f'{{"id": 1, "{CURSOR}": "{T0}", "x": 1.5}}\n{{"id": 2, "{CURSOR}": "{T0}", "x": {token}}}\n'
    (tmp_path / "a.jsonl").write_text(body)
    (tmp_path / "a.json").write_text("[" + ",".join(body.splitlines()) + "]")
    outcomes = []
    for name in ("a.jsonl", "a.json"):
        try:
            outcomes.append([r["x"] for r in values(batches(tmp_path / name))])
        except InputError as exc:
            outcomes.append(exc.message)
    if token == "1e400":
        assert outcomes == [[1.5, float("inf")]] * 2
    else:
        assert all(isinstance(o, str) and "malformed JSON" in o for o in outcomes), outcomes


# --- CSV --------------------------------------------------------------------------------------

def write_csv(path: Path, header, rows) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def csv_columns(bs) -> dict:
    assert len(bs) == 1
    return {n: (bs[0].table.column(n).type, bs[0].table.column(n).to_pylist()) for n in bs[0].table.column_names}


def test_csv_cells_are_text_unless_the_column_loses_nothing_as_a_number(tmp_path):
    header = ["id", CURSOR, "zip", "code", "price", "amount", "flag", "at", "day", "big", "neg0", "mix", "empty",
              "plus", "exp", "nan"]
    rows = [["1", T0, "02134", "007", "1.50", "1.5", "true", "2025-01-15 07:00:00", "2025-01-15",
             "9223372036854775807", "-0", "7", "", "+7", "1e+16", "NaN"],
            ["2", T0, "10001", "7", "2.25", "-0.001", "false", "2025-01-15T07:00:00Z", "2025-01-16",
             "9223372036854775808", "1", "7.5", "", "8", "1e3", "1.0"],
            ["-3", "", "", "", "", "1e+16", "", "", "", "", "", "", "", "", "", ""]]
    f = write_csv(tmp_path / "a.csv", header, rows)
    cols = csv_columns(batches(f))
    assert cols["id"] == (pa.int64(), [1, 2, -3])
    assert cols[CURSOR] == (pa.string(), [T0, T0, None])
    assert cols["amount"] == (pa.float64(), [1.5, -0.001, 1e16])
    for name in header[2:]:
        if name in ("amount", "empty"):
            continue
        sent = [r[header.index(name)] or None for r in rows]
        assert cols[name] == (pa.string(), sent), name
    assert cols["empty"] == (pa.null(), [None] * 3)  # no type until a batch has a value, as in JSON


def test_csv_typed_columns_keep_their_cells_text(tmp_path):
    f = write_csv(tmp_path / "a.csv", ["id", CURSOR, "amount", "name"],
                  [["1", T0, "0.5", "x"], ["", T0, "", "y"], ["30", T0, "1e-05", "z"]])
    (b,) = batches(f)
    assert set(b.texts) == {"id", "amount"}
    assert b.texts["id"].type == pa.string() and b.texts["id"].to_pylist() == ["1", None, "30"]
    assert b.texts["amount"].to_pylist() == ["0.5", None, "1e-05"]


def test_csv_types_are_judged_per_batch(tmp_path):
    f = write_csv(tmp_path / "a.csv", ["id", CURSOR, "code"], [["1", T0, "7"], ["2", T0, "8"], ["3", T0, "007"]])
    bs = batches(f, batch_size=2)
    assert [b.table.column("code").type for b in bs] == [pa.int64(), pa.string()]
    assert bs[0].texts["code"].to_pylist() == ["7", "8"] and "code" not in bs[1].texts


@pytest.mark.parametrize("extra", [[], [["9", T0, "line\nbreak", "02134", "1.5"]]])
def test_csv_exact_reader_gives_what_the_fast_reader_gives(tmp_path, extra):
    """A quoted line break sends the file to the exact reader (pyarrow refuses it)."""
    rows = [[str(i), T0, f"n{i}", "007" if i == 3 else str(i), f"{i}.5"] for i in range(1, 6)] + extra
    f = write_csv(tmp_path / "a.csv", ["id", CURSOR, "name", "code", "amount"], rows)
    for batch_size in (2, 100):
        fast = batches(f, batch_size=batch_size)
        exact = list(csvfile.read_csv_exact(str(f), str(f), CURSOR, batch_size))
        assert len(fast) == len(exact)
        for a, b in zip(fast, exact):
            assert a.table.schema == b.table.schema and a.table.equals(b.table), (a.table, b.table)
            assert a.texts.keys() == b.texts.keys() and all(a.texts[k].equals(b.texts[k]) for k in a.texts)


# --- Parquet ----------------------------------------------------------------------------------

def test_parquet_timestamps_become_iso_text_at_full_precision(tmp_path):
    ns = [1_736_924_400_123_456_789, 1_736_924_400_123_456_000, 1_736_924_400_000_000_000, None, -1]
    us = [dt.datetime(2025, 1, 15, 7), dt.datetime(2025, 1, 15, 7, 0, 0, 123000), dt.datetime(999, 1, 2, 3, 4, 5, 6),
          None, dt.datetime(1969, 12, 31, 23, 59, 59, 999999)]
    table = pa.table({
        "id": [1, 2, 3, 4, 5],
        CURSOR: pa.array(us, pa.timestamp("us")),
        "ns": pa.array(ns, pa.timestamp("ns")),
        "us": pa.array(us, pa.timestamp("us")),
        "ms": pa.array([v and v.replace(microsecond=v.microsecond // 1000 * 1000) for v in us], pa.timestamp("ms")),
        "s": pa.array([v and v.replace(microsecond=0) for v in us], pa.timestamp("s")),
        "utc": pa.array(ns, pa.timestamp("ns", tz="UTC")),
        "ny": pa.array(us[:2] + [None, None, us[4]], pa.timestamp("us", tz="America/New_York")),
        "day": pa.array([v and v.date() for v in us], pa.date32()),
        "day64": pa.array([v and v.date() for v in us], pa.date64()),
        "price": pa.array([decimal.Decimal("1.50"), None, decimal.Decimal("-0.01"), decimal.Decimal("0"),
                           decimal.Decimal("123456789012.34")], pa.decimal128(14, 2)),
        "text": ["2025-01-15 07:00:00", "007", "1.50", None, "Z"],
    })
    f = tmp_path / "a.parquet"
    pq.write_table(table, f)
    (b,) = batches(f)
    t = b.table
    assert t.column(CURSOR).type == pa.timestamp("us")  # the cursor stays typed
    assert t.column("ns").to_pylist() == ["2025-01-15T07:00:00.123456789", "2025-01-15T07:00:00.123456",
                                          "2025-01-15T07:00:00", None, "1969-12-31T23:59:59.999999999"]
    assert t.column("utc").to_pylist() == ["2025-01-15T07:00:00.123456789+00:00", "2025-01-15T07:00:00.123456+00:00",
                                           "2025-01-15T07:00:00+00:00", None, "1969-12-31T23:59:59.999999999+00:00"]
    # whole microseconds: exactly what Python's isoformat() prints (tables loaded before stay the same)
    for name in ("us", "ms", "s", "ny"):
        expected = [None if v is None else v.isoformat() for v in table.column(name).to_pylist()]
        assert t.column(name).to_pylist() == expected, name
    assert t.column("ny").to_pylist()[0] == "2025-01-15T02:00:00-05:00"
    assert t.column("day").to_pylist() == ["2025-01-15", "2025-01-15", "0999-01-02", None, "1969-12-31"]
    assert t.column("day64").to_pylist() == t.column("day").to_pylist()
    assert t.column("price").type == pa.decimal128(14, 2)  # exact decimals stay decimals
    assert t.column("price").equals(table.column("price"))
    assert t.column("text").to_pylist() == table.column("text").to_pylist()


# --- properties -------------------------------------------------------------------------------

def _stamp_text(d: dt.datetime, style: int) -> str:
    return [d.isoformat(), d.isoformat(" "), d.isoformat() + "Z", d.date().isoformat(),
            d.isoformat(timespec="seconds") + "+05:30", d.strftime("%Y-%m-%d %H:%M")][style]


stamps = st.builds(_stamp_text, st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2200, 1, 1)), st.integers(0, 5))
numbery = st.one_of(st.integers(-10**20, 10**20).map(str), st.integers(0, 99_999).map(lambda i: f"{i:05d}"),
                    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
                    st.floats(allow_nan=False, allow_infinity=False).map(repr),
                    st.sampled_from(["1.50", "1e3", "+7", " 7", "-0", "0.0", "NaN", "inf", "-Infinity"]))
wordy = st.one_of(st.sampled_from(["true", "false", "True", "null", "", "yes"]),
                  st.text(st.characters(blacklist_categories=("Cs",)), max_size=8))
strings = st.one_of(stamps, numbery, wordy)
scalars = st.one_of(st.none(), strings, st.integers(-2**63, 2**63 - 1), st.booleans(),
                    st.floats(allow_nan=False, allow_infinity=False))
# Nested objects keep one key set: pyarrow's struct gives a key missing from one object back
# as null (``{}`` read next to ``{"k": 1}`` is ``{"k": None}``), a separate question.
nested = st.one_of(st.fixed_dictionaries({"k": st.one_of(st.none(), strings), "at": st.one_of(st.none(), stamps),
                                          "l": st.lists(stamps, max_size=2),
                                          "o": st.fixed_dictionaries({"s": strings})}),
                   st.lists(st.one_of(st.none(), strings), max_size=3))
field_values = {"s": st.one_of(st.none(), strings), "t": st.one_of(st.none(), stamps),
                "v": scalars, "n": st.one_of(st.none(), nested)}
records = st.lists(st.fixed_dictionaries({}, optional=field_values), min_size=1, max_size=12)


@settings(max_examples=25, deadline=None)
@given(records)
def test_property_json_values_come_back_as_sent(recs):
    recs = [{"id": i, CURSOR: T0, **r} for i, r in enumerate(recs)]
    with tempfile.TemporaryDirectory() as d:
        jl = write_jsonl(Path(d) / "a.jsonl", recs)
        assert_records(values(batches(jl)), recs)
        ja = Path(d) / "a.json"
        ja.write_text(json.dumps(recs, ensure_ascii=False), encoding="utf-8")
        assert_records(values(batches(ja)), recs)


_INT = re.compile(r"0|-?[1-9][0-9]*")


def _expected_csv_type(cells: list[str]) -> pa.DataType | None:
    """The rule in plain Python: int64 if every non-empty cell is canonical integer text within
    64 bits, float64 if every one is the text repr() gives its float (finite), else text."""
    full = [c for c in cells if c != ""]
    if not full:
        return pa.null()  # no value yet: no type yet, as for an all-null JSON field
    if all(_INT.fullmatch(c) and -2**63 <= int(c) < 2**63 for c in full):
        return pa.int64()
    try:
        # A negative zero stays text: no target keeps its sign (the reader's documented rule).
        if all(math.isfinite(float(c)) and repr(float(c)) == c and c != "-0.0" for c in full):
            return pa.float64()
    except ValueError:
        pass
    return pa.string()


float_texts = st.floats(allow_nan=False, allow_infinity=False).map(repr)
int_texts = st.integers(-2**64, 2**64).map(str)
csv_column = st.one_of(st.lists(st.one_of(strings, float_texts, int_texts), min_size=4, max_size=4),
                       # columns of one kind, so that numeric columns come up often
                       st.lists(float_texts | st.just(""), min_size=4, max_size=4),
                       st.lists(int_texts | st.just(""), min_size=4, max_size=4))
csv_columns_st = st.lists(csv_column, min_size=1, max_size=4)


@settings(max_examples=25, deadline=None)
@given(csv_columns_st)
@example([["0.0", "", "", "-0.0"]])  # found by hypothesis: -0.0 keeps the column text
def test_property_csv_cells_come_back_as_written(columns):
    columns = [[c.replace("\x00", "") for c in col] for col in columns]  # NUL is not CSV text
    header = [CURSOR] + [f"c{j}" for j in range(len(columns))]
    rows = [[T0] + [col[i] for col in columns] for i in range(4)]
    with tempfile.TemporaryDirectory() as d:
        f = write_csv(Path(d) / "a.csv", header, rows)
        fast = batches(f)
        exact = list(csvfile.read_csv_exact(str(f), str(f), CURSOR, 65_536))
    for bs in (fast, exact):
        (b,) = bs
        for j, col in enumerate(columns):
            name = f"c{j}"
            got = b.table.column(name)
            assert got.type == _expected_csv_type(col), (col, got)
            for cell, v in zip(col, got.to_pylist()):
                if cell == "":
                    assert v is None
                elif isinstance(v, str):
                    assert v == cell
                else:
                    assert (str(v) if isinstance(v, int) else repr(v)) == cell
            if got.type in (pa.int64(), pa.float64()):
                assert b.texts[name].to_pylist() == [c or None for c in col]
            else:
                assert name not in b.texts
    assert fast[0].table.equals(exact[0].table)


def test_a_nested_object_keeps_missing_and_null_fields_apart(tmp_path):
    """Found by the fidelity property test: pyarrow's reader gave ``{}`` every field of its
    siblings as null ({"zip": null, ...}); the exact reader keeps what the line had."""
    from hiwater.sources.files import open_files
    recs = [{"id": 1, "modified_at": "2025-01-15T10:00:00", "nest": {}},
            {"id": 2, "modified_at": "2025-01-15T10:00:00", "nest": {"zip": None}},
            {"id": 3, "modified_at": "2025-01-15T10:00:00", "nest": {"a": 1}}]
    f = tmp_path / "a.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in recs))
    got = []
    for b in open_files(str(f)).batches():
        for v in b.table.column("nest").to_pylist():
            got.append(json.loads(v) if isinstance(v, str) else v)
    assert got == [r["nest"] for r in recs]


def test_csv_negative_zero_stays_text():
    """-0.0 is the shortest text of its float, but SQLite stores 0.0: the cell stays text."""
    import pyarrow as pa
    from hiwater.sources.csvfile import _csv_number
    assert _csv_number(pa.array(["-0.0", "1.5"])) is None
    assert _csv_number(pa.array(["0.0", "-1.5"])).to_pylist() == [0.0, -1.5]

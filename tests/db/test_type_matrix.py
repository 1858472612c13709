"""The type matrix (issue 22 item 1): every Arrow type a user can send through Parquet, an Arrow
table or a pandas DataFrame, as a value, a key and a cursor, into every target, read back with the
target's own driver. Each value is stored as sent (read back equal) or its record is refused with a
one-line reason naming the field; never an internal error, never a run failed for one column's
type without saying which. Column names (duplicates, empty, case pairs, ...) and the Python API's
values (Decimal, bytes, sets, tuples, nested, objects) likewise.

The default suite plays a sample (the types that broke, as a value, on every target); ``-m slow``
plays the whole product.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hiwater
from hiwater.errors import HiwaterError, UsageError

from .conftest import target_for
from .dbutil import TARGETS, _sqlite_ts, read_table

UTC = dt.timezone.utc
T0 = dt.datetime(2025, 1, 1, tzinfo=UTC)
D = Decimal
REFUSED = "refused"  # an expected value: this record is refused, its reason naming the field


def _case(name, arr, expect=None, key="ok", cursor="refused"):
    """One type: its Arrow array (three values), what each reads back as (default: the values
    themselves; ``REFUSED`` for a refused record), and whether it is a valid key / cursor."""
    return pytest.param(arr, expect, key, cursor, id=name)


def _cases():
    out = []
    for bits in (8, 16, 32, 64):
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        out.append(_case(f"int{bits}", pa.array([lo, hi, 0], getattr(pa, f"int{bits}")()), cursor="ok"))
        expect = [0, 2 ** bits - 1, 1] if bits < 64 else [0, REFUSED, 1]
        out.append(_case(f"uint{bits}", pa.array([0, 2 ** bits - 1, 1], getattr(pa, f"uint{bits}")()), expect,
                         cursor="ok" if bits < 64 else "some"))
    out += [
        _case("float16", pa.array(np.array([1.5, -65504, 0.25], np.float16), pa.float16()), key="refused"),
        _case("float32", pa.array([1.5, 3.4028234663852886e38, -1e-30], pa.float32()),
              [1.5, 3.4028234663852886e38, float(np.float32(-1e-30))], key="refused"),
        _case("float64", pa.array([1.5, 1.7976931348623157e308, 5e-324]), key="refused"),
        _case("float64_nan_inf", pa.array([float("nan"), float("inf"), 1.0]), [REFUSED, REFUSED, 1.0], key="refused"),
        _case("decimal128_38", pa.array([D("9" * 36 + ".99"), D("-1.00"), D("0.01")], pa.decimal128(38, 2)),
              key="ok"),
        _case("decimal256_76", pa.array([D("9" * 70 + ".999999"), D("-1.000000"), D("0.000001")],
                                        pa.decimal256(76, 6)), key="ok"),
        _case("decimal_negative_scale", pa.array([D("1E+3"), D("-5E+3"), D("0")], pa.decimal128(5, -3)),
              [D(1000), D(-5000), D(0)], key="ok"),
        _case("date32", pa.array([dt.date(1, 1, 1), dt.date(9999, 12, 31), dt.date(2024, 2, 29)], pa.date32()),
              ["0001-01-01", "9999-12-31", "2024-02-29"], cursor="some"),
        _case("date64", pa.array([dt.date(1970, 1, 1), dt.date(2024, 2, 29), dt.date(2000, 1, 1)], pa.date64()),
              ["1970-01-01", "2024-02-29", "2000-01-01"], cursor="ok"),
        _case("time32s", pa.array([0, 86399, 43200], pa.time32("s")), ["00:00:00", "23:59:59", "12:00:00"]),
        _case("time32ms", pa.array([1, 86399999, 0], pa.time32("ms")),
              ["00:00:00.001", "23:59:59.999", "00:00:00.000"]),
        _case("time64us", pa.array([1, 86399999999, 0], pa.time64("us")),
              ["00:00:00.000001", "23:59:59.999999", "00:00:00.000000"]),
        _case("time64ns", pa.array([1, 86399999999999, 0], pa.time64("ns")),
              ["00:00:00.000000001", "23:59:59.999999999", "00:00:00.000000000"]),
        _case("duration_us", pa.array([86400000000, -1, 0], pa.duration("us")), ["PT86400S", "-PT0.000001S", "PT0S"]),
        _case("duration_s", pa.array([1, -1, 0], pa.duration("s")), ["PT1S", "-PT1S", "PT0S"]),
        _case("duration_ns", pa.array([1, 10**9, 0], pa.duration("ns")), ["PT0.000000001S", "PT1S", "PT0S"]),
        _case("binary", pa.array([b"\x00\xff", b"", b"abc"], pa.binary()), key="refused"),
        _case("large_binary", pa.array([b"\x00\xff", b"", b"abc"], pa.large_binary()), key="refused"),
        _case("fixed_size_binary", pa.array([b"\x00\xff\x01", b"abc", b"xyz"], pa.binary(3)), key="refused"),
        _case("string", pa.array(["a", "", "東京 ☃"], pa.string())),
        _case("large_string", pa.array(["a", "", "東京"], pa.large_string())),
        _case("string_view", pa.array(["a", "", "東京"], pa.string_view())),
        _case("dictionary_string", pa.array(["a", "b", "c"]).dictionary_encode()),
        _case("list", pa.array([[1, 2], [], None], pa.list_(pa.int64())), ["[1,2]", "[]", None]),
        _case("large_list", pa.array([["x"], [], ["y", "z"]], pa.large_list(pa.string())),
              ['["x"]', "[]", '["y","z"]']),
        _case("struct", pa.array([{"a": 1, "b": "x"}, {"a": None, "b": "y"}, {"a": 2, "b": None}],
                                 pa.struct([("a", pa.int64()), ("b", pa.string())])),
              ['{"a":1,"b":"x"}', '{"a":null,"b":"y"}', '{"a":2,"b":null}']),
        _case("map", pa.array([[("k", 1)], [], [("a", 2), ("b", 3)]], pa.map_(pa.string(), pa.int64())),
              ['[["k",1]]', "[]", '[["a",2],["b",3]]']),
        _case("null", pa.array([None, None, None], pa.null()), key="refused"),
        _case("bool", pa.array([True, False, None], pa.bool_()), key="refused"),
        # timestamp[ns] is branch t-nanos's: here only "never an internal error".
        _case("timestamp_ns", pa.array([1, 2, 3], pa.timestamp("ns")), expect="any", key="any", cursor="any"),
    ]
    for unit in ("s", "ms", "us"):
        naive = [dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59), dt.datetime(2024, 1, 1, 12)]
        out.append(_case(f"timestamp_{unit}", pa.array(naive, pa.timestamp(unit)),
                         [d.isoformat() for d in naive], cursor="some"))
        aware = [dt.datetime(1970, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 1, 12, tzinfo=UTC),
                 dt.datetime(2000, 1, 1, tzinfo=UTC)]
        out.append(_case(f"timestamp_{unit}_zoned", pa.array(aware, pa.timestamp(unit, "Europe/Paris")),
                         [d.replace(tzinfo=None).isoformat() for d in aware], cursor="ok"))
    return out


CASES = _cases()
SAMPLE = {"uint64", "decimal256_76", "decimal_negative_scale", "time64ns", "duration_us", "binary",
          "string_view", "dictionary_string", "map", "float64_nan_inf", "timestamp_ns"}


def _time_text(v):
    """A time of day's text without trailing zero digits: Parquet keeps time32[s] as milliseconds
    and pandas as microseconds, so ``12:00:00`` may come back as ``12:00:00.000``."""
    if isinstance(v, str) and re.fullmatch(r"\d\d:\d\d:\d\d(\.\d+)?", v):
        return re.sub(r"\.?0+$", "", v) if "." in v else v
    return v


def _same(back, want) -> bool:
    """A value read back equals what was sent (a decimal numerically: SQLite and Delta keep its
    digits as text; an instant as the same UTC instant; SQLite's 0/1 for booleans)."""
    back, want = _time_text(back), _time_text(want)
    if isinstance(want, Decimal):
        return back is not None and Decimal(str(back)) == want
    if isinstance(want, bytes):
        return back is not None and bytes(back) == want
    if isinstance(want, float) and isinstance(back, float) and want != want:
        return back != back
    return _sqlite_ts(back) == want if isinstance(back, str) else back == want


def _input(tbl: pa.Table, via: str, tmp_path):
    if via == "arrow":
        return tbl
    if via == "pandas":
        try:
            return tbl.to_pandas()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            pytest.skip(f"pandas cannot hold this Arrow column: {exc}")
    path = tmp_path / "in.parquet"
    try:
        pq.write_table(tbl, path)
    except (OSError, pa.ArrowException) as exc:
        pytest.skip(f"Parquet cannot hold this Arrow column: {exc}")
    return str(path)


def _load(inp, url, **kw):
    """(summary or None, the refusal's text): a HiwaterError is a refusal, any other exception fails."""
    try:
        return hiwater.load(inp, target=url, table="t", **kw), ""
    except HiwaterError as exc:
        text = str(exc)
        assert "\n" not in text and "internal error" not in text, text
        return None, text


def _reasons(url) -> list:
    return [r["detail"] for r in hiwater.quarantine_list(target=url)]


def play(role, via, kind, arr, expect, key_ok, cursor_ok, tmp_path, request):
    url = target_for(kind, tmp_path, request)
    n = len(arr)
    ids = pa.array(range(1, n + 1))
    stamps = pa.array([T0] * n, pa.timestamp("us", "UTC"))
    if role == "value":
        tbl, kw = pa.table({"id": ids, "updated_at": stamps, "v": arr}), dict(key="id", cursor="updated_at")
    elif role == "key":
        tbl, kw = pa.table({"v": arr, "updated_at": stamps}), dict(key="v", cursor="updated_at")
    else:
        tbl, kw = pa.table({"id": ids, "v": arr}), dict(key="id", cursor="v")
    summary, refusal = _load(_input(tbl, via, tmp_path), url, **kw)
    if expect == "any":
        return  # (timestamp[ns]: another branch's; here only "not an internal error")
    if summary is None and via == "pandas":  # a DataFrame column Arrow cannot read: refused by name
        assert any(w in refusal for w in ("column v", "'v'", "cursor")), refusal
        return
    sent = arr.to_pylist() if not pa.types.is_dictionary(arr.type) else arr.cast(arr.type.value_type).to_pylist()
    if role == "value":
        want = expect if expect is not None else sent
        assert summary is not None, refusal
        rows = {r["id"]: r.get("v") for r in read_table(url, "t")}
        for i, w in enumerate(want, start=1):
            if w == REFUSED and via == "pandas" and sent[i - 1] != sent[i - 1]:
                assert rows.get(i) is None  # pandas' NaN is its missing value: null
            elif w == REFUSED:
                assert i not in rows
            else:
                assert _same(rows[i], w), (i, rows[i], w)
        if REFUSED in want and via != "pandas":
            assert any("'v'" in r for r in _reasons(url)), _reasons(url)
        return
    ok = key_ok if role == "key" else cursor_ok
    if ok == "refused":  # the reason names the field (a cursor's: "cursor …")
        named = ("'v'", "cursor")
        assert (summary is None and any(w in refusal for w in named)) or (
            summary.counts.loaded == 0 and all(any(w in r for w in named) for r in _reasons(url)))
        return
    assert summary is not None, refusal
    if role == "key":
        stored = [r["v"] for r in read_table(url, "t")]
        keys = {repr(v) for v in (expect or sent) if v is not None and v != REFUSED}
        assert len(stored) == len(keys), (stored, keys)
        return
    loaded = summary.counts.loaded
    assert loaded == n if ok == "ok" else 0 < loaded <= n  # "some": values beyond the cursor's range refused


def _marks(params, sample):
    return [p if p.id in sample else pytest.param(*p.values, id=p.id, marks=pytest.mark.slow) for p in params]


@pytest.mark.parametrize("kind", TARGETS)
@pytest.mark.parametrize("arr,expect,key_ok,cursor_ok", _marks(CASES, SAMPLE))
def test_a_value_of_every_arrow_type_is_stored_as_sent_or_refused_by_name(kind, arr, expect, key_ok, cursor_ok,
                                                                         tmp_path, request):
    play("value", "arrow", kind, arr, expect, key_ok, cursor_ok, tmp_path, request)


@pytest.mark.slow
@pytest.mark.parametrize("kind", TARGETS)
@pytest.mark.parametrize("arr,expect,key_ok,cursor_ok", CASES)
@pytest.mark.parametrize("role,via", [("value", "parquet"), ("value", "pandas"), ("key", "arrow"),
                                      ("key", "parquet"), ("cursor", "arrow"), ("cursor", "parquet"),
                                      ("key", "pandas"), ("cursor", "pandas")])
def test_the_whole_matrix(role, via, kind, arr, expect, key_ok, cursor_ok, tmp_path, request):
    play(role, via, kind, arr, expect, key_ok, cursor_ok, tmp_path, request)


@pytest.mark.parametrize("kind", TARGETS)
def test_keys_and_cursors_of_the_types_that_broke(kind, tmp_path, request):
    """A sample of the key and cursor roles in the default suite: an unsigned key at its limit,
    a time-of-day key, a binary key (refused by name), a string_view cursor."""
    cases = {c.id: c.values for c in CASES}
    for role, name in (("key", "uint64"), ("key", "time64ns"), ("key", "binary"), ("cursor", "string"),
                       ("cursor", "uint32")):
        sub = tmp_path / f"{role}_{name}"
        sub.mkdir()
        play(role, "arrow", kind, *cases[name], sub, request)


# --- column names -----------------------------------------------------------------------------

NAMES = {
    "duplicate": (["a", "a"], "appears twice"),
    "empty": (["", "b"], "empty name"),
    "whitespace": ([" ", "  x "], None),
    "non_ascii": (["café", "東京 🚀"], None),
    "case_pair": (["Name", "name"], "differ only in case"),
    "quotes": (['a"b', "c'd"], None),
}


@pytest.mark.parametrize("kind", TARGETS)
@pytest.mark.parametrize("case", list(NAMES))
def test_column_names_are_kept_or_refused_with_a_reason(kind, case, tmp_path, request):
    url = target_for(kind, tmp_path, request)
    cols, refused = NAMES[case]
    tbl = pa.Table.from_arrays([pa.array([1]), pa.array([T0], pa.timestamp("us", "UTC")), pa.array(["v1"]),
                                pa.array(["v2"])], names=["id", "t"] + cols)
    summary, refusal = _load(tbl, url, key="id", cursor="t")
    if case == "case_pair" and kind == "postgresql":
        refused = None  # PostgreSQL tells quoted names apart by case: two columns
    if refused:
        assert summary is None and refused in refusal, refusal
        with pytest.raises(UsageError):  # exit 2: nothing read or written
            hiwater.load(tbl, target=url, table="t", key="id", cursor="t")
        return
    assert summary is not None, refusal
    (row,) = read_table(url, "t")
    assert [row[c] for c in cols] == ["v1", "v2"]


@pytest.mark.parametrize("kind", ["sqlite", "duckdb"])
def test_a_field_differing_in_case_from_an_existing_column_is_refused_not_merged(kind, tmp_path, request):
    url = target_for(kind, tmp_path, request)
    hiwater.load([{"id": 1, "t": "2025-01-01T00:00:00Z", "Name": "a"}], target=url, table="t", key="id", cursor="t")
    with pytest.raises(UsageError, match="differ only in case"):
        hiwater.load([{"id": 2, "t": "2025-01-02T00:00:00Z", "name": "b"}], target=url, table="t", key="id",
                     cursor="t")
    assert [r["Name"] for r in read_table(url, "t")] == ["a"]


# --- the Python API's values ------------------------------------------------------------------

class _Thing:
    pass


PY_VALUES = [
    ("decimal", D("1.50"), D("1.50")),
    ("bytes", b"\x00\xff", b"\x00\xff"),
    ("tuple", (1, "a"), '[1,"a"]'),
    ("nested_decimal", {"a": [1, {"b": D("2.50")}]}, '{"a":[1,{"b":2.50}]}'),
    ("timedelta", dt.timedelta(seconds=5), "PT5S"),
    ("uuid", uuid.UUID(int=5), "00000000-0000-0000-0000-000000000005"),
    ("set", {1, 2}, "a set"),
    ("nested_set", {"a": {1}}, "a set"),
    ("nested_bytes", {"a": b"x"}, "bytes"),
    ("non_string_keys", {1: "a"}, "not a string"),
    ("object", _Thing(), "_Thing"),
    ("complex", 1 + 2j, "complex"),
]


@pytest.mark.parametrize("kind", TARGETS)
@pytest.mark.parametrize("name,value,expect", PY_VALUES, ids=[p[0] for p in PY_VALUES])
def test_python_values_are_stored_or_refused_with_a_reason(kind, name, value, expect, tmp_path, request):
    url = target_for(kind, tmp_path, request)
    records = [{"id": 1, "t": "2025-01-01T00:00:00Z", "v": value}, {"id": 2, "t": "2025-01-01T00:00:00Z", "v": None}]
    summary, refusal = _load(records, url, key="id", cursor="t")
    assert summary is not None, refusal
    rows = {r["id"]: r["v"] for r in read_table(url, "t")}
    if name in ("set", "nested_set", "nested_bytes", "non_string_keys", "object", "complex"):
        assert 1 not in rows
        (reason,) = _reasons(url)
        assert "'v'" in reason and expect in reason, reason
    else:
        assert _same(rows[1], expect), (rows[1], expect)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_non_string_field_names_and_huge_integers_among_floats_are_refused_per_record(kind, tmp_path, request):
    url = target_for(kind, tmp_path, request)
    records = [{"id": 1, "t": "2025-01-01T00:00:00Z", "v": 1.5},
               {"id": 2, "t": "2025-01-01T00:00:00Z", "v": 2 ** 70 + 1},  # (no double holds it)
               {"id": 3, "t": "2025-01-01T00:00:00Z", 5: "x"}]
    summary, refusal = _load(records, url, key="id", cursor="t")
    assert summary is not None and summary.counts.loaded == 1, refusal
    reasons = _reasons(url)
    assert any("'v'" in r and str(2 ** 70 + 1) in r for r in reasons) and any("field name 5" in r for r in reasons)


def test_postgresql_text_with_nul_is_refused_per_record(tmp_path, request):
    url = target_for("postgresql", tmp_path, request)
    tbl = pa.table({"id": [1, 2], "t": pa.array([T0, T0], pa.timestamp("us", "UTC")), "v": ["a\x00b", "ok"]})
    summary, refusal = _load(tbl, url, key="id", cursor="t")
    assert summary is not None and summary.counts.loaded == 1, refusal
    assert [r["v"] for r in read_table(url, "t")] == ["ok"]
    assert any("'v'" in r and "NUL" in r for r in _reasons(url))


def test_a_json_column_with_a_float_and_a_huge_integer_is_judged_per_record(tmp_path):
    """The issue's known bug: a JSON Lines column holding 1.5 and an integer beyond 64 bits was
    an internal error (ArrowInvalid). Now the integer a double holds exactly is stored, the one it
    would round is refused by name."""
    path = tmp_path / "in.jsonl"
    path.write_text('{"id":1,"t":"2025-01-01T00:00:00Z","v":1.5}\n'
                    '{"id":2,"t":"2025-01-01T00:00:00Z","v":123456789012345678901234}\n'
                    '{"id":3,"t":"2025-01-01T00:00:00Z","v":1180591620717411303424}\n')
    url = f"sqlite:///{tmp_path / 't.db'}"
    summary, refusal = _load(str(path), url, key="id", cursor="t")
    assert summary is not None and summary.counts.loaded == 2, refusal
    assert {r["id"]: r["v"] for r in read_table(url, "t")} == {1: 1.5, 3: float(2 ** 70)}
    (reason,) = _reasons(url)
    assert "'v'" in reason and "123456789012345678901234" in reason

"""Values are stored as sent (SPEC §8, issue 10): the fidelity property test and the
issue's regression cases, on every target (SQLite, PostgreSQL, DuckDB).

The property: records whose non-cursor fields are strings that look like timestamps,
dates, numbers with leading zeros, decimals with trailing zeros, booleans, unicode, quoted
or multi-line text, nested objects/lists holding such strings, nulls, plus real JSON numbers
and booleans (one type per column), written as a JSON array, JSON Lines, CSV and Parquet and
loaded through the CLI, read back with the database's own driver, equal what the source
carried:

- JSON / JSON Lines / Parquet: a string is the same string byte for byte; a nested value
  parses (``json.loads``) to the original; numbers equal numerically; booleans are booleans
  (SQLite's 0/1 read by the column's declared type).
- CSV: a cell is text. The stored value is the cell's text, or a number whose canonical text
  (``str(int)`` / ``repr(float)``) is the cell; an empty cell is null.

And the four exports of the same records, loaded into ONE table in any order, give one row
per key: per integer ``id`` (the default key) and, in a second table, per string ``code``.

The default run plays the issue's values first (explicit examples), then 10 derandomized
examples per format and target, without shrinking (a failure lists every value that changed);
``-m slow`` plays 100 larger ones.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from sizes import env_int

from .conftest import target_for
from .dbutil import column_types
from .readback import FORMATS, csv_cell, export, fetch, is_number, query, sqlite_bool, strict_eq, table_exists

NOW = "2025-06-01T00:00:00Z"

# Reproducible in CI: a derandomized run of few examples, no shrinking in the default run
# (each example is several loads; the failure message lists every value that changed).
FAST = settings(max_examples=10, deadline=None, derandomize=True,
                phases=[Phase.explicit, Phase.reuse, Phase.generate],
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
EXAMPLES = env_int("HIWATER_FIDELITY_EXAMPLES", 50, 400)  # per SQL target in -m slow (CI 50; full 400)
SLOW = settings(FAST, max_examples=EXAMPLES)


# --- the records ------------------------------------------------------------------------------

def _stamp(d: dt.datetime, form: str) -> str:
    return {
        "space": d.strftime("%Y-%m-%d %H:%M:%S"),
        "Z": d.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "+01:00": d.strftime("%Y-%m-%dT%H:%M:%S+01:00"),
        "micro": d.strftime("%Y-%m-%dT%H:%M:%S.%f"),
        "T": d.strftime("%Y-%m-%dT%H:%M:%S"),
        "minutes": d.strftime("%Y-%m-%dT%H:%M"),
        "date": d.strftime("%Y-%m-%d"),
        "time": d.strftime("%H:%M:%S"),
        "dmy": d.strftime("%d/%m/%Y"),
    }[form]


STAMP_FORMS = ["space", "Z", "+01:00", "micro", "T", "minutes", "date", "time", "dmy"]
instants = st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(2100, 1, 1))
timestamp_like = st.builds(_stamp, instants, st.sampled_from(STAMP_FORMS))
leading_zeros = st.one_of(st.integers(0, 10**6).map(lambda n: "0" + str(n)),
                          st.sampled_from(["00", "007", "02134", "-007", "+7", " 7", "7 ", "0.0", "-0"]))
trailing_zeros = st.one_of(st.builds(lambda a, b: f"{a}.{b}0", st.integers(0, 99999), st.integers(0, 99)),
                           st.sampled_from(["1.50", "1.0", "100.00", "1e3", "1E+03", "1_000", "0x1F", "1,5",
                                            "-0.0", ".5", "5."]))
word_like = st.sampled_from(["true", "false", "True", "False", "TRUE", "yes", "no", "t", "f", "null", "NULL",
                             "None", "NaN", "nan", "Infinity", "-Infinity", "inf", "N/A", "#N/A", "-", ""])
unicode_text = st.sampled_from(["café", "naïve", "Ünïcödé", "東京", "日本語のテキスト", "😀", "👍🏽", "🇫🇷",
                                "e\u0301", "zero\u200bwidth", "עברית", "Ωμέγα", "ß", "\u00a0nbsp"])
punctuation = st.sampled_from(['"', '""', 'a "quoted" word', "it's", "back\\slash", "C:\\new\\table",
                               "a,b,c", "line1\nline2", "crlf\r\nend", "cr\rend", "tab\there", ";", "{",
                               "[1, 2]", '{"a": 1}', " leading", "trailing ", "  ", "\\n", "'single'"])
free_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=10)
atom = st.one_of(timestamp_like, leading_zeros, trailing_zeros, word_like, unicode_text, punctuation, free_text)
tricky = st.one_of(atom, st.lists(atom, min_size=2, max_size=3).map("".join))
# A column whose values all come from one family is what a reader's type inference acts on
# (pyarrow takes a JSON column of "2025-01-15 07:00:00" strings for timestamps, a CSV column of
# "007" for integers), so one column draws its family per data set.
families = st.one_of(st.sampled_from(STAMP_FORMS).map(lambda form: st.builds(_stamp, instants, st.just(form))),
                     st.sampled_from([leading_zeros, trailing_zeros, word_like, unicode_text, punctuation]))

nested = st.recursive(
    st.one_of(st.none(), tricky, st.integers(-1000, 1000), st.booleans()),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["a", "b", "when", "zip", "name"]), inner, max_size=3)),
    max_leaves=6,
).filter(lambda v: isinstance(v, (dict, list)))

# One shape per data set: a struct of fixed keys, or a list of strings, is what pyarrow's
# readers (and Parquet) carry natively; any mixture is JSON text.
nest_shapes = st.sampled_from([
    nested,
    st.fixed_dictionaries({"when": st.none() | tricky, "zip": st.lists(tricky, max_size=2)}),
    st.lists(st.none() | tricky, max_size=3),
])

finite_fraction = st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not x.is_integer())

KINDS = {"id": "int", "modified_at": "cursor", "code": "str", "s1": "str", "s2": "str", "s3": "str", "nest": "json",
         "i": "int", "f": "float", "b": "bool"}


def _maybe(strategy):
    return st.one_of(st.none(), strategy, strategy, strategy)


@st.composite
def datasets(draw, max_size=8):
    """1–``max_size`` records: distinct integer ids, distinct valid cursors, the tricky columns."""
    n = draw(st.integers(1, max_size))
    ids = draw(st.lists(st.integers(-2**40, 2**40), min_size=n, max_size=n, unique=True))
    minutes = draw(st.lists(st.integers(0, 60 * 24 * 120), min_size=n, max_size=n, unique=True))
    base = dt.datetime(2025, 1, 1)
    family = draw(families)
    shape = draw(nest_shapes)
    # a second key: distinct non-empty strings, mostly of the column's family (CSV cannot carry "")
    codes = draw(st.lists(st.one_of(family, family, tricky).filter(bool), min_size=n, max_size=n, unique=True))
    records = []
    for k, m, code in zip(ids, minutes, codes):
        records.append({
            "id": k,
            "modified_at": (base + dt.timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%S"),
            "code": code,
            "s1": draw(_maybe(tricky)),
            "s2": draw(_maybe(tricky)),
            "s3": draw(_maybe(family)),  # a whole column of one family (e.g. all "2025-01-15 07:00:00")
            "nest": draw(_maybe(shape)),
            "i": draw(_maybe(st.integers(-2**63, 2**63 - 1))),
            "f": draw(_maybe(finite_fraction)),
            "b": draw(_maybe(st.booleans())),
        })
    return records


def _issue(i, t, s1, s2, s3, nest, i_=None, f=None, b=None):
    return {"id": i, "modified_at": f"2025-01-15T{t}:00", "code": s3 or f"0{i}", "s1": s1, "s2": s2, "s3": s3,
            "nest": nest, "i": i_, "f": f, "b": b}


# The issue's values, always played first (explicit examples), whatever the generator draws.
ISSUE_RECORDS = [
    _issue(1, "08:00", "2025-01-15T07:00:00Z", "007", "2025-01-15 07:00:00",
           {"when": "2025-01-15 07:00:00", "zip": ["02134"]}, 7, 1.5, True),
    _issue(2, "08:05", "2025-01-15T07:00:00+01:00", "02134", "2025-01-16 07:00:00",
           {"when": "2025-01-15T07:00:00Z", "zip": []}, -3, 0.1, False),
    _issue(3, "08:10", 'say "hi",\nback\\slash', "1.50", "2025-01-17 07:00:00",
           {"when": "2025-01-15", "zip": ["1.50", "true"]}),
    _issue(4, "08:15", "café 東京 😀", None, None, None),
]
ISSUE_TEXT_RECORDS = [
    _issue(5, "09:00", "true", "2025-01-15", "True", ["true", "007"], 0, -2.5, None),
    _issue(6, "09:05", "False", "2025-01-16", "false", {"a": {"b": "2025-01-15T07:00:00"}}, 2**62, 1e-7, True),
    _issue(7, "09:10", "", "2025-01-17", "FALSE", {"a": {"b": "x"}}, None, None, False),
]


# --- running and checking ---------------------------------------------------------------------

def load(hw, url, path, table, *extra):
    r = hw("load", "--input", path, "--target", url, "--table", table, "--now", NOW, "--details", *extra)
    assert r.code == 0, f"{path.name} into {table}: exit {r.code}: {r.err.strip()}"
    return r.json


def _value_problem(fmt, kind, sent, stored, declared):
    """Why ``stored`` is not what the source carried (None when it is)."""
    stored = sqlite_bool(stored, declared)
    if kind == "cursor":
        return None
    if fmt == "csv":
        cell = csv_cell(sent)
        if cell == "":
            return None if stored is None else "an empty cell must be null"
        if isinstance(stored, str):
            return None if stored == cell else "text changed"
        if isinstance(stored, int) and not isinstance(stored, bool):
            return None if str(stored) == cell else "number whose text is not the cell"
        if isinstance(stored, float):
            return None if math.isfinite(stored) and repr(stored) == cell else "number whose text is not the cell"
        return f"a CSV cell stored as {type(stored).__name__}"
    if sent is None:
        return None if stored is None else "null became a value"
    if kind == "str":
        if not isinstance(stored, str):
            return f"string stored as {type(stored).__name__}"
        return None if stored == sent else "string changed"
    if kind == "json":
        if isinstance(stored, str):
            try:
                stored = json.loads(stored)
            except ValueError:
                return "nested value not stored as JSON text"
        return None if strict_eq(stored, sent) else "nested value changed"
    if kind == "bool":
        return None if isinstance(stored, bool) and stored is sent else "boolean changed"
    if kind in ("int", "float"):
        return None if is_number(stored) and stored == sent else "number changed"
    raise AssertionError(kind)


def problems(url, table, fmt, records) -> list[str]:
    """Every value of ``records`` the table does not hold as sent, one line each."""
    types, rows = fetch(url, table)
    out = []
    by_id = {}
    for r in rows:
        k = r.get("id")
        by_id.setdefault(csv_cell(k) if fmt == "csv" else k, []).append(r)
    for rec in records:
        key = csv_cell(rec["id"]) if fmt == "csv" else rec["id"]
        got = by_id.pop(key, [])
        if len(got) != 1:
            out.append(f"{fmt}: id {rec['id']!r}: {len(got)} rows")
            continue
        row = got[0]
        if fmt != "csv" and type(row["id"]) is not int:
            out.append(f"{fmt}: id {rec['id']!r} stored as {row['id']!r}")
        for col, kind in KINDS.items():
            sent, stored, declared = rec.get(col), row.get(col), types.get(col)
            why = _value_problem(fmt, kind, sent, stored, declared)
            if why:
                shown = f"cell {csv_cell(sent)!r}" if fmt == "csv" else repr(sent)
                out.append(f"{fmt}: id {rec['id']}: {col} ({declared}): {why}: sent {shown}, stored {stored!r}")
    for k, extra in by_id.items():
        out.append(f"{fmt}: {len(extra)} row(s) with id {k!r} the source never had")
    return out


def _report(found: list[str]) -> str:
    return f"{len(found)} value(s) not stored as sent:\n  " + "\n  ".join(found[:25])


# --- the property -----------------------------------------------------------------------------

_counter = [0]


def _table(prefix: str) -> str:
    _counter[0] += 1
    return f"{prefix}{_counter[0]}"


def check_format(hw, url, tmp_path, fmt, records):
    table = _table(f"fid_{fmt}_")
    path = export(records, fmt, tmp_path / f"{table}.{fmt}", KINDS)
    s = load(hw, url, path, table)
    found = problems(url, table, fmt, records)
    assert not found, _report(found)
    assert (s["inserted"], s["rejected"]) == (len(records), 0)


def check_one_table(hw, url, tmp_path, order, records):
    """The four exports into one table, keyed by the integer ``id`` (the default) and, in a
    second table, by the string ``code``: one row per key whatever the order."""
    for key in ["id", "code"]:
        table = _table(f"fid_all_{key}_")
        for n, fmt in enumerate(order):
            # (a later export whose one record a column rejects is a run of invalid records only)
            s = load(hw, url, export(records, fmt, tmp_path / f"{table}.{fmt}", KINDS), table, "--key", key,
                     "--max-rejected", "100%")
            rows = query(url, f'SELECT count(*), count(DISTINCT "{key}") FROM "{table}"')[0] \
                if table_exists(url, table) else (0, 0)
            assert tuple(rows) == (len(records), len(records)), \
                f"--key {key}, after {order[:n + 1]}: {rows[0]} rows for {len(records)} keys"
            if n:
                assert s["inserted"] == 0, f"--key {key}: {fmt} after {order[:n]} inserted {s['inserted']}"


@pytest.mark.parametrize("fmt", FORMATS)
@FAST
@given(records=datasets())
@example(records=ISSUE_RECORDS)
@example(records=ISSUE_TEXT_RECORDS)
def test_every_value_is_stored_as_sent(hw, target_url, tmp_path, fmt, records):
    check_format(hw, target_url, tmp_path, fmt, records)


@settings(FAST, max_examples=6)  # eight loads an example
@given(records=datasets(), order=st.permutations(FORMATS))
@example(records=ISSUE_RECORDS, order=FORMATS)
@example(records=ISSUE_TEXT_RECORDS, order=["csv", "parquet", "jsonl", "json"])
def test_the_four_exports_of_the_same_records_load_into_the_same_keys(hw, target_url, tmp_path, records, order):
    check_one_table(hw, target_url, tmp_path, order, records)


def _many_examples(hw, url, tmp_path, records, order):
    for fmt in FORMATS:
        check_format(hw, url, tmp_path, fmt, records)
    check_one_table(hw, url, tmp_path, order, records)


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_target_url(request, tmp_path):
    """The SQL targets whose examples are cheap; DuckDB (~4 s an example: eight loads, each opening
    the file) and Delta (~10 s) have their own, smaller runs below."""
    return target_for(request.param, tmp_path, request)


@pytest.mark.slow
@SLOW
@given(records=datasets(max_size=20), order=st.permutations(FORMATS))
def test_every_value_is_stored_as_sent_many_examples(hw, sql_target_url, tmp_path, records, order):
    _many_examples(hw, sql_target_url, tmp_path, records, order)


@pytest.mark.slow
@settings(SLOW, max_examples=max(5, EXAMPLES // 4))
@given(records=datasets(max_size=20), order=st.permutations(FORMATS))
def test_every_value_is_stored_as_sent_many_examples_on_duckdb(hw, tmp_path, request, records, order):
    _many_examples(hw, target_for("duckdb", tmp_path, request), tmp_path, records, order)


@pytest.mark.slow
@settings(SLOW, max_examples=5)  # a Delta example is ~10 s (8 loads and their read-backs)
@given(records=datasets(max_size=20), order=st.permutations(FORMATS))
def test_every_value_is_stored_as_sent_many_examples_on_delta(hw, tmp_path, records, order):
    pytest.importorskip("deltalake")
    _many_examples(hw, f"delta://{tmp_path / 'lake'}", tmp_path, records, order)


def test_the_readback_holds_plain_values_today(hw, target_url, tmp_path):
    """The checks above against values no format can misread (ASCII words, small ints,
    fractions with a short repr, booleans, a plain nested object): if this fails, the
    readback is wrong, not the loader."""
    records = [{"id": i, "modified_at": f"2025-01-15T0{i}:00:00", "s1": f"word{i}", "s2": None, "s3": None,
                "nest": {"a": f"x{i}"}, "i": i * 10, "f": i + 0.25, "b": i % 2 == 0} for i in range(1, 4)]
    for fmt in ["json", "jsonl", "parquet"]:
        check_format(hw, target_url, tmp_path, fmt, records)
    # CSV: the same, without booleans (CSV has no boolean; today's loader reads true/false as one)
    check_format(hw, target_url, tmp_path, "csv", [{**r, "b": None} for r in records])


# --- the issue's cases ------------------------------------------------------------------------

def _ids(url, table, col="id"):
    return sorted((r[col] for r in fetch(url, table)[1]), key=repr)


def test_a_timestamp_like_string_key_is_one_row_from_every_format(hw, target_url, tmp_path):
    recs = [{"code": "2025-01-15 07:00:00", "modified_at": "2025-01-15T08:00:00", "name": "a"}]
    for n, fmt in enumerate(["jsonl", "csv", "json", "parquet"]):
        s = load(hw, target_url, export(recs, fmt, tmp_path / f"k.{fmt}"), "codes", "--key", "code")
        assert _ids(target_url, "codes", "code") == ["2025-01-15 07:00:00"], f"after {fmt}"
        assert (s["inserted"], s["unchanged"]) == ((1, 0) if n == 0 else (0, 1)), fmt


def test_csv_keys_007_and_7_are_two_rows(hw, target_url, tmp_path):
    path = tmp_path / "k.csv"
    path.write_text("id,modified_at,name\n007,2025-01-15T08:00:00,a\n7,2025-01-15T09:00:00,b\n")
    s = load(hw, target_url, path, "keys")
    assert s["inserted"] == 2
    assert _ids(target_url, "keys") == ["007", "7"]


def test_a_csv_zip_code_keeps_its_leading_zero(hw, target_url, tmp_path):
    path = tmp_path / "zips.csv"
    path.write_text("id,modified_at,zip\n1,2025-01-15T08:00:00,02134\n2,2025-01-15T09:00:00,90210\n")
    load(hw, target_url, path, "zips")
    assert {r["id"]: r["zip"] for r in fetch(target_url, "zips")[1]} == {1: "02134", 2: "90210"}


def test_a_csv_column_is_judged_on_the_whole_file_not_on_its_first_batch(hw, target_url, tmp_path):
    """A zip column whose first batch holds only ``12345``: a later ``02134`` in the same file
    still keeps its leading zero (and is not rejected): the verdict does not depend on
    ``--batch-size`` (65 536 by default, so a big file meets this with no option at all)."""
    path = tmp_path / "zips.csv"
    path.write_text("id,modified_at,zip\n1,2025-01-15T08:00:00,12345\n2,2025-01-15T09:00:00,02134\n")
    s = load(hw, target_url, path, "zips", "--batch-size", "1")
    assert (s["inserted"], s["rejected"]) == (2, 0)
    got = {r["id"]: r["zip"] for r in fetch(target_url, "zips")[1]}
    assert (str(got[1]), got[2]) == ("12345", "02134"), got


def _quarantine(hw, url, stream):
    r = hw("quarantine", "list", "--target", url, "--stream", stream, "--json")
    assert r.code == 0, r.err
    return r.json


def _record(q):
    return json.loads(q["record"]) if isinstance(q["record"], str) else q["record"]


@pytest.mark.parametrize("fmt", ["json", "jsonl", "parquet"])
def test_nan_and_infinity_are_rejected_in_the_first_batch_and_in_a_later_one(hw, target_url, tmp_path, fmt):
    """Run 1 in batches of one: the first batch holds only NaN (the column does not exist
    yet), later batches ±Infinity after a good value made the column. Run 2: NaN again,
    the column long there. Same verdict every time: invalid, naming the field."""
    def recs(*pairs):
        return [{"id": i, "modified_at": f"2025-01-15T{i:02d}:00:00", "v": v} for i, v in pairs]

    run1 = recs((1, math.nan), (2, 1.5), (3, math.inf), (4, -math.inf))
    s1 = load(hw, target_url, export(run1, fmt, tmp_path / f"r1.{fmt}"), "floats", "--batch-size", "1")
    s2 = load(hw, target_url, export(recs((5, math.nan), (6, 2.5)), fmt, tmp_path / f"r2.{fmt}"), "floats")
    assert (s1["inserted"], s1["rejected"]) == (1, 3)
    assert (s2["inserted"], s2["rejected"]) == (1, 1)
    assert {r["id"]: r["v"] for r in fetch(target_url, "floats")[1]} == {2: 1.5, 6: 2.5}
    q = sorted(_quarantine(hw, target_url, "floats"), key=lambda x: x["key"])
    assert [(json.loads(x["key"]), x["reason"]) for x in q] == [([1], "invalid"), ([3], "invalid"),
                                                                 ([4], "invalid"), ([5], "invalid")]
    assert all("v" in x["detail"] for x in q), [x["detail"] for x in q]
    kept = [_record(x)["v"] for x in q]
    assert math.isnan(kept[0]) and kept[1:3] == [math.inf, -math.inf] and math.isnan(kept[3]), kept


_INTEGER = re.compile(r"^(big|small|tiny|huge|u?)int(eger)?\d*$", re.I)


def test_a_column_null_in_the_first_load_takes_its_type_from_the_first_value(hw, target_url, tmp_path):
    def recs(*pairs):
        return [{"id": i, "modified_at": f"2025-01-15T{i:02d}:00:00", "n": v} for i, v in pairs]

    load(hw, target_url, export(recs((1, None), (2, None)), "jsonl", tmp_path / "a.jsonl"), "nulls")
    assert "n" not in column_types(target_url, "nulls"), "an all-null field created a column"
    load(hw, target_url, export(recs((3, 5), (4, 7)), "jsonl", tmp_path / "b.jsonl"), "nulls")
    declared = column_types(target_url, "nulls")["n"]
    assert _INTEGER.match(declared), declared
    assert query(target_url, 'SELECT sum(n) FROM "nulls"')[0][0] == 12


def test_a_parquet_decimal_stays_exact(hw, target_url, target_kind, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    values = [Decimal("1.50"), Decimal("-0.05"), Decimal("12345678.90")]
    pq.write_table(pa.table({"id": [1, 2, 3], "modified_at": ["2025-01-15T08:00:00"] * 3,
                             "amount": pa.array(values, pa.decimal128(10, 2))}), tmp_path / "d.parquet")
    load(hw, target_url, tmp_path / "d.parquet", "money")
    declared = column_types(target_url, "money")["amount"]
    got = {r["id"]: r["amount"] for r in fetch(target_url, "money")[1]}
    if target_kind == "sqlite":
        assert got == {1: "1.50", 2: "-0.05", 3: "12345678.90"}, (declared, got)
    else:
        assert declared.lower().startswith(("numeric", "decimal")), declared
        assert {k: (type(v), str(v)) for k, v in got.items()} == \
            {1: (Decimal, "1.50"), 2: (Decimal, "-0.05"), 3: (Decimal, "12345678.90")}, declared


def test_a_parquet_nanosecond_timestamp_field_is_stored_as_iso_text(hw, target_url, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    ns = pa.array([1736924400123456789], pa.timestamp("ns"))
    pq.write_table(pa.table({"id": [1], "modified_at": ["2025-01-15T08:00:00"], "seen": ns}), tmp_path / "t.parquet")
    load(hw, target_url, tmp_path / "t.parquet", "stamps")
    assert [r["seen"] for r in fetch(target_url, "stamps")[1]] == ["2025-01-15T07:00:00.123456789"]


def test_a_rejected_value_stays_in_the_quarantine_and_replay_rejects_it_again(hw, target_url, tmp_path):
    first = [{"id": 1, "modified_at": "2025-01-15T08:00:00", "x": 5}]
    bad = [{"id": 2, "modified_at": "2025-01-15T09:00:00", "x": "abc"},   # with a good one: one batch
           {"id": 3, "modified_at": "2025-01-15T09:00:00", "x": 6}]
    load(hw, target_url, export(first, "jsonl", tmp_path / "a.jsonl"), "typed")
    s = load(hw, target_url, export(bad, "jsonl", tmp_path / "b.jsonl"), "typed")
    assert (s["inserted"], s["rejected"]) == (1, 1)
    q = _quarantine(hw, target_url, "typed")
    assert [(x["reason"], _record(x)["x"]) for x in q] == [("invalid", "abc")]

    r = hw("quarantine", "replay", "--target", target_url, "--stream", "typed", "--now", NOW)
    assert r.code == 0, r.err
    assert (r.json["loaded"], r.json["rejected"]) == (0, 1)
    assert {row["id"]: row["x"] for row in fetch(target_url, "typed")[1]} == {1: 5, 3: 6}
    q = _quarantine(hw, target_url, "typed")
    assert [(x["reason"], _record(x)["x"]) for x in q] == [("invalid", "abc")]


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_the_quarantine_keeps_the_whole_record_as_it_arrived(hw, target_url, tmp_path, fmt):
    """Not only the wrong value: every field of a quarantined record, nested ones included,
    is what the source carried (a field absent or null is the same thing)."""
    good = {"id": 1, "modified_at": "2025-01-15T08:00:00", "x": 5, "s": "a", "n": {"a": "b", "c": ["d"]},
            "l": ["e"], "f": 0.5, "t": False}
    bad = {"id": 2, "modified_at": "2025-01-15T09:00:00", "x": "abc", "s": "2025-01-15T07:00:00Z",
           "n": {"a": "2025-01-15 07:00:00", "c": ["007", "1.50"]}, "l": ["2025-01-15"], "f": 1.25, "t": True}
    load(hw, target_url, export([good], fmt, tmp_path / f"a.{fmt}"), "kept")
    load(hw, target_url, export([bad, {**good, "id": 3}], fmt, tmp_path / f"b.{fmt}"), "kept")
    q = _quarantine(hw, target_url, "kept")
    assert len(q) == 1, q
    kept = {k: v for k, v in _record(q[0]).items() if v is not None}
    changed = {k: (bad.get(k), kept.get(k)) for k in set(bad) | set(kept) if not strict_eq(bad.get(k), kept.get(k))}
    assert not changed, f"field: (sent, quarantined): {changed}"

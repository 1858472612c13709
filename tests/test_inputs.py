"""Every input shape: JSON array, JSON Lines, CSV, Parquet, stdin, globs and folders."""

from __future__ import annotations

import json
import sqlite3

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import SAMPLE, rec, write_jsonl

EXPECTED = {1: "user_signup", 2: "page_view", 3: "purchase", 4: "logout", 5: "password_reset"}
SAMPLE_RECORDS = json.loads(SAMPLE.read_text())


def names(db, table="events"):
    con = sqlite3.connect(db)
    try:
        return dict(con.execute(f'SELECT id, name FROM "{table}"'))
    finally:
        con.close()


def load(hw, *args, stdin=None):
    r = hw("load", "--table", "events", "--details", *args, stdin=stdin)
    assert r.code == 0, r.err
    return r.json


def test_json_array(hw, tmp_path):
    f = tmp_path / "a.json"
    f.write_text(json.dumps(SAMPLE_RECORDS))
    load(hw, "--input", f, "--db", tmp_path / "t.db")
    assert names(tmp_path / "t.db") == EXPECTED


def test_json_lines_with_bom_and_blank_lines(hw, tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_bytes(b"\xef\xbb\xbf" + b"\n".join(json.dumps(r).encode() + b"\n" for r in SAMPLE_RECORDS))
    s = load(hw, "--input", f, "--db", tmp_path / "t.db")
    assert s["loaded"] == 5 and names(tmp_path / "t.db") == EXPECTED


def test_csv(hw, tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("id,name,modified_at,amount\n" + "".join(
        f"{r['id']},{r['name']},{r['modified_at']},{r['id'] * 1.5}\n" for r in SAMPLE_RECORDS))
    s = load(hw, "--input", f, "--db", tmp_path / "t.db")
    assert s["loaded"] == 5 and names(tmp_path / "t.db") == EXPECTED
    con = sqlite3.connect(tmp_path / "t.db")
    assert con.execute("SELECT amount, typeof(amount) FROM events WHERE id = 2").fetchone() == (3.0, "real")


def test_parquet_with_native_timestamps(hw, tmp_path):
    import datetime as dt
    f = tmp_path / "a.parquet"
    table = pa.table({
        "id": [r["id"] for r in SAMPLE_RECORDS],
        "name": [r["name"] for r in SAMPLE_RECORDS],
        "modified_at": pa.array([dt.datetime.fromisoformat(r["modified_at"]) for r in SAMPLE_RECORDS],
                                pa.timestamp("us")),
    })
    pq.write_table(table, f)
    s = load(hw, "--input", f, "--db", tmp_path / "t.db")
    assert s["new_watermark"] == "2025-01-15T11:15:00" and names(tmp_path / "t.db") == EXPECTED


def test_stdin_with_format(hw, tmp_path):
    data = "".join(json.dumps(r) + "\n" for r in SAMPLE_RECORDS).encode()
    s = load(hw, "--input", "-", "--format", "jsonl", "--db", tmp_path / "t.db", stdin=data)
    assert s["loaded"] == 5


def test_stdin_sniffs_a_json_array(hw, tmp_path):
    s = load(hw, "--input", "-", "--db", tmp_path / "t.db", stdin=SAMPLE.read_bytes())
    assert s["loaded"] == 5


def test_stdin_with_window_is_read_more_than_once(hw, tmp_path):
    s = load(hw, "--input", "-", "--db", tmp_path / "t.db", "--window", "1h", stdin=SAMPLE.read_bytes())
    assert s["loaded"] == 5 and len(s["windows"]) == 4


def test_glob_and_folder_read_many_files_as_one_source(hw, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    write_jsonl(d / "part-1.jsonl", SAMPLE_RECORDS[:2])
    write_jsonl(d / "part-2.jsonl", SAMPLE_RECORDS[2:])
    (d / "part-3.csv").write_text("id,name,modified_at\n6,extra,2025-01-15T12:00:00\n")
    s = load(hw, "--input", str(d / "part-*.jsonl"), "--db", tmp_path / "g.db")
    assert s["loaded"] == 5 and s["table"] == "events"
    s = load(hw, "--input", d, "--db", tmp_path / "f.db")
    assert s["loaded"] == 6 and s["new_watermark"] == "2025-01-15T12:00:00"


def test_empty_glob_is_an_error(hw, tmp_path):
    r = hw("load", "--input", str(tmp_path / "*.jsonl"))
    assert r.code == 1 and r.err_lines == [f"error: {tmp_path / '*.jsonl'}: no file matches this pattern"]


def test_txt_extension_is_sniffed_as_json_array(hw, tmp_path):
    s = load(hw, "--input", SAMPLE, "--db", tmp_path / "t.db")
    assert s["loaded"] == 5


def test_default_table_is_the_file_stem(hw, tmp_path):
    r = hw("load", "--input", SAMPLE, "--details")
    assert r.json["table"] == "sample_input" and r.json["stream"] == "sample_input"


def test_a_column_whose_type_changes_between_blocks_falls_back_to_the_exact_reader(hw, tmp_path):
    recs = [rec(i, "10:00", code=i) for i in range(1, 5)] + [rec(5, "10:00", code="A-5")]
    s = load(hw, "--input", write_jsonl(tmp_path / "a.jsonl", recs), "--db", tmp_path / "t.db")
    # the column is an integer column (first values); the string is rejected, not coerced
    assert (s["inserted"], s["rejected"]) == (4, 1)


def test_huge_integers_are_rejected_not_wrapped(hw, tmp_path):
    recs = [rec(1, "10:00", big=1), rec(2, "10:00", big=2**70)]
    s = load(hw, "--input", write_jsonl(tmp_path / "a.jsonl", recs), "--db", tmp_path / "t.db")
    assert (s["inserted"], s["rejected"]) == (1, 1)


@pytest.mark.parametrize("value", ["2025-01-15T10:00:00.000009", "2025-01-15T10:00:00.00001"])
def test_microseconds_are_kept(hw, tmp_path, value):
    s = load(hw, "--input", write_jsonl(tmp_path / "a.jsonl", [rec(1, value)]), "--db", tmp_path / "t.db")
    assert s["new_watermark"] == ("2025-01-15T10:00:00.000009" if value.endswith("9")
                                  else "2025-01-15T10:00:00.000010")


def test_microsecond_ordering_is_numeric_not_textual(hw, tmp_path):
    db = tmp_path / "t.db"
    load(hw, "--input", write_jsonl(tmp_path / "a.jsonl", [rec(1, "2025-01-15T10:00:00.9")]), "--db", db)
    s = load(hw, "--input", write_jsonl(tmp_path / "b.jsonl", [rec(1, "2025-01-15T10:00:00.10", name="x")]),
             "--db", db, "--lookback", "1s")
    assert s["unchanged"] == 1  # .10 is earlier than .9

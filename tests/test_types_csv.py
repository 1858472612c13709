"""Issue 22 item 6: CSV dialects. ``--csv-delimiter``, ``--csv-quote`` and ``--encoding`` (and the
same keys in hiwater.toml); by default the delimiter is sniffed among ``, ; tab |`` and the text
must be UTF-8 (else one line naming the file and the byte, with a hint to pass ``--encoding``).
The summary's details say what each file was read with. Values stay as sent."""

from __future__ import annotations

import bz2
import gzip
import sqlite3

import pytest

import hiwater
from conftest import NOW

T = "2025-01-15T10:00:00"


def table(db, name="events") -> list:
    con = sqlite3.connect(db)
    try:
        return con.execute(f'SELECT id, name, zip FROM "{name}" ORDER BY id').fetchall()
    finally:
        con.close()


def csv_text(sep: str, quote: str = '"') -> str:
    q = quote
    return (f"id{sep}modified_at{sep}name{sep}zip\n"
            f"1{sep}{T}{sep}{q}Smith{sep} John{q}{sep}02134\n"
            f"2{sep}{T}{sep}{q}two\nlines{q}{sep}10001\n"
            f"3{sep}{T}{sep}plain{sep}00501\n")


EXPECTED = [(1, "Smith{sep} John", "02134"), (2, "two\nlines", "10001"), (3, "plain", "00501")]


def expected(sep: str) -> list:
    return [(i, n.format(sep=sep), z) for i, n, z in EXPECTED]


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"], ids=["comma", "semicolon", "tab", "pipe"])
def test_the_delimiter_is_sniffed_and_said(hw, tmp_path, sep):
    db = tmp_path / "t.db"
    path = tmp_path / "events.csv"
    path.write_text(csv_text(sep))
    r = hw("load", "-i", path, "--db", db, "--now", NOW, "--details")
    assert r.code == 0, r.err
    assert table(db) == expected(sep)
    assert r.json["csv"] == [{"delimiter": sep, "quote": '"', "encoding": "utf-8", "sniffed": ["delimiter"],
                              "files": 1}]


@pytest.mark.parametrize("flag", ["\t", "\\t", "tab"])
def test_a_given_delimiter_and_quote(hw, tmp_path, flag):
    db = tmp_path / "t.db"
    path = tmp_path / "events.txt"
    path.write_text(csv_text("\t", quote="'"))
    r = hw("load", "-i", path, "--db", db, "--format", "csv", "--csv-delimiter", flag, "--csv-quote", "'",
           "--now", NOW, "--details")
    assert r.code == 0, r.err
    assert table(db) == expected("\t")
    assert r.json["csv"] == [{"delimiter": "\t", "quote": "'", "encoding": "utf-8", "sniffed": [], "files": 1}]


def test_latin1_needs_encoding_and_loads_with_it(hw, tmp_path):
    db = tmp_path / "t.db"
    path = tmp_path / "events.csv"
    path.write_bytes(f"id;modified_at;name;zip\n1;{T};Ren\xe9e;02134\n".encode("latin-1"))
    r = hw("load", "-i", path, "--db", db, "--now", NOW)
    assert r.code == 1
    assert r.err_lines[0].startswith(f"error: {path}: not UTF-8 text at byte 49 (pass --encoding")
    assert "--encoding" in r.err
    r = hw("load", "-i", path, "--db", db, "--encoding", "latin-1", "--now", NOW, "--details")
    assert r.code == 0, r.err
    assert table(db) == [(1, "Renée", "02134")]
    assert r.json["csv"][0]["encoding"] == "latin-1"


def test_a_wrong_encoding_names_the_file_and_byte(hw, tmp_path):
    path = tmp_path / "events.csv"
    path.write_bytes(f"id,modified_at,name,zip\n1,{T},Ren\xe9e,02134\n".encode("latin-1"))
    r = hw("load", "-i", path, "--db", tmp_path / "t.db", "--encoding", "ascii", "--now", NOW)
    assert r.code == 1
    assert len(r.err_lines) <= 2 and r.err_lines[0].startswith(f"error: {path}: not ascii text at byte 49")
    r = hw("load", "-i", path, "--db", tmp_path / "t.db", "--encoding", "no-such-codec")
    assert r.code == 2 and "--encoding" in r.err


def test_cp1252_and_utf16_and_a_utf8_bom(hw, tmp_path):
    db = tmp_path / "t.db"
    (tmp_path / "a.csv").write_bytes(f"id;modified_at;name;zip\n1;{T};\u20ac5;02134\n".encode("cp1252"))
    assert hw("load", "-i", tmp_path / "a.csv", "--db", db, "--encoding", "cp1252", "--table", "events",
              "--now", NOW).code == 0
    (tmp_path / "b.csv").write_text(f"id\tmodified_at\tname\tzip\n2\t{T}\tz\xfc\t007\n", encoding="utf-16")
    assert hw("load", "-i", tmp_path / "b.csv", "--db", db, "--encoding", "utf-16", "--table", "events",
              "--now", NOW).code == 0
    (tmp_path / "c.csv").write_bytes(f"\ufeffid,modified_at,name,zip\n3,{T},\xe9,0\n".encode())
    r = hw("load", "-i", tmp_path / "c.csv", "--db", db, "--table", "events", "--now", NOW)
    assert r.code == 0, r.err
    assert table(db) == [(1, "\u20ac5", "02134"), (2, "z\xfc", "007"), (3, "\xe9", "0")]


def test_a_folder_of_compressed_files_and_the_manifest(hw, tmp_path):
    db = tmp_path / "t.db"
    land = tmp_path / "land"
    land.mkdir()
    (land / "a.csv.gz").write_bytes(gzip.compress(f"id;modified_at;name;zip\n1;{T};\xe9;02134\n".encode("latin-1")))
    (land / "b.csv.bz2").write_bytes(bz2.compress(f"id;modified_at;name;zip\n2;{T};b;007\n".encode("latin-1")))
    r = hw("load", "-i", land, "--db", db, "--table", "events", "--encoding", "latin-1", "--now", NOW, "--details")
    assert r.code == 0, r.err
    assert table(db) == [(1, "\xe9", "02134"), (2, "b", "007")]
    assert r.json["csv"] == [{"delimiter": ";", "quote": '"', "encoding": "latin-1", "sniffed": ["delimiter"],
                              "files": 2}]
    r = hw("load", "-i", land, "--db", db, "--table", "events", "--encoding", "latin-1", "--now", NOW, "--details")
    assert r.json["files"]["skipped"] == 2 and "csv" not in r.json


def test_the_project_file_keys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "e.csv").write_bytes(f"id|modified_at|name|zip\n1|{T}|'a|b'|02134\n".encode("latin-1"))
    (tmp_path / "hiwater.toml").write_text(
        '[defaults]\ndb = "t.db"\n\n[streams.events]\ninput = "e.csv"\ncsv-delimiter = "|"\n'
        'csv-quote = "\'"\nencoding = "latin-1"\n')
    [res] = hiwater.run().streams
    assert res.ok, res.error
    assert table(tmp_path / "t.db") == [(1, "a|b", "02134")]


def test_bad_dialect_options_are_usage_errors(hw, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(csv_text(","))
    for args in (("--csv-delimiter", ";;"), ("--csv-delimiter", "\n"), ("--csv-quote", ",", "--csv-delimiter", ","),
                 ("--csv-quote", "")):
        r = hw("load", "-i", path, "--db", tmp_path / "t.db", *args)
        assert r.code == 2, (args, r.err)

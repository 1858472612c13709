"""The project file as a user meets it (issue 21, items 7, 9, 12 and 14): where its paths and URLs
point, two streams that would share one state, a value of the wrong type, and an unset ``${VAR}``
in a URL on the command line or in ``HIWATER_*_URL``. Each test drives the ``hiwater`` command."""

from __future__ import annotations

from pathlib import Path

import pytest

import hiwater

from conftest import rec, rows, watermark, write_jsonl


def project(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / "hiwater.toml"
    p.write_text(text)
    return p


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working directory that is not the project's folder (as under cron)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


# --- item 7: every path and URL in the file is the file's -------------------------------------

@pytest.mark.parametrize("url", ["s3://bucket/prefix/", "gs://bucket/landing/*.jsonl", "az://container/x/",
                                 "abfs://container/x/", "https://example.com/data.jsonl",
                                 "file:///srv/landing/x.jsonl"])
def test_an_input_url_is_kept_as_written(tmp_path, elsewhere, hw, url):
    p = project(tmp_path / "proj", f'[streams.a]\ninput = "{url}"\ndb = "t.db"\n')
    r = hw("validate", "--project", p, "--json")
    assert r.code == 0, r.err
    assert r.json[0]["input"] == url


def test_a_relative_delta_target_lands_beside_the_project_file(tmp_path, elsewhere, hw):
    folder = tmp_path / "proj"
    folder.mkdir()
    write_jsonl(folder / "e.jsonl", [rec(1, "08:00"), rec(2, "09:00")])
    p = project(folder, '[streams.a]\ninput = "e.jsonl"\ntarget = "delta://lake"\n'
                        '[streams.b]\ninput = "e.jsonl"\ntarget = "delta:lake2"\n')
    r = hw("run", "--project", p, "--json")
    assert r.code == 0, r.err
    assert [s["loaded"] for s in r.json["streams"]] == [2, 2]
    assert (folder / "lake").is_dir() and (folder / "lake2").is_dir()
    assert list(elsewhere.iterdir()) == []  # nothing in the working directory
    v = hw("validate", "--project", p, "--json")
    assert [s["target"] for s in v.json] == [f"delta://{folder}/lake", f"delta://{folder}/lake2"]


def test_every_local_path_and_url_resolves_against_the_file(tmp_path, elsewhere, hw):
    folder = tmp_path / "proj"
    p = project(folder, '[streams.a]\ninput = "landing/*.jsonl"\ndb = "wh/t.db"\n'
                        '[streams.b]\ninput = "landing"\ntarget = "duckdb:///wh/t.duckdb"\n'
                        '[streams.c]\nsource = "sqlite:src.db"\nsource-table = "t"\ntarget = "sqlite:///wh/c.db"\n'
                        '[streams.d]\ninput = "/abs/x.jsonl"\ntarget = "duckdb:////abs/t.duckdb?threads=1"\n')
    r = hw("validate", "--project", p, "--json")
    assert r.code == 0, r.err
    a, b, c, d = r.json
    assert (a["input"], a["db"]) == (f"{folder}/landing/*.jsonl", f"{folder}/wh/t.db")
    assert (b["input"], b["target"]) == (f"{folder}/landing", f"duckdb:///{folder}/wh/t.duckdb")
    assert (c["source_url"], c["target"]) == (f"sqlite:///{folder}/src.db", f"sqlite:///{folder}/wh/c.db")
    assert (d["input"], d["target"]) == ("/abs/x.jsonl", "duckdb:////abs/t.duckdb?threads=1")


def test_a_project_run_from_elsewhere_loads_the_files_beside_it(tmp_path, elsewhere, hw):
    folder = tmp_path / "proj"
    (folder / "landing" / "day=1").mkdir(parents=True)
    write_jsonl(folder / "landing" / "day=1" / "a.jsonl", [rec(1, "08:00")])
    p = project(folder, '[streams.events]\ninput = "landing/day=1/*.jsonl"\ntarget = "sqlite:///wh.db"\n')
    r = hw("run", "--project", p)
    assert r.code == 0, r.err
    assert set(rows(folder / "wh.db")) == {1} and list(elsewhere.iterdir()) == []


# --- item 9: two streams, one state -------------------------------------------------------------

def test_two_streams_sharing_one_state_name_are_refused(tmp_path, elsewhere, hw):
    folder = tmp_path / "proj"
    folder.mkdir()
    write_jsonl(folder / "e.jsonl", [rec(1, "08:00")])
    p = project(folder, '[defaults]\ndb = "t.db"\n'
                        '[streams.orders]\ninput = "e.jsonl"\n'
                        '[streams.orders_eu]\ninput = "e.jsonl"\nstream = "orders"\ntable = "orders_eu"\n')
    for command in ("validate", "run"):
        r = hw(command, "--project", p)
        assert r.code == 2, (command, r.err)
        assert len(r.err_lines) == 1 and r.err_lines[0].startswith("error: ")
        assert str(p) in r.err and "orders" in r.err and "orders_eu" in r.err
    assert not (folder / "t.db").exists()


def test_one_state_name_in_two_targets_is_fine(tmp_path, elsewhere, hw):
    folder = tmp_path / "proj"
    folder.mkdir()
    write_jsonl(folder / "e.jsonl", [rec(1, "08:00")])
    p = project(folder, '[streams.orders]\ninput = "e.jsonl"\ndb = "a.db"\n'
                        '[streams.orders_copy]\ninput = "e.jsonl"\nstream = "orders"\ndb = "b.db"\n')
    r = hw("run", "--project", p)
    assert r.code == 0, r.err
    assert watermark(folder / "b.db", "orders") is not None


# --- item 14: every key's type ------------------------------------------------------------------

@pytest.mark.parametrize("line,key", [
    ("key = 5", "key"), ("key = [1]", "key"), ("batch-size = \"1000\"", "batch-size"),
    ("batch_size = 1.5", "batch_size"), ("batch-size = true", "batch-size"), ("cursor = [\"a\"]", "cursor"),
    ("assume-tz = 5", "assume-tz"), ("delete-field = 5", "delete-field"), ("executor = 5", "executor"),
    ("since = 1.5", "since"), ("until = true", "until"), ("max-rejected = 2.5", "max-rejected"),
    ("lookback = [\"1h\"]", "lookback"), ("buckets = \"2\"", "buckets"), ("format = 5", "format"),
    ("table = { name = \"x\" }", "table"), ("warn-after = true", "warn-after"),
])
def test_a_value_of_the_wrong_type_names_the_key_and_the_file(tmp_path, hw, line, key):
    p = project(tmp_path, f'[streams.a]\ninput = "x.jsonl"\ndb = "t.db"\n{line}\n')
    r = hw("validate", "--project", p)
    assert r.code == 2, r.err
    assert len(r.err_lines) == 1 and r.err_lines[0].startswith("error: ")
    assert "internal error" not in r.err and f"{key} must be" in r.err and str(p) in r.err
    with pytest.raises(hiwater.ConfigError, match=f"{key} must be"):
        hiwater.validate(project=p)


def test_a_wrong_type_in_defaults_is_named_there(tmp_path, hw):
    p = project(tmp_path, '[defaults]\nbatch-size = "1000"\n[streams.a]\ninput = "x.jsonl"\ndb = "t.db"\n')
    r = hw("run", "--project", p)
    assert r.code == 2 and "[defaults]" in r.err and "batch-size must be a whole number, not '1000'" in r.err


@pytest.mark.parametrize("line", ["key = [\"a\", \"b\"]", "since = 2025-01-15T08:00:00", "since = 2025-01-15",
                                  "since = 5", "max-rejected = 5", "lookback = 15", "lock-timeout = 0",
                                  "batch-size = 1000"])
def test_values_of_the_right_types_pass(tmp_path, hw, line):
    p = project(tmp_path, f'[streams.a]\ninput = "x.jsonl"\ndb = "t.db"\ncursor = "ts"\n{line}\n')
    r = hw("validate", "--project", p)
    assert r.code == 0, r.err


# --- item 12: ${VAR} in a URL, wherever it is given --------------------------------------------

@pytest.mark.parametrize("how", ["--target", "HIWATER_TARGET_URL"])
def test_an_unset_variable_in_a_target_url_is_refused(tmp_path, elsewhere, hw, monkeypatch, how):
    monkeypatch.delenv("HW_TEST_UNSET_DIR", raising=False)
    write_jsonl(tmp_path / "e.jsonl", [rec(1, "08:00")])
    url = "sqlite:///${HW_TEST_UNSET_DIR}t.db"
    args = ["load", "--input", tmp_path / "e.jsonl", "--table", "events"]
    if how == "--target":
        args += ["--target", url]
    else:
        monkeypatch.setenv("HIWATER_TARGET_URL", url)
    r = hw(*args)
    assert r.code == 2, r.err
    assert "the environment variable HW_TEST_UNSET_DIR is not set" in r.err
    assert list(elsewhere.iterdir()) == []  # no t.db made in the working directory


@pytest.mark.parametrize("how", ["--source", "HIWATER_SOURCE_URL"])
def test_an_unset_variable_in_a_source_url_is_refused(tmp_path, elsewhere, hw, monkeypatch, how):
    monkeypatch.delenv("HW_TEST_UNSET_PW", raising=False)
    url = "postgresql://postgres:${HW_TEST_UNSET_PW}@127.0.0.1:5432/test"
    args = ["load", "--source-table", "t", "--db", tmp_path / "t.db", "--table", "t"]
    if how == "--source":
        args += ["--source", url]
    else:
        monkeypatch.setenv("HIWATER_SOURCE_URL", url)
    r = hw(*args)
    assert r.code == 2, r.err
    assert "the environment variable HW_TEST_UNSET_PW is not set" in r.err
    assert "***" in r.err or "HW_TEST_UNSET_PW" in r.err


def test_a_set_variable_in_a_command_line_url_is_expanded(tmp_path, elsewhere, hw, monkeypatch):
    monkeypatch.setenv("HW_TEST_DIR", str(tmp_path))
    write_jsonl(tmp_path / "e.jsonl", [rec(1, "08:00")])
    r = hw("load", "--input", tmp_path / "e.jsonl", "--table", "events", "--target", "sqlite:///${HW_TEST_DIR}/t.db")
    assert r.code == 0, r.err
    assert set(rows(tmp_path / "t.db")) == {1}


def test_the_command_line_and_the_file_say_the_same(tmp_path, hw, monkeypatch):
    monkeypatch.delenv("HW_TEST_UNSET_PW", raising=False)
    url = "postgresql://u:${HW_TEST_UNSET_PW}@h/db"
    p = project(tmp_path / "proj", f'[streams.a]\ninput = "x.jsonl"\ntarget = "{url}"\n')
    from_file = hw("validate", "--project", p)
    from_flag = hw("state", "show", "--target", url)
    assert from_file.code == from_flag.code == 2
    said = "the environment variable HW_TEST_UNSET_PW is not set"
    assert said in from_file.err and said in from_flag.err


def test_every_key_has_a_type():
    from hiwater.project import KEYS, TYPES
    assert set(TYPES) == set(KEYS)

"""The docs stay true: the CLI reference matches --help, every command is documented,
and the README's commands are the ones CI runs."""

from __future__ import annotations

import importlib.util
import re

from conftest import ROOT


def _gen():
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts" / "gen_cli_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cli_reference_is_generated_from_help_and_current():
    mod = _gen()
    assert (ROOT / "docs" / "cli.md").read_text() == mod.render(), \
        "docs/cli.md is out of date: run python scripts/gen_cli_docs.py"


def test_every_command_has_a_section_in_the_reference():
    mod = _gen()
    text = (ROOT / "docs" / "cli.md").read_text()
    for path, _, _ in mod._walk(mod.cli, ["hiwater"]):
        assert f"## `{' '.join(path)}`" in text


def test_readme_gives_the_two_commands_and_ci_runs_the_same_test_command():
    readme = (ROOT / "README.md").read_text()
    head = "\n".join(readme.splitlines()[:30])
    assert "hiwater load --input data/sample_input.txt --output data/output_summary.json" in head
    test_cmd = re.search(r"pip install -e '\.\[test\]' && (pytest -q[^\n`]*)", head)
    assert test_cmd, "the README's first lines must give the test command"
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd.group(1) in ci


def _gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_type_tables_and_readme_figures_are_generated_and_current():
    """Each target's type table comes from its type maps, the README's speed figures from the
    bench/results run docs/benchmarks.md shows (issue 22 item 7)."""
    assert _gen_docs().outdated() == [], "run python scripts/gen_docs.py"


def test_the_generated_parts_say_what_the_code_and_results_say():
    mod = _gen_docs()
    pg = (ROOT / "docs" / "databases" / "postgresql.md").read_text()
    assert re.search(r"\| decimal\(P,S\)[^\n]*\| `numeric`", pg)
    path, results = mod.bench_results()
    first, _ = mod._median(results, "hiwater", "sqlite", "first")
    readme = (ROOT / "README.md").read_text()
    assert f"loads into SQLite in {first:.2f} s" in readme and path in readme


def test_no_doc_says_decimals_are_stored_as_real_numbers():
    for doc in (ROOT / "docs" / "databases").glob("*.md"):
        text = re.sub(r"\s+", " ", doc.read_text())
        assert not re.search(r"(numeric|DECIMAL|decimal)[^.;|]{0,60}(stored as a real|double precision)", text), doc

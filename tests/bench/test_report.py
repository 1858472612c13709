"""bench/report.py regenerates docs/benchmarks.md without losing the sections it does not own.

The page's generated part ends at its first ``<!-- NAME:begin -->`` marker; from there on
(bench/flights.py's section, the notes written by hand after it, bench/verify.py's section) a
regeneration must keep the page byte for byte. Run on a copy of the real page.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "benchmarks.md"


def _results() -> Path:
    """The run the page shows (its "Raw results" line)."""
    for line in PAGE.read_text().splitlines():
        if line.startswith("- Raw results: `"):
            return ROOT / line.split("`")[1]
    raise AssertionError("docs/benchmarks.md names no raw results file")


def test_regenerating_the_page_keeps_every_section_it_does_not_own(tmp_path):
    page = PAGE.read_text()
    start = page.index("<!-- flights:begin -->")
    assert "<!-- verify:begin -->" in page[start:] and page.rstrip().endswith("<!-- verify:end -->")
    copy = tmp_path / "benchmarks.md"
    copy.write_text(page[:start].replace("## Caveats", "## Caveats (old text)") + page[start:])
    subprocess.run([sys.executable, str(ROOT / "bench" / "report.py"), str(_results()), "--doc", str(copy),
                    "--chart", str(tmp_path / "chart.png")], check=True, timeout=120, cwd=ROOT)
    new = copy.read_text()
    # the generated part was rewritten ...
    assert "## Caveats (old text)" not in new and new.startswith("# Benchmarks\n")
    head, kept = new[:new.index("<!-- flights:begin -->")], new[new.index("<!-- flights:begin -->"):]
    assert "## Caveats\n" in head and head.endswith("\n\n")
    # ... and everything from the first marker on is the page's own, unchanged
    assert kept == page[start:]
    # regenerating again changes nothing
    subprocess.run([sys.executable, str(ROOT / "bench" / "report.py"), str(_results()), "--doc", str(copy),
                    "--chart", str(tmp_path / "chart.png")], check=True, timeout=120, cwd=ROOT)
    assert copy.read_text() == new


def test_a_new_page_is_the_generated_part_alone(tmp_path):
    copy = tmp_path / "new.md"
    subprocess.run([sys.executable, str(ROOT / "bench" / "report.py"), str(_results()), "--doc", str(copy),
                    "--chart", str(tmp_path / "chart.png")], check=True, timeout=120, cwd=ROOT)
    text = copy.read_text()
    assert text.startswith("# Benchmarks\n") and "<!-- verify:begin -->" not in text

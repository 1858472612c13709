"""``hiwater ui`` in a real browser: Debian's headless ``chromium``, driven by Playwright's Python
client (the system browser by ``executable_path``; ``playwright install`` is never needed).

The story of the issue: a project with a stream on SQLite and one on PostgreSQL; the streams page
shows the numbers ``status --json`` gives; a stream's page charts one point per run; a quarantined
record is replayed from the page (``--allow-actions`` and the token) and leaves the quarantine
for the table. With ``HIWATER_UI_SCREENSHOTS=1`` it saves the three pages as docs/img/ui-*.png.

Skipped (with the reason) without chromium or the playwright package; under ``CI=true`` that is
a failure instead.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

import hiwater
from conftest import NOW, ROOT, rec, write_jsonl
from test_ui import TOKEN, serving

CHROMIUM = os.environ.get("HIWATER_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def _need(what: str, ok: bool) -> None:
    if ok:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} (CI=true: the browser test must run)")
    pytest.skip(what)


@pytest.fixture
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    _need("the playwright package is not installed (pip install playwright; no `playwright install` needed)",
          sync_playwright is not None)
    _need(f"no chromium at {CHROMIUM} (apt-get install chromium)",
          os.path.exists(CHROMIUM) or shutil.which(CHROMIUM) is not None)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def pg_url():
    pytest.importorskip("psycopg")
    from db.dbutil import PG_URL, pg_connect, server_or_skip
    server_or_skip("PostgreSQL", PG_URL, pg_connect).close()
    schema = "hwt_ui_" + uuid.uuid4().hex[:8]
    yield f"{PG_URL}?schema={schema}"
    with pg_connect() as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _project(tmp_path: Path, pg_url: str) -> Path:
    """``orders`` on SQLite (three runs; the first quarantines a record without a cursor) and
    ``events`` on PostgreSQL (two runs; the first quarantines a record from September 2025 as
    "in the future" of its clock, 1 June 2025; replayed today, it loads)."""
    db = tmp_path / "orders.db"
    for i in range(3):
        recs = [rec(100 * i + j, f"1{i}:{j:02d}") for j in range(5 + 3 * i)]
        if i == 0:
            recs.append({"id": 999, "name": "no cursor"})
        src = write_jsonl(tmp_path / f"orders-{i}.jsonl", recs)
        hiwater.load(str(src), db=str(db), stream="orders", table="orders", now=NOW)
    for i in range(2):
        recs = [rec(100 * i + j, f"0{i + 8}:{j:02d}") for j in range(4)]
        if i == 0:
            recs.append(rec(901, "2025-09-01T00:00:00"))
        src = write_jsonl(tmp_path / f"events-{i}.jsonl", recs)
        hiwater.load(str(src), target=pg_url, stream="events", table="events", now=NOW)
    project = tmp_path / "hiwater.toml"
    project.write_text(f'[streams.orders]\ndb = "{db}"\ninput = "{tmp_path}/orders-2.jsonl"\n'
                       f'warn-after = "1h"\n'
                       f'[streams.events]\ntarget = "{pg_url}"\ninput = "{tmp_path}/events-1.jsonl"\n')
    return project


def _shot(page, name: str) -> None:
    if os.environ.get("HIWATER_UI_SCREENSHOTS") == "1":
        page.screenshot(path=str(ROOT / "docs" / "img" / f"ui-{name}.png"), full_page=True)


def test_the_status_page_in_a_real_browser(browser, tmp_path, pg_url):
    project = _project(tmp_path, pg_url)
    status = {r["stream"]: r for r in hiwater.status(project=str(project))}
    with serving(project=str(project), token=TOKEN, allow_actions=True) as server:
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.goto(server.url + "?token=" + TOKEN)  # signs in (a cookie) and drops the token from the URL
        assert page.url == server.url

        # The streams page: the numbers `status --json` gives.
        for name in ("orders", "events"):
            row = page.locator(f'tr[data-stream="{name}"]')
            cells = row.locator("td").all_inner_texts()
            s = status[name]
            assert cells[0] == name and cells[2] == s["watermark"]
            assert cells[5] == s["last_outcome"] and cells[6] == str(s["last_loaded"])
            assert cells[9] == str(s["quarantined"]) and cells[10] == "never"
        assert status["events"]["quarantined"] == 1 and status["orders"]["quarantined"] == 1
        page.locator("th", has_text="loaded").click()  # sortable: ascending by rows loaded
        assert page.locator("tbody tr").first.get_attribute("data-stream") == "events"
        _shot(page, "streams")

        # One stream: a chart with one point per run.
        page.click("text=orders")
        runs = len({h["run_id"] for h in hiwater.history(db=str(tmp_path / "orders.db"), stream="orders")})
        assert runs == 3
        chart = page.locator('svg.chart[aria-label="Rows loaded per run"]')
        assert chart.locator("circle").count() == runs
        assert page.locator("table.history tbody tr").count() == runs
        _shot(page, "stream")

        # The quarantine: replay the PostgreSQL stream's record from the page.
        page.goto(server.url + "quarantine")
        assert page.locator("table.records tbody tr").count() == 2
        assert "n901" in page.locator("table.records").inner_text()
        _shot(page, "quarantine")
        page.locator('form.replay:has(input[value="events"]) button').click()
        page.wait_for_load_state()
        assert "Replayed events: 1 record(s), 1 loaded, 0 rejected again." in page.inner_text("main")
        assert page.locator("table.records tbody tr").count() == 1  # the invalid one of orders stays
        assert "n901" not in page.locator("table.records").inner_text()
    assert hiwater.quarantine_list(target=pg_url, stream="events") == []
    from db.dbutil import read_table
    assert 901 in {r["id"] for r in read_table(pg_url, "events")}

"""``hiwater ui`` from the outside: plain HTTP requests (urllib) against a server on 127.0.0.1.

What a person and a monitor see (the streams page, one stream's charts, the quarantine, the JSON
API against the CLI's ``--json``, ``/metrics``), and each rule of the security model tried by a
request that breaks it. The real-browser story is tests/test_ui_browser.py.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager

import pytest

import hiwater
from conftest import NOW, rec, write_jsonl
from hiwater.ui import make_server

TOKEN = "t0ken-for-the-ui-tests-" + "x" * 8
AGES = {"load_age", "load_age_s", "data_age", "data_age_s", "verified", "verify_age_s"}  # they move with the clock


@contextmanager
def serving(**kw):
    """A ``hiwater ui`` server on 127.0.0.1 and a free port, in a thread; yields it."""
    server = make_server(port=0, **kw)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def request(server, path, *, method="GET", data=None, headers=None, follow=True):
    """``(status, headers, body text)``; an HTTP error status is returned, not raised."""
    req = urllib.request.Request(server.url.rstrip("/") + path, data=data, method=method, headers=headers or {})
    opener = urllib.request.build_opener(*([] if follow else [_NoRedirect]))
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def get(server, path, **kw):
    status, _, body = request(server, path, **kw)
    assert status == 200, (path, status, body[:500])
    return body


def load_runs(db, stream="events", runs=3):
    """``runs`` runs of one stream; the first also quarantines one invalid and one future record."""
    for i in range(runs):
        recs = [rec(10 * i + j, f"1{i}:0{j}") for j in range(3)]
        if i == 0:
            recs += [{"id": 900, "name": "bad"}, rec(901, "2099-01-01T00:00:00")]
        src = write_jsonl(db.parent / f"{stream}-{i}.jsonl", recs)
        hiwater.load(str(src), db=str(db), stream=stream, table=stream, now=NOW)


@pytest.fixture
def target(tmp_path):
    db = tmp_path / "t.db"
    load_runs(db)
    return db


def _points(svg_html: str, title: str) -> int:
    m = re.search(r'<svg[^>]*data-points="(\d+)"[^>]*aria-label="' + re.escape(title), svg_html)
    assert m, title
    return int(m.group(1))


# --- what it shows ---------------------------------------------------------------------------

def test_the_streams_page_shows_what_status_json_gives(hw, target):
    cli = hw("status", "--db", target, "--json").json
    with serving(db=str(target)) as server:
        page = get(server, "/")
        api = json.loads(get(server, "/api/status"))
    assert [{k: v for k, v in r.items() if k not in AGES} for r in api] == \
           [{k: v for k, v in r.items() if k not in AGES} for r in cli]
    row = cli[0]
    assert 'data-stream="events"' in page
    for value in (row["watermark"], str(row["last_loaded"]), str(row["quarantined"]), "never"):
        assert f">{value}<" in page  # the watermark, counts, quarantine size, last verify


def test_history_and_quarantine_json_mirror_the_cli(hw, target):
    with serving(db=str(target)) as server:
        assert json.loads(get(server, "/api/history")) == hw("history", "--db", target, "--json").json
        assert json.loads(get(server, "/api/history?stream=events&limit=2")) == \
            hw("history", "--db", target, "--stream", "events", "--limit", "2", "--json").json
        assert json.loads(get(server, "/api/quarantine?reason=invalid")) == \
            hw("quarantine", "list", "--db", target, "--reason", "invalid", "--json").json
        assert len(json.loads(get(server, "/api/quarantine?stream=events"))) == 2


def test_a_stream_page_charts_one_point_per_run_and_shows_history_and_state(target):
    load_runs(target, "other", runs=1)
    with serving(db=str(target)) as server:
        page = get(server, "/stream?name=events")
        assert _points(page, "Rows loaded per run") == 3
        assert _points(page, "Run duration") == 3
        assert _points(page, "Lag at the end of each run") == 3
        assert page.count('<circle class="pt') == 9
        assert page.count("<tr><td") >= 3 + 1  # three runs, one state row
        assert ">modified_at<" in page and ">timestamp<" in page  # the state: cursor, kind
        status, _, body = request(server, "/stream?name=nope")
        assert status == 404 and "nope" in body


def test_a_bucketed_stream_is_one_row_and_its_page_charts_every_bucket(tmp_path):
    db = tmp_path / "b.db"
    src = write_jsonl(tmp_path / "o.jsonl", [rec(i, f"10:{i:02d}") for i in range(20)])
    hiwater.load(str(src), db=str(db), stream="orders", table="orders", buckets=2, now=NOW)
    with serving(db=str(db)) as server:
        page = get(server, "/")
        assert page.count("<tr class=") == 1 and "(2 buckets)" in page and "orders#0/2" not in page
        assert len(json.loads(get(server, "/api/status"))) == 3  # as status --json: two buckets and the stream
        detail = get(server, "/stream?name=orders")
        assert _points(detail, "Rows loaded per run") == 2 and "orders#1/2" in detail
        assert "hiwater_quarantine_records{stream=\"orders\"" in get(server, "/metrics")


def test_streams_past_their_limits_are_marked(tmp_path):
    db = tmp_path / "p.db"
    inp = write_jsonl(tmp_path / "in.jsonl", [rec(1, "10:00")])
    project = tmp_path / "hiwater.toml"
    project.write_text(f'[defaults]\ndb = "{db}"\ninput = "{inp}"\n'
                       '[streams.fresh]\nwarn-after = "1h"\n[streams.stale]\nerror-after = "1h"\n'
                       '[streams.free]\n')
    hiwater.run(["fresh"], project=str(project))
    with serving(project=str(project)) as server:
        page = get(server, "/")
    rows = dict(re.findall(r'<tr class="(\w*)" data-stream="(\w+)"', page)[i][::-1] for i in range(3))
    assert rows == {"fresh": "", "stale": "bad", "free": ""}
    assert ">never run<" in page


def test_metrics_are_prometheus_text_with_help_type_and_escaped_labels(tmp_path):
    db = tmp_path / "m.db"
    odd = 'we"ird\\name'
    load_runs(db, odd, runs=2)
    with serving(db=str(db)) as server:
        status, headers, text = request(server, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    names = set(re.findall(r"^# TYPE (\w+) gauge$", text, re.M))
    assert {"hiwater_watermark_timestamp_seconds", "hiwater_data_age_seconds", "hiwater_load_age_seconds",
            "hiwater_last_run_outcome", "hiwater_last_run_rows_loaded", "hiwater_last_run_rows_rejected",
            "hiwater_quarantine_records", "hiwater_last_run_duration_seconds"} <= names
    assert names == set(re.findall(r"^# HELP (\w+) ", text, re.M))
    label = 'stream="we\\"ird\\\\name"'
    assert f"hiwater_quarantine_records{{{label},target=" in text
    assert re.search(r'^hiwater_last_run_rows_loaded\{' + re.escape(label) + r',target="[^"]+"\} 3$', text, re.M)
    assert re.search(r'^hiwater_last_run_outcome\{.*outcome="committed"\} 1$', text, re.M)
    sample = re.compile(r'^[a-z_]+\{(?:[a-z_]+="(?:[^"\\\n]|\\.)*",?)+\} (?:[-0-9.e+]+|\+Inf)$')
    assert all(sample.match(line) for line in text.splitlines() if not line.startswith("#")), text


def test_the_last_verify_shows_on_both_pages_and_in_metrics(target):
    load_runs(target, "other", runs=1)
    folder = target.parent / "verify-src"
    recs = [rec(10 * i + j, f"1{i}:0{j}") for i in range(3) for j in range(3)]
    write_jsonl(folder / "a.jsonl", recs)
    hiwater.verify(["events"], db=str(target), input=str(folder))
    with serving(db=str(target)) as server:
        page = get(server, "/")
        detail = get(server, "/stream?name=events")
        text = get(server, "/metrics")
        api = {r["stream"]: r for r in json.loads(get(server, "/api/status"))}
    assert api["events"]["verify"]["outcome"] == "equal" and api["other"]["verify"] is None
    assert re.search(r">\d+(\.\d)?s ago, equal<", page) and ">never<" in page  # events verified, other never
    assert re.search(r"<dt>last verify</dt><dd>\d+(\.\d)?s ago, equal</dd>", detail)
    assert re.search(r'^hiwater_verify_ok\{stream="events",target="[^"]+"\} 1$', text, re.M)
    assert re.search(r'^hiwater_verify_ok\{stream="other",target="[^"]+"\} 0$', text, re.M)
    assert re.search(r'^hiwater_verify_age_seconds\{stream="events",target="[^"]+"\} [0-9.]+$', text, re.M)
    assert re.search(r'^hiwater_verify_age_seconds\{stream="other",target="[^"]+"\} \+Inf$', text, re.M)
    write_jsonl(folder / "a.jsonl", recs[1:])  # one record deleted at the source: the next verify differs
    hiwater.verify(["events"], db=str(target), input=str(folder))
    with serving(db=str(target)) as server:
        assert "ago, differs<" in get(server, "/")
        assert re.search(r'^hiwater_verify_ok\{stream="events",target="[^"]+"\} 0$', get(server, "/metrics"), re.M)


# --- the security model, tried from outside ----------------------------------------------------

def test_it_binds_127_0_0_1_and_refuses_other_hosts_without_a_token(hw, target):
    with serving(db=str(target)) as server:
        assert server.server_address[0] == "127.0.0.1"
    r = hw("ui", "--db", target, "--host", "0.0.0.0", "--port", "0")
    assert r.code == 2 and r.err_lines == ["error: --host 0.0.0.0: listening beyond this machine needs --token "
                                           "(or HIWATER_UI_TOKEN)"]
    r = hw("ui", "--db", target, "--allow-actions", "--port", "0")
    assert r.code == 2 and "--allow-actions needs --token" in r.err
    r = hw("ui", "--db", target, "--token", "short", "--port", "0")
    assert r.code == 2 and "at least 16 characters" in r.err


def test_the_token_is_checked_on_every_request(target):
    with serving(db=str(target), token=TOKEN) as server:
        for path in ("/", "/stream?name=events", "/quarantine", "/api/status", "/api/history", "/metrics",
                     "/static/ui.js"):
            assert request(server, path)[0] == 401, path
            assert request(server, path, headers={"Authorization": "Bearer " + TOKEN[:-1] + "y"})[0] == 401
            assert request(server, path, headers={"Authorization": "Bearer " + TOKEN})[0] == 200
        assert request(server, "/?token=wrong", follow=False)[0] == 401
        status, headers, _ = request(server, "/quarantine?token=" + TOKEN + "&reason=late", follow=False)
        assert status == 303 and headers["Location"] == "/quarantine?reason=late"  # the token leaves the URL
        cookie = headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert request(server, "/api/status", headers={"Cookie": cookie.split(";")[0]})[0] == 200


def test_a_foreign_host_name_is_refused_on_127_0_0_1(target):
    with serving(db=str(target)) as server:
        assert request(server, "/", headers={"Host": "attacker.example"})[0] == 403
        assert request(server, "/", headers={"Host": f"localhost:{server.server_address[1]}"})[0] == 200


def _replay(server, *, origin=True, token=True, method="POST", stream="events"):
    port = server.server_address[1]
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if token:
        headers["Authorization"] = "Bearer " + TOKEN
    if origin is True:
        headers["Origin"] = f"http://127.0.0.1:{port}"
    elif origin:
        headers["Origin"] = origin
    data = f"stream={stream}&reason=invalid".encode() if method == "POST" else None
    return request(server, "/actions/replay", method=method, data=data, headers=headers, follow=False)


def test_actions_are_post_only_token_same_origin_and_off_by_default(target):
    quarantined = lambda: len(hiwater.quarantine_list(db=str(target)))  # noqa: E731
    with serving(db=str(target), token=TOKEN) as server:
        assert _replay(server)[0] == 403  # no --allow-actions
        assert "Replay is off" in get(server, "/quarantine", headers={"Authorization": "Bearer " + TOKEN})
    with serving(db=str(target), token=TOKEN, allow_actions=True) as server:
        assert _replay(server, method="GET")[0] in (404, 405)
        assert _replay(server, method="PUT")[0] == 405
        assert _replay(server, token=False)[0] == 401
        assert _replay(server, origin=False)[0] == 403
        assert _replay(server, origin="http://attacker.example")[0] == 403
        assert _replay(server, origin=f"http://localhost:{server.server_address[1]}")[0] == 403  # not this Host
        assert quarantined() == 2
        status, headers, _ = _replay(server)
        assert status == 303 and headers["Location"].startswith("/quarantine?replayed=events")
        page = get(server, headers["Location"], headers={"Authorization": "Bearer " + TOKEN})
        assert "Replayed events: 1 record(s), 0 loaded, 1 rejected again." in page
        assert _replay(server, stream="nope")[0] == 404


def test_filters_are_values_never_sql(target):
    with serving(db=str(target)) as server:
        assert json.loads(get(server, "/api/quarantine?stream=" + urllib.request.quote("events' OR '1'='1"))) == []
        assert request(server, "/api/quarantine?reason=" + urllib.request.quote("late' OR 1=1 --"))[0] == 400
        assert request(server, "/api/history?limit=1;DROP")[0] == 400
        page = get(server, "/quarantine?stream=events&reason=future")
        assert "<h2>Records (1)</h2>" in page and "n901" in page and "n900" not in page
    assert len(hiwater.history(db=str(target))) == 3


def test_no_page_or_api_shows_a_password(tmp_path):
    """A PostgreSQL target with a password in its URL (trust auth: any password opens it), and a
    target that does not answer: the URL is masked on every page, in the API and in /metrics."""
    pytest.importorskip("psycopg")
    from db.dbutil import PG_URL, pg_connect, server_or_skip
    server_or_skip("PostgreSQL", PG_URL, pg_connect).close()
    secret = "s3cret-" + uuid.uuid4().hex[:6]
    schema = "hwt_ui_" + uuid.uuid4().hex[:8]
    url = PG_URL.replace("://postgres@", f"://postgres:{secret}@") + f"?schema={schema}"
    inp = write_jsonl(tmp_path / "in.jsonl", [rec(1, "10:00"), {"id": 2, "name": "bad"}])
    project = tmp_path / "hiwater.toml"
    project.write_text(f'[streams.pg]\ntarget = "{url}"\ninput = "{inp}"\n'
                       f'[streams.down]\ntarget = "postgresql://u:{secret}@127.0.0.1:9/x"\ninput = "{inp}"\n')
    hiwater.run(["pg"], project=str(project))
    try:
        with serving(project=str(project)) as server:
            seen = [get(server, p) for p in ("/", "/stream?name=pg", "/quarantine?stream=pg",
                                             "/api/history?stream=pg", "/api/quarantine?stream=pg", "/metrics")]
            failing = [request(server, p) for p in ("/api/status", "/api/history", "/quarantine")]
        assert [f[0] for f in failing] == [502, 500, 500]  # the down target is named, its password masked
        assert all(secret not in body and "u:***@127.0.0.1:9" in body for _, _, body in failing)
        assert all(secret not in text for text in seen)
        assert "postgres:***@" in seen[0] and "u:***@127.0.0.1:9" in seen[0]  # the down target, masked
        assert 'hiwater_target_up{target="postgresql://u:***@127.0.0.1:9/x"} 0' in seen[-1]
    finally:
        with pg_connect() as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_a_project_that_never_ran_shows_empty_history_and_quarantine_and_makes_nothing(tmp_path):
    from hiwater.ui.view import View
    data = write_jsonl(tmp_path / "events.jsonl", [rec(1, "08:00")])
    project = tmp_path / "hiwater.toml"
    project.write_text(f'[defaults]\ndb = "{tmp_path / "never.db"}"\n\n[streams.events]\ninput = "{data}"\n')
    view = View(project=str(project))
    assert view.history() == [] and view.quarantine() == []
    assert not (tmp_path / "never.db").exists()

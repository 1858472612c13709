"""The file manifest on object storage (SPEC §10): the same behaviour on an S3 API, served by
moto on 127.0.0.1 (a free port; no other address is ever contacted). Objects are keyed by ETag."""

from __future__ import annotations

import gzip
import json
import os
import sys

import pytest

import hiwater
from hiwater.errors import ConfigError

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

NOW = "2025-06-01T00:00:00Z"
SECRET = "s3cr3t-never-printed"


@pytest.fixture(scope="session")
def s3_endpoint():
    srv = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    srv.start()
    host, port = srv.get_host_and_port()
    assert host == "127.0.0.1"
    yield f"http://127.0.0.1:{port}"
    srv.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch, request):
    """A fresh bucket; the environment points every client at the local endpoint."""
    import boto3
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    bucket = "b" + format(abs(hash(request.node.name)) % 10**10, "010d")
    client.create_bucket(Bucket=bucket)
    return client, bucket


def put(client, bucket, key, ids, day=1, bump=0, gz=False):
    body = "".join(json.dumps({"id": i, "modified_at": f"2025-01-{day:02d}T00:00:{(i % 50) + bump:02d}"}) + "\n"
                   for i in ids).encode()
    client.put_object(Bucket=bucket, Key=key, Body=gzip.compress(body) if gz else body)


def load(url, db, **kw):
    return hiwater.load(url, db=str(db), table="t", now=NOW, **kw).to_dict()


def test_adding_one_object_reads_exactly_its_records(s3, tmp_path):
    client, bucket = s3
    for f in range(20):
        put(client, bucket, f"land/part-{f:04d}.jsonl", range(f * 10, f * 10 + 10), day=1 + f)
    db = tmp_path / "t.db"
    assert load(f"s3://{bucket}/land/", db)["source_records"] == 200
    put(client, bucket, "land/part-9999.jsonl.gz", range(1000, 1007), day=25, gz=True)
    res = load(f"s3://{bucket}/land/", db)
    assert res["source_records"] == 7 and res["files"] == {"listed": 21, "read": 1, "skipped": 20, "vanished": 0}
    import sqlite3
    con = sqlite3.connect(db)
    paths = {p: e for p, e in con.execute("SELECT path, etag FROM _hiwater_files")}
    con.close()
    assert len(paths) == 21 and all(p.startswith(f"s3://{bucket}/land/") and e for p, e in paths.items())


def test_changed_vanished_and_reread_objects(s3, tmp_path):
    client, bucket = s3
    for f in range(4):
        put(client, bucket, f"land/p{f}.jsonl", range(f * 10, f * 10 + 10), day=1 + f)
    db, url = tmp_path / "t.db", f"s3://{bucket}/land/*.jsonl"
    load(url, db)
    put(client, bucket, "land/p3.jsonl", range(30, 40), day=4, bump=1)  # same size, new content: new ETag
    changed = load(url, db, on_late="load")  # its records sit below the watermark
    assert changed["files"]["read"] == 1 and changed["source_records"] == 10 and changed["updated"] == 10
    client.delete_object(Bucket=bucket, Key="land/p1.jsonl")
    gone = load(url, db)
    assert gone["files"]["vanished"] == 1 and any("land/p1.jsonl" in w for w in gone["warnings"])
    assert load(url, db, reread_files=True)["source_records"] == 30


def test_missing_credentials_are_one_line_exit_2_without_the_secret(s3, tmp_path, monkeypatch, capsys):
    client, bucket = s3
    put(client, bucket, "land/a.jsonl", [1])
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    from hiwater.cli import main
    assert main(["load", "-i", f"s3://{bucket}/land/", "--db", str(tmp_path / "t.db")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "access refused" in err[0] and SECRET not in err[0]


def test_a_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "s3fs", None)
    with pytest.raises(ConfigError) as exc:
        hiwater.load("s3://bucket/land/", table="t")
    assert "hiwater[s3]" in str(exc.value.hint)


def test_window_downloads_each_object_once_per_run(s3, tmp_path, monkeypatch):
    import collections
    from hiwater.sources.files import FileSource
    client, bucket = s3
    for f in range(5):
        put(client, bucket, f"land/p{f}.jsonl" + (".gz" if f == 4 else ""), range(f * 10, f * 10 + 10), day=1 + f,
            gz=f == 4)
    fetched = collections.Counter()
    real = FileSource._fetch

    def counting(self, url):
        fetched[url.rsplit("/", 1)[1]] += 1
        return real(self, url)
    monkeypatch.setattr(FileSource, "_fetch", counting)
    res = load(f"s3://{bucket}/land/", tmp_path / "t.db", window="1d")
    assert len(res["windows"]) == 5 and res["loaded"] == 50
    assert dict(fetched) == {"p0.jsonl": 1, "p1.jsonl": 1, "p2.jsonl": 1, "p3.jsonl": 1, "p4.jsonl.gz": 1}


@pytest.mark.slow
def test_a_run_killed_between_window_slices_on_s3_converges(s3, tmp_path):
    """SIGKILL at several points of a multi-object --window run (some after a slice committed):
    each rerun reads the same objects, the target is exact, and the manifest matches it."""
    import sqlite3
    import subprocess
    client, bucket = s3
    for f in range(4):
        put(client, bucket, f"land/p{f}.jsonl", range(f * 10, f * 10 + 10), day=1 + f)
    url = f"s3://{bucket}/land/"
    between = 0
    for n in (12, 30, 45, 60):
        db = tmp_path / f"t{n}.db"
        argv = [sys.executable, "-m", "hiwater.cli", "load", "--input", url, "--db", str(db), "--table", "t",
                "--now", NOW, "--window", "1d"]
        killed = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                                env={**os.environ, "HIWATER_FAULT_AT": f"{n}:kill"})
        assert killed.returncode in (-9, 0), killed.stderr
        if killed.returncode == -9 and db.exists():
            con = sqlite3.connect(db)
            try:
                have = con.execute("SELECT name FROM sqlite_master WHERE name = 't'").fetchone()
                done = con.execute("SELECT count(*) FROM t").fetchone()[0] if have else 0
                files = con.execute("SELECT count(*) FROM _hiwater_files").fetchone()[0] if have else 0
            finally:
                con.close()
            between += 0 < done < 40
            assert files in (0, 4)  # never a file recorded without all of its rows
        again = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr
        con = sqlite3.connect(db)
        try:
            assert sorted(r[0] for r in con.execute("SELECT id FROM t")) == list(range(40))
            assert con.execute("SELECT count(*) FROM _hiwater_files").fetchone() == (4,)
        finally:
            con.close()
        assert load(url, db)["files"]["read"] == 0  # a third run reads nothing
    assert between, "no kill point fell between two committed slices"

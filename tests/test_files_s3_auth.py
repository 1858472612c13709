"""Credentials on object storage (SPEC §10, issue 12): a wrong key, a wrong secret, no credential
and an endpoint that does not answer are each one line with a documented exit code, no traceback,
no secret, nothing committed. The S3 API is a moto server in its own process on 127.0.0.1 that
checks signatures (``INITIAL_NO_AUTH_ACTION_COUNT``: the first requests, which make the user, its
key and the bucket, go unchecked). Each case starts the CLI; the slower ones run with ``-m slow``."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request

import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

SECRET = "wrong-s3cr3t-never-printed"
SETUP_REQUESTS = 5  # create_user, put_user_policy, create_access_key, create_bucket, put_object


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def auth_s3():
    """A moto server that checks every request's signature after the first four; returns its
    endpoint and a real (access key, secret) of an IAM user, and the bucket holding one object."""
    import boto3
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_REQUESTS)}
    srv = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup",
                  aws_secret_access_key="setup")
        iam = boto3.client("iam", **kw)
        iam.create_user(UserName="loader")
        iam.put_user_policy(UserName="loader", PolicyName="read", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="loader")["AccessKey"]
        s3 = boto3.client("s3", **kw)
        s3.create_bucket(Bucket="landing")
        s3.put_object(Bucket="landing", Key="events/a.jsonl",
                      Body=b'{"id": 1, "modified_at": "2025-01-01T00:00:00"}\n')
        yield endpoint, key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        srv.terminate()
        srv.wait(timeout=10)


def run_cli(tmp_path, endpoint, key_id, secret, url="s3://landing/events/"):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HIWATER_"))}
    env.update(AWS_ENDPOINT_URL=endpoint, AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true",
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_MAX_ATTEMPTS="1")
    if key_id is not None:
        env.update(AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret)
    db = tmp_path / "t.db"
    done = subprocess.run([sys.executable, "-m", "hiwater.cli", "load", "--input", url, "--db", str(db),
                           "--table", "t"], capture_output=True, text=True, env=env, timeout=120)
    return done, db


def nothing_committed(db) -> bool:
    if not db.exists():
        return True
    con = sqlite3.connect(db)
    try:
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "t" in names:
            return False
        return "_hiwater_files" not in names or con.execute("SELECT count(*) FROM _hiwater_files").fetchone()[0] == 0
    finally:
        con.close()


def one_line(done, secret: str) -> str:
    assert secret not in done.stdout and secret not in done.stderr
    assert "Traceback" not in done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.slow
def test_the_right_credentials_load(auth_s3, tmp_path):
    endpoint, key_id, secret = auth_s3
    done, db = run_cli(tmp_path, endpoint, key_id, secret)
    assert done.returncode == 0, done.stderr
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM t").fetchone() == (1,)
    con.close()


@pytest.mark.parametrize("which", ["unknown key", pytest.param("wrong secret", marks=pytest.mark.slow)])
def test_a_wrong_credential_is_one_line_exit_2_without_the_secret(auth_s3, tmp_path, which):
    endpoint, key_id, _ = auth_s3
    if which == "unknown key":
        done, db = run_cli(tmp_path, endpoint, "AKIAUNKNOWN000000000", SECRET)
        expected = "does not exist"          # InvalidAccessKeyId
    else:
        done, db = run_cli(tmp_path, endpoint, key_id, SECRET)
        expected = "signature"               # SignatureDoesNotMatch
    line = one_line(done, SECRET)
    assert done.returncode == 2, done.stderr
    assert "s3://landing/events/: access refused" in line and expected in line.lower(), line
    assert nothing_committed(db)


@pytest.mark.slow
def test_no_credential_at_all_is_one_line_exit_2(auth_s3, tmp_path):
    endpoint, _, _ = auth_s3
    done, db = run_cli(tmp_path, endpoint, None, None)
    line = one_line(done, SECRET)
    assert done.returncode == 2 and "access refused" in line, done.stderr
    assert nothing_committed(db)


@pytest.mark.slow
def test_an_endpoint_that_does_not_answer_is_one_line_exit_1_retryable(tmp_path):
    done, db = run_cli(tmp_path, f"http://127.0.0.1:{free_port()}", "AKIAANY", SECRET)
    line = one_line(done, SECRET)
    assert done.returncode == 1, done.stderr
    assert "cannot reach the object store" in line and "can be retried" in line, line
    assert nothing_committed(db)

"""Bucketed streams on a Dask cluster of worker *processes* (issue 20, item 6): the tasks carry
specs, not data; an existing scheduler's address works; the union equals one run."""

from __future__ import annotations

import os
import pickle

import pytest

import hiwater
from hiwater import executor

from conftest import NOW, write_jsonl

from .test_buckets_db import pg_target, source_rows
from .dbutil import read_table


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    yield cluster
    cluster.close()


def test_buckets_on_two_dask_worker_processes_by_address_carry_specs_not_data(
        cluster, tmp_path, request, pg_admin, monkeypatch):
    import distributed
    one, two = pg_target(request, pg_admin), pg_target(request, pg_admin)
    path = write_jsonl(tmp_path / "src.jsonl", source_rows(20_000))
    sent = []
    submit = executor.Pool.submit

    def spy(self, fn, name, *args):
        sent.append(len(pickle.dumps(args)))
        return submit(self, fn, name, *args)
    monkeypatch.setattr(executor.Pool, "submit", spy)
    kw = dict(table="t", now=NOW)
    hiwater.load(str(path), target=one, **kw)
    hiwater.load(str(path), target=two, buckets=2, executor=f"dask:{cluster.scheduler_address}", **kw)
    assert read_table(two, "t") == read_table(one, "t")
    # each task is a spec or a split of a few hundred bytes; the source (over a megabyte) never went through
    # the client
    assert len(sent) == 3 and max(sent) < 4096 < os.path.getsize(path) // 100, sent  # a read task, 2 buckets
    with distributed.Client(cluster.scheduler_address) as client:
        pids = set(client.run(os.getpid).values())
    assert len(pids) == 2 and os.getpid() not in pids  # two worker processes, not this one
    names = {h["stream"] for h in hiwater.history(target=two, stream="t")}
    assert names == {"t#0/2", "t#1/2"}

"""The bucket model test (issue 20): random bucket counts, the count changed between runs, skewed
keys (all in one bucket, empty buckets), a bucket whose worker dies; the count changed by
``--rebucket`` or by ``stream drop`` and a run; on SQLite, PostgreSQL, DuckDB
and Delta. After the rerun that follows each failure, the table equals the single run's (count and
a checksum of every column) and the quarantine holds each invalid record once.

``HIWATER_BUCKET_MODEL_SEEDS`` sets how many random histories per target (default 2)."""

from __future__ import annotations

import hashlib
import json
import os
import random

import pytest

import hiwater
from hiwater.errors import PipelineError
from hiwater.executor import ENV_FAULT
from hiwater.keyhash import bucket_of

from conftest import NOW, write_jsonl

from .dbutil import read_table

pytestmark = pytest.mark.slow
SEEDS = int(os.environ.get("HIWATER_BUCKET_MODEL_SEEDS", "2"))
INVALID = [9001, 9002, 9003]


def checksum(rows: list) -> tuple[int, str]:
    text = "\n".join(sorted(json.dumps(r, sort_keys=True, default=str) for r in rows))
    return len(rows), hashlib.sha256(text.encode()).hexdigest()


def batch(rng: random.Random, step: int, n: int) -> list:
    """One run's records: a random share of 300 keys, or keys of one bucket only (the others
    empty); every key newer than in the step before (no late record); three invalid records."""
    pool = list(range(1, 301))
    if rng.random() < 0.3:
        pool = [k for k in pool if bucket_of([k], n) == rng.randrange(n)]
    keys = rng.sample(pool, k=max(1, len(pool) * rng.randint(20, 100) // 100))
    out = [{"id": k, "name": f"k{k}s{step}", "qty": rng.randint(0, 9) if rng.random() < 0.9 else None,
            "modified_at": f"2025-02-{1 + step:02d}T{k // 60 % 24:02d}:{k % 60:02d}:00"} for k in keys]
    out += [{"id": k, "name": "bad", "modified_at": "not a time"} for k in INVALID]
    rng.shuffle(out)
    return out


@pytest.mark.parametrize("seed", range(SEEDS))
def test_buckets_converge_to_the_single_run_table(target_url, tmp_path, seed, monkeypatch):
    rng = random.Random(seed)
    one = f"sqlite:///{tmp_path / 'one.db'}"
    src = tmp_path / "src.jsonl"
    kw = dict(input=str(src), table="t", key="id", cursor="modified_at", now=NOW, batch_size=50)
    n = rng.choice([2, 3, 4])
    for step in range(5):
        write_jsonl(src, batch(rng, step, n))
        hiwater.load(target=one, **kw)
        again = {}
        if step and rng.random() < 0.35:  # change the count: --rebucket, or stream drop then the run
            if rng.random() < 0.5:
                again = dict(rebucket=True, forget_quarantine=True)
            else:
                hiwater.stream_drop(stream="t", target=target_url)
            n = rng.choice([m for m in (2, 3, 4) if m != n])
        if rng.random() < 0.4:  # a bucket's worker dies after its first batch
            monkeypatch.setenv(ENV_FAULT, f"{rng.randrange(n)}:1")
            try:
                hiwater.load(target=target_url, buckets=n, **kw, **again)
            except PipelineError:
                pass
            monkeypatch.delenv(ENV_FAULT)
        hiwater.load(target=target_url, buckets=n, **kw, **again)
        assert checksum(read_table(target_url, "t")) == checksum(read_table(one, "t")), (seed, step, n)
    held = sorted(json.loads(q["key"])[0] for q in hiwater.quarantine_list(target=target_url, stream="t"))
    assert held == INVALID

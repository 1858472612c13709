"""Changing the bucket count loses and duplicates nothing, on every target (issue 20, unsafe 2).

The procedure (docs/scale-out.md, "Changing the number of buckets"): forget the stream's buckets,
keep the table, run with the new count. The new buckets re-read the source and find every row
they hold unchanged; on Delta the rows first move to the partition of their new bucket, so a
bucket's merge, which looks only in its own partition, finds them (before: 290 rows for 200 keys).
"""

from __future__ import annotations

import pytest

import hiwater
from hiwater.errors import UsageError
from hiwater.keyhash import bucket_of

from conftest import NOW, write_jsonl

from .conftest import target_for
from .dbutil import TARGETS, read_table


# SQLite in the default suite; the other targets (a minute and more together) under -m slow.
@pytest.fixture(params=[k if k == "sqlite" else pytest.param(k, marks=pytest.mark.slow) for k in TARGETS])
def target_url(request, tmp_path):
    return target_for(request.param, tmp_path, request)


def records(n: int, version: int) -> list:
    """``n`` keys, every one newer in each version (no late record: the tables must be equal)."""
    out = [{"id": i, "name": f"n{i}v{version}", "amount": f"{i}.{version}",
            "modified_at": f"2025-01-{1 + version:02d}T{i // 60 % 24:02d}:{i % 60:02d}:00"} for i in range(1, n + 1)]
    out[40]["modified_at"] = "not a time"  # invalid: quarantined once
    return out


def test_changing_n_loses_and_duplicates_nothing(target_url, tmp_path):
    one = f"sqlite:///{tmp_path / 'one.db'}"
    src = tmp_path / "t.jsonl"
    opts = dict(input=str(src), table="t", key="id", cursor="modified_at", now=NOW)

    def both(version: int, n: int):
        write_jsonl(src, records(200, version))
        hiwater.load(target=one, **opts)
        return hiwater.load(target=target_url, buckets=n, **opts)

    both(0, 4)
    for b in range(4):  # forget the 4 buckets one by one (the procedure before issue 20)
        hiwater.stream_drop(stream=f"t#{b}/4", target=target_url)
    s = both(0, 2)
    assert s.total_in_target == 199
    assert read_table(target_url, "t") == read_table(one, "t")
    s = both(1, 2)  # every key changes, in its new bucket
    assert s.total_in_target == 199
    hiwater.stream_drop(stream="t", target=target_url)  # the stream's own name: all its buckets
    s = both(2, 3)
    assert s.total_in_target == 199 and read_table(target_url, "t") == read_table(one, "t")
    assert [x["stream"] for x in hiwater.state_show(target=target_url, stream="t")] == [f"t#{b}/3" for b in range(3)]


def test_rebucket_changes_n_in_one_command(target_url, tmp_path):
    """``load --buckets M --rebucket`` (issue 20): 4 → 2 → 3 buckets, and back to one stream,
    each in one command; every table equals one run's, the quarantine holds the invalid record
    once (in its new bucket), and the same command again is an ordinary run of the new count."""
    one = f"sqlite:///{tmp_path / 'one.db'}"
    src = tmp_path / "t.jsonl"
    opts = dict(input=str(src), table="t", key="id", cursor="modified_at", now=NOW)

    def both(version: int, n: int, **kw):
        write_jsonl(src, records(200, version))
        hiwater.load(target=one, **opts)
        s = hiwater.load(target=target_url, buckets=n, **opts, **kw)
        assert s.total_in_target == 199 and read_table(target_url, "t") == read_table(one, "t"), (version, n)
        return s

    both(0, 4)
    with pytest.raises(UsageError, match="1 quarantined record"):  # it would forget that record
        both(1, 2, rebucket=True)
    assert len(hiwater.quarantine_list(target=target_url, stream="t")) == 1
    s = both(1, 2, rebucket=True, forget_quarantine=True)
    assert any("from 4 to 2 bucket(s)" in w for w in s.warnings)
    assert s.counts.unchanged == 0 and s.counts.updated == 199  # the whole source, re-read once
    assert [x["stream"] for x in hiwater.state_show(target=target_url, stream="t")] == ["t#0/2", "t#1/2"]
    s = both(1, 2, rebucket=True, forget_quarantine=True)  # the same command again: a plain run of 2
    assert not any("re-bucketed" in w for w in s.warnings) and s.counts.updated == 0
    both(2, 3, rebucket=True, forget_quarantine=True)
    assert [q["stream"] for q in hiwater.quarantine_list(target=target_url, stream="t")] == [
        f"t#{bucket_of([41], 3)}/3"]
    both(3, 1, rebucket=True, forget_quarantine=True)
    assert [x["stream"] for x in hiwater.state_show(target=target_url)] == ["t"]
    both(4, 2, rebucket=True, forget_quarantine=True)
    assert len(hiwater.quarantine_list(target=target_url, stream="t")) == 1

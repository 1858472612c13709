"""Issue 21 on every target: run ids never repeat after ``stream drop``, and the read commands
(``validate --connect``, ``status``, ``check``, ``history``, ``quarantine list``) never create or
change anything on a target that does not exist yet."""

from __future__ import annotations

import os

import pytest

import hiwater

NOW = "2025-01-20T00:00:00Z"
RECORDS = [{"id": i, "modified_at": "2025-01-15T08:00:00Z", "v": i} for i in range(3)]


def load(url, **kw):
    return hiwater.load(list(RECORDS), target=url, table="t", now=NOW, **kw).to_dict()


def test_a_reload_after_drop_keeping_the_table_is_unchanged(target_url):
    """Item 3: the drop deletes the history, but not the counter of run ids: the rows of the
    kept table were written by earlier runs, so the reload finds them unchanged."""
    first = load(target_url)
    assert first["inserted"] == 3
    load(target_url)
    hiwater.stream_drop(stream="t", target=target_url)
    again = load(target_url)
    assert again["run_id"] > first["run_id"] + 1
    assert again["unchanged"] == 3 and again["updated"] == 0 and again["loaded"] == 0

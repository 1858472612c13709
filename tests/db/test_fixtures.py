"""The database fixtures themselves: a missing server skips, except under CI=true where it fails."""

from __future__ import annotations

import pytest

from .dbutil import server_or_skip


def refuse(url):
    raise ConnectionRefusedError("connection refused")


def test_a_missing_server_skips_with_the_reason(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Nothing at db://x does not answer: connection refused"):
        server_or_skip("Nothing", "db://x", refuse)


def test_under_ci_a_missing_server_fails(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true: a missing server is a failure, not a skip"):
        server_or_skip("Nothing", "db://x", refuse)

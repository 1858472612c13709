"""The reference model of SPEC §3 (tests/test_decide_model.py) played against every target
through its lookups: a key range read back for dense integer keys, (key, cursor) pairs sent
and only differing versions returned for sparse ones. After every run the target, the
watermark and the counts must be the model's, with whole-file batches and with batches of one
to three records (a key written by an earlier batch of the same run)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hiwater
import test_decide_model as M

from .dbutil import PG_URL, TARGETS, fresh_name, read_table


@pytest.fixture(scope="module", params=TARGETS)
def backend(request):
    admin = request.getfixturevalue("pg_admin") if request.param == "postgresql" else None
    return request.param, admin


def _rows(url: str) -> dict:
    try:
        rows = read_table(url, "events")
    except Exception:  # noqa: BLE001 - no table yet: every record so far was rejected
        return {}
    return {r["id"]: (r["modified_at"], r["name"]) for r in rows}


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(runs=st.lists(M.run_st, min_size=1, max_size=4), batch_size=st.sampled_from([65_536, 1, 3]),
       spread=st.sampled_from([1, 1_000_003]))
def test_the_target_matches_the_model_run_after_run(backend, runs, batch_size, spread):
    """``spread`` makes the keys sparse, so the targets' other lookup path is played too."""
    runs = [([{**r, "id": None if r["id"] is None else r["id"] * spread} for r in records], *rest)
            for records, *rest in runs]
    _play(backend, runs, batch_size, key=None, rows=_rows, to_file=M._write)


# Ordinary-but-awkward text key parts: a leading zero, a comma and non-ASCII letters, and an
# empty text. (The separator SQLite's range read joins text with, U+001F, sends that range to the
# per-key probe: tests/test_sqlite_range_lookup.py.)
PARTS = ["007", "é, ü", ""]


def _write_split(path: Path, records, spread: int) -> None:
    """The model's records with its integer ``id`` as a two-column key: ``a`` an integer,
    ``b`` a text."""
    with path.open("w") as f:
        for r in records:
            i = r["id"]
            f.write(json.dumps({"a": None if i is None else (i // 3) * spread,
                                "b": None if i is None else PARTS[i % 3], "name": r["name"],
                                "modified_at": None if r["m"] is None else M.iso(r["m"])}) + "\n")


def _composite_rows(spread: int):
    def rows(url: str) -> dict:
        try:
            got = read_table(url, "events")
        except Exception:  # noqa: BLE001 - no table yet
            return {}
        return {(r["a"] // spread) * 3 + PARTS.index(r["b"]): (r["modified_at"], r["name"]) for r in got}
    return rows


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(runs=st.lists(M.run_st, min_size=1, max_size=4), batch_size=st.sampled_from([65_536, 1, 3]),
       spread=st.sampled_from([1, 1_000_003]))
def test_a_composite_key_matches_the_model_run_after_run(backend, runs, batch_size, spread):
    """The same story with a two-column key (integer, text): the targets' composite lookups
    (SQLite's range read and join, PostgreSQL's versions sent as arrays, DuckDB's join)."""
    _play(backend, runs, batch_size, key=["a", "b"], rows=_composite_rows(spread),
          to_file=lambda path, records: _write_split(path, records, spread))


def _play(backend, runs, batch_size, key, rows, to_file):
    kind, admin = backend
    _rows = rows
    model = M.Model()
    with tempfile.TemporaryDirectory() as d:
        if kind in ("sqlite", "duckdb"):
            url = f"{kind}:///{d}/t.{kind}"
        elif kind == "delta":
            url = f"delta://{d}/lake"
        else:
            schema = fresh_name()
            url = f"{PG_URL}?schema={schema}"
        try:
            for n, (records, boundary, lookback, on_late) in enumerate(runs):
                src = Path(d) / f"run{n}.jsonl"
                to_file(src, records)
                extra = {} if key is None else {"key": key}
                s = hiwater.load(str(src), target=url, table="events", boundary=boundary,
                                 lookback=f"{lookback}m", on_late=on_late, now=M.iso(M.NOW_MIN) + "Z",
                                 batch_size=batch_size, max_rejected="100%", **extra)
                expected = model.run(records, boundary, lookback, on_late)
                want = {k: (M.iso(m), name) for k, (m, name) in model.rows.items()}
                assert _rows(url) == want, f"run {n}"
                assert s.new_watermark == (None if model.wm is None else M.iso(model.wm)), f"run {n}"
                # the same counts whatever the batches: a key's change counts once (issue 21 item 11)
                assert {k: getattr(s.counts, k) for k in expected} == expected, f"run {n}"
        finally:
            if admin is not None:
                admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


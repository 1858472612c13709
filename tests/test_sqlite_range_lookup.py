"""The SQLite range lookup's shortcuts (targets/sqlite.py ``_held_range``) answer exactly what a
plain per-row read answers: a real key inside the range (possible in a table the user created
with an untyped or NUMERIC key column; hiwater's own INTEGER key is the rowid) falls back to the
typed read, and the run column is skipped only when no row in the range is from the asking run."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hiwater.targets.sqlite import SQLiteTarget


def reference(path, lo, hi):
    con = sqlite3.connect(path)
    rows = con.execute("SELECT id, _hiwater_cursor, _hiwater_run FROM t WHERE id BETWEEN ? AND ?"
                       " AND typeof(id) = 'integer' ORDER BY id", (lo, hi)).fetchall()
    con.close()
    return rows


def build(path, rows, decl=""):
    build_keyed(path, rows, {"id": decl})


def build_keyed(path, rows, keys: dict):
    """Table ``t`` keyed by ``keys`` (name -> declared type) with hiwater's hidden columns; each
    row is the key values, then cursor and run."""
    con = sqlite3.connect(path)
    cols = ", ".join(f"{k} {d}" for k, d in keys.items())
    con.execute(f'CREATE TABLE t ({cols}, v TEXT, "_hiwater_cursor" INTEGER NOT NULL,'
                f' "_hiwater_run" INTEGER NOT NULL, PRIMARY KEY ({", ".join(keys)}))')
    marks = ", ".join("?" * len(keys))
    con.executemany(f"INSERT OR REPLACE INTO t VALUES ({marks}, 'x', ?, ?)", rows)
    con.commit()
    con.close()


def held(path, lo, hi, run_id):
    with SQLiteTarget(str(path)) as t:
        got = t._held_range("t", "id", lo, hi, run_id)
    return sorted(map(tuple, got.tolist()))


keys = st.one_of(st.integers(-50, 50), st.sampled_from([5.5, -0.25, 1e20, "7", "abc", b"\x01"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(keys, st.integers(0, 10**12), st.integers(1, 5)), unique_by=lambda r: r[0],
                     max_size=30),
       lo=st.integers(-60, 0), hi=st.integers(0, 60), run_id=st.integers(1, 6))
def test_the_range_read_agrees_with_a_plain_read(tmp_path_factory, rows, lo, hi, run_id):
    path = tmp_path_factory.mktemp("r") / "t.db"
    build(path, rows)
    want = reference(path, lo, hi)
    got = held(path, lo, hi, run_id)
    newest = max((r for _, _, r in want), default=0)
    if newest >= run_id:  # the asking run's rows must be recognised as its own
        assert got == want
    else:  # no row is the asking run's: its run is not needed (read as 0)
        assert [(k, c) for k, c, _ in got] == [(k, c) for k, c, _ in want]
        assert all(r != run_id for _, _, r in got)
    assert held(path, lo, hi, None) == want


def test_a_real_key_in_the_range_takes_the_typed_read(tmp_path):
    path = tmp_path / "t.db"
    build(path, [(1, 10, 1), (5.5, 20, 1), (9, 30, 2)])
    for run_id in (2, 3):
        assert [(k, c, r == run_id) for k, c, r in held(path, 0, 10, run_id)] == \
            [(1, 10, False), (9, 30, run_id == 2)]
    assert held(path, 0, 10, None) == [(1, 10, 1), (9, 30, 2)]


@pytest.mark.parametrize("decl", ["INTEGER", "NUMERIC", ""])
def test_a_row_of_the_asking_run_is_seen_as_its_own(tmp_path, decl):
    path = tmp_path / "t.db"
    build(path, [(1, 10, 4), (2, 20, 7)], decl)
    assert held(path, 0, 10, 7) == [(1, 10, 4), (2, 20, 7)]
    assert held(path, 0, 10, 8) == [(1, 10, 0), (2, 20, 0)]


# --- composite keys: the range read + Arrow join agrees with the per-key probe ------------------

texts = st.sampled_from(["a", "b", "UA", "ua", "", "x\x1fy", "é", "10", "9", "a,b"])
ints = st.integers(-3, 12)


def build_composite(path, rows, decls):
    build_keyed(path, rows, {"a": decls[0], "b": decls[1]})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.tuples(st.sampled_from(["int", "text"]), st.sampled_from(["int", "text"])),
       data=st.data(), odd=st.booleans(), decl_odd=st.booleans())
def test_composite_range_lookup_agrees_with_the_probe(tmp_path_factory, kinds, data, odd, decl_odd):
    import pyarrow as pa
    gen = [ints if k == "int" else texts for k in kinds]
    decls = ["INTEGER" if k == "int" else "TEXT" for k in kinds]
    if decl_odd:  # a user-made table whose key column is declared otherwise
        decls[0] = {"INTEGER": "TEXT", "TEXT": "NUMERIC"}[decls[0]]
    held = data.draw(st.lists(st.tuples(gen[0], gen[1], st.integers(0, 99), st.integers(1, 4)), max_size=60))
    if odd and held:  # a stored value of another type than the batch's (SQLite keeps it as given)
        k = held[0]
        held[0] = (str(k[0]) if kinds[0] == "int" else 5, k[1], k[2], k[3])
    keys = data.draw(st.lists(st.tuples(gen[0], gen[1]), min_size=1, max_size=80))
    path = tmp_path_factory.mktemp("c") / "t.db"
    build_composite(path, held, decls)
    with SQLiteTarget(str(path)) as t:
        arrays = [pa.array([k[i] for k in keys], pa.int64() if kinds[i] == "int" else pa.string()) for i in range(2)]
        fast = t._composite("t", ("a", "b"), arrays)
        slow = t._lookup("t", ("a", "b"), [list(k) for k in keys])
    if fast is not None:
        assert fast.exists.tolist() == slow.exists.tolist()
        assert fast.cursor.tolist() == slow.cursor.tolist() and fast.run.tolist() == slow.run.tolist()


@pytest.mark.parametrize("decl", ["TEXT", "INTEGER"])
def test_composite_keys_in_a_column_declared_otherwise_agree_with_the_probe(tmp_path, decl):
    """Integer keys against a TEXT-declared column order as text in SQLite ('10' < '9'): a range
    read by the batch's numeric order would miss rows, so that pairing must take the probe."""
    import pyarrow as pa
    path = tmp_path / "t.db"
    build_composite(path, [(v, "x", 10 + v, 1) for v in (2, 9, 10, 11)], [decl, "TEXT"])
    with SQLiteTarget(str(path)) as t:
        keys = [2, 9, 10, 11, 3]
        arrays = [pa.array(keys, pa.int64()), pa.array(["x"] * len(keys))]
        fast = t._composite("t", ("a", "b"), arrays)
        slow = t._lookup("t", ("a", "b"), [[k, "x"] for k in keys])
    assert slow.exists.tolist() == [True, True, True, True, False]
    if fast is not None:
        assert (fast.exists.tolist(), fast.cursor.tolist()) == (slow.exists.tolist(), slow.cursor.tolist())
    assert (fast is None) == (decl == "TEXT")

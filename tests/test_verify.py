"""hiwater verify, from the user's side: a folder or data source against a SQLite target.

Differences are planted the way they happen: a record the source gained below the watermark
after the load (missing), a record the source deleted (extra), a record updated in place to a
later cursor still below the watermark (stale). The database sources and the other targets
are in tests/db/test_verify_db.py.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hiwater
from hiwater import values as V
from hiwater.errors import UsageError
from hiwater.verify import digest as D
from hiwater.verify import run as R
from hiwater.verify.bisect import bisect, classify, differing
from hiwater.verify.plan import default_step, make_plan, parse_step
from hiwater.verify.sides import MemorySide, SqlSide

NOW = "2025-06-01T00:00:00Z"


def ts(minute: int) -> str:
    return (dt.datetime(2025, 1, 1) + dt.timedelta(minutes=minute)).isoformat()


def write(folder, name, records):
    folder.mkdir(exist_ok=True)
    (folder / name).write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture
def loaded(tmp_path):
    """A folder of 300 records over five hours, loaded into a SQLite file."""
    src = tmp_path / "landing"
    recs = [{"id": i, "name": f"n{i}", "modified_at": ts(i)} for i in range(300)]
    write(src, "a.jsonl", recs)
    db = str(tmp_path / "t.db")
    hiwater.load(str(src), db=db, table="events", now=NOW)
    return src, db, recs


def verify(src, db, **kw):
    [r] = hiwater.verify(db=db, input=str(src), **kw)
    return r


# --- the whole command ---------------------------------------------------------------------------

def test_equal_tables_are_equal_in_every_window(loaded):
    src, db, _ = loaded
    r = verify(src, db)
    assert r["equal"] and r["outcome"] == "equal"
    assert r["windows"]["checked"] == r["windows"]["equal"] > 1
    assert r["since"] == "2025-01-01T00:00:00+00:00" and r["until"] == "2025-01-01T04:59:00+00:00"
    assert all(n == 0 for n in r["keys"].values())
    assert r["rounds"] == 1 and r["verified_through"] == r["until"]
    json.dumps(r)  # one JSON document: what a later version stores with the stream


def test_planted_missing_extra_and_stale_are_named(loaded):
    src, db, recs = loaded
    recs = [r for r in recs if r["id"] != 7]                       # deleted at the source: extra
    recs.append({"id": 1000, "name": "late", "modified_at": ts(100)})  # arrived late: missing
    recs[50] = {**recs[50], "modified_at": ts(250)}                # updated in place: stale (id 51)
    write(src, "a.jsonl", recs)
    r = verify(src, db)
    assert not r["equal"] and r["outcome"] == "differs"
    assert {c: n for c, n in r["keys"].items() if n} == {"missing": 1, "extra": 1, "stale": 1}
    assert r["sample"]["missing"] == [{"key": [1000], "source": "2025-01-01T01:40:00+00:00", "target": None}]
    assert r["sample"]["extra"] == [{"key": [7], "source": None, "target": "2025-01-01T00:07:00+00:00"}]
    assert r["sample"]["stale"] == [{"key": [51], "source": "2025-01-01T04:10:00+00:00",
                                     "target": "2025-01-01T00:51:00+00:00"}]
    assert 1 <= r["windows"]["differing"] <= 4


def test_repair_reloads_the_differing_windows_and_prunes_only_when_asked(loaded):
    src, db, recs = loaded
    recs = [r for r in recs if r["id"] != 7]
    recs.append({"id": 1000, "name": "late", "modified_at": ts(100)})
    recs[50] = {**recs[50], "modified_at": ts(250)}
    write(src, "a.jsonl", recs)
    r = verify(src, db, repair=True)
    assert r["repair"]["extra_kept"] == 1 and r["repair"]["extra_deleted"] == 0
    after = r["repair"]["after"]
    assert {c: n for c, n in after["keys"].items() if n} == {"extra": 1}
    r = verify(src, db, repair=True, prune_extra=True)
    assert r["repair"]["extra_deleted"] == 1
    assert r["repair"]["after"]["equal"]
    assert verify(src, db)["equal"]
    # the repair went through the loader: its history shows the bounded backfills
    assert any(h["mode"] != "incremental" or h.get("window_lo") for h in hiwater.history(db=db))


def test_repair_exits_0_when_it_left_nothing_to_fix_and_1_when_it_did(loaded, hw):
    """``verify --repair`` in cron: exit 0 once everything it found is repaired (the differences are
    still printed and recorded), 1 when something is left (an extra key without --prune-extra)."""
    src, db, recs = loaded
    recs = recs + [{"id": 1000, "name": "late", "modified_at": ts(100)}]     # missing
    write(src, "a.jsonl", recs)
    r = hw("verify", "--db", db, "-i", src, "--repair", "--json")
    assert r.code == 0, r.out
    [doc] = json.loads(r.out)
    assert not doc["equal"] and doc["keys"]["missing"] == 1 and doc["repaired"]
    assert hw("verify", "--db", db, "-i", src).code == 0
    write(src, "a.jsonl", [x for x in recs if x["id"] != 7])                 # extra
    r = hw("verify", "--db", db, "-i", src, "--repair", "--json")
    assert r.code == 1 and not json.loads(r.out)[0]["repaired"]
    assert hw("verify", "--db", db, "-i", src, "--repair", "--prune-extra").code == 0
    assert hw("check", "--db", db, "--verified", "1d").code == 0


def test_quarantined_records_are_counted_as_such_not_missing(tmp_path):
    src = tmp_path / "landing"
    write(src, "a.jsonl", [{"id": i, "modified_at": ts(i)} for i in range(50)])
    db = str(tmp_path / "t.db")
    hiwater.load(str(src), db=db, table="t", now=NOW)
    # a record the loader refused (a cursor in the future) sits in the quarantine
    write(src, "b.jsonl", [{"id": 500, "modified_at": "2030-01-01T00:00:00"}])
    hiwater.load(str(src), db=db, table="t", now=NOW)
    assert [q["key"] for q in hiwater.quarantine_list(db=db)] == ["[500]"]
    # the source now shows it below the watermark (a clock fixed at the source)
    write(src, "b.jsonl", [{"id": 500, "modified_at": ts(20)}])
    r = verify(src, db)
    assert r["equal"] and r["keys"]["quarantined"] == 1 and r["keys"]["missing"] == 0
    assert r["sample"]["quarantined"][0]["key"] == [500]


def test_windows_at_the_edges_ties_on_a_boundary(tmp_path):
    """Rows exactly on a window boundary belong to the window that starts there, on both sides;
    a difference there is found whatever --by cuts."""
    src = tmp_path / "landing"
    recs = [{"id": i, "modified_at": ts(60 * (i // 10))} for i in range(60)]  # ten rows on each full hour
    write(src, "a.jsonl", recs)
    db = str(tmp_path / "t.db")
    hiwater.load(str(src), db=db, table="t", now=NOW)
    for by in ("1h", "30m", "2h", "1m"):
        assert verify(src, db, by=by)["equal"], by
    write(src, "a.jsonl", recs + [{"id": 999, "modified_at": ts(120)}])   # a tie on the 02:00 boundary
    r = verify(src, db, by="1h")
    assert r["keys"]["missing"] == 1
    [w] = r["differing_windows"]
    assert (w["from"], w["to"]) == ("2025-01-01T02:00:00+00:00", "2025-01-01T02:59:59.999999+00:00")
    assert verify(src, db, by="1h", until=ts(119))["equal"]  # --until below the tie
    assert verify(src, db, by="1h", since=ts(121))["equal"]  # --since above it


def test_integer_cursors_and_an_integer_step(tmp_path):
    src = tmp_path / "landing"
    recs = [{"id": i, "version": 10 * i} for i in range(1000)]
    write(src, "a.jsonl", recs)
    db = str(tmp_path / "t.db")
    hiwater.load(str(src), db=db, table="t", cursor="version")
    r = verify(src, db)
    assert r["equal"] and r["by"] == "500" and r["windows"]["checked"] == 20
    recs[10]["version"] = 105
    write(src, "a.jsonl", recs)
    r = verify(src, db, by=100)
    assert r["keys"]["stale"] == 1 and r["sample"]["stale"][0] == {"key": [10], "source": 105, "target": 100}


def test_naive_timestamps_in_a_zone_with_dst(tmp_path):
    """Wall-clock times across Berlin's autumn change (02:30 happens twice) read as the loader
    reads them (the first of the two)."""
    src = tmp_path / "landing"
    base = dt.datetime(2024, 10, 26, 23, 0)
    recs = [{"id": i, "modified_at": (base + dt.timedelta(minutes=15 * i)).isoformat()} for i in range(24)]
    write(src, "a.jsonl", recs)
    db = str(tmp_path / "t.db")
    hiwater.load(str(src), db=db, table="t", assume_tz="Europe/Berlin", now=NOW)
    assert verify(src, db, by="1h")["equal"]


def test_the_source_changing_after_the_load_is_pending_not_a_defect(loaded):
    """A record updated after the load (its cursor now past the watermark) is not in the checked
    range on the source: the target's older version is the next run's, not an extra row."""
    src, db, recs = loaded
    recs[3] = {**recs[3], "modified_at": ts(400)}
    write(src, "a.jsonl", recs)
    r = verify(src, db)
    assert r["equal"] and r["keys"]["pending"] == 1 and r["keys"]["extra"] == 0


def test_a_load_committing_while_verify_runs_is_moving_not_a_defect(tmp_path, monkeypatch):
    """The source gains a record at the watermark and a load applies it while verify runs: the
    second look sees the key move, so it is reported moving and the stream stays equal."""
    src_db = tmp_path / "app.db"
    con = sqlite3.connect(src_db)
    con.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, v INTEGER)")
    con.executemany("INSERT INTO orders VALUES (?, ?)", [(i, i) for i in range(100)])
    con.commit()
    url = f"sqlite:///{src_db}"
    db = str(tmp_path / "t.db")
    hiwater.load(source_url=url, source_table="orders", db=db, cursor="v")
    con.execute("INSERT INTO orders VALUES (1000, 99)")  # a tie at the watermark, not loaded yet
    con.commit()
    real = R.classify

    def classify_then_load(*a, **kw):
        out = real(*a, **kw)
        hiwater.load(source_url=url, source_table="orders", db=db, cursor="v")  # the cron's run
        return out

    monkeypatch.setattr(R, "classify", classify_then_load)
    [r] = hiwater.verify(db=db, source_url=url)
    assert r["equal"] and r["keys"]["moving"] == 1 and r["keys"]["missing"] == 0
    monkeypatch.setattr(R, "classify", real)
    [r] = hiwater.verify(db=db, source_url=url)
    assert r["equal"] and r["keys"]["moving"] == 0


def test_a_target_holding_other_streams_tables(tmp_path):
    src_a, src_b = tmp_path / "a", tmp_path / "b"
    write(src_a, "x.jsonl", [{"id": i, "modified_at": ts(i)} for i in range(20)])
    write(src_b, "x.jsonl", [{"id": i, "modified_at": ts(i)} for i in range(20, 50)])
    db = str(tmp_path / "t.db")
    hiwater.load(str(src_a), db=db, table="a", now=NOW)
    hiwater.load(str(src_b), db=db, table="b", now=NOW)
    [ra] = hiwater.verify(["a"], db=db, input=str(src_a))
    [rb] = hiwater.verify(["b"], db=db, input=str(src_b))
    assert ra["equal"] and rb["equal"]
    [wrong] = hiwater.verify(["a"], db=db, input=str(src_b))  # b's records lie past a's watermark
    assert wrong["keys"]["missing"] == 0 and wrong["keys"]["extra"] == 20


def test_content_compares_every_column_as_sent(tmp_path):
    """--content catches a source that rewrote a row without moving its cursor; the same values
    hash equal whatever form the target stored them in (a bool as 1, a float as REAL, JSON as text)."""
    src = tmp_path / "landing"
    recs = [{"id": i, "name": f"n{i}", "amt": i + 0.5, "n": i, "ok": i % 2 == 0, "tags": {"b": [i], "a": None},
             "note": None, "code": "007", "modified_at": ts(i)} for i in range(40)]
    write(src, "a.jsonl", recs)
    db = str(tmp_path / "t.db")
    hiwater.load(str(src), db=db, table="t", now=NOW)
    assert verify(src, db, content=True)["equal"]
    recs[5] = {**recs[5], "name": "rewritten"}
    write(src, "a.jsonl", recs)
    assert verify(src, db)["equal"]  # (key, cursor) alone cannot see it
    r = verify(src, db, content=True)
    assert r["keys"]["changed"] == 1 and r["sample"]["changed"][0]["key"] == [5]


def test_data_in_memory_and_the_api_defaults(tmp_path):
    rows = [{"id": i, "modified_at": ts(i)} for i in range(10)]
    db = str(tmp_path / "t.db")
    hiwater.load(rows, db=db, table="t", now=NOW)
    [r] = hiwater.verify(db=db, data=rows)
    assert r["equal"]
    [r] = hiwater.verify(db=db, data=rows[:-1])
    assert r["keys"]["extra"] == 1


def test_nothing_loaded_yet_is_equal_with_a_note(tmp_path):
    src = tmp_path / "landing"
    write(src, "a.jsonl", [{"id": 1, "modified_at": "never"}])
    db = str(tmp_path / "t.db")
    hiwater.load(str(src), db=db, table="t", now=NOW, max_rejected="100%")  # (every record rejected, on purpose)
    [r] = hiwater.verify(db=db, input=str(src))
    assert r["equal"] and r["windows"]["checked"] == 0 and "nothing" in r["note"]


# --- the command line ------------------------------------------------------------------------------

def test_cli_exit_codes_table_and_json(loaded, hw):
    src, db, recs = loaded
    r = hw("verify", "--db", db, "--input", str(src))
    assert r.code == 0 and "events: equal" in r.out and "none differ" in r.out
    r = hw("verify", "--db", db, "--input", str(src), "--json")
    assert r.code == 0 and r.json[0]["windows"]["checked"] > 1
    write(src, "a.jsonl", recs[1:])
    r = hw("verify", "--db", db, "--input", str(src))
    assert r.code == 1 and "1 extra" in r.out
    assert hw("verify", "--db", db).code == 2                      # no source
    assert hw("verify", "--db", db, "--input", str(src), "--by", "soon").code == 2
    assert hw("verify", "--db", db, "--input", str(src), "--prune-extra").code == 2
    assert hw("verify", "nope", "--db", db, "--input", str(src)).code == 2


def test_project_streams_and_their_verify_defaults(tmp_path, hw, monkeypatch):
    src = tmp_path / "landing"
    write(src, "a.jsonl", [{"id": i, "modified_at": ts(i)} for i in range(100)])
    (tmp_path / "hiwater.toml").write_text(
        '[defaults]\ndb = "t.db"\n\n[streams.events]\ninput = "landing"\nverify = "--by 10m"\n')
    monkeypatch.chdir(tmp_path)
    assert hw("run", "--project", "hiwater.toml").code == 0
    r = hw("verify", "--json")
    assert r.code == 0, r.err
    assert r.json[0]["by"] == "10m" and r.json[0]["windows"]["checked"] == 10
    assert hw("verify", "--by", "1h", "--json").json[0]["by"] == "1h"  # the command line wins
    (tmp_path / "hiwater.toml").write_text(
        '[defaults]\ndb = "t.db"\n\n[streams.events]\ninput = "landing"\nverify = "--bogus"\n')
    assert hw("verify").code == 2


# --- the pieces -------------------------------------------------------------------------------------

def test_plan_steps():
    assert parse_step("1d", V.TIMESTAMP) == V.US_PER_DAY
    assert parse_step(250, V.INT) == 250
    with pytest.raises(UsageError):
        parse_step("1d", V.INT)
    with pytest.raises(UsageError):
        parse_step("6h", V.DATE)
    assert default_step(0, 32 * V.US_PER_DAY, V.TIMESTAMP) == V.US_PER_DAY
    assert default_step(0, 64 * V.US_PER_DAY, V.TIMESTAMP) == 7 * V.US_PER_DAY
    assert default_step(0, 10_000, V.INT) == 500
    p = make_plan(V.US_PER_DAY + 5, 3 * V.US_PER_DAY, kind=V.TIMESTAMP, step=V.US_PER_DAY, align=True)
    assert (p.lo, p.count, p.window(1)) == (V.US_PER_DAY, 3, (2 * V.US_PER_DAY, 3 * V.US_PER_DAY - 1))
    assert p.index(3 * V.US_PER_DAY) == 2 and p.index(3 * V.US_PER_DAY + 1) is None
    assert make_plan(None, 5, kind=V.INT) is None


def test_canonical_forms_agree_across_driver_types():
    import decimal
    c = D.canonical
    assert c(7) == c(7.0) == c(decimal.Decimal("7")) == "7"
    assert c(1.5) == c(decimal.Decimal("1.5")) == "1.5" and c(decimal.Decimal("1.50")) == "1.50"
    assert c(True) == "true" and c(None) == D.NULL
    assert c({"b": 1, "a": [1, 2]}) == c('{"a":[1,2],"b":1}') == c('{"a": [1, 2], "b": 1}')
    assert c(dt.datetime(2025, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))) == "2025-01-01T00:00:00.000000Z"
    assert c("007") == "007" and c("not {json") == "not {json"


@pytest.mark.parametrize("flavour", ["sqlite", "duckdb"])
def test_sql_dialects_hash_exactly_as_python(flavour, tmp_path):
    """Every side computes the digest definition of hiwater.verify.digest to the bit."""
    keys = [(1,), (2,), (-3,), (2**40,)]
    curs = [0, -1, 2**62, 1736928000000000]
    if flavour == "sqlite":
        import sqlite3 as mod
        conn = mod.connect(str(tmp_path / "x.db"))
        conn.execute("CREATE TABLE t (id INTEGER, _hiwater_cursor INTEGER)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(k[0], c) for k, c in zip(keys, curs)])
        side = SqlSide("t", conn, "sqlite", '"t"', ["id"], '"_hiwater_cursor"', lambda n: f'"{n}"', placeholder="?",
                       escape=False)
    else:
        import duckdb
        conn = duckdb.connect()
        conn.execute("CREATE TABLE t (id BIGINT, _hiwater_cursor BIGINT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [[k[0], c] for k, c in zip(keys, curs)])
        side = SqlSide("t", conn, "duckdb", '"t"', ["id"], '"_hiwater_cursor"', lambda n: f'"{n}"', placeholder="?",
                       escape=False)
    mem = MemorySide("m", keys, curs)
    plan = make_plan(-1, 2**62, kind=V.INT, step=2**58)
    assert side.windows(plan) == mem.windows(plan)
    top = [(w, 0) for w in side.windows(plan)]
    assert side.buckets(plan, 0, top, 3) == mem.buckets(plan, 0, top, 3)
    second = list(mem.buckets(plan, 0, top, 3))
    assert side.buckets(plan, 3, second, 15) == mem.buckets(plan, 3, second, 15)
    slices = [(w, 3, b) for w, b in second]
    assert side.rows(plan, slices) == mem.rows(plan, slices) != {}
    assert side.lookup([(2,), (9,)]) == {"2": -1}


# --- the property: random tables, random plantings, exactly the planted keys ---------------------------

@st.composite
def planted(draw):
    n = draw(st.integers(0, 400))
    keys = draw(st.lists(st.integers(-10**6, 10**6), min_size=n, max_size=n, unique=True))
    curs = draw(st.lists(st.integers(0, 10_000), min_size=n, max_size=n))
    src = dict(zip(keys, curs))
    tgt = dict(src)
    plan = {"missing": set(), "extra": set(), "stale": set()}
    for k in draw(st.lists(st.sampled_from(keys), unique=True, max_size=12)) if keys else []:
        what = draw(st.sampled_from(["missing", "stale", "extra"]))
        if what == "missing":
            del tgt[k]
        elif what == "stale":
            if src[k] == 0:
                continue
            tgt[k] = draw(st.integers(0, src[k] - 1))
        else:
            del src[k]
        plan[what].add(k)
    for k in draw(st.lists(st.integers(2 * 10**6, 3 * 10**6), unique=True, max_size=5)):
        tgt[k] = draw(st.integers(0, 10_000))
        plan["extra"].add(k)
    return src, tgt, plan, draw(st.integers(1, 3000)), draw(st.sampled_from([1, 4, 64]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted())
def test_property_verify_finds_exactly_the_planted_keys(case):
    src_rows, tgt_rows, plan, step, small = case
    src = MemorySide("s", [(k,) for k in src_rows], list(src_rows.values()))
    tgt = MemorySide("t", [(k,) for k in tgt_rows], list(tgt_rows.values()))
    hi = 10_000
    p = make_plan(0, hi, kind=V.INT, step=step)
    ws, wt = src.windows(p), tgt.windows(p)
    bad = differing(ws, wt)
    found = bisect(src, tgt, p, [(i, max(ws.get(i, (0, 0))[0], wt.get(i, (0, 0))[0])) for i in bad], small=small)
    lone_s = [r.key for t, r in found.source.items() if t not in found.target]
    lone_t = [r.key for t, r in found.target.items() if t not in found.source]
    diffs = classify(found, src.lookup(lone_t), tgt.lookup(lone_s), until=hi)
    got = {"missing": set(), "extra": set(), "stale": set()}
    for d in diffs:
        got[d.kind].add(d.key[0])
    assert got == plan


def test_the_target_from_the_environment(loaded, hw, monkeypatch):
    src, db, _ = loaded
    monkeypatch.setenv("HIWATER_TARGET_URL", f"sqlite:///{db}")
    r = hw("verify", "--input", str(src), "--json")
    assert r.code == 0 and r.json[0]["equal"]


def test_differences_in_separate_and_adjacent_windows_and_below_the_source(tmp_path):
    """Each round reads only the differing windows' cursor ranges (adjacent ones as one range),
    and the plan starts at the source's smallest cursor unless the target holds a row below it:
    every planted key is named either way (a SQLite target, text keys: md5, windows of 200 rows,
    so bucket rounds run)."""
    src = tmp_path / "in"
    write(src, "a.jsonl", [{"id": f"k{i:04d}", "modified_at": ts(1000 + i // 2)} for i in range(2000)])
    db = str(tmp_path / "t.db")
    hiwater.load(str(src), db=db, table="events", now=NOW)
    con = sqlite3.connect(db)
    con.execute("DELETE FROM events WHERE id IN ('k0005', 'k0399', 'k0400', 'k1995')")  # windows 0, 1, 1, 9
    cur = V.parse_bound(ts(900), V.TIMESTAMP, dt.timezone.utc, "x")[0]
    con.execute("INSERT INTO events (id, modified_at, _hiwater_cursor, _hiwater_run) VALUES ('old', ?, ?, 1)",
                (ts(900), cur))                                                    # below the source's first
    con.commit()
    con.close()
    [r] = hiwater.verify(db=db, input=str(src), by="100m")
    assert {s["key"][0] for s in r["sample"]["missing"]} == {"k0005", "k0399", "k0400", "k1995"}
    assert [s["key"][0] for s in r["sample"]["extra"]] == ["old"] and r["since"] <= ts(900)
    assert r["keys"]["missing"] == 4 and r["keys"]["extra"] == 1 and sum(r["keys"].values()) == 5

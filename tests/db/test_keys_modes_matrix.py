"""One multi-run story through every key kind × mode × target, against a reference model.

The differential suite (test_differential.py) plays every format through every target with an
integer key and incremental runs; this one holds the format (JSON Lines) and plays the key kinds
and the modes a user switches between:

- keys: an integer; a text (``"007"`` and ``"7"``, ``"7 "``, unicode in two normal forms, a
  comma, a quote and a space, the empty text, which SPEC §3 does not call missing); a composite
  (integer + text); a composite whose column names need quoting (``order id``, ``select``);
- modes: incremental; ``full_load`` (a same-cursor row whose content changed is rewritten);
  ``full_load`` + ``prune``; a ``since``/``until`` backfill; ``window`` slices; ``delete_field``;
  late records quarantined and ``quarantine replay``;
- targets: every one of ``dbutil.TARGETS`` (MariaDB is a source only).

After every run the table read back with the target's own driver (readback.connect), the summary's
counts and watermark, and the quarantine must equal the model's (and so each other's).
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hiwater

from .dbutil import PG_URL, TARGETS, fresh_name
from .readback import connect, instant, kind_of

BASE = dt.datetime(2025, 1, 15)
NOW = "2025-01-16T00:00:00Z"
TABLE = "matrix"
CURSOR = "modified_at"
GONE = "gone"
DELETED_AT = "deleted_at"
COUNTS = ["source_records", "inserted", "updated", "unchanged", "late", "late_applied", "rejected",
          "below_window", "deleted", "beyond_until", "pruned", "total_in_target", "new_watermark"]

# Each key kind: its key columns and the key values a story picks from (by index).
TEXTS = ["007", "7", "7 ", "\u00e9t\u00e9", "e\u0301te\u0301", 'a, "b" c', "", "東京😀"]
KEY_KINDS = {
    "int": (["id"], [(v,) for v in [7, 0, -3, 2**40, 1, 2, 3, 4]]),
    "text": (["id"], [(v,) for v in TEXTS]),
    "composite": (["a", "b"], [(1, "007"), (1, "7"), (7, ""), (7, "7"), (0, "é, ü"), (2**40, 'q"'),
                               (-1, " "), (1, "")]),
    "quoted": (["order id", "select"], [(1, "007"), (1, "7"), (7, ""), (7, "7"), (0, "é, ü"),
                                        (2**40, 'q"'), (-1, " "), (1, "")]),
}
MISSING = "<missing>"  # a record without the field at all
NAMES = ["a", "007", "1.50", "true", "line1\nline2", 'say "hi", ok', "", None, MISSING]


def iso(minute: int) -> str:
    return (BASE + dt.timedelta(minutes=minute)).isoformat()


def record(kind: str, k, minute, name=None, gone=False) -> dict:
    """One source record: key index ``k`` (None: a null key), cursor ``minute`` (None: null,
    a string: that text as the cursor)."""
    cols, values = KEY_KINDS[kind]
    r = {c: (None if k is None else values[k][i]) for i, c in enumerate(cols)}
    r[CURSOR] = minute if minute is None or isinstance(minute, str) else iso(minute)
    if name != MISSING:
        r["name"] = name
    r[GONE] = gone
    return r


def present(r: dict) -> dict:
    """A row's fields that hold a value: a field missing from a record and a null are one thing
    to the table (and a column no record filled yet may not exist)."""
    return {k: v for k, v in r.items() if v is not None}


# --- the reference model ---------------------------------------------------------------------

class Model:
    """SPEC §3-§5 for this story, record by record: inclusive boundary, no lookback, ``--on-late
    detect`` (``load`` on a replay), hard deletes, one batch per run."""

    def __init__(self, key: list):
        self.key = key
        self.rows: dict = {}   # key tuple -> record
        self.wm: str | None = None
        self.q: dict = {}      # (reason, record json) -> record, first seen first

    def _key(self, r):
        k = tuple(r.get(c) for c in self.key)
        return None if any(v is None for v in k) else k

    def run(self, records, mode: str, since=None, until=None) -> dict:
        mode = mode.removesuffix("+window")  # slices change nothing the model sees
        full = mode in ("full", "prune")
        on_late = "load" if mode == "replay" else "detect"
        c = Counter()
        places = []
        for r in records:
            m = r.get(CURSOR)
            if self._key(r) is None or not isinstance(m, str) or not m[:1].isdigit():
                places.append("invalid")
            elif mode == "backfill" and m < since:
                places.append("outside")
            elif mode == "backfill" and m >= until:
                places.append("beyond")
            elif full or mode == "backfill" or self.wm is None or m >= self.wm:
                places.append("in")
            else:
                places.append("below")
        best: dict = {}
        for i, p in enumerate(places):
            if p in ("in", "below"):
                k = self._key(records[i])
                if k not in best or records[i][CURSOR] >= records[best[k]][CURSOR]:
                    best[k] = i
        candidate = None
        quarantined = []
        for i, (r, p) in enumerate(zip(records, places)):
            k, m = self._key(r), r.get(CURSOR)
            if p == "invalid":
                c["rejected"] += 1
                quarantined.append(("invalid", r))
                continue
            if p in ("outside", "beyond"):
                c["below_window"] += 1
                c["beyond_until"] += p == "beyond"
                continue
            if p == "in":
                candidate = m if candidate is None else max(candidate, m)
            if best[k] != i:
                c["unchanged"] += 1
                continue
            held = self.rows.get(k)
            delete = mode in ("delete", "soft-delete") and r[GONE] is True
            changes = (held is None and not delete) or (held is not None and m > held[CURSOR])
            if not changes:
                if full and held is not None and held[CURSOR] == m and not delete and present(held) != present(r):
                    c["updated"] += 1      # a full load rewrites a same-cursor row whose content changed
                    self.rows[k] = r
                else:
                    c["unchanged"] += 1
            elif p == "below" and on_late == "detect":
                c["late"] += 1
                quarantined.append(("late", r))
            else:
                c["late_applied"] += p == "below"
                if delete:
                    c["updated"] += 1
                    c["deleted"] += 1
                    if mode == "soft-delete":  # the row stays, with deleted_at: the delete's cursor as sent
                        self.rows[k] = {**r, DELETED_AT: m}
                    else:
                        del self.rows[k]
                else:
                    c["inserted" if held is None else "updated"] += 1
                    self.rows[k] = r
        if mode == "prune":
            seen = {self._key(r) for r in records}
            gone = [k for k in self.rows if k not in seen]
            for k in gone:
                del self.rows[k]
            c["pruned"] = len(gone)
        if mode == "replay":
            self.q = {}
        for reason, r in quarantined:
            self.q.setdefault((reason, json.dumps(r, sort_keys=True, ensure_ascii=False)), r)
        if full:
            self.wm = candidate  # from the data: none when no usable record (accepted by --max-rejected 100%)
        elif mode == "backfill":
            if self.wm is not None and since <= self.wm and candidate is not None:
                self.wm = max(self.wm, min(candidate, until))
        elif candidate is not None:
            self.wm = candidate if self.wm is None else max(self.wm, candidate)
        c["source_records"] = len(records)
        c["total_in_target"] = len(self.rows)
        c["new_watermark"] = self.wm
        return {k: c.get(k, 0) if k != "new_watermark" else c[k] for k in COUNTS}

    def replay(self) -> dict:
        return self.run(list(self.q.values()), "replay")


# --- playing a story against a target ---------------------------------------------------------

def options(mode: str, key: list, since=None, until=None) -> dict:
    o = dict(key=key, table=TABLE, now=NOW, max_rejected="100%")
    if mode.endswith("+window"):  # the same run in --window slices: the same end
        o["window"] = "10m"
        mode = mode[:-len("+window")]
    if mode in ("full", "prune"):
        o["full_load"] = True
    if mode == "prune":
        o["prune"] = True
    if mode == "window":
        o["window"] = "10m"
    if mode == "backfill":
        o.update(since=since, until=until)
    if mode in ("delete", "soft-delete"):
        o["delete_field"] = GONE
    if mode == "soft-delete":
        o["soft_delete"] = True
    return o


def _cell(col: str, v):
    if col == CURSOR:
        return instant(v)
    if col == GONE and type(v) is int and v in (0, 1):  # SQLite has no boolean: 0/1
        return bool(v)
    return v


def _record_text(text) -> str:
    return json.dumps(json.loads(text), sort_keys=True, ensure_ascii=False)


def snapshot(url: str, key: list, counts) -> dict:
    """The run's counts, the table as the target's own driver reads it (``{key tuple: record}``,
    the cursor as a naive UTC instant, a key held twice as a list) and the quarantine's
    ``(reason, record)`` pairs, read in one connection (Delta: the quarantine through hiwater)."""
    table: dict = {}
    with connect(url) as con:
        try:
            cur = con.execute(f'SELECT * FROM "{TABLE}"')
        except Exception:  # noqa: BLE001 - no table yet: every record so far was rejected
            cur = None  # (PostgreSQL's test connection is in autocommit: nothing to roll back)
        names = [d[0] for d in cur.description] if cur is not None else []
        for row in cur.fetchall() if cur is not None else []:
            r = present({c: _cell(c, v) for c, v in zip(names, row) if not c.startswith("_hiwater_")})
            k = tuple(r.get(c) for c in key)
            table[k] = r if k not in table else [table[k], r]
        if kind_of(url).startswith("delta"):
            rows = [(q["reason"], q["record"]) for q in hiwater.quarantine_list(target=url, stream=TABLE)]
        else:
            ph = "%s" if kind_of(url) == "postgresql" else "?"
            rows = con.execute(f"SELECT reason, record FROM _hiwater_quarantine WHERE stream = {ph}", [TABLE]).fetchall()
    quarantine = sorted(((reason, _record_text(rec)) for reason, rec in rows), key=repr)
    return {"counts": counts, "table": table, "quarantine": quarantine}


def model_table(model: Model) -> dict:
    return {k: present({**r, CURSOR: instant(r[CURSOR])}) for k, r in model.rows.items()}


def model_quarantine(model: Model) -> list:
    return sorted(model.q, key=repr)


def summary_counts(s) -> dict:
    d = s.to_dict(details=True)
    out = {k: d.get(k, 0) if k != "new_watermark" else d[k] for k in COUNTS}
    # a warning that says where the watermark stays says where it is
    for w in s.warnings:
        if "the watermark stays at " in w:
            said = w.split("the watermark stays at ", 1)[1].split(" ")[0]
            if said != str(d["new_watermark"]):
                out["warning"] = w
    return out


def play(url: str, kind: str, runs, tmp: Path, batch_size: int = 65_536) -> list[dict]:
    """Each run's ``{counts, table, quarantine}`` (``error`` where a run raised; the story stops)."""
    key = KEY_KINDS[kind][0]
    out = []
    for n, (mode, records, since, until) in enumerate(runs):
        try:
            if mode == "replay":
                s = hiwater.quarantine_replay(target=url, stream=TABLE, now=NOW, max_rejected="100%",
                                              batch_size=batch_size)
            else:
                path = tmp / f"run{n}.jsonl"
                path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                                encoding="utf-8")
                s = hiwater.load(str(path), target=url, batch_size=batch_size, **options(mode, key, since, until))
            out.append(snapshot(url, key, summary_counts(s)))
        except Exception as exc:  # noqa: BLE001 - reported as the run's result
            out.append({"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"})
            break
    return out


def expect(kind: str, runs) -> list[dict]:
    model = Model(KEY_KINDS[kind][0])
    out = []
    for mode, records, since, until in runs:
        c = model.replay() if mode == "replay" else model.run(records, mode, since, until)
        out.append({"counts": c, "table": model_table(model), "quarantine": model_quarantine(model)})
    return out


# A delete record after a version of its key that an earlier batch of the same run wrote counts as
# a delete (docs/concepts.md: "a delete counts as itself in any batch"), where in one batch that
# version is superseded: such a run's inserted/updated/deleted/unchanged depend on the batches.
BATCH_DEPENDENT = ("inserted", "updated", "deleted", "unchanged")


def problems(got: list[dict], want: list[dict], runs, batch_size: int = 65_536) -> list[str]:
    lines = []
    for n, (g, w) in enumerate(zip(got + [None] * len(want), want)):
        mode, records = runs[n][0], runs[n][1]
        if g is None:
            break
        if "error" in g:
            lines.append(f"run {n} ({mode}) failed: {g['error']}")
            break
        loose = "delete" in mode and (batch_size < len(records) or "window" in mode)
        diff = {k: (g["counts"].get(k), w["counts"].get(k)) for k in sorted(set(g["counts"]) | set(w["counts"]))
                if g["counts"].get(k) != w["counts"].get(k) and not (loose and k in BATCH_DEPENDENT)}
        if diff:
            lines.append(f"run {n} ({mode}) counts (got, model): {diff}")
        for k in sorted(set(g["table"]) | set(w["table"]), key=repr):
            if g["table"].get(k) != w["table"].get(k):
                lines.append(f"run {n} ({mode}) key {k!r}: got {g['table'].get(k)!r}, model {w['table'].get(k)!r}")
        if g["quarantine"] != w["quarantine"]:
            lines.append(f"run {n} ({mode}) quarantine: got {g['quarantine']}, model {w['quarantine']}")
    return lines


class Targets:
    """Fresh targets of every kind for one story (PostgreSQL: a schema dropped at the end)."""

    def __init__(self, admin_getter):
        self.admin_getter = admin_getter
        self.schemas: list[str] = []

    def url(self, kind: str, tmp: Path) -> str:
        if kind == "postgresql":
            admin = self.admin_getter()
            self.schemas.append(fresh_name())
            admin.execute(f'CREATE SCHEMA "{self.schemas[-1]}"')
            return f"{PG_URL}?schema={self.schemas[-1]}"
        if kind == "delta":
            return f"delta://{tmp / 'lake'}"
        return f"{kind}:///{tmp / ('t.' + kind)}"

    def drop(self):
        for s in self.schemas:
            self.admin_getter().execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')
        self.schemas.clear()


def check_story(kind: str, runs, targets: Targets, targets_list=TARGETS, batch_size: int = 65_536) -> None:
    want = expect(kind, runs)
    report = []
    results = {}
    try:
        for t in targets_list:
            with tempfile.TemporaryDirectory() as d:
                results[t] = play(targets.url(t, Path(d)), kind, runs, Path(d), batch_size)
    finally:
        targets.drop()
    for t, got in results.items():
        found = problems(got, want, runs, batch_size)
        if found:
            report.append(f"{t}:")
            report.extend("  " + line for line in found[:12])
    assert not report, (f"{kind} key, batch size {batch_size}, runs {[r[0] for r in runs]}:\n"
                        + "\n".join(report))


@pytest.fixture(scope="module")
def targets(request):
    cache = []

    def admin():
        if not cache:
            cache.append(request.getfixturevalue("pg_admin"))
        return cache[0]
    t = Targets(admin)
    yield t
    t.drop()


# --- the deterministic story -------------------------------------------------------------------

def story(kind: str) -> list[tuple]:
    """A day of ordinary trouble: a first load with ties, nulls and a bad cursor; late data; a
    backfill; a re-export whose same-cursor rows changed (full load); deletes; windowed catch-up;
    a replay of the quarantine; an export that lost keys (prune)."""
    R = lambda k, m, name="a", gone=False: record(kind, k, m, name, gone)  # noqa: E731
    first = [R(0, 10, "a"), R(1, 10, "b"), R(2, 20, "007"), R(3, 20, ""), R(4, 30, None), R(5, 30, "x"),
             R(6, 40, 'say "hi", ok'), R(7, 40, "line1\nline2"), R(None, 40), R(1, None), R(2, "yesterday"),
             R(0, 10, "a again")]  # a tie on key 0: the later record wins
    late = [R(0, 5, "older"), R(1, 10, "b"), R(2, 35, "late change"), R(3, 45, "new")]
    backfill = [R(0, 0, "old"), R(1, 15, "backfilled"), R(2, 50, "beyond"), R(4, 20, "below old")]
    reexport = [R(0, 10, "a again"), R(1, 15, "changed, same cursor"), R(2, 20, "007"), R(3, 45, "new"),
                R(4, 30, "now named"), R(5, 30, "x"), R(6, 40, 'say "hi", ok'), R(7, 40, "line1\nline2")]
    deletes = [R(0, 50, gone=True), R(5, 50, "kept", gone=False), R(6, 41, gone=True),
               R(7, 30, gone=True), R(None, 50, gone=True)]
    windowed = [R(0, 52, "back"), R(1, 55, "w1"), R(2, 60, "w2"), R(2, 75, "w2b"), R(6, 80, "w6"),
                R(3, 44, "late again")]
    pruned = [R(1, 55, "w1"), R(2, 75, "w2b"), R(6, 80, "w6 renamed"), R(None, 90)]
    return [("incremental", first, None, None), ("incremental", late, None, None),
            ("backfill", backfill, iso(10), iso(40)), ("full", reexport, None, None),
            ("full", [R(None, 50), R(1, None), R(2, "not a time")], None, None),  # all rejected: no watermark
            ("delete", deletes, None, None), ("window", windowed, None, None),
            ("replay", [], None, None), ("prune", pruned, None, None),
            ("incremental", [R(4, 90, "after prune"), R(3, 10, "late after prune")], None, None),
            # a newer version without the field: the row is the new version, never a mix of two
            ("incremental", [R(4, 95, MISSING), R(6, 95, MISSING, gone=True)], None, None)]


def test_the_model_tells_the_story_it_is_meant_to():
    got = [(c["counts"]["inserted"], c["counts"]["updated"], c["counts"]["late"], c["counts"]["pruned"])
           for c in expect("int", story("int"))]
    assert got[0] == (8, 0, 0, 0)                    # 8 keys; 3 rejected; one tie superseded
    assert got[1][2] == 1 and got[3][1] >= 2         # a late insert; the full load rewrites same-cursor rows
    assert got[8][3] > 0 and got[5][1] >= 2          # the prune deletes keys; deletes count as updated


# The default suite plays every key kind on SQLite and PostgreSQL, and the text keys and the
# quoted composite on DuckDB and Delta too (the slower targets); the rest runs under -m slow.
FAST = {"int": ["sqlite", "postgresql"], "composite": ["sqlite", "postgresql"], "text": TARGETS, "quoted": TARGETS}


@pytest.mark.parametrize("kind", list(KEY_KINDS))
def test_the_story_matches_the_model_on_every_target(kind, targets):
    check_story(kind, story(kind), targets, [t for t in TARGETS if t in FAST[kind]])


@pytest.mark.slow
@pytest.mark.parametrize("kind", [k for k in KEY_KINDS if set(FAST[k]) != set(TARGETS)])
def test_the_story_matches_the_model_on_the_other_targets(kind, targets):
    check_story(kind, story(kind), targets, [t for t in TARGETS if t not in FAST[kind]])


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("kind", list(KEY_KINDS))
def test_the_story_in_small_batches_matches_the_model(kind, batch_size, targets):
    check_story(kind, story(kind), targets, batch_size=batch_size)


def test_a_windowed_run_counts_a_superseded_late_version_once_whatever_the_batches(targets):
    """A ``--window`` run whose source holds a key's version below the watermark and a newer
    one (below it too, or inside the window) in another batch: the older is superseded,
    ``unchanged``, not quarantined ``late``, as in one batch (the late records of the window's
    first transaction used to be settled before the slices applied the newer versions)."""
    R = lambda k, m, name="a": record("text", k, m, name)  # noqa: E731
    runs = [("incremental", [R(0, 20)], None, None),
            ("window", [R(1, 0, "old"), R(1, 5, "newer, still late"), R(2, 1, "old"), R(2, 30, "in the window"),
                        R(3, 2, "late alone")], None, None),
            ("replay", [], None, None)]
    check_story("text", runs, targets, batch_size=1)


@pytest.mark.parametrize("mode", ["delete", "delete+window"])
def test_a_delete_in_another_batch_supersedes_a_late_version_of_its_key(mode, targets):
    """A key deleted by a newer record of the run (before or after an older, late version of it,
    in another batch): the late version is superseded, not quarantined, as in one batch, so a
    quarantine replay cannot bring the deleted key back."""
    R = lambda k, m, gone=False: record("composite", k, m, "a", gone)  # noqa: E731
    runs = [("incremental", [R(1, 1), R(2, 1), R(0, 5)], None, None),
            (mode, [R(1, 3), R(1, 10, gone=True), R(2, 10, gone=True), R(2, 3), R(3, 2), R(3, 2, gone=True)],
             None, None),
            ("replay", [], None, None)]
    check_story("composite", runs, targets, batch_size=1)


def test_a_full_load_of_nothing_says_where_the_watermark_went(targets):
    """A full load of an empty source sets the watermark from no data: none. Its warning said
    the watermark stayed where it was."""
    R = lambda k, m: record("int", k, m)  # noqa: E731
    check_story("int", [("incremental", [R(0, 10), R(1, 20)], None, None), ("full", [], None, None),
                        ("incremental", [R(2, 5)], None, None)], targets, ["sqlite"])


# --- random stories ---------------------------------------------------------------------------

MODES = ["incremental", "incremental", "full", "prune", "backfill", "window", "delete", "soft-delete",
         "full+window", "backfill+window", "delete+window", "replay"]


@st.composite
def runs_st(draw, max_runs=5):
    runs = []
    for n in range(draw(st.integers(1, max_runs))):
        mode = draw(st.sampled_from(MODES[:-1] if n == 0 else MODES))  # (a replay needs a stream)
        recs = draw(st.lists(st.tuples(
            st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, None]),
            st.sampled_from([0, 5, 10, 15, 20, 30, None, "not a time"]),
            st.sampled_from(NAMES), st.booleans()), min_size=1 if mode == "prune" else 0, max_size=8))
        since = until = None
        if mode.startswith("backfill"):
            lo = draw(st.sampled_from([0, 5, 10, 15]))
            since, until = iso(lo), iso(lo + draw(st.sampled_from([5, 10, 30])))
        runs.append((mode, recs, since, until))
    return runs


def materialise(kind: str, runs) -> list[tuple]:
    return [(mode, [record(kind, k, m, name, gone) for k, m, name, gone in recs], since, until)
            for mode, recs, since, until in runs]


@settings(max_examples=3, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(list(KEY_KINDS)), runs=runs_st(), batch_size=st.sampled_from([65_536, 1, 3]))
def test_random_stories_match_the_model(kind, runs, batch_size, targets):
    check_story(kind, materialise(kind, runs), targets, batch_size=batch_size)


@pytest.mark.slow
@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(list(KEY_KINDS)), runs=runs_st(max_runs=7), batch_size=st.sampled_from([65_536, 1, 3]))
def test_many_random_stories_match_the_model(kind, runs, batch_size, targets):
    check_story(kind, materialise(kind, runs), targets, batch_size=batch_size)

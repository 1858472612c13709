"""4. Model-based testing: a hypothesis state machine against a reference model of SPEC §3.

The model below is written from the spec's words, not from hiwater's code: a target is a
dict ``id -> (cursor, name)``, a watermark, and a set of quarantined records. The machine
mutates a source between runs (new records, updates in place or appended, late arrivals
below the watermark, ties at the watermark, the same instant written with another offset,
far-future and invalid cursors, null keys, truncation, reordering), runs real loads with
random options (boundary, lookback, on-late, window, batch size, full load, JSON or JSON
Lines), kills loads in the middle (SIGKILL at a random database operation) and after
their last commit, and after every step compares the real SQLite target with the model.

``HIWATER_MODEL_EXAMPLES`` (CI default 120; full run 2,000), ``HIWATER_MODEL_STEPS``
(default 12 steps per example).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import hiwater

from .harness import LOST, check_consistent, copy_db, env_int, run, snapshot

pytestmark = pytest.mark.reliability

BASE = dt.datetime(2025, 1, 15, tzinfo=dt.timezone.utc)
NOW = BASE + dt.timedelta(days=2)
MINUTE = 60_000_000
US = lambda d: int((d - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)).total_seconds()) * 1_000_000  # noqa: E731
MAX_FUTURE = US(NOW + dt.timedelta(days=1))
LOOKBACK = {None: 0, "30m": 30 * MINUTE, "2h": 120 * MINUTE}
OFFSETS = [None, 0, 60, -330, 345]  # naive (UTC), Z, +01:00, -05:30, +05:45
INVALID = ["garbage", "", "2025-13-01T00:00:00", "2025-01-15T25:00:00", None, "MISSING"]


def text(minute: int, offset) -> str:
    """The instant BASE + minute, written naive or with an offset of ``offset`` minutes."""
    t = BASE + dt.timedelta(minutes=minute)
    if offset is None:
        return t.replace(tzinfo=None).isoformat()
    if offset == 0:
        return t.replace(tzinfo=None).isoformat() + "Z"
    return t.astimezone(dt.timezone(dt.timedelta(minutes=offset))).isoformat()


def instant(record) -> int | None:
    """The spec's reading of a cursor: an instant in microseconds, or None if invalid."""
    v = record.get("modified_at")
    if not isinstance(v, str):
        return None
    try:
        d = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.timezone.utc)
    return US(d) + d.microsecond


class Model:
    """SPEC §3 for one stream: what the target, the watermark and the quarantine must be."""

    def __init__(self):
        self.rows: dict = {}        # id -> (cursor, name)
        self.wm: int | None = None
        self.quarantine: set = set()
        # Known limitation (docs/concepts.md): with --window, an older version below the window
        # that a newer version of its key supersedes in the same run, but in another batch
        # (--batch-size), is quarantined as late as well. These entries may appear.
        self.superseded: set = set()

    def copy(self):
        m = Model()
        m.rows, m.wm, m.quarantine = dict(self.rows), self.wm, set(self.quarantine)
        m.superseded = set(self.superseded)
        return m

    def run(self, source: list, o: dict) -> dict:
        counts = dict(rejected=0, future=0)
        full = o["full_load"]
        lo = None if full or self.wm is None else self.wm - LOOKBACK[o["lookback"]]
        inclusive = o["boundary"] == "inclusive"
        examined = []   # (cursor, position, record, in_window)
        in_window_max = None
        for pos, r in enumerate(source):
            c = instant(r)
            if r.get("id") is None or c is None:
                counts["rejected"] += 1
                self.quarantine.add(("invalid", r.get("id"), _cur(r), r.get("name")))
                continue
            if c > MAX_FUTURE:
                counts["future"] += 1
                self.quarantine.add(("future", r["id"], _cur(r), r.get("name")))
                continue
            inside = lo is None or (c >= lo if inclusive else c > lo)
            if inside:
                in_window_max = c if in_window_max is None else max(in_window_max, c)
                examined.append((c, pos, r, True))
            elif o["on_late"] != "skip":
                examined.append((c, pos, r, False))
        if source and counts["rejected"] == len(source):
            # every record rejected (docs/concepts.md): the run fails but commits its quarantine;
            # the rows and the watermark stay as they were (a full load's too)
            counts["failed"] = True
            return counts
        # several records with one key: the newest cursor wins; on a tie, the later one
        best: dict = {}
        for c, pos, r, inside in examined:
            b = best.get(r["id"])
            if b is None or (c, pos) > (b[0], b[1]):
                best[r["id"]] = (c, pos, r, inside)
        for c, pos, r, inside in examined:
            b = best[r["id"]]
            held = self.rows.get(r["id"])
            bs = o["batch_size"]
            if (not inside and b[1] != pos and (held is None or held[0] < c) and o["on_late"] == "detect"
                    and pos // bs != b[1] // bs and o["window"] is not None):
                self.superseded.add(("late", r["id"], _cur(r), r.get("name")))
        new_rows = dict(self.rows)
        for k, (c, pos, r, inside) in best.items():
            held = self.rows.get(k)
            if full and held is not None and held[0] == c and held[1] != r.get("name"):
                new_rows[k] = (c, r.get("name"))  # a full load distrusts the cursor: content counts
                continue
            if held is not None and held[0] >= c:
                continue                      # unchanged: never regress
            if inside or o["on_late"] == "load":
                new_rows[k] = (c, r.get("name"))
            else:
                self.quarantine.add(("late", k, _cur(r), r.get("name")))
        self.rows = new_rows
        if full:
            self.wm = in_window_max           # set from the data (None when nothing was examined)
        elif in_window_max is not None:
            self.wm = in_window_max if self.wm is None else max(self.wm, in_window_max)
        return counts


def refused(source: list) -> bool:
    """Issue 10 #13: a --key or --cursor that no record of the source has is a usage error
    (exit 2, nothing changes), not a run that quarantines every record."""
    return bool(source) and (all("id" not in r for r in source) or all("modified_at" not in r for r in source))


def _cur(r):
    v = r.get("modified_at")
    return None if v is None else str(v)


def read_target(db: Path):
    con = sqlite3.connect(db)
    try:
        have = con.execute("SELECT 1 FROM sqlite_master WHERE name='events'").fetchone()
        rows = {} if not have else {
            i: (c, n) for i, n, c in con.execute('SELECT id, name, "_hiwater_cursor" FROM events')}
        st_ = con.execute("SELECT 1 FROM sqlite_master WHERE name='_hiwater_state'").fetchone()
        wm = None
        q = set()
        if st_:
            r = con.execute("SELECT watermark FROM _hiwater_state WHERE stream='events'").fetchone()
            wm = r[0] if r else None
            for reason, rec in con.execute("SELECT reason, record FROM _hiwater_quarantine"):
                d = json.loads(rec)
                q.add((reason, d.get("id"), _cur(d), d.get("name")))
        return rows, wm, q
    finally:
        con.close()


options = st.fixed_dictionaries({
    "boundary": st.sampled_from(["inclusive", "exclusive"]),
    "lookback": st.sampled_from([None, "30m", "2h"]),
    "on_late": st.sampled_from(["detect", "skip", "load"]),
    "window": st.sampled_from([None, None, "1h", "3h"]),
    "batch_size": st.sampled_from([1, 2, 3, 1000]),
    "full_load": st.sampled_from([False] * 7 + [True]),
    "format": st.sampled_from(["jsonl", "json"]),
})


change = st.tuples(
    st.sampled_from(["add", "add", "add", "update", "update", "late", "tie", "tie", "offset", "bad",
                     "truncate", "reorder"]),
    st.integers(0, 1000), st.integers(0, 600), st.integers(0, 1000))
changes = st.lists(change, min_size=1, max_size=6)


class LoaderMachine(RuleBasedStateMachine):
    """One source, one SQLite target, one model."""

    @initialize()
    def setup(self):
        self.dir = Path(tempfile.mkdtemp(prefix="hw-model-"))
        self.db = self.dir / "t.db"
        self.source: list = []
        self.model = Model()
        self.next_id = 1
        self.runs = 0

    def teardown(self):
        shutil.rmtree(getattr(self, "dir", "/nonexistent"), ignore_errors=True)

    # --- the source changes (applied in groups, each group followed by a run) ----------
    def apply(self, change):
        kind, a, b, c = change
        ids = [r["id"] for r in self.source if r.get("id") is not None]
        wm_min = None if self.model.wm is None else (self.model.wm - US(BASE)) // MINUTE
        if wm_min is not None and wm_min > 5000:
            wm_min = None  # a full load may have set it from a future record
        if kind == "add":              # new records, a few sharing one cursor (spread 0)
            for j in range(a % 4 + 1):
                self._add({"id": self._id(), "name": f"v{self.next_id}", "modified_at": text(b + j * (c % 3) * 7, OFFSETS[c % 5])})
        elif kind == "update" and self.source:   # a new version: in place, or appended
            i = a % len(self.source)
            cur = instant(self.source[i])
            base = (cur - US(BASE)) // MINUTE if cur is not None and cur < US(BASE) + 5000 * MINUTE else 300
            new = {"id": self.source[i].get("id"), "name": f"u{self._id()}",
                   "modified_at": text(max(base + b - 30, 0), OFFSETS[c % 5])}
            if c % 2:
                self.source[i] = new
            else:
                self._add(new)
        elif kind == "late" and wm_min is not None:    # committed late at the source
            self._add({"id": self._id(), "name": f"l{self.next_id}", "modified_at": text(max(wm_min - 1 - b % 300, 0), OFFSETS[c % 5])})
        elif kind == "tie" and wm_min is not None:     # at exactly the watermark's instant
            i = ids[a % len(ids)] if ids and c % 2 else self._id()
            self._add({"id": i, "name": f"t{self._id()}", "modified_at": text(wm_min, OFFSETS[c % 5])})
        elif kind == "offset" and self.source:         # the same instant, written another way
            i = a % len(self.source)
            cur = instant(self.source[i])
            if cur is not None and cur < US(BASE) + 5000 * MINUTE:
                self.source[i] = {**self.source[i], "modified_at": text((cur - US(BASE)) // MINUTE, OFFSETS[c % 5])}
        elif kind == "bad":
            r = {"id": self._id(), "name": f"b{self.next_id}"}
            if a % 3 == 0:
                r["modified_at"] = text(5 * 1440 + b, 0)         # far future
            elif a % 3 == 1:
                if INVALID[c % len(INVALID)] != "MISSING":
                    r["modified_at"] = INVALID[c % len(INVALID)]
            else:
                r["id"] = None
                r["modified_at"] = text(b, None)
            self._add(r)
        elif kind == "truncate" and len(self.source) > 2:
            del self.source[: a % 5 + 1]
        elif kind == "reorder":
            import random
            random.Random(a).shuffle(self.source)

    # --- runs ---------------------------------------------------------------------------
    @rule(changes=changes, o=options)
    def change_and_load(self, changes, o):
        for ch in changes:
            self.apply(ch)
        self.load(o)

    @rule(changes=changes, o=options, at=st.integers(1, 60), after=st.booleans())
    def change_and_kill(self, changes, o, at, after):
        for ch in changes:
            self.apply(ch)
        self.load_killed(o, at, after)

    @rule(o=options)
    def load(self, o):
        argv, kw = self._argv(o)
        if refused(self.source):  # no record has the key or the cursor field: a usage error
            with pytest.raises(hiwater.errors.UsageError, match="no record of"):
                hiwater.load(str(self._write(o)), db=str(self.db), **kw)
            return
        expected = self.model.copy()
        counts = expected.run(self.source, o)
        if counts.get("failed"):  # every record rejected: QualityError, the quarantine committed
            with pytest.raises(hiwater.errors.QualityError, match="every record"):
                hiwater.load(str(self._write(o)), db=str(self.db), **kw)
            self.model = expected
            self.runs += 1
            return
        s = hiwater.load(str(self._write(o)), db=str(self.db), **kw)
        assert s.source_records == len(self.source)
        assert s.source_records == s.loaded + s.skipped + s.counts.rejected
        assert (s.counts.rejected, s.counts.future) == (counts["rejected"], counts["future"])
        self.model = expected
        self.runs += 1

    def load_killed(self, o, at, after):
        """SIGKILL at database operation ``at`` (before or after it), then the same load again."""
        if refused(self.source):
            return self.load(o)
        argv, _ = self._argv(o)
        path = self._write(o)
        pre_rows, pre_wm, _ = read_target(self.db) if self.db.exists() else ({}, None, set())
        expected = self.model.copy()
        failed = expected.run(self.source, o).get("failed", False)
        done = run(["load", "--input", path, *argv], self.dir,
                   {"HIWATER_FAULT_AT": f"{at}:{'kill-after' if after else 'kill'}"})
        ok = (1, -9, LOST) if failed else (0, -9, LOST)  # every record rejected: the run fails (exit 1)
        assert done.code in ok, done.err  # LOST: see harness.INFRA; the rerun decides
        if done.code == 1:
            assert "every record" in done.err, done.err
        if self.db.exists():
            mid = snapshot(self.db)
            check_consistent(mid)
            rows, wm, q = read_target(self.db)
            # each row is its old version or a newer one no newer than the model's; the
            # watermark is between the old and the new one (a full load may lower it)
            for k, (c, name) in rows.items():
                old, new = pre_rows.get(k), expected.rows.get(k)
                assert new is not None and c <= new[0], (k, c, new)
                assert old is None or c >= old[0] or o["full_load"], (k, c, old)
            if not o["full_load"] and wm is not None:
                assert pre_wm is None or wm >= pre_wm
                assert expected.wm is not None and wm <= expected.wm
            assert q <= expected.quarantine | expected.superseded
        # the rerun (the same command) converges to the model
        _, kw = self._argv(o)
        if failed:
            with pytest.raises(hiwater.errors.QualityError, match="every record"):
                hiwater.load(str(path), db=str(self.db), **kw)
        else:
            hiwater.load(str(path), db=str(self.db), **kw)
        self.model = expected
        self.runs += 1

    # --- after every step ---------------------------------------------------------------
    @invariant()
    def target_equals_model(self):
        if not getattr(self, "runs", 0):
            return
        rows, wm, q = read_target(self.db)
        assert rows == self.model.rows
        assert wm == self.model.wm
        assert self.model.quarantine <= q <= self.model.quarantine | self.model.superseded

    # --- helpers --------------------------------------------------------------------------
    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _add(self, r):
        self.source.append(r)

    def _write(self, o) -> Path:
        self.runs_written = getattr(self, "runs_written", 0) + 1
        if o["format"] == "json":
            p = self.dir / f"src{self.runs_written}.json"
            p.write_text(json.dumps(self.source))
        else:
            p = self.dir / f"src{self.runs_written}.jsonl"
            p.write_text("".join(json.dumps(r) + "\n" for r in self.source))
        return p

    def _argv(self, o):
        kw = {"table": "events", "now": NOW.isoformat(), "boundary": o["boundary"], "on_late": o["on_late"],
              "batch_size": o["batch_size"]}
        if o["full_load"]:
            kw["full_load"] = True
        elif o["lookback"]:
            kw["lookback"] = o["lookback"]
        if o["window"]:
            kw["window"] = o["window"]
        argv = ["--db", self.db]
        for k, v in kw.items():
            flag = "--" + k.replace("_", "-")
            argv += [flag] if v is True else [flag, v]
        return argv, kw


LoaderMachine.TestCase.settings = settings(
    max_examples=env_int("HIWATER_MODEL_EXAMPLES", 60, 2000),
    stateful_step_count=env_int("HIWATER_MODEL_STEPS", 12, 12),
    deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)

TestModel = pytest.mark.slow(LoaderMachine.TestCase)


# --- the story the long run found (issue 21), written down --------------------------------------

def _story_load(db: Path, src: Path, o: dict, model: Model, source: list, *, kill_at: str | None = None):
    """One run of the story through the real CLI (``kill_at``: killed there, then run again) and
    the model; the target must equal the model after it."""
    argv = ["load", "--input", src, "--db", db, "--table", "events", "--now", NOW.isoformat()]
    argv += ["--full-load"] if o["full_load"] else []
    argv += ["--window", o["window"]] if o["window"] else []
    counts = model.run(source, o)
    want = 1 if counts.get("failed") else 0
    if kill_at is not None:
        done = run(argv, db.parent, {"HIWATER_FAULT_AT": kill_at})
        assert done.code in (-9, want), (kill_at, done.code, done.err)
        check_consistent(snapshot(db))
    done = run(argv, db.parent)
    assert done.code == want, done.err
    rows, wm, q = read_target(db)
    assert (rows, wm) == (model.rows, model.wm), kill_at
    assert model.quarantine <= q


@pytest.mark.parametrize("window", [None, "1h"])
def test_full_load_of_only_invalid_and_future_records_after_an_all_rejected_run(tmp_path, window):
    """Hypothesis found it (the long model run): a stream at watermark X; a run whose every record
    is invalid (failed: X stays); then a ``--full-load`` (``--window``) run, killed before a commit
    and run again, on a source of only an invalid and a future record. Nothing usable was examined:
    the full load leaves no watermark (docs/concepts.md, "A full load with no usable record"). The
    windowed full load kept X (its transaction 0 never set the watermark when no slice followed);
    a full load whose every record was invalid set it to null (the failed run's watermark moves
    not, a full load's either). Each run is also killed at every COMMIT and run again."""
    base = {"boundary": "inclusive", "lookback": None, "on_late": "detect", "batch_size": 1000, "format": "jsonl"}
    first = [{"id": 1, "name": "a", "modified_at": text(60, None)}, {"id": 2, "name": "b", "modified_at": text(90, 0)}]
    invalid = [{"id": 3, "name": "c", "modified_at": "garbage"}]
    future = [{"id": 4, "name": "d", "modified_at": text(5 * 1440, 0)}]
    stories = [(first, {**base, "full_load": False, "window": None}),
               (invalid, {**base, "full_load": False, "window": window}),           # every record rejected
               (invalid, {**base, "full_load": True, "window": window}),            # a full load of the same
               (invalid + future, {**base, "full_load": True, "window": window}),   # nothing usable: no watermark
               (first, {**base, "full_load": False, "window": window})]
    db, model = tmp_path / "t.db", Model()
    for step, (source, o) in enumerate(stories):
        src = tmp_path / f"s{step}.jsonl"
        src.write_text("".join(json.dumps(r) + "\n" for r in source))
        if o["full_load"]:  # each COMMIT of the run killed (before it), then the run again
            before = tmp_path / "before.db"
            copy_db(db, before)
            trace = tmp_path / f"trace{step}"
            argv = ["load", "--input", src, "--db", db, "--table", "events", "--now", NOW.isoformat(),
                    "--full-load", *(["--window", o["window"]] if o["window"] else [])]
            run(argv, tmp_path, {"HIWATER_FAULT_TRACE": str(trace)})
            commits = [ln.split()[0] for ln in trace.read_text().splitlines() if ln.split()[1] == "COMMIT"]
            for n in commits:
                copy_db(before, db)
                _story_load(db, src, o, model.copy(), source, kill_at=f"{n}:kill")
            copy_db(before, db)
        _story_load(db, src, o, model, source)


class SmokeMachine(LoaderMachine):
    pass


SmokeMachine.TestCase.settings = settings(max_examples=5, stateful_step_count=6, deadline=None,
                                          suppress_health_check=list(HealthCheck))
TestModelSmoke = SmokeMachine.TestCase

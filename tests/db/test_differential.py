"""One story, every format × every target, the same tables (SPEC §3, §8).

The story: a first load; a late batch (a new record below the watermark → quarantined
``late``, an old record re-sent → ``unchanged``); a re-export of the whole source with some
records changed (newer cursor), most unchanged, some new, the late record again and one
record without a key (``rejected``); then ``hiwater quarantine replay``. Each step is written
as a JSON array, JSON Lines, CSV and Parquet and loaded through the CLI into SQLite,
PostgreSQL and DuckDB.

After every step, for all 12 combinations: the table read back with the database's own
driver, the summary's counts and the quarantine must be equal to each other and to a tiny
reference model (a dict by key, the newest cursor wins). Tables are compared in a text form
(CSV cannot say "integer"; it can still say "007"): a number by its canonical text, a
boolean as 0/1 (``true``/``false`` text from CSV too), a nested value by its parsed JSON, the
cursor as a UTC instant. JSON, JSON Lines and Parquet, which carry types, are also compared
with the value's type kept.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from .dbutil import PG_URL, TARGETS, fresh_name
from .readback import FORMATS, cli, export, fetch, instant, sqlite_bool

NOW = "2025-06-01T00:00:00Z"
COMBOS = [(f, k) for k in TARGETS for f in FORMATS]
STEPS = ["first load", "late batch", "re-export", "quarantine replay"]
TABLE = "story"
COUNTS = ["inserted", "updated", "unchanged", "late", "rejected"]
KINDS = {"id": "int", "modified_at": "cursor", "name": "str", "code": "str", "qty": "int", "price": "float",
         "active": "bool", "tags": "json", "note": "str"}

# --- the story --------------------------------------------------------------------------------

NAMES = ["user_signup", "2025-01-15 07:00:00", "007", "1.50", "true", "café", "東京", "😀 emoji",
         'say "hi", ok', "line1\nline2", "back\\slash", "02134", "False", "2025-01-15", "NaN", "  padded  ",
         "2025-01-15T07:00:00Z", "ß"]


def at(minutes: int) -> str:
    return (dt.datetime(2025, 1, 15, 8) + dt.timedelta(minutes=minutes)).isoformat()


def version(i: int, minutes: int, v: int = 0, note=None) -> dict:
    return {"id": i, "modified_at": at(minutes), "name": NAMES[(i + v) % len(NAMES)], "code": f"{i:03d}",
            "qty": i * 3 + v, "price": i + 0.25 + v, "active": (i + v) % 3 == 0,
            "tags": {"k": [NAMES[(i * 5 + v) % len(NAMES)], f"{v:02d}"], "at": at(minutes - 60).replace("T", " ")},
            "note": note}


FIRST = [version(i, i * 5) for i in range(1, 17)]                   # watermark: at(80)
LATE = version(17, -30)                                              # below the watermark, a new key
SECOND = [LATE, FIRST[2]]                                            # late, and an old version re-sent
CHANGED = {2: version(2, 100, 1, "changed once"), 5: version(5, 101, 2, "2025-01-15 07:00:00"),
           11: version(11, 102, 1, "007")}
NEW = [version(18, 110, 0, "new, with a comma"), version(19, 111, 0, "true"), version(20, 112, 0, "0")]
NO_KEY = {**version(21, 113), "id": None}
THIRD = [CHANGED.get(r["id"], r) for r in FIRST] + [LATE] + NEW + [NO_KEY]


class Model:
    """SPEC §3 for this story: inclusive boundary, no lookback, ``--on-late detect``; replay
    applies late records and judges invalid ones again."""

    def __init__(self):
        self.rows: dict = {}
        self.wm = None
        self.quarantine: dict = {}  # (reason, key) -> record

    def load(self, records):
        c = dict.fromkeys(COUNTS, 0)
        seen = []
        for r in records:
            if r["id"] is None:
                c["rejected"] += 1
                self.quarantine[("invalid", None)] = r
                continue
            cur = self.rows.get(r["id"])
            in_window = self.wm is None or r["modified_at"] >= self.wm
            if in_window:
                seen.append(r["modified_at"])
                if cur is None:
                    c["inserted"] += 1
                elif cur["modified_at"] < r["modified_at"]:
                    c["updated"] += 1
                else:
                    c["unchanged"] += 1
                    continue
                self.rows[r["id"]] = r
            elif cur is not None and cur["modified_at"] >= r["modified_at"]:
                c["unchanged"] += 1
            else:
                c["late"] += 1
                self.quarantine[("late", r["id"])] = r
        if seen:
            self.wm = max([self.wm, *seen] if self.wm else seen)
        return c

    def replay(self):
        c = dict.fromkeys(COUNTS, 0)
        for (reason, key), r in list(self.quarantine.items()):
            if reason == "invalid":
                c["rejected"] += 1
                continue
            del self.quarantine[(reason, key)]
            cur = self.rows.get(key)
            if cur is None or cur["modified_at"] < r["modified_at"]:
                c["inserted" if cur is None else "updated"] += 1
                self.rows[key] = r
            else:
                c["unchanged"] += 1
        return c


# --- normalising what a target holds ----------------------------------------------------------

def canonical_json(v) -> str:
    return json.dumps(v, sort_keys=True, ensure_ascii=False)


def norm(kind: str, v, declared=None, typed=False):
    """One value in the comparable form (see the module's docstring). ``typed`` keeps the
    Python type beside the text, so ``5`` and ``"5"`` differ."""
    v = sqlite_bool(v, declared)
    if v is None:
        return None
    if kind == "cursor":
        return instant(v)
    if kind == "json":
        if isinstance(v, str):
            try:
                v = json.loads(v)
            except ValueError:
                return ("not JSON", v)
        return canonical_json(v)
    if kind == "bool":
        if isinstance(v, bool) or (type(v) is int and v in (0, 1)):
            return int(v)
        if not typed and isinstance(v, str) and v.lower() in ("true", "false"):
            return int(v.lower() == "true")
        return (type(v).__name__, v)
    if isinstance(v, bool):
        return (type(v).__name__, v)
    text = repr(v) if isinstance(v, float) else str(v)
    if typed:
        return (type(v).__name__, text)
    return text


def _row(r: dict, types: dict, typed: bool) -> tuple:
    return tuple(norm(kind, r.get(col), types.get(col), typed) for col, kind in KINDS.items())


def snapshot_table(url: str, typed: bool) -> dict:
    """``{key's text: (every column's value, normalised)}``; two rows for one key text show as
    a list of rows."""
    types, rows = fetch(url, TABLE)
    out: dict = {}
    for r in rows:
        key = str(norm("int", r.get("id")))
        out[key] = _row(r, types, typed) if key not in out else [out[key], _row(r, types, typed)]
    return out


def model_table(model: Model, typed: bool) -> dict:
    return {str(k): _row(r, {}, typed) for k, r in model.rows.items()}


def _qkey(q) -> tuple:
    key = json.loads(q["key"]) if isinstance(q["key"], str) else q["key"]
    return (q["reason"], tuple(None if k is None else str(k) for k in key))


# --- running the story ------------------------------------------------------------------------

def _counts(summary: dict) -> dict:
    return {k: summary.get(k) for k in COUNTS + ["total_in_target", "new_watermark"]}


def run_story(fmt: str, url: str, tmp) -> list[dict]:
    """Every step's ``{counts, table, typed, quarantine}`` (``error`` where a step failed;
    the story stops there)."""
    out = []
    for n, step in enumerate([FIRST, SECOND, THIRD, None]):
        if step is None:
            r = cli("quarantine", "replay", "--target", url, "--stream", TABLE, "--now", NOW)
        else:
            path = export(step, fmt, tmp / f"step{n}.{fmt}", KINDS)
            r = cli("load", "--input", path, "--target", url, "--table", TABLE, "--now", NOW, "--details")
        if r.code != 0:
            out.append({"error": f"exit {r.code}: {r.err.strip()}"})
            break
        q = cli("quarantine", "list", "--target", url, "--stream", TABLE, "--json")
        out.append({"counts": _counts(r.json), "table": snapshot_table(url, typed=False),
                    "typed": snapshot_table(url, typed=True),
                    "quarantine": sorted(map(_qkey, q.json), key=repr) if q.code == 0 else q.err})
    return out


def expected_story() -> list[dict]:
    m = Model()
    out = []
    for step in [FIRST, SECOND, THIRD, None]:
        c = m.replay() if step is None else m.load(step)
        c.update(total_in_target=len(m.rows), new_watermark=m.wm)
        out.append({"counts": c, "table": model_table(m, False), "typed": model_table(m, True),
                    "quarantine": sorted(((reason, (None if k is None else str(k),))
                                          for reason, k in m.quarantine), key=repr)})
    return out


@pytest.fixture(scope="module")
def story(request, tmp_path_factory):
    """``story(fmt, kind)``: the story's snapshots for one combination, run once per module."""
    cache: dict = {}
    schemas: list[str] = []
    admin = []

    def get(fmt, kind):
        if (fmt, kind) not in cache:
            tmp = tmp_path_factory.mktemp(f"story-{fmt}-{kind}")
            if kind == "postgresql":
                if not admin:  # skips (or fails under CI) without a server
                    admin.append(request.getfixturevalue("pg_admin"))
                schemas.append(fresh_name())
                url = f"{PG_URL}?schema={schemas[-1]}"
            else:
                url = f"{kind}:///{tmp / ('target.' + kind)}"
            cache[fmt, kind] = run_story(fmt, url, tmp)
        return cache[fmt, kind]

    yield get
    for s in schemas:
        admin[0].execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')


EXPECTED = expected_story()


def test_the_reference_model_tells_the_story_it_is_meant_to():
    got = [{k: e["counts"][k] for k in COUNTS} for e in EXPECTED]
    assert got == [
        {"inserted": 16, "updated": 0, "unchanged": 0, "late": 0, "rejected": 0},
        {"inserted": 0, "updated": 0, "unchanged": 1, "late": 1, "rejected": 0},
        {"inserted": 3, "updated": 3, "unchanged": 13, "late": 1, "rejected": 1},
        {"inserted": 1, "updated": 0, "unchanged": 0, "late": 0, "rejected": 1},
    ]
    assert [e["counts"]["total_in_target"] for e in EXPECTED] == [16, 16, 19, 20]


def _diff_tables(got: dict, want: dict, limit=6, want_name="want") -> list[str]:
    lines = []
    for k in sorted(set(got) | set(want), key=repr):
        if got.get(k) != want.get(k):
            if k not in got:
                lines.append(f"    id {k}: missing ({want_name} {want[k]})")
            elif k not in want:
                lines.append(f"    id {k}: not expected (got {got[k]})")
            else:
                if not isinstance(got[k], tuple):
                    lines.append(f"    id {k}: {len(got[k])} rows: {got[k]}")
                    continue
                for c, g, w in zip(KINDS, got[k], want[k]):
                    if g != w:
                        lines.append(f"    id {k}: {c}: got {g!r}, {want_name} {w!r}")
    return lines[:limit] + ([f"    … {len(lines) - limit} more"] if len(lines) > limit else [])


def _step_problems(fmt, snap, want) -> list[str]:
    if "error" in snap:
        return [f"  the step failed: {snap['error']}"]
    out = []
    if snap["counts"] != want["counts"]:
        out.append(f"  counts {snap['counts']} != model {want['counts']}")
    which = "typed" if fmt != "csv" else "table"
    rows = _diff_tables(snap[which], want[which])
    if rows:
        out.append(f"  table ({'typed' if which == 'typed' else 'text form'}) differs from the model:")
        out.extend(rows)
    if snap["quarantine"] != want["quarantine"]:
        out.append(f"  quarantine {snap['quarantine']} != model {want['quarantine']}")
    return out


@pytest.mark.parametrize("fmt, kind", COMBOS, ids=[f"{f}-{k}" for f, k in COMBOS])
def test_the_story_matches_the_reference_model(story, fmt, kind):
    snaps = story(fmt, kind)
    report = []
    for name, want, snap in zip(STEPS, EXPECTED, snaps + [None] * (len(STEPS) - len(snaps))):
        if snap is None:
            report.append(f"{name}: not run (an earlier step failed)")
            continue
        found = _step_problems(fmt, snap, want)
        if found:
            report.append(f"{name}:")
            report.extend(found)
    assert not report, f"{fmt} into {kind}:\n" + "\n".join(report)


def _groups(values: dict) -> list[tuple[object, list[str]]]:
    groups: list = []
    for combo, v in values.items():
        for g in groups:
            if g[0] == v:
                g[1].append(combo)
                break
        else:
            groups.append((v, [combo]))
    return groups


@pytest.mark.parametrize("step", range(len(STEPS)), ids=[s.replace(" ", "-") for s in STEPS])
def test_every_format_and_target_ends_the_step_with_the_same_table(story, step):
    snaps = {f"{f}-{k}": (story(f, k) + [None] * len(STEPS))[step] for f, k in COMBOS}
    report = []
    failed = {c: s for c, s in snaps.items() if s is None or "error" in s}
    if failed:
        report.append("no snapshot (a step failed): " + ", ".join(
            f"{c} ({'earlier step' if s is None else s['error'][:160]})" for c, s in failed.items()))
    ok = {c: s for c, s in snaps.items() if c not in failed}
    for what, combos in [("counts", ok), ("table", ok), ("quarantine", ok),
                         ("typed", {c: s for c, s in ok.items() if not c.startswith("csv-")})]:
        groups = _groups({c: s[what] for c, s in combos.items()})
        if len(groups) > 1:
            report.append(f"{what}: {len(groups)} different results:")
            base, base_combos = groups[0]
            report.append(f"  A = {', '.join(base_combos)}")
            for n, (v, cs) in enumerate(groups[1:]):
                report.append(f"  {'BCDEFGHIJKL'[n]} = {', '.join(cs)}")
                if what in ("table", "typed"):
                    report.extend("  " + line for line in _diff_tables(v, base, limit=4, want_name="A has"))
                else:
                    report.append(f"      {v} vs A {base}")
    assert not report, f"after the {STEPS[step]}:\n" + "\n".join(report)

"""1b. The fault-point sweep on the PostgreSQL and DuckDB targets.

The four runs of ``test_fault_sweep.py`` (a first ``--window`` load, an incremental
``--window`` load, a single-transaction load with late records, deletes and small batches,
a ``--full-load --prune``) go to ``--target postgresql://…?schema=…`` and
``--target duckdb:///…``. Both targets send every statement (each ``SELECT``, ``INSERT``,
``COPY``, DDL, ``executemany``, ``COMMIT``, ``ROLLBACK``) through one method, where
``HIWATER_FAULT_AT`` injects ``raise`` (a driver I/O error instead of it), ``kill`` (SIGKILL
before it) or ``kill-after`` (SIGKILL after it). After every fault: all of the run (or of the
``--window`` slice) or none of it, history chain, watermark never ahead of the data; after
one rerun: the uninterrupted run's target exactly, no key twice.

The starting state of each case is a copy of the reference's (PostgreSQL: a schema cloned
table by table with its sequences; DuckDB: the file copied). A case costs ≈ 2 s (the faulted
run, the rerun, the copy and three read-backs), so CI takes ``HIWATER_SWEEP_TARGET_POINTS``
(default 6) fault points per run spread evenly over its operations × actions;
``HIWATER_RELIABILITY=full`` (or the variable set to 0) takes every point of all four runs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import hiwater

from .harness import Snap, env_int, check_after_fault, check_consistent, one_error_line, run, same_data
from .test_fault_sweep import scenario
from .test_kill_soak_targets import _us

pytestmark = pytest.mark.reliability
POINTS = env_int("HIWATER_SWEEP_TARGET_POINTS", 6, 0)  # per run; 0 = every operation × every action
ACTIONS = ("raise", "kill", "kill-after")
FIGURES: dict = {}


def snap(url: str) -> Snap:
    """Everything a run may change in the target, read back (failed-run notes apart)."""
    from db.dbutil import read_table
    try:
        table = read_table(url, "events", hidden=True)
    except Exception:  # noqa: BLE001 - no table yet
        table = []
    rows, dup = {}, 0
    for r in table:
        r = {k: v for k, v in r.items() if k != "_hiwater_run"}
        r["_hiwater_cursor"] = _us(r["_hiwater_cursor"])
        dup += r["id"] in rows
        rows[r["id"]] = r
    states = [s for s in hiwater.state_show(target=url) if s["stream"] == "events"]
    state = None
    if states:
        s = states[0]
        state = {"watermark": s["watermark_value"], "last_run": s["last_run"], "naive": s["naive"],
                 "kind": s["kind"]}
    history = hiwater.history(target=url, stream="events")
    quarantine = hiwater.quarantine_list(target=url, stream="events")
    failed = [h for h in history if h["outcome"] == "failed"]
    history = sorted((h for h in history if h["outcome"] != "failed"),
                     key=lambda h: (h["run_id"], h["window_index"]))
    return Snap(rows, state, history, quarantine, "ok", dup, failed)


def _same_index_names(admin, src: str, dst: str, table: str) -> None:
    """LIKE … INCLUDING ALL names the copied indexes itself: give each the source's name, so the
    copy is the same schema to the target (which looks its indexes up by name)."""
    def by_shape(schema):
        rows = admin.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
                             (schema, table)).fetchall()
        return {("UNIQUE" in d.split(" ON ", 1)[0], d.split(" USING ", 1)[1]): n for n, d in rows}
    want = by_shape(src)
    for shape, name in by_shape(dst).items():
        if shape in want and want[shape] != name:
            admin.execute(f'ALTER INDEX "{dst}"."{name}" RENAME TO "{want[shape]}"')


def clone_pg_schema(admin, src: str, dst: str) -> None:
    """A copy of every table and sequence of schema ``src`` as schema ``dst`` (no other session)."""
    admin.execute(f'DROP SCHEMA IF EXISTS "{dst}" CASCADE')
    admin.execute(f'CREATE SCHEMA "{dst}"')
    for (seq,) in admin.execute("SELECT sequencename FROM pg_sequences WHERE schemaname = %s AND sequencename"
                                " NOT LIKE '%%_id_seq'", (src,)).fetchall():
        last = admin.execute(f'SELECT last_value, is_called FROM "{src}"."{seq}"').fetchone()
        admin.execute(f'CREATE SEQUENCE "{dst}"."{seq}"')
        admin.execute("SELECT setval(%s, %s, %s)", (f'"{dst}"."{seq}"', last[0], last[1]))
    for (t,) in admin.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (src,)).fetchall():
        admin.execute(f'CREATE TABLE "{dst}"."{t}" (LIKE "{src}"."{t}" INCLUDING ALL)')
        _same_index_names(admin, src, dst, t)
        admin.execute(f'INSERT INTO "{dst}"."{t}" OVERRIDING SYSTEM VALUE SELECT * FROM "{src}"."{t}"')
        ident = admin.execute("SELECT pg_get_serial_sequence(%s, 'id')", (f'"{dst}"."{t}"',)).fetchone()[0] \
            if t == "_hiwater_quarantine" else None
        if ident:
            admin.execute(f'SELECT setval(%s, (SELECT coalesce(max(id), 0) + 1 FROM "{dst}"."{t}"), false)',
                          (ident,))


class TargetRef:
    """The uninterrupted runs on one target kind: a saved copy before each, the state after, the ops."""

    def __init__(self, kind: str, d: Path, admin=None):
        from db.dbutil import PG_URL, fresh_name
        self.kind, self.dir, self.admin = kind, d, admin
        self.runs = []
        self.base = f"wt15_{fresh_name()[4:]}"
        self.saved: list = []
        self.after: list = []
        self.ops: list = []
        self.schemas = []
        url = self.url(self.base)
        for i, (name, argv) in enumerate(scenario(d)):
            j = argv.index("--db")
            argv = argv[:j] + argv[j + 2:] + ["--target", url]
            self.runs.append((name, argv))
            self.saved.append(self.save(i))
            trace = d / f"{kind}-trace{i}"
            done = run(argv, d, {"HIWATER_FAULT_TRACE": str(trace)})
            assert done.code == 0, done.err
            self.after.append(snap(url))
            self.ops.append(trace.read_text().splitlines())
        self._pg_url = PG_URL

    def url(self, name: str) -> str:
        from db.dbutil import PG_URL
        if self.kind == "duckdb":
            return f"duckdb:///{self.dir / (name + '.duckdb')}"
        if name not in self.schemas:
            self.schemas.append(name)
        return f"{PG_URL}?schema={name}"

    def save(self, i: int) -> str:
        """A copy of the current target as it is before run ``i``."""
        name = f"{self.base}_pre{i}"
        if self.kind == "duckdb":
            src = self.dir / (self.base + ".duckdb")
            if src.exists():
                shutil.copyfile(src, self.dir / (name + ".duckdb"))
        else:
            if self.admin.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.base,)).fetchone():
                clone_pg_schema(self.admin, self.base, name)
            self.url(name)
        return name

    def restore(self, i: int) -> str:
        """The target, back to its state before run ``i``; its URL."""
        if self.kind == "duckdb":
            dst = self.dir / (self.base + ".duckdb")
            for suffix in ("", ".wal", ".hwlock"):
                Path(str(dst) + suffix).unlink(missing_ok=True)
            src = self.dir / (self.saved[i] + ".duckdb")
            if src.exists():
                shutil.copyfile(src, dst)
        else:
            if self.admin.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.saved[i],)).fetchone():
                clone_pg_schema(self.admin, self.saved[i], self.base)
            else:
                self.admin.execute(f'DROP SCHEMA IF EXISTS "{self.base}" CASCADE')
        return self.url(self.base)

    def cases(self, i: int, points: int) -> list:
        ops = [int(line.split()[0]) for line in self.ops[i]]
        if points and len(ops) * len(ACTIONS) > points:  # CI size: spread over the run, actions in turn
            return [(ops[int(j * len(ops) / points)], ACTIONS[j % len(ACTIONS)]) for j in range(points)]
        return [(n, a) for n in ops for a in ACTIONS]

    def drop(self) -> None:
        if self.admin is not None:
            for s in self.schemas:
                self.admin.execute(f'DROP SCHEMA IF EXISTS "{s}" CASCADE')


def run_case(ref: TargetRef, i: int, n: int, action: str) -> None:
    name, argv = ref.runs[i]
    url = ref.restore(i)
    pre = snap(url)
    post = ref.after[i]
    done = run(argv, ref.dir, {"HIWATER_FAULT_AT": f"{n}:{action}"})
    where = f"{ref.kind} {name}: op {n} ({ref.ops[i][n - 1]}) {action}"
    if action == "raise":
        assert done.code == 1, (where, done.code, done.err)
        one_error_line(done)
    else:
        assert done.killed, (where, done.code, done.err)
    mid = snap(url)
    assert len(mid.failed) - len(pre.failed) in ((0, 1) if action == "raise" else (0,)), (where, mid.failed)
    check_after_fault(pre, mid, post, windowed="--window" in argv, where=where)
    again = run(argv, ref.dir)
    assert again.code == 0, (where, again.err)
    final = snap(url)
    check_consistent(final)
    try:
        same_data(final, post)
    except AssertionError as exc:
        raise AssertionError(f"{where}: after the rerun: {exc}") from None


@pytest.fixture(scope="module", params=["postgresql", "duckdb"])
def tref(request, tmp_path_factory):
    admin = None
    if request.param == "postgresql":
        from db.dbutil import PG_URL, pg_connect, server_or_skip
        admin = server_or_skip("PostgreSQL", PG_URL, pg_connect)
    else:
        pytest.importorskip("duckdb")
    ref = TargetRef(request.param, tmp_path_factory.mktemp(f"sweep-{request.param}"), admin)
    yield ref
    ref.drop()
    if admin is not None:
        admin.close()


@pytest.mark.slow
def test_every_statement_of_a_run_goes_through_the_fault_hook(tref):
    """The trace numbers the statements of each run: the commits, COPY (PostgreSQL), DDL, DML."""
    words = [" ".join(line.split()[1:]) for ops in tref.ops for line in ops]
    for expected in ("COMMIT", "CREATE TABLE", "INSERT INTO", "DELETE FROM", "SELECT"):
        assert any(w.startswith(expected) for w in words), (expected, words[:20])
    if tref.kind == "postgresql":
        assert any(w.startswith("COPY") for w in words)
    assert sum(1 for w in words if w == "COMMIT") >= 4


@pytest.mark.slow
@pytest.mark.parametrize("i", range(4), ids=["first-window", "incremental-window", "single-late-delete",
                                            "full-prune"])
def test_fault_sweep_target(tref, i):
    cases = tref.cases(i, POINTS)
    for n_op, action in cases:
        run_case(tref, i, n_op, action)
    kinds: dict = {}
    for _, a in cases:
        kinds[a] = kinds.get(a, 0) + 1
    print(f"\nFIGURES fault-sweep {tref.kind} {tref.runs[i][0]}: {len(tref.ops[i])} operations, "
          f"{len(cases)} fault points {kinds}")

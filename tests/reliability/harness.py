"""What the reliability tests share: fast killable loader processes, snapshots, invariants.

Loader processes come from a multiprocessing *fork server* that has imported hiwater
once (and started no thread), so a fresh process that runs ``hiwater load …`` costs a
fork, not an interpreter start; it can be SIGKILLed at any instant like the real CLI.
A few tests also start the real ``hiwater`` executable to prove the two behave alike.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from conftest import Result
from sizes import env_int  # noqa: F401 - the suites import it from here

ROOT = Path(__file__).resolve().parents[2]
# The `hiwater` console script of the environment running the tests (not a path in the checkout):
# beside the interpreter, else the one on PATH.
HIWATER = Path(sys.executable).with_name("hiwater")
if not HIWATER.exists():
    HIWATER = Path(shutil.which("hiwater") or HIWATER)
NOW = "2025-06-01T00:00:00Z"


# --- loader processes -------------------------------------------------------------------------

_CTX = None


def _ctx():
    global _CTX
    if _CTX is None:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["__main__", "hiwater.cli", "hiwater.targets.faults", "numpy", "pyarrow",
                                    "pyarrow.json", "pyarrow.csv", "pyarrow.compute"])
        _CTX = ctx
    return _CTX


def _child(argv, env, out, err, start_at):  # runs in the forked process
    for k, v in env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    fo = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    fe = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fo, 1)
    os.dup2(fe, 2)
    if start_at:
        delay = start_at - time.time()
        if delay > 0:
            time.sleep(delay)
    from hiwater.cli import main
    code = main([str(a) for a in argv])
    sys.stdout.flush()
    sys.stderr.flush()
    with open(err + ".code", "w") as f:  # the fork server can lose the status (see Proc.wait)
        f.write(str(code))
    os._exit(code)


LOST = -255  # the fork server lost a child's exit status (multiprocessing reports 255)
INFRA = {"lost_status": 0}


@dataclass
class Proc:
    proc: object
    out: Path
    err: Path
    started: float
    pidfd: int | None = None

    def kill(self) -> bool:
        """SIGKILL; True if the process was still running when it got the signal.

        The signal goes through a pidfd opened at start, so a finished process whose pid the
        system gave to another one is never hit (pids wrap at 32768 here).
        """
        if self.proc.exitcode is not None:
            return False
        try:
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            else:
                os.kill(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        self.proc.join()
        return self.proc.exitcode == -signal.SIGKILL

    def wait(self, timeout: float = 120) -> "Done":
        self.proc.join(timeout)
        if self.proc.exitcode is None:
            self.proc.kill()
            self.proc.join()
            raise AssertionError(f"loader hung for {timeout}s")
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        read = lambda f: f.read_text(errors="replace") if f.exists() else ""  # noqa: E731
        code = self.proc.exitcode
        if code == 255:  # no CLI path exits 255: the status was lost on its way back
            INFRA["lost_status"] += 1
            saved = Path(str(self.err) + ".code")
            code = int(saved.read_text()) if saved.exists() else LOST
        return Done(code, read(self.out), read(self.err), time.monotonic() - self.started)


@dataclass
class Done(Result):
    """A finished loader process: the CLI's result, how long it took, whether it was killed."""

    seconds: float = 0.0

    @property
    def killed(self) -> bool:
        return self.code == -signal.SIGKILL


_SEQ = [0]


def start(argv, workdir: Path, env: dict | None = None, start_at: float | None = None) -> Proc:
    """Start ``hiwater ARGV`` in a fresh killable process (stdout/stderr kept in files)."""
    _SEQ[0] += 1
    out = workdir / f".out{_SEQ[0]}"
    err = workdir / f".err{_SEQ[0]}"
    env = {"HIWATER_FAULT_AT": None, "HIWATER_FAULT_TRACE": None, **(env or {})}
    p = _ctx().Process(target=_child, args=(list(map(str, argv)), env, str(out), str(err), start_at))
    t0 = time.monotonic()
    p.start()
    try:
        pidfd = os.pidfd_open(p.pid)
    except (ProcessLookupError, AttributeError, OSError):
        pidfd = None
    return Proc(p, out, err, t0, pidfd)


def run(argv, workdir: Path, env: dict | None = None) -> Done:
    proc = start(argv, workdir, env)
    done = proc.wait()
    if done.code == LOST and not done.out and "HIWATER_FAULT_AT" not in (env or {}):
        proc = start(argv, workdir, env)  # a lost status says nothing about the run: run it again
        done = proc.wait()
    for f in (proc.out, proc.err, Path(str(proc.err) + ".code")):
        f.unlink(missing_ok=True)
    return done


def run_real(argv, env: dict | None = None, timeout: float = 120):
    """The installed ``hiwater`` executable, for the few tests that must use it."""
    import subprocess
    e = {k: v for k, v in os.environ.items() if not k.startswith("HIWATER_FAULT")}
    e.update(env or {})
    return subprocess.run([str(HIWATER), *map(str, argv)], capture_output=True, text=True, env=e,
                          timeout=timeout)


# --- databases -------------------------------------------------------------------------------

def copy_db(src: Path, dst: Path) -> None:
    """A consistent copy of a SQLite target (through the backup API, WAL included)."""
    for suffix in ("", "-wal", "-shm", "-journal", ".hwlock"):
        Path(str(dst) + suffix).unlink(missing_ok=True)
    if not src.exists():
        return
    a = sqlite3.connect(src)
    b = sqlite3.connect(dst)
    try:
        a.backup(b)
    finally:
        a.close()
        b.close()


def clone_files(src: Path, dst: Path) -> None:
    """A byte copy of a closed SQLite target (db and WAL), as a file restore would give."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        s, d = Path(str(src) + suffix), Path(str(dst) + suffix)
        d.unlink(missing_ok=True)
        if s.exists():
            shutil.copyfile(s, d)


@dataclass
class Snap:
    """Everything a run may change in a SQLite target, read back for comparison."""

    rows: dict            # key -> row (dict without _hiwater_run)
    state: dict | None    # the stream's _hiwater_state row (without updated_at)
    history: list         # rows of _hiwater_history for the stream
    quarantine: list      # rows of _hiwater_quarantine for the stream
    integrity: str
    dup_keys: int
    failed: list = field(default_factory=list)  # history rows of failed runs (outcome "failed")

    @property
    def watermark(self):
        return None if self.state is None else self.state["watermark"]

    def quarantine_set(self) -> set:
        return {(q["reason"], q["key"], q["fingerprint"]) for q in self.quarantine}


def _table_exists(con, table) -> bool:
    return con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)).fetchone() is not None


def snapshot(db: Path, table: str = "events", stream: str | None = None, key=("id",)) -> Snap:
    stream = stream or table
    if not db.exists():
        return Snap({}, None, [], [], "ok", 0)
    # Read-write, as the next loader would open it: after a kill the WAL index may need the
    # recovery that a read-only connection cannot do ("attempt to write a readonly database").
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
        rows, dup = {}, 0
        q = lambda n: '"' + n.replace('"', '""') + '"'  # noqa: E731
        if _table_exists(con, table):
            for r in con.execute(f"SELECT * FROM {q(table)}"):
                d = {k: r[k] for k in r.keys() if k != "_hiwater_run"}
                k = tuple(d[c] for c in key) if len(key) > 1 else d[key[0]]
                dup += k in rows
                rows[k] = d
        state, history, quar = None, [], []
        if _table_exists(con, "_hiwater_state"):
            r = con.execute("SELECT * FROM _hiwater_state WHERE stream = ?", (stream,)).fetchone()
            state = None if r is None else {k: r[k] for k in r.keys() if k != "updated_at"}
            history = [dict(r) for r in con.execute(
                "SELECT * FROM _hiwater_history WHERE stream = ? ORDER BY run_id, window_index", (stream,))]
            quar = [dict(r) for r in con.execute(
                "SELECT * FROM _hiwater_quarantine WHERE stream = ? ORDER BY id", (stream,))]
        # A failed run's row (written after its rollback) is a note beside the chain of commits.
        failed = [h for h in history if h["outcome"] == "failed"]
        history = [h for h in history if h["outcome"] != "failed"]
        return Snap(rows, state, history, quar, integrity, dup, failed)
    finally:
        con.close()


def check_consistent(s: Snap) -> None:
    """Invariants every committed state keeps, whatever happened before."""
    assert s.integrity == "ok", s.integrity
    assert s.dup_keys == 0
    for f in s.failed:  # a failed run's note: its error, no counts, the watermark it left
        if f["error"] and f["error"].startswith("every record ("):
            continue  # a run that rejected every record: it committed its quarantine, and its counts
        assert f["error"] and f["source_records"] is None, f
    if s.state is None:
        return
    if not s.history:
        return
    runs: dict = {}
    for h in s.history:
        assert h["outcome"] == "committed"
        runs.setdefault(h["run_id"], []).append(h)
    # (a run that rejected every record commits its state with its failed row)
    all_rejected = [f["run_id"] for f in s.failed if (f["error"] or "").startswith("every record (")]
    assert s.state["last_run"] == max([*runs, *all_rejected]), (s.state["last_run"], max(runs), all_rejected)
    # The history is one chain: each run starts where the previous one ended, windows are
    # numbered 0..k without a gap, and the state holds the last committed watermark.
    prev_after = None
    first = True
    for run_id in sorted(runs):
        ws = runs[run_id]
        assert [w["window_index"] for w in ws] == list(range(len(ws))), ws
        before = ws[0]["watermark_before_value"]
        if not first:
            assert before == prev_after, (run_id, before, prev_after)
        for w in ws:
            assert w["watermark_before_value"] == before
        afters = [w["watermark_after_value"] for w in ws]
        if not ws[0]["mode"].startswith("full"):
            assert all(a is None or b is None or a >= b for a, b in zip(afters[1:], afters)), afters
            assert all(a is None or before is None or a >= before for a in afters)
        prev_after = afters[-1]
        first = False
    assert s.state["watermark"] == prev_after, (s.state["watermark"], prev_after)


def same_data(a: Snap, b: Snap) -> None:
    assert a.rows == b.rows
    assert (a.state or {}).get("watermark") == (b.state or {}).get("watermark")
    assert (a.state or {}).get("naive") == (b.state or {}).get("naive")
    assert (a.state or {}).get("kind") == (b.state or {}).get("kind")
    assert a.quarantine_set() == b.quarantine_set()


def one_error_line(done: Done) -> str:
    """A failed run prints one clear line: no traceback, not an internal error."""
    lines = [x for x in done.err_lines if not x.startswith("warning:")]
    assert len(lines) == 1, done.err
    assert lines[0].startswith("error: "), done.err
    assert "internal error" not in done.err and "Traceback" not in done.err, done.err
    return lines[0]


def check_after_fault(pre, mid, post, *, windowed: bool, where: str) -> None:
    try:
        check_consistent(mid)
        if not windowed:
            # one transaction: all of it or none of it
            if mid.watermark == pre.watermark and len(mid.history) == len(pre.history):
                assert mid.rows == pre.rows and mid.quarantine_set() == pre.quarantine_set()
            else:
                same_data(mid, post)
            return
        # --window: the committed slices stand, the slice in flight is gone
        run_ids = {h["run_id"] for h in post.history} - {h["run_id"] for h in pre.history}
        allowed = {pre.watermark} | {h["watermark_after_value"] for h in post.history if h["run_id"] in run_ids}
        assert mid.watermark in allowed, (mid.watermark, allowed)
        for k, row in mid.rows.items():
            # the old version, the new one, or (a key changed twice) one committed in between
            old, new = pre.rows.get(k), post.rows.get(k)
            assert new is not None or _v(row) == _v(old), (k, row)
            c = row["_hiwater_cursor"]
            assert old is None or c >= old["_hiwater_cursor"], ("regressed", k, row, old)
            assert new is None or c < new["_hiwater_cursor"] or _v(row) == _v(new), (k, row, new)
        assert mid.quarantine_set() <= post.quarantine_set()
        # the watermark never runs ahead of the data: every version this run applied with a
        # cursor above the old watermark and at or below the new one is in the target
        for k, row in post.rows.items():
            if _v(row) == _v(pre.rows.get(k)):
                continue
            c = row["_hiwater_cursor"]
            if (pre.watermark is None or c > pre.watermark) and mid.watermark is not None and c <= mid.watermark:
                assert _v(mid.rows.get(k)) == _v(row), ("watermark ahead of the data", k, c, mid.watermark)
    except AssertionError as exc:
        raise AssertionError(f"{where}: {exc}") from None


def _v(row):
    """A row without its null fields (a column added by a later slice is null in older rows)."""
    return None if row is None else {k: v for k, v in row.items() if v is not None}

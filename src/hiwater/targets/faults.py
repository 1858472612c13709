"""Test-only fault injection for the reliability suite (``tests/reliability``, docs/reliability.md).

A target sends every database operation through one method; when neither variable
below is set that method costs one attribute test, and nothing here is imported.

- ``HIWATER_FAULT_AT="<n>:<action>"`` fails the *n*-th operation (1-based, counted per
  process over every target object it opens, in order: a command such as ``quarantine replay``
  opens the target twice, and each of its operations has its own number) with one of:

  ``raise``       an I/O error instead of the operation (as a full disk would give);
  ``kill``        SIGKILL of the process just before the operation;
  ``kill-after``  SIGKILL just after the operation returned (after ``COMMIT``: committed);
  ``terminate``   PostgreSQL only: another session ends this run's data connection
                  (``pg_terminate_backend``) just before the operation, which then meets
                  the dead connection, as when an administrator or a failover cuts it;
  ``terminate-lock``  the same for the connection that holds the stream's advisory lock;
  ``torn-<b>``    ``COMMIT`` of a SQLite file in WAL mode only: commit, cut the WAL back to
                  ``<b>`` bytes of what this commit appended, then SIGKILL. That is the file
                  state a kill *inside* the commit leaves (the frames reach the file in order).
- ``HIWATER_FAULT_TRACE=<file>`` appends one line per operation: ``<n> <first words>`` and,
  for a ``COMMIT`` of a WAL file, ``wal+<bytes appended>``.
"""

from __future__ import annotations

import os
import signal

ENV_AT = "HIWATER_FAULT_AT"
ENV_TRACE = "HIWATER_FAULT_TRACE"


class InjectedFault(Exception):
    """Raised for ``raise``; targets translate it like their own driver's I/O error."""


def from_env(wal_path: str | None = None):
    """A :class:`Faults` when a fault or a trace is asked for, else ``None``."""
    at, trace = os.environ.get(ENV_AT), os.environ.get(ENV_TRACE)
    if not at and not trace:
        return None
    return Faults(at, trace, wal_path)


_COUNT = [0]  # operations of this process so far (a forked or spawned process starts its own)


class Faults:
    def __init__(self, at: str | None, trace: str | None, wal_path: str | None):
        self.at, self.action = None, None
        if at:
            num, _, action = at.partition(":")
            self.at, self.action = int(num), action or "raise"
        self.trace = trace
        self.wal = wal_path
        self.terminate = None  # set by a target that can end its own connections (PostgreSQL)

    def run(self, op, sql: str, error=InjectedFault):
        """Run ``op()`` (the operation ``sql``), failing it if it is the chosen one."""
        _COUNT[0] += 1
        self.n = _COUNT[0]
        hit = self.n == self.at
        is_commit = sql.strip().upper() == "COMMIT"
        if hit and self.action == "kill":
            _die()
        if hit and self.action in ("terminate", "terminate-lock") and self.terminate is not None:
            self.terminate("data" if self.action == "terminate" else "lock")
        if hit and self.action == "raise":
            raise error(f"disk I/O error (injected fault at operation {self.n})")
        wal_before = _wal_state(self.wal) if is_commit and (self.trace or hit) else None
        result = op()
        if wal_before is not None:
            size, header = _wal_state(self.wal)
            base = wal_before[0] if header == wal_before[1] else 32  # a restarted WAL is rewritten
            appended = max(size - base, 0)
            if self.trace:
                self._trace(sql, f"wal+{appended}")
            if hit and self.action.startswith("torn-"):
                keep = min(int(self.action[5:]), appended)
                with open(self.wal, "r+b") as f:
                    f.truncate(base + keep)
                _die()
        elif self.trace:
            self._trace(sql, "")
        if hit and self.action == "kill-after":
            _die()
        return result

    def _trace(self, sql: str, extra: str) -> None:
        words = " ".join(sql.split()[:3])
        with open(self.trace, "a") as f:
            f.write(f"{self.n} {words} {extra}".rstrip() + "\n")


def _wal_state(path):
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            return os.fstat(f.fileno()).st_size, f.read(32)
    except FileNotFoundError:
        return 0, b""


def _die():
    os.kill(os.getpid(), signal.SIGKILL)

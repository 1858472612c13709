"""A process that dies with its parent: the forkserver of a local pool imports this first.

:mod:`hiwater.executor` starts its local workers from a ``forkserver`` (Linux), a process the
coordinator starts, which forks each worker. A worker arms its parent-death signal against the
forkserver (:func:`hiwater.executor.die_with`); the forkserver, by importing this module (the
first of its preloaded modules), arms its own against the coordinator. So a coordinator killed
by SIGKILL takes the forkserver and every worker with it, as a spawned worker dies with it.

Importing this module arms that signal only in a process whose parent started it as its
forkserver (``HIWATER_FORKSERVER`` holds the parent's process id, set only while the parent
starts its forkserver); everyone else uses :func:`arm`. Linux sends the signal when the
*thread* that started the process ends: a program that runs bucketed loads from several
threads, one of which started the forkserver and ends while another's run goes on, fails that
run (its workers die with the forkserver; nothing of it is committed, and the next run starts a
new forkserver).
"""

from __future__ import annotations

import os
import signal
import sys

_PR_SET_PDEATHSIG = 1
ENV = "HIWATER_FORKSERVER"


def arm(parent: int) -> bool:
    """SIGKILL this process when its parent (``parent``) ends (Linux's parent-death signal). False
    where there is no such signal (the caller watches instead); a parent gone already (this
    process was re-parented before the signal was armed) ends this process now."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        if ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    return True


if os.environ.get(ENV) == str(os.getppid()):
    arm(os.getppid())

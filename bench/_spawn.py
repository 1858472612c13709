"""Fallback for GNU time: run argv[2:] as a child, write "wall maxrss_kib user sys" to argv[1].

Run with ``python -I -S`` so that this parent stays small: Linux charges a child with the memory
its parent had at fork time until the child execs, so the measuring parent must be tiny.
"""
import os
import sys
import time

out = sys.argv[1]
argv = sys.argv[2:]
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
with open(out, "w") as f:
    f.write(f"{time.perf_counter() - t0:.3f} {ru.ru_maxrss} {ru.ru_utime:.3f} {ru.ru_stime:.3f}\n")
sys.exit(os.waitstatus_to_exitcode(status) if os.waitstatus_to_exitcode(status) >= 0
         else 128 - os.waitstatus_to_exitcode(status))

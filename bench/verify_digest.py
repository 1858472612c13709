"""Time the target side's whole-range digest alone: the query an equal ``hiwater verify`` runs on
a SQLite (or DuckDB) target table, and the bound of that case (docs/benchmarks.md, "Verify").

    python bench/verify_digest.py sqlite:////tmp/vs10/target.db [--table orders] [--key id] [--reps 3]

Prints, per repetition, the wall and CPU seconds of this process (SQLite runs in it, one thread),
the rows per CPU second, and the load average: on a shared machine the CPU time is what to
compare. ``PYTHONPATH`` chooses the hiwater measured (a checkout's ``src``: before and after).
"""

from __future__ import annotations

import argparse
import os
import time

import hiwater
from hiwater.verify import digest as D
from hiwater.verify import sides as S


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--table", default="orders")
    ap.add_argument("--key", default="id")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    side = S.target_side(a.url, a.table, [a.key])
    side.use(D.INT if side.int_key else D.MD5)
    hi = (1 << 62)
    print(f"hiwater from {os.path.dirname(hiwater.__file__)}; {side.mode} checksum")
    for _ in range(a.reps):
        load = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), time.process_time()
        if hasattr(side, "_span_total"):       # (the version before the equal check went first)
            side._span_total(None, hi)
            n, _ = side._whole[1]
        else:
            n, _ = side.total(None, hi)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"{n:,} rows: wall {wall:.2f} s, cpu {cpu:.2f} s, {n / cpu / 1e6:.2f} M rows per cpu s "
              f"(load average {load:.1f})", flush=True)
    side.close()


if __name__ == "__main__":
    main()

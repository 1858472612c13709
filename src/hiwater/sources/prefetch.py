"""The reader thread: the next batches are read while this one is decided and written."""

from __future__ import annotations

import queue
import threading


def prefetch(batches, depth: int = 2, early=None):
    """Read the next batches in a background thread while this one is decided and written.

    Parsing (pyarrow, in C++) and SQLite both release the GIL for most of their work, so on
    two cores reading overlaps writing. At most ``depth`` batches wait, so memory stays
    bounded; an error in the reader is raised here, in order, after the batches before it.
    ``early(batch)``, if given, runs in the reader thread on each batch before it is handed on.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce():
        try:
            for b in batches:
                if early is not None:
                    early(b)
                while not stop.is_set():
                    try:
                        q.put(("batch", b), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", done))
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(("error", exc))

    t = threading.Thread(target=produce, name="hiwater-reader", daemon=True)
    t.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "batch":
                yield item
            elif kind == "error":
                raise item
            else:
                return
    finally:
        stop.set()
        while t.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            t.join(0.05)

"""A client-side deadline for one database round trip (``read_timeout=SECONDS`` in a URL).

A server that accepted the connection and then stops answering (a hung host, a stalled
proxy or load balancer, a network path that drops packets without a reset) leaves a
client blocked forever: server-side limits (``statement_timeout``) never fire, and TCP
keep-alives are answered by whatever sits in the middle. :func:`deadline` bounds one
operation from the client: when it expires, the connection's socket is shut down, the
blocked driver call returns with a connection error, and the caller reports that the
server did not answer within the limit. Nothing was committed: a shut-down connection
cannot commit.
"""

from __future__ import annotations

import os
import socket
import threading
from contextlib import contextmanager
from typing import Callable, Iterator


def parse_seconds(value: str | None, name: str, where: str) -> float | None:
    """A positive number of seconds from a URL parameter, or ``None`` when not given."""
    from .errors import ConfigError
    if value in (None, ""):
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds != seconds or seconds > 86_400 * 365:
        raise ConfigError(f"{where}: {name}={value!r}: give a positive number of seconds (e.g. {name}=30)")
    return seconds


@contextmanager
def deadline(fileno: Callable[[], int], seconds: float | None) -> Iterator[list]:
    """Run the body with a deadline; the yielded list is non-empty when the deadline cut it."""
    fired: list = []
    if not seconds:
        yield fired
        return

    def cut() -> None:
        fired.append(True)
        try:
            s = socket.socket(fileno=os.dup(fileno()))
        except (OSError, ValueError):
            return
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            s.close()  # the duplicate only; the driver still owns the original descriptor

    timer = threading.Timer(seconds, cut)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()

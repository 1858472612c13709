"""How big the long suites run: the CI size by default, the full size with
``HIWATER_RELIABILITY=full``, or any count through the suite's own variable."""

from __future__ import annotations

import os


def env_int(name: str, ci: int, full: int) -> int:
    """A count from ``$name``; ``HIWATER_RELIABILITY=full`` picks the full-run default."""
    if os.environ.get(name):
        return int(os.environ[name])
    return full if os.environ.get("HIWATER_RELIABILITY") == "full" else ci

"""Targets apply a batch and the new state in one transaction.

:func:`open_target` picks the implementation from a URL or a SQLite path; each
dialect lives in its own module behind the :class:`~hiwater.targets.base.Target`
interface.
"""

from __future__ import annotations

from ..errors import ConfigError
from .base import Target


def open_target(db: str | None = None, target: str | None = None, **kw) -> Target:
    if db is not None and target is not None:
        raise ConfigError("give --db PATH or --target URL, not both")
    if target is None:
        from .sqlite import SQLiteTarget
        return SQLiteTarget(db if db is not None else ":memory:", **kw)
    scheme = target.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from .sqlite import SQLiteTarget
        path = target.split("://", 1)[1] if "://" in target else target.split(":", 1)[1]
        if path.startswith("/") and not path.startswith("//"):
            path = path[1:] if target.startswith("sqlite:///") and not target.startswith("sqlite:////") else path
        return SQLiteTarget(path or ":memory:", **kw)
    loader = _REGISTRY.get(scheme)
    if loader is None:
        raise ConfigError(f"--target {_redact(target)}: unknown database kind {scheme!r}",
                          hint="use a SQLite path with --db, or a sqlite:/// URL")
    return loader(target, **kw)


def _redact(url: str) -> str:
    from ..urls import redact
    return redact(url)


_REGISTRY: dict = {}


def register(scheme: str, factory) -> None:
    """Make ``--target scheme://...`` open ``factory(url, **kw)``."""
    _REGISTRY[scheme] = factory


__all__ = ["Target", "open_target", "register"]

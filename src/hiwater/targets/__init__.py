"""Targets apply a batch and the new state in one transaction.

:func:`open_target` picks the implementation from a URL or a SQLite path; each
dialect lives in its own module behind the :class:`~hiwater.targets.base.Target`
interface. A module is imported only when its URL scheme is used, so a missing
driver only matters to the people who need it.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..urls import expand, redact
from .base import Target


def open_target(db: str | None = None, target: str | None = None, **kw) -> Target:
    """``db`` (a SQLite path) or ``target`` (a URL); neither: ``$HIWATER_TARGET_URL``, else an
    in-memory SQLite database. An explicit ``db`` wins over the environment variable."""
    import os
    if target is None and db is None:
        target = os.environ.get("HIWATER_TARGET_URL") or None
    if db is not None and target is not None:
        raise ConfigError("give --db PATH or --target URL, not both")
    if target is None:
        from .sqlite import SQLiteTarget
        return SQLiteTarget(db if db is not None else ":memory:", **kw)
    target = expand(target)
    scheme = target.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from .sqlite import SQLiteTarget
        path = target.split("://", 1)[1] if "://" in target else target.split(":", 1)[1]
        if path.startswith("/") and not path.startswith("//"):
            path = path[1:] if target.startswith("sqlite:///") and not target.startswith("sqlite:////") else path
        return SQLiteTarget(path or ":memory:", **kw)
    loader = _REGISTRY.get(scheme)
    if loader is None:
        raise ConfigError(f"--target {redact(target)}: unknown database kind {scheme!r}",
                          hint="use a SQLite path with --db, or a sqlite:///, postgresql://, duckdb:/// or delta:/// URL")
    return loader(target, **kw)


def _redact(url: str) -> str:
    return redact(url)


_REGISTRY: dict = {}


def register(scheme: str, factory) -> None:
    """Make ``--target scheme://...`` open ``factory(url, **kw)``."""
    _REGISTRY[scheme] = factory


def _driver(module: str, extra: str, what: str):
    try:
        return __import__(module)
    except ImportError:
        raise ConfigError(f"{what} needs the {module} driver, which is not installed",
                          hint=f"pip install 'hiwater[{extra}]'") from None


def _postgres(url: str, **kw) -> Target:
    _driver("psycopg", "postgres", "a PostgreSQL target")
    from .postgres import PostgresTarget
    return PostgresTarget(url, **kw)


def _duckdb(url: str, **kw) -> Target:
    _driver("duckdb", "duckdb", "a DuckDB target")
    from .duckdb import DuckDBTarget
    return DuckDBTarget(url, **kw)


def _delta(url: str, **kw) -> Target:
    from .delta import DeltaTarget
    return DeltaTarget(url, **kw)


register("postgresql", _postgres)
register("postgres", _postgres)
register("duckdb", _duckdb)
register("delta", _delta)
register("delta+s3", _delta)

__all__ = ["Target", "open_target", "register"]

"""Optional dependencies: a missing one is one line naming the extra to install (exit 2)."""

from __future__ import annotations

import importlib

from .errors import ConfigError


def require(module: str, extra: str, what: str):
    """Import ``module`` or raise :class:`ConfigError` naming ``pip install 'hiwater[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{what} needs {module}, which is not installed",
                          hint=f"pip install 'hiwater[{extra}]'") from None

"""Connection URLs: ``${VAR}`` expansion and password redaction."""

from __future__ import annotations

import os
import re

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand(url: str) -> str:
    """Replace ``${VAR}`` with the environment's value (empty if unset)."""
    return _VAR.sub(lambda m: os.environ.get(m.group(1), ""), url)


def redact(url: str) -> str:
    """The URL with any password replaced by ``***``, for logs, errors and history."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)

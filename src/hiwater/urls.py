"""Connection URLs: ``${VAR}`` expansion, password redaction, file paths in URLs."""

from __future__ import annotations

import os
import re

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)(.*)$", re.DOTALL)
_QUERY_SECRET = re.compile(r"([?&](?:password|passwd|pwd|sslpassword)=)[^&#]*", re.IGNORECASE)


def expand(url: str) -> str:
    """Replace ``${VAR}`` with the environment's value (empty if unset)."""
    return _VAR.sub(lambda m: os.environ.get(m.group(1), ""), url)


def redact(url: str) -> str:
    """The URL with any password replaced by ``***``, for logs, errors and history.

    The user part ends at the *last* ``@`` (a password may hold an unencoded ``@``);
    a ``password=`` query parameter is masked too. When in doubt it masks more.
    """
    m = _SCHEME.match(url)
    if m is None:
        return _QUERY_SECRET.sub(r"\1***", url)
    scheme, rest = m.groups()
    at = rest.rfind("@")
    if at >= 0:
        userinfo = rest[:at]
        if ":" in userinfo:
            rest = userinfo.split(":", 1)[0] + ":***" + rest[at:]
    return scheme + _QUERY_SECRET.sub(r"\1***", rest)


def scrub(text: str, url: str | None) -> str:
    """``text`` (a driver's error message) with the URL's password, if any, masked."""
    secret = password(url) if url else None
    if secret and len(secret) >= 2:
        text = text.replace(secret, "***")
        from urllib.parse import unquote
        plain = unquote(secret)
        if plain != secret and len(plain) >= 2:
            text = text.replace(plain, "***")
    return text


def password(url: str) -> str | None:
    """The password written in a URL (raw, as written), or ``None``."""
    m = _SCHEME.match(url)
    if m is None:
        return None
    rest = m.group(2)
    at = rest.rfind("@")
    if at >= 0 and ":" in rest[:at]:
        return rest[:at].split(":", 1)[1]
    q = re.search(r"[?&]password=([^&#]*)", rest, re.IGNORECASE)
    return q.group(1) if q else None


def file_path(url: str) -> str:
    """The path in ``scheme:///relative``, ``scheme:////absolute`` or ``scheme:path`` (SQLAlchemy's rule).

    An empty path, or ``:memory:``, is an in-memory database.
    """
    body = url.split(":", 1)[1]
    if body.startswith("//"):
        body = body[2:]
        if body.startswith("/"):
            body = body[1:]  # scheme:///rel -> rel ; scheme:////abs -> /abs
    body = body.split("?", 1)[0]
    return body if body not in ("", ":memory:") else ":memory:"

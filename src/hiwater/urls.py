"""Connection URLs: ``${VAR}`` expansion, password redaction, file paths in URLs."""

from __future__ import annotations

import os
import re

from .errors import UsageError

_VAR = re.compile(r"\$\{([^}]*)\}")
_VAR_OR_DOLLAR = re.compile(r"\$\$|\$\{([^}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)(.*)$", re.DOTALL)
_QUERY_SECRET = re.compile(r"([?&](?:password|passwd|pwd|sslpassword)=)[^&#]*", re.IGNORECASE)


def expand(text: str, where: str | None = None, *, environ=None, dollars: bool = False) -> str:
    """Replace each ``${VAR}`` with the environment's value.

    One rule wherever a value is given (``--target``, ``--source``, ``HIWATER_*_URL``, the
    project file, the Python API): an unset variable is an error naming it, never an empty
    string, which would connect without a password or write to another file. ``where`` starts
    the message (default: the URL, password masked). ``dollars``: ``$$`` is a literal ``$``, the
    project file's escape (a URL on the command line keeps its ``$$`` as typed).
    """
    env = os.environ if environ is None else environ
    place = where if where is not None else redact(text)

    def value(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        var = m.group(1)
        if not _NAME.fullmatch(var):
            raise UsageError(f"{place}: ${{{var}}} is not a variable name")
        if var not in env:
            raise UsageError(f"{place}: the environment variable {var} is not set",
                             hint=f"export {var}=…, or write the value itself")
        return env[var]

    return (_VAR_OR_DOLLAR if dollars else _VAR).sub(value, text)


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

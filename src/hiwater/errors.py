"""The one exception family of hiwater.

Every error the library raises on purpose is a :class:`HiwaterError`. Each
carries the context a person needs (file, line, record, value) and, where
there is one, a hint that says how to fix it. The CLI maps the classes to exit
codes in one place (:mod:`hiwater.cli`): 1 when a load failed and nothing of it
was committed, 2 for bad usage or configuration.
"""

from __future__ import annotations


class HiwaterError(Exception):
    """Base of every error hiwater raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.message} ({self.hint})" if self.hint else self.message
        # One line, whatever a name holds: control characters (\n, \f, \x1e, ...) are escaped.
        return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class UsageError(HiwaterError):
    """A bad option, an option conflict, a bad duration: nothing was read or written."""

    exit_code = 2


class ConfigError(UsageError):
    """The target or source cannot be used as configured (missing driver, bad URL)."""


class InputError(HiwaterError):
    """A source file is missing or does not parse; nothing of the run was committed."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 column: int | None = None, hint: str | None = None):
        where = path or "<input>"
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"{where}: {message}", hint=hint)
        self.path = path
        self.line = line
        self.column = column


class StrictError(HiwaterError):
    """``--strict`` met an invalid record: the whole run failed, nothing committed."""

    def __init__(self, reason: str, *, path: str | None, row: int | None, key=None):
        where = path or "<input>"
        if row is not None:
            where += f": record {row}"
        super().__init__(f"{where}: {reason} (--strict: nothing was committed)")
        self.reason = reason
        self.path = path
        self.row = row
        self.key = key


class LockTimeout(HiwaterError):
    """Another run holds the stream's lock for longer than ``--lock-timeout``."""


class TargetError(HiwaterError):
    """The target database refused an operation; the transaction was rolled back."""

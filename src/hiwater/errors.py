"""The one exception family of hiwater.

Every error the library raises on purpose is a :class:`HiwaterError`. Each
carries the context a person needs (file, line, record, value) and, where
there is one, a hint that says how to fix it. Two attributes tell a caller
(a script, an orchestrator) what to do with it:

- ``exit_code``: what the CLI exits with (it maps the classes in one place,
  :mod:`hiwater.cli`): 1 when a load failed and nothing of it was committed,
  2 for bad usage or configuration.
- ``retryable``: whether the same call may succeed if simply tried again later
  (a database that did not answer, a lock held by another run). A bad option,
  a file that does not parse or a failed quality gate is not retryable.

Every error survives a process boundary (``pickle``): ``hiwater run --jobs N``
runs streams in worker processes and hands their errors back.
"""

from __future__ import annotations


def _restore(cls, args, state):
    """Rebuild a pickled error without calling its constructor (whose parameters differ by class)."""
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class HiwaterError(Exception):
    """Base of every error hiwater raises on purpose."""

    exit_code = 1
    retryable = False

    def __init__(self, message: str, *, hint: str | None = None, retryable: bool | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        text = f"{self.message} ({self.hint})" if self.hint else self.message
        # One line, whatever a name holds: control characters (\n, \f, \x1e, ...) are escaped.
        return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)

    def __reduce__(self):
        return _restore, (type(self), self.args, dict(self.__dict__))

    def to_dict(self) -> dict:
        """What a machine needs: the class, the one-line message, the exit code, whether to retry."""
        return {"error": type(self).__name__, "message": str(self), "exit_code": self.exit_code,
                "retryable": self.retryable}


class UsageError(HiwaterError):
    """A bad option, an option conflict, a bad duration, a bad project file: nothing was read or written."""

    exit_code = 2


class ConfigError(UsageError):
    """The target or source cannot be used as configured (missing driver or extra, bad URL)."""


class InputError(HiwaterError):
    """A source file is missing or does not parse; nothing of the run was committed."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 column: int | None = None, hint: str | None = None, retryable: bool | None = None):
        where = path or "<input>"
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"{where}: {message}", hint=hint, retryable=retryable)
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


class QualityError(HiwaterError):
    """``--max-rejected``: the run rejected more records than allowed; nothing of it was committed."""

    def __init__(self, message: str, *, rejected: int, source_records: int, limit: str,
                 hint: str | None = None):
        super().__init__(message, hint=hint)
        self.rejected = rejected
        self.source_records = source_records
        self.limit = limit


class LockTimeout(HiwaterError):
    """Another run holds the stream's lock for longer than ``--lock-timeout``."""

    retryable = True


class TargetError(HiwaterError):
    """The target database refused an operation; the transaction was rolled back."""


class ConnectError(HiwaterError):
    """A database (the target, or a source) did not answer; nothing was read or written."""

    retryable = True


class PipelineError(HiwaterError):
    """``hiwater.run``: one or more streams failed (the others committed). ``result`` holds every
    stream's outcome; ``retryable`` is true when every failure is."""

    def __init__(self, message: str, *, result=None):
        failures = [] if result is None else [s.error for s in result.streams if s.error is not None]
        super().__init__(message, retryable=bool(failures) and all(e.retryable for e in failures))
        self.result = result


__all__ = ["HiwaterError", "UsageError", "ConfigError", "InputError", "StrictError", "QualityError",
           "LockTimeout", "TargetError", "ConnectError", "PipelineError"]

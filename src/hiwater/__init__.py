"""hiwater: incremental loading with a high-water mark that does not lose records.

The API mirrors the CLI: ``hiwater.load(...)`` is ``hiwater load``; ``hiwater.run``,
``status``, ``check`` and ``validate`` are the project commands; the state, history and
quarantine functions are the ``hiwater state|history|quarantine`` commands.
``hiwater.load`` also takes data in memory (a list or iterator of dicts, a pyarrow Table or
RecordBatchReader, a pandas DataFrame). Every error is a :class:`HiwaterError` with
``exit_code`` and ``retryable``.
"""

# The subpackage first: importing it later would bind the name ``verify`` here to the package,
# over the function imported below.
from . import verify as _verify_package  # noqa: F401
from .api import (check, history, load, quarantine_list, quarantine_replay, run, state_reset, state_rewind,
                  state_set, state_show, status, stream_drop, validate, verify)
from .errors import (ConfigError, ConnectError, HiwaterError, InputError, LockTimeout, PipelineError, QualityError,
                     StrictError, TargetError, UsageError)
from .executor import PipelineResult
from .options import LoadOptions
from .stream import StreamResult
from .summary import Counts, Summary

try:  # the version is written once, in pyproject.toml
    from importlib.metadata import PackageNotFoundError, version as _version
    __version__ = _version("hiwater")
except PackageNotFoundError:  # pragma: no cover - running from a tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "load", "run", "status", "check", "validate", "state_show", "state_set", "state_reset", "state_rewind",
    "stream_drop", "history", "quarantine_list", "quarantine_replay", "verify", "LoadOptions", "Summary", "Counts",
    "PipelineResult", "StreamResult",
    "HiwaterError", "UsageError", "ConfigError", "InputError", "StrictError", "QualityError", "LockTimeout",
    "TargetError", "ConnectError", "PipelineError", "__version__",
]

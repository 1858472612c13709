"""hiwater: incremental loading with a high-water mark that does not lose records.

The API mirrors the CLI: ``hiwater.load(...)`` is ``hiwater load``; the state,
history and quarantine functions are the ``hiwater state|history|quarantine``
commands.
"""

from .api import (history, load, quarantine_list, quarantine_replay, state_reset, state_rewind,
                  state_set, state_show)
from .errors import HiwaterError, InputError, LockTimeout, StrictError, UsageError
from .options import LoadOptions
from .summary import Counts, Summary

__version__ = "0.1.0"

__all__ = [
    "load", "state_show", "state_set", "state_reset", "state_rewind", "history",
    "quarantine_list", "quarantine_replay", "LoadOptions", "Summary", "Counts",
    "HiwaterError", "UsageError", "InputError", "StrictError", "LockTimeout", "__version__",
]

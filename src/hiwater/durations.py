"""Durations for ``--lookback``, ``--window``, ``--settle``, ``--max-future``, ``--lock-timeout``.

Accepted: ``15m``, ``2h``, ``1d``, ``30s``, ``500ms``, ``1w``, combinations such as
``1h30m``, ISO-8601 ``PT15M`` / ``P1DT2H``, and a bare integer, which only means
something for integer cursors (``--lookback 100`` = 100 cursor units).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UsageError
from .values import INT, TIMESTAMP_NS

_UNITS_US = {
    "us": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000,
    "d": 86_400_000_000, "w": 7 * 86_400_000_000,
}
_COMPACT = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h|d|w)")
_ISO = re.compile(
    r"^P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Duration:
    """A parsed duration: microseconds for time, or a plain count for integer cursors."""

    text: str
    micros: int | None = None
    units: int | None = None

    def for_kind(self, kind: str | None, option: str) -> int:
        """The amount in the stream's normalised cursor units."""
        if kind == INT:
            if self.units is None:
                raise UsageError(f"{option} {self.text!r}: the cursor is an integer, give a plain number")
            return self.units
        if self.micros is None:
            raise UsageError(
                f"{option} {self.text!r}: the cursor is a {kind or 'timestamp'}, give a unit",
                hint="for example 15m, 2h, 1d or PT15M",
            )
        return self.micros * 1000 if kind == TIMESTAMP_NS else self.micros

    @property
    def seconds(self) -> float:
        if self.micros is None:
            raise UsageError(f"{self.text!r}: give a unit (for example 30s)")
        return self.micros / 1_000_000


# Longer than this is a typo, and cursor arithmetic would leave 64 bits (10,000 years; 2**62 units).
MAX_MICROS = 10_000 * 366 * 86_400_000_000
MAX_UNITS = 2**62


def parse_duration(text, option: str) -> Duration:
    """Parse a duration or raise :class:`UsageError` naming the option."""
    d = _parse_duration(text, option)
    if (d.micros is not None and abs(d.micros) > MAX_MICROS) or (d.units is not None and d.units > MAX_UNITS):
        raise UsageError(f"{option} {d.text!r}: too long", hint="at most 10000 years, or 2**62 for integer cursors")
    return d


def _parse_duration(text, option: str) -> Duration:
    if isinstance(text, Duration):
        return text
    if isinstance(text, bool):
        raise UsageError(f"{option} {text!r}: not a duration")
    if isinstance(text, int):
        if text < 0:
            raise UsageError(f"{option} {text}: must not be negative")
        return Duration(str(text), units=text)
    if hasattr(text, "total_seconds"):  # datetime.timedelta
        return Duration(str(text), micros=int(text.total_seconds() * 1_000_000))
    s = str(text).strip()
    if re.fullmatch(r"\d+", s):
        return Duration(s, units=int(s))
    m = _ISO.match(s)
    if m and s.upper() not in ("P", "PT") and any(m.groupdict().values()):
        g = {k: float(v) if v else 0.0 for k, v in m.groupdict().items()}
        micros = (g["w"] * 7 * 86_400 + g["d"] * 86_400 + g["h"] * 3600 + g["m"] * 60 + g["s"]) * 1e6
        return Duration(s, micros=int(round(micros)))
    parts = _COMPACT.findall(s.lower())
    if parts and "".join(n + u for n, u in parts) == s.lower():
        micros = sum(float(n) * _UNITS_US[u] for n, u in parts)
        return Duration(s, micros=int(round(micros)))
    raise UsageError(
        f"{option} {s!r}: not a duration",
        hint="use 30s, 15m, 2h, 1d, 1h30m, ISO-8601 PT15M, or a plain integer for integer cursors",
    )

"""What the simulated source does: a :class:`Scenario` and its named presets.

A scenario is pure configuration. Times are whole seconds; durations are written
the way the loader's options are (``30m``, ``2h``, ``PT15M``) and parsed with the
loader's own duration parser, so ``--lookback 15m`` and ``--delay exp:15m`` mean
the same quarter of an hour.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field

from ..durations import parse_duration
from ..errors import UsageError

DELAY_KINDS = ("none", "fixed", "uniform", "exp", "heavy")


def seconds(text, option: str) -> int:
    """A duration in whole seconds (``0`` for ``0``/``none``)."""
    if text is None or str(text).strip().lower() in ("0", "none", ""):
        return 0
    d = parse_duration(str(text), option)
    if d.micros is None:
        raise UsageError(f"{option} {text!r}: give a unit (for example 30m)")
    return int(round(d.micros / 1_000_000))


def format_seconds(s: float | int | None) -> str:
    """``4380`` -> ``1h13m``: the compact form the loader's ``--lookback`` accepts."""
    if s is None:
        return "-"
    s = int(math.ceil(s))
    if s == 0:
        return "0s"
    sign = "-" if s < 0 else ""
    s = abs(s)
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if s >= size:
            parts.append(f"{s // size}{unit}")
            s %= size
    return sign + "".join(parts)


@dataclass(frozen=True)
class Delay:
    """A delay distribution: how long after its cursor time a late record becomes visible.

    ``none``; ``fixed:D``; ``uniform:MAX`` (0..MAX); ``exp:MEAN`` (exponential);
    ``heavy:SCALE[:ALPHA]`` (a Lomax/Pareto-II tail: median ~0.6·SCALE at ALPHA 1.5,
    and one in a few hundred beyond 50·SCALE). ``cap`` truncates any of them.
    """

    kind: str = "none"
    scale: int = 0          # seconds
    alpha: float = 1.5
    cap: int | None = None  # seconds

    @classmethod
    def parse(cls, text: str, cap=None) -> "Delay":
        text = (text or "none").strip()
        parts = text.split(":")
        kind = parts[0].lower()
        if kind not in DELAY_KINDS:
            raise UsageError(f"--delay {text!r}: choose none, fixed:D, uniform:MAX, exp:MEAN or heavy:SCALE[:ALPHA]")
        capped = seconds(cap, "--max-delay") if cap not in (None, "", "none") else None
        if kind == "none":
            if len(parts) > 1:
                raise UsageError(f"--delay {text!r}: 'none' takes no value")
            return cls("none", 0, cap=capped)
        if len(parts) < 2 or not parts[1]:
            raise UsageError(f"--delay {text!r}: give a duration, for example {kind}:20m")
        scale = seconds(parts[1], "--delay")
        if scale <= 0:
            raise UsageError(f"--delay {text!r}: the duration must be greater than zero")
        alpha = 1.5
        if len(parts) > 2:
            if kind != "heavy":
                raise UsageError(f"--delay {text!r}: only heavy takes a second value (the tail index)")
            try:
                alpha = float(parts[2])
            except ValueError:
                raise UsageError(f"--delay {text!r}: the tail index must be a number") from None
            if alpha <= 0:
                raise UsageError(f"--delay {text!r}: the tail index must be positive")
        return cls(kind, scale, alpha, capped)

    def draw(self, rng: random.Random) -> int:
        if self.kind == "none":
            d = 0.0
        elif self.kind == "fixed":
            d = self.scale
        elif self.kind == "uniform":
            d = rng.uniform(1, self.scale)
        elif self.kind == "exp":
            d = rng.expovariate(1.0 / self.scale)
        else:  # heavy
            d = self.scale * (rng.paretovariate(self.alpha) - 1.0)
        d = int(round(d))
        if self.cap is not None:
            d = min(d, self.cap)
        return max(d, 0)

    @property
    def maximum(self) -> int | None:
        """The largest delay this distribution can draw (``None``: unbounded)."""
        if self.kind == "none":
            return 0
        if self.kind in ("fixed", "uniform"):
            return self.scale if self.cap is None else min(self.scale, self.cap)
        return self.cap

    def __str__(self) -> str:
        if self.kind == "none":
            text = "none"
        elif self.kind == "heavy" and self.alpha != 1.5:
            text = f"heavy:{format_seconds(self.scale)}:{self.alpha:g}"
        else:
            text = f"{self.kind}:{format_seconds(self.scale)}"
        if self.cap is not None:
            text += f" (max {format_seconds(self.cap)})"
        return text


@dataclass(frozen=True)
class Scenario:
    """The evolving source: R runs, one every ``interval``; what arrives in each.

    Fractions apply to the events of a run (new records and updates); ``ties`` is a
    count per run. Every parameter has a default that makes a clean feed.
    """

    name: str = "clean"
    runs: int = 48
    interval: int = 30 * 60            # seconds between runs
    start: str = "2025-01-15T00:00:00"  # naive, as the sample input writes its cursors
    new: int = 20                      # new keys per run
    updates: int = 8                   # updates of existing keys per run
    late: float = 0.0                  # fraction of events that become visible late
    delay: Delay = field(default_factory=Delay)
    ties: int = 0                      # records planted at the previous run's watermark, per run
    disorder: float = 0.0              # fraction of an export's rows moved out of cursor order
    skew: float = 0.0                  # fraction of events stamped by a clock running ahead
    skew_max: int = 2 * 3600           # that clock is 1s..skew_max ahead (inside the 1d future guard)
    far_skew: float = 0.0              # fraction stamped days ahead (beyond the 1d future guard)
    invalid: float = 0.0               # fraction of new records whose cursor is null or garbled
    offsets: float = 0.0               # fraction of cursors written with a UTC offset (same instant)
    duplicates: float = 0.0            # fraction of an export's rows delivered again (older versions too)
    guard: int = 86_400                # the product's default --max-future, for the ground truth

    def replace(self, **changes) -> "Scenario":
        return dataclasses.replace(self, **changes)

    def check(self) -> "Scenario":
        if self.runs < 1:
            raise UsageError("--runs must be at least 1")
        if self.interval < 1:
            raise UsageError("--interval must be at least 1s")
        if self.new < 0 or self.updates < 0 or self.ties < 0:
            raise UsageError("--records, --updates and --ties must not be negative")
        for name in ("late", "disorder", "skew", "far_skew", "invalid", "offsets", "duplicates"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise UsageError(f"--{name.replace('_', '-')} {v}: a fraction between 0 and 1")
        if self.skew + self.far_skew > 1.0:
            raise UsageError("--skew plus --far-skew must not exceed 1")
        if self.skew and self.skew_max < 1:
            raise UsageError("--skew-max must be at least 1s")
        return self

    def describe(self) -> dict:
        return {
            "name": self.name, "runs": self.runs, "interval": format_seconds(self.interval),
            "start": self.start, "new_per_run": self.new, "updates_per_run": self.updates,
            "late_fraction": self.late, "delay": str(self.delay), "ties_per_run": self.ties,
            "disorder": self.disorder, "skew_fraction": self.skew,
            "skew_max": format_seconds(self.skew_max), "far_skew_fraction": self.far_skew,
            "invalid_fraction": self.invalid, "offsets_fraction": self.offsets,
            "duplicates_fraction": self.duplicates,
        }


SCENARIOS: dict[str, Scenario] = {
    # A well-behaved feed: every record is visible the moment it is stamped.
    "clean": Scenario(name="clean"),
    # A quarter of the events commit late, exponentially (mean 20 minutes).
    "late": Scenario(name="late", late=0.25, delay=Delay("exp", 20 * 60)),
    # Three records a run stamped exactly at the previous run's watermark, arriving after it.
    "ties": Scenario(name="ties", ties=3),
    # A few records stamped by clocks running ahead (minutes to 2 hours; a few days).
    "skewed": Scenario(name="skewed", skew=0.004, skew_max=2 * 3600, far_skew=0.004),
    # Everything at once: heavy-tailed delays, shuffled exports, cursors written with UTC offsets,
    # rows delivered twice (and older versions re-sent).
    "messy": Scenario(name="messy", late=0.2, delay=Delay("heavy", 10 * 60), ties=2, disorder=0.3,
                      skew=0.002, skew_max=3600, far_skew=0.003, invalid=0.02, offsets=0.1, duplicates=0.05),
}


def scenario(name: str = "clean", **overrides) -> Scenario:
    """A preset by name, with any field overridden (``None`` keeps the preset's value)."""
    try:
        base = SCENARIOS[name]
    except KeyError:
        raise UsageError(f"--scenario {name!r}: choose {', '.join(SCENARIOS)}") from None
    changes = {k: v for k, v in overrides.items() if v is not None}
    return base.replace(**changes).check()

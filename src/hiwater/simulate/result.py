"""What a simulation measured: per strategy, per run; and its JSON form."""

from __future__ import annotations

from dataclasses import dataclass, field

from .generator import Feed
from .scenario import format_seconds
from .strategies import Strategy

SCHEMA_VERSION = 1
CAUSES = ("tie", "late", "skew", "future", "unexplained")
CAUSE_TEXT = {
    "tie": "stamped exactly at the watermark and arrived after the run that reached it",
    "late": "arrived further behind the watermark than the lookback reaches",
    "skew": "fell behind a watermark that a clock running ahead had pushed forward",
    "future": "stamped beyond the future guard and held in quarantine",
    "unexplained": "no planted cause explains it (a loader bug?)",
}


@dataclass
class RunMetrics:
    run: int
    at: str
    missed: int
    stale: int
    extra: int
    in_quarantine: int
    rows_read: int
    rows_written: int
    quarantined: int
    seconds: float
    watermark: object
    counts: dict

    def to_dict(self) -> dict:
        return {
            "run": self.run, "at": self.at, "missed": self.missed, "stale": self.stale, "extra": self.extra,
            "in_quarantine": self.in_quarantine, "rows_read": self.rows_read,
            "rows_written": self.rows_written, "quarantined": self.quarantined,
            "seconds": round(self.seconds, 4), "watermark": self.watermark, "counts": self.counts,
        }


@dataclass
class StrategyResult:
    strategy: Strategy
    runs: list = field(default_factory=list)          # RunMetrics
    missed_keys: set = field(default_factory=set)     # after the last run
    stale_keys: set = field(default_factory=set)
    causes: dict = field(default_factory=dict)        # key -> cause
    lost_lags: list = field(default_factory=list)     # lag (s) of each record lost to lateness

    @property
    def name(self) -> str:
        return self.strategy.name

    def _last(self, attr):
        return getattr(self.runs[-1], attr) if self.runs else 0

    @property
    def missed(self) -> int:
        return self._last("missed")

    @property
    def stale(self) -> int:
        return self._last("stale")

    @property
    def extra(self) -> int:
        return self._last("extra")

    @property
    def in_quarantine(self) -> int:
        return self._last("in_quarantine")

    @property
    def wrong(self) -> int:
        """Keys whose target row differs from the truth after the last run."""
        return self.missed + self.stale + self.extra

    @property
    def rows_read(self) -> int:
        return sum(r.rows_read for r in self.runs)

    @property
    def rows_written(self) -> int:
        return sum(r.rows_written for r in self.runs)

    @property
    def quarantined(self) -> int:
        return sum(r.quarantined for r in self.runs)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.runs)

    def cause_counts(self) -> dict:
        out = {c: 0 for c in CAUSES}
        for cause in self.causes.values():
            out[cause] += 1
        return {c: n for c, n in out.items() if n}

    def to_dict(self) -> dict:
        s = self.strategy
        return {
            "name": s.name,
            "boundary": s.boundary,
            "lookback": s.lookback_text if not s.full else None,
            "on_late": s.on_late,
            "full": s.full,
            "settle": s.settle,
            "max_future": s.max_future,
            "window": s.window,
            "missed": self.missed,
            "stale": self.stale,
            "extra": self.extra,
            "in_quarantine": self.in_quarantine,
            "silent": self.missed + self.stale - self.in_quarantine,
            "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "quarantined": self.quarantined,
            "seconds": round(self.seconds, 4),
            "final_watermark": self.runs[-1].watermark if self.runs else None,
            "lost_by_cause": self.cause_counts(),
            "lost_lag_range": [format_seconds(min(self.lost_lags)), format_seconds(max(self.lost_lags))]
            if self.lost_lags else None,
            "runs": [r.to_dict() for r in self.runs],
        }


@dataclass
class Recommendation:
    """The smallest lookback that would have lost nothing, and what it costs."""

    lookback_seconds: int
    basis: str                       # where the lateness was observed
    behind: int                      # records observed behind the watermark
    max_lag: int                     # seconds
    percentiles: dict                # p50/p90/p99 of the lag of the records behind, seconds
    strategy: str | None = None      # the strategy that was simulated with it
    rows_read: int | None = None
    missed: int | None = None
    compare: dict = field(default_factory=dict)   # other strategy name -> rows_read
    notes: list = field(default_factory=list)

    @property
    def lookback(self) -> str:
        return format_seconds(self.lookback_seconds)

    def to_dict(self) -> dict:
        return {
            "lookback": self.lookback, "lookback_seconds": self.lookback_seconds, "basis": self.basis,
            "records_behind_watermark": self.behind, "max_lag": format_seconds(self.max_lag),
            "lag_percentiles": {k: format_seconds(v) for k, v in self.percentiles.items()},
            "strategy": self.strategy, "rows_read": self.rows_read, "lost": self.missed,
            "rows_read_of": self.compare, "notes": self.notes,
        }

    def sentence(self) -> str:
        if self.behind == 0:
            text = (f"No record arrived behind the watermark ({self.basis}): the inclusive boundary with no "
                    f"lookback loses nothing.")
        else:
            p = self.percentiles
            text = (f"{self.behind} records arrived behind the watermark ({self.basis}); the worst by "
                    f"{format_seconds(self.max_lag)} (p50 {format_seconds(p.get('p50'))}, p90 "
                    f"{format_seconds(p.get('p90'))}, p99 {format_seconds(p.get('p99'))}). The smallest "
                    f"lookback that loses none of them: --lookback {self.lookback}.")
        for note in self.notes:
            text += " " + note
        if self.rows_read is not None:
            text += f" Simulated as {self.strategy}: {self.missed} lost, {self.rows_read:,} rows read"
            others = [f"{name} {n:,}" for name, n in self.compare.items()]
            text += f" (vs {', '.join(others)})." if others else "."
        return text


@dataclass
class SimulationResult:
    feed: Feed
    source: str
    strategies: list                   # StrategyResult
    recommendation: Recommendation | None = None
    workdir: str | None = None

    @property
    def scenario(self):
        return self.feed.scenario

    @property
    def seed(self) -> int:
        return self.feed.seed

    def strategy(self, name: str) -> StrategyResult:
        for s in self.strategies:
            if s.name == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {
            "simulator": "hiwater simulate",
            "schema": SCHEMA_VERSION,
            "scenario": self.scenario.describe(),
            "seed": self.seed,
            "source": self.source,
            "runs": self.scenario.runs,
            "planted": self.feed.planted(),
            "strategies": [s.to_dict() for s in self.strategies],
            "recommendation": self.recommendation.to_dict() if self.recommendation else None,
        }

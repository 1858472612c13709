"""``hiwater simulate``: play an evolving source through loading strategies and measure what each loses.

>>> from hiwater.simulate import run_simulation
>>> result = run_simulation("ties", runs=12, seed=7, strategies="exclusive,inclusive")   # doctest: +SKIP
>>> [(s.name, s.missed + s.stale) for s in result.strategies]                        # doctest: +SKIP
[('exclusive', 27), ('inclusive', 0)]

Modules: :mod:`.scenario` (what the source does), :mod:`.generator` (the feed and
what was planted in it), :mod:`.strategies`, :mod:`.runner` (the real loader, run
by run), :mod:`.truth` (the comparison), :mod:`.plot`, :mod:`.report`,
:mod:`.history` (``--from-history``), :mod:`.model` (a reference model of the
loader's decisions, for the tests) and :mod:`.command` (the CLI).
"""

from .generator import Feed, Version, generate
from .history import recommend_from_history
from .result import Recommendation, RunMetrics, SimulationResult, StrategyResult
from .runner import SOURCES, recommend_from_feed, run_simulation
from .scenario import SCENARIOS, Delay, Scenario, scenario
from .strategies import Strategy, parse_strategies

__all__ = [
    "run_simulation", "recommend_from_feed", "recommend_from_history", "generate", "Feed", "Version",
    "Scenario", "Delay", "SCENARIOS", "scenario", "Strategy", "parse_strategies", "SOURCES",
    "SimulationResult", "StrategyResult", "RunMetrics", "Recommendation",
]

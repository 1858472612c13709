"""The simulated source: every version of every record, when it was stamped and when it arrived.

The generator plays the scenario forward one run interval at a time and keeps a
record of everything it planted, so the tests (and the report) can say *why* a
strategy lost a record, not only that it did:

- ``cursor`` is the value the source writes in the cursor column (seconds since
  the epoch, printed naive ISO like the sample input); ``arrival`` is the instant
  the record becomes visible at the source; ``run`` is the first run that can see
  it (``0``: after the last run, never seen).
- ``lag`` is how far the record's cursor lies behind the *ideal* watermark at the
  run it arrived in (the largest cursor of every valid record that had arrived by
  the previous run, ignoring records beyond the default one-day future guard).
  An inclusive strategy with lookback ``L`` that reads with the window pushed
  down misses exactly the records with ``lag > L``; an exclusive one misses those
  with ``lag >= L`` (``lag == 0``: a tie at the watermark).

Versions of one key are stamped in increasing cursor order and arrive in that
order (a key is never updated while one of its changes is still in flight, and a
record stamped by a skewed clock or with an invalid cursor is never updated
again), so the source row of a key is always its newest arrived version, and the
ground truth is well defined: the newest version of every valid record that has
arrived so far.
"""

from __future__ import annotations

import datetime as dt
import heapq
import random
from dataclasses import dataclass, field

from .scenario import Scenario

EPOCH = dt.datetime(1970, 1, 1)
NAMES = ("user_signup", "page_view", "purchase", "logout", "password_reset", "login", "refund",
         "add_to_cart", "search", "profile_update")
GARBLED = ("2025-13-45T25:61:00", "not a timestamp", "15/01/2025 08:00", "", "2025-01-15T08:00:00+99:00")

ON_TIME, LATE, TIE, SKEWED, FAR_SKEWED, INVALID = "on-time", "late", "tie", "skewed", "far-skewed", "invalid"


OFFSETS = (0, 60, -300, 330, 120)      # minutes: Z, +01:00, -05:00, +05:30, +02:00


def to_text(seconds: int, offset_minutes: int | None = None) -> str:
    """Naive ISO (UTC) by default; with an offset, the same instant written in that zone."""
    if offset_minutes is None:
        return (EPOCH + dt.timedelta(seconds=seconds)).isoformat()
    tz = dt.timezone(dt.timedelta(minutes=offset_minutes))
    text = (EPOCH + dt.timedelta(seconds=seconds)).replace(tzinfo=dt.timezone.utc).astimezone(tz).isoformat()
    return text.replace("+00:00", "Z")


def from_text(text: str) -> int:
    """Seconds since the epoch of an ISO timestamp (naive = UTC; an offset is honoured)."""
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return int((parsed - EPOCH).total_seconds())


@dataclass
class Version:
    """One version of one record, as the generator planted it."""

    seq: int                 # order of generation (stable tie-breaker)
    key: int
    v: int                   # version number within the key (1 = its creation)
    cursor: int | None       # seconds since the epoch; None when the cursor is invalid
    text: object             # what the source writes in the cursor column
    event: int               # the true instant of the change
    arrival: int             # the instant it becomes visible at the source
    kind: str                # on-time | late | tie | skewed | far-skewed | invalid
    name: str
    run: int = 0             # first run that sees it (0: never, it arrives after the last run)
    lag: int | None = None   # ideal watermark at the previous run minus cursor (seconds)
    honest_lag: int | None = None   # the same against a watermark no skewed clock moved

    @property
    def valid(self) -> bool:
        return self.cursor is not None

    @property
    def delay(self) -> int:
        """How long after its cursor time it became visible."""
        return self.arrival - self.cursor if self.cursor is not None else 0

    def row(self) -> dict:
        return {"id": self.key, "name": self.name, "modified_at": self.text, "version": self.v}

    def describe(self) -> dict:
        return {"id": self.key, "version": self.v, "kind": self.kind, "cursor": self.text,
                "arrival": to_text(self.arrival), "run": self.run, "lag": self.lag}


@dataclass
class RunState:
    """The source as the run at ``time`` sees it."""

    run: int
    time: int
    arrived: list            # versions that arrived since the previous run, in arrival order
    truth: dict              # key -> Version: the ground truth (valid, inside the future guard)
    source: dict             # key -> Version: what the source table holds (truth + far-future + invalid)
    ideal_watermark: int | None   # the ideal watermark after this run
    honest_watermark: int | None  # the same, leaving out records stamped by a clock running ahead


@dataclass
class Feed:
    """Everything the generator planted, and the source replayed run by run."""

    scenario: Scenario
    seed: int
    times: list              # times[j] = instant of run j (times[0] = start)
    versions: list           # every Version, in generation order
    states: list = field(default_factory=list)   # RunState per run, index 0 = run 1

    @property
    def final(self) -> RunState:
        return self.states[-1]

    def arrived(self) -> list:
        return [v for v in self.versions if v.run]

    def truth_versions(self) -> dict:
        return self.final.truth

    def planted(self) -> dict:
        """Counts of what was planted, for the report and the JSON."""
        arrived = self.arrived()
        kinds = {}
        for v in arrived:
            kinds[v.kind] = kinds.get(v.kind, 0) + 1
        lags = [v.lag for v in arrived if v.valid and v.kind != FAR_SKEWED and v.lag is not None and v.lag >= 0]
        return {
            "versions": len(self.versions),
            "arrived": len(arrived),
            "never_arrived": len(self.versions) - len(arrived),
            "kinds": dict(sorted(kinds.items())),
            "behind_watermark": sum(1 for x in lags if x > 0),
            "at_watermark": sum(1 for x in lags if x == 0),
            "max_lag_seconds": max(lags) if lags else 0,
            "truth_records": len(self.final.truth),
        }

    def max_lag(self) -> int:
        """The largest lag of any record that arrived behind the ideal watermark (0 if none)."""
        return self.planted()["max_lag_seconds"]


def generate(scenario: Scenario, seed: int = 1) -> Feed:
    """Play ``scenario`` forward with ``seed``; deterministic for a given pair."""
    sc = scenario.check()
    rng = random.Random(seed)
    start = from_text(sc.start)
    times = [start + j * sc.interval for j in range(sc.runs + 1)]
    versions: list[Version] = []
    pending: list = []                   # heap of (arrival, seq, Version)
    truth: dict[int, Version] = {}       # admissible, valid
    held: dict[int, Version] = {}        # far-future versions not yet inside the guard
    bad: dict[int, Version] = {}         # invalid-cursor records
    busy: set[int] = set()               # keys with a change in flight
    frozen: set[int] = set()             # keys never updated again (skewed clock, invalid cursor)
    versions_of: dict[int, int] = {}
    watermark: int | None = None
    honest: int | None = None
    states: list[RunState] = []
    next_key = 1

    def plant(key, cursor, text, event, arrival, kind):
        if cursor is not None and sc.offsets and rng.random() < sc.offsets:
            text = to_text(cursor, OFFSETS[rng.randrange(len(OFFSETS))])   # same instant, another zone
        v = Version(len(versions), key, versions_of.get(key, 0) + 1, cursor, text, event, arrival, kind,
                    NAMES[rng.randrange(len(NAMES))])
        versions_of[key] = v.v
        versions.append(v)
        busy.add(key)
        heapq.heappush(pending, (arrival, v.seq, v))
        return v

    for j in range(1, sc.runs + 1):
        lo, hi = times[j - 1], times[j]
        # keys that may change in this interval: settled, valid, not frozen
        candidates = sorted(k for k in truth if k not in busy and k not in frozen and k not in held)
        chosen = rng.sample(candidates, min(sc.updates, len(candidates)))
        events = []
        for _ in range(sc.new):
            events.append((next_key, True))
            next_key += 1
        events.extend((k, False) for k in chosen)
        for key, is_new in events:
            t = rng.randint(lo + 1, hi)
            if is_new and sc.invalid and rng.random() < sc.invalid:
                text = None if rng.random() < 0.5 else GARBLED[rng.randrange(len(GARBLED))]
                plant(key, None, text, t, t, INVALID)
                frozen.add(key)
                continue
            r = rng.random()
            skew, kind = 0, ON_TIME
            if r < sc.skew:
                skew, kind = rng.randint(1, sc.skew_max), SKEWED
            elif r < sc.skew + sc.far_skew:
                skew, kind = rng.randint(2 * 86_400, 5 * 86_400), FAR_SKEWED
            delay = 0
            if sc.late and rng.random() < sc.late:
                delay = sc.delay.draw(rng)
                if kind == ON_TIME and delay > 0:
                    kind = LATE
            cursor = t + skew
            plant(key, cursor, to_text(cursor), t, t + delay, kind)
            if skew:
                frozen.add(key)
        if watermark is not None and sc.ties:
            # Ties: stamped exactly at the watermark the previous run reached, arriving after it.
            tie_keys = [k for k in candidates if k not in busy and truth[k].cursor < watermark]
            for _ in range(sc.ties):
                arrival = rng.randint(lo + 1, hi)
                if tie_keys and rng.random() < 0.3:
                    key = tie_keys.pop(rng.randrange(len(tie_keys)))
                else:
                    key, next_key = next_key, next_key + 1
                plant(key, watermark, to_text(watermark), watermark, arrival, TIE)
                if watermark > arrival:
                    frozen.add(key)   # the watermark ran ahead of the clock (a skewed record): so does the tie

        # Everything that has arrived by this run's instant, in arrival order.
        previous, previous_honest = watermark, honest
        arrived = []
        while pending and pending[0][0] <= hi:
            _, _, v = heapq.heappop(pending)
            busy.discard(v.key)
            v.run = j
            arrived.append(v)
            if not v.valid:
                bad[v.key] = v
                continue
            v.lag = None if previous is None else previous - v.cursor
            v.honest_lag = None if previous_honest is None else previous_honest - v.cursor
            if v.cursor > hi + sc.guard:
                held[v.key] = v
                continue
            if v.key in truth and truth[v.key].cursor >= v.cursor:
                continue                  # never happens by construction; the loader would keep the newer
            truth[v.key] = v
            watermark = v.cursor if watermark is None else max(watermark, v.cursor)
            if v.kind not in (SKEWED, FAR_SKEWED):
                honest = v.cursor if honest is None else max(honest, v.cursor)
        for key in [k for k, v in held.items() if v.cursor <= hi + sc.guard]:
            v = held.pop(key)
            truth[key] = v
            watermark = v.cursor if watermark is None else max(watermark, v.cursor)
        source = dict(truth)
        source.update(held)
        source.update(bad)
        states.append(RunState(j, hi, arrived, dict(truth), source, watermark, honest))

    return Feed(sc, seed, times, versions, states)

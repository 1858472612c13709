"""window.py as tables: the window a run applies, the watermark it leaves, the duration checks.

Pure functions of the options, the stored watermark, the cursor's kind and the time; every
case names its inputs and the expected result."""

from __future__ import annotations

import datetime as dt

import pytest

from hiwater import values as V
from hiwater.decide import Window
from hiwater.errors import UsageError
from hiwater.options import LoadOptions
from hiwater.window import check_durations, next_watermark, window_for

UTC = dt.timezone.utc
MIN, HOUR, DAY = 60_000_000, 3_600_000_000, 86_400_000_000


def ts(text: str) -> int:
    return V.parse_bound(text, V.TIMESTAMP, UTC, "test")[0]


NOW = ts("2025-01-15T12:00:00")
PREV = ts("2025-01-15T10:00:00")


def opts(**kw) -> LoadOptions:
    return LoadOptions.build(**kw)


# --- window_for -------------------------------------------------------------------------------------

WINDOWS = [
    # (case, options, previous watermark, kind, expected window)
    ("first run: everything up to the future limit", {}, None, V.TIMESTAMP,
     Window(None, True, None, NOW + DAY, "detect")),
    ("from the watermark, inclusive", {}, PREV, V.TIMESTAMP, Window(PREV, True, None, NOW + DAY, "detect")),
    ("exclusive boundary", {"boundary": "exclusive"}, PREV, V.TIMESTAMP,
     Window(PREV, False, None, NOW + DAY, "detect")),
    ("lookback lowers the start", {"lookback": "15m"}, PREV, V.TIMESTAMP,
     Window(PREV - 15 * MIN, True, None, NOW + DAY, "detect")),
    ("lateness option travels along", {"on_late": "load", "lookback": "1h"}, PREV, V.TIMESTAMP,
     Window(PREV - HOUR, True, None, NOW + DAY, "load")),
    ("full load: no lower bound", {"full_load": True}, PREV, V.TIMESTAMP,
     Window(None, True, None, NOW + DAY, "detect")),
    ("no future limit", {"max_future": "none"}, PREV, V.TIMESTAMP, Window(PREV, True, None, None, "detect")),
    ("future limit from --max-future", {"max_future": "2h"}, PREV, V.TIMESTAMP,
     Window(PREV, True, None, NOW + 2 * HOUR, "detect")),
    ("--since: a ranged backfill, inclusive whatever the boundary",
     {"since": "2025-01-01T00:00:00", "boundary": "exclusive"}, PREV, V.TIMESTAMP,
     Window(ts("2025-01-01T00:00:00"), True, None, NOW + DAY, "detect", ranged=True)),
    ("--since and --until", {"since": "2025-01-01", "until": "2025-01-02"}, None, V.DATE,
     Window(V.parse_bound("2025-01-01", V.DATE, UTC, "t")[0], True, V.parse_bound("2025-01-02", V.DATE, UTC, "t")[0],
            NOW + DAY, "detect", ranged=True)),
    ("--until alone caps the end", {"until": "2025-01-15T11:00:00"}, PREV, V.TIMESTAMP,
     Window(PREV, True, ts("2025-01-15T11:00:00"), NOW + DAY, "detect")),
    ("integer cursor: no future limit", {}, 100, V.INT, Window(100, True, None, None, "detect")),
    ("integer cursor: lookback in units", {"lookback": "5"}, 100, V.INT, Window(95, True, None, None, "detect")),
    ("integer cursor: first run", {}, None, V.INT, Window(None, True, None, None, "detect")),
    ("integer cursor: --since/--until", {"since": "10", "until": "20"}, 100, V.INT,
     Window(10, True, 20, None, "detect", ranged=True)),
]


@pytest.mark.parametrize("case,kw,prev,kind,expected", WINDOWS, ids=[w[0] for w in WINDOWS])
def test_window_for(case, kw, prev, kind, expected):
    assert window_for(opts(**kw), prev, kind, NOW, UTC) == expected


def test_window_for_rejects_a_lookback_of_the_wrong_kind():
    with pytest.raises(UsageError, match="--lookback"):
        window_for(opts(lookback="15m"), 100, V.INT, NOW, UTC)
    with pytest.raises(UsageError, match="--lookback"):
        window_for(opts(lookback="5"), PREV, V.TIMESTAMP, NOW, UTC)


# --- next_watermark ---------------------------------------------------------------------------------

WATERMARKS = [
    # (case, options, previous watermark, candidate, kind, expected)
    ("nothing applied: stays", {}, PREV, None, V.TIMESTAMP, PREV),
    ("nothing applied on a first run: none", {}, None, None, V.TIMESTAMP, None),
    ("first run: the newest applied", {}, None, NOW, V.TIMESTAMP, NOW),
    ("moves up to the newest applied", {}, PREV, PREV + HOUR, V.TIMESTAMP, PREV + HOUR),
    ("never moves down (late records applied)", {"on_late": "load"}, PREV, PREV - HOUR, V.TIMESTAMP, PREV),
    ("lookback does not lower it", {"lookback": "1h"}, PREV, PREV - 30 * MIN, V.TIMESTAMP, PREV),
    ("full load: set from the data, even lower", {"full_load": True}, PREV, PREV - HOUR, V.TIMESTAMP, PREV - HOUR),
    ("full load with nothing examined: none", {"full_load": True}, PREV, None, V.TIMESTAMP, None),
    ("--settle holds it back from now", {"settle": "1h"}, None, NOW, V.TIMESTAMP, NOW - HOUR),
    ("--settle never below the previous", {"settle": "3h"}, PREV, NOW, V.TIMESTAMP, PREV),
    ("--until caps it", {"until": "2025-01-15T11:00:00"}, PREV, NOW, V.TIMESTAMP, ts("2025-01-15T11:00:00")),
    ("--since above the watermark leaves a gap: stays", {"since": "2025-01-15T11:00:00"}, PREV, NOW,
     V.TIMESTAMP, PREV),
    ("--since on a first run: stays none", {"since": "2025-01-15T11:00:00"}, None, NOW, V.TIMESTAMP, None),
    ("--since below the watermark: moves", {"since": "2025-01-15T09:00:00"}, PREV, NOW, V.TIMESTAMP, NOW),
    ("--since equal to the watermark: moves", {"since": "2025-01-15T10:00:00"}, PREV, NOW, V.TIMESTAMP, NOW),
    ("integer cursor: moves up", {}, 100, 120, V.INT, 120),
    ("integer cursor: never down", {}, 100, 90, V.INT, 100),
    ("integer cursor: --until caps it", {"until": "110"}, 100, 120, V.INT, 110),
    ("integer cursor: full load, lower", {"full_load": True}, 100, 90, V.INT, 90),
]


@pytest.mark.parametrize("case,kw,prev,candidate,kind,expected", WATERMARKS, ids=[w[0] for w in WATERMARKS])
def test_next_watermark(case, kw, prev, candidate, kind, expected):
    assert next_watermark(opts(**kw), prev, candidate, kind, NOW, UTC) == expected


def test_next_watermark_settles_only_a_known_kind():
    assert next_watermark(opts(settle="1h"), None, NOW, None, NOW, UTC) == NOW


# --- check_durations --------------------------------------------------------------------------------

DURATIONS = [
    # (case, options, kind, error or None)
    ("time units for a timestamp", {"lookback": "15m", "window": "1d", "settle": "1h"}, V.TIMESTAMP, None),
    ("time units for a date", {"lookback": "2d"}, V.DATE, None),
    ("plain numbers for an integer", {"lookback": "5", "window": "100", "settle": "3"}, V.INT, None),
    ("bounds of the kind", {"since": "2025-01-01", "until": "2025-02-01T00:00:00"}, V.TIMESTAMP, None),
    ("integer bounds", {"since": "10", "until": "20"}, V.INT, None),
    ("a unit for an integer cursor", {"lookback": "15m"}, V.INT, "--lookback"),
    ("no unit for a timestamp", {"window": "5"}, V.TIMESTAMP, "--window"),
    ("no unit for a date", {"settle": "5"}, V.DATE, "--settle"),
    ("a timestamp bound for an integer cursor", {"since": "2025-01-01T00:00:00"}, V.INT, "--since"),
    ("a bound that is no time", {"until": "soon"}, V.TIMESTAMP, "--until"),
]


@pytest.mark.parametrize("case,kw,kind,error", DURATIONS, ids=[d[0] for d in DURATIONS])
def test_check_durations(case, kw, kind, error):
    if error is None:
        check_durations(opts(**kw), kind, UTC)
    else:
        with pytest.raises(UsageError, match=error):
            check_durations(opts(**kw), kind, UTC)

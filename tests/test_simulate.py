"""hiwater simulate: the generator's truth, each strategy against it, the outputs, the CLI.

Everything runs the real loader into SQLite files under tmp_path, with small
feeds (a dozen runs of a dozen records) so the file runs in seconds.
"""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from hiwater.simulate import Delay, generate, parse_strategies, run_simulation, scenario
from hiwater.simulate import model
from hiwater.simulate.command import simulate
from hiwater.simulate.generator import TIE
from hiwater.simulate.history import recommend_from_history
from hiwater.simulate.plot import png_size, plot
from hiwater.simulate.report import markdown, write_report
from hiwater.simulate.runner import recommend_from_feed
from hiwater.errors import UsageError

SMALL = dict(runs=12, new=10, updates=4)
ALL = "exclusive,inclusive,lookback:15m,1h,on-late:skip,on-late:load,full"


def bad_keys(s):
    return s.missed_keys | s.stale_keys


def without_seconds(d):
    if isinstance(d, dict):
        return {k: without_seconds(v) for k, v in d.items() if k != "seconds"}
    if isinstance(d, list):
        return [without_seconds(v) for v in d]
    return d


# --- determinism ------------------------------------------------------------------------------

def test_same_seed_same_table():
    a = run_simulation("messy", seed=3, strategies=ALL, **SMALL)
    b = run_simulation("messy", seed=3, strategies=ALL, **SMALL)
    assert without_seconds(a.to_dict()) == without_seconds(b.to_dict())
    c = run_simulation("messy", seed=4, strategies=ALL, **SMALL)
    assert without_seconds(a.to_dict()) != without_seconds(c.to_dict())


def test_generator_is_deterministic_and_keeps_keys_in_order():
    sc = scenario("messy", runs=30)
    a, b = generate(sc, 9), generate(sc, 9)
    assert [v.describe() for v in a.versions] == [v.describe() for v in b.versions]
    last = {}
    for st in a.states:           # a key's versions arrive in increasing cursor order
        for v in st.arrived:
            if v.valid:
                assert last.get(v.key, -1) < v.cursor
                last[v.key] = v.cursor


# --- truth ------------------------------------------------------------------------------------

def test_clean_every_strategy_loses_nothing():
    for source in ("pushdown", "reexport", "delta"):
        r = run_simulation("clean", seed=1, strategies=ALL + ",settle:0s,max-future:10m", source=source, **SMALL)
        for s in r.strategies:
            assert all(run.missed == run.stale == run.extra == 0 for run in s.runs), (source, s.name)


def test_ties_exclusive_loses_exactly_the_planted_ties():
    r = run_simulation("ties", seed=2, strategies="exclusive,inclusive,lookback:15m,full", **SMALL)
    truth = r.feed.final.truth
    planted = {k for k, v in truth.items() if v.kind == TIE}
    assert len(planted) >= 10
    ex = r.strategy("exclusive")
    assert bad_keys(ex) == planted
    assert set(ex.causes.values()) == {"tie"}
    assert all(truth[k].lag == 0 for k in planted)   # exactly at the watermark the previous run reached
    for name in ("inclusive", "lookback:15m", "full"):
        assert r.strategy(name).wrong == 0, name


def test_late_lookback_at_least_the_max_delay_loses_nothing_shorter_loses_exactly_the_later_ones():
    # uniform delays of at most 50 minutes: a record is never more than 50 minutes behind
    sc = scenario("late", delay=Delay.parse("uniform:50m"), late=0.4, **SMALL)
    assert sc.delay.maximum == 50 * 60
    r = run_simulation(sc, seed=5, strategies="inclusive,lookback:15m,lookback:50m,lookback:1h,full")
    truth = r.feed.final.truth
    assert r.strategy("lookback:50m").wrong == 0
    assert r.strategy("lookback:1h").wrong == 0
    assert r.strategy("full").wrong == 0
    for name, lookback in (("inclusive", 0), ("lookback:15m", 15 * 60)):
        s = r.strategy(name)
        expected = {k for k, v in truth.items() if v.lag is not None and v.lag > lookback}
        assert expected, name
        assert bad_keys(s) == expected, name
        assert set(s.causes.values()) == {"late"}
        assert all(truth[k].delay > lookback for k in expected)   # late by more than the lookback


def test_lost_records_are_exactly_the_ones_behind_the_window_in_every_run():
    # per run, not only at the end: rerun with the reference model's target per run
    sc = scenario("messy", skew=0.0, far_skew=0.0, **SMALL)
    strategies = parse_strategies("exclusive,inclusive,lookback:10m,exclusive+lookback:10m")
    r = run_simulation(sc, seed=11, strategies=strategies)
    truth = r.feed.final.truth
    for st in strategies:
        expected = {k for k, v in truth.items() if st.loses(v.lag)}
        assert bad_keys(r.strategy(st.name)) == expected, st.name


def test_full_reload_loses_nothing_and_reads_the_most():
    for name in ("late", "ties", "messy"):
        r = run_simulation(name, seed=1, strategies="exclusive,inclusive,lookback:1h,full", **SMALL)
        full = r.strategy("full")
        assert full.wrong == 0, name
        assert full.rows_read == max(s.rows_read for s in r.strategies), name
        assert all(full.rows_read > s.rows_read for s in r.strategies if s is not full)


def test_reexport_on_late_detect_quarantines_skip_loses_load_applies():
    r = run_simulation("late", seed=4, source="reexport",
                       strategies="inclusive,on-late:skip,on-late:load", **SMALL)
    detect, skip, load = (r.strategy(n) for n in ("inclusive", "on-late:skip", "on-late:load"))
    assert detect.wrong > 0
    assert bad_keys(detect) == bad_keys(skip)
    assert detect.in_quarantine == detect.missed + detect.stale        # every loss is recoverable
    assert skip.in_quarantine == 0                                      # lost silently
    assert load.wrong == 0
    assert all(s.rows_read == r.strategy("inclusive").rows_read for s in r.strategies)


def test_pushdown_hides_late_rows_from_on_late():
    r = run_simulation("late", seed=4, strategies="inclusive,on-late:load", **SMALL)
    assert bad_keys(r.strategy("inclusive")) == bad_keys(r.strategy("on-late:load")) != set()
    assert "nothing to act on" in markdown(r)


def test_skewed_clock_pushes_the_watermark_and_settle_prevents_it():
    sc = scenario("skewed", skew=0.03, far_skew=0.02, **SMALL)
    r = run_simulation(sc, seed=6, strategies="inclusive,settle:0s,full")
    inc = r.strategy("inclusive")
    assert inc.wrong > 0 and set(inc.causes.values()) == {"skew"}
    assert r.strategy("settle:0s").wrong == 0
    assert r.strategy("full").wrong == 0
    assert r.strategy("full").quarantined > 0     # the far-future records wait in quarantine


def test_the_loader_agrees_with_the_reference_model_run_by_run():
    cases = {"pushdown": "exclusive,lookback:15m,exclusive+lookback:15m,settle:5m,max-future:30m",
             "reexport": "inclusive,on-late:skip,lookback:15m+on-late:load",
             "delta": "inclusive,full"}
    for source, strategies in cases.items():
        real = run_simulation("messy", seed=8, strategies=strategies, source=source, **SMALL)
        ref = run_simulation("messy", seed=8, strategies=strategies, source=source, loader=model.load, **SMALL)
        for a, b in zip(real.strategies, ref.strategies):
            assert "unexplained" not in a.causes.values(), (source, a.name)
            for x, y in zip(a.runs, b.runs):
                assert without_seconds(x.to_dict()) == without_seconds(y.to_dict()), (source, a.name, x.run)


def test_window_slices_give_the_same_target_as_one_window():
    r = run_simulation("messy", seed=5, strategies="lookback:15m,lookback:15m+window:10m", **SMALL)
    one, sliced = r.strategies
    assert [(x.missed, x.stale, x.extra, x.watermark) for x in one.runs] == \
        [(x.missed, x.stale, x.extra, x.watermark) for x in sliced.runs]


def test_offsets_redelivery_and_disorder_lose_nothing_more_than_the_lateness():
    # cursors written with UTC offsets, rows re-sent (older versions too), exports shuffled:
    # still exactly the records behind each strategy's window are lost
    strategies = parse_strategies("exclusive,inclusive,lookback:15m")
    r = run_simulation("late", seed=2, strategies=strategies, ties=2, offsets=0.5, duplicates=0.3,
                       disorder=0.5, **SMALL)
    truth = r.feed.final.truth
    assert any("+" in str(v.text) or str(v.text).endswith("Z") for v in truth.values())
    for st in strategies:
        s = r.strategy(st.name)
        assert bad_keys(s) == {k for k, v in truth.items() if st.loses(v.lag)}, st.name
        assert s.rows_read > sum(run.counts["inserted"] + run.counts["updated"] for run in s.runs)


def test_keep_refuses_a_folder_with_targets(tmp_path):
    run_simulation("clean", strategies="inclusive", workdir=str(tmp_path), runs=2, new=2)
    with pytest.raises(UsageError, match="earlier simulation"):
        run_simulation("clean", strategies="inclusive", workdir=str(tmp_path), runs=2, new=2)


@pytest.mark.slow
def test_the_loader_agrees_with_the_reference_model_on_random_feeds():
    import random

    rng = random.Random(2024)
    pool = ["exclusive", "inclusive", "lookback:10m", "exclusive+lookback:10m", "on-late:skip", "on-late:load",
            "lookback:20m+on-late:load", "full", "settle:5m", "settle:0s+lookback:10m", "max-future:none",
            "max-future:30m"]
    for _ in range(60):
        kw = dict(runs=rng.randint(3, 12), new=rng.randint(0, 12), updates=rng.randint(0, 6),
                  late=rng.choice([0, .3, .6]), ties=rng.randint(0, 3), disorder=rng.choice([0, .5]),
                  delay=Delay.parse(rng.choice(["exp:20m", "heavy:10m", "fixed:45m", "uniform:2h"])),
                  skew=rng.choice([0, .05]), far_skew=rng.choice([0, .05]), invalid=rng.choice([0, .1]),
                  offsets=rng.choice([0, .3]), duplicates=rng.choice([0, .2]),
                  interval=rng.choice([600, 1800, 3600]))
        strategies = ",".join(rng.sample(pool, 4))
        source = rng.choice(["pushdown", "reexport", "delta"])
        seed = rng.randint(1, 10**6)
        real = run_simulation("clean", seed=seed, strategies=strategies, source=source, **kw)
        ref = run_simulation("clean", seed=seed, strategies=strategies, source=source, loader=model.load, **kw)
        for a, b in zip(real.strategies, ref.strategies):
            assert "unexplained" not in a.causes.values(), (seed, source, a.name, kw)
            for x, y in zip(a.runs, b.runs):
                assert without_seconds(x.to_dict()) == without_seconds(y.to_dict()), (seed, source, a.name, kw)


# --- recommend --------------------------------------------------------------------------------

def test_recommend_gives_the_smallest_lookback_that_loses_nothing():
    r = run_simulation("late", seed=1, strategies="inclusive,full", recommend=True, **SMALL)
    rec = r.recommendation
    assert rec.lookback_seconds >= rec.max_lag > rec.lookback_seconds - 60
    assert r.strategy(rec.strategy).wrong == 0 and rec.missed == 0
    assert rec.rows_read == r.strategy(rec.strategy).rows_read
    shorter = run_simulation("late", seed=1, strategies=f"lookback:{rec.lookback_seconds - 60}s", **SMALL)
    worst = max(v.lag for st in r.feed.states for v in st.arrived if v.lag is not None
                and st.truth.get(v.key) is v)
    assert worst == rec.max_lag
    # a minute less reads less and the worst record falls outside it (at its run, if not at the end)
    assert shorter.strategies[0].rows_read < rec.rows_read
    assert max(run.missed + run.stale for run in shorter.strategies[0].runs) > 0


def test_recommend_on_a_clean_feed_is_no_lookback():
    rec = recommend_from_feed(generate(scenario("clean", **SMALL), 1))
    assert rec.lookback_seconds == 0 and rec.behind == 0
    assert "loses nothing" in rec.sentence()


def test_recommend_from_history_reads_the_quarantine_of_a_real_target(tmp_path):
    run_simulation("late", seed=3, strategies="inclusive", source="delta", workdir=str(tmp_path), **SMALL)
    from_feed = recommend_from_feed(generate(scenario("late", **SMALL), 3))
    rec = recommend_from_history(str(tmp_path / "inclusive" / "target.sqlite"))
    assert rec.behind > 0
    assert rec.lookback_seconds == from_feed.lookback_seconds
    assert rec.strategy == f"lookback:{rec.lookback}"
    assert "would have re-read" in rec.sentence()


# --- outputs ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_result():
    return run_simulation("messy", seed=1, strategies=ALL, recommend=True, **SMALL)


def test_plot_is_a_png_of_the_expected_size(small_result, tmp_path):
    path = plot(small_result, str(tmp_path / "sim.png"))
    assert png_size(path) == (1200, 500)
    assert os.path.getsize(path) > 10_000


def test_report_names_every_strategy_and_links_its_figure(small_result, tmp_path):
    path = write_report(small_result, str(tmp_path / "report.md"))
    text = open(path, encoding="utf-8").read()
    for s in small_result.strategies:
        assert f"| {s.name} |" in text
        assert f"**{s.name}**" in text
    assert "![" in text and os.path.exists(tmp_path / "report.png")
    assert "Recommended lookback" in text
    assert "exactly at the watermark" in text      # the ties explained
    assert "behind the watermark, beyond" in text  # the lateness explained


def test_json_schema(small_result):
    d = json.loads(json.dumps(small_result.to_dict()))
    assert [s["name"] for s in d["strategies"]] == [s.name for s in small_result.strategies]
    for s in d["strategies"]:
        for k in ("name", "missed", "stale", "extra", "rows_read", "rows_written", "seconds", "runs"):
            assert k in s
        assert len(s["runs"]) == SMALL["runs"]
        for run in s["runs"]:
            for k in ("missed", "stale", "extra", "rows_read", "rows_written", "seconds"):
                assert k in run
        assert s["rows_read"] == sum(run["rows_read"] for run in s["runs"])
        assert s["missed"] == s["runs"][-1]["missed"]


# --- CLI --------------------------------------------------------------------------------------

def test_cli_mirrors_the_library(tmp_path):
    out = tmp_path / "r.json"
    args = ["--scenario", "late", "--runs", "6", "--records", "8", "--updates", "3", "--seed", "2",
            "--strategies", "exclusive,inclusive,lookback:15m,1h,full", "--json", str(out),
            "--plot", str(tmp_path / "f.png"), "--report", str(tmp_path / "r.md")]
    res = CliRunner().invoke(simulate, args)
    assert res.exit_code == 0, res.output
    for name in ("exclusive", "inclusive", "lookback:15m", "lookback:1h", "full"):
        assert name in res.output
    lib = run_simulation("late", seed=2, strategies="exclusive,inclusive,lookback:15m,1h,full",
                         runs=6, new=8, updates=3)
    assert without_seconds(json.loads(out.read_text())) == without_seconds(json.loads(json.dumps(lib.to_dict())))
    assert png_size(str(tmp_path / "f.png")) == (1200, 500)
    assert "(f.png)" in (tmp_path / "r.md").read_text()


def test_cli_json_to_stdout_and_recommend():
    res = CliRunner().invoke(simulate, ["--scenario", "late", "--runs", "5", "--json", "-", "--recommend"])
    assert res.exit_code == 0
    d = json.loads(res.output)
    assert d["recommendation"]["lookback"] and d["strategies"][-1]["name"] == d["recommendation"]["strategy"]


def test_cli_from_history(tmp_path):
    run_simulation("late", seed=3, strategies="inclusive", source="reexport", workdir=str(tmp_path), **SMALL)
    res = CliRunner().invoke(simulate, ["--recommend", "--from-history", str(tmp_path / "inclusive" / "target.sqlite")])
    assert res.exit_code == 0, res.output
    assert "--lookback" in res.output


def test_cli_in_the_main_command():
    from hiwater.cli import main

    assert main(["simulate", "--runs", "2", "--records", "3", "--strategies", "inclusive", "-q"]) == 0
    assert main(["simulate", "--strategies", "sideways"]) == 2
    assert main(["simulate", "--delay", "exp:10m"]) == 2          # no --late: the delay would do nothing


@pytest.mark.parametrize("text, names", [
    ("exclusive,inclusive,lookback:15m,1h,full", ["exclusive", "inclusive", "lookback:15m", "lookback:1h", "full"]),
    ("on-late:skip,detect,load", ["on-late:skip", "on-late:detect", "on-late:load"]),
    ("lookback:1h+on-late:load,exclusive+lookback:5m", ["lookback:1h+on-late:load", "exclusive+lookback:5m"]),
    ("settle:0s,max-future:10m,window:1h", ["settle:0s", "max-future:10m", "window:1h"]),
])
def test_strategy_names(text, names):
    assert [s.name for s in parse_strategies(text)] == names


@pytest.mark.parametrize("text", ["sideways", "lookback", "lookback:soon", "on-late:maybe", "full+lookback:1h",
                                  "inclusive,inclusive", "", "window:0s"])
def test_bad_strategies_are_usage_errors(text):
    with pytest.raises(UsageError):
        parse_strategies(text)


@pytest.mark.parametrize("text, maximum", [("none", 0), ("fixed:40m", 2400), ("uniform:1h", 3600),
                                           ("exp:20m", None), ("heavy:10m:1.2", None)])
def test_delay_distributions(text, maximum):
    import random

    d = Delay.parse(text)
    assert d.maximum == maximum
    rng = random.Random(1)
    draws = [d.draw(rng) for _ in range(2000)]
    assert min(draws) >= 0
    if maximum is not None:
        assert max(draws) <= maximum
    assert Delay.parse(text, cap="30m").maximum == min(maximum if maximum is not None else 1800, 1800)


# --- the docs ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_tables_in_docs_simulator_md_are_current(tmp_path):
    """Every `$ hiwater simulate` example in docs/simulator.md prints the table the doc shows."""
    import re
    import shlex
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "simulator.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```console\n(.*?)```", doc, re.S)

    def table(text):
        lines = [ln.rstrip() for ln in text.splitlines() if ln.startswith("│")]
        return [re.sub(r"│\s+\d+\.\d+ │$", "│ s │", ln) for ln in lines]

    checked = 0
    for block in blocks:
        first, _, shown = block.partition("\n")
        args = shlex.split(first.removeprefix("$ "))[2:]
        if "--keep" in args or "--from-history" in args:
            continue
        for opt in ("--plot", "--report", "--json"):
            if opt in args:
                i = args.index(opt)
                args[i + 1] = str(tmp_path / os.path.basename(args[i + 1]))
        res = CliRunner().invoke(simulate, args)
        assert res.exit_code == 0, res.output
        assert table(res.output) == table(shown), first
        checked += 1
    assert checked >= 5

"""The promotion rule, pure: numbers in, a Decision out, its reason written from it; the gate on simulated errors
where one model is built to be better. No MLflow store here (the rule applied to a registry: test_registry.py)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from coincast import metrics
from coincast.forecasting.backtest import errors_by_origin
from coincast.metrics import DMTest
from coincast.registry.promotion import (Decision, NoiseTests, Rule, candidates, decide, explain, metric,
                                         noise_tests, pick_challenger, record)

LEVEL = 0.05
EDGE = DMTest(-3.2, 0.001, 720)  # an edge beyond noise
NOISE = DMTest(-0.6, 0.27, 720)  # a lower loss within noise
FAINT = DMTest(-2.1, 0.02, 720)  # an edge at 5 %, not once five candidates share it (Bonferroni: 0.01)
WORSE = DMTest(1.5, 0.93, 720)
EVEN = DMTest(0.0, 0.5, 720)


@pytest.mark.parametrize(
    "args, promote, champion, words",
    [
        # better than the champion and than naive beyond noise: promoted
        (("prophet_seasonal", 0.9931, "naive", 1.0, EDGE, EDGE), True, "prophet_seasonal",
         ["0.9931 beats champion naive (1.0000) beyond noise (DM -3.20, p 0.001 < 0.05)"]),
        (("prophet_seasonal", 0.97, "drift", 0.99, EDGE, EDGE, 1, EDGE), True, "prophet_seasonal",
         ["beats champion drift (0.9900) (DM -3.20", "and naive (1.0000) (DM -3.20"]),
        # a lower rel_mae within noise: the champion stays
        (("prophet_seasonal", 0.999, "naive", 1.0, NOISE, NOISE), False, "naive",
         ["does not beat champion naive (1.0000) beyond noise (DM -0.60, p 0.27 >= 0.05)", "stays"]),
        (("prophet_seasonal", 0.97, "drift", 0.99, EDGE, NOISE, 1, EDGE), False, "drift",
         ["below champion drift (0.9900) but within noise (DM -0.60, p 0.27 >= 0.05)", "stays"]),
        (("prophet_seasonal", 0.97, "drift", 0.99, NOISE, EDGE, 1, EDGE), False, "drift",
         ["does not beat naive (1.0000) beyond noise (DM -0.60", "stays"]),
        # a champion that no longer beats naive beyond noise: the challenger if it does, else naive (one rule,
        # whether or not the champion is this build's best)
        (("prophet_seasonal", 0.97, "drift", 0.99, EDGE, NOISE, 1, NOISE), True, "prophet_seasonal",
         ["champion drift (0.9900) no longer beats naive (1.0000) beyond noise (DM -0.60, p 0.27 >= 0.05)",
          "prophet_seasonal 1h rel_mae 0.9700 does (DM -3.20"]),
        (("prophet_seasonal", 0.97, "drift", 0.99, NOISE, EDGE, 1, NOISE), False, "naive",
         ["neither", "nor champion drift (0.9900) (DM -0.60", "naive is champion"]),
        (("naive", 1.0, "drift", 0.999, None, EVEN, 1, NOISE), True, "naive", ["nothing beats naive", "0.9990"]),
        (("naive", 1.0, "drift", 0.99, None, EVEN, 1, EDGE), False, "drift", ["stays"]),  # it still holds
        # the best of five candidates: its test counts below 0.05 / 5
        (("drift", 0.98, None, None, FAINT, None, 5), False, "naive",
         ["p 0.02 >= 0.01 (0.05 / 5 candidates)", "naive is champion"]),
        (("drift", 0.98, None, None, FAINT, None, 1), True, "drift", ["p 0.02 < 0.05"]),
        (("drift", 0.98, None, None, EDGE, None, 5), True, "drift", ["p 0.001 < 0.01 (0.05 / 5 candidates)"]),
        (("prophet_seasonal", 0.97, "drift", 0.99, EDGE, FAINT, 5, EDGE), False, "drift", ["within noise", "stays"]),
        (("drift", 0.98, "drift", 0.98, FAINT, None, 5), True, "drift", ["refit", "p 0.02 < 0.05"]),  # no correction
        # better than the champion but not than naive, the champion worse than naive: naive
        (("drift", 1.02, "prophet_default", 1.30, WORSE, EDGE), False, "naive",
         ["naive is champion", "1.0200", "1.3000", "p 0.93"]),
        (("drift", 0.998, "prophet_default", 1.30, NOISE, EDGE), False, "naive", ["neither", "naive is champion"]),
        # worse: the champion stays
        (("drift", 0.99, "prophet_seasonal", 0.98, EDGE, WORSE, 1, EDGE), False, "prophet_seasonal", ["does not beat", "stays"]),
        (("drift", 1.01, "prophet_seasonal", 0.98, WORSE, WORSE, 1, EDGE), False, "prophet_seasonal", ["does not beat", "stays"]),
        # tie: the champion stays
        (("drift", 0.99, "prophet_seasonal", 0.99, EDGE, EVEN, 1, EDGE), False, "prophet_seasonal", ["ties", "stays"]),
        # no champion: the challenger against naive
        (("drift", 0.98, None, None, EDGE, None), True, "drift", ["no champion", "0.9800", "p 0.001 < 0.05"]),
        (("drift", 0.998, None, None, NOISE, None), False, "naive",
         ["no champion", "does not beat naive (1.0000) beyond noise (DM -0.60, p 0.27 >= 0.05)", "naive is champion"]),
        (("drift", 1.0, None, None, EVEN, None), False, "naive", ["no champion", "naive is champion"]),  # a tie
        (("drift", 1.05, None, None, WORSE, None), False, "naive", ["no champion", "1.0500", "naive is champion"]),
        (("naive", 1.0, None, None, None, None), True, "naive", ["no champion"]),
        # a champion this backtest did not score: against naive only
        (("drift", 0.98, "prophet_returns", None, EDGE, None), True, "drift", ["not scored", "naive only", "0.9800"]),
        (("drift", 0.998, "prophet_returns", None, NOISE, None), False, "naive", ["not scored", "naive is champion"]),
        (("drift", 1.04, "prophet_returns", None, WORSE, None), False, "naive", ["not scored", "naive is champion"]),
        # naive is the best of the build and the champion is worse than naive: naive needs no edge
        (("naive", 1.0, "drift", 1.03, None, EVEN), True, "naive", ["nothing beats naive", "1.0300"]),
        # the champion's model refit on this build takes over while it beats naive beyond noise
        (("drift", 0.98, "drift", 0.98, EDGE, None), True, "drift", ["refit", "p 0.001 < 0.05"]),
        (("drift", 0.999, "drift", 0.999, NOISE, None), False, "naive", ["no longer beats naive", "p 0.27 >= 0.05"]),
        (("drift", 1.02, "drift", 1.02, WORSE, None), False, "naive", ["naive is champion"]),
        (("naive", 1.0, "naive", 1.0, None, None), True, "naive", ["naive"]),
        # no score or no test for the challenger: never promoted
        (("drift", float("nan"), None, None, None, None), False, "naive", ["naive is champion"]),
        (("drift", 0.98, None, None, None, None), False, "naive", ["not tested", "naive is champion"]),
    ],
)
def test_decide(args, promote, champion, words):
    d = decide(*args[:6], LEVEL, *args[6:])
    assert isinstance(d, Decision)
    reason = explain(d)
    assert (d.promote, d.champion_model) == (promote, champion), reason
    for w in words:
        assert w in reason, reason
    assert decide(*args[:6], LEVEL, *args[6:]) == d  # pure


def test_the_decision_carries_its_inputs_tests_and_rule():
    d = decide("drift", 0.97, "prophet_seasonal", 0.99, EDGE, EDGE, LEVEL, 1, EDGE)
    assert d == Decision(promote=True, champion_model="drift", challenger="drift", challenger_rel=0.97,
                         champion="prophet_seasonal", champion_rel=0.99, rule=Rule.BEATS_CHAMPION,
                         vs_naive=EDGE, vs_champion=EDGE, level=LEVEL, candidates=1, champion_vs_naive=EDGE)
    assert explain(d) == ("drift 1h rel_mae 0.9700 beats champion prophet_seasonal (0.9900) (DM -3.20, p 0.001 < 0.05)"
                          " and naive (1.0000) (DM -3.20, p 0.001 < 0.05) beyond noise")
    assert record(d) == {"promoted": True, "rule": "beats_champion", "champion_model": "drift", "promotion_p_value": 0.05,
                         "candidates": 1, "threshold": 0.05,
                         "vs_naive": {"statistic": -3.2, "p_value": 0.001, "n": 720},
                         "vs_champion": {"statistic": -3.2, "p_value": 0.001, "n": 720},
                         "champion_vs_naive": {"statistic": -3.2, "p_value": 0.001, "n": 720}}
    assert record(decide("drift", 0.98, None, None, EDGE, None, LEVEL, 4))["threshold"] == 0.0125
    assert decide("drift", 1.01, "prophet_seasonal", 0.98, WORSE, WORSE, LEVEL, 1, EDGE).rule is Rule.DOES_NOT_BEAT
    assert decide("drift", 1.02, "prophet_seasonal", 1.05, WORSE, EDGE, LEVEL).rule is Rule.NEITHER_BEATS_NAIVE
    assert decide("drift", 1.01, "naive", 1.0, WORSE, WORSE, LEVEL).rule is Rule.DOES_NOT_BEAT
    assert decide("drift", 0.99, None, None, EDGE, None, LEVEL).rule is Rule.NAIVE_ONLY
    assert decide("drift", 0.97, "seasonal_naive", 0.99, EDGE, NOISE, LEVEL, 1, EDGE).rule is Rule.WITHIN_NOISE
    assert decide("drift", 0.97, "seasonal_naive", 0.99, EDGE, NOISE, LEVEL, 1, NOISE).rule is Rule.CHAMPION_NO_EDGE
    # every rule has its sentence, and the sentence is written from the decision alone
    assert explain(decide("drift", 0.99, "seasonal_naive", 0.99, EDGE, EVEN, LEVEL, 1, EDGE)) == \
        "drift 1h rel_mae 0.9900 ties champion seasonal_naive (0.9900): the champion stays"
    # the level is the knob: the same test passes a looser one
    assert decide("drift", 0.998, None, None, NOISE, None, 0.3).promote
    assert record(decide("naive", 1.0, None, None, None, None, LEVEL))["vs_naive"] is None
    with pytest.raises(ValueError, match="between 0 and 1, got 1.5"):
        decide("drift", 0.98, None, None, EDGE, None, 1.5)
    with pytest.raises(ValueError, match="candidates must be a whole number >= 1, got 0"):
        decide("drift", 0.98, None, None, EDGE, None, LEVEL, 0)


def test_pick_challenger_and_metric():
    def m(r1, r24):
        return {"horizons": {"1": {"rel_mae": r1}, "24": {"rel_mae": r24}}}

    assert pick_challenger({"naive": m(1.0, 1.0), "drift": m(0.99, 1.02)}) == "drift"
    assert pick_challenger({"naive": m(1.0, 1.0), "drift": m(1.0, 0.9)}) == "naive"  # a tie with naive is no win
    assert candidates({"naive": m(1.0, 1.0), "drift": m(1.0, 0.9), "seasonal_naive": m(1.1, 1)}) == 2
    assert candidates({"naive": m(1.0, 1.0)}) == 1
    assert metric(m(0.99, 1.02), 24, "rel_mae") == 1.02
    assert metric({"horizons": {1: {"rel_mae": 0.5}}}, 1, "rel_mae") == 0.5  # int keys too (not read from JSON)
    assert metric(m(float("nan"), 1.0), 1, "rel_mae") is None and metric(None, 1, "rel_mae") is None
    assert metric(m(None, 1.0), 1, "rel_mae") is None and metric(m(0.9, 1.0), 1, "coverage_80") is None


# --- the gate on simulated errors --------------------------------------------------------------------------
def simulated(seed: int, knows: dict[str, tuple[float, float]], hours: int = 720) -> pd.DataFrame:
    """One-hour forecasts as the backtest keeps them (model, origin, horizon, forecast, actual) on a simulated
    random walk with fat-tailed hourly moves: naive, and per model ``(c, s)`` a forecast that knows the share
    ``c`` of the next hour's move, blurred by noise of ``s`` times the hourly volatility. ``c`` is the edge the
    model is built with; with ``c`` = 0 it has none (the noise makes it worse than naive on average)."""
    rng = np.random.default_rng(seed)
    vol = 0.004
    origins = pd.date_range("2024-01-01", periods=hours, freq="h", tz="UTC")
    last = 100 * np.exp(np.cumsum(rng.normal(0, vol, hours)))
    move = vol * rng.standard_t(4, hours)
    actual = last * np.exp(move)
    frames = [pd.DataFrame({"model": "naive", "origin": origins, "horizon": 1, "forecast": last, "actual": actual})]
    for name, (c, s) in knows.items():
        fc = last * np.exp(c * move + s * vol * rng.normal(size=hours))
        frames.append(pd.DataFrame({"model": name, "origin": origins, "horizon": 1, "forecast": fc, "actual": actual}))
    return pd.concat(frames, ignore_index=True)


def gate(forecasts: pd.DataFrame, challenger: str, champion: str | None, level: float = LEVEL,
         among: int = 1) -> Decision:
    """The gate as the build applies it: rel_mae and the DM tests from the same forecasts (``among``: the
    candidates the challenger was picked from)."""
    errors = errors_by_origin(forecasts, 1)
    by_model = {name: g.set_index("origin") for name, g in forecasts.groupby("model")}

    def rel(name: str) -> float:
        g = by_model[name]
        return metrics.rel_mae(g["actual"], g["forecast"], by_model["naive"]["forecast"].reindex(g.index))

    t = noise_tests(errors, challenger, champion)
    return decide(challenger, rel(challenger), champion, rel(champion) if champion else None,
                  t.vs_naive, t.vs_champion, level, among, t.champion_vs_naive)


def test_the_gate_refuses_an_edge_within_noise_and_accepts_a_real_one():
    # "lucky" knows 0.2 % of the next move (an edge of about 0.1 % of naive's MAE, as prophet_returns had): it is
    # below naive here, as the old rule would have promoted; "skilled" knows 30 % of it
    fc = simulated(7, {"lucky": (0.002, 0.05), "skilled": (0.3, 0.1), "more_skilled": (0.5, 0.1),
                       "skilled_twin": (0.302, 0.1)})
    errors = errors_by_origin(fc, 1)
    assert errors.shape == (720, 5)
    lucky = gate(fc, "lucky", None)
    assert lucky.challenger_rel < 1 and lucky.vs_naive.p_value >= LEVEL  # below naive, within noise
    assert not lucky.promote and lucky.champion_model == "naive"
    assert "does not beat naive (1.0000) beyond noise" in explain(lucky)

    skilled = gate(fc, "skilled", None)
    assert skilled.promote and skilled.challenger_rel < 0.8 and skilled.vs_naive.p_value < 1e-6

    # against a skilled champion: a twin with a hair more skill stays out, a clearly better model comes in
    twin = gate(fc, "skilled_twin", "skilled")
    assert twin.vs_naive.p_value < LEVEL and twin.vs_champion.p_value >= LEVEL
    assert twin.challenger_rel < twin.champion_rel and (twin.promote, twin.rule) == (False, Rule.WITHIN_NOISE)
    better = gate(fc, "more_skilled", "skilled")
    assert better.promote and better.rule is Rule.BEATS_CHAMPION and better.vs_champion.p_value < 1e-6
    # the tests pair the same origins: a missing actual drops the origin for every model
    holed = fc.assign(actual=fc["actual"].where(fc["origin"] != fc["origin"].iloc[5]))
    assert gate(holed, "skilled", None).vs_naive.n == 719


def test_noise_rarely_passes_the_gate():
    """Over 100 simulated windows of the "lucky" model (a 0.1 % edge): the old rule (rel_mae below naive's)
    would promote it in most, the gate in few; a model with no edge at all passes at most at the level's rate."""
    lucky = [gate(simulated(seed, {"lucky": (0.002, 0.05)}), "lucky", None) for seed in range(100)]
    assert sum(d.challenger_rel < 1 for d in lucky) > 50
    assert sum(d.promote for d in lucky) < 20
    none = [gate(simulated(seed, {"none": (0.0, 0.05)}), "none", None) for seed in range(100)]
    assert sum(d.promote for d in none) <= 5


def test_the_best_of_several_no_better_models_is_held_to_the_corrected_level():
    """Five models no better than naive (naive plus a little noise): picking the best and testing it at 5 % lets one
    through in ~1 build of 6; at 5 % / 5 (Bonferroni) in at most ~1 in 20."""
    passed = {1: 0, 5: 0}
    for seed in range(200):
        fc = simulated(seed, {f"m{i}": (0.0, 0.02) for i in range(5)})
        errors = errors_by_origin(fc, 1)
        best = errors.mean().idxmin()
        for among in passed:
            passed[among] += gate(fc, best, None, among=among).champion_model != "naive"
    assert passed[1] > 20 and passed[5] <= 10, passed


def test_noise_tests_pick_what_there_is_to_test():
    errors = errors_by_origin(simulated(1, {"a": (0.3, 0.1), "b": (0.1, 0.1)}), 1)
    vs_naive, vs_champion, champion_vs_naive = noise_tests(errors, "a", "b")
    assert vs_naive == metrics.diebold_mariano(errors["a"], errors["naive"]) and vs_naive.n == 720
    assert vs_champion == metrics.diebold_mariano(errors["a"], errors["b"])
    assert champion_vs_naive == metrics.diebold_mariano(errors["b"], errors["naive"])
    assert noise_tests(errors, "a", "naive") == (vs_naive, vs_naive, None)  # the champion is naive: one test
    assert noise_tests(errors, "a", "gone") == (vs_naive, None, None)  # a champion not in this backtest
    assert noise_tests(errors, "a", "a") == (vs_naive, None, None)  # the champion's own model, refit
    assert noise_tests(errors, "naive", "a") == NoiseTests(None, metrics.diebold_mariano(errors["naive"], errors["a"]),
                                                           metrics.diebold_mariano(errors["a"], errors["naive"]))
    assert noise_tests(errors.head(1), "a", "b") == (None, None, None)  # too few origins to test
    assert not math.isnan(vs_naive.statistic)

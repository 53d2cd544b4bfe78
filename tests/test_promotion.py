"""The promotion rule, pure: numbers in, a Decision out, its reason written from it. No MLflow store here (the
rule applied to a registry: test_registry.py)."""
from __future__ import annotations

import pytest

from coincast.registry.promotion import Decision, Rule, decide, explain, metric, pick_challenger


@pytest.mark.parametrize(
    "args, promote, champion, words",
    [
        # better than the champion and than naive: promoted
        (("prophet_seasonal", 0.9931, "naive", 1.0), True, "prophet_seasonal",
         ["0.9931 beats champion naive (1.0000)"]),
        (("prophet_seasonal", 0.97, "drift", 0.99), True, "prophet_seasonal", ["beats champion drift (0.9900)"]),
        # better than the champion but worse than naive: naive
        (("drift", 1.02, "prophet_default", 1.30), False, "naive", ["naive is champion", "1.0200", "1.3000"]),
        # worse: the champion stays
        (("drift", 0.99, "prophet_seasonal", 0.98), False, "prophet_seasonal", ["does not beat", "stays"]),
        (("drift", 1.01, "prophet_seasonal", 0.98), False, "prophet_seasonal", ["does not beat", "stays"]),
        # tie: the champion stays
        (("drift", 0.99, "prophet_seasonal", 0.99), False, "prophet_seasonal", ["ties", "stays"]),
        # no champion
        (("drift", 0.98, None, None), True, "drift", ["no champion", "0.9800"]),
        (("drift", 1.0, None, None), True, "drift", ["no champion"]),
        (("drift", 1.05, None, None), False, "naive", ["no champion", "1.0500", "naive is champion"]),
        (("naive", 1.0, None, None), True, "naive", ["no champion"]),
        # a champion this backtest did not score: against naive only
        (("drift", 0.98, "prophet_returns", None), True, "drift", ["not scored", "naive only", "0.9800"]),
        (("drift", 1.04, "prophet_returns", None), False, "naive", ["not scored", "naive is champion"]),
        # naive is the best of the build and the champion is worse than naive
        (("naive", 1.0, "drift", 1.03), True, "naive", ["nothing beats naive", "1.0300"]),
        # the champion's model refit on this build takes over (unless it fell behind naive)
        (("drift", 0.98, "drift", 0.98), True, "drift", ["refit"]),
        (("drift", 1.02, "drift", 1.02), False, "naive", ["naive is champion"]),
        # no score for the challenger: never promoted
        (("drift", float("nan"), None, None), False, "naive", ["naive is champion"]),
    ],
)
def test_decide(args, promote, champion, words):
    d = decide(*args)
    assert isinstance(d, Decision)
    reason = explain(d)
    assert (d.promote, d.champion_model) == (promote, champion), reason
    for w in words:
        assert w in reason
    assert decide(*args) == d  # pure


def test_the_decision_carries_its_inputs_and_rule():
    d = decide("drift", 0.97, "prophet_seasonal", 0.99)
    assert d == Decision(promote=True, champion_model="drift", challenger="drift", challenger_rel=0.97,
                         champion="prophet_seasonal", champion_rel=0.99, rule=Rule.BEATS_CHAMPION)
    assert explain(d) == "drift 1h rel_mae 0.9700 beats champion prophet_seasonal (0.9900) and naive (1.0000)"
    assert decide("drift", 1.01, "prophet_seasonal", 0.98).rule is Rule.DOES_NOT_BEAT
    assert decide("drift", 1.02, "prophet_seasonal", 1.05).rule is Rule.NEITHER_BEATS_NAIVE
    assert decide("drift", 1.01, "naive", 1.0).rule is Rule.DOES_NOT_BEAT
    assert decide("drift", 0.99, None, None).rule is Rule.NAIVE_ONLY
    # every rule has its sentence, and the sentence is written from the decision alone
    assert explain(decide("drift", 0.99, "seasonal_naive", 0.99)) == \
        "drift 1h rel_mae 0.9900 ties champion seasonal_naive (0.9900): the champion stays"


def test_pick_challenger_and_metric():
    def m(r1, r24):
        return {"horizons": {"1": {"rel_mae": r1}, "24": {"rel_mae": r24}}}

    assert pick_challenger({"naive": m(1.0, 1.0), "drift": m(0.99, 1.02)}) == "drift"
    assert pick_challenger({"naive": m(1.0, 1.0), "drift": m(1.0, 0.9)}) == "naive"  # a tie with naive is no win
    assert metric(m(0.99, 1.02), 24, "rel_mae") == 1.02
    assert metric({"horizons": {1: {"rel_mae": 0.5}}}, 1, "rel_mae") == 0.5  # int keys too (not read from JSON)
    assert metric(m(float("nan"), 1.0), 1, "rel_mae") is None and metric(None, 1, "rel_mae") is None
    assert metric(m(None, 1.0), 1, "rel_mae") is None and metric(m(0.9, 1.0), 1, "coverage_80") is None

"""Adaptive conformal inference (the ``interval_adapt_rate`` knob): the level update by hand, no look-ahead at a
horizon whose misses are known only h hours later, coverage that recovers after a volatility shift where the fixed
level does not, and serving at the adapted level."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coincast.forecasting.calibration import (
    adapted_level, adaptive_misses, calibrate, conformal_quantile, latest_calibration, quantile_at, rolling_quantiles,
    scores,
)


def naive_frame(log_returns: np.ndarray, horizon: int = 1) -> pd.DataFrame:
    """Naive forecasts (the last price) of a price path with these hourly log returns, at one horizon."""
    price = 100 * np.exp(np.cumsum(log_returns))
    n = len(price) - horizon
    origin = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    return pd.DataFrame({"origin": origin, "horizon": horizon, "target_time": origin + pd.Timedelta(hours=horizon),
                         "forecast": price[:n], "actual": price[horizon:], "scale_unscaled": 1.0})


def coverage(out: pd.DataFrame, key: str) -> float:
    rows = out[f"lower_{key}"].notna()
    a = out.loc[rows, "actual"]
    return float(((a >= out.loc[rows, f"lower_{key}"]) & (a <= out.loc[rows, f"upper_{key}"])).mean())


def test_the_adapted_level_by_hand():
    # 10 intervals at 80 % known, 5 missed (alpha 0.2 expected 2): the level rises by 0.01 × (10 × 0.2 − 5)
    assert adapted_level(0.8, 10, 5, 0.01) == pytest.approx(0.83)
    assert adapted_level(0.8, 10, 0, 0.01) == pytest.approx(0.78)  # none missed: narrower
    assert adapted_level(0.95, 1000, 3, 0.0) == 0.95  # rate 0: the nominal level
    np.testing.assert_array_equal(adaptive_misses(np.array([1.0, 3.0, np.nan, 2.0]), np.array([2.0, 2.0, 2.0, np.nan])),
                                  [0.0, 1.0, np.nan, np.nan])


def test_quantile_at_clips_the_rank_instead_of_going_infinite():
    s = np.arange(1, 11, dtype=float)
    assert quantile_at(s, 0.8) == conformal_quantile(s, 0.8) == 9.0
    assert quantile_at(s, 0.95) == 10.0 and conformal_quantile(s, 0.95) == np.inf  # rank 11 of 10: the largest
    assert quantile_at(s, 1.3) == 10.0 and quantile_at(s, -0.2) == 1.0
    assert np.isnan(quantile_at(np.array([]), 0.8))


@pytest.mark.parametrize("horizon", [1, 24])
def test_rate_zero_is_the_split_conformal_calibration(horizon):
    """Each origin's quantile, computed here from scratch: the conformal quantile of |log(actual / forecast)| over
    the rows whose origin is within the window and whose actual is known at the origin."""
    fc = naive_frame(np.random.default_rng(0).normal(0, 0.01, 600), horizon)
    out = calibrate(fc, window_hours=240, min_scores=48, scalings=("unscaled",), adapt_rate=0.0)
    checked = 0
    for i in range(0, len(fc), 7):
        t = fc["origin"].iloc[i]
        pool = fc.loc[(fc["origin"] >= t - pd.Timedelta(hours=240)) & (fc["target_time"] <= t)]
        s = np.abs(np.log(pool["actual"] / pool["forecast"])).to_numpy()
        if len(s) < 48:
            assert np.isnan(out["q_80"].iloc[i])
            continue
        assert out["q_80"].iloc[i] == pytest.approx(conformal_quantile(s, 0.8))
        assert out["q_95"].iloc[i] == pytest.approx(conformal_quantile(s, 0.95))
        assert out["upper_80"].iloc[i] == pytest.approx(fc["forecast"].iloc[i] * np.exp(conformal_quantile(s, 0.8)))
        checked += 1
    assert checked > 60


@pytest.mark.parametrize("horizon", [1, 24])
def test_serving_uses_the_window_the_backtest_would_use_at_the_next_origin(horizon):
    """What is served now is what the backtest's rule gives at the serving origin (the hour after the last
    backtested one): the same window, the same known errors."""
    fc = naive_frame(np.random.default_rng(4).normal(0, 0.01, 900), horizon)
    now = fc["origin"].max() + pd.Timedelta(hours=1)  # as in a backtest: the data end an hour after the last origin
    fc.loc[fc["target_time"] > now, "actual"] = np.nan  # ... so targets past it are unknown
    nxt = pd.DataFrame({"origin": [now], "horizon": horizon, "target_time": [now + pd.Timedelta(hours=horizon)],
                        "forecast": [fc["actual"].iloc[-1]], "actual": [np.nan], "scale_unscaled": 1.0})
    settings = dict(window_hours=240, min_scores=48, scalings=("unscaled",))
    at_next = calibrate(pd.concat([fc, nxt], ignore_index=True), **settings).iloc[-1]
    served, _ = latest_calibration(calibrate(fc, **settings), **settings)
    assert served[horizon]["80"] == pytest.approx(at_next["q_80"])
    assert served[horizon]["95"] == pytest.approx(at_next["q_95"])


def test_adaptive_intervals_use_only_misses_known_at_the_origin():
    """At 24 h a miss of origin i is known at i + 24 h: changing the actual of origin t moves no interval before
    t + 24 h, and widens the one at t + 24 h."""
    fc = naive_frame(np.random.default_rng(1).normal(0, 0.01, 700), horizon=24)
    t = 400
    changed = fc.copy()
    changed.loc[t, "actual"] = fc.loc[t, "actual"] * 1.5  # a huge miss, known at origin t + 24
    after = calibrate(changed, window_hours=10 ** 6, min_scores=48, scalings=("unscaled",), adapt_rate=0.02)
    base = calibrate(fc, window_hours=10 ** 6, min_scores=48, scalings=("unscaled",), adapt_rate=0.02)
    pd.testing.assert_series_equal(base.loc[: t + 23, "upper_80"], after.loc[: t + 23, "upper_80"])
    assert after.loc[t + 24, "q_80"] > base.loc[t + 24, "q_80"]  # the miss is known: a higher level from now on


def test_after_a_volatility_shift_adaptive_coverage_recovers_where_the_fixed_level_lags():
    """Returns whose volatility doubles for good at hour 1500: the fixed level under-covers for a calibration
    window after the shift; the adapted one keeps its 80 % coverage within ±3 points over the same hours."""
    rng = np.random.default_rng(2)
    r = rng.normal(0, 0.01, 2400) * np.where(np.arange(2400) < 1500, 1.0, 2.0)
    fc = naive_frame(r)
    settings = dict(window_hours=720, min_scores=48, scalings=("unscaled",))
    after = slice(1500, 2000)  # the month after the shift
    fixed = calibrate(fc, **settings).iloc[after]
    adaptive = calibrate(fc, **settings, adapt_rate=0.01).iloc[after]
    assert coverage(fixed, "80") < 0.75  # the fixed level lags behind the shift
    assert abs(coverage(adaptive, "80") - 0.80) <= 0.03
    assert abs(coverage(adaptive, "95") - 0.95) <= 0.03


def test_serving_calibrates_at_the_level_adapted_by_every_known_miss():
    rng = np.random.default_rng(3)
    fc = naive_frame(rng.normal(0, 0.01, 900) * np.where(np.arange(900) < 700, 1.0, 2.0))  # misses pile up late
    out = calibrate(fc, window_hours=720, min_scores=48, scalings=("unscaled",), adapt_rate=0.01)
    fixed, _ = latest_calibration(out, window_hours=720, min_scores=48, scalings=("unscaled",))
    adapted, _ = latest_calibration(out, window_hours=720, min_scores=48, scalings=("unscaled",), adapt_rate=0.01)
    s = scores(fc["actual"].to_numpy(), fc["forecast"].to_numpy(), 1.0)
    qs = rolling_quantiles(s, fc["origin"].to_numpy(), fc["target_time"].to_numpy(), (0.8,), 720, 48, 0.01)
    m = adaptive_misses(s, qs[0.8])
    level = adapted_level(0.8, int(np.isfinite(m).sum()), int(np.nansum(m)), 0.01)
    assert level > 0.8
    recent = s[fc["origin"] >= fc["origin"].max() + pd.Timedelta(hours=1) - pd.Timedelta(hours=720)]
    assert adapted[1]["80"] == pytest.approx(quantile_at(recent, level)) and adapted[1]["80"] > fixed[1]["80"]

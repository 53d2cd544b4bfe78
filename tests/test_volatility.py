"""Volatility scalings of the intervals: each on synthetic data with a known volatility, no look-ahead, the choice
by interval score (it must beat "unscaled" where volatility clusters and not lose to it on i.i.d. noise), and serving
with the chosen scaling per horizon (old pickles included)."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest

from coincast.forecasting import volatility
from coincast.forecasting.backtest import BacktestSettings, backtest, served_model
from coincast.forecasting.models import make_model
from coincast.forecasting.serving import ServedForecaster, half_widths
from coincast.timeseries import log_returns, realized_vol

HOURS = 24 * 75
INDEX = pd.date_range("2024-01-01", periods=HOURS, freq="h", tz="UTC")


def garch_path(seed: int = 0, alpha: float = 0.12, beta: float = 0.86, vol: float = 0.006) -> tuple[pd.Series, np.ndarray]:
    """A price series whose hourly log returns are GARCH(1,1) with Student-t(5) shocks, and the true sigma of the
    return of each hour (known the hour before)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_t(5, HOURS) / math.sqrt(5 / 3)
    omega = vol ** 2 * (1 - alpha - beta)
    r, sigma = np.empty(HOURS), np.empty(HOURS)
    s2, prev = vol ** 2, 0.0
    for t in range(HOURS):
        s2 = omega + alpha * prev ** 2 + beta * s2
        sigma[t], prev = math.sqrt(s2), math.sqrt(s2) * z[t]
        r[t] = prev
    return pd.Series(100 * np.exp(np.cumsum(r)), index=INDEX), sigma


def iid_path(seed: int = 1, vol: float = 0.006) -> pd.Series:
    rng = np.random.default_rng(seed)
    return pd.Series(100 * np.exp(np.cumsum(rng.normal(0, vol, HOURS))), index=INDEX)


def hour_of_day_path(seed: int = 2) -> tuple[pd.Series, np.ndarray]:
    """i.i.d. normal returns whose sigma depends on the hour of the day only (3× at 15:00 as at 03:00)."""
    hour = INDEX.hour.to_numpy()
    sigma = 0.004 * (1 + np.exp(-0.5 * ((hour - 15) / 3.0) ** 2) * 2)
    rng = np.random.default_rng(seed)
    return pd.Series(100 * np.exp(np.cumsum(rng.normal(0, 1, HOURS) * sigma)), index=INDEX), sigma


@pytest.mark.parametrize("name", list(volatility.SCALINGS))
def test_each_scaling_is_positive_and_uses_no_price_after_the_origin(name):
    y, _ = garch_path()
    origins = y.index[200:300]
    got = volatility.SCALINGS[name](y, origins, (1, 24))
    assert set(got) == {1, 24} and all(len(v) == len(origins) and (v > 0).all() for v in got.values())
    t = origins[48]  # a GARCH refit point (every 24 origins)
    poisoned = y.copy()
    poisoned[poisoned.index > t] *= np.exp(np.linspace(0, 3, (poisoned.index > t).sum()))
    again = volatility.SCALINGS[name](poisoned, origins, (1, 24))
    for h in (1, 24):
        np.testing.assert_array_equal(got[h][:49], again[h][:49])
    # serving computes it at the last hour (GARCH refits there, without the backtest's warm start: optimizer noise)
    assert volatility.scale_now(y.loc[:t], (1, 24), name) == pytest.approx({h: got[h][48] for h in (1, 24)}, rel=1e-3)


@pytest.mark.parametrize("name", ["rv24", "har", "har_hod", "garch", "blend", "qreg"])
def test_level_scalings_track_a_known_garch_volatility(name):
    """On GARCH returns the 1 h scale follows the true sigma of the next hour (none cannot: it is constant)."""
    y, sigma = garch_path()
    origins = y.index[400:-1]
    scale = volatility.SCALINGS[name](y, origins, (1,))[1]
    truth = sigma[400 + 1:]  # the return of the hour after each origin
    assert np.corrcoef(scale, truth)[0, 1] > (0.85 if name == "garch" else 0.6)


def test_quantile_regression_learns_the_daily_pattern():
    """qreg's inputs include the hour of the day: on returns whose sigma depends on the hour only, its 1 h scale
    follows the true sigma of the next hour."""
    y, sigma = hour_of_day_path()
    origins = y.index[24 * 40: 24 * 50]  # 10 refits
    scale = volatility.qreg(y, origins, (1,))[1]
    assert np.corrcoef(scale, sigma[24 * 40 + 1: 24 * 50 + 1])[0, 1] > 0.8


def test_garch_recovers_the_parameters_of_a_simulated_series():
    y, _ = garch_path(seed=3)
    r = log_returns(y).to_numpy()[1:] * 100
    omega, alpha, beta = volatility.fit_garch(r)
    assert alpha == pytest.approx(0.12, abs=0.05) and beta == pytest.approx(0.86, abs=0.06)
    assert omega / (1 - alpha - beta) == pytest.approx(np.mean(r ** 2), rel=0.5)  # near-unit persistence: loose
    assert volatility.fit_garch(np.ones(10)) == (1.0, 0.0, 0.0)  # too few returns: a constant variance


def test_hour_of_day_scaling_recovers_the_daily_pattern():
    y, sigma = hour_of_day_path()
    origins = y.index[-48:-24]
    one = volatility.hod(y, origins, (1, 24))
    ratio = one[1] / sigma[np.arange(len(y))[-47:-23]]  # scale over the true sigma of the next hour
    assert ratio.std() / ratio.mean() < 0.15  # the same up to a constant: the pattern is the truth's
    assert one[24].std() / one[24].mean() < 0.02  # a whole day ahead covers every hour once: flat
    assert volatility.har_hod(y, origins, (1,))[1].argmax() == one[1].argmax()


def test_fitted_har_follows_the_daily_pattern_and_blend_reuses_garch():
    """har_fit (blend's second half) divides the returns by the hour-of-day shape and multiplies its forecast by the
    shape of the hours ahead: on returns whose sigma depends on the hour only, its 1 h scale follows the true sigma
    of the next hour, and a day ahead is flat. blend is the geometric mean of garch and har_fit, and scales() gives
    the same blend when it computes garch once for both."""
    y, sigma = hour_of_day_path()
    origins = y.index[24 * 60: 24 * 62]
    fitted = volatility.har_fit(y, origins, (1, 24))
    assert np.corrcoef(fitted[1], sigma[24 * 60 + 1: 24 * 62 + 1])[0, 1] > 0.9
    assert fitted[24].std() / fitted[24].mean() < 0.05
    both = volatility.scales(y, origins, (1, 24), ["garch", "blend"])
    alone = volatility.blend(y, origins, (1, 24))
    for h in (1, 24):
        np.testing.assert_allclose(both["blend"][h], np.sqrt(both["garch"][h] * fitted[h]))
        np.testing.assert_allclose(alone[h], both["blend"][h])


def test_fitted_scalings_refit_with_the_models():
    """The fitted scalings refit every ``refit_every`` origins from the first, and the backtest passes its
    ``refit_every_hours``: at 6, the fit at the seventh origin is one made there (the value a fit at that origin
    alone gives), where every 24 it is still the first origin's fit run forward."""
    y, _ = garch_path(seed=3)
    origins = y.index[24 * 40: 24 * 40 + 12]
    fresh = volatility.har_fit(y, origins[6:7], (1, 24))
    every6 = volatility.scales(y, origins, (1, 24), ["garch", "blend", "har"], refit_every=6)
    every24 = volatility.scales(y, origins, (1, 24), ["garch", "blend", "har"])
    six = volatility.har_fit(y, origins, (1, 24), refit_every=6)
    for h in (1, 24):
        assert six[h][6] == pytest.approx(fresh[h][0], rel=1e-9)
        assert volatility.har_fit(y, origins, (1, 24))[h][6] != pytest.approx(fresh[h][0], rel=1e-4)
        np.testing.assert_allclose(every6["har"][h], every24["har"][h])  # a rolling statistic: no fit
        assert not np.allclose(every6["blend"][h][6:], every24["blend"][h][6:], rtol=1e-6)
        np.testing.assert_allclose(every6["blend"][h], volatility.blend(y, origins, (1, 24), refit_every=6)[h])
    settings = BacktestSettings(backtest_days=2, calibration_days=0, horizons=(1, 24), n_jobs=1, refit_every_hours=6,
                                scalings=("unscaled", "garch", "blend"))
    fc = backtest(y.iloc[: 24 * 40 + 48], [{"kind": "naive"}], settings).forecasts
    bt_origins = pd.DatetimeIndex(fc["origin"].unique()).sort_values()
    expected = volatility.scales(y.iloc[: 24 * 40 + 48], bt_origins, (1, 24), ["blend"], refit_every=6)["blend"]
    for h in (1, 24):
        got = fc.loc[fc["horizon"] == h].sort_values("origin")["scale_blend"].to_numpy()
        np.testing.assert_allclose(got, expected[h], rtol=1e-9)


def test_unknown_scaling_is_a_one_line_error():
    with pytest.raises(ValueError, match="interval scalings must be some of unscaled, rv24"):
        volatility.check_scalings(["unscaled", "ewma"])
    with pytest.raises(ValueError, match="interval scalings"):
        backtest(iid_path(), [{"kind": "naive"}], BacktestSettings(scalings=()))


SETTINGS = BacktestSettings(backtest_days=30, calibration_days=14, horizons=(1, 24), n_jobs=1)


def naive_backtest(y: pd.Series, scalings: tuple[str, ...]) -> dict:
    bt = backtest(y, [{"kind": "naive"}], BacktestSettings(**{**SETTINGS.__dict__, "scalings": scalings}))
    return bt.summary


def interval_score(summary: dict, h: str) -> float:
    s = summary["models"]["naive"]["horizons"][h]
    return s["interval_score_80"] + s["interval_score_95"]


def test_on_clustered_volatility_the_choice_beats_no_scaling():
    y, _ = garch_path(seed=4)
    chosen, plain = naive_backtest(y, volatility.DEFAULT_SCALINGS), naive_backtest(y, ("unscaled",))
    assert interval_score(chosen, "1") < 0.95 * interval_score(plain, "1")
    assert chosen["models"]["naive"]["horizons"]["1"]["scaling_share"].get("unscaled", 0) < 0.2
    assert chosen["interval_scaling"]["naive"]["1"] != "unscaled"
    for h in ("1", "24"):  # and the chosen intervals stay calibrated per horizon
        s = chosen["models"]["naive"]["horizons"][h]
        assert abs(s["coverage_80"] - 0.8) <= 0.03 + (0.05 if h == "24" else 0)
        assert abs(s["coverage_95"] - 0.95) <= 0.03


def test_on_iid_noise_no_scaling_is_chosen_or_ties():
    y = iid_path()
    chosen, plain = naive_backtest(y, volatility.DEFAULT_SCALINGS), naive_backtest(y, ("unscaled",))
    for h in ("1", "24"):
        assert interval_score(chosen, h) <= 1.02 * interval_score(plain, h)


@pytest.mark.parametrize("name", list(volatility.SCALINGS))
def test_history_hours_is_all_a_scaling_reads(name):
    """With HISTORY_HOURS of prices a scaling at the last hour is what any longer history gives; with half of them it
    is not (so the constant is not padded): what a served forecast needs to match its calibration."""
    n = 24 * 140
    rng = np.random.default_rng(8)
    index = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    sigma = 0.004 * (1 + np.sin(index.hour.to_numpy() / 24 * 2 * math.pi) ** 2) * np.repeat(rng.uniform(0.5, 2, n // 24), 24)
    y = pd.Series(100 * np.exp(np.cumsum(sigma * rng.standard_t(4, n))), index=index)
    need = volatility.HISTORY_HOURS[name]
    assert need < n and volatility.history_hours([name, "unscaled"]) == need
    full = volatility.scale_now(y, (1, 24), name)
    assert volatility.scale_now(y.iloc[-need:], (1, 24), name) == pytest.approx(full, rel=1e-9)
    if name != "unscaled":
        assert volatility.scale_now(y.iloc[-(need // 2):], (1, 24), name) != pytest.approx(full, rel=1e-3)


def test_a_served_forecast_refuses_a_history_shorter_than_its_calibration():
    """The MLflow face refuses too short a history (its interval would be another width than calibrated), in one
    line; ``history_hours`` is the scaling's reach capped at the hours the model was trained on."""
    from coincast.registry.pyfunc import CoincastPyfunc, input_example

    y, _ = garch_path(seed=3)
    quantiles = {1: {"80": 1.2, "95": 2.0}, 24: {"80": 1.4, "95": 2.4}}
    served = ServedForecaster(make_model({"kind": "naive"}), quantiles, {1: "garch", 24: "unscaled"},
                              {"history_hours": len(y)})
    assert served.history_hours() == volatility.GARCH_FIT_HOURS + 1 < len(y)
    assert ServedForecaster(served.model, quantiles, {1: "blend", 24: "rv24"},
                            {"history_hours": len(y)}).history_hours() == len(y)  # blend reads more than it had
    hist = pd.DataFrame({"timestamp": y.index, "price": y.to_numpy()})
    pyfunc = CoincastPyfunc(served)
    with pytest.raises(ValueError, match=r"^naive needs 1441 hours of history for the intervals it was calibrated "
                                         r"with \(garch, unscaled\), got 1440$"):
        pyfunc.predict(None, hist.tail(1440))
    got = pyfunc.predict(None, hist.tail(1441))
    expected = served.forecast(hist, tuple(range(1, 25)))
    np.testing.assert_allclose(got["upper_80"], expected["upper_80"], rtol=1e-9)  # the same as from all of it
    assert len(input_example(served)) == 1441


def test_the_backtest_records_the_choice_and_serving_uses_it():
    y, _ = garch_path(seed=5)
    bt = backtest(y, [{"kind": "naive"}, {"kind": "drift", "window": 168}],
                  BacktestSettings(**{**SETTINGS.__dict__, "backtest_days": 10, "calibration_days": 7}))
    rec = bt.summary["interval_scaling"]
    assert set(rec) == set(bt.summary["models"]) and len(rec) == 2
    assert all(set(v) == {"1", "24"} and set(v.values()) <= set(volatility.SCALINGS) for v in rec.values())
    assert bt.summary["settings"]["scalings"] == list(volatility.DEFAULT_SCALINGS)
    from coincast.operations.training import summary_table  # what 05_train shows

    table = summary_table(bt.summary)
    assert table.loc[(24, "naive"), "interval_scaling"] == rec["naive"]["24"]
    served = served_model(y, bt, "naive")
    assert served.scalings == {int(h): c for h, c in rec["naive"].items()}
    hist = pd.DataFrame({"timestamp": y.index, "price": y.to_numpy()})
    fc = served.forecast(hist, (1, 24))
    scale = {h: volatility.scale_now(y, [h], served.scalings[h])[h] for h in (1, 24)}
    for i, h in enumerate((1, 24)):
        half = served.quantiles[h]["80"] * scale[h]
        assert fc["upper_80"].iloc[i] == pytest.approx(y.iloc[-1] * math.exp(half))


def test_half_widths_interpolate_across_horizons_with_different_scalings():
    got = half_widths({1: 0.01, 24: 0.024}, [1, 4, 24, 30])
    assert got[0] == 0.01 and got[2] == 0.024
    per_root = np.interp(4, [1, 24], [0.01, 0.024 / math.sqrt(24)])
    assert got[1] == pytest.approx(per_root * 2) and got[3] == pytest.approx(0.024 / math.sqrt(24) * math.sqrt(30))


def test_a_served_model_pickled_before_the_choice_keeps_its_rv24_intervals():
    y = iid_path()
    quantiles = {1: {"80": 1.2, "95": 2.0}, 24: {"80": 1.4, "95": 2.4}}
    served = ServedForecaster(make_model({"kind": "naive"}), quantiles)
    state = {k: v for k, v in served.__dict__.items() if k != "scalings"} | {"vol_window": 24}
    old = pickle.loads(pickle.dumps(served))
    old.__dict__.clear()
    old.__dict__.update(state)  # what an old pickle restores: no scalings attribute, a vol_window
    fc = old.forecast(pd.DataFrame({"timestamp": y.index, "price": y.to_numpy()}), (1, 12, 24))
    sigma = float(realized_vol(y, 24).iloc[-1])
    q80_12 = np.interp(12, [1, 24], [1.2, 1.4])  # what quantile_for interpolated before
    expected = [1.2 * sigma, q80_12 * sigma * math.sqrt(12), 1.4 * sigma * math.sqrt(24)]
    np.testing.assert_allclose(np.log(fc["upper_80"] / fc["forecast"]), expected, rtol=1e-9)


def test_a_scaling_replaces_none_only_with_an_edge_beyond_noise():
    from coincast.forecasting.calibration import pick_scaling

    rng = np.random.default_rng(7)
    none = rng.gamma(2.0, 1.0, 500)
    noisy = none * rng.normal(1.0, 0.3, 500)  # no edge on average, noisy row by row
    tiny = noisy * 0.995  # 0.5 % better in mean: within noise
    real = none * rng.normal(0.9, 0.05, 500)  # 10 % better, consistently
    names = ["unscaled", "har", "garch"]
    assert pick_scaling(np.column_stack([none, tiny, noisy]), names, 1, 0.05, 48) == "unscaled"
    assert pick_scaling(np.column_stack([none, tiny, real]), names, 1, 0.05, 48) == "garch"
    assert pick_scaling(np.column_stack([none, tiny, real])[:40], names, 1, 0.05, 48) == "unscaled"  # too few rows
    assert pick_scaling(np.column_stack([none, tiny, noisy]), names, 1, 1.0, 48) == "har"  # p 1: the best mean


@pytest.mark.slow
def test_on_the_built_in_garch_simulator_1h_intervals_hold_coverage_and_beat_unscaled():
    """The simulator's GARCH(1,1)-t(4) series, 60 scored days: at 1 h the chosen intervals cover within ±3 points
    and score at least as well as unscaled ones. (At 24 h its 95 % coverage ran 92.0–92.9 % over three seeds: at
    the edge of ±3 points, not reliably inside; docs/forecasting.md.)"""
    from coincast.data.sources.simulated import simulate_hourly
    from coincast.timeseries import hourly_series

    df = simulate_hourly("bitcoin", 24 * 120, seed=2)
    df["timestamp"] = df["timestamp"].dt.floor("h")
    y = hourly_series(df)
    settings = {**SETTINGS.__dict__, "backtest_days": 60, "calibration_days": 14}
    chosen = backtest(y, [{"kind": "naive"}], BacktestSettings(**settings)).summary
    plain = backtest(y, [{"kind": "naive"}], BacktestSettings(**{**settings, "scalings": ("unscaled",)})).summary
    s = chosen["models"]["naive"]["horizons"]["1"]
    assert abs(s["coverage_80"] - 0.80) <= 0.03 and abs(s["coverage_95"] - 0.95) <= 0.03
    assert interval_score(chosen, "1") <= interval_score(plain, "1")

import numpy as np
import pandas as pd
import pytest

from coincast.forecasting.backtest import BacktestSettings, backtest, best_model, plan_origins, run_forecasts
from coincast.forecasting.models import make_model
from coincast.forecasting.calibration import calibrate, conformal_quantile, empirical_intervals
from coincast.data.features import transform_data
from coincast.timeseries import hourly_series, observed_series, realized_vol
from conftest import simulated_frame

SMALL = BacktestSettings(backtest_days=3, calibration_days=3, horizons=(1, 24), refit_every_hours=24, n_jobs=2,
                         min_calibration=24)
SPECS = [{"kind": "naive"}, {"kind": "drift", "window": 24},
         {"kind": "prophet_returns", "window_days": 5, "weekly_seasonality": False}]


@pytest.fixture(scope="module")
def y() -> pd.Series:
    return hourly_series(simulated_frame())


@pytest.fixture(scope="module")
def result(y):
    return backtest(y, SPECS, SMALL)


def test_origins_and_scoring_window(y, result):
    origins, first = plan_origins(y, SMALL)
    assert origins[-1] == y.index[-2] and first == y.index[-1] - 72 * pd.Timedelta(hours=1)
    assert len(origins) == 72 + 72
    s = result.summary
    assert s["scored_origins"] == 72
    naive1 = s["models"]["naive"]["horizons"]["1"]
    assert naive1["rel_mae"] == 1.0 and naive1["n"] == 72
    assert s["models"]["naive"]["horizons"]["24"]["n"] == 72 - 23  # targets past the end are unknown
    assert s["best_1h"] == best_model(s["models"], 1)


def test_naive_metrics_match_a_hand_computation(y, result):
    fc = result.forecasts
    rows = fc.loc[(fc["model"] == "naive") & (fc["horizon"] == 1) & fc["scored"]]
    origins = rows["origin"]
    expected = np.mean(np.abs(y.reindex(origins + pd.Timedelta(hours=1)).to_numpy() - y.reindex(origins).to_numpy()))
    assert result.summary["models"]["naive"]["horizons"]["1"]["mae"] == pytest.approx(expected)


def test_no_information_after_an_origin_is_used(y):
    """Forecasts at origin t are identical when every price after t is replaced by garbage."""
    origins, _ = plan_origins(y, SMALL)
    t = origins[40]
    poisoned = y.copy()
    poisoned[poisoned.index > t] *= 1.7
    a, _ = run_forecasts(y, SPECS, origins[: 41], (1, 24), refit_every=24, n_jobs=1)
    b, _ = run_forecasts(poisoned, SPECS, origins[: 41], (1, 24), refit_every=24, n_jobs=1)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == len(SPECS) * 41 * 2  # every model, origin and horizon, and nothing else


def test_parallel_equals_serial(y):
    origins, _ = plan_origins(y, SMALL)
    a, _ = run_forecasts(y, SPECS, origins[:60], (1, 24), refit_every=24, n_jobs=1)
    b, _ = run_forecasts(y, SPECS, origins[:60], (1, 24), refit_every=24, n_jobs=2)
    key = ["model", "origin", "horizon"]
    a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    # Prophet chunks warm-start from different fits when split across processes: equal to optimiser tolerance
    pd.testing.assert_frame_equal(a, b, rtol=1e-3)


def test_intervals_use_only_errors_known_before_the_origin():
    """Calibrate a forecast series, then change an error that becomes known only after origin t:
    intervals at or before t must not move."""
    rng = np.random.default_rng(0)
    n = 300
    origin = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    fc = pd.DataFrame({"origin": origin, "horizon": 1, "target_time": origin + pd.Timedelta(hours=1),
                       "forecast": 100.0, "scale_unscaled": 1.0, "scale_rv24": np.linspace(0.01, 0.02, n)})
    fc["actual"] = 100 * np.exp(rng.normal(0, 0.01, n))
    base = calibrate(fc, window_hours=1000, min_scores=20, scalings=("unscaled", "rv24"))
    t = 150
    changed = fc.copy()
    changed.loc[t, "actual"] = 10_000.0  # its target time is origin[t] + 1 h: known only after origin t
    after = calibrate(changed, window_hours=1000, min_scores=20, scalings=("unscaled", "rv24"))
    for column in ("upper_80", "scaling"):  # the interval and the scaling chosen for it
        pd.testing.assert_series_equal(base.loc[:t, column], after.loc[:t, column])
    assert not np.allclose(base.loc[t + 1:, "upper_95"], after.loc[t + 1:, "upper_95"])


def test_calibrated_coverage_is_close_to_nominal_on_a_random_walk():
    rng = np.random.default_rng(1)
    n = 3000
    y = pd.Series(100 * np.exp(np.cumsum(rng.normal(0, 0.01, n))),
                  index=pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"))
    origin = y.index[:-1]
    fc = pd.DataFrame({"origin": origin, "horizon": 1, "target_time": origin + pd.Timedelta(hours=1),
                       "forecast": y.iloc[:-1].to_numpy(), "actual": y.iloc[1:].to_numpy(),
                       "scale_rv24": realized_vol(y, 24).iloc[:-1].to_numpy()})
    out = calibrate(fc, window_hours=720, min_scores=100, scalings=("rv24",)).iloc[800:]
    inside80 = ((out["actual"] >= out["lower_80"]) & (out["actual"] <= out["upper_80"])).mean()
    inside95 = ((out["actual"] >= out["lower_95"]) & (out["actual"] <= out["upper_95"])).mean()
    assert abs(inside80 - 0.80) < 0.03 and abs(inside95 - 0.95) < 0.02


def test_conformal_quantile():
    s = np.arange(1, 11, dtype=float)  # 10 scores
    assert conformal_quantile(s, 0.8) == 9.0  # ceil(11 * 0.8) = 9th smallest
    assert conformal_quantile(s, 0.95) == np.inf  # ceil(11 * 0.95) = 11 > 10
    assert conformal_quantile(np.array([]), 0.8) == np.inf


def test_too_short_a_series_is_a_clear_error(y):
    with pytest.raises(ValueError, match="too short for backtest_days=30"):
        backtest(y.iloc[:200], SPECS, BacktestSettings())


def test_best_model_tie_breaks():
    def m(r1, r24):
        return {"horizons": {"1": {"rel_mae": r1}, "24": {"rel_mae": r24}}}

    assert best_model({"naive": m(1.0, 1.0), "prophet_returns": m(1.0, 0.97)}) == "naive"  # a tie with naive is no win
    assert best_model({"naive": m(1.0, 1.0), "drift": m(0.99, 1.02), "seasonal_naive": m(0.99, 0.95)}) == "seasonal_naive"
    assert best_model({"naive": m(1.0, 1.0), "drift": m(None, 0.9)}) == "naive"
    from coincast.registry.promotion import pick_challenger

    assert pick_challenger({"naive": m(1.0, 1.0), "drift": m(0.99, 1.02)}) == "drift"


def test_missing_hours_are_not_scored_and_long_windows_get_enough_history(y):
    holed = y.copy()
    holed.iloc[-30:-27] = np.nan  # 3 missing hours inside the scored window
    r = backtest(holed, [{"kind": "naive"}, {"kind": "drift", "window": 168}], SMALL)
    fc = r.forecasts
    missing = holed.index[holed.isna()]
    assert fc.loc[fc["target_time"].isin(missing), "actual"].isna().all()
    assert r.summary["models"]["naive"]["horizons"]["1"]["n"] == 72 - 3
    first = pd.Timestamp(r.summary["first_origin"])
    assert first >= y.index[0] + pd.Timedelta(hours=168)  # drift(168) has its window at the first origin


def test_hours_missing_from_the_features_are_not_scored():
    """The train task backtests features.parquet's observed series: an hour missing from the history is a NaN row
    of the features, never an outcome (a forward-filled price would hand naive a zero error there)."""
    frame = simulated_frame(hours=24 * 8)
    gap = frame["timestamp"].iloc[-30:-27]
    features = transform_data(frame.loc[~frame["timestamp"].isin(gap)])
    observed = observed_series(features)
    assert observed.index.equals(hourly_series(features).index) and observed.loc[gap].isna().all()
    r = backtest(observed, [{"kind": "naive"}], SMALL)
    assert r.summary["models"]["naive"]["horizons"]["1"]["n"] == 72 - 3
    fc = r.forecasts
    assert not (fc.loc[fc["scored"], "actual"] == fc.loc[fc["scored"], "forecast"]).any()  # no free zero errors
    filled = backtest(hourly_series(features), [{"kind": "naive"}], SMALL)
    assert filled.summary["models"]["naive"]["horizons"]["1"]["n"] == 72  # the defect this guards against


def test_save_backtest_writes_its_three_products(result, tmp_path):
    import json

    from coincast.operations.training import backtest_report, save_backtest

    report = backtest_report(result, {"coin": "bitcoin", "source": "simulated"})
    paths = {"backtest": tmp_path / "b.json", "forecasts": tmp_path / "f.parquet", "figures": tmp_path / "f.html"}
    save_backtest(result, report, paths, "bitcoin")
    assert json.loads(paths["backtest"].read_text())["coin"] == "bitcoin"
    pd.testing.assert_frame_equal(pd.read_parquet(paths["forecasts"]), result.forecasts, check_freq=False)
    assert "coincast · bitcoin backtest" in paths["figures"].read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json", "f.html", "f.parquet"]  # no temp files left


PROBABILISTIC = ("interval_score_80", "interval_score_95", "crps", "rel_interval_score_80", "rel_interval_score_95",
                 "rel_crps", "directional_p_value")


def test_summary_has_the_probabilistic_scores_for_every_model_and_horizon(result):
    from coincast.operations.training import backtest_report, flat_metrics

    models = result.summary["models"]
    for name, m in models.items():
        for h in ("1", "24"):
            s = m["horizons"][h]
            assert set(PROBABILISTIC) <= set(s), (name, h)
            assert all(s[k] is not None and s[k] > 0 for k in PROBABILISTIC[:-1]), (name, h)
    assert models["naive"]["horizons"]["1"]["directional_p_value"] is None  # naive never moves
    drift, prophet = (make_model(spec).name for spec in SPECS[1:])  # kind-settings hash
    assert 0 <= models[drift]["horizons"]["1"]["directional_p_value"] <= 1
    baseline = result.summary["naive_empirical"]["horizons"]
    for h in ("1", "24"):  # the baseline against itself, through the same code the models go through
        b = baseline[h]
        assert b["rel_interval_score_80"] == b["rel_interval_score_95"] == b["rel_crps"] == 1.0
        assert b["n_calibrated"] == models["naive"]["horizons"][h]["n"]  # the same scored origins, all calibrated
        # naive's rel_crps: its vol-scaled intervals against the unscaled empirical ones, on the same point forecast
        assert models["naive"]["horizons"][h]["rel_crps"] == pytest.approx(
            models["naive"]["horizons"][h]["crps"] / b["crps"])
    flat = flat_metrics(backtest_report(result, {"coin": "bitcoin"}))
    assert {"naive_empirical.h1.crps", f"{drift}.h24.rel_crps", f"{prophet}.h1.rel_interval_score_95"} <= set(flat)


def test_naive_empirical_intervals_by_hand():
    """naive +- the conformal quantile of its own absolute errors known at the origin (target <= origin)."""
    origin = pd.date_range("2024-01-01", periods=6, freq="h", tz="UTC")
    fc = pd.DataFrame({"origin": origin, "horizon": 1, "target_time": origin + pd.Timedelta(hours=1),
                       "forecast": 100.0, "actual": [101.0, 97.0, 102.0, 105.0, 96.0, 110.0]})  # |errors| 1 3 2 5 4 10
    out = empirical_intervals(fc, levels=(0.8,), window_hours=1000, min_scores=4)
    assert out["lower_80"].iloc[:4].isna().all()  # at origin 3 only the errors of origins 0-2 are known
    # origin 4: errors 1 3 2 5 -> the ceil(5 * 0.8) = 4th smallest = 5 ; origin 5: 1 3 2 5 4 -> ceil(6 * 0.8) = 5th = 5
    assert out["upper_80"].iloc[4:].tolist() == [105.0, 105.0] and out["lower_80"].iloc[4:].tolist() == [95.0, 95.0]
    # a window of 2 hours at origin 5: origins 3 and 4 only -> 2 errors < min_scores
    assert np.isnan(empirical_intervals(fc, (0.8,), window_hours=2, min_scores=4)["upper_80"].iloc[5])


def test_naive_empirical_intervals_use_only_errors_known_at_the_origin():
    """Changing every row whose actual is not known by origin t (target after t) leaves t's interval as it was."""
    rng = np.random.default_rng(3)
    n = 400
    origin = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    frames = []
    for h in (1, 24):
        frames.append(pd.DataFrame({"origin": origin, "horizon": h, "target_time": origin + h * pd.Timedelta(hours=1),
                                    "forecast": 100.0, "actual": 100 + rng.normal(0, h ** 0.5, n)}))
    fc = pd.concat(frames, ignore_index=True)
    base = empirical_intervals(fc, window_hours=24 * 7, min_scores=48)
    t = origin[200]
    changed = fc.copy()
    later = changed["target_time"] > t
    changed.loc[later, "actual"] = changed.loc[later, "actual"] * 1.7 + 50
    after = empirical_intervals(changed, window_hours=24 * 7, min_scores=48)
    upto = base["origin"] <= t
    assert base.loc[upto, "upper_95"].notna().any()
    pd.testing.assert_frame_equal(base.loc[upto], after.loc[upto])
    assert not np.allclose(base.loc[~upto, "upper_95"], after.loc[~upto, "upper_95"], equal_nan=True)

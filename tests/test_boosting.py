"""The opt-in LightGBM model: one regressor per horizon on the price features at the origin, in the same walk-forward
backtest as every other model (same origins, refit cadence, metrics and calibrated intervals)."""
import math
import pickle

import numpy as np
import pandas as pd
import pytest

from coincast.data.features import price_features
from coincast.forecasting.backtest import BacktestSettings, backtest, served_model
from coincast.forecasting.models import make_model
from coincast.timeseries import hourly_series
from conftest import assert_no_look_ahead, garbage_after, simulated_frame

SPEC = {"kind": "lightgbm", "window_days": 7, "n_estimators": 40}
SMALL = BacktestSettings(backtest_days=2, calibration_days=1, horizons=(1, 24), refit_every_hours=24, n_jobs=1,
                         min_calibration=24)


@pytest.fixture(scope="module")
def y() -> pd.Series:
    return hourly_series(simulated_frame())


def test_one_regressor_per_horizon_on_the_features_at_the_origin(y):
    m = make_model(SPEC).fit(y)
    assert sorted(m.models) == [1, 24] and m.min_history == 25
    x = m.features(y.iloc[-m.min_history:]).iloc[[-1]]
    raw = price_features(y).iloc[[-1]]
    assert list(x.columns) == list(raw.columns) and x.notna().all(axis=None)
    assert x["price_lag_24h"].iloc[0] == pytest.approx(y.iloc[-25] / y.iloc[-1])  # levels relative to the price
    p = m.predict(y, [1, 12, 24])
    r = {h: m.models[h].predict(x.to_numpy())[0] for h in (1, 24)}
    assert p[0] == pytest.approx(y.iloc[-1] * math.exp(r[1])) and p[2] == pytest.approx(y.iloc[-1] * math.exp(r[24]))
    # a horizon without a regressor: the log return interpolated between the fitted ones
    assert p[1] == pytest.approx(y.iloc[-1] * math.exp(r[1] + (r[24] - r[1]) * 11 / 23))
    assert pickle.loads(pickle.dumps(m)).predict(y, [1, 12, 24]) == pytest.approx(p)


def test_bad_settings_and_an_unfitted_model_are_clear_errors(y):
    with pytest.raises(ValueError, match="horizons.0: input should be greater than or equal to 1, got 0"):
        make_model({"kind": "lightgbm", "horizons": [0, 24]})
    with pytest.raises(RuntimeError, match=r"lightgbm-\w{6} is not fitted"):
        make_model(SPEC).predict(y, [1])
    with pytest.raises(ValueError, match="needs at least 48 hours with a known 1 h outcome to fit, got 35"):
        make_model(SPEC).fit(y.iloc[:60])


def test_no_look_ahead_changing_prices_after_an_origin_leaves_its_forecast_identical(y):
    """Every origin of a backtest, on the series and on one whose prices after origin t are garbage: each forecast at
    or before t is identical (t is a refit origin, so the fit there is covered too), and the later ones differ."""
    assert_no_look_ahead(SPEC, SMALL, lambda t: (y if t is None else garbage_after(y, t), None))


def test_it_runs_in_the_walk_forward_backtest_and_serves(y):
    result = backtest(y, [{"kind": "naive"}, SPEC], SMALL)
    models = result.summary["models"]
    lgb = make_model(SPEC).name  # its identity: kind + a hash of its settings
    assert lgb.startswith("lightgbm-") and set(models) == {"naive", lgb} and models[lgb]["spec"]["kind"] == "lightgbm"
    fc = result.forecasts
    assert (fc.loc[fc["model"] == lgb, ["origin", "horizon"]].to_numpy()
            == fc.loc[fc["model"] == "naive", ["origin", "horizon"]].to_numpy()).all()  # the same origins
    for h in ("1", "24"):
        s = models[lgb]["horizons"][h]
        assert s["n"] == models["naive"]["horizons"][h]["n"] and 0.5 < s["rel_mae"] < 2
        assert 0 <= s["coverage_80"] <= s["coverage_95"] <= 1
    served = served_model(y, result, lgb)
    out = served.forecast(pd.DataFrame({"timestamp": y.index, "price": y.to_numpy()}))
    assert list(out["horizon"]) == list(range(1, 25)) and np.isfinite(out["forecast"]).all()
    assert ((out["lower_95"] < out["lower_80"]) & (out["upper_80"] < out["upper_95"])).all()
    from coincast.registry.pyfunc import pip_requirements  # what the registered pyfunc installs to serve it

    needs = [r.split("==")[0] for r in pip_requirements(served)]
    assert "lightgbm" in needs and "prophet" not in needs
    assert "lightgbm" not in [r.split("==")[0] for r in pip_requirements(served_model(y, result, "naive"))]

"""Prophet with the seed's features as extra regressors (opt-in ``prophet_regressors``): one fit per horizon, each
feature lagged by the horizon so it is known at the origin, in the same walk-forward backtest as every model."""
import math
import pickle

import pandas as pd
import pytest

from coincast.forecasting.backtest import BacktestSettings, backtest, served_model
from coincast.forecasting.models import make_model
from coincast.timeseries import HOUR, hourly_series, naive_utc
from conftest import assert_no_look_ahead, garbage_after, simulated_frame

SPEC = {"kind": "prophet_regressors", "window_days": 5}
SMALL = BacktestSettings(backtest_days=1, calibration_days=1, horizons=(1, 24), refit_every_hours=24, n_jobs=1,
                         min_calibration=12)


@pytest.fixture(scope="module")
def y() -> pd.Series:
    return hourly_series(simulated_frame(hours=24 * 12, seed=5))


@pytest.fixture(scope="module")
def fitted(y):
    return make_model(SPEC).fit(y)


def test_each_horizons_fit_pairs_the_return_with_the_features_known_h_hours_before(y, fitted):
    """The lagging: horizon h's training row at time t has the target log(y(t)/y(t-h)) and the features at t - h."""
    x = fitted.regressors(y)
    assert "hour" not in x.columns and "price_lag_1h" in x.columns  # calendar terms: Prophet's seasonality
    for h in (1, 24):
        model = fitted.models[h]
        history = model.history.set_index("ds")
        t = y.index[-5]
        row = history.loc[naive_utc(pd.DatetimeIndex([t]))[0]]

        def raw(name: str) -> float:  # Prophet keeps its regressors standardized
            return row[name] * model.extra_regressors[name]["std"] + model.extra_regressors[name]["mu"]

        assert row["y"] == pytest.approx(math.log(y[t] / y[t - h * HOUR]))
        assert raw("price_lag_1h") == pytest.approx(y[t - (h + 1) * HOUR] / y[t - h * HOUR])
        assert raw("return_1h") == pytest.approx(x.loc[t - h * HOUR, "return_1h"])
        assert history.index.max() == naive_utc(pd.DatetimeIndex([y.index[-1]]))[0]  # outcomes known at the origin
        assert len(history) == 5 * 24


def test_the_forecast_is_prophets_own_with_the_features_at_the_origin(y, fitted):
    p = fitted.predict(y, [1, 12, 24])
    x = fitted.regressors(y.iloc[-fitted.min_history:]).iloc[[-1]]
    r = {}
    for h in (1, 24):
        frame = x.reset_index(drop=True).assign(ds=naive_utc(pd.DatetimeIndex([y.index[-1] + h * HOUR])))
        r[h] = float(fitted.models[h].predict(frame)["yhat"].iloc[0])
    assert p[0] == pytest.approx(y.iloc[-1] * math.exp(r[1]), rel=1e-9)
    assert p[2] == pytest.approx(y.iloc[-1] * math.exp(r[24]), rel=1e-9)
    assert p[1] == pytest.approx(y.iloc[-1] * math.exp(r[1] + (r[24] - r[1]) * 11 / 23), rel=1e-9)
    assert pickle.loads(pickle.dumps(fitted)).predict(y, [1, 12, 24]) == pytest.approx(p, rel=1e-12)


def test_bad_settings_and_missing_extra_features_are_one_line_errors(y):
    with pytest.raises(ValueError, match="horizons.0: input should be greater than or equal to 1, got 0"):
        make_model({"kind": "prophet_regressors", "horizons": [0]})
    with pytest.raises(RuntimeError, match=r"prophet_regressors-\w{6} is not fitted"):
        make_model(SPEC).predict(y, [1])
    cross = make_model({**SPEC, "exog": ["cross_ethereum_log_return_1h"]})
    assert cross.name != make_model(SPEC).name  # what it reads is part of its identity
    with pytest.raises(ValueError, match="reads the extra features cross_ethereum_log_return_1h, which this data lacks"):
        cross.fit(y)


@pytest.mark.slow
def test_no_look_ahead_and_it_runs_in_the_walk_forward_backtest(y):
    """Prices after origin t replaced by garbage: every forecast at or before t is identical (t is a refit origin,
    so its fits are covered too), the later ones differ; then the whole backtest scores it on naive's origins."""
    assert_no_look_ahead(SPEC, SMALL, lambda t: (y if t is None else garbage_after(y, t), None), n_origins=27)

    result = backtest(y, [{"kind": "naive"}, SPEC], SMALL)
    name = make_model(SPEC).name
    models = result.summary["models"]
    assert set(models) == {"naive", name} and models[name]["fit_seconds"] > 0
    for h in ("1", "24"):
        s = models[name]["horizons"][h]
        assert s["n"] == models["naive"]["horizons"][h]["n"] and 0.5 < s["rel_mae"] < 2
    # and it serves: re-made from the spec the backtest recorded (as the registry does), 24 hours ahead
    served = served_model(y, result, name)
    out = served.forecast(y.rename("price").rename_axis("timestamp").reset_index())
    assert len(out) == 24 and out["forecast"].notna().all() and (out["lower_80"] < out["upper_80"]).all()

import pickle
import re

import numpy as np
import pandas as pd
import pytest

from coincast.forecasting.models import KINDS, make_model, model_id
from coincast.forecasting.serving import ServedForecaster
from coincast.timeseries import hourly_series
from conftest import hourly_frame


@pytest.fixture(scope="module")
def y() -> pd.Series:
    return hourly_series(hourly_frame(24 * 20, seed=4))


def test_baselines_by_hand(y):
    last = y.iloc[-1]
    assert make_model({"kind": "naive"}).predict(y, [1, 24]).tolist() == [last, last]
    sn = make_model({"kind": "seasonal_naive", "season": 24}).predict(y, [1, 24, 25])
    assert sn.tolist() == [y.iloc[-24], last, y.iloc[-24]]
    d = make_model({"kind": "drift", "window": 10}).predict(y, [1, 2])
    rate = np.log(last / y.iloc[-11]) / 10
    assert d == pytest.approx([last * np.exp(rate), last * np.exp(2 * rate)])


@pytest.mark.parametrize("kind", ["prophet_default", "prophet_seasonal", "prophet_returns"])
def test_prophet_variants_fit_predict_and_pickle(y, kind):
    m = make_model({"kind": kind, "window_days": 7}).fit(y)
    p = m.predict(y, [1, 24])
    assert p.shape == (2,) and np.isfinite(p).all() and (p > 0).all()
    if kind != "prophet_default":  # anchored on the last price
        assert abs(p[0] / y.iloc[-1] - 1) < 0.05
    again = pickle.loads(pickle.dumps(m))
    assert again.predict(y, [1, 24]) == pytest.approx(p)
    # predicting far beyond the cached grid still works (computed on demand)
    later = pd.Series(y.iloc[-1], index=pd.date_range(y.index[-1], periods=200, freq="h"))
    assert np.isfinite(again.predict(pd.concat([y, later.iloc[1:]]), [1])).all()


def test_damping_zero_is_naive(y):
    m = make_model({"kind": "prophet_seasonal", "window_days": 7, "damping": 0.0}).fit(y)
    assert m.predict(y, [1, 5]).tolist() == [y.iloc[-1]] * 2


def test_unknown_kind_and_bad_settings():
    with pytest.raises(ValueError, match="unknown model kind 'arima'"):
        make_model({"kind": "arima"})
    with pytest.raises(ValueError, match="bad settings for model 'drift'"):
        make_model({"kind": "drift", "windoww": 3})
    with pytest.raises(ValueError, match="bad settings for model 'prophet_default': damping applies to"):
        make_model({"kind": "prophet_default", "damping": 0.5})
    assert make_model({"kind": "prophet_default", "damping": 1.0}).name == make_model({"kind": "prophet_default"}).name
    # every setting is checked before a model is made, by its type and range, one line naming it
    for spec, said in (
        ({"kind": "drift", "window": 0}, "window: input should be greater than or equal to 1, got 0"),
        ({"kind": "drift", "window": True}, "window: input should be a valid integer, got True"),
        ({"kind": "prophet_seasonal", "window_days": float("nan")}, "window_days: input should be a finite number"),
        ({"kind": "prophet_seasonal", "damping": 2}, "damping: input should be less than or equal to 1, got 2"),
        ({"kind": "prophet_seasonal", "daily_seasonality": 0},
         "daily_seasonality: input should be a valid boolean or input should be greater than or equal to 1, got 0"),
        ({"kind": "lightgbm", "lags": [1, 0]}, "lags.1: input should be greater than or equal to 1, got 0"),
        ({"kind": "lightgbm", "rolling_windows": [1]}, "rolling_windows.0: input should be greater than or equal to 2"),
        ({"kind": "prophet_regressors", "n_changepoints": 3}, "n_changepoints: input should be 0, got 3"),
        ({"kind": "naive", "foo": 1}, "unknown setting 'foo'"),
    ):
        with pytest.raises(ValueError, match=re.escape(f"bad settings for model {spec['kind']!r}: {said}")):
            make_model(spec)
    assert make_model({"kind": "prophet_seasonal", "daily_seasonality": 5, "window_days": 7}).params["window_days"] == 7


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_model_is_made_again_from_its_spec(kind):
    """The registry and serving re-make a model from the spec its backtest recorded: for every kind, the spec a
    model gives back makes the same model (prophet_regressors' could not: its n_changepoints = 0 came back as a
    second value)."""
    m = make_model({"kind": kind})
    assert make_model(m.spec).name == m.name and make_model(m.spec).spec == m.spec
    assert set(KINDS) == {"naive", "seasonal_naive", "drift", "prophet_default", "prophet_seasonal", "prophet_returns",
                          "lightgbm", "prophet_regressors"}


def test_a_models_identity_is_its_kind_and_a_hash_of_its_settings():
    name = make_model({"kind": "prophet_returns", "window_days": 30, "damping": 0.3}).name
    assert name.startswith("prophet_returns-") and len(name) == len("prophet_returns-") + 6
    # the same settings, however written, are the same model: defaults spelled out, key order, 30 vs 30.0,
    # a spec stored with a name of its own, and the spec the model gives back
    for same in ({"kind": "prophet_returns", "damping": 0.3, "window_days": 30.0},
                 {"kind": "prophet_returns", "window_days": 30, "damping": 0.3, "n_changepoints": 0},
                 {"kind": "prophet_returns", "window_days": 30, "damping": 0.3, "name": "prophet_returns"}):
        assert make_model(same).name == name
    assert make_model(make_model({"kind": "prophet_returns", "damping": 0.3}).spec).name == name
    # other settings are another model
    assert make_model({"kind": "prophet_returns", "window_days": 30, "damping": 0.5}).name != name
    assert make_model({"kind": "prophet_returns", "window_days": 14, "damping": 0.3}).name != name
    assert make_model({"kind": "drift", "window": 24}).name != make_model({"kind": "drift", "window": 168}).name
    # naive has no settings: its identity stays "naive"; the name comes from one function
    assert make_model({"kind": "naive"}).name == "naive" == model_id("naive", {})
    m = make_model({"kind": "seasonal_naive"})
    assert m.name == model_id("seasonal_naive", {"season": 24}) and "name" not in m.spec
    assert pickle.loads(pickle.dumps(m)).name == m.name


def test_served_forecaster_intervals_nest(y):
    served = ServedForecaster(make_model({"kind": "naive"}), {1: {"80": 1.2, "95": 2.0}, 24: {"80": 1.4, "95": 2.4}})
    hist = pd.DataFrame({"timestamp": y.index, "price": y.to_numpy()})
    fc = served.forecast(hist)
    assert len(fc) == 24 and (fc["forecast"] == y.iloc[-1]).all()
    assert (fc["lower_95"] < fc["lower_80"]).all() and (fc["upper_80"] < fc["upper_95"]).all()
    width = fc["upper_80"] - fc["lower_80"]
    assert width.is_monotonic_increasing  # wider further out
    assert fc["target_time"].iloc[0] == y.index[-1] + pd.Timedelta(hours=1)


def test_prophet_takes_the_warm_start_of_the_last_fit(y):
    """warm_start(fit) is an ``init`` Prophet accepts (with delta and beta as lists, Prophet raised on every warm
    start and the models fell back to cold fits), and a refit from it is where a cold refit gets to."""
    from prophet import Prophet

    from coincast.forecasting.models.prophet_models import warm_start
    from coincast.timeseries import naive_utc

    def frame(n: int) -> pd.DataFrame:
        r = np.log(y).diff().iloc[-n:]
        return pd.DataFrame({"ds": naive_utc(r.index), "y": r.to_numpy()})

    first = Prophet(growth="flat", uncertainty_samples=0).fit(frame(24 * 7 + 24).iloc[:-24])
    warm = Prophet(growth="flat", uncertainty_samples=0).fit(frame(24 * 7), init=warm_start(first))
    cold = Prophet(growth="flat", uncertainty_samples=0).fit(frame(24 * 7))
    assert warm.params["beta"] == pytest.approx(cold.params["beta"], abs=1e-3)


def test_prices_off_the_hour_are_refused_not_dropped():
    """The hourly grid starts at the first time: rows at other minutes would vanish and the last price be lost."""
    frame = pd.DataFrame({"timestamp": pd.to_datetime(["2024-01-01T00:03Z", "2024-01-01T01:02Z", "2024-01-01T02:04Z"]),
                          "price": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match=r"^hourly prices must be stamped on the hour: 3 of 3 are not "
                                         r"\(first 2024-01-01T00:03:00\+00:00\)$"):
        hourly_series(frame)
    on_the_hour = frame.assign(timestamp=frame["timestamp"].dt.floor("h"))
    assert hourly_series(on_the_hour).tolist() == [1.0, 2.0, 3.0]

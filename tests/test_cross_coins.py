"""The cross-coin features knob (``cross_coins``, off by default): the other coins' lagged log returns join a coin's
features, read from their stored raw histories up to the origin only, and the feature-based models read them."""
import math

import numpy as np
import pandas as pd
import pytest

from coincast.config import ConfigError
from coincast.data.extract import cross_coin_prices, history_file_for
from coincast.data.features import (
    cross_coin_features, cross_feature_frame, transform_data, with_cross_features,
)
from coincast.data.history import HistoryError, store_batch
from coincast.forecasting.backtest import BacktestSettings, backtest, served_model
from coincast.forecasting.models import make_model, with_exog
from coincast.settings import load_env
from coincast.timeseries import HOUR, hourly_series
from conftest import ROOT, assert_no_look_ahead, garbage_after, simulated_frame

LGB = {"kind": "lightgbm", "window_days": 7, "n_estimators": 40}
SMALL = BacktestSettings(backtest_days=2, calibration_days=1, horizons=(1, 24), refit_every_hours=24, n_jobs=1,
                         min_calibration=24)


@pytest.fixture(scope="module")
def btc() -> pd.DataFrame:
    return simulated_frame("bitcoin")


@pytest.fixture(scope="module")
def eth() -> pd.Series:
    return hourly_series(simulated_frame("ethereum"))


def test_the_other_coins_log_returns_by_hand_and_none_after_the_origin(btc, eth):
    index = hourly_series(btc).index[:200]
    x = cross_coin_features({"ethereum": eth}, index, lags=[1, 24])
    assert list(x.columns) == ["cross_ethereum_log_return_1h", "cross_ethereum_log_return_24h"]
    t = index[100]
    assert x.loc[t, "cross_ethereum_log_return_24h"] == pytest.approx(math.log(eth[t] / eth[t - 24 * HOUR]))
    # rows of the other coin after the last hour are never read; after t they never change a value at t
    garbage = eth.copy()
    garbage[garbage.index > t] *= 3.0
    pd.testing.assert_frame_equal(cross_coin_features({"ethereum": garbage}, index[:101], [1, 24]), x.iloc[:101])
    pd.testing.assert_frame_equal(cross_coin_features({"ethereum": garbage}, index[:101], [1, 24]),
                                  cross_coin_features({"ethereum": eth.loc[:t]}, index[:101], [1, 24]))
    # an hour the other coin lacks takes its last price before it (known then): no return over that hour
    holey = eth.drop(t)
    assert cross_coin_features({"ethereum": holey}, index, [1]).loc[t].iloc[0] == 0.0


def test_knob_off_leaves_the_features_unchanged_and_on_only_adds_columns(btc, eth):
    off = transform_data(btc)
    assert not [c for c in off.columns if c.startswith("cross_")]
    pd.testing.assert_frame_equal(transform_data(btc, cross_prices={}), off)
    assert cross_feature_frame(off) is None and with_cross_features(btc, off) is btc
    on = transform_data(btc, cross_prices={"ethereum": eth})
    added = [c for c in on.columns if c not in off.columns]
    assert added == [f"cross_ethereum_log_return_{k}h" for k in (1, 3, 6, 12, 24)]
    pd.testing.assert_frame_equal(on[list(off.columns)], off)
    exog = cross_feature_frame(on)
    assert list(exog.columns) == added and exog.index.equals(hourly_series(on).index)
    joined = with_cross_features(btc, on)
    assert len(joined) == len(btc)
    np.testing.assert_array_equal(joined[added].to_numpy(), on[added].to_numpy())


def test_the_stored_histories_up_to_the_origin_and_a_missing_coin_is_one_line(tmp_path, btc):
    env = {"source": "simulated", "history_dir": str(tmp_path), "vs_currency": "usd", "replay_file": None, "seed": 11}
    with pytest.raises(HistoryError, match=r"^cross_coins: no stored history for ethereum \(.*\); its own build "
                                           r"stores it, so build ethereum first \(or remove it from cross_coins\)$"):
        cross_coin_prices(["bitcoin", "ethereum"], "bitcoin", btc["timestamp"].iloc[100], env)
    store_batch(history_file_for(env, "ethereum"), simulated_frame("ethereum"), "simulated")
    through = btc["timestamp"].iloc[100]
    prices = cross_coin_prices(["bitcoin", "ethereum"], "bitcoin", through, env)
    assert list(prices) == ["ethereum"]  # a coin is not its own cross coin
    assert prices["ethereum"].index[-1] == through and len(prices["ethereum"]) == 101


def test_the_knob_is_checked_when_a_build_starts():
    assert load_env(ROOT / "env.yaml")["cross_coins"] == []  # off by default
    assert load_env(ROOT / "env.yaml", overrides={"cross_coins": ["bitcoin", "ethereum"]})["cross_coins"]
    with pytest.raises(ConfigError, match=r"^cross_coins must each be in coins \['bitcoin', 'ethereum'\]: the "
                                          r"history of litecoin is never fetched$"):
        load_env(ROOT / "env.yaml", overrides={"cross_coins": ["litecoin"]})
    with pytest.raises(ConfigError, match=r"^cross_coins must be a list of distinct CoinGecko coin ids, each also in coins"):
        load_env(ROOT / "env.yaml", overrides={"cross_coins": ["bitcoin", "bitcoin"]})


def test_the_feature_based_models_read_the_columns_and_the_others_ignore_them():
    cols = ["cross_ethereum_log_return_1h"]
    assert with_exog(LGB, cols) == {**LGB, "exog": cols}
    assert with_exog({"kind": "prophet_regressors"}, cols)["exog"] == cols
    assert with_exog({"kind": "naive"}, cols) == {"kind": "naive"} and with_exog(LGB, []) == LGB
    assert with_exog({**LGB, "exog": []}, cols)["exog"] == []  # a spec that says what it reads is kept
    # without extra features the identity is the one it had before the knob existed
    assert make_model(LGB).name == make_model({**LGB, "exog": []}).name != make_model(with_exog(LGB, cols)).name


@pytest.mark.slow
def test_no_look_ahead_in_the_cross_coin_columns_and_a_backtest_that_serves(btc, eth):
    """The other coin's prices after origin t replaced by garbage: LightGBM's forecasts at or before t are identical
    (t is a refit origin), the later ones differ; the backtest names the columns in the model, which serves from rows
    that carry them and names them when they are missing."""
    y = hourly_series(btc)
    x = cross_coin_features({"ethereum": eth}, y.index, [1, 3, 6, 12, 24])
    spec = with_exog(LGB, list(x.columns))

    def inputs(t):  # the other coin's prices after t garbage: its columns at or before t are unchanged
        return y, cross_coin_features({"ethereum": eth if t is None else garbage_after(eth, t)}, y.index,
                                      [1, 3, 6, 12, 24])

    assert_no_look_ahead(spec, SMALL, inputs, every_later_differs=False)

    result = backtest(y, [{"kind": "naive"}, LGB], SMALL, x)
    name = make_model(spec).name
    assert set(result.summary["models"]) == {"naive", name}
    assert result.summary["models"][name]["spec"]["exog"] == sorted(x.columns)
    served = served_model(y, result, name, x)
    features = transform_data(btc, cross_prices={"ethereum": eth})
    out = served.forecast(with_cross_features(btc, features))
    assert np.isfinite(out["forecast"]).all() and len(out) == 24
    with pytest.raises(ValueError, match=r"lightgbm-\w{6} reads the extra features cross_ethereum_log_return_12h, .* "
                                         r"which this data lacks"):
        served.forecast(btc)

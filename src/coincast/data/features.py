"""Features: a pure DataFrame -> DataFrame step.

Every feature at time t uses only rows at or before t (rolling windows end at t, lags look back);
the only forward-looking column is the target ``target_price_{h}h``. The series is first put on a
complete hourly grid, so a lag of k means k hours, not k rows, even across a gap.

The features task keeps every hour of that grid (``drop_warmup=False``, the default): the train task reads
``features.parquet``, and :func:`coincast.timeseries.hourly_series` of it is exactly the price series of the raw
frame, so the price models see what they saw before; a model of the features skips the rows it cannot use.
"""
from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from coincast.timeseries import by_time, log_returns, on_hourly_grid, rolling_volatility, utc_times

logger = logging.getLogger(__name__)


#: the calendar terms of :func:`price_features` (known in advance for any hour)
CALENDAR_COLUMNS = ("hour", "day_of_week", "is_weekend", "hour_sin", "hour_cos")
#: the prefix of the cross-coin columns (:func:`cross_coin_features`)
CROSS_PREFIX = "cross_"


def target_column(horizon: int = 1) -> str:
    return f"target_price_{horizon}h"


def price_features(price: pd.Series, lags: Sequence[int] = (1, 3, 6, 12, 24),
                   rolling_windows: Sequence[int] = (6, 12, 24)) -> pd.DataFrame:
    """The features of an hourly price series (indexed by UTC hours on the grid) at each hour, from the prices at or
    before it: lags, rolling mean/std, calendar terms, the last log return, 24 h volatility, 12 h momentum and the
    place in the 24 h range. What :func:`transform_data` and the feature-based models compute from prices."""
    cols: dict[str, pd.Series | np.ndarray] = {}  # built as one frame: a column at a time costs more than the maths
    for k in lags:
        cols[f"price_lag_{k}h"] = price.shift(k)
    for w in rolling_windows:
        roll = price.rolling(w, min_periods=w)
        cols[f"price_rolling_mean_{w}h"] = roll.mean()
        cols[f"price_rolling_std_{w}h"] = roll.std()

    idx = price.index
    cols["hour"] = idx.hour
    cols["day_of_week"] = idx.dayofweek
    cols["is_weekend"] = (idx.dayofweek >= 5).astype(int)
    cols["hour_sin"] = np.sin(2 * np.pi * idx.hour / 24)
    cols["hour_cos"] = np.cos(2 * np.pi * idx.hour / 24)

    cols["return_1h"] = log_returns(price)
    cols["volatility_24h"] = rolling_volatility(price, 24)
    cols["momentum_12h"] = price / price.shift(12) - 1
    lo, hi = price.rolling(24, min_periods=24).min(), price.rolling(24, min_periods=24).max()
    span = hi - lo
    position = np.where(span > 0, (price - lo) / span.where(span > 0), 0.5)
    cols["price_position"] = np.where(span.isna(), np.nan, position)
    return pd.DataFrame({k: np.asarray(v) for k, v in cols.items()}, index=idx)


def relative_features(price: pd.Series, lags: Sequence[int], rolling_windows: Sequence[int]) -> pd.DataFrame:
    """:func:`price_features` with the price levels (lags, rolling means and standard deviations) divided by the price
    at the same hour: what the feature-based models read, so they see relative levels and not a level that drifts
    out of the range they were fitted on."""
    x = price_features(price, lags, rolling_windows)
    levels = [c for c in x.columns if c.startswith("price_lag_") or c.startswith("price_rolling_")]
    x[levels] = x[levels].div(price, axis=0)
    return x


def cross_column(coin: str, lag: int) -> str:
    return f"{CROSS_PREFIX}{coin}_log_return_{lag}h"


def cross_coin_features(others: Mapping[str, pd.Series], index: pd.DatetimeIndex,
                        lags: Sequence[int] = (1, 3, 6, 12, 24)) -> pd.DataFrame:
    """The other coins' log returns over the last ``lag`` hours at each hour of ``index`` (this coin's hourly grid):
    ``cross_<coin>_log_return_<lag>h`` = log(p(t) / p(t - lag)) of that coin's price p.

    p(t) is the other coin's last stored price at or before t (carried forward over hours it lacks, e.g. the newest
    hour when its own build has not stored it yet), so a value at t never uses a row after t; rows of ``others``
    after the last hour of ``index`` are never read."""
    out = pd.DataFrame(index=index)
    if len(index) == 0:
        return out
    for coin, price in others.items():
        known = price.loc[:index[-1]].dropna()
        known = known.loc[known > 0]
        if known.empty:
            raise ValueError(f"cross_coins: {coin} has no stored price at or before {index[-1]}")
        log_p = np.log(known).reindex(known.index.union(index)).ffill().reindex(index)
        for k in lags:
            out[cross_column(coin, k)] = log_p - log_p.shift(k)
    return out


def cross_feature_frame(features: pd.DataFrame) -> pd.DataFrame | None:
    """The cross-coin columns of a features table (timestamp column) indexed by hour, or None without any: the
    ``exog`` the feature-based models read."""
    cols = [c for c in features.columns if c.startswith(CROSS_PREFIX)]
    if not cols:
        return None
    return on_hourly_grid(by_time(features, cols), fill=False)


def with_cross_features(raw: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """The raw rows (timestamp, price, ...) with the cross-coin columns of ``features`` at their hours: what a model
    that reads them forecasts from (forecast and monitor tasks). Without cross-coin columns: ``raw`` as it is."""
    cols = [c for c in features.columns if c.startswith(CROSS_PREFIX)]
    if not cols:
        return raw
    right = features[["timestamp", *cols]].assign(timestamp=utc_times(features["timestamp"]))
    return raw.assign(timestamp=utc_times(raw["timestamp"])).merge(right, on="timestamp", how="left")


def transform_data(
    df: pd.DataFrame,
    lags: Sequence[int] = (1, 3, 6, 12, 24),
    rolling_windows: Sequence[int] = (6, 12, 24),
    target_horizon: int = 1,
    drop_warmup: bool = False,
    cross_prices: Mapping[str, pd.Series] | None = None,
) -> pd.DataFrame:
    """Hourly prices (timestamp, price, volume) -> one row per hour of the complete grid with lag, rolling, calendar
    and target columns.

    Rows whose features are incomplete (the first ``max(lags, rolling_windows)`` hours, hours in or after a gap)
    keep them empty, or are dropped when ``drop_warmup``; the newest rows are kept even though their target is
    unknown (they are what a forecast starts from). ``cross_prices`` (other coins' hourly prices, the
    ``cross_coins`` knob) adds their lagged log returns (:func:`cross_coin_features`, with ``lags``).
    """
    if df.empty:
        raise ValueError("transform_data got an empty frame")
    s = on_hourly_grid(by_time(df, ["price", "volume"]), fill=False)  # full hourly grid: gaps become NaN rows
    price, volume = s["price"], s["volume"]
    out = pd.DataFrame({"price": price, "volume": volume}, index=s.index)
    for k in lags:
        out[f"volume_lag_{k}h"] = volume.shift(k)
    out = out.join(price_features(price, lags, rolling_windows))
    if cross_prices:
        out = out.join(cross_coin_features(cross_prices, out.index, lags))

    out[target_column(target_horizon)] = price.shift(-target_horizon)

    feature_cols = [c for c in out.columns if c != target_column(target_horizon)]
    if drop_warmup:
        out = out.loc[out[feature_cols].notna().all(axis=1)]
    out = out.rename_axis("timestamp").reset_index()
    out.attrs = dict(df.attrs)  # provenance (e.g. source="simulated") travels into the parquet metadata
    if "source" in df.columns and df["source"].nunique() == 1:
        out.attrs["source"] = str(df["source"].iloc[0])
    logger.info("features: %d rows x %d columns", len(out), out.shape[1])
    return out

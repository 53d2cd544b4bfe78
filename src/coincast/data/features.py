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
from typing import Sequence

import numpy as np
import pandas as pd

from coincast.timeseries import by_time, log_returns, on_hourly_grid, rolling_volatility

logger = logging.getLogger(__name__)


def target_column(horizon: int = 1) -> str:
    return f"target_price_{horizon}h"


def price_features(price: pd.Series, lags: Sequence[int] = (1, 3, 6, 12, 24),
                   rolling_windows: Sequence[int] = (6, 12, 24)) -> pd.DataFrame:
    """The features of an hourly price series (indexed by UTC hours on the grid) at each hour, from the prices at or
    before it: lags, rolling mean/std, calendar terms, the last log return, 24 h volatility, 12 h momentum and the
    place in the 24 h range. What :func:`transform_data` and the LightGBM model compute from prices."""
    out = pd.DataFrame(index=price.index)
    for k in lags:
        out[f"price_lag_{k}h"] = price.shift(k)
    for w in rolling_windows:
        roll = price.rolling(w, min_periods=w)
        out[f"price_rolling_mean_{w}h"] = roll.mean()
        out[f"price_rolling_std_{w}h"] = roll.std()

    idx = out.index
    out["hour"] = idx.hour
    out["day_of_week"] = idx.dayofweek
    out["is_weekend"] = (idx.dayofweek >= 5).astype(int)
    out["hour_sin"] = np.sin(2 * np.pi * idx.hour / 24)
    out["hour_cos"] = np.cos(2 * np.pi * idx.hour / 24)

    out["return_1h"] = log_returns(price)
    out["volatility_24h"] = rolling_volatility(price, 24)
    out["momentum_12h"] = price / price.shift(12) - 1
    lo, hi = price.rolling(24, min_periods=24).min(), price.rolling(24, min_periods=24).max()
    span = hi - lo
    out["price_position"] = np.where(span > 0, (price - lo) / span.where(span > 0), 0.5)
    out.loc[span.isna(), "price_position"] = np.nan
    return out


def transform_data(
    df: pd.DataFrame,
    lags: Sequence[int] = (1, 3, 6, 12, 24),
    rolling_windows: Sequence[int] = (6, 12, 24),
    target_horizon: int = 1,
    drop_warmup: bool = False,
) -> pd.DataFrame:
    """Hourly prices (timestamp, price, volume) -> one row per hour of the complete grid with lag, rolling, calendar
    and target columns.

    Rows whose features are incomplete (the first ``max(lags, rolling_windows)`` hours, hours in or after a gap)
    keep them empty, or are dropped when ``drop_warmup``; the newest rows are kept even though their target is
    unknown (they are what a forecast starts from).
    """
    if df.empty:
        raise ValueError("transform_data got an empty frame")
    s = on_hourly_grid(by_time(df, ["price", "volume"]), fill=False)  # full hourly grid: gaps become NaN rows
    price, volume = s["price"], s["volume"]
    out = pd.DataFrame({"price": price, "volume": volume}, index=s.index)
    for k in lags:
        out[f"volume_lag_{k}h"] = volume.shift(k)
    out = out.join(price_features(price, lags, rolling_windows))

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

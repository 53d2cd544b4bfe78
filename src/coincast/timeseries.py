"""Time-series basics every layer uses: UTC times, the hourly price series of a frame, log returns and
realized volatility.

A time in coincast is a UTC ``pd.Timestamp``; a naive time is taken to be UTC. An hourly series is a float
``pd.Series`` indexed by UTC hours, sorted, one value per hour.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

HOUR = pd.Timedelta(hours=1)


# -- UTC ------------------------------------------------------------------------------------------------
def to_utc(value: Any) -> pd.Timestamp:
    """One time as a UTC Timestamp (a naive time is taken as UTC). Raises ValueError/TypeError on garbage."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def utc_times(values: Any, errors: str = "raise") -> Any:
    """Many times (a column, a list, an index) in UTC, naive ones taken as UTC (``errors="coerce"``: what is
    not a time becomes NaT)."""
    return pd.to_datetime(values, utc=True, errors=errors)


def naive_utc(index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """UTC wall times without a zone (Prophet refuses zone-aware times); a naive index is returned as it is."""
    return index.tz_convert("UTC").tz_localize(None) if index.tz is not None else index


def utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


# -- hourly series from a frame ---------------------------------------------------------------------------
def by_time(frame: pd.DataFrame, columns: Sequence[str] = ("price",)) -> pd.DataFrame:
    """``columns`` of timestamped rows (a ``timestamp`` column) as floats indexed by UTC time, sorted; of rows
    with the same time the last one wins; values that are not numbers become NaN."""
    missing = [c for c in ("timestamp", *columns) if c not in frame.columns]
    if missing:
        raise ValueError(f"the frame needs columns {', '.join(missing)}, got {list(frame.columns)}")
    out = pd.DataFrame({c: pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
                        for c in columns}, index=utc_times(frame["timestamp"]))
    return out[~out.index.duplicated(keep="last")].sort_index()


def observed_prices(frame: pd.DataFrame) -> pd.Series:
    """The prices actually observed, by time: no grid and no fill (a missing hour cannot score a prediction)."""
    return by_time(frame)["price"].dropna().rename(None)


def on_hourly_grid(y: pd.Series | pd.DataFrame, fill: bool = True) -> Any:
    """``y`` (a series or a frame indexed by time) on the complete hourly grid from its first to its last hour; a missing hour takes the last known
    value (``fill``) or stays NaN. Times off the hour are a ValueError (the grid would drop them silently)."""
    off = y.index != y.index.floor("h")
    if off.any():
        raise ValueError(f"hourly prices must be stamped on the hour: {int(off.sum())} of {len(y)} are not "
                         f"(first {y.index[off][0].isoformat()})")
    grid = y.asfreq("h")
    return grid.ffill() if fill else grid


def observed_series(frame: pd.DataFrame) -> pd.Series:
    """timestamp/price rows -> the observed prices on the complete hourly UTC grid, a missing hour NaN: what a
    backtest scores against (a missing hour is no outcome, so it scores no prediction)."""
    y = observed_prices(frame)
    if y.empty:
        raise ValueError("history has no prices")
    return on_hourly_grid(y, fill=False)


def hourly_series(frame: pd.DataFrame) -> pd.Series:
    """timestamp/price rows -> the price series on the complete hourly UTC grid, gaps forward-filled: what every
    model sees."""
    return observed_series(frame).ffill()


# -- returns and volatility -------------------------------------------------------------------------------
def log_returns(y: pd.Series) -> pd.Series:
    """log(y_t / y_t-1): the first value (and any next to a missing price) is NaN."""
    return np.log(y).diff()


def rolling_volatility(y: pd.Series, window: int, min_periods: int | None = None) -> pd.Series:
    """Realized volatility at each hour: the std of the log returns of the ``window`` hours ending there (no
    look-ahead), from at least ``min_periods`` returns (default: the whole window), else NaN."""
    return log_returns(y).rolling(window, min_periods=window if min_periods is None else min_periods).std()


def realized_vol(y: pd.Series, window: int = 24) -> pd.Series:
    """:func:`rolling_volatility` that starts early: from ``max(4, window // 2)`` returns, and before that from
    every return so far (at least 2). What interval widths scale with."""
    vol = rolling_volatility(y, window, max(4, window // 2))
    return vol.fillna(log_returns(y).expanding(min_periods=2).std())


def latest_realized_vol(y: pd.Series, hours: int) -> float:
    """The realized volatility now: the std of the last ``hours`` log returns (NaN from fewer than 2)."""
    r = log_returns(y).dropna().iloc[-hours:]
    return float(r.std()) if len(r) >= 2 else float("nan")

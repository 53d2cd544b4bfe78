"""Forecast accuracy metrics, the one definition the backtest, the live scoring and the dashboard use.

Every function takes aligned arrays (or Series) and ignores rows with a missing value; the last two take the
backtest's forecasts (``backtest_forecasts.parquet``: model, origin, horizon, forecast, actual, scored).
:func:`diebold_mariano` tests whether one model's losses are lower than another's by more than noise.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from coincast.timeseries import utc_times

#: The columns of the backtest's forecasts that :func:`mae_by_hour` needs (``scored`` is optional).
FORECAST_COLUMNS = frozenset({"model", "origin", "horizon", "forecast", "actual"})


def _clean(*arrays: np.ndarray) -> list[np.ndarray]:
    arrs = [np.asarray(a, dtype=float) for a in arrays]
    ok = np.logical_and.reduce([np.isfinite(a) for a in arrs])
    return [a[ok] for a in arrs]


def abs_errors(actual, forecast):
    """|actual - forecast| row by row, NaN where either is missing (Series in, Series out)."""
    return np.abs(actual - forecast)


def mae(actual, forecast) -> float:
    a, f = _clean(actual, forecast)
    return float(np.mean(abs_errors(a, f))) if len(a) else float("nan")


def rmse(actual, forecast) -> float:
    a, f = _clean(actual, forecast)
    return float(np.sqrt(np.mean((a - f) ** 2))) if len(a) else float("nan")


def mape(actual, forecast) -> float:
    """Mean absolute percentage error, in percent."""
    a, f = _clean(actual, forecast)
    return float(np.mean(np.abs((a - f) / a)) * 100) if len(a) else float("nan")


def mase_scale(y: pd.Series, horizon: int) -> float:
    """The in-sample MAE of the naive forecast ``horizon`` hours ahead on the hourly series ``y``."""
    return float((y - y.shift(horizon)).abs().mean())


def mase(actual, forecast, scale: float) -> float:
    """MAE divided by ``scale``: :func:`mase_scale` of the history before the first scored origin."""
    return mae(actual, forecast) / scale if scale and np.isfinite(scale) else float("nan")


def rel_mae(actual, forecast, naive_forecast) -> float:
    """MAE / naive MAE on the same rows: < 1 beats the naive forecast."""
    a, f, n = _clean(actual, forecast, naive_forecast)
    base = np.mean(np.abs(a - n)) if len(a) else np.nan
    return float(np.mean(np.abs(a - f)) / base) if len(a) and base > 0 else float("nan")


class DMTest(NamedTuple):
    """A Diebold–Mariano test: the statistic (HLN-corrected; negative when the first model's loss is lower), its
    one-sided p-value and the number of paired losses."""

    statistic: float
    p_value: float
    n: int


def diebold_mariano(loss_a, loss_b, horizon: int = 1) -> DMTest:
    """One-sided Diebold–Mariano test that model a's expected loss is lower than model b's, from their losses
    (e.g. absolute errors) at the same forecast origins, ``horizon`` hours ahead; rows with either missing are
    left out. A small p-value: a's edge is more than noise.

    With d_t = a_t - b_t over n rows and mean d̄, the variance of d̄ is Newey–West with h - 1 lags (Bartlett
    weights, so never negative; at h = 1 it is the plain sample variance)::

        γ_k = (1/n) Σ_{t>k} (d_t - d̄)(d_{t-k} - d̄),   V = (γ_0 + 2 Σ_{k=1}^{h-1} (1 - k/h) γ_k) / n,
        DM = d̄ / √V,   DM* = DM · √((n + 1 - 2h + h(h - 1)/n) / n)   (Harvey–Leybourne–Newbold),
        p = P(T_{n-1} <= DM*)   (Student's t with n - 1 degrees of freedom).

    Losses equal on every row give DM* 0 and p 0.5; a constant non-zero difference gives ∓inf and p 0 or 1.
    """
    if not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"diebold_mariano: horizon must be a whole number of hours >= 1, got {horizon!r}")
    a, b = _clean(loss_a, loss_b)
    n, h = len(a), int(horizon)
    if n <= h:
        raise ValueError(f"diebold_mariano: needs more than {h} paired losses at horizon {h}, got {n}")
    d = a - b
    e = d - d.mean()
    gamma = [float(e[k:] @ e[: n - k]) / n for k in range(h)]
    variance = (gamma[0] + 2 * sum((1 - k / h) * gamma[k] for k in range(1, h))) / n
    mean = float(d.mean())
    if variance > 0:
        dm = mean / np.sqrt(variance)
    else:
        dm = 0.0 if mean == 0 else float(np.copysign(np.inf, mean))
    statistic = float(dm * np.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n))
    return DMTest(statistic, float(stats.t.cdf(statistic, df=n - 1)), n)


def directional_accuracy(actual, forecast, last) -> float:
    """Share of rows where the forecast moves the same way as the price did (rows where either the price or
    the forecast did not move are left out; NaN for a forecast that never moves, such as naive)."""
    a, f, l = _clean(actual, forecast, last)
    moved = (a != l) & (f != l)
    if not moved.any():
        return float("nan")
    return float(np.mean(np.sign(a[moved] - l[moved]) == np.sign(f[moved] - l[moved])))


def coverage(actual, lower, upper) -> float:
    """Share of rows whose actual lies in [lower, upper]. An infinite bound is a bound (too few errors to
    calibrate give an interval without an upper limit, which covers every actual); a NaN one is no interval."""
    a, lo, hi = (np.asarray(x, dtype=float) for x in (actual, lower, upper))
    ok = np.isfinite(a) & ~np.isnan(lo) & ~np.isnan(hi)
    return float(np.mean((a[ok] >= lo[ok]) & (a[ok] <= hi[ok]))) if ok.any() else float("nan")


def mean_width(lower, upper) -> float:
    """Mean interval width (upper - lower) over the rows with both bounds finite."""
    lo, hi = _clean(lower, upper)
    return float(np.mean(hi - lo)) if len(lo) else float("nan")


def scored_errors(forecasts: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """The rows of one horizon that are scored (all, without a ``scored`` column) and have an actual, with
    ``abs_error`` and ``hour`` (the origin's hour of day, UTC) added."""
    g = forecasts.loc[(forecasts["horizon"] == horizon) & forecasts["actual"].notna()]
    if "scored" in g.columns:
        g = g.loc[g["scored"].astype(bool)]
    return g.assign(hour=utc_times(g["origin"]).dt.hour, abs_error=abs_errors(g["actual"], g["forecast"]))


def mae_by_hour(forecasts: pd.DataFrame | None, horizon: int = 1) -> pd.DataFrame:
    """MAE of one horizon's scored forecasts by hour of day (UTC) of the origin: index hour 0-23, one column per
    model (by name); hours and models with no error left out. Empty without such rows (or the columns)."""
    if forecasts is None or forecasts.empty or not FORECAST_COLUMNS <= set(forecasts.columns):
        return pd.DataFrame()
    g = scored_errors(forecasts, horizon)
    if g.empty:
        return pd.DataFrame()
    return g.pivot_table(index="hour", columns="model", values="abs_error", aggfunc="mean").sort_index()

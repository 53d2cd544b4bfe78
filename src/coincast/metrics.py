"""Forecast accuracy metrics. Every function takes aligned arrays and ignores rows with a NaN."""
from __future__ import annotations

import numpy as np


def _clean(*arrays: np.ndarray) -> list[np.ndarray]:
    arrs = [np.asarray(a, dtype=float) for a in arrays]
    ok = np.logical_and.reduce([np.isfinite(a) for a in arrs])
    return [a[ok] for a in arrs]


def mae(actual, forecast) -> float:
    a, f = _clean(actual, forecast)
    return float(np.mean(np.abs(a - f))) if len(a) else float("nan")


def rmse(actual, forecast) -> float:
    a, f = _clean(actual, forecast)
    return float(np.sqrt(np.mean((a - f) ** 2))) if len(a) else float("nan")


def mape(actual, forecast) -> float:
    """Mean absolute percentage error, in percent."""
    a, f = _clean(actual, forecast)
    return float(np.mean(np.abs((a - f) / a)) * 100) if len(a) else float("nan")


def mase(actual, forecast, scale: float) -> float:
    """MAE divided by ``scale``: the in-sample MAE of the naive forecast at the same horizon, measured on the
    history before the first scored origin."""
    return mae(actual, forecast) / scale if scale and np.isfinite(scale) else float("nan")


def rel_mae(actual, forecast, naive_forecast) -> float:
    """MAE / naive MAE on the same rows: < 1 beats the naive forecast."""
    a, f, n = _clean(actual, forecast, naive_forecast)
    base = np.mean(np.abs(a - n)) if len(a) else np.nan
    return float(np.mean(np.abs(a - f)) / base) if len(a) and base > 0 else float("nan")


def directional_accuracy(actual, forecast, last) -> float:
    """Share of rows where the forecast moves the same way as the price did (rows where either the price or
    the forecast did not move are left out; NaN for a forecast that never moves, such as naive)."""
    a, f, l = _clean(actual, forecast, last)
    moved = (a != l) & (f != l)
    if not moved.any():
        return float("nan")
    return float(np.mean(np.sign(a[moved] - l[moved]) == np.sign(f[moved] - l[moved])))


def coverage(actual, lower, upper) -> float:
    a, lo, hi = _clean(actual, lower, upper)
    return float(np.mean((a >= lo) & (a <= hi))) if len(a) else float("nan")


def mean_width(lower, upper) -> float:
    lo, hi = _clean(lower, upper)
    return float(np.mean(hi - lo)) if len(lo) else float("nan")

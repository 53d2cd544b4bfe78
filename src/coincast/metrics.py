"""Forecast accuracy metrics, the one definition the backtest, the live scoring and the dashboard use.

Every function takes aligned arrays (or Series) and ignores rows with a missing value; the last two take the
backtest's forecasts (``backtest_forecasts.parquet``: model, origin, horizon, forecast, actual, scored).
:func:`diebold_mariano` tests whether one model's losses are lower than another's by more than noise.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
# scipy.special, not scipy.stats: the same two distributions (Student t, binomial tail), ~0.5 s less of import in
# every process that scores (scipy.stats pulls in most of scipy; MLflow already imports scipy.sparse)
from scipy.special import bdtrc, stdtr

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
    return DMTest(statistic, float(stdtr(n - 1, statistic)), n)  # scipy.stats.t.cdf(statistic, n - 1)


def directional_accuracy(actual, forecast, last) -> float:
    """Share of rows where the forecast moves the same way as the price did (rows where either the price or
    the forecast did not move are left out; NaN for a forecast that never moves, such as naive)."""
    hits = direction_hits(actual, forecast, last)
    return float(np.mean(hits)) if len(hits) else float("nan")


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


# --- probabilistic scores: interval (Winkler) score, CRPS, the direction's significance ---------------------
# A "level" is the central coverage of an interval (0.8, 0.95); its alpha is 1 - level. Quantiles are a mapping
# {tau: values} with tau in (0, 1). Each score is a mean over the rows where every number it needs is finite; a
# rel_* score is the model's mean over the naive-empirical baseline's on the same rows (< 1 beats it).
def interval_scores(a: np.ndarray, lo: np.ndarray, hi: np.ndarray, level: float) -> np.ndarray:
    """The interval score of each row (see :func:`interval_score`); NaN where a number is missing."""
    alpha = 1.0 - level
    return (hi - lo) + (2 / alpha) * np.maximum(lo - a, 0) + (2 / alpha) * np.maximum(a - hi, 0)


def interval_score(actual, lower, upper, level: float) -> float:
    """Mean interval (Winkler) score of central ``level`` intervals [lower, upper], in price units::

        IS = (u - l) + (2/alpha) (l - y) 1{y < l} + (2/alpha) (y - u) 1{y > u},   alpha = 1 - level

    (Gneiting & Raftery 2007): the width plus a penalty for every actual outside, so a narrow interval that
    misses and a wide one that always covers both score badly. Lower is better. Rows with an infinite or
    missing bound are left out (as in :func:`mean_width`)."""
    a, lo, hi = _clean(actual, lower, upper)
    return float(np.mean(interval_scores(a, lo, hi, level))) if len(a) else float("nan")


def rel_interval_score(actual, lower, upper, base_lower, base_upper, level: float) -> float:
    """:func:`interval_score` / the baseline's on the rows where both intervals are finite: < 1 beats it."""
    a, lo, hi, blo, bhi = _clean(actual, lower, upper, base_lower, base_upper)
    return _ratio(interval_scores(a, lo, hi, level), interval_scores(a, blo, bhi, level))


def interval_quantiles(forecast, intervals: dict[float, tuple]) -> dict[float, np.ndarray]:
    """The quantiles a point forecast and central intervals ``{level: (lower, upper)}`` stand for: the forecast
    is the median (coincast's intervals are symmetric around it, in log space or in price), a ``level`` interval
    runs from the (1 - level)/2 to the (1 + level)/2 quantile. 80 % and 95 % give 0.025, 0.1, 0.5, 0.9, 0.975."""
    out = {0.5: forecast}
    for level, (lower, upper) in intervals.items():
        out[round((1 - level) / 2, 10)] = lower
        out[round((1 + level) / 2, 10)] = upper
    return dict(sorted(out.items()))


def _crps_rows(a: np.ndarray, qs: dict[float, np.ndarray]) -> np.ndarray:
    pinball = [np.where(a < q, 1 - tau, -tau) * (q - a) for tau, q in qs.items()]  # (1{y<q} - tau)(q - y) >= 0
    return 2 * np.mean(pinball, axis=0)


def _clean_quantiles(actual, *quantile_sets: dict[float, np.ndarray]) -> tuple[np.ndarray, list[dict]]:
    """The rows where the actual and every quantile of every set are finite; the sets must share their levels."""
    taus = sorted(quantile_sets[0])
    if not taus or not all(0 < t < 1 for t in taus):
        raise ValueError(f"quantile levels must lie in (0, 1), got {taus}")
    if any(sorted(q) != taus for q in quantile_sets):
        raise ValueError(f"scores compared need the same quantile levels, got {[sorted(q) for q in quantile_sets]}")
    a, *qs = _clean(actual, *(q[t] for q in quantile_sets for t in taus))
    return a, [dict(zip(taus, qs[i: i + len(taus)])) for i in range(0, len(qs), len(taus))]


def crps(actual, quantiles: dict[float, np.ndarray]) -> float:
    """Mean CRPS of the forecast distributions given by a few quantiles ``{tau: values}``, in price units::

        CRPS(F, y) = 2 ∫_0^1 QS_tau(F^-1(tau), y) dtau ≈ (2/K) Σ_k QS_tau_k(q_k, y),
        QS_tau(q, y) = (1{y < q} - tau)(q - y)   (the pinball loss)

    The models give a point forecast and calibrated 80 % / 95 % intervals, not a distribution: CRPS is exact
    only for the whole quantile function, so here it is the average pinball loss over the quantiles there are
    (:func:`interval_quantiles`: 0.025, 0.1, 0.5, 0.9, 0.975). That is the weighted interval score of Bracher et
    al. (2021) — WIS = (1/(K + 1/2)) (|y - m|/2 + Σ (alpha_k/2) IS_alpha_k) — which tends to the CRPS as quantiles
    are added. It assumes nothing about the shape between the quantiles (no parametric distribution the
    calibration never estimated) and is itself a proper score for those quantiles. Its scale is below the exact
    CRPS — five quantiles this uneven in tau leave most of [0, 1] to the tails' small pinball losses: for a
    standard normal forecast of standard normal outcomes it gives 0.35 where the CRPS is 1/√π = 0.56 — so read
    it relatively: the model and the naive-empirical baseline are scored on the same quantile levels, and
    :func:`rel_crps` compares like with like. Lower is better. (properscoring's CRPS needs an ensemble, a Gaussian
    or a whole CDF, none of which the calibration gives: no dependency for it.)"""
    a, (qs,) = _clean_quantiles(actual, quantiles)
    return float(np.mean(_crps_rows(a, qs))) if len(a) else float("nan")


def rel_crps(actual, quantiles: dict[float, np.ndarray], base_quantiles: dict[float, np.ndarray]) -> float:
    """:func:`crps` / the baseline's on the rows where both have every quantile (the same quantile levels)."""
    a, (model, base) = _clean_quantiles(actual, quantiles, base_quantiles)
    return _ratio(_crps_rows(a, model), _crps_rows(a, base))


def _ratio(scores: np.ndarray, base: np.ndarray) -> float:
    """mean(scores) / mean(base): NaN without rows or with a zero baseline."""
    if not len(scores) or not np.mean(base) > 0:
        return float("nan")
    return float(np.mean(scores) / np.mean(base))


def direction_hits(actual, forecast, last) -> np.ndarray:
    """Per row where both the price and the forecast moved away from ``last`` (ties left out): whether they
    moved the same way (sign(forecast - last) == sign(actual - last))."""
    a, f, l = _clean(actual, forecast, last)
    moved = (a != l) & (f != l)
    return np.sign(a[moved] - l[moved]) == np.sign(f[moved] - l[moved])


def directional_p_value(actual, forecast, last) -> float:
    """One-sided binomial p-value of :func:`directional_accuracy` against a coin flip: P(X >= hits) for
    X ~ Binomial(n moves, 0.5) (``scipy.stats.binomtest``'s, alternative "greater": ``bdtrc(hits - 1, n, 0.5)``). Small: the forecast calls
    the direction better than chance. NaN without a move (naive never moves)."""
    hits = direction_hits(actual, forecast, last)
    if not len(hits):
        return float("nan")
    return float(bdtrc(int(hits.sum()) - 1, len(hits), 0.5))


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

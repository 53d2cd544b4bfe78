"""Volatility scalings for the calibrated intervals: candidates for the spread of the h-hour log return.

Each scaling is a pure function ``(y, origins, horizons) -> {h: array}``: for every origin of the hourly price
series ``y`` and every horizon h, a forecast of the standard deviation of ``log(y[origin + h] / y[origin])`` made
from the prices up to the origin only (no look-ahead). Calibration divides each past error by it and takes a
conformal quantile per horizon (:mod:`coincast.forecasting.calibration`), so only its shape over origins
matters, not its level: a scaling earns its place when it makes the intervals sharper at the same coverage.

- ``unscaled``: 1 — the naive-empirical baseline's shape (split-conformal on raw log errors);
- ``rv24``: the realized volatility of the last 24 h × √h (what coincast used before the choice existed);
- ``har``: a HAR-style equal mix of the 24 h and 7 d realized variances, × √h;
- ``hod``: the hour-of-day pattern: each hour of the day's mean squared return over the last 28 days, summed
  over the h hours ahead (crypto volatility is strongly periodic within the day);
- ``har_hod``: the ``har`` level shaped by the hour-of-day pattern of the hours ahead;
- ``garch``: GARCH(1,1) with Student-t shocks (``arch``), refitted every ``refit_every`` origins on the last
  ``fit_hours`` returns and run forward with those parameters in between; its h-step variance forecast summed.
- ``blend``: the geometric mean of ``garch`` and ``har_fit``, a forecast combination: used alone over 69 monthly
  windows of three real series (naive, 1 h, 80 / 95 %, 7 warm-up days), GARCH scored 0.965 / 0.980 of the
  naive-empirical interval score, ``har_fit`` 0.984 / 1.023, the blend 0.954 / 0.970 (unscaled 0.989 / 1.030;
  docs/forecasting.md).
  ``har_fit`` (not a candidate on its own) is a HAR regression fitted by least squares every ``refit_every`` origins
  on the last ``fit_hours`` hours: the mean squared *deseasonalized* return of the next h hours on the last one and
  the means of the last 6 h, 24 h and 7 d, times the hour-of-day shape of the hours ahead (:func:`hour_shape`);
- ``qreg``: quantile regression (LightGBM, quantile objective at :data:`QREG_QUANTILE`) of the absolute h-hour
  log return on volatility features known at the origin (:func:`spread_features`), one model per horizon, refitted
  every ``refit_every`` origins on the last ``fit_hours`` hours whose h-hour outcome was known by then.

Which one an interval uses is chosen per coin, model and horizon by interval score on errors known at the origin
(:func:`coincast.forecasting.calibration.calibrate`).
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from coincast.timeseries import log_returns, realized_vol

Scaling = Callable[[pd.Series, pd.DatetimeIndex, Sequence[int]], dict[int, np.ndarray]]
#: the scaling calibration falls back to while too few errors are known to choose one
DEFAULT = "unscaled"
#: the scaling of served models pickled before the choice existed (their quantiles were calibrated with it)
LEGACY = "rv24"
HOD_DAYS = 28
GARCH_FIT_HOURS = 24 * 60
#: origins between refits of the fitted scalings (:data:`FITTED`) when the caller gives none; the backtest passes
#: its ``refit_every_hours``, so they refit with the models
REFIT_EVERY = 24
GARCH_MIN_RETURNS = 168
#: the quantile of |h-hour log return| the ``qreg`` scaling predicts (between the 80 % and 95 % intervals': only
#: its shape over origins matters, calibration sets the level)
QREG_QUANTILE = 0.9
QREG_FIT_HOURS = 24 * 60
QREG_MIN_ROWS = 168
#: the hour-of-day shape of ``har_fit``: mean absolute returns of each hour of the day over this many days
SHAPE_DAYS = 56
HAR_FIT_HOURS = 24 * 60
HAR_WINDOWS = (6, 24, 168)
#: ``har_fit`` never forecasts a variance under this share of the last 7 days' mean (a fit can dip near zero)
HAR_FLOOR = 0.2
HAR_MIN_ROWS = 168


def _positions(y: pd.Series, origins: pd.DatetimeIndex) -> np.ndarray:
    pos = y.index.get_indexer(origins)
    if np.any(pos < 0):
        raise ValueError("every origin must be an hour of the series")
    return pos


def _times_sqrt_h(sigma: np.ndarray, horizons: Sequence[int]) -> dict[int, np.ndarray]:
    return {int(h): sigma * math.sqrt(int(h)) for h in horizons}


def unscaled(y: pd.Series, origins: pd.DatetimeIndex, horizons: Sequence[int]) -> dict[int, np.ndarray]:
    _positions(y, origins)
    return {int(h): np.ones(len(origins)) for h in horizons}


def rv24(y: pd.Series, origins: pd.DatetimeIndex, horizons: Sequence[int]) -> dict[int, np.ndarray]:
    return _times_sqrt_h(realized_vol(y, 24).to_numpy()[_positions(y, origins)], horizons)


def _har_sigma(y: pd.Series) -> np.ndarray:
    return np.sqrt((realized_vol(y, 24).to_numpy() ** 2 + realized_vol(y, 168).to_numpy() ** 2) / 2)


def har(y: pd.Series, origins: pd.DatetimeIndex, horizons: Sequence[int]) -> dict[int, np.ndarray]:
    return _times_sqrt_h(_har_sigma(y)[_positions(y, origins)], horizons)


def hour_profile(y: pd.Series, days: int = HOD_DAYS, absolute: bool = False) -> np.ndarray:
    """(hours of y) × 24: at each hour t, column d is the mean squared log return of hour-of-day d over its last
    ``days`` occurrences up to t (an hour not seen yet takes the mean squared return so far); with ``absolute``,
    the mean *absolute* log return instead (one fat hour weighs less)."""
    r = log_returns(y)
    x = r.abs() if absolute else r ** 2
    hour = y.index.hour.to_numpy()
    latest = x.groupby(hour).transform(lambda s: s.rolling(days, min_periods=1).mean()).to_numpy()
    table = np.full((len(y), 24), np.nan)
    table[np.arange(len(y)), hour] = latest
    table = pd.DataFrame(table).ffill().to_numpy()
    overall = x.expanding(min_periods=1).mean().to_numpy()
    return np.where(np.isnan(table), overall[:, None], table)


def hour_shape(y: pd.Series, days: int = SHAPE_DAYS) -> np.ndarray:
    """(hours of y) × 24: at each hour t, the variance of each hour of the day relative to the day's mean (mean 1
    over the day), from the mean absolute returns of :func:`hour_profile` squared; clipped to [0.05, 20], and 1
    where nothing is known yet."""
    table = hour_profile(y, days, absolute=True) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        shape = table / table.mean(axis=1, keepdims=True)
    return np.clip(np.nan_to_num(shape, nan=1.0, posinf=1.0), 0.05, 20.0)


def deseasonalized_returns(y: pd.Series, shape: np.ndarray) -> np.ndarray:
    """Each hour's log return over the square root of its hour of the day's :func:`hour_shape` known the hour
    before (0 for the first hour and next to a missing price)."""
    hour = y.index.hour.to_numpy()
    before = np.vstack([np.ones((1, 24)), shape[:-1]])
    return np.nan_to_num(log_returns(y).to_numpy() / np.sqrt(before[np.arange(len(y)), hour]))


def _hours_ahead(y: pd.Series, pos: np.ndarray, h: int) -> np.ndarray:
    return (y.index.hour.to_numpy()[pos][:, None] + np.arange(1, h + 1)) % 24


def hod(y: pd.Series, origins: pd.DatetimeIndex, horizons: Sequence[int]) -> dict[int, np.ndarray]:
    pos, table = _positions(y, origins), hour_profile(y)
    return {int(h): np.sqrt(np.take_along_axis(table[pos], _hours_ahead(y, pos, int(h)), axis=1).sum(axis=1))
            for h in horizons}


def har_hod(y: pd.Series, origins: pd.DatetimeIndex, horizons: Sequence[int]) -> dict[int, np.ndarray]:
    pos, table = _positions(y, origins), hour_profile(y)
    shape = table[pos] / np.maximum(table[pos].mean(axis=1, keepdims=True), 1e-300)  # mean 1 over the day
    level = _har_sigma(y)[pos]
    return {int(h): level * np.sqrt(np.take_along_axis(shape, _hours_ahead(y, pos, int(h)), axis=1).sum(axis=1))
            for h in horizons}


def _har_inputs(u2: np.ndarray) -> np.ndarray:
    s = pd.Series(u2)
    return np.column_stack([np.ones(len(u2)), u2, *(s.rolling(w, min_periods=1).mean() for w in HAR_WINDOWS)])


def har_fit(y: pd.Series, origins: pd.DatetimeIndex, horizons: Sequence[int],
            refit_every: int = REFIT_EVERY, fit_hours: int = HAR_FIT_HOURS) -> dict[int, np.ndarray]:
    """A fitted HAR of deseasonalized variance times the hour-of-day shape ahead (``blend``'s second half)."""
    pos, shape = _positions(y, origins), hour_shape(y)
    u2 = deseasonalized_returns(y, shape) ** 2
    x = _har_inputs(u2)
    week = x[:, -1]
    out = {}
    for h in map(int, horizons):
        ahead = pd.Series(u2[::-1]).rolling(h, min_periods=h).mean().to_numpy()[::-1]  # mean of rows i..i+h-1
        target = np.append(ahead[1:], np.nan)  # the next h hours after row i: known at hour i + h
        got = np.full(len(pos), np.nan)
        for a in range(0, len(pos), refit_every):
            block = pos[a: a + refit_every]
            known = slice(max(0, block[0] - h - fit_hours + 1), max(0, block[0] - h + 1))  # i + h <= the refit hour
            rows = np.isfinite(target[known])
            beta = np.zeros(x.shape[1])
            beta[-1] = 1.0  # too little to fit: the last 7 days' mean
            if rows.sum() >= HAR_MIN_ROWS:
                beta = np.linalg.lstsq(x[known][rows], target[known][rows], rcond=None)[0]
            variance = np.maximum(x[block] @ beta, HAR_FLOOR * week[block])
            shape_ahead = np.take_along_axis(shape[block], _hours_ahead(y, block, h), axis=1).sum(axis=1)
            got[a: a + len(block)] = np.sqrt(np.maximum(variance * shape_ahead, 1e-300))
        out[h] = got
    return out


# -- GARCH(1,1)-t ------------------------------------------------------------------------------------------
def fit_garch(returns: np.ndarray, start: np.ndarray | None = None) -> tuple[float, float, float]:
    """(omega, alpha, beta) of a zero-mean GARCH(1,1) with standardized Student-t shocks fitted to ``returns``
    (any unit); a constant variance (alpha = beta = 0) from fewer than :data:`GARCH_MIN_RETURNS` of them or
    when the fit fails."""
    r = returns[np.isfinite(returns)]
    if len(r) < GARCH_MIN_RETURNS:
        return float(np.mean(r ** 2)) if len(r) else 1.0, 0.0, 0.0
    from arch import arch_model  # ~0.3 s to import: only when the scaling is asked for

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            res = arch_model(r, mean="Zero", vol="GARCH", p=1, q=1, dist="t", rescale=False).fit(
                disp="off", show_warning=False, starting_values=start)
            omega, alpha, beta = (float(res.params[k]) for k in ("omega", "alpha[1]", "beta[1]"))
        except (ValueError, np.linalg.LinAlgError):
            return float(np.mean(r ** 2)), 0.0, 0.0
    if not all(map(math.isfinite, (omega, alpha, beta))) or omega <= 0:
        return float(np.mean(r ** 2)), 0.0, 0.0
    return omega, alpha, beta


def garch_next_variance(returns: np.ndarray, omega: float, alpha: float, beta: float, start: float) -> np.ndarray:
    """sigma²_{t+1} = omega + alpha r_t² + beta sigma²_t after each return, from sigma² = ``start`` before the first."""
    from scipy.signal import lfilter  # ~0.6 s to import: only with the GARCH scaling (which imports arch anyway)

    r2 = np.nan_to_num(returns) ** 2
    out, _ = lfilter([1.0], [1.0, -beta], omega + alpha * r2, zi=[beta * start])
    return out


def garch_horizon_variance(next_var: np.ndarray, omega: float, alpha: float, beta: float, h: int) -> np.ndarray:
    """The variance of the sum of the next h returns: sum over k of E sigma²_{t+k} (mean-reverting)."""
    phi = alpha + beta
    if phi >= 1.0 or phi <= 0.0:
        return next_var * h
    long_run = omega / (1 - phi)
    return h * long_run + (next_var - long_run) * (1 - phi ** h) / (1 - phi)


def garch(y: pd.Series, origins: pd.DatetimeIndex, horizons: Sequence[int],
          refit_every: int = REFIT_EVERY, fit_hours: int = GARCH_FIT_HOURS) -> dict[int, np.ndarray]:
    pos = _positions(y, origins)
    r = log_returns(y).to_numpy() * 100  # percent: arch's optimizer is happiest near unit variance
    out = {int(h): np.full(len(pos), np.nan) for h in horizons}
    params = None
    for a in range(0, len(pos), refit_every):
        block = pos[a: a + refit_every]
        lo = max(1, block[0] + 1 - fit_hours)
        omega, alpha, beta = fit_garch(r[lo: block[0] + 1], None if params is None or params[1] + params[2] == 0
                                       else np.array([params[0], params[1], params[2], 8.0]))
        params = (omega, alpha, beta)
        start = float(np.nanmean(r[lo: block[0] + 1] ** 2))  # the fit window's mean square: known at the refit
        next_var = garch_next_variance(r[lo: block[-1] + 1], omega, alpha, beta, start)[block - lo]
        for h in out:
            out[h][a: a + len(block)] = np.sqrt(garch_horizon_variance(next_var, omega, alpha, beta, h)) / 100
    return out


# -- quantile regression (LightGBM) ------------------------------------------------------------------------
def spread_features(y: pd.Series, h: int) -> pd.DataFrame:
    """The inputs of the ``qreg`` scaling at every hour of ``y``, from the prices up to that hour: the last absolute
    log return, the realized volatilities of the last 6 h, 24 h and 7 d, the hour-of-day pattern of the h hours
    ahead (:func:`hod`'s square root of summed mean squares), the hour of the day and the day of the week."""
    everywhere = y.index
    return pd.DataFrame({
        "abs_return_1h": log_returns(y).abs().to_numpy(),
        **{f"realized_vol_{w}h": realized_vol(y, w).to_numpy() for w in (6, 24, 168)},
        "hour_of_day_vol": hod(y, everywhere, (h,))[h],
        "hour": everywhere.hour.to_numpy(),
        "day_of_week": everywhere.dayofweek.to_numpy(),
    }, index=everywhere)


def fit_spread_model(x: np.ndarray, target: np.ndarray, quantile: float = QREG_QUANTILE):
    """A LightGBM quantile regressor of ``target`` (absolute h-hour log returns) on ``x``; None from fewer than
    :data:`QREG_MIN_ROWS` complete rows (the scaling is then the plain quantile: constant)."""
    rows = np.isfinite(x).all(axis=1) & np.isfinite(target)
    if rows.sum() < QREG_MIN_ROWS:
        return None
    import lightgbm  # only when the scaling is asked for

    model = lightgbm.LGBMRegressor(objective="quantile", alpha=quantile, n_estimators=100, learning_rate=0.05,
                                   num_leaves=7, min_child_samples=100, random_state=0, n_jobs=1,
                                   deterministic=True, force_row_wise=True, verbose=-1)
    return model.fit(x[rows], target[rows])


def qreg(y: pd.Series, origins: pd.DatetimeIndex, horizons: Sequence[int],
         refit_every: int = REFIT_EVERY, fit_hours: int = QREG_FIT_HOURS) -> dict[int, np.ndarray]:
    pos = _positions(y, origins)
    log_price = np.log(y.to_numpy(dtype=float))
    out = {}
    for h in map(int, horizons):
        x = spread_features(y, h).to_numpy(dtype=float)
        move = np.full(len(y), np.nan)
        move[:-h] = np.abs(log_price[h:] - log_price[:-h])  # the outcome of hour i, known at hour i + h
        got = np.full(len(pos), np.nan)
        for a in range(0, len(pos), refit_every):
            block = pos[a: a + refit_every]
            known = slice(max(0, block[0] - h - fit_hours + 1), max(0, block[0] - h + 1))  # i + h <= the refit hour
            model = fit_spread_model(x[known], move[known])
            seen = move[known][np.isfinite(move[known])]
            floor = max(float(np.quantile(seen, QREG_QUANTILE)) if len(seen) else 1.0, 1e-8)
            # a quantile regression can dip to 0 or below: never under a tenth of the plain quantile
            got[a: a + len(block)] = floor if model is None else np.maximum(model.predict(x[block]), 0.1 * floor)
        out[h] = got
    return out


def blend(y: pd.Series, origins: pd.DatetimeIndex, horizons: Sequence[int],
          garch_part: dict[int, np.ndarray] | None = None, refit_every: int = REFIT_EVERY) -> dict[int, np.ndarray]:
    """The geometric mean of :func:`garch` (``garch_part`` when already computed) and :func:`har_fit`."""
    g = garch(y, origins, horizons, refit_every) if garch_part is None else garch_part
    f = har_fit(y, origins, horizons, refit_every)
    return {int(h): np.sqrt(g[int(h)] * f[int(h)]) for h in horizons}


SCALINGS: dict[str, Scaling] = {"unscaled": unscaled, "rv24": rv24, "har": har, "hod": hod, "har_hod": har_hod,
                                "garch": garch, "blend": blend, "qreg": qreg}
#: hours of prices up to an origin each scaling reads: with at least these, its value at the origin is what any longer
#: history gives (``tests/test_volatility.py`` checks it on real prices); the longest window of each, one more price
#: for the first return, and for the fitted ones the rows behind their fit window (the 24 h horizon's outcomes, the
#: HAR inputs' week, the hour-of-day shape's days)
HISTORY_HOURS = {"unscaled": 1, "rv24": 25, "har": 169, "hod": 24 * HOD_DAYS + 1, "har_hod": 24 * HOD_DAYS + 1,
                 "garch": GARCH_FIT_HOURS + 1,
                 "blend": HAR_FIT_HOURS + max(HAR_WINDOWS) + 24 * SHAPE_DAYS + 24 + 1,  # har_fit's (garch's is less)
                 "qreg": QREG_FIT_HOURS + 24 + 168 + 24 * HOD_DAYS + 1}
#: opt-in scalings, not among the defaults (:data:`DEFAULT_SCALINGS`, env.yaml's ``interval_scalings``): ``qreg``
#: refits LightGBM at every refit of the backtest and at every served forecast (docs/forecasting.md: its cost)
OPT_IN = ("qreg",)
#: the scalings fitted every ``refit_every`` origins (the others are rolling statistics of the prices up to each origin)
FITTED = ("garch", "blend", "qreg")
DEFAULT_SCALINGS = tuple(name for name in SCALINGS if name not in OPT_IN)


def check_scalings(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` if each is a known scaling and the list is not empty, else a one-line ValueError."""
    unknown = [n for n in names if n not in SCALINGS]
    if unknown or not names:
        raise ValueError(f"interval scalings must be some of {', '.join(SCALINGS)}, got {list(names)}")
    return tuple(names)


def scales(y: pd.Series, origins: pd.DatetimeIndex, horizons: Sequence[int],
           names: Sequence[str] = tuple(SCALINGS), refit_every: int = REFIT_EVERY) -> dict[str, dict[int, np.ndarray]]:
    """Every scaling in ``names`` at every origin and horizon: ``{name: {h: array over origins}}``, the
    :data:`FITTED` ones refitted every ``refit_every`` origins from the first (``blend`` reuses ``garch``'s when
    both are asked for)."""
    out: dict[str, dict[int, np.ndarray]] = {}
    for name in sorted(check_scalings(names), key=lambda n: n == "blend"):  # garch first
        fitted = {"refit_every": int(refit_every)} if name in FITTED else {}
        reuse = {"garch_part": out["garch"]} if name == "blend" and "garch" in out else {}
        out[name] = SCALINGS[name](y, origins, horizons, **fitted, **reuse)
    return {name: out[name] for name in names}


def history_hours(names: Sequence[str]) -> int:
    """The hours of prices the scalings ``names`` read up to an origin (:data:`HISTORY_HOURS`; the most of them)."""
    return max(HISTORY_HOURS[n] for n in check_scalings(names))


def scale_now(y: pd.Series, horizons: Sequence[int], name: str) -> dict[int, float]:
    """One scaling at the last hour of ``y`` (what serving multiplies the calibrated quantile by)."""
    got = SCALINGS[check_scalings([name])[0]](y, y.index[-1:], horizons)
    return {h: float(v[0]) for h, v in got.items()}

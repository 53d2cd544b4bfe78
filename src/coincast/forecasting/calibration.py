"""Out-of-sample interval calibration: split-conformal on volatility-scaled log errors.

For a forecast made at origin i for horizon h, the *score* is
``|log(actual / forecast)| / (sigma_i * sqrt(h))`` where ``sigma_i`` is the standard deviation of the
hourly log returns in the ``vol_window`` hours up to the origin (known at the origin:
:func:`coincast.timeseries.realized_vol`). The interval at origin t uses only scores whose actual was known
by t (``origin_i + h <= t``) and that are at most ``window_hours`` old; its half-width is the conformal
quantile of those scores times ``sigma_t * sqrt(h)``, applied in log space (so intervals are multiplicative
and never go below zero).

Scaling by recent volatility makes the intervals widen in turbulent hours and narrow in calm ones; the
conformal quantile makes the coverage hold on average. Calibrating on the residuals that are then scored
would make the coverage look right by construction: here a residual is only used after its target time.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from coincast import metrics

LEVELS = (0.8, 0.95)


def level_key(level: float) -> str:
    return f"{round(level * 100):d}"


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ceil((n+1)·level)-th smallest score (finite-sample valid); inf when n is too small."""
    n = len(scores)
    k = math.ceil((n + 1) * level)
    if n == 0 or k > n:
        return math.inf
    return float(np.partition(scores, k - 1)[k - 1])


def scores(actual: np.ndarray, forecast: np.ndarray, scale: np.ndarray, horizon: int) -> np.ndarray:
    return np.abs(np.log(actual / forecast)) / (scale * math.sqrt(horizon))


def calibrate(
    fc: pd.DataFrame,
    levels: Sequence[float] = LEVELS,
    window_hours: int = 24 * 30,
    min_scores: int = 48,
) -> pd.DataFrame:
    """Add ``lower_<p>``/``upper_<p>`` (and ``q_<p>``) to forecasts of one model.

    ``fc`` columns: origin, horizon, target_time, forecast, actual (NaN if unknown), scale.
    Rows whose calibration set has fewer than ``min_scores`` scores get NaN intervals.
    """
    out = []
    for h, g in fc.groupby("horizon", sort=True):
        g = g.sort_values("origin").copy()
        known = g["actual"].notna().to_numpy()
        s = np.full(len(g), np.nan)
        s[known] = scores(g["actual"].to_numpy()[known], g["forecast"].to_numpy()[known],
                          g["scale"].to_numpy()[known], int(h))
        qs = rolling_quantiles(s, g["origin"].to_numpy(), g["target_time"].to_numpy(), levels, window_hours,
                               min_scores)
        half = {lv: qs[lv] * g["scale"].to_numpy() * math.sqrt(int(h)) for lv in levels}
        for lv in levels:
            key = level_key(lv)
            g[f"q_{key}"] = qs[lv]
            g[f"lower_{key}"] = g["forecast"] * np.exp(-half[lv])
            g[f"upper_{key}"] = g["forecast"] * np.exp(half[lv])
        out.append(g)
    return pd.concat(out).sort_values(["origin", "horizon"]).reset_index(drop=True)


def rolling_quantiles(
    s: np.ndarray, origin: np.ndarray, target: np.ndarray, levels: Sequence[float], window_hours: int,
    min_scores: int,
) -> dict[float, np.ndarray]:
    """Per origin t (rows of one horizon, by origin): the conformal quantile at each level of the scores ``s``
    known by t (``target <= t``, not NaN) and at most ``window_hours`` old (``origin >= t - window``); NaN with
    fewer than ``min_scores`` of them. With origins and targets both in order, that pool is one slice."""
    origin, target = pd.DatetimeIndex(origin).asi8, pd.DatetimeIndex(target).asi8  # ns since the epoch (UTC)
    if np.any(np.diff(origin) < 0) or np.any(np.diff(target) < 0):
        raise ValueError("rolling_quantiles needs rows in origin order with their targets in the same order")
    first = np.searchsorted(origin, origin - int(window_hours) * 3_600_000_000_000, side="left")
    known = np.searchsorted(target, origin, side="right")  # rows [0, known) have their actual by t
    qs = {lv: np.full(len(s), np.nan) for lv in levels}
    for i in range(len(s)):
        pool = s[first[i]: known[i]]
        pool = pool[~np.isnan(pool)]
        if len(pool) < min_scores:
            continue
        for lv in levels:
            qs[lv][i] = conformal_quantile(pool, lv)
    return qs


def empirical_intervals(
    fc: pd.DataFrame,
    levels: Sequence[float] = LEVELS,
    window_hours: int = 24 * 30,
    min_scores: int = 48,
) -> pd.DataFrame:
    """The naive-empirical baseline's intervals for forecasts of one model (the naive one): unscaled
    split-conformal, ``forecast ± q`` with q the conformal quantile of the model's own past absolute errors
    ``|actual - forecast|`` (price units, no volatility scaling, no log) at the same horizon, known by the
    origin and at most ``window_hours`` old (as in :func:`calibrate`). It is the yardstick of the probabilistic
    scores: the interval anyone gets from "the price stays where it is" and the spread of its recent errors.

    ``fc`` columns: origin, horizon, target_time, forecast, actual (NaN if unknown). Returns origin, horizon,
    forecast, ``lower_<p>``/``upper_<p>``; rows with fewer than ``min_scores`` known errors get NaN intervals."""
    columns = ["origin", "horizon", "forecast", *(f"{side}_{level_key(lv)}" for lv in levels for side in ("lower", "upper"))]
    out = [pd.DataFrame(columns=columns)]
    for h, g in fc.groupby("horizon", sort=True):
        g = g.sort_values("origin")
        errors = np.abs(g["actual"].to_numpy(dtype=float) - g["forecast"].to_numpy(dtype=float))
        qs = rolling_quantiles(errors, g["origin"].to_numpy(), g["target_time"].to_numpy(), levels, window_hours,
                               min_scores)
        part = g[["origin", "horizon", "forecast"]].copy()
        for lv in levels:
            part[f"lower_{level_key(lv)}"] = part["forecast"] - qs[lv]
            part[f"upper_{level_key(lv)}"] = part["forecast"] + qs[lv]
        out.append(part[columns])
    return pd.concat(out[1:] or out).sort_values(["origin", "horizon"]).reset_index(drop=True)


def latest_quantiles(
    fc: pd.DataFrame, levels: Iterable[float] = LEVELS, window_hours: int = 24 * 30
) -> dict[int, dict[str, float]]:
    """Quantiles for forecasting *now*: all known scores of the last ``window_hours``, per horizon."""
    out: dict[int, dict[str, float]] = {}
    for h, g in fc.dropna(subset=["actual"]).groupby("horizon"):
        g = g.loc[g["origin"] >= g["origin"].max() - pd.Timedelta(hours=window_hours)]
        s = scores(g["actual"].to_numpy(), g["forecast"].to_numpy(), g["scale"].to_numpy(), int(h))
        out[int(h)] = {level_key(lv): conformal_quantile(s, lv) for lv in levels}
    return out


def quantile_for(quantiles: dict[int, dict[str, float]], horizon: int, key: str) -> float:
    """Quantile for any horizon: exact when calibrated, else linear in horizon between calibrated ones
    (scores are already normalised by sqrt(h), so they vary slowly with h)."""
    hs = sorted(quantiles)
    if horizon in quantiles:
        return quantiles[horizon][key]
    return float(np.interp(horizon, hs, [quantiles[h][key] for h in hs]))


# --- scoring intervals against the naive-empirical baseline -------------------------------------------------
#: what :func:`probabilistic_scores` gives, in its order
PROBABILISTIC_SCORES = (*(f"interval_score_{level_key(lv)}" for lv in LEVELS), "crps",
                        *(f"rel_interval_score_{level_key(lv)}" for lv in LEVELS), "rel_crps")


def interval_columns(g: pd.DataFrame) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """``{level: (lower_<p>, upper_<p>)}`` of a frame of forecasts with intervals (backtest or prediction log)."""
    return {lv: (g[f"lower_{level_key(lv)}"].to_numpy(), g[f"upper_{level_key(lv)}"].to_numpy()) for lv in LEVELS}


def probabilistic_scores(g: pd.DataFrame, base: pd.DataFrame) -> dict[str, float]:
    """Interval scores and CRPS of one model's rows ``g`` (actual, forecast, lower_*/upper_*), each also relative
    to the naive-empirical baseline ``base`` (:func:`empirical_intervals`, indexed by origin) on the same
    origins: the keys of :data:`PROBABILISTIC_SCORES`. ``g`` is a backtest's or the prediction log's rows."""
    a = g["actual"].to_numpy()
    b = base.reindex(g["origin"])
    mine, theirs = interval_columns(g), interval_columns(b)
    quantiles = metrics.interval_quantiles(g["forecast"].to_numpy(), mine)
    out = {f"interval_score_{level_key(lv)}": metrics.interval_score(a, *mine[lv], lv) for lv in LEVELS}
    out["crps"] = metrics.crps(a, quantiles)
    for lv in LEVELS:
        out[f"rel_interval_score_{level_key(lv)}"] = metrics.rel_interval_score(a, *mine[lv], *theirs[lv], lv)
    out["rel_crps"] = metrics.rel_crps(a, quantiles, metrics.interval_quantiles(b["forecast"].to_numpy(), theirs))
    return out

"""Out-of-sample interval calibration: split-conformal on volatility-scaled log errors, per horizon, with the
volatility scaling chosen by interval score.

For a forecast made at origin i for horizon h, the *score* is ``|log(actual / forecast)| / scale_i`` where
``scale_i`` is a volatility forecast of the h-hour log return made at the origin (a scaling of
:mod:`coincast.forecasting.volatility`; ``unscaled`` is 1). The interval at origin t uses only scores of the same
horizon whose actual was known by t (``origin_i + h <= t``) and that are at most ``window_hours`` old; its
half-width is the conformal quantile of those scores times ``scale_t``, applied in log space (so intervals are
multiplicative and never go below zero).

Every candidate scaling is calibrated this way, and each row takes the one whose intervals had the lowest mean
interval score (80 % plus 95 %) on the same pool of rows known at its origin: a scaling is used where it has
earned its place, "unscaled" while too few errors are known. Calibrating or choosing on the residuals that are then
scored would make the result look right by construction: here a residual is only used after its target time.
"""
from __future__ import annotations

import math
from typing import Collection, Iterable, Sequence

import numpy as np
import pandas as pd

from coincast import metrics
from coincast.forecasting.volatility import DEFAULT

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


def scores(actual: np.ndarray, forecast: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """|log(actual / forecast)| / scale: a past error in units of the volatility forecast made at its origin
    (``scale``: a :mod:`~coincast.forecasting.volatility` scaling of the h-hour log return, √h included)."""
    return np.abs(np.log(actual / forecast)) / scale


def scale_column(name: str) -> str:
    return f"scale_{name}"


def calibrate(
    fc: pd.DataFrame,
    levels: Sequence[float] = LEVELS,
    window_hours: int = 24 * 30,
    min_scores: int = 48,
    scalings: Sequence[str] = (DEFAULT,),
    p_value: float = 0.05,
    every: int = 24,
    adapt_rate: float = 0.0,
    adapt_horizons: Collection[int] | None = None,
) -> pd.DataFrame:
    """Add ``lower_<p>``/``upper_<p>`` and ``q_<p>`` to forecasts of one model, with the volatility scaling of
    each row (``scaling``, ``scale``) chosen among ``scalings`` by :func:`choose_scalings`.

    ``fc`` columns: origin, horizon, target_time, forecast, actual (NaN if unknown) and ``scale_<name>`` for each
    name in ``scalings``. Each candidate is calibrated on its own (the conformal quantile of its past scores,
    :func:`rolling_quantiles`) and scored (``is_<name>``: the row's interval score, 80 % plus 95 %, once its
    actual is known); a row takes the candidate :func:`choose_scalings` picks from the rows known at its origin
    (a Diebold–Mariano edge over "unscaled" at ``p_value``, re-picked every ``every`` origins). ``adapt_rate`` > 0
    adapts each candidate's level to its own misses known at the origin (:func:`rolling_quantiles`) at the
    horizons in ``adapt_horizons`` (None: every horizon; :func:`rate_at`). Rows whose
    calibration set has fewer than ``min_scores`` scores get NaN intervals."""
    out = []
    for h, g in fc.groupby("horizon", sort=True):
        g = g.sort_values("origin").copy()
        origin, target = g["origin"].to_numpy(), g["target_time"].to_numpy()
        actual, forecast = g["actual"].to_numpy(dtype=float), g["forecast"].to_numpy(dtype=float)
        known = np.isfinite(actual)
        candidate = {}
        for name in scalings:
            scale = g[scale_column(name)].to_numpy(dtype=float)
            s = np.full(len(g), np.nan)
            s[known] = scores(actual[known], forecast[known], scale[known])
            qs = rolling_quantiles(s, origin, target, levels, window_hours, min_scores,
                                   rate_at(int(h), adapt_rate, adapt_horizons), every)
            bounds = {lv: (forecast * np.exp(-qs[lv] * scale), forecast * np.exp(qs[lv] * scale)) for lv in levels}
            g[f"is_{name}"] = sum(metrics.interval_scores(actual, *bounds[lv], lv) for lv in levels)
            candidate[name] = (qs, bounds, scale)
        chosen = choose_scalings(g[[f"is_{n}" for n in scalings]].to_numpy(), origin, target, window_hours,
                                 min_scores, scalings, int(h), p_value, every)
        g["scaling"] = chosen
        g["scale"] = np.nan
        for name, (qs, bounds, scale) in candidate.items():
            rows = chosen == name
            g.loc[rows, "scale"] = scale[rows]
            for lv in levels:
                key = level_key(lv)
                g.loc[rows, f"q_{key}"] = qs[lv][rows]
                g.loc[rows, f"lower_{key}"] = bounds[lv][0][rows]
                g.loc[rows, f"upper_{key}"] = bounds[lv][1][rows]
        out.append(g)
    return pd.concat(out).sort_values(["origin", "horizon"]).reset_index(drop=True)


def pick_scaling(pool: np.ndarray, names: Sequence[str], horizon: int, p_value: float, min_scores: int) -> str:
    """The scaling for the next origins from ``pool``, the interval scores (rows × ``names``, every one finite) of
    the rows known now: the one with the lowest mean among those that beat
    :data:`~coincast.forecasting.volatility.DEFAULT` ("unscaled") by more than noise — a one-sided Diebold–Mariano
    test at ``horizon`` (HAC over the overlapping h-hour errors) with a p-value below ``p_value`` — else DEFAULT
    (the first name if DEFAULT is not a candidate); DEFAULT too from fewer than ``min_scores`` rows. A scaling
    has to earn its place: with errors 24 h apart overlapping, a month holds only ~30 independent 24 h moves,
    and the best mean alone would follow noise."""
    names = list(names)
    base = names.index(DEFAULT) if DEFAULT in names else 0
    if len(pool) < max(min_scores, horizon + 1):
        return names[base]
    means = pool.mean(axis=0)
    for j in np.argsort(means, kind="stable"):
        if means[j] >= means[base]:
            break
        if metrics.diebold_mariano(pool[:, j], pool[:, base], horizon).p_value < p_value:
            return names[j]
    return names[base]


def choose_scalings(
    interval_scores: np.ndarray, origin: np.ndarray, target: np.ndarray, window_hours: int, min_scores: int,
    names: Sequence[str], horizon: int, p_value: float, every: int,
) -> np.ndarray:
    """Per origin (rows of one horizon, by origin): the scaling :func:`pick_scaling` picks from the rows known at
    the origin and at most ``window_hours`` old (the pool of :func:`pools`) where every candidate has a score
    (``interval_scores``: rows × ``names``, NaN until the actual is known or while a candidate has no interval).
    The pick is made every ``every`` origins and held in between, as a served model holds its own until the
    next training."""
    first, known = pools(origin, target, window_hours)
    valid = np.isfinite(interval_scores).all(axis=1)
    out = np.empty(len(origin), dtype=object)
    for i in range(len(origin)):
        if i % max(1, int(every)) == 0:
            rows = slice(first[i], known[i])
            pick = pick_scaling(interval_scores[rows][valid[rows]], names, horizon, p_value, min_scores)
        out[i] = pick
    return out


def pools(origin: np.ndarray, target: np.ndarray, window_hours: int) -> tuple[np.ndarray, np.ndarray]:
    """Per origin t (rows of one horizon, in origin order with their targets in the same order): the rows
    ``[first, known)`` whose actual is known by t (``target <= t``) and whose origin is at most ``window_hours``
    before t. With origins and targets both in order, that pool is one slice."""
    origin, target = pd.DatetimeIndex(origin).asi8, pd.DatetimeIndex(target).asi8  # ns since the epoch (UTC)
    if np.any(np.diff(origin) < 0) or np.any(np.diff(target) < 0):
        raise ValueError("rolling_quantiles needs rows in origin order with their targets in the same order")
    first = np.searchsorted(origin, origin - int(window_hours) * 3_600_000_000_000, side="left")
    known = np.searchsorted(target, origin, side="right")  # rows [0, known) have their actual by t
    return first, np.maximum(known, first)


def quantile_at(scores: np.ndarray, level: float) -> float:
    """The ceil((n+1)·level)-th smallest of ``scores`` with the rank clipped to 1..n: :func:`conformal_quantile`
    where that is finite, else the largest score (an adapted level may leave [0, 1)); NaN when there are none."""
    n = len(scores)
    if n == 0:
        return math.nan
    k = min(max(math.ceil((n + 1) * level), 1), n)
    return float(np.partition(scores, k - 1)[k - 1])


def adapted_level(level: float, counted: int, missed: int, rate: float) -> float:
    """Adaptive conformal inference (Gibbs & Candès 2021): the level to calibrate at once ``counted`` intervals at
    this nominal ``level`` are known to have held or missed, ``missed`` of them missed (the actual fell outside):
    ``level - rate * (counted * alpha - missed)`` with alpha = 1 - level, the online update
    alpha_t+1 = alpha_t + rate * (alpha - miss_t) summed. More misses than alpha raise the level (wider intervals),
    fewer lower it; ``rate`` 0 keeps the nominal level."""
    return float(level - rate * (counted * (1.0 - level) - missed))


def rate_at(horizon: int, adapt_rate: float, adapt_horizons: Collection[int] | None) -> float:
    """The adaptive step at ``horizon``: ``adapt_rate`` where it adapts (``adapt_horizons`` None: every horizon),
    else 0 (the nominal level)."""
    return float(adapt_rate) if adapt_horizons is None or int(horizon) in adapt_horizons else 0.0


def adaptive_misses(s: np.ndarray, q: np.ndarray) -> np.ndarray:
    """1.0 where a row with an interval (``q`` finite) and a known actual (score ``s`` finite) missed (s > q), 0.0
    where it held, NaN where it had no interval or no actual yet."""
    out = np.where(s > q, 1.0, 0.0)
    out[~(np.isfinite(s) & np.isfinite(q))] = np.nan
    return out


def rolling_quantiles(
    s: np.ndarray, origin: np.ndarray, target: np.ndarray, levels: Sequence[float], window_hours: int,
    min_scores: int, adapt_rate: float = 0.0, adapt_every: int = 1,
) -> dict[float, np.ndarray]:
    """Per origin t: the quantile at each level of the scores ``s`` (not NaN) of the pool of :func:`pools`; NaN
    with fewer than ``min_scores`` of them. The level is the nominal one (:func:`conformal_quantile`) or, with
    ``adapt_rate`` > 0, :func:`adapted_level` from the misses known at t (:func:`quantile_at`): those of the rows
    whose target time is at most t and that had an interval — a miss at horizon h is known h hours after its
    origin, and only then moves the level. The level is re-adapted every ``adapt_every`` origins and held in
    between, as a served model holds its quantiles until the next training."""
    first, known = pools(origin, target, window_hours)
    # rows [0, seen[i]) have their actual by origin i (pools' ``known`` is this, raised to ``first``)
    seen = np.searchsorted(pd.DatetimeIndex(target).asi8, pd.DatetimeIndex(origin).asi8, side="right")
    qs = {lv: np.full(len(s), np.nan) for lv in levels}
    counted = {lv: 0 for lv in levels}
    missed = {lv: 0 for lv in levels}
    done = 0  # rows [0, done) are counted
    for i in range(len(s)):
        if adapt_rate and i % max(1, int(adapt_every)) == 0 and seen[i] > done:
            for lv in levels:
                m = adaptive_misses(s[done: seen[i]], qs[lv][done: seen[i]])
                counted[lv] += int(np.isfinite(m).sum())
                missed[lv] += int(np.nansum(m))
            done = int(seen[i])
        pool = s[first[i]: known[i]]
        pool = pool[~np.isnan(pool)]
        if len(pool) < min_scores:
            continue
        for lv in levels:
            qs[lv][i] = (quantile_at(pool, adapted_level(lv, counted[lv], missed[lv], adapt_rate)) if adapt_rate
                         else conformal_quantile(pool, lv))
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


def latest_calibration(
    fc: pd.DataFrame, levels: Iterable[float] = LEVELS, window_hours: int = 24 * 30, min_scores: int = 48,
    scalings: Sequence[str] = (DEFAULT,), p_value: float = 0.05, adapt_rate: float = 0.0, every: int = 24,
    adapt_horizons: Collection[int] | None = None,
) -> tuple[dict[int, dict[str, float]], dict[int, str]]:
    """For forecasting *now* from a model's calibrated backtest rows (:func:`calibrate`): per horizon, the
    scaling :func:`pick_scaling` picks from the known rows of the last ``window_hours`` (their ``is_<name>``)
    and the quantiles of its scores there: conformal at each level, or with ``adapt_rate`` > 0 at the level
    adapted by every known miss of that scaling's backtest intervals (:func:`adapted_level`; their levels
    re-adapted every ``every`` origins at the horizons in ``adapt_horizons``, as :func:`calibrate` did).
    Returns ({h: {level key: q}}, {h: scaling})."""
    levels = tuple(levels)
    quantiles: dict[int, dict[str, float]] = {}
    chosen: dict[int, str] = {}
    for h, rows in fc.groupby("horizon"):
        rows = rows.sort_values("origin")
        now = rows["origin"].max() + pd.Timedelta(hours=1)  # the serving origin: the hour after the last backtested
        g = rows.dropna(subset=["actual"])  # known rows, kept as the backtest keeps them at an origin (:func:`pools`)
        g = g.loc[g["origin"] >= now - pd.Timedelta(hours=window_hours)]
        table = g[[f"is_{n}" for n in scalings]].to_numpy(dtype=float)
        name = chosen[int(h)] = pick_scaling(table[np.isfinite(table).all(axis=1)], scalings, int(h), p_value,
                                             min_scores)
        s = scores(g["actual"].to_numpy(), g["forecast"].to_numpy(), g[scale_column(name)].to_numpy())
        quantiles[int(h)] = {level_key(lv): conformal_quantile(s, lv) for lv in levels}
        rate = rate_at(int(h), adapt_rate, adapt_horizons)
        if rate:
            path = scores(rows["actual"].to_numpy(dtype=float), rows["forecast"].to_numpy(dtype=float),
                          rows[scale_column(name)].to_numpy(dtype=float))
            qs = rolling_quantiles(path, rows["origin"].to_numpy(), rows["target_time"].to_numpy(), levels,
                                   window_hours, min_scores, rate, every)
            for lv in levels:
                m = adaptive_misses(path, qs[lv])
                level = adapted_level(lv, int(np.isfinite(m).sum()), int(np.nansum(m)), rate)
                quantiles[int(h)][level_key(lv)] = quantile_at(s, level)
    return quantiles, chosen


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

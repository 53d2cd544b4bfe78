"""Hourly operation: the prediction log, its scoring, live accuracy and the retraining decision.

The log is data, not a product: it accumulates one row per (origin, horizon) and is never rewritten except
to fill in the actual once it is known. It lives beside the raw history, one file per series
(``<predictions_dir>/<source>/<series>/<coin>-<vs>.parquet``), and is DVC-versioned with it.

Every function here takes and returns frames/dicts; ``read_log`` / ``write_log`` are the only file edges.

Which model makes a row: the version that was champion at the row's origin (see :func:`update_log`), so a
catch-up after an outage never uses a model trained on data after the hour it predicts from. A row no
version was in force for is made by the current champion and flagged ``in_force = False``: it stays in the
log but out of every score (live accuracy, the drift check, the replay report, the dashboard). A score from
fewer than ``min_scored`` rows is not given (:func:`accuracy`: ``status`` "too few to score").
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from filelock import FileLock

from coincast.forecasting import calibration
from coincast import metrics
from coincast.files import read_store, write_parquet_atomic
from coincast.forecasting.serving import ServedForecaster
from coincast.timeseries import HOUR, hourly_series, latest_realized_vol, observed_prices, utc_times

logger = logging.getLogger(__name__)

LEVELS = tuple(calibration.level_key(lv) for lv in calibration.LEVELS)  # "80", "95": interval column suffixes
LOG_COLUMNS = [
    "coin", "origin", "target_time", "horizon", "forecast", "lower_80", "upper_80", "lower_95", "upper_95",
    "last_price", "model_name", "model_version", "data_version", "made_at", "late", "in_force", "actual", "scored_at",
]
_TIME_COLUMNS = ("origin", "target_time", "made_at", "scored_at")


def empty_log() -> pd.DataFrame:
    out = pd.DataFrame({c: pd.Series(dtype="float64") for c in LOG_COLUMNS})
    for c in _TIME_COLUMNS:
        out[c] = pd.Series(dtype="datetime64[ns, UTC]")
    for c in ("coin", "model_name", "model_version", "data_version"):
        out[c] = pd.Series(dtype="object")
    out["horizon"] = pd.Series(dtype="int64")
    out["late"] = pd.Series(dtype="bool")
    out["in_force"] = pd.Series(dtype="bool")
    return out[LOG_COLUMNS]


def log_path(predictions_dir: str | os.PathLike, meta: Mapping[str, Any]) -> Path:
    """The log of the series ``meta`` (extract.json) describes: mirrors the raw history's layout."""
    return Path(predictions_dir) / meta["source"] / meta["series"] / f"{meta['coin']}-{meta['vs_currency']}.parquet"


def read_log(path: str | os.PathLike) -> pd.DataFrame:
    log = read_store(path, empty_log, LOG_COLUMNS, _TIME_COLUMNS, RuntimeError, "prediction log", added=["in_force"])
    return with_in_force(log)


def with_in_force(log: pd.DataFrame) -> pd.DataFrame:
    """``in_force`` as booleans. Rows logged before the column existed get ``not late``: a catch-up row of
    that time may have been made by a model trained after its origin, so it is kept out of the scores."""
    if "in_force" in log.columns and log["in_force"].dtype == bool:
        return log
    out = log.copy()
    given = out["in_force"] if "in_force" in out.columns else pd.Series(pd.NA, index=out.index, dtype="object")
    late = out["late"].fillna(False).astype(bool) if "late" in out.columns else pd.Series(False, index=out.index)
    out["in_force"] = given.where(given.notna(), ~late).astype(bool)
    return out


def log_lock(path: str | os.PathLike, timeout: float = 60) -> FileLock:
    return FileLock(f"{path}.lock", timeout=timeout)


def write_log(log: pd.DataFrame, path: str | os.PathLike) -> None:
    write_parquet_atomic(log[LOG_COLUMNS].reset_index(drop=True), path)


# -- making predictions ---------------------------------------------------------------------------
def pending_origins(log: pd.DataFrame, y: pd.Series, max_catchup_hours: int) -> list[pd.Timestamp]:
    """The data hours to predict from: every hour after the last logged origin up to the newest data hour
    (so a missed tick leaves no hole), at most ``max_catchup_hours`` of them; only the newest on a first run."""
    last_data = y.index[-1]
    if log.empty:
        return [last_data]
    last_logged = log["origin"].max()
    if last_data <= last_logged:
        return []
    first = max(last_logged + HOUR, last_data - (max(max_catchup_hours, 1) - 1) * HOUR)
    return list(pd.date_range(first, last_data, freq="h"))


def predictions_at(
    served: ServedForecaster,
    version: Mapping[str, Any],
    raw: pd.DataFrame,
    origins: Sequence[pd.Timestamp],
    horizons: Sequence[int],
    *,
    coin: str,
    data_version: str | None,
    made_at: pd.Timestamp,
    in_force: bool = True,
) -> pd.DataFrame:
    """Log rows for each origin: ``served``'s forecast from the data up to that hour (never after it).

    A row made for an origin older than the newest data hour is marked ``late`` (a catch-up after a
    missed tick): it still used only data up to its origin. ``in_force``: whether ``version`` was the
    champion at these origins (False: it was trained on data after them; such rows are never scored)."""
    if not origins:
        return empty_log()
    y = hourly_series(raw)
    frames = []
    newest = y.index[-1]
    times = utc_times(raw["timestamp"])
    for origin in origins:
        upto = raw.loc[times <= origin]
        if times[times <= origin].max() < origin:  # no price at the origin hour: the last known one stands for it
            upto = pd.concat([upto, upto.iloc[[-1]].assign(timestamp=origin)], ignore_index=True)
        fc = served.forecast(upto, list(horizons))
        fc["origin"] = pd.Timestamp(fc.attrs["origin"])
        fc["last_price"] = float(y.loc[:origin].iloc[-1])
        fc["late"] = bool(origin < newest)
        frames.append(fc)
    out = pd.concat(frames, ignore_index=True)
    out["coin"] = coin
    out["model_name"] = served.name
    out["model_version"] = str(version.get("version"))
    out["data_version"] = data_version
    out["made_at"] = pd.Timestamp(made_at)
    out["in_force"] = bool(in_force)
    out["actual"] = np.nan
    out["scored_at"] = pd.Series(pd.NaT, index=out.index, dtype="datetime64[ns, UTC]")
    return out[LOG_COLUMNS]


def append(log: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """The log plus ``new`` rows; a (origin, horizon) already logged keeps its first prediction."""
    if new.empty:
        return log
    both = pd.concat([log, new], ignore_index=True) if not log.empty else new.copy()
    both = both.drop_duplicates(subset=["origin", "horizon"], keep="first")
    return both.sort_values(["origin", "horizon"]).reset_index(drop=True)


def score(log: pd.DataFrame, y: pd.Series, now: pd.Timestamp) -> tuple[pd.DataFrame, int]:
    """Fill ``actual`` for every unscored row whose target hour is in ``y``; returns (log, rows scored)."""
    if log.empty:
        return log, 0
    out = log.copy()
    todo = out["actual"].isna() & out["target_time"].isin(y.index)
    if todo.any():
        out.loc[todo, "actual"] = out.loc[todo, "target_time"].map(y).to_numpy()
        out.loc[todo, "scored_at"] = pd.Timestamp(now)
    return out, int(todo.sum())


InForce = Callable[[pd.Timestamp], "tuple[ServedForecaster, Mapping[str, Any]] | None"]
Group = tuple[ServedForecaster, Mapping[str, Any], bool, list[pd.Timestamp]]


def models_for(origins: Sequence[pd.Timestamp], served: ServedForecaster, version: Mapping[str, Any],
               in_force_at: InForce | None) -> list[Group]:
    """Who predicts from each origin, grouped: (model, version, in force, origins). ``in_force_at(origin)`` gives
    the version that was champion at that hour, or None when every champion was trained on data after it: the
    current champion (``served``, ``version``) then makes the rows, flagged not in force. Without
    ``in_force_at`` the champion is taken to be in force at every origin."""
    groups: dict[tuple[str, bool], Group] = {}
    for origin in origins:
        pick = (served, version) if in_force_at is None else in_force_at(pd.Timestamp(origin))
        model, info, ok = (served, version, False) if pick is None else (pick[0], pick[1], True)
        groups.setdefault((str(info.get("version")), ok), (model, info, ok, []))[3].append(origin)
    return list(groups.values())


def update_log(
    log: pd.DataFrame,
    served: ServedForecaster,
    version: Mapping[str, Any],
    raw: pd.DataFrame,
    *,
    coin: str,
    horizons: Sequence[int],
    data_version: str | None,
    now: pd.Timestamp,
    max_catchup_hours: int,
    in_force_at: InForce | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One tick's work on the log: predict from every origin not yet logged (catching up missed ticks), each
    with the version in force at that origin (:func:`models_for`; e.g. ``registry.in_force_at``), append,
    then score every row whose actual is now known. Returns (log, what happened)."""
    y = hourly_series(raw)
    origins = pending_origins(log, y, max_catchup_hours)
    parts = [predictions_at(model, info, raw, group, horizons, coin=coin, data_version=data_version, made_at=now,
                            in_force=ok)
             for model, info, ok, group in models_for(origins, served, version, in_force_at)]
    new = pd.concat(parts, ignore_index=True).sort_values(["origin", "horizon"]) if parts else empty_log()
    out = append(log, new)
    out, scored = score(out, observed_prices(raw), now)
    summary = {
        "origins_added": [o.isoformat() for o in origins],
        "rows_added": int(len(out) - len(log)),
        "rows_scored": scored,
        "late": int(new["late"].sum()) if len(new) else 0,
        "not_in_force": int((~new["in_force"].astype(bool)).sum()) if len(new) else 0,
        "rows": int(len(out)),
        "model_version": str(version.get("version")),
        "model_versions": {str(o.isoformat()): v for o, v in
                           new.drop_duplicates("origin").set_index("origin")["model_version"].items()},
        "data_version": data_version,
    }
    logger.info("%s: log +%d rows (%d late, %d made by a model trained after their hour: not scored), %d scored, "
                "%d in all", coin, summary["rows_added"], summary["late"], summary["not_in_force"], scored, len(out))
    return out, summary


# -- live accuracy --------------------------------------------------------------------------------
def too_few(n: float, min_scored: int) -> str | None:
    """The "too few to score" status of a score from ``n`` rows, or None when there are enough."""
    return f"too few to score (n < {int(min_scored)})" if n < min_scored else None


def in_force_rows(log: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """The rows of ``horizon`` that count in scores: made by the champion of their hour (``in_force``)."""
    g = log.loc[log["horizon"] == horizon]
    return g.loc[g["in_force"].fillna(True).astype(bool)] if "in_force" in g.columns else g


def pending(log: pd.DataFrame, horizon: int, through: pd.Timestamp | None = None) -> int:
    """Predictions of ``horizon`` that will be scored once their actual price is known: unscored, with their target
    hour after ``through`` (the newest price hour, None: any; one at or before it had no price and never will)."""
    g = in_force_rows(log, horizon)
    waiting = g["actual"].isna() & (True if through is None else g["target_time"] > pd.Timestamp(through))
    return int(waiting.sum())


def naive_empirical(log: pd.DataFrame, horizon: int, window_days: float, min_scores: int = 48) -> pd.DataFrame:
    """The naive-empirical baseline at each origin of ``horizon`` in the log, indexed by origin: naive
    (``last_price``) ± the conformal quantile of its own absolute errors over the ``window_days``
    (``calibration_window_days``) before, known at the origin (:func:`coincast.forecasting.calibration.empirical_intervals`). Every row counts, in force or
    not: naive's error does not depend on the model that made the row."""
    g = log.loc[log["horizon"] == horizon, ["origin", "horizon", "target_time", "last_price", "actual"]]
    g = g.sort_values("origin").drop_duplicates("origin", keep="last").rename(columns={"last_price": "forecast"})
    return calibration.empirical_intervals(g, calibration.LEVELS, int(window_days * 24), min_scores).set_index("origin")


def scored_rows(log: pd.DataFrame, horizon: int, since: pd.Timestamp | None = None) -> pd.DataFrame:
    """The rows of ``horizon`` in force with their actual known (target after ``since``, if given)."""
    g = in_force_rows(log, horizon)
    g = g.loc[g["actual"].notna()]
    return g if since is None else g.loc[g["target_time"] > since]


def point_accuracy(g: pd.DataFrame, min_scored: int = 1) -> dict[str, Any]:
    """n, mae, naive_mae, rel_mae (vs "the price stays at last_price" on the same origins) and coverage 80/95 of
    :func:`scored_rows` ``g``. From fewer than ``min_scored`` rows (or none): only n, the other numbers None and
    ``status`` "too few to score (n < min)"."""
    out: dict[str, Any] = {"n": len(g)}  # a count: an int in live.json
    status = too_few(len(g), max(int(min_scored), 1))  # no row scored yet is "too few" too, whatever the minimum
    if status:
        return {**out, **dict.fromkeys(("mae", "naive_mae", "rel_mae", *(f"coverage_{lv}" for lv in LEVELS))),
                "status": status}
    actual, forecast, naive = g["actual"], g["forecast"], g["last_price"]
    out["mae"] = metrics.mae(actual, forecast)
    out["naive_mae"] = metrics.mae(actual, naive)
    out["rel_mae"] = metrics.rel_mae(actual, forecast, naive)
    for lv in LEVELS:
        out[f"coverage_{lv}"] = metrics.coverage(actual, g[f"lower_{lv}"], g[f"upper_{lv}"])
    return out


def accuracy(log: pd.DataFrame, horizon: int, since: pd.Timestamp | None = None,
             min_scored: int = 1, calibration_window_days: float = 30,
             baseline: pd.DataFrame | None = None) -> dict[str, Any]:
    """:func:`point_accuracy` of the scored rows in force (``in_force``: made by the champion of their hour),
    plus interval scores and CRPS with their rel_* against the naive-empirical baseline (:func:`naive_empirical`
    over ``calibration_window_days``; ``baseline``: that baseline when already made); all None ("too few to
    score") from fewer than ``min_scored`` rows."""
    g = scored_rows(log, horizon, since)
    out = point_accuracy(g, min_scored)
    if "status" in out:
        return {**out, **dict.fromkeys(calibration.PROBABILISTIC_SCORES)}
    if baseline is None:
        baseline = naive_empirical(log, horizon, calibration_window_days)
    scores = calibration.probabilistic_scores(g, baseline)
    return {**out, **{k: (v if math.isfinite(v) else None) for k, v in scores.items()}}


def live_metrics(
    log: pd.DataFrame, y: pd.Series, now: pd.Timestamp, horizons: Sequence[int], window_hours: int,
    min_scored: int = 1, calibration_window_days: float = 30,
) -> dict[str, Any]:
    """Accuracy of the scored log, all time and over the last ``window_hours`` (each "too few to score" from
    fewer than ``min_scored`` rows; the naive-empirical baseline of the rel_* scores over
    ``calibration_window_days``), the predictions still waiting for their actual (``pending``, per horizon),
    plus realized volatility. Written to ``live.json``: what the dashboard shows."""
    since = pd.Timestamp(now) - pd.Timedelta(hours=window_hours)
    out: dict[str, Any] = {
        "now": pd.Timestamp(now).isoformat(),
        "window_hours": int(window_hours),
        "min_scored_rows": int(min_scored),
        "logged": int(len(log)),
        "scored": int(log["actual"].notna().sum()) if len(log) else 0,
        "not_in_force": int((~log["in_force"].astype(bool)).sum()) if len(log) and "in_force" in log else 0,
        "realized_vol_24h": latest_realized_vol(y, 24),
        "realized_vol_30d": latest_realized_vol(y, 24 * 30),
        "horizons": {},
    }
    for h in horizons:
        base = naive_empirical(log, h, calibration_window_days)  # one baseline for both spans
        out["horizons"][str(h)] = {"all": accuracy(log, h, None, min_scored, baseline=base),
                                   "window": accuracy(log, h, since, min_scored, baseline=base)}
    newest = y.dropna().index.max() if len(y) else None  # the newest hour with a price
    out["pending"] = {str(h): pending(log, h, newest) for h in horizons}
    return out


def flat_live_metrics(live: Mapping[str, Any]) -> dict[str, float]:
    """MLflow metric names: live_rel_mae_1h, live_coverage_80_24h_window, realized_vol_24h, ... Only numbers:
    a score "too few to score" (None) is not logged, its n is."""
    out: dict[str, float] = {}
    for key in ("realized_vol_24h", "realized_vol_30d", "logged", "scored", "not_in_force"):
        if key in live:
            out[key if key.startswith("realized") else f"live_{key}"] = float(live[key])
    for h, parts in live.get("horizons", {}).items():
        for part, scores in parts.items():
            suffix = f"_{h}h" + ("" if part == "all" else "_window")
            for name, value in scores.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    out[f"live_{name}{suffix}"] = float(value)
    return {k: v for k, v in out.items() if isinstance(v, float) and math.isfinite(v)}


def summary_table(live: Mapping[str, Any]) -> pd.DataFrame:
    """Horizon x (all time | window): n, rel_mae, coverage 80/95."""
    rows = []
    for h, parts in live.get("horizons", {}).items():
        for part, m in parts.items():
            rows.append({"horizon_h": int(h), "span": part, **{k: m.get(k) for k in
                         ("n", "rel_mae", "mae", "naive_mae", "coverage_80", "coverage_95", "status")}})
    return pd.DataFrame(rows).set_index(["horizon_h", "span"]) if rows else pd.DataFrame()


def accuracy_over_time(log: pd.DataFrame, horizons: Sequence[int], window_hours: int,
                       min_scored: int = 1) -> pd.DataFrame:
    """Live accuracy as it stood at each scored hour: per horizon and target hour, what :func:`accuracy` gives
    over the ``window_hours`` before it (n, rel_mae, coverage 80/95: the metrics module's definitions, summed
    over a rolling window), each NaN ("too few to score") from fewer than ``min_scored`` rows. At the newest
    data hour (a build scores up to it) that is live.json's window score. Columns: horizon, target_time, n,
    rel_mae, coverage_80, coverage_95; no rows before anything is scored."""
    columns = ["horizon", "target_time", "n", "rel_mae", *(f"coverage_{lv}" for lv in LEVELS)]
    frames = []
    for h in horizons:
        g = in_force_rows(log, h)
        g = g.loc[g["actual"].notna()].sort_values("target_time").set_index("target_time")
        if g.empty:
            continue
        actual = g["actual"]
        err, base = metrics.abs_errors(actual, g["forecast"]), metrics.abs_errors(actual, g["last_price"])
        both = err.notna() & base.notna()  # rel_mae's rows: actual, forecast and naive all known
        parts = pd.DataFrame({"row": 1.0, "err": err.where(both), "naive": base.where(both)})
        for lv in LEVELS:  # coverage's rows: both bounds known
            lo, hi = g[f"lower_{lv}"], g[f"upper_{lv}"]
            parts[lv] = ((actual >= lo) & (actual <= hi)).astype(float).where(lo.notna() & hi.notna())
        window = parts.rolling(f"{int(window_hours)}h")  # (t - window, t]: accuracy's "target_time > since"
        sums, counts = window.sum(), window.count()
        out = pd.DataFrame({"horizon": int(h), "target_time": parts.index, "n": sums["row"].to_numpy(),
                            "rel_mae": (sums["err"] / sums["naive"].where(sums["naive"] > 0)).to_numpy(),
                            **{f"coverage_{lv}": (sums[lv] / counts[lv]).to_numpy() for lv in LEVELS}})
        out.loc[out["n"] < min_scored, columns[3:]] = np.nan
        frames.append(out)
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


# -- retraining -----------------------------------------------------------------------------------
def retrain_decision(
    champion: Mapping[str, Any] | None,
    now: pd.Timestamp,
    y: pd.Series,
    log: pd.DataFrame,
    *,
    every_hours: int,
    drift_max_rel_mae: float,
    drift_volatility_ratio: float,
    drift_window_hours: int,
    drift_min_scored: int,
    min_gap_hours: int,
    last_trained: str | None = None,
) -> dict[str, Any]:
    """Whether to retrain now, and why: no champion; ``every_hours`` since the last training's data (the
    champion's, or ``last_trained``: a later training whose challenger the gate did not promote, so that a kept
    champion is not retrained every hour) (0 = every build); or drift (live 1 h rel_mae over the window above ``drift_max_rel_mae``, or 24 h
    realized volatility more than ``drift_volatility_ratio`` times its 30-day level: a calm day is no reason
    to retrain, a storm is), no sooner
    than ``min_gap_hours`` after the last training."""
    now = pd.Timestamp(now)
    if not champion:
        return {"due": True, "reason": "no champion yet"}
    if every_hours <= 0:
        return {"due": True, "reason": "retrain_every_hours is 0: every build retrains"}
    trained = champion.get("data_through")
    if not trained:
        return {"due": True, "reason": "the champion does not say when it was trained"}
    what = "champion"
    if last_trained and pd.Timestamp(last_trained) > pd.Timestamp(trained):
        trained, what = last_trained, "last training (its challenger not promoted)"
    age = (now - pd.Timestamp(trained)).total_seconds() / 3600
    if age >= every_hours:
        return {"due": True, "reason": f"{what} trained {age:.0f} h ago (retrain_every_hours {every_hours})",
                "age_hours": age}
    base = {"due": False, "age_hours": age}
    if age < min_gap_hours:
        return {**base, "reason": f"{what} trained {age:.0f} h ago; next scheduled in {every_hours - age:.0f} h"}
    since = now - pd.Timedelta(hours=drift_window_hours)
    window = point_accuracy(scored_rows(log, 1, since), drift_min_scored)  # rel_mae only: no baseline to build
    rel = window.get("rel_mae")
    if window["n"] >= drift_min_scored and rel is not None and rel > drift_max_rel_mae:
        return {"due": True, "reason": f"drift: live 1 h rel_mae {rel:.3f} > {drift_max_rel_mae} over the last "
                                       f"{drift_window_hours} h ({int(window['n'])} scored)", "age_hours": age}
    v24, v30 = latest_realized_vol(y, 24), latest_realized_vol(y, 24 * 30)
    if v24 > 0 and v30 > 0 and v24 / v30 > drift_volatility_ratio:
        return {"due": True, "reason": f"drift: 24 h volatility {v24:.4f} is {v24 / v30:.1f}x the 30-day "
                                       f"{v30:.4f} (limit {drift_volatility_ratio}x)", "age_hours": age}
    return {**base, "reason": f"not due: {what} trained {age:.0f} h ago, no drift"}


# -- replay report --------------------------------------------------------------------------------
def completeness(log: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, horizons: Sequence[int]) -> dict[str, Any]:
    """Missed hours (no prediction logged for an origin hour in [start, end]) and unscored rows whose target
    hour is at or before ``end`` (``unscored_known``: after the last tick has scored, those whose hour has no
    price)."""
    grid = pd.date_range(pd.Timestamp(start).floor("h"), pd.Timestamp(end).floor("h"), freq="h")
    out: dict[str, Any] = {"hours": int(len(grid)), "missed": {}, "unscored_known": 0}
    for h in horizons:
        have = pd.DatetimeIndex(log.loc[log["horizon"] == h, "origin"])
        out["missed"][str(h)] = int(len(grid.difference(have)))
    known = log["target_time"] <= pd.Timestamp(end).floor("h")
    out["unscored_known"] = int((known & log["actual"].isna()).sum())
    return out


__all__ = [
    "LOG_COLUMNS", "accuracy", "accuracy_over_time", "append", "completeness", "empty_log", "flat_live_metrics",
    "in_force_rows", "live_metrics", "log_path", "models_for", "naive_empirical", "pending", "pending_origins",
    "point_accuracy", "predictions_at", "read_log", "retrain_decision", "score", "scored_rows", "too_few",
    "update_log", "with_in_force", "write_log",
]

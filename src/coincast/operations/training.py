"""The train stage: backtest every model, record the run in MLflow, register and gate the champion.

Kept out of the notebook so the hourly tick, the benchmarks and tests call the same code.
"""
from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from coincast.forecasting.backtest import (NAIVE, BacktestResult, BacktestSettings, backtest, errors_by_origin,
                                           served_model)

logger = logging.getLogger(__name__)


def decide_retrain(
    meta: Mapping[str, Any],
    y: pd.Series,
    log: pd.DataFrame,
    products: Mapping[str, Any],
    project_root: str | Path,
    schedule: Mapping[str, Any],
) -> dict[str, Any]:
    """Whether this build retrains (see :func:`coincast.operations.live.retrain_decision`); also due when the
    products of the last training (other than the executed notebook) are missing. ``schedule``:
    retrain_every_hours and the drift_* knobs."""
    from coincast.operations import live
    from coincast import registry

    registry.configure(Path(project_root))
    try:
        champion: dict[str, Any] | None = registry.champion_info(str(meta["coin"]))
    except LookupError:
        champion = None
    missing = [str(p) for k, p in products.items() if k != "nb" and not Path(str(p)).exists()]
    if champion and missing:
        return {"due": True, "reason": f"products of the last training are missing ({Path(missing[0]).name})"}
    elsewhere = registry.cannot_serve(champion, meta)
    if elsewhere:
        return {"due": True, "reason": elsewhere}
    latest = registry.last_training(str(meta["coin"])) if champion else None
    decision = live.retrain_decision(
        champion, pd.Timestamp(meta["now"]), y, log, last_trained=(latest or {}).get("data_through"),
        every_hours=int(schedule["retrain_every_hours"]),
        drift_max_rel_mae=float(schedule["drift_max_rel_mae"]),
        drift_volatility_ratio=float(schedule["drift_volatility_ratio"]),
        drift_window_hours=int(schedule["drift_window_hours"]),
        drift_min_scored=int(schedule["drift_min_scored"]),
        min_gap_hours=int(schedule["min_retrain_gap_hours"]),
    )
    logger.info("%s: %s", meta.get("coin"), decision["reason"])
    return decision


def backtest_settings(*, backtest_days: float, calibration_days: float, calibration_window_days: float,
                      horizons: Sequence[int], refit_every_hours: int, n_jobs: int,
                      interval_scalings: Sequence[str], scaling_p_value: float, interval_adapt_rate: float,
                      interval_adapt_horizons: Sequence[int]) -> BacktestSettings:
    """The walk-forward settings from the train task's ``backtest`` group (env.yaml keys of the same names)."""
    return BacktestSettings(backtest_days=backtest_days, calibration_days=calibration_days,
                            calibration_window_days=calibration_window_days, horizons=tuple(int(h) for h in horizons),
                            refit_every_hours=refit_every_hours, n_jobs=n_jobs,
                            scalings=tuple(interval_scalings), scaling_p_value=scaling_p_value,
                            adapt_rate=interval_adapt_rate, adapt_horizons=tuple(int(h) for h in interval_adapt_horizons))


def run_artifacts(product: Mapping[str, Any], upstream: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What a training's MLflow run keeps: the backtest and its figures, the gate's report and the executed
    notebooks of the stages before training (``product`` / ``upstream``: the train task's). Not the profile: it
    runs beside training (the published snapshot holds it)."""
    return [product["backtest"], product["figures"], upstream["validate"]["report"],
            *(upstream[task]["nb"] for task in ("extract", "validate", "features"))]


def train(
    decision: Mapping[str, Any],
    y: pd.Series,
    models: Sequence[Mapping[str, Any]],
    settings: BacktestSettings,
    meta: Mapping[str, Any],
    product: Mapping[str, Any],
    upstream: Mapping[str, Mapping[str, Any]],
    project_root: str | Path,
    promotion_p_value: float,
    exog: pd.DataFrame | None = None,
) -> dict[str, Any] | None:
    """The train stage when ``decision`` (:func:`decide_retrain`) says it is due: backtest every model, write
    backtest.json, the scored forecasts and backtest.html, log the run to MLflow, register and gate the champion
    (an edge counts when its Diebold–Mariano p-value is below ``promotion_p_value``: the ``promotion`` group),
    write registry.json (the promotion and ``trained``: the decision). ``y``: the observed prices on the hourly grid
    (:func:`coincast.timeseries.observed_series`: a missing hour NaN, never scored). ``exog``: the cross-coin columns of
    features.parquet by hour (None without), read by the feature-based models. Returns registry.json's content;
    None when not due (the products of the last training stay as they are)."""
    if not decision["due"]:
        return None
    from coincast import files

    result = backtest(y, models, settings, exog)
    report = backtest_report(result, meta)
    save_backtest(result, report, product, meta["coin"])
    params = {"models": models, **report["settings"], "coin": meta["coin"], "source": meta["source"],
              "interval_scaling": report["interval_scaling"]}
    promotion = register_champion(meta["coin"], y, result, report, project_root, params,
                                  run_artifacts(product, upstream), promotion_p_value, exog)
    registry_json = {**promotion, "trained": dict(decision)}
    files.write_json_atomic(registry_json, product["registry"])
    return registry_json


def backtest_report(result: BacktestResult, meta: Mapping[str, Any]) -> dict[str, Any]:
    """backtest.json: the summary plus where the data came from."""
    return {
        "coin": meta.get("coin"),
        "source": meta.get("source"),
        "series": meta.get("series"),
        "vs_currency": meta.get("vs_currency"),
        "simulated": meta.get("source") == "simulated",
        "data_version": meta.get("data_version"),
        **result.summary,
    }


def save_backtest(result: BacktestResult, report: Mapping[str, Any], paths: Mapping[str, Any], coin: str) -> None:
    """Write a backtest's products, each atomically: ``paths["backtest"]`` (the report as JSON),
    ``paths["forecasts"]`` (every scored forecast, parquet) and ``paths["figures"]`` (plotly HTML)."""
    from coincast.forecasting import figures
    from coincast import files

    files.write_json_atomic(report, paths["backtest"])
    files.write_parquet_atomic(result.forecasts, paths["forecasts"])
    files.write_text_atomic(figures.backtest_html(result, f"coincast · {coin} backtest"), paths["figures"])


def summary_table(report: Mapping[str, Any]) -> pd.DataFrame:
    """Models x horizons: rel_mae (vs naive on the same origins), coverage, width, rel_interval_score_80 and
    rel_crps (vs the naive-empirical baseline), n, and the interval scaling serving uses."""
    rows = []
    for name, m in report["models"].items():
        for h, s in m["horizons"].items():
            rows.append({"model": name, "horizon_h": int(h), **{k: s.get(k) for k in
                         ("rel_mae", "mae", "mase", "directional_accuracy", "coverage_80", "coverage_95",
                          "width_80", "rel_interval_score_80", "rel_crps", "n")},
                         "interval_scaling": (m.get("interval_scaling") or {}).get(h)})
    return pd.DataFrame(rows).sort_values(["horizon_h", "rel_mae"]).set_index(["horizon_h", "model"])


def git_commit(root: str | Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def flat_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """``<model>.h<h>.<metric>`` for every number of the backtest, the naive-empirical baseline's
    (``naive_empirical.h<h>.crps``, ...) included."""
    out = {}
    baseline = {"naive_empirical": report["naive_empirical"]} if "naive_empirical" in report else {}
    for name, m in {**report["models"], **baseline}.items():
        for h, s in m["horizons"].items():
            for k, v in s.items():
                if isinstance(v, (int, float)) and v is not None:
                    out[f"{name}.h{h}.{k}"] = float(v)
    return out


def register_champion(
    coin: str,
    y: pd.Series,
    result: BacktestResult,
    report: Mapping[str, Any],
    project_root: str | Path,
    params: Mapping[str, Any],
    artifacts: Sequence[str | Path],
    promotion_p_value: float,
    exog: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Log the build as an MLflow run, register the best model (challenger) and apply the promotion gate (its
    Diebold–Mariano tests on the backtest's 1 h errors by origin, at level ``promotion_p_value``)."""
    from coincast import registry

    registry.configure(Path(project_root))
    tags = {
        "coin": coin,
        "source": str(report.get("source")),
        "data_through": report["data_through"],
        "first_scored_origin": report["first_scored_origin"],
        "git_commit": git_commit(project_root) or "unknown",
        "data_version": report.get("data_version"),
    }
    challenger = registry.pick_challenger(report["models"])
    served = {name: served_model(y, result, name, exog) for name in {challenger, NAIVE}}
    with registry.write_lock():  # the run, the version and its aliases are written by one process at a time
        run_id = registry.log_build(coin, dict(params), flat_metrics(report), [Path(a) for a in artifacts], tags)
        return registry.promote(coin, run_id, dict(report), served, errors_by_origin(result.forecasts, 1),
                                promotion_p_value)

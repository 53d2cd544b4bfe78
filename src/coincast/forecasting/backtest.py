"""Walk-forward backtest: rolling hourly origins, no information after an origin, every number relative
to the naive forecast on the same origins, intervals calibrated out of sample.

Origins are the last ``backtest_days`` × 24 hours before the end of the series (scored), preceded by
``calibration_days`` of warm-up origins whose errors only feed the interval calibration. At each origin a
model sees the series up to and including that hour; it is refitted every ``refit_every_hours`` origins
(warm-started) and predicts at every origin from the latest price. Models run in ``n_jobs`` processes.
``exog`` (the cross-coin columns of features.parquet) is cut at each origin like the prices; the models that read
extra features get its columns named in their settings (:func:`~coincast.forecasting.models.with_exog`).
"""
from __future__ import annotations

import logging
import math
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from coincast import metrics
from coincast.forecasting.calibration import (
    LEVELS, calibrate, empirical_intervals, interval_columns, latest_calibration, level_key, probabilistic_scores,
    scale_column,
)
from coincast.forecasting.models import MIN_HISTORY_HOURS, history_needed, make_model, with_exog
from coincast.processes import die_with_parent, pool_context
from coincast.forecasting.serving import ServedForecaster
from coincast.forecasting.volatility import DEFAULT_SCALINGS, check_scalings, scales
from coincast.timeseries import HOUR, on_hourly_grid

logger = logging.getLogger(__name__)
NAIVE = "naive"


@dataclass(frozen=True)
class BacktestSettings:
    backtest_days: float = 30
    calibration_days: float = 7
    horizons: tuple[int, ...] = (1, 24)
    refit_every_hours: int = 24
    n_jobs: int = 2
    calibration_window_days: float = 30
    min_calibration: int = 48
    scalings: tuple[str, ...] = DEFAULT_SCALINGS  # interval scaling candidates, chosen per model and horizon
    scaling_p_value: float = 0.05  # a scaling replaces "unscaled" only with a Diebold-Mariano p-value below this
    adapt_rate: float = 0.01  # adaptive conformal inference: the level's step per known miss/hit (0: nominal level)
    adapt_horizons: tuple[int, ...] = (1,)  # the horizons whose levels adapt (others keep the nominal level)


def calibration_settings(settings: BacktestSettings) -> dict[str, Any]:
    """The keyword arguments :func:`~coincast.forecasting.calibration.calibrate` and ``latest_calibration`` take
    from the backtest's settings (the backtest's calibration, each model's chosen scaling, the served quantiles)."""
    return {"window_hours": int(settings.calibration_window_days * 24), "min_scores": settings.min_calibration,
            "scalings": settings.scalings, "p_value": settings.scaling_p_value, "every": settings.refit_every_hours,
            "adapt_rate": settings.adapt_rate, "adapt_horizons": settings.adapt_horizons}


@dataclass
class BacktestResult:
    forecasts: pd.DataFrame  # one row per model, origin, horizon: forecast, actual, intervals
    summary: dict[str, Any]
    settings: BacktestSettings
    elapsed: float = 0.0
    fit_seconds: dict[str, float] = field(default_factory=dict)


def plan_origins(y: pd.Series, s: BacktestSettings,
                 min_history: int = MIN_HISTORY_HOURS) -> tuple[pd.DatetimeIndex, pd.Timestamp]:
    """(all origins, first scored origin). The last origin is the hour before the series ends; the first has
    at least ``min_history`` hours (:func:`~coincast.forecasting.models.history_needed`) behind it."""
    end = y.index[-1]
    need = max(MIN_HISTORY_HOURS, min_history) * HOUR
    scored = int(round(s.backtest_days * 24))
    warm = int(round(s.calibration_days * 24))
    first_scored = end - scored * HOUR
    origins = pd.date_range(first_scored - warm * HOUR, end - HOUR, freq="h")
    origins = origins[origins >= y.index[0] + need]
    if len(origins) == 0 or first_scored < y.index[0] + need:
        raise ValueError(
            f"series of {len(y)} hours is too short for backtest_days={s.backtest_days} "
            f"(+ calibration_days={s.calibration_days} + {int(need / HOUR)} hours of history)"
        )
    return origins, first_scored


def _chunks(n_origins: int, refit_every: int, parts: int) -> list[tuple[int, int]]:
    """Split origin positions [0, n) into ``parts`` contiguous runs that start on refit points."""
    blocks = list(range(0, n_origins, refit_every))
    per = max(1, math.ceil(len(blocks) / parts))
    starts = blocks[::per]
    return [(a, starts[i + 1] if i + 1 < len(starts) else n_origins) for i, a in enumerate(starts)]


def _forecast_chunk(args: tuple) -> tuple[str, list[tuple], float]:
    """Worker: one model over a contiguous run of origins; refits on the cadence, warm-started."""
    spec, y, origins, first_pos, refit_every, horizons, exog = args
    model = make_model(spec)
    positions = y.index.get_indexer(origins)
    rows, fit_seconds = [], 0.0
    for k, (origin, pos) in enumerate(zip(origins, positions)):
        history = y.iloc[: pos + 1]  # everything up to and including the origin, nothing after
        extra = None if exog is None else exog.iloc[: pos + 1]  # the same cut (exog is on y's hours)
        if k == 0 or (first_pos + k) % refit_every == 0:
            t0 = time.perf_counter()
            model.fit(history, extra)
            fit_seconds += time.perf_counter() - t0
        preds = model.predict(history, horizons, extra)
        rows.extend((origin, h, p) for h, p in zip(horizons, preds))
    return model.name, rows, fit_seconds


def run_forecasts(
    y: pd.Series, specs: Sequence[Mapping[str, Any]], origins: pd.DatetimeIndex, horizons: Sequence[int],
    refit_every: int = 24, n_jobs: int = 2, exog: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Point forecasts of every model at every origin: columns model, origin, horizon, forecast. ``exog``, when
    given, is indexed by the hours of ``y``."""
    if exog is not None and not exog.index.equals(y.index):
        raise ValueError("exog must be indexed by the hours of the price series")
    tasks = []
    for spec in specs:
        heavy = str(spec.get("kind", "")).startswith("prophet")
        parts = n_jobs if heavy else 1
        for a, b in _chunks(len(origins), refit_every, parts):
            tasks.append((dict(spec), y, origins[a:b], a, refit_every, tuple(horizons), exog))
    tasks.sort(key=lambda t: not str(t[0].get("kind", "")).startswith("prophet"))  # heavy first
    if n_jobs > 1 and len(tasks) > 1:
        ctx = pool_context(preload=("coincast.forecasting.backtest",))  # a Jupyter kernel has threads: no plain fork there
        with ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx, initializer=die_with_parent) as pool:
            results = list(pool.map(_forecast_chunk, tasks))
    else:
        results = [_forecast_chunk(t) for t in tasks]
    frames, fit_seconds = [], {}
    for name, rows, secs in results:
        frames.append(pd.DataFrame(rows, columns=["origin", "horizon", "forecast"]).assign(model=name))
        fit_seconds[name] = fit_seconds.get(name, 0.0) + secs
    out = pd.concat(frames, ignore_index=True)
    return out[["model", "origin", "horizon", "forecast"]], fit_seconds


def interval_numbers(g: pd.DataFrame) -> dict[str, Any]:
    """n_calibrated, coverage and mean width per level of rows ``g`` (actual, lower_*/upper_*)."""
    a = g["actual"].to_numpy()
    calibrated = g[f"lower_{level_key(LEVELS[0])}"].notna() & g["actual"].notna()
    out: dict[str, Any] = {"n_calibrated": int(calibrated.sum())}
    for lv, (lo, hi) in interval_columns(g).items():
        out[f"coverage_{level_key(lv)}"] = metrics.coverage(a, lo, hi)
        out[f"width_{level_key(lv)}"] = metrics.mean_width(lo, hi)
    return out


def baseline_scores(g: pd.DataFrame) -> dict[str, Any]:
    """The naive-empirical baseline's own numbers on its scored rows ``g`` (origin, actual, forecast,
    lower_*/upper_*): coverage, width, interval scores and CRPS; its rel_* against itself are 1."""
    return _json_numbers({**interval_numbers(g), **probabilistic_scores(g, g.set_index("origin"))})


def _json_numbers(out: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def _score(g: pd.DataFrame, naive: pd.Series, mase_scale: float, base: pd.DataFrame) -> dict[str, Any]:
    a, f = g["actual"].to_numpy(), g["forecast"].to_numpy()
    out: dict[str, Any] = {
        "n": int(np.isfinite(a).sum()),
        "mae": metrics.mae(a, f),
        "rmse": metrics.rmse(a, f),
        "mape": metrics.mape(a, f),
        "mase": metrics.mase(a, f, mase_scale),
        "rel_mae": metrics.rel_mae(a, f, naive.reindex(g["origin"]).to_numpy()),
        "directional_accuracy": metrics.directional_accuracy(a, f, g["last"].to_numpy()),
        "directional_p_value": metrics.directional_p_value(a, f, g["last"].to_numpy()),
    }
    out.update(interval_numbers(g))
    out.update(probabilistic_scores(g, base))
    return _json_numbers(out)


def backtest(
    y: pd.Series, specs: Sequence[Mapping[str, Any]], settings: BacktestSettings = BacktestSettings(),
    exog: pd.DataFrame | None = None,
) -> BacktestResult:
    """Backtest every model in ``specs`` (naive is added if missing) on the hourly price series ``y`` (a missing
    hour, NaN or absent, is never scored: pass :func:`coincast.timeseries.observed_series`, not a filled series;
    the models see the last known price); the models
    that read extra features read every column of ``exog`` (indexed by hour; None: no extra features)."""
    started = time.perf_counter()
    check_scalings(settings.scalings)
    specs = [with_exog(s, [] if exog is None else list(exog.columns)) for s in specs]
    if not any(make_model(s).name == NAIVE for s in specs):
        specs.insert(0, {"kind": NAIVE})
    names = [make_model(s).name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"models must differ in kind or settings (a name is kind + settings hash), got {names}")
    observed = on_hourly_grid(y, fill=False)  # missing hours stay NaN here: they are never scored as outcomes
    y = observed.ffill()  # what the models see: the last known price
    exog = None if exog is None else exog.reindex(y.index)
    origins, first_scored = plan_origins(y, settings, history_needed(specs))
    fc, fit_seconds = run_forecasts(y, specs, origins, settings.horizons, settings.refit_every_hours, settings.n_jobs,
                                    exog)

    fc["target_time"] = fc["origin"] + fc["horizon"] * HOUR
    fc["actual"] = observed.reindex(fc["target_time"]).to_numpy()
    fc["last"] = y.reindex(fc["origin"]).to_numpy()
    t0 = time.perf_counter()
    fc = fc.merge(scale_table(y, origins, settings.horizons, settings.scalings, settings.refit_every_hours),
                  on=["origin", "horizon"])
    window = int(settings.calibration_window_days * 24)
    fc = pd.concat([calibrate(g, LEVELS, **calibration_settings(settings)) for _, g in fc.groupby("model", sort=False)],
                   ignore_index=True)
    calibration_seconds = time.perf_counter() - t0
    fc["scored"] = fc["origin"] >= first_scored
    # the naive-empirical baseline of the probabilistic scores: naive ± its own past errors (known at the origin)
    empirical = empirical_intervals(fc.loc[fc["model"] == NAIVE], LEVELS, window, settings.min_calibration)
    empirical = empirical.loc[empirical["origin"] >= first_scored].merge(
        fc.loc[fc["model"] == NAIVE, ["origin", "horizon", "actual"]], on=["origin", "horizon"])

    scored = fc.loc[fc["scored"]]
    train = y.loc[:first_scored]
    models: dict[str, Any] = {}
    for spec, name in zip(specs, names):
        models[name] = {"spec": make_model(spec).spec, "fit_seconds": round(fit_seconds.get(name, 0.0), 3), "horizons": {}}
        _, chosen = latest_calibration(fc.loc[fc["model"] == name], LEVELS, **calibration_settings(settings))
        models[name]["interval_scaling"] = {str(h): c for h, c in chosen.items()}
    baseline: dict[str, Any] = {}  # the naive-empirical baseline's own scores, per horizon
    for h in settings.horizons:
        naive = scored.loc[(scored["model"] == NAIVE) & (scored["horizon"] == h)].set_index("origin")["forecast"]
        mase_scale = metrics.mase_scale(train, h)
        base = empirical.loc[empirical["horizon"] == h]
        baseline[str(h)] = baseline_scores(base)
        for name in names:
            g = scored.loc[(scored["model"] == name) & (scored["horizon"] == h)]
            models[name]["horizons"][str(h)] = {**_score(g, naive, mase_scale, base.set_index("origin")),
                                                "scaling_share": scaling_share(g)}
    elapsed = time.perf_counter() - started
    summary = {
        "data_through": y.index[-1].isoformat(),
        "first_origin": origins[0].isoformat(),
        "first_scored_origin": first_scored.isoformat(),
        "last_origin": origins[-1].isoformat(),
        "scored_origins": int((origins >= first_scored).sum()),
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(settings).items()},
        "elapsed_seconds": round(elapsed, 2),
        "calibration_seconds": round(calibration_seconds, 2),
        "interval_scaling": {name: models[name]["interval_scaling"] for name in names},
        "models": models,
        "naive_empirical": {"horizons": baseline},
        "best_1h": best_model(models, 1),
    }
    logger.info("backtest: %d models x %d origins in %.1f s", len(names), len(origins), elapsed)
    return BacktestResult(fc, summary, settings, elapsed, fit_seconds)


def scale_table(y: pd.Series, origins: pd.DatetimeIndex, horizons: Sequence[int],
                names: Sequence[str], refit_every: int = 24) -> pd.DataFrame:
    """origin, horizon and one ``scale_<name>`` column per scaling (:func:`coincast.forecasting.volatility.scales`;
    the fitted ones refitted every ``refit_every`` origins, with the models)."""
    table = scales(y, origins, horizons, names, refit_every)
    return pd.concat([pd.DataFrame({"origin": origins, "horizon": int(h),
                                    **{scale_column(n): table[n][h] for n in names}}) for h in horizons],
                     ignore_index=True)


def scaling_share(g: pd.DataFrame) -> dict[str, float]:
    """The share of rows ``g`` (scored, with an interval) that used each scaling, largest first."""
    used = g.loc[g[f"lower_{level_key(LEVELS[0])}"].notna(), "scaling"].value_counts(normalize=True)
    return {str(k): round(float(v), 3) for k, v in used.items()}


def best_model(models: Mapping[str, Any], horizon: int = 1) -> str:
    """The model with the lowest rel_mae at ``horizon``. Ties go to naive (nothing beat it), then to the lower
    24 h rel_mae, then to the name. The registry's challenger is this model."""
    def rel(name: str, h: int) -> float:
        v = models[name]["horizons"].get(str(h), {}).get("rel_mae")
        return v if v is not None and math.isfinite(v) else math.inf

    if all(rel(n, horizon) == math.inf for n in models):
        raise ValueError(f"no model in the backtest has a finite {horizon} h rel_mae")
    return min(models, key=lambda n: (rel(n, horizon), 0 if n == NAIVE else 1, rel(n, 24), n))


def errors_by_origin(forecasts: pd.DataFrame, horizon: int = 1) -> pd.DataFrame:
    """The absolute errors of a backtest's scored forecasts at ``horizon`` (``BacktestResult.forecasts``): one row
    per origin with an actual, one column per model, so every model's error is on the same origins (what the
    promotion gate's Diebold–Mariano tests pair)."""
    g = metrics.scored_errors(forecasts, horizon)
    return g.pivot(index="origin", columns="model", values="abs_error").sort_index()


def served_model(y: pd.Series, result: BacktestResult, name: str,
                 exog: pd.DataFrame | None = None) -> ServedForecaster:
    """Refit ``name`` on the whole series (and the extra features ``exog`` it was backtested with) and attach the
    latest out-of-sample calibration quantiles."""
    spec = result.summary["models"][name]["spec"]
    y = on_hourly_grid(y)
    model = make_model(spec).fit(y, None if exog is None else exog.reindex(y.index))
    fc = result.forecasts.loc[result.forecasts["model"] == name]
    quantiles, chosen = latest_calibration(fc, LEVELS, **calibration_settings(result.settings))
    return ServedForecaster(model, quantiles, chosen,
                            {"data_through": result.summary["data_through"], "spec": spec, "history_hours": len(y)})

"""The plain-script limit: the pipeline's computation for one coin as one ordinary Python process.

No Ploomber, no notebooks, no papermill: the cells of notebooks/01..07 and the publish task concatenated, calling
the same `coincast` functions with the same parameters and writing the same data files (executed notebooks aside)
under ``--products``. `bench/speed.py` times this against `coincast build` / `coincast hourly` on the same
data to report how far the notebook pipeline is from the limit.

    python bench/plain.py --project P --products P/plain --now 2025-06-01T13:05Z [--env env.cron.yaml ...]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def run(env: dict, coin: str, out: Path) -> dict[str, float]:
    """One coin, every stage; returns seconds per stage."""
    from coincast import files, registry
    from coincast.operations import live, publish, training
    from coincast.forecasting.backtest import backtest
    from coincast.data.extract import extract
    from coincast.data.features import transform_data
    from coincast.forecasting.forecast import make_forecast
    from coincast.data.profiling import profile_due, write_profile
    from coincast.timeseries import hourly_series, observed_series
    from coincast.data.gate import judge, record_pass
    from coincast.data.validation import enforce
    from coincast.settings import group

    out.mkdir(parents=True, exist_ok=True)
    p = {name: out / name for name in ("raw.parquet", "quarantine.parquet", "extract.json", "validation.json", "features.parquet",
                                       "profile.html", "profile.json", "backtest.json", "backtest_forecasts.parquet",
                                       "backtest.html", "registry.json", "forecast.parquet", "live.json",
                                       "predictions.parquet")}
    seconds: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        seconds[name] = now - t
        t = now

    result = extract(coin, env["days"], env["source"], vs_currency=env["vs_currency"],
                     replay_file=env["replay_file"], replay_now=env["replay_now"],
                     history_dir=env["history_dir"], seed=env["seed"], fetch_retries=env["fetch_retries"],
                     fetch_max_wait_seconds=env["fetch_max_wait_seconds"])
    meta = result.summary()
    files.write_parquet_atomic(result.data, p["raw.parquet"])
    files.write_parquet_atomic(result.quarantined, p["quarantine.parquet"])
    files.write_json_atomic(meta, p["extract.json"])
    raw = result.data
    lap("extract")

    report = publish.stamp(judge(raw, result.quarantined, meta, **group(env, "limits")), meta)
    files.write_json_atomic(report, p["validation.json"])
    record_pass(report, raw, meta)
    enforce(report)
    lap("validate")

    features = transform_data(raw, **group(env, "feature_spec"))
    files.write_parquet_atomic(features, p["features.parquet"])
    lap("features")

    y = hourly_series(features)  # the train task reads features.parquet: the same series as the raw frame's
    settings = training.backtest_settings(**group(env, "backtest"))
    log_path = live.log_path(env["predictions_dir"], meta)
    train_products = {k: p[k] for k in ("backtest.json", "backtest_forecasts.parquet", "backtest.html",
                                        "registry.json")}
    decision = training.decide_retrain(meta, y, live.read_log(log_path), train_products, env["project_root"],
                                       group(env, "schedule"))
    if decision["due"]:
        observed = observed_series(features)  # as the train task: a missing hour is never scored
        bt = backtest(observed, env["models"], settings)
        report = training.backtest_report(bt, meta)
        training.save_backtest(bt, report, {"backtest": p["backtest.json"], "forecasts": p["backtest_forecasts.parquet"],
                                            "figures": p["backtest.html"]}, coin)
        promotion = training.register_champion(
            coin, observed, bt, report, env["project_root"],
            params={"models": env["models"], **report["settings"], "coin": coin, "source": meta["source"]},
            artifacts=[p["backtest.json"], p["backtest.html"], p["validation.json"]],
            promotion_p_value=env["promotion_p_value"])
        files.write_json_atomic({**promotion, "trained": decision}, p["registry.json"])
    lap("train")

    product = {"report": p["profile.html"], "meta": p["profile.json"]}
    write_profile(profile_due(product, meta["now"], env["profile_every_hours"], env["profile_enabled"]),
                  p["features.parquet"], meta, product, env["profile_minimal"])
    lap("profile")

    registry.configure(env["project_root"])
    served, version = registry.load_champion(coin)
    forecast = make_forecast(served, {**version, "coin": coin}, raw, hours=env["forecast_hours"],
                             generated_at=meta["now"])
    files.write_parquet_atomic(publish.stamp(forecast, meta), p["forecast.parquet"])
    lap("forecast")

    served, version = registry.load_champion(coin)
    with live.log_lock(log_path):
        log, summary = live.update_log(live.read_log(log_path), served, version, raw, coin=coin,
                                       horizons=env["log_horizons"], data_version=meta.get("data_version"),
                                       now=meta["now"], max_catchup_hours=env["max_catchup_hours"],
                                       in_force_at=registry.in_force_at(coin, version))
        live.write_log(log, log_path)
    metrics = live.live_metrics(log, y, meta["now"], env["log_horizons"], env["live_window_hours"],
                                env["min_scored_rows"], env["calibration_window_days"])
    registry.log_live(coin, live.flat_live_metrics(metrics), meta["now"],
                      {"model_version": version["version"], "data_version": meta.get("data_version")},
                      series=registry.series_label(meta))
    files.write_json_atomic(publish.stamp({**metrics, "tick": summary}, meta), p["live.json"])
    files.write_parquet_atomic(log, p["predictions.parquet"])
    lap("monitor")

    publish.publish_files(out, [path for path in p.values() if path.exists()])
    lap("publish")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", required=True, type=Path)
    parser.add_argument("--products", required=True, type=Path, help="where this script writes its data files")
    parser.add_argument("--env", action="append", default=[], help="variant files (as coincast --env)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--now", help="the clock (replay_now)")
    args = parser.parse_args(argv)
    from coincast.config import parse_value, resolve_root
    from coincast.settings import load_env
    from coincast.patches import PIPELINE_MODULES, preload

    preload(PIPELINE_MODULES)  # as coincast's builds do (collector off while importing, then frozen): a fair limit
    project = args.project.resolve()
    overrides = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    if args.now:
        overrides["replay_now"] = args.now
    env = resolve_root(load_env(project / "env.yaml", [project / e for e in args.env], overrides), project)
    total = {}
    for coin in env["coins"]:
        total[coin] = run(env, coin, args.products / coin)
    for coin, seconds in total.items():
        print(coin, " ".join(f"{k}={v:.2f}" for k, v in seconds.items()))
    return 0


if __name__ == "__main__":
    code = main()
    import gc

    gc.freeze()  # as the coincast command does: no full collection of the heap at exit (a fair limit)
    sys.exit(code)

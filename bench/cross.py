"""Feature-based models with and without the cross-coin features, on the real series in ../shared/data.

    .venv/bin/python bench/cross.py                    # BTC, ETH, LTC; the last 2 windows of 30 days
    .venv/bin/python bench/cross.py --tiny --out DIR   # 1 series, 1 window of 1 day (1 day of warm-up): it runs

For each series and window, one walk-forward backtest (env.yaml's calibration and refit settings, 90 days of
history before the window's end) of naive, LightGBM and Prophet with regressors, each without the cross-coin
features and with them (the other two series' lagged log returns: what ``cross_coins`` adds to features.parquet).
Reports rel_mae at 1 h and 24 h (in-sample to the window: no selection is made here) and the cost per fit.
Writes cross.json and cross.md to --out.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from accuracy import DEFAULT_DATA, ROOT, SERIES, fmt, machine
from coincast.data.features import cross_coin_features
from coincast.data.sources.replay import load_replay_file
from coincast.forecasting.backtest import BacktestSettings, backtest
from coincast.forecasting.models import make_model, with_exog
from coincast.timeseries import hourly_series

KINDS = ("lightgbm", "prophet_regressors")


def specs(columns: list[str]) -> list[dict]:
    """naive, then each feature-based kind without the cross-coin columns and with them."""
    return [{"kind": "naive"}, *({"kind": k, "exog": []} for k in KINDS), *(with_exog({"kind": k}, columns) for k in KINDS)]


def run(args: argparse.Namespace) -> dict:
    env = yaml.safe_load((ROOT / "env.yaml").read_text())
    calibration_days = 1 if args.tiny else env["calibration_days"]  # --tiny: 2 days of origins, 2 refits
    settings = BacktestSettings(backtest_days=args.window_days, calibration_days=calibration_days,
                                calibration_window_days=env["calibration_window_days"], horizons=(1, 24),
                                refit_every_hours=env["refit_every_hours"], n_jobs=args.jobs)
    prices = {}
    for name in SERIES:
        path = Path(args.data_dir) / f"{name}_1h_2020-10_2024-06.csv"
        if not path.exists():
            sys.exit(f"bench/cross.py: {path} not found (../shared/data is needed for this benchmark)")
        prices[name] = hourly_series(load_replay_file(path))
    out = {"machine": machine(), "settings": {**vars(args), "data_dir": "../shared/data", "out": None}, "rows": []}
    inputs = {}
    for name in args.series:
        exog = cross_coin_features({k: v for k, v in prices.items() if k != name}, prices[name].index, env["lags"])
        inputs[name] = (exog, specs(list(exog.columns)))
    for k in range(args.windows):  # the newest window first (of every series), then the one before it, ...
        for name in args.series:
            y, (exog, models) = prices[name], inputs[name]
            end = y.index[-1] - pd.Timedelta(days=k * args.window_days)
            hist = y.loc[:end].iloc[-(args.history_days * 24 + 1):]
            t0 = time.perf_counter()
            bt = backtest(hist, models, settings, exog)
            seconds = time.perf_counter() - t0
            refits = -(-int(bt.summary["scored_origins"] + settings.calibration_days * 24) // settings.refit_every_hours)
            for spec in models:
                model = make_model(spec).name
                m = bt.summary["models"][model]
                row = {"series": name, "window_end": end.isoformat(), "kind": spec["kind"],
                       "cross": "on" if spec.get("exog") else "off", "model": model,
                       "rel_mae_1h": m["horizons"]["1"]["rel_mae"], "rel_mae_24h": m["horizons"]["24"]["rel_mae"],
                       "fit_seconds": m["fit_seconds"], "seconds_per_fit": round(m["fit_seconds"] / refits, 3),
                       "backtest_seconds": round(seconds, 1)}
                out["rows"].append(row)
                print(json.dumps(row), flush=True)
    return out


def markdown(res: dict) -> str:
    lines = [f"# Cross-coin features and Prophet with regressors ({res['machine']['date']})", "",
             f"Machine: {res['machine']['cpu']}, {res['machine']['cores']} cores (shared with other work: timings "
             "are indicative). rel_mae < 1 beats naive on the same origins.", "",
             "| series | window end | kind | cross-coin | rel_mae 1 h | rel_mae 24 h | s per fit |",
             "|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        if r["kind"] == "naive":
            continue
        lines.append(f"| {r['series']} | {r['window_end'][:10]} | {r['kind']} | {r['cross']} | {fmt(r['rel_mae_1h'], 4)} "
                     f"| {fmt(r['rel_mae_24h'], 4)} | {fmt(r['seconds_per_fit'], 2)} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(DEFAULT_DATA))
    p.add_argument("--series", default=",".join(SERIES))
    p.add_argument("--windows", type=int, default=2)
    p.add_argument("--window-days", type=float, default=30)
    p.add_argument("--history-days", type=int, default=90)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--tiny", action="store_true", help="1 series, 1 window of 1 day: proves the script runs")
    args = p.parse_args(argv)
    args.series = args.series.split(",")
    if args.tiny:
        args.series, args.windows, args.window_days, args.history_days = args.series[:1], 1, 1, 40
    res = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cross.json").write_text(json.dumps(res, indent=2))
    (out / "cross.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Accuracy benchmark: walk-forward backtests of every model on the real series in ../shared/data, over
consecutive windows, with honest model selection (the champion chosen on one window is scored on the next).

    .venv/bin/python bench/accuracy.py                  # make bench-accuracy: BTC, ETH, LTC, 6 windows, every model
    .venv/bin/python bench/accuracy.py --tiny --out DIR # a small run that proves the script works (1 day windows)

Writes accuracy.json and accuracy.md (machine and date included) to --out.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from coincast.forecasting.backtest import NAIVE, BacktestSettings, backtest, best_model, errors_by_origin
from coincast.forecasting.models import make_model
from coincast.forecasting.models import KINDS
from coincast.timeseries import observed_series
from coincast.data.sources.replay import load_replay_file

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
SERIES = ["BTCUSDT", "ETHUSDT", "LTCUSDT"]
#: what the out-of-sample table reports per horizon: the point score, the probabilistic scores relative to the
#: naive-empirical baseline (naive with unscaled split-conformal intervals) and the coverage
SCORED = ("rel_mae", "rel_interval_score_80", "rel_interval_score_95", "rel_crps", "coverage_80", "coverage_95")


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu,
            "cores": os.cpu_count(), "date": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")}


def select_and_score(windows: list[dict], errors: list[pd.DataFrame], level: float) -> list[dict]:
    """Walk the windows in order applying the promotion gate (``errors``: each window's 1 h errors by origin, for
    its Diebold–Mariano tests at ``level``); each window is scored with the champion chosen *before* it (on the
    earlier windows), never with one chosen on itself."""
    from coincast.registry import candidates, decide, noise_tests

    champion, rows = None, []
    for i, w in enumerate(windows):
        models = w["models"]
        if i > 0:
            name = champion or NAIVE
            m = models[name]["horizons"]
            rows.append({
                "window_end": w["end"], "champion": name, "chosen_on": windows[i - 1]["end"],
                **{f"{k}_{h}h": m[str(h)].get(k) for h in (1, 24) for k in SCORED},
                **{f"scaling_share_{h}h": m[str(h)].get("scaling_share") for h in (1, 24)},
                "in_sample_best": best_model(models, 1),
                "in_sample_best_rel_mae_1h": models[best_model(models, 1)]["horizons"]["1"]["rel_mae"],
            })
        challenger = best_model(models, 1)
        champion_rel = models[champion]["horizons"]["1"]["rel_mae"] if champion in models else None
        tests = noise_tests(errors[i], challenger, champion if champion_rel is not None else None)
        d = decide(challenger, models[challenger]["horizons"]["1"]["rel_mae"], champion, champion_rel,
                   tests.vs_naive, tests.vs_champion, level, candidates(models), tests.champion_vs_naive)
        champion = d.champion_model
    return rows


def exact_interval_odds(origins: int, horizon: int, trials: int = 2000, seed: int = 0) -> dict[str, float]:
    """How often an *exact* interval (i.i.d. Gaussian hourly returns, the true 80 % and 95 % quantiles of the h-hour
    move) covers within ±3 points of nominal over ``origins`` consecutive hourly origins: the sampling noise of
    coverage itself, which overlapping h-hour moves make large at 24 h. The ceiling any calibration can be held to."""
    from scipy.stats import norm

    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(0, 1, (trials, origins + horizon)), axis=1)
    move = np.abs(walk[:, horizon:] - walk[:, :-horizon]) / np.sqrt(horizon)  # origins x trials h-hour moves
    within = {lv: np.abs((move <= norm.ppf(0.5 + lv / 2)).mean(axis=1) - lv) <= 0.03 for lv in (0.8, 0.95)}
    return {"within_80": float(within[0.8].mean()), "within_95": float(within[0.95].mean()),
            "within_both": float((within[0.8] & within[0.95]).mean())}


def every_model(defaults: list[dict]) -> list[dict]:
    """env.yaml's models plus every opt-in kind (not in the defaults) with its default settings: the benchmark
    covers every model coincast has, so an opt-in one is measured before anyone makes it a default."""
    listed = {m["kind"] for m in defaults}
    return [*defaults, *({"kind": kind} for kind in KINDS if kind not in listed)]


def run(args: argparse.Namespace) -> dict:
    env = yaml.safe_load((ROOT / "env.yaml").read_text())
    calibration_days = env["calibration_days"] if args.calibration_days is None else args.calibration_days
    settings = BacktestSettings(backtest_days=args.window_days, calibration_days=calibration_days,
                                calibration_window_days=env["calibration_window_days"],
                                horizons=(1, 24), refit_every_hours=env["refit_every_hours"], n_jobs=args.jobs,
                                scalings=tuple(args.scalings.split(",") if args.scalings else env["interval_scalings"]),
                                scaling_p_value=env["scaling_p_value"],
                                adapt_rate=env["interval_adapt_rate"] if args.adapt_rate is None else args.adapt_rate,
                                adapt_horizons=tuple(env["interval_adapt_horizons"]))
    def rel(path: str) -> str:  # record paths relative to the project, never this machine's layout
        return os.path.relpath(Path(path).resolve(), ROOT)

    models = every_model(env["models"])
    if args.kinds:  # a quick run of some models only (naive is always there: the yardstick)
        models = [m for m in models if m["kind"] in args.kinds.split(",") or m["kind"] == NAIVE]
    result = {"machine": machine(), "settings": {**vars(args), "calibration_days": calibration_days,
                                                 "data_dir": rel(args.data_dir), "out": rel(args.out)},
              "interval_scalings": list(settings.scalings), "scaling_p_value": settings.scaling_p_value,
              "interval_adapt_rate": settings.adapt_rate, "interval_adapt_horizons": list(settings.adapt_horizons),
              "models": models,
              "exact_interval_odds": {str(h): exact_interval_odds(int(round(args.window_days * 24)), h)
                                      for h in (1, 24)},
              "series": {}}
    for name in args.series:
        path = Path(args.data_dir) / f"{name}_1h_2020-10_2024-06.csv"
        if not path.exists():
            sys.exit(f"bench-accuracy: {path} not found (../shared/data is needed for this benchmark)")
        y = observed_series(load_replay_file(path))  # a missing hour stays NaN: never scored
        windows, errors = [], []
        for k in range(args.windows, -1, -1):  # oldest first; window k ends k * window_days before the data's end
            end = y.index[-1] - pd.Timedelta(days=k * args.window_days)
            hist = y.loc[:end].iloc[-(args.history_days * 24 + 1):]
            t0 = time.perf_counter()
            bt = backtest(hist, models, settings)
            windows.append({"end": end.isoformat(), "seconds": round(time.perf_counter() - t0, 1),
                            "models": bt.summary["models"]})
            errors.append(errors_by_origin(bt.forecasts, 1))
            print(f"{name} window ending {end:%Y-%m-%d %H:%M}: best {bt.summary['best_1h']} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        result["series"][name] = {"windows": windows, "out_of_sample": select_and_score(windows, errors, env["promotion_p_value"])}
    return result


def fmt(x, digits=3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def shares(share: dict | None) -> str:
    return "–" if not share else ", ".join(f"{k} {v:.0%}" for k, v in share.items())


COVERAGE_KEYS = ("coverage_80_1h", "coverage_95_1h", "coverage_80_24h", "coverage_95_24h")


def pooled_coverage(res: dict) -> list[str]:
    """The champions' coverage over all the scored windows together (the long-run coverage a user of the intervals
    sees), per series and over every series: the windows hold the same number of hourly origins, so the mean of
    the windows' coverages is the coverage of their union. Markdown lines."""
    rows = {s: [r for r in data["out_of_sample"] if all(r.get(k) is not None for k in COVERAGE_KEYS)]
            for s, data in res["series"].items()}
    every = [r for rs in rows.values() for r in rs]
    if not every:
        return []
    lines = ["", "## Coverage pooled over the windows (the champion's intervals, every scored origin together)", "",
             "| series | windows | cov80 1h | cov95 1h | cov80 24h | cov95 24h |", "|---|---|---|---|---|---|"]
    for name, rs in [*rows.items(), ("all", every)]:
        if rs:
            lines.append(f"| {name} | {len(rs)} | "
                         + " | ".join(fmt(sum(r[k] for r in rs) / len(rs)) for k in COVERAGE_KEYS) + " |")
    return lines


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [
        "# coincast accuracy benchmark",
        "",
        f"Run {m['date']} on {m['cpu']} ({m['cores']} cores), Python {m['python']}. "
        f"Windows of {res['settings']['window_days']} days of hourly origins"
        + (f" after {res['settings']['calibration_days']} days of warm-up origins that only calibrate the intervals"
           if res["settings"].get("calibration_days") is not None else "")
        + f", {res['settings']['history_days']} days "
        "of history each; every rel_mae is MAE / naive MAE on the same origins (< 1 beats naive).",
        "",
        f"Models: {', '.join(make_model(mm).name for mm in res['models'])}"
        + (f" (only the kinds {res['settings']['kinds']}: --kinds)" if res["settings"].get("kinds") else "")
        + f". Interval scalings: {', '.join(res.get('interval_scalings') or ['rv24'])}, "
        f"scaling_p_value {res.get('scaling_p_value', '–')}"
        + (f", interval_adapt_rate {res['interval_adapt_rate']} at horizons {res.get('interval_adapt_horizons', [])} "
           "(adaptive conformal levels)" if "interval_adapt_rate" in res else "") + ".",
        "",
        "## Out of sample: the champion chosen on the previous window, scored on this one",
        "",
        "rel_is = interval (Winkler) score / the naive-empirical baseline's (naive with unscaled split-conformal "
        "intervals), rel_crps likewise (< 1 sharper and as calibrated).",
        "",
        "| series | window end | champion | rel_mae 1h | rel_mae 24h | rel_is80 1h | rel_is95 1h | rel_crps 1h | "
        "rel_is80 24h | rel_is95 24h | rel_crps 24h | cov80 1h | cov95 1h | cov80 24h | cov95 24h | best in hindsight (1h) |",
        "|---|---|---|" + "---|" * 13,
    ]
    misses = []
    for s, data in res["series"].items():
        for r in data["out_of_sample"]:
            lines.append(
                f"| {s} | {r['window_end'][:16]} | {r['champion']} | {fmt(r['rel_mae_1h'], 4)} | {fmt(r['rel_mae_24h'])} | "
                + "".join(f"{fmt(r.get(f'{k}_{h}h'))} | " for h in (1, 24)
                          for k in ("rel_interval_score_80", "rel_interval_score_95", "rel_crps"))
                + f"{fmt(r['coverage_80_1h'])} | {fmt(r['coverage_95_1h'])} | {fmt(r['coverage_80_24h'])} | {fmt(r['coverage_95_24h'])} | "
                f"{r['in_sample_best']} ({fmt(r['in_sample_best_rel_mae_1h'], 4)}) |")
            for key, limit in (("rel_mae_1h", 1.0), ("rel_mae_24h", 1.0), ("rel_interval_score_80_1h", 0.95),
                               ("rel_interval_score_95_1h", 0.95), ("rel_interval_score_80_24h", 1.0),
                               ("rel_interval_score_95_24h", 1.0)):
                if r.get(key) is not None and r[key] > limit:
                    misses.append(f"{s} {r['window_end'][:10]}: {key} {r[key]:.4f} > {limit}")
            for key, nominal in (("coverage_80_1h", 0.8), ("coverage_95_1h", 0.95), ("coverage_80_24h", 0.8),
                                 ("coverage_95_24h", 0.95)):
                if r[key] is not None and abs(r[key] - nominal) > 0.03:
                    misses.append(f"{s} {r['window_end'][:10]}: {key} {r[key]:.3f} (target {nominal} ± 0.03)")
    lines += ["", "## Interval scalings the champion's intervals used (share of scored origins)", "",
              "Chosen per coin, model and horizon among the `interval_scalings` of env.yaml: a scaling replaces "
              "`unscaled` only when its interval score on the errors known at the origin beats unscaled's with a "
              "Diebold–Mariano p-value below `scaling_p_value`; re-chosen every refit (24 origins).", "",
              "| series | window end | 1 h | 24 h |", "|---|---|---|---|"]
    for s, data in res["series"].items():
        for r in data["out_of_sample"]:
            lines.append(f"| {s} | {r['window_end'][:16]} | " + " | ".join(
                shares(r.get(f"scaling_share_{h}h")) for h in (1, 24)) + " |")
    lines += ["", "## Targets", ""]
    lines += [f"- missed: {x}" for x in misses] or ["- all targets met"]
    odds, windows = res.get("exact_interval_odds"), sum(len(d["out_of_sample"]) for d in res["series"].values())
    if odds:  # the ceiling: coverage over a window is itself noisy, most at 24 h (overlapping moves)
        lines += ["", "Coverage over a window is itself noisy: an *exact* interval (i.i.d. Gaussian returns, the true "
                  "quantiles) covers within ±3 pts at both levels in "
                  + " and ".join(f"{odds[h]['within_both']:.0%} of windows at {h} h "
                                 f"({odds[h]['within_both'] * windows:.1f} of {windows} expected)" for h in ("1", "24"))
                  + " (`exact_interval_odds`, 2000 simulated windows of the same length)."]
    lines += pooled_coverage(res)
    lines += ["", "## Every model, every window (rel_mae 1h / 24h, coverage 80 % 1h / 24h)", ""]
    names = [make_model(mm).name for mm in res["models"]]
    lines += ["| series | window end | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for s, data in res["series"].items():
        for w in data["windows"]:
            cells = []
            for n in names:
                h = w["models"][n]["horizons"]
                cells.append(f"{fmt(h['1']['rel_mae'], 4)} / {fmt(h['24']['rel_mae'])} ({fmt(h['1']['coverage_80'], 2)}/{fmt(h['24']['coverage_80'], 2)})")
            lines.append(f"| {s} | {w['end'][:16]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(DEFAULT_DATA))
    p.add_argument("--series", default=",".join(SERIES))
    p.add_argument("--windows", type=int, default=6, help="scored windows (one more, before them, selects the first champion)")
    p.add_argument("--window-days", type=float, default=30)
    p.add_argument("--history-days", type=int, default=90)
    p.add_argument("--calibration-days", type=int, default=None, help="warm-up days per window (default: env.yaml's)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--kinds", default="", help="only these model kinds (comma-separated; naive is always in)")
    p.add_argument("--scalings", default="", help="interval scalings (comma-separated; default: env.yaml's)")
    p.add_argument("--adapt-rate", type=float, default=None, help="interval_adapt_rate (default: env.yaml's)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--render", metavar="JSON", help="write the page of a results JSON again beside it (X.json -> "
                   "X.md), no backtest")
    p.add_argument("--tiny", action="store_true", help="1 series, 1 scored window of 1 day (and the one choosing its champion), 3 warm-up days: proves the "
                   "script runs")
    args = p.parse_args(argv)
    if args.render:
        source = Path(args.render)
        source.with_suffix(".md").write_text(markdown(json.loads(source.read_text())))
        print(f"wrote {source.with_suffix('.md')} from {source}")
        return 0
    if args.tiny:
        args.series, args.windows, args.window_days, args.history_days = "BTCUSDT", 1, 1, 20
        args.calibration_days = 3  # the fewest with the naive-empirical baseline at 24 h (48 known errors)
    args.series = [s for s in args.series.split(",") if s]
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    res = run(args)
    res["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "accuracy.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    (out / "accuracy.md").write_text(markdown(res))
    print(f"wrote {out / 'accuracy.md'} in {res['elapsed_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

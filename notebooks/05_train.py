# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Train, backtest, register
# Every model is backtested walk-forward against the naive forecast ("the price stays where it is") on the
# same origins, with intervals calibrated only on errors known before each origin. The build is logged to
# MLflow; the best model becomes the `challenger` and is promoted to `champion` only if it beats the
# current champion on this backtest and is no worse than naive.
#
# Training runs only when due: no champion yet, `retrain_every_hours` since the champion's data, or drift of
# the live accuracy or volatility (thresholds in env.yaml). Otherwise the cells below skip and the products
# of the last training stay as they are.

# %%
from coincast import display, figures, io, live, training
from coincast.backtest import BacktestSettings, backtest
from coincast.serving import hourly_series

display.setup_logging()

# %% tags=["parameters"]
upstream = ["extract", "validate", "features", "profile"]
product = None
models = None
backtest_days = None
calibration_days = None
calibration_window_days = None
horizons = None
refit_every_hours = None
n_jobs = None
project_root = None
predictions_dir = None
schedule = None

# %%
meta = io.read_json(upstream["extract"]["meta"])
y = hourly_series(io.read_frame(upstream["extract"]["data"]))
settings = BacktestSettings(
    backtest_days=backtest_days, calibration_days=calibration_days, horizons=tuple(horizons),
    refit_every_hours=refit_every_hours, n_jobs=n_jobs, calibration_window_days=calibration_window_days,
)
display.banner(meta)

# %%
log = live.read_log(live.log_path(predictions_dir, meta))
decision = training.decide_retrain(meta, y, log, product, project_root, schedule)
decision

# %%
if decision["due"]:
    result = backtest(y, models, settings)
    report = training.backtest_report(result, meta)
    training.save_backtest(result, report, product, meta["coin"])

# %% [markdown]
# rel_mae < 1 beats naive; coverage_80/95 should be close to 0.80/0.95.

# %%
if decision["due"]:
    display.show(training.summary_table(report), figures.error_by_hour(result, 1))

# %%
if decision["due"]:
    promotion = training.register_champion(
        meta["coin"], y, result, report, project_root,
        params={"models": models, **report["settings"], "coin": meta["coin"], "source": meta["source"]},
        artifacts=[product["backtest"], product["figures"], upstream["validate"]["report"],
                   upstream["profile"]["report"], upstream["extract"]["nb"], upstream["validate"]["nb"],
                   upstream["features"]["nb"], upstream["profile"]["nb"]],
    )
    io.write_json_atomic({**promotion, "trained": decision}, product["registry"])
    display.show(promotion)

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
# ## What this stage does
# When training is due, every model in `models` is backtested walk-forward against the naive forecast ("the
# price stays where it is") on the same hourly origins, with intervals calibrated only on errors known before
# each origin. The run is logged to MLflow; the best model becomes the `challenger` and is promoted to
# `champion` only if it beats both the current champion (on this backtest) and naive by more than noise: a
# one-sided Diebold–Mariano test of its 1 h errors against theirs, origin by origin, must have a p-value below
# `promotion_p_value`. The data is the features table (03): its hourly price series is exactly the raw one. The
# profile (04) runs beside this task, not before it.
#
# Training is due when there is no champion yet, `retrain_every_hours` after the champion's data, or on drift
# of the live accuracy or of the volatility (thresholds in env.yaml). Otherwise nothing is trained and the last
# training's products stand: the table and plot below then show that standing backtest.
#
# ## What the numbers mean
# `rel_mae` is the model's mean absolute error divided by naive's on the same origins: below 1 beats naive,
# naive itself is exactly 1. One hour ahead, hourly crypto prices are close to a random walk: expect every
# model near 1 and naive often the champion (over 18 monthly windows of real BTC/ETH/LTC the champion's 1 h
# `rel_mae` was 0.9999–1.0026: docs/forecasting.md). A difference of a fraction of a percent in one backtest is
# not evidence of skill; simulated data says nothing about real markets at all.
# `coverage_80` / `coverage_95` are the shares of actual prices inside the calibrated intervals: close to 0.80
# and 0.95 means the intervals are honest.

# %%
from coincast import display, files
from coincast.data.features import cross_feature_frame
from coincast.forecasting import figures
from coincast.operations import live, training
from coincast.timeseries import hourly_series, observed_series

display.setup_logging()

# %% tags=["parameters"]
upstream = ["extract", "validate", "features"]
product = None
models = None
backtest = None  # backtest_days, calibration_days, calibration_window_days, horizons, refit_every_hours, n_jobs,
#                  interval_scalings, scaling_p_value, interval_adapt_rate, interval_adapt_horizons
schedule = None  # retrain_every_hours, the drift_* thresholds, min_retrain_gap_hours
promotion = None  # promotion_p_value
project_root = None
predictions_dir = None

# %%
meta = files.read_json(upstream["extract"]["meta"])
features = files.read_frame(upstream["features"]["data"])
y = hourly_series(features)  # what the models see: a missing hour takes the last price
observed = observed_series(features)  # the same hours, a missing one NaN: the backtest never scores it
settings = training.backtest_settings(**backtest)
display.banner(meta)

# %% [markdown]
# ## Is training due?

# %%
log = live.read_log(live.log_path(predictions_dir, meta))
decision = training.decide_retrain(meta, y, log, product, project_root, schedule)
decision

# %% [markdown]
# ## Backtest and registration (only when due)

# %%
exog = cross_feature_frame(features)  # the cross-coin columns (cross_coins), read by the feature-based models

# %%
training.train(decision, observed, models, settings, meta, product, upstream, project_root, **promotion, exog=exog)

# %% [markdown]
# ## The standing backtest
# This build's backtest if it trained, else the last training's (backtest.json, registry.json).
# `backtest.html` beside this notebook has the errors by origin and by hour of day for every horizon.

# %%
standing, registered = files.read_json(product["backtest"]), files.read_json(product["registry"])
display.training_note(decision, registered, standing)

# %%
training.summary_table(standing)

# %%
figures.embed(figures.backtest_rel_mae(standing, registered["champion"]["model_name"]), product["nb"])

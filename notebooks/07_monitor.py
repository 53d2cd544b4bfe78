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
# # 07 · Monitor
# ## What this stage does
# Keeps the prediction log: forecasts from every hour not yet logged (a missed tick is caught up, flagged `late`),
# each by the registered version that was champion at that hour (never a model trained on data after it) and
# with the data version it was made from; every logged prediction whose actual price is now known is scored.
# Live accuracy goes to MLflow (run `live-<coin>`) and to `live.json`.
#
# ## What the numbers mean
# As in the backtest, `rel_mae` is relative to naive on the same hours (< 1 beats naive, and at one hour ahead
# expect about 1), and coverage should be near 0.80 / 0.95. `rel_interval_score_80/95` and `rel_crps` compare the
# intervals with the naive-empirical baseline (naive ± the spread of its own recent errors; < 1 beats it). A score from fewer than `min_scored_rows` scored
# predictions is not given: it says "too few to score". A first build logs one prediction per horizon and can
# score nothing yet; hourly operation (`coincast hourly`, cron) fills the log, one hour at a time.

# %%
from coincast import display, files, registry
from coincast.data.features import with_cross_features
from coincast.forecasting import figures
from coincast.operations import live, publish
from coincast.forecasting.serving import hourly_series

display.setup_logging()

# %% tags=["parameters"]
upstream = ["extract", "features", "forecast"]
product = None
predictions_dir = None
project_root = None
scoring = None  # log_horizons, live_window_hours, max_catchup_hours, min_scored_rows, calibration_window_days

# %%
meta = files.read_json(upstream["extract"]["meta"])
raw = files.read_frame(upstream["extract"]["data"])
history = with_cross_features(raw, files.read_frame(upstream["features"]["data"]))  # + cross-coin columns, if any
registry.configure(project_root)
served, version = registry.load_champion(meta["coin"])
path = live.log_path(predictions_dir, meta)
display.banner(meta)

# %% [markdown]
# ## This build's predictions and scores

# %%
with live.log_lock(path):
    log, summary = live.update_log(
        live.read_log(path), served, version, history, coin=meta["coin"], horizons=scoring["log_horizons"],
        data_version=meta.get("data_version"), now=meta["now"], max_catchup_hours=scoring["max_catchup_hours"],
        in_force_at=registry.in_force_at(meta["coin"], version),
    )
    live.write_log(log, path)
summary

# %% [markdown]
# ## Live accuracy
# All time and over the last `live_window_hours`, per horizon.

# %%
metrics = live.live_metrics(log, hourly_series(raw), meta["now"], scoring["log_horizons"],
                            scoring["live_window_hours"], scoring["min_scored_rows"],
                            scoring["calibration_window_days"])
registry.log_live(meta["coin"], live.flat_live_metrics(metrics), meta["now"],
                  {"model_version": version["version"], "data_version": meta.get("data_version")},
                  series=registry.series_label(meta))
live.summary_table(metrics)

# %% [markdown]
# ## Live accuracy over time
# Each point is the score over the `live_window_hours` before it: at the newest scored hour, the window row
# above. Until enough predictions are scored, bars show how many are and how many are needed.

# %%
over_time = live.accuracy_over_time(log, scoring["log_horizons"], scoring["live_window_hours"],
                                    scoring["min_scored_rows"])

# %%
figures.embed(figures.live_accuracy(over_time, scoring["log_horizons"], scoring["min_scored_rows"],
                                    scoring["live_window_hours"]), product["nb"])

# %%
files.write_json_atomic(publish.stamp({**metrics, "tick": summary}, meta), product["live"])
files.write_parquet_atomic(log, product["predictions"])

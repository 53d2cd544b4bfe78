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
# The prediction log: forecasts from every hour not yet logged (a missed tick is caught up, flagged `late`),
# each by the registered version that was champion at that hour (never a model trained on data after it) and
# with the data version it was made from; every logged prediction whose actual price is now known is scored.
# Live accuracy, relative to the naive forecast on the same origins, goes to MLflow (run `live-<coin>`) and to
# `live.json` ("too few to score" below `min_scored_rows` scored rows).

# %%
from coincast import display, io, live, publish, registry
from coincast.serving import hourly_series

display.setup_logging()

# %% tags=["parameters"]
upstream = ["extract", "forecast"]
product = None
log_horizons = None
predictions_dir = None
live_window_hours = None
max_catchup_hours = None
min_scored_rows = None
project_root = None

# %%
meta = io.read_json(upstream["extract"]["meta"])
raw = io.read_frame(upstream["extract"]["data"])
registry.configure(project_root)
served, version = registry.load_champion(meta["coin"])
path = live.log_path(predictions_dir, meta)
display.banner(meta)

# %%
with live.log_lock(path):
    log, summary = live.update_log(
        live.read_log(path), served, version, raw, coin=meta["coin"], horizons=log_horizons,
        data_version=meta.get("data_version"), now=meta["now"], max_catchup_hours=max_catchup_hours,
        in_force_at=registry.in_force_at(meta["coin"], version),
    )
    live.write_log(log, path)
summary

# %%
metrics = live.live_metrics(log, hourly_series(raw), meta["now"], log_horizons, live_window_hours, min_scored_rows)
registry.log_live(meta["coin"], live.flat_live_metrics(metrics), meta["now"],
                  {"model_version": version["version"], "data_version": meta.get("data_version")})
live.summary_table(metrics)

# %%
io.write_json_atomic(publish.stamp({**metrics, "tick": summary}, meta), product["live"])
io.write_parquet_atomic(log, product["predictions"])

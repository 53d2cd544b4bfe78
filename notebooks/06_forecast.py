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
# # 06 · Forecast
# The champion (`models:/coincast-<coin>@champion`) forecasts the next `forecast_hours` hours from the
# latest data, with 80 % and 95 % intervals calibrated out of sample.

# %%
from coincast import display, io, publish, registry
from coincast.forecast import make_forecast

display.setup_logging()

# %% tags=["parameters"]
upstream = ["extract", "train"]
product = None
forecast_hours = None
project_root = None

# %%
meta = io.read_json(upstream["extract"]["meta"])
registry.configure(project_root)
served, version = registry.load_champion(meta["coin"])
display.banner(meta)

# %%
forecast = make_forecast(served, {**version, "coin": meta["coin"]}, io.read_frame(upstream["extract"]["data"]),
                         hours=forecast_hours)
forecast

# %%
io.write_parquet_atomic(publish.stamp(forecast, meta), product["data"])

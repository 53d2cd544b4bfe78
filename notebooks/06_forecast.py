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
# ## What this stage does
# The champion (`models:/coincast-<coin>@champion`) forecasts the next `forecast_hours` hours from the latest
# data, with 80 % and 95 % intervals calibrated out of sample (on the backtest's errors, scaled by the recent
# volatility).
#
# ## What to look at
# The fan: the recent price, the forecast line and its 80 % / 95 % bands, and the naive line (the price stays
# where it is). The bands are the useful part: at one hour ahead the point forecast of any model sits close to
# the last price (the 05 backtest shows none reliably beats naive), while the bands say how far the price
# plausibly moves. If the champion is naive, the forecast line *is* the naive line.

# %%
from coincast import display, files, registry
from coincast.data.features import with_cross_features
from coincast.forecasting import figures
from coincast.operations import publish
from coincast.forecasting.forecast import make_forecast

display.setup_logging()

# %% tags=["parameters"]
upstream = ["extract", "features", "train"]
product = None
forecast_hours = None
project_root = None

# %%
meta = files.read_json(upstream["extract"]["meta"])
raw = files.read_frame(upstream["extract"]["data"])
history = with_cross_features(raw, files.read_frame(upstream["features"]["data"]))  # + cross-coin columns, if any
registry.configure(project_root)
served, version = registry.load_champion(meta["coin"])
display.banner(meta)

# %% [markdown]
# ## The forecast

# %%
forecast = make_forecast(served, {**version, "coin": meta["coin"]}, history, hours=forecast_hours,
                         generated_at=meta["now"])  # the build's clock (a replay's too)
forecast

# %%
figures.embed(figures.forecast_figure(raw, forecast, meta["coin"]), product["nb"])

# %%
files.write_parquet_atomic(publish.stamp(forecast, meta), product["data"])

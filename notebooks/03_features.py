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
# # 03 · Features
# ## What this stage does
# Lags, rolling statistics, calendar terms and the target (the price `target_horizon` hours later), on the
# complete hourly grid. No feature at time t uses data after t (tests/test_features.py proves it).
#
# ## What to look at
# The last rows: the newest hours have no target yet (it lies in the future), so their `target_price_*` is empty.
# Every hour is kept (the first hours, whose windows are not full yet, with empty features), so the train task (05)
# reads this table and its hourly price series is exactly the raw one; the profile (04) describes every column.
# With `cross_coins` set (env.yaml; off by default), the other coins' log returns over the last `lags` hours join as
# `cross_<coin>_log_return_<k>h`, from their stored raw histories up to this build's last hour, never after it.

# %%
from coincast import display, files
from coincast.data.extract import cross_coin_prices
from coincast.data.features import transform_data

display.setup_logging()

# %% tags=["parameters"]
upstream = ["extract", "validate"]
product = None
feature_spec = None  # lags, rolling_windows, target_horizon (env.yaml)
cross_coins = None  # other coins whose lagged log returns join the features ([]: none)
source = None  # where their raw histories are: source, vs_currency, replay_file, seed, history_dir
vs_currency = None
replay_file = None
seed = None
history_dir = None

# %%
raw = files.read_frame(upstream["extract"]["data"])
meta = files.read_json(upstream["extract"]["meta"])
display.banner(meta)

# %%
history_env = {"source": source, "vs_currency": vs_currency, "replay_file": replay_file, "seed": seed,
               "history_dir": history_dir}
others = cross_coin_prices(cross_coins, meta["coin"], meta["last"], history_env)

# %% [markdown]
# ## The newest features

# %%
features = transform_data(raw, **feature_spec, cross_prices=others)
features.tail()

# %%
files.write_parquet_atomic(features, product["data"])

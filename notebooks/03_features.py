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

# %%
from coincast import display, files
from coincast.data.features import transform_data

display.setup_logging()

# %% tags=["parameters"]
upstream = ["extract", "validate"]
product = None
feature_spec = None  # lags, rolling_windows, target_horizon (env.yaml)

# %%
raw = files.read_frame(upstream["extract"]["data"])
display.banner(files.read_json(upstream["extract"]["meta"]))

# %% [markdown]
# ## The newest features

# %%
features = transform_data(raw, **feature_spec)
features.tail()

# %%
files.write_parquet_atomic(features, product["data"])

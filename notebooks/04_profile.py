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
# # 04 · Profile
# ## What this stage does
# A ydata-profiling report of the features (`profile.html`), in a fast configuration (see
# `coincast.data.profiling`). Made at most every `profile_every_hours` hours (0 = every build), so hourly ticks
# stay light.
#
# ## What to look at
# The decision below says whether the report was remade this build. Open `profile.html` beside this notebook
# for distributions, missing values and correlations (the first hours' lags and rolling statistics are empty:
# their window is not full yet). This task runs beside training, not before it; the published snapshot keeps it.

# %%
from coincast import display, files
from coincast.data import profiling

display.setup_logging()

# %% tags=["parameters"]
upstream = ["extract", "features"]
product = None
profile = None  # profile_enabled, profile_minimal, profile_every_hours (env.yaml)

# %%
meta = files.read_json(upstream["extract"]["meta"])
display.banner(meta)

# %% [markdown]
# ## Is a new report due?

# %%
decision = profiling.profile_due(product, meta["now"], profile["profile_every_hours"], profile["profile_enabled"])
decision

# %%
profiling.write_profile(decision, upstream["features"]["data"], meta, product, profile["profile_minimal"])

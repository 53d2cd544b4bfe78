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
# A ydata-profiling report of the features, in a fast configuration (see `coincast.profiling`).
# Made at most every `profile_every_hours` hours (0 = every build), so hourly ticks stay light.

# %%
from coincast import display, io
from coincast.profiling import profile_due, profile_html

display.setup_logging()

# %% tags=["parameters"]
upstream = ["extract", "features"]
product = None
minimal = None
profile_every_hours = None

# %%
meta = io.read_json(upstream["extract"]["meta"])
display.banner(meta)

# %%
decision = profile_due(product, meta["now"], profile_every_hours)
decision

# %%
if decision["due"]:
    features = io.read_frame(upstream["features"]["data"])
    html = profile_html(
        features,
        title=f"coincast · {meta['coin']} features",
        description=display.data_label(meta["source"]) + f" Window {meta['first']} to {meta['last']}.",
        minimal=minimal,
    )
    io.write_text_atomic(html, product["report"])
    io.write_json_atomic({"data_through": meta["last"], "made_for": meta["now"], "rows": len(features)},
                         product["meta"])

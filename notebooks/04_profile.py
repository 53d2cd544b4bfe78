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

# %%
from coincast import display, io
from coincast.profiling import profile_html

display.setup_logging()

# %% tags=["parameters"]
upstream = ["extract", "features"]
product = None
minimal = None

# %%
meta = io.read_json(upstream["extract"]["meta"])
features = io.read_frame(upstream["features"]["data"])
display.banner(meta)

# %%
html = profile_html(
    features,
    title=f"coincast · {meta['coin']} features",
    description=display.data_label(meta["source"]) + f" Window {meta['first']} to {meta['last']}.",
    minimal=minimal,
)

# %%
io.write_text_atomic(html, product["report"])

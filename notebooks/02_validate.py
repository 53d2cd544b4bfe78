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
# # 02 · Validate
# ## What this stage does
# The gate. Every check runs on the window 01 extracted, and the row-level checks also on the rows it
# quarantined. If any check fails, the last cell raises: the build stops with a non-zero exit naming each failed
# check, no downstream task runs and what is published stays as it was. `jumps` judges only 1-hour moves not
# accepted before (by an earlier passing gate, or by a person with `coincast accept COIN TIME --reason ...`).
#
# ## What to look at
# The table: one row per check with the value it measured, the limit it was held to (env.yaml) and a one-line
# message. A `False` in `passed` is why this build stopped. Warnings (zero-volume hours) pass but are listed.

# %%
from coincast import display, files
from coincast.data import gate
from coincast.operations import publish
from coincast.data.validation import enforce

display.setup_logging()

# %% tags=["parameters"]
upstream = ["extract"]
product = None
limits = None  # the gate's limits (env.yaml): null_threshold, min_rows, max_missing_fraction, max_gap_hours, ...

# %%
raw = files.read_frame(upstream["extract"]["data"])
quarantined = files.read_frame(upstream["extract"]["quarantine"])
meta = files.read_json(upstream["extract"]["meta"])
display.banner(meta)

# %%
report = publish.stamp(gate.judge(raw, quarantined, meta, **limits), meta)
files.write_json_atomic(report, product["report"])

# %% [markdown]
# ## The checks

# %%
display.checks_view(report)

# %% [markdown]
# ## Warnings (pass, but reported)

# %%
report["warnings"]

# %% [markdown]
# ## The verdict
# A passing gate adds the window's hours to the hours already accepted (kept beside the raw history), so a real
# extreme hour is judged once, not on every build. A failing gate raises here.

# %%
gate.record_pass(report, raw, meta)

# %%
enforce(report)

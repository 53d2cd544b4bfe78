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
# The gate: if any check fails, this notebook raises, the build stops with a non-zero exit naming
# each failed check, and no downstream task runs (their previous products stay as they were).
# Row-level checks also see the rows this extraction quarantined; `jumps` judges only moves not accepted
# before (by an earlier passing gate, or by a person with `coincast accept`).

# %%
from coincast import display, gate, io, publish
from coincast.validation import enforce

display.setup_logging()

# %% tags=["parameters"]
upstream = ["extract"]
product = None
null_threshold = None
min_rows = None
max_missing_fraction = None
max_gap_hours = None
max_staleness_hours = None
max_abs_log_return = None

# %%
raw = io.read_frame(upstream["extract"]["data"])
quarantined = io.read_frame(upstream["extract"]["quarantine"])
meta = io.read_json(upstream["extract"]["meta"])
display.banner(meta)

# %%
report = publish.stamp(gate.judge(
    raw, quarantined, meta,
    null_threshold=null_threshold, min_rows=min_rows, max_missing_fraction=max_missing_fraction,
    max_gap_hours=max_gap_hours, max_staleness_hours=max_staleness_hours,
    max_abs_log_return=max_abs_log_return,
), meta)
io.write_json_atomic(report, product["report"])

# %%
display.checks_table(report)

# %%
report["warnings"]

# %%
gate.record_pass(report, raw, meta)

# %%
enforce(report)

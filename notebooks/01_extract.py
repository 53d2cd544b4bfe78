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
# # 01 · Extract
# ## What this stage does
# Fetches the hours the raw history lacks from the source (CoinGecko, a replayed file or the simulator),
# merges them into the raw layer (`<history_dir>/<source>/<series>/<coin>-<vs>.parquet`: rows are only ever
# added) and keeps the last `days` days before the clock as this build's window. Rows failing a row-level rule
# (price missing or <= 0, volume missing or < 0) are quarantined instead: the gate (02) judges them with the
# window. `extract.json` gets this build's `build_id`: the later products carry it, and the last task publishes
# them only as one whole, passed build.
#
# ## What to look at
# - **The banner**: the coin, the window and where the data came from. Simulated or replayed data is labelled
#   loudly: it is not a live price.
# - **The chart**: the price over the window. Hours this build fetched are marked; on an hourly tick that is
#   usually just the newest hour, on a first build every hour is new. A flat stretch or a cliff here is what the
#   gate's `gaps` and `jumps` checks look for next.
# - **The summary** (`extract.json`): `rows_added_to_history`, `quarantined` (bad rows kept out) and
#   `data_version` (the MD5 of the raw history file: which data every later product was made from).

# %%
from coincast import display, files
from coincast.forecasting import figures
from coincast.data.extract import extract

display.setup_logging()

# %% tags=["parameters"]
upstream = None
product = None
coin = None
days = None
source = None
vs_currency = None
replay_file = None
replay_now = None
build_hour = None  # not used here: its change each hour makes Ploomber refetch (see env.yaml)
seed = None
history_dir = None
fetch_retries = None
fetch_max_wait_seconds = None

# %%
result = extract(
    coin, days, source, vs_currency=vs_currency, replay_file=replay_file,
    replay_now=replay_now, history_dir=history_dir, seed=seed,
    fetch_retries=fetch_retries, fetch_max_wait_seconds=fetch_max_wait_seconds,
)

# %%
meta = result.summary()  # carries this build's build_id (coincast.operations.publish)
display.banner(meta)

# %% [markdown]
# ## The price history

# %%
figures.embed(figures.price_history(result.data, result.added_hours, meta["coin"]), product["nb"])

# %% [markdown]
# ## The newest rows and the summary

# %%
result.data.tail()

# %%
meta

# %%
files.write_parquet_atomic(result.data, product["data"])
files.write_parquet_atomic(result.quarantined, product["quarantine"])
files.write_json_atomic(meta, product["meta"])

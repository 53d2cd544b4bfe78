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
# Fetch the hours the raw history lacks from the source (CoinGecko, a replayed file or the simulator),
# merge them into the immutable raw layer (`<history_dir>/<source>/<coin>.parquet`) and keep the last
# `days` days before the clock as this build's raw window. Rows failing a row-level rule (price missing or
# <= 0, volume missing or < 0) are quarantined instead: the gate judges them with the window. `extract.json`
# gets this build's `build_id`: the later products carry it, and the last task publishes them only as one
# whole, passed build.

# %%
from coincast import display, io
from coincast.extract import extract

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

# %%
result = extract(
    coin, days, source, vs_currency=vs_currency, replay_file=replay_file,
    replay_now=replay_now, history_dir=history_dir, seed=seed,
)

# %%
meta = result.summary()  # carries this build's build_id (coincast.publish)
display.banner(meta)

# %%
result.data.tail()

# %%
io.write_parquet_atomic(result.data, product["data"])
io.write_parquet_atomic(result.quarantined, product["quarantine"])
io.write_json_atomic(meta, product["meta"])

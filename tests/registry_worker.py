"""One worker of tests/test_services.py's race: registers versions as a build does (``log_build`` + ``promote``)
through ``MLFLOW_TRACKING_URI``, then loads each coin's champion. Once ready it writes ``<go>.ready-<pid>`` and
starts when the file ``go`` appears, so that two workers register at the same moment.

    python tests/registry_worker.py PROJECT_ROOT GO_FILE ROUNDS COIN [COIN ...]

Prints one JSON object: every promote()'s outcome in order, when its registrations began and ended, and per coin the
champion it loaded.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from conftest import hourly_frame
from test_registry import DATA_THROUGH, ID, LEVEL, QUANTILES, SPECS, backtest, errors

from coincast import registry
from coincast.forecasting.models import make_model
from coincast.forecasting.serving import ServedForecaster, hourly_series

#: drift far ahead of naive at every origin: each build promotes its challenger (the first, then refits)
REL_1H = {"naive": 1.0, "drift": 0.5}


def main(root: Path, go: Path, rounds: int, coins: list[str]) -> dict:
    registry.configure(root)
    y = hourly_series(hourly_frame(300)[["timestamp", "price"]])
    served = {ID[a]: ServedForecaster(make_model(SPECS[a]).fit(y), QUANTILES) for a in REL_1H}
    go.with_name(f"{go.name}.ready-{os.getpid()}").touch()
    while not go.exists():
        time.sleep(0.02)
    began, builds = time.time(), []
    for _ in range(rounds):
        for coin in coins:
            run_id = registry.log_build(coin, {"coin": coin}, {}, [], {"data_through": DATA_THROUGH})
            outcome = registry.promote(coin, run_id, backtest(REL_1H), served, errors(REL_1H), LEVEL)
            builds.append({"coin": coin, "run_id": run_id, **outcome})
    ended = time.time()
    loaded = {}
    for coin in coins:
        model, info = registry.load_champion(coin)
        forecast = model.forecast(hourly_frame(300)[["timestamp", "price"]], (1, 2))
        loaded[coin] = {"version": info["version"], "model_name": model.model.name, "rows": len(forecast)}
    return {"builds": builds, "began": began, "ended": ended, "loaded": loaded}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])))

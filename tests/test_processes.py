"""Two writers: workers started safely (fork only without threads) and MLflow writes one process at a time."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT

PROBE = """
import threading, time
from coincast.processes import pool_context
print(pool_context().get_start_method())
threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
print(pool_context().get_start_method())
"""


def test_workers_are_forked_only_from_a_process_without_threads():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["fork", "forkserver"], out.stderr


POOL_OWNER = """
import os, sys, threading, time
from concurrent.futures import ProcessPoolExecutor
from coincast.processes import die_with_parent, pool_context
if sys.argv[1] == "threads":  # a Jupyter kernel, a replay: the fork server starts the workers
    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
ctx = pool_context()
pool = ProcessPoolExecutor(max_workers=2, mp_context=ctx, initializer=die_with_parent)
futures = [pool.submit(time.sleep, 0.5) for _ in range(2)] + [pool.submit(os.getpid) for _ in range(8)]
print(ctx.get_start_method(), *sorted({f.result() for f in futures[2:]}), flush=True)
pool.submit(time.sleep, 600)
time.sleep(600)
"""


@pytest.mark.parametrize("threads", ["none", "threads"])
def test_pool_workers_die_with_their_owner(threads: str):
    """kill -9 of the process owning a pool: its workers (forked, or started by the fork server) are gone within
    seconds, not left running as orphans."""
    import os
    import signal

    import psutil

    owner = subprocess.Popen([sys.executable, "-c", POOL_OWNER, threads], stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        method, *pids = owner.stdout.readline().split()
        assert method == ("fork" if threads == "none" else "forkserver") and pids
        workers = [psutil.Process(int(pid)) for pid in pids]
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(timeout=30)
        end = time.monotonic() + 10
        while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in workers if psutil.pid_exists(p.pid)):
            assert time.monotonic() < end, "the pool's workers outlived their owner"
            time.sleep(0.1)
    finally:
        try:
            os.killpg(owner.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        owner.communicate(timeout=30)


BACKTEST_IN_A_THREADED_PROCESS = """
import threading, time
import numpy as np, pandas as pd
from coincast.forecasting.backtest import run_forecasts
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()  # as in a Jupyter kernel
y = pd.Series(100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, 400))),
              index=pd.date_range("2024-01-01", periods=400, freq="h", tz="UTC"))
specs = [{"kind": "naive"}, {"kind": "drift", "window": 48}]
origins = y.index[100:-1]
pooled, _ = run_forecasts(y, specs, origins, [1, 24], refit_every=24, n_jobs=2)
alone, _ = run_forecasts(y, specs, origins, [1, 24], refit_every=24, n_jobs=1)
key = ["model", "origin", "horizon"]
pd.testing.assert_frame_equal(pooled.sort_values(key).reset_index(drop=True), alone.sort_values(key).reset_index(drop=True))
import multiprocessing.forkserver as fs
print("forkserver" if fs._forkserver._forkserver_pid else "fork", len(pooled))
"""


def test_the_backtest_pool_runs_from_a_threaded_process():
    out = subprocess.run([sys.executable, "-c", BACKTEST_IN_A_THREADED_PROCESS], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    method, rows = out.stdout.split()
    assert method == "forkserver" and int(rows) == 2 * 2 * 299


def test_a_registration_waits_for_the_other_writer(tmp_path: Path):
    """register_champion (run + version + aliases) holds the store's write lock: while another process holds
    it, nothing is written; once released, the registration completes."""
    import numpy as np
    import pandas as pd
    from filelock import FileLock
    from mlflow.tracking import MlflowClient

    from coincast import registry
    from coincast.operations import training
    from coincast.forecasting.backtest import BacktestSettings, backtest

    y = pd.Series(100 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.01, 24 * 12))),
                  index=pd.date_range("2024-01-01", periods=24 * 12, freq="h", tz="UTC"))
    result = backtest(y, [{"kind": "naive"}, {"kind": "drift", "window": 48}],
                      BacktestSettings(backtest_days=2, calibration_days=2, n_jobs=1))
    report = training.backtest_report(result, {"coin": "bitcoin", "source": "simulated"})
    registry.configure(tmp_path)
    held = FileLock(str(tmp_path / "mlflow.db.lock"))
    done: dict = {}
    with held:
        worker = threading.Thread(target=lambda: done.update(training.register_champion(
            "bitcoin", y, result, report, tmp_path, params={"coin": "bitcoin"}, artifacts=[],
            promotion_p_value=0.05)))
        worker.start()
        time.sleep(2.0)
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
        assert not done and not client.search_registered_models()  # waiting for the other writer
    worker.join(timeout=120)
    assert done["champion"]["version"] == "1"
    assert str(client.get_model_version_by_alias("coincast-bitcoin", "champion").version) == "1"


@pytest.mark.pipeline
def test_coins_side_by_side_keep_every_version_and_alias_consistent(tmp_path: Path):
    """The load test in small: 3 coins built two at a time, then a tick retraining all of them against one
    sqlite store (`make bench-soak` runs 8 coins for 48 ticks)."""
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--coins", "3", "--hours", "2",
                          "--retrain-every", "1", "--work", str(tmp_path), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    import json

    res = json.loads((tmp_path / "out" / "soak.json").read_text())
    assert res["failed_ticks"] == [] and res["problems"] == []
    for coin, r in res["registry"].items():
        assert r["training_runs"] == 2 and r["versions"] >= 2 and r["live_runs"] == 1, (coin, r)

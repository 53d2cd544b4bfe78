"""Shared fixtures: paths to ../shared data, a throw-away copy of the project, in-memory frames."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
BTC_CSV = SHARED_DATA / "BTCUSDT_1h_2020-10_2024-06.csv"
CHART_JSON = SHARED_DATA / "coingecko_bitcoin_market_chart_usd_2023-10-03_2023-10-10.json"
CHART_WRAPPED = SHARED_DATA / "coingecko_bitcoin_market_chart_usd_2023-10-07_2023-10-14_wrapped.json"
BIN = Path(sys.executable).parent

os.environ.setdefault("PLOOMBER_STATS_ENABLED", "false")
os.environ.setdefault("PLOOMBER_VERSION_CHECK_DISABLED", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def need_shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path.name} not found: ../shared/data is absent (the real recorded data lives outside the repo)")
    return path


def hourly_frame(hours: int = 200, start: str = "2024-01-01T00:00Z", seed: int = 0) -> pd.DataFrame:
    """A clean hourly series: timestamp on the grid, positive price and volume."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=hours, freq="h", tz="UTC")
    price = 100 * np.exp(np.cumsum(rng.normal(0, 0.005, hours)))
    volume = rng.uniform(1e6, 2e6, hours)
    return pd.DataFrame({"timestamp": ts, "price": price, "volume": volume, "market_cap": price * 1e6})


@pytest.fixture
def frame() -> pd.DataFrame:
    return hourly_frame()


PROJECT_FILES = ["pipeline.yaml", "env.yaml", "env.test.yaml", "env.cron.yaml", "dvc.yaml", ".dvcignore", "notebooks"]


def copy_project(dest: Path) -> Path:
    """pipeline.yaml, env files and notebooks in a scratch folder (the package is installed)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        else:
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_project(tmp_path / "project")


MLFLOW_EXPORTS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")


def run(cmd: list[str], cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    # mlflow.set_tracking_uri() in this process exports MLFLOW_TRACKING_URI: never let it leak into a project
    full_env = {k: v for k, v in os.environ.items() if k not in MLFLOW_EXPORTS}
    full_env.update(env or {})
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def coincast(project: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run([str(BIN / "coincast"), "build", "--project", str(project), *args], cwd=project, env=env)


def progress(stdout: str) -> list[tuple[str, str, str]]:
    """The (coin, task, done | FAILED) lines a `coincast build` printed as its tasks completed, in order."""
    return re.findall(r"^  (\S+) +(\S+) +(done|FAILED) +[\d.]+ s$", stdout, flags=re.M)


def summary(stdout: str) -> dict[str, dict[str, str]]:
    """The summary table a `coincast build` printed at its end: {coin: {column: value}}."""
    lines = stdout[stdout.rindex("\ncoin ") + 1:].splitlines()
    header = re.split(r" {2,}", lines[0].strip())
    return {row[0]: dict(zip(header, row)) for row in (re.split(r" {2,}", line.strip()) for line in lines[1:] if line)}

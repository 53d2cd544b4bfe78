"""Shared fixtures: paths to ../shared data, a throw-away copy of the project, in-memory frames."""
from __future__ import annotations

import json
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every end-to-end (`pipeline`) test is also `slow`: `-m 'not slow'` is the quick loop while editing."""
    for item in items:
        if item.get_closest_marker("pipeline"):
            item.add_marker(pytest.mark.slow)


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


def simulated_frame(coin: str = "bitcoin", hours: int = 24 * 20, seed: int = 11) -> pd.DataFrame:
    """The simulator's hourly rows for ``coin``, timestamps on the hour: a model test's series (``hourly_series``)."""
    from coincast.data.sources.simulated import simulate_hourly

    df = simulate_hourly(coin, hours, seed=seed)
    df["timestamp"] = df["timestamp"].dt.floor("h")
    return df


def garbage_after(values: pd.Series, t: pd.Timestamp) -> pd.Series:
    """``values`` (prices by hour) with every one after ``t`` multiplied by random noise."""
    out = values.copy()
    later = out.index > t
    out[later] *= np.exp(np.random.default_rng(0).normal(0, 0.05, later.sum()))
    return out


def assert_no_look_ahead(spec: dict, settings, inputs, n_origins: int = 49, every_later_differs: bool = True) -> None:
    """A model's forecasts at the first ``n_origins`` origins of a backtest with ``settings``, from ``inputs(None)``
    (prices, extra features or None) and from ``inputs(t)`` (the same with the data after origin t garbage; t is a
    refit origin, so the fit there is covered too): each forecast at or before t is identical, the later ones
    differ (``every_later_differs``; else at least one)."""
    from coincast.forecasting.backtest import plan_origins, run_forecasts
    from coincast.forecasting.models import make_model

    origins, _ = plan_origins(inputs(None)[0], settings, make_model(spec).min_history)
    t = origins[settings.refit_every_hours]
    runs = []
    for at in (None, t):
        prices, extra = inputs(at)
        runs.append(run_forecasts(prices, [spec], origins[:n_origins], settings.horizons, settings.refit_every_hours,
                                  1, extra)[0])
    a, b = runs
    before = a["origin"] <= t
    pd.testing.assert_frame_equal(a.loc[before], b.loc[before])
    differs = a.loc[~before, "forecast"] != b.loc[~before, "forecast"]
    assert differs.all() if every_later_differs else differs.any()


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


# --- the demo project, built once per test session ------------------------------------------------------------
# env.test.yaml's models and one Prophet model, and the GARCH and blend scalings: the end-to-end builds that cover every
# kind of model and scaling code path
WITH_PROPHET = ("--set", "models=[{kind: naive}, {kind: drift, window: 168}, "
                "{kind: prophet_returns, window_days: 30, weekly_seasonality: false, damping: 0.3}]",
                "--set", "interval_scalings=[unscaled, rv24, har, hod, har_hod, garch, blend]")
DEMO_ARGS = ("--env", "env.test.yaml", *WITH_PROPHET, "--coins", "bitcoin,ethereum", "--set", "coin_jobs=2",
             "--set", "executed_format=html",  # as make demo writes them: the notebook and browser tests read HTML
             "--set", "profile_enabled=true")  # and the dashboard tests the data profile


def _session_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder every pytest-xdist worker of this session shares (the base temp of one worker otherwise)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make demo` in small, built once for the whole session (the first xdist worker builds it, the other waits):
    two simulated coins side by side (coin_jobs=2), env.test.yaml (in-process notebooks) with a Prophet model
    (WITH_PROPHET) and the profile on, one new MLflow sqlite store. Tests only read it; a test that changes a project works on ``demo_copy``."""
    from filelock import FileLock

    root = _session_root(tmp_path_factory) / "demo"
    root.mkdir(exist_ok=True)
    project, outcome = root / "project", root / "outcome.json"
    with FileLock(str(root / "build.lock")):
        if not outcome.exists():
            copy_project(project)
            result = coincast(project, *DEMO_ARGS)
            outcome.write_text(json.dumps({"returncode": result.returncode, "stdout": result.stdout,
                                           "stderr": result.stderr}))
    done = json.loads(outcome.read_text())
    assert done["returncode"] == 0, done["stdout"][-3000:] + done["stderr"][-3000:]
    return project


def copy_built(project: Path, dest: Path) -> Path:
    """A copy of a built project a test may change (products, data, MLflow store; symlinks kept as links).
    Absolute paths in its settings differ from the original's, so its first build reruns what they feed. The
    copy's MLflow store points at the copy's artifacts (MLflow keeps absolute artifact locations), so nothing a
    test logs lands in the original."""
    shutil.copytree(project, dest, symlinks=True, ignore=shutil.ignore_patterns("build.lock"))
    store = dest / "mlflow.db"
    if store.exists():
        import sqlite3

        with sqlite3.connect(store) as db:
            for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                for column in db.execute(f"PRAGMA table_info('{table}')").fetchall():
                    if column[2].upper().startswith(("VARCHAR", "TEXT")):
                        db.execute(f'UPDATE "{table}" SET "{column[1]}" = replace("{column[1]}", ?, ?) '
                                   f'WHERE instr("{column[1]}", ?) > 0', (str(project), str(dest), str(project)))
    return dest


@pytest.fixture
def demo_copy(demo: Path, tmp_path: Path) -> Path:
    return copy_built(demo, tmp_path / "project")


def progress(stdout: str) -> list[tuple[str, str, str]]:
    """The (coin, task, done | FAILED) lines a `coincast build` printed as its tasks completed, in order."""
    return re.findall(r"^  (\S+) +(\S+) +(done|FAILED) +[\d.]+ s$", stdout, flags=re.M)


def summary(stdout: str) -> dict[str, dict[str, str]]:
    """The summary table a `coincast build` printed at its end: {coin: {column: value}}."""
    lines = stdout[stdout.rindex("\ncoin ") + 1:].splitlines()
    header = re.split(r" {2,}", lines[0].strip())
    return {row[0]: dict(zip(header, row)) for row in (re.split(r" {2,}", line.strip()) for line in lines[1:] if line)}


# --- headless Chromium (the dashboard's and the executed notebooks' browser tests) ---------------------------------
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is absent: the browser tests need Debian's chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (dev extra) is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


# --- shared services: PostgreSQL, the S3 stand-in, an MLflow server (tests/services.py) ------------------------
@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory):
    """PostgreSQL, moto_server (S3) and an MLflow tracking server on both, started once for the session and shared
    by its xdist workers (the last one using them stops them); tests only add their own names to them."""
    import services as svc

    try:
        svc.pg_bin("initdb")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    with svc.shared(_session_root(tmp_path_factory) / "services") as running:
        yield running

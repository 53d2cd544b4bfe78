"""End to end: `coincast build` / `ploomber build` executing the notebooks headless (papermill).

Slow by nature (a kernel per notebook); each test builds as little as it needs to prove its point.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cg_server import FakeCoinGecko
from coincast.data.sources.simulated import simulate_hourly
from conftest import BIN, BTC_CSV, DEMO_ARGS, WITH_PROPHET, coincast, need_shared, progress, run, summary

pytestmark = pytest.mark.pipeline

NOTEBOOKS = ["01_extract", "02_validate", "03_features", "04_profile", "05_train", "06_forecast", "07_monitor"]
PRODUCTS = ["raw.parquet", "extract.json", "validation.json", "features.parquet", "profile.html", "backtest.json",
            "backtest.html", "backtest_forecasts.parquet", "registry.json", "forecast.parquet", "live.json",
            "predictions.parquet", "profile.json", "published.json"]


def products(project: Path, coin: str) -> Path:
    return project / "products" / coin


def assert_complete(project: Path, coin: str, executed_format: str = "ipynb") -> dict:
    """Every product of a whole build (executed notebooks in ``executed_format``: env.test.yaml's ipynb)."""
    out = products(project, coin)
    missing = [name for name in [f"{nb}.{executed_format}" for nb in NOTEBOOKS] + PRODUCTS if not (out / name).exists()]
    assert not missing, f"{coin}: missing products {missing}"
    report = json.loads((out / "validation.json").read_text())
    assert report["passed"], report["failed"]
    features = pd.read_parquet(out / "features.parquet")
    assert len(features) > 100 and "target_price_1h" in features
    meta = json.loads((out / "extract.json").read_text())
    backtest = json.loads((out / "backtest.json").read_text())
    assert backtest["models"]["naive"]["horizons"]["1"]["rel_mae"] == 1.0
    assert backtest["data_through"] == meta["last"]
    registry = json.loads((out / "registry.json").read_text())
    forecast = pd.read_parquet(out / "forecast.parquet")
    assert len(forecast) == 24 and list(forecast["horizon"]) == list(range(1, 25))
    assert (forecast["model_name"] == registry["champion"]["model_name"]).all()
    assert (forecast["model_version"] == str(registry["champion"]["version"])).all()
    assert (forecast["data_through"] == pd.Timestamp(meta["last"])).all()
    # made at the build's clock, as its logged predictions are (a replay's forecast at its replayed hour)
    assert (forecast["generated_at"] == pd.Timestamp(meta["now"])).all()
    assert ((forecast["lower_95"] < forecast["lower_80"]) & (forecast["lower_80"] <= forecast["forecast"])
            & (forecast["forecast"] <= forecast["upper_80"]) & (forecast["upper_80"] < forecast["upper_95"])).all()
    assert (project / "mlflow.db").exists()
    log = pd.read_parquet(out / "predictions.parquet")  # every build logs the champion's newest predictions
    assert sorted(log["horizon"]) == [1, 24] and (log["origin"] == pd.Timestamp(meta["last"])).all()
    assert (log["data_version"] == meta["data_version"]).all() and len(meta["data_version"]) == 32
    # the last task published this build: the snapshot the dashboard reads is this build, whole
    snapshot = out / "published"
    assert json.loads((snapshot / "extract.json").read_text()) == meta
    assert json.loads((out / "published.json").read_text())["build_id"] == meta["build_id"]
    assert set(pd.read_parquet(snapshot / "forecast.parquet")["build_id"]) == {meta["build_id"]}
    assert report["build_id"] == json.loads((snapshot / "live.json").read_text())["build_id"] == meta["build_id"]
    return meta


NOISE = ("These parameters are not used", "Kernel is running over TCP", "cmdstanpy", "Executing", "INFO")


def test_demo_simulated_two_coins_then_a_noop_build(demo: Path):
    """The session's demo build (conftest ``demo``: two coins side by side, coin_jobs=2, two worker processes, one
    new MLflow sqlite store), then the same command again: nothing runs, nothing is rewritten."""
    project = demo
    result = json.loads((demo.parent / "outcome.json").read_text())  # what the demo build printed
    # what a person reads: a line per coin and task, then the summary table; the known noise (render warnings,
    # Stan's and the progress bars' lines) is not on the console (papermill's kernel noise: the live-path test)
    console = result["stdout"] + result["stderr"]
    tasks = ["extract", "validate", "features", "train", "profile", "forecast", "monitor", "publish"]
    assert progress(result["stdout"]) == [(c, t, "done") for c in ("bitcoin", "ethereum") for t in tasks], console
    assert len(console.splitlines()) < 25 and not result["stderr"], console
    for noise in NOISE:
        assert noise not in console, console
    table = summary(result["stdout"])
    for coin in ("bitcoin", "ethereum"):
        meta = assert_complete(project, coin, "html")
        registry = json.loads((products(project, coin) / "registry.json").read_text())["champion"]
        forecast = pd.read_parquet(products(project, coin) / "forecast.parquet").iloc[0]
        assert table[coin] == {"coin": coin, "tasks run": "8 of 8", "gate": "passed",
                               "champion": f"{registry['model_name']} v{registry['version']}",
                               "next hour (UTC)": f"{forecast['target_time']:%Y-%m-%d %H:%M}",
                               "forecast": f"{forecast['forecast']:,.6g}",
                               "80 % interval": f"{forecast['lower_80']:,.6g} - {forecast['upper_80']:,.6g}"}
        assert meta["source"] == "simulated" and meta["simulated"] is True
        assert meta["last"] == "2025-06-01T12:00:00+00:00" and meta["rows"] == 30 * 24 + 1
        assert "SIMULATED" in (products(project, coin) / "profile.html").read_text()
        assert "SIMULATED" in (products(project, coin) / "01_extract.html").read_text()
    btc = pd.read_parquet(products(project, "bitcoin") / "raw.parquet")
    eth = pd.read_parquet(products(project, "ethereum") / "raw.parquet")
    assert not np.allclose(btc["price"], eth["price"])
    assert (project / "data/history-test/simulated/seed42/bitcoin-usd.parquet").exists()

    stamps = {p: p.stat().st_mtime_ns for p in (project / "products").rglob("*") if p.is_file()}
    again = coincast(project, *DEMO_ARGS)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("up to date: nothing to run") == 2, again.stdout[-2000:]
    assert {coin: row["tasks run"] for coin, row in summary(again.stdout).items()} == {"bitcoin": "0 of 8",
                                                                                       "ethereum": "0 of 8"}
    assert stamps == {p: p.stat().st_mtime_ns for p in (project / "products").rglob("*") if p.is_file()}


def test_bare_ploomber_build_replays_the_real_btc_file(project: Path, tmp_path: Path):
    csv = need_shared(BTC_CSV)
    env = yaml.safe_load((project / "env.yaml").read_text())  # env.yaml's 90 days, env.test.yaml's two models
    env["models"] = yaml.safe_load((project / "env.test.yaml").read_text())["models"]
    (project / "env.yaml").write_text(yaml.safe_dump(env))
    args = [str(BIN / "ploomber"), "build", "--env--source", "replay", "--env--replay_file", str(csv),
            "--env--coin", "bitcoin", "--env--history_dir", str(tmp_path / "history"),
            # a short backtest, in-process, .ipynb notebooks (papermill and HTML: the live-path test)
            "--env--backtest_days", "2", "--env--calibration_days", "1", "--env--notebook_executor", "ploomber-engine",
            "--env--executed_format", "ipynb", "--env--profile_enabled", "false"]  # ydata: test_profiling's full size
    result = run(args, cwd=project)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    meta = assert_complete(project, "bitcoin")
    assert meta["source"] == "replay" and meta["now"] == "2024-06-16T13:00:00+00:00"
    raw = pd.read_parquet(products(project, "bitcoin") / "raw.parquet")
    assert len(raw) == 90 * 24 + 1 and raw["timestamp"].diff().dropna().eq(pd.Timedelta(hours=1)).all()
    # 2024-06-16 12:00+03:00 candle = 09:00 UTC open, observed at its close, 10:00 UTC
    source = pd.read_csv(csv).set_index("open_time")
    assert raw.set_index("timestamp").loc[pd.Timestamp("2024-06-16T10:00Z"), "price"] == source.loc["2024-06-16 12:00:00+03:00", "close"]

    again = run(args, cwd=project)
    assert again.returncode == 0
    table = again.stdout[again.stdout.index("Ran?"):]
    assert "True" not in table, table  # every task up to date


def test_live_path_against_a_local_coingecko_never_leaks_the_key(project: Path, tmp_path: Path):
    """Also the papermill smoke build: each notebook in its own Jupyter kernel, as in Jupyter and `make demo`."""
    secret = "CG-SENTINEL-key-7f3a9"
    now = pd.Timestamp("2023-06-01T12:20Z")
    with FakeCoinGecko({"bitcoin": simulate_hourly("bitcoin", 24 * 160)}, now=now) as server:
        env = {"COINGECKO_BASE_URL": server.url, "COINGECKO_API_KEY": secret, "COINGECKO_API_PLAN": "demo"}
        result = coincast(project, "--env", "env.test.yaml", "--source", "coingecko", "--coins", "bitcoin",
                          "--replay-now", now.isoformat(), "--set", "days=20", "--set", f"history_dir={tmp_path / 'h'}",
                          "--set", "notebook_executor=papermill", "--set", "executed_format=html",
                          *WITH_PROPHET, env=env)  # the profile off (env.test.yaml): the session demo runs ydata
        seen = list(server.requests)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    console = result.stdout + result.stderr  # a kernel per notebook, and none of their start-up noise shown
    assert len(progress(result.stdout)) == 8 and len(console.splitlines()) < 20, console
    for noise in NOISE:
        assert noise not in console, console
    meta = assert_complete(project, "bitcoin", "html")  # make demo's notebooks: papermill, exported to HTML
    assert meta["source"] == "coingecko" and meta["rows"] == 20 * 24 + 1
    fan = (project / "products" / "bitcoin" / "06_forecast.html").read_text()  # a kernel's plot: inline, offline
    assert "plotly-graph-div" in fan and "window.Plotly" in fan
    assert seen and all(r.headers.get("x-cg-demo-api-key") == secret for r in seen)
    # a clock in the past: /range (market_chart?days counts back from the real present), integer UNIX bounds
    assert seen[0].path == "/coins/bitcoin/market_chart/range"
    assert int(seen[0].query["to"]) == int(now.timestamp()) and int(seen[0].query["from"]) <= int(now.timestamp()) - 20 * 86400
    assert secret not in result.stdout + result.stderr
    leaks = [p for p in list(project.rglob("*")) + list(tmp_path.rglob("*"))
             if p.is_file() and secret.encode() in p.read_bytes()]
    assert leaks == []


def test_coins_side_by_side_one_failing_does_not_stop_the_other(project: Path, tmp_path: Path):
    now = pd.Timestamp("2023-06-01T12:20Z")
    with FakeCoinGecko({"bitcoin": simulate_hourly("bitcoin", 24 * 160)}, now=now) as server:
        env = {"COINGECKO_BASE_URL": server.url, "COINGECKO_API_KEY": "", "COINGECKO_API_PLAN": "demo"}
        result = coincast(project, "--env", "env.test.yaml", "--source", "coingecko", "--coins", "nosuchcoin,bitcoin",
                          "--replay-now", now.isoformat(), "--set", "days=20", "--set", f"history_dir={tmp_path / 'h'}",
                          "--set", "coin_jobs=2", env=env)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "building 2 coins, 2 at a time" in result.stdout
    lines = progress(result.stdout)
    assert ("bitcoin", "extract", "done") in lines and ("bitcoin", "publish", "done") in lines
    table = summary(result.stdout)
    assert table["bitcoin"]["tasks run"] == "8 of 8" and table["bitcoin"]["gate"] == "passed"
    assert table["nosuchcoin"]["tasks run"] == "0 of 8, extract failed" and table["nosuchcoin"]["gate"] == "-"
    failed = [line for line in result.stderr.splitlines() if line.startswith("coincast: nosuchcoin: ")]
    assert len(failed) == 1 and "build failed" in failed[0] and "not found" in failed[0], result.stderr[-3000:]
    meta = assert_complete(project, "bitcoin")
    assert meta["rows"] == 20 * 24 + 1
    assert not (products(project, "nosuchcoin") / "validation.json").exists()
    # each coin's output printed whole, one coin after the other, then the summary
    assert lines[0] == ("nosuchcoin", "extract", "FAILED") and all(coin == "bitcoin" for coin, _, _ in lines[1:])
    assert result.stdout.index("  nosuchcoin ") < result.stdout.index("  bitcoin ") < result.stdout.index("\ncoin ")


def test_no_network_fails_fast_with_a_hint(project: Path, tmp_path: Path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"COINGECKO_BASE_URL": f"http://127.0.0.1:{port}/api/v3", "COINGECKO_API_KEY": ""}
    result = coincast(project, "--env", "env.test.yaml", "--source", "coingecko", "--coins", "bitcoin",
                      "--set", f"history_dir={tmp_path / 'h'}", "--set", "fetch_retries=1",  # one retry, 1 s
                      env=env)  # in-process: no kernel to start
    assert result.returncode == 1
    assert not (products(project, "bitcoin") / "validation.json").exists()
    # one line a person can act on; Ploomber's traceback goes to the build log, not above it
    assert "Traceback" not in result.stderr and "DAG build failed" not in result.stderr, result.stderr[-3000:]
    [verdict] = [line for line in result.stderr.splitlines() if line.startswith("coincast: bitcoin:")]
    assert verdict.startswith("coincast: bitcoin: build failed: CoinGeckoError: cannot reach 127.0.0.1"), verdict
    assert "make demo" in verdict and "Nothing was lost" in verdict and verdict.endswith("logs/build.log)")
    assert "gave up after 2 attempt(s)" in verdict  # fetch_retries
    log = (project / "logs" / "build.log").read_text()
    assert "Traceback" in log and "CoinGeckoError" in log
    failure = json.loads((products(project, "bitcoin") / "failed.json").read_text())  # for the dashboard
    assert failure["reason"] in verdict and failure["source"] == "coingecko"


def test_bad_configuration_is_one_line(project: Path):
    result = coincast(project, "--set", "days=abc")
    assert result.returncode == 2
    assert result.stderr.strip() == "coincast: configuration error: days must be a positive whole number of days, got 'abc'"
    result = coincast(project, "--coins", "")
    assert result.returncode == 2 and result.stderr.startswith("coincast: configuration error: --coins names no coin")
    # a key no request could carry: refused before a lock, a log or a fetch, and never shown
    result = coincast(project, "--set", "source=coingecko", env={"COINGECKO_API_KEY": "CG-SENTINEL\x01x"})
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("coincast: configuration error: COINGECKO_API_KEY is not a valid key: it contains")
    assert "SENTINEL" not in result.stdout + result.stderr and not (project / "logs").exists()
    # more history than the demo plan reaches: refused at the start too, not by CoinGecko a minute in
    result = coincast(project, "--set", "source=coingecko", "--set", "days=400",
                      env={"COINGECKO_API_KEY": "", "COINGECKO_API_PLAN": "demo"})
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "days=400 reaches back further than CoinGecko's demo plan and public API do (365 days)" in result.stderr


def test_a_copied_project_keeps_its_mlflow_artifacts_to_itself(demo: Path, demo_copy: Path):
    import sqlite3

    with sqlite3.connect(demo_copy / "mlflow.db") as db:
        where = [v for q in ("SELECT artifact_location FROM experiments", "SELECT artifact_uri FROM runs",
                             "SELECT storage_location FROM model_versions") for (v,) in db.execute(q) if v]
    assert where and all(str(demo_copy) in v and str(demo) + "/" not in v for v in where), where[:3]


def test_settings_are_checked_before_any_task_even_when_not_due(demo_copy: Path):
    project = demo_copy
    """A bad model list or horizon is an error at the start, not at the next retrain a day later."""
    args = ["--env", "env.test.yaml"]  # the demo's champion is fresh: the next build is not due to train
    stamp = {p: p.stat().st_mtime_ns for p in products(project, "bitcoin").iterdir()}
    for bad, message in (("models=[{kind: nosuch}]", "models: unknown model kind 'nosuch'"),
                         ("models=[{kind: naive}, {kind: drift, window: abc}]",
                          "models: bad settings for model 'drift': window: input should be a valid integer, got 'abc'"),
                         ("horizons=[0]", "horizons must be a non-empty list of distinct positive whole hours")):
        result = coincast(project, *args, "--set", bad)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert message in result.stderr
    # a bare `ploomber build` stops at render (its DAG on_render hook), before any task ran
    bare = run([str(BIN / "ploomber"), "build", "--env--horizons", "[0]"], cwd=project)
    assert bare.returncode != 0
    assert "horizons must be a non-empty list of distinct positive whole hours, e.g. [1, 24], got [0]" in (
        bare.stdout + bare.stderr)
    assert stamp == {p: p.stat().st_mtime_ns for p in products(project, "bitcoin").iterdir()}


def test_ploomber_plot_draws_the_pipeline(project: Path, tmp_path: Path):
    """`ploomber plot` (docs/operations.md) works with the pinned networkx (3.6 renamed the key Ploomber reads)."""
    out = tmp_path / "pipeline.html"
    result = run([str(BIN / "ploomber"), "plot", "--output", str(out)], cwd=project)
    assert result.returncode == 0, result.stderr[-2000:]
    assert all(task in out.read_text() for task in ("extract", "validate", "features", "train", "forecast"))


# --- the gate, end to end: one bad-data class (each class is a unit test in tests/test_validation.py) ----------

GATE_ARGS = ["--env", "env.test.yaml", "--coins", "bitcoin", "--set", "replay_now=null"]


def test_gate_stops_the_build_and_keeps_downstream_products(demo_copy: Path, tmp_path: Path):
    """A replay whose prices jump 60 % in an hour after a good build: the build stops at the gate with the check
    named in one line; every downstream product and the published snapshot stay as the good build left them."""
    project = demo_copy
    out = products(project, "bitcoin")
    downstream = ["features.parquet", "03_features.html", "profile.html", "04_profile.html", "backtest.json",
                  "registry.json", "forecast.parquet", "05_train.html", "06_forecast.html"]
    before = {name: (out / name).read_bytes() for name in downstream}
    published = {p.name: p.read_bytes() for p in (out / "published").iterdir()}
    bad = simulate_hourly("bitcoin", 24 * 30, seed=7)
    bad["timestamp"] = bad["timestamp"].dt.floor("h")
    bad.loc[400:, "price"] *= 1.6
    csv = tmp_path / "bad_jumps.csv"
    bad.to_csv(csv, index=False)
    result = coincast(project, *GATE_ARGS, "--replay-file", str(csv), "--set", f"history_dir={tmp_path / 'h'}")
    assert result.returncode == 1
    verdict = [line for line in result.stderr.splitlines() if "validation gate failed" in line]
    assert len(verdict) == 1 and "jumps (" in verdict[0], result.stderr[-2000:]
    # the one-line reason, with no traceback above it (it goes to logs/build.log)
    assert "Traceback" not in result.stdout + result.stderr and "DAG build failed" not in result.stderr
    assert progress(result.stdout)[-1] == ("bitcoin", "validate", "FAILED")
    assert summary(result.stdout)["bitcoin"]["gate"] == "FAILED"
    report = json.loads((out / "validation.json").read_text())
    assert report["failed"] == ["jumps"] and not report["passed"]
    assert before == {name: (out / name).read_bytes() for name in downstream}
    assert published == {p.name: p.read_bytes() for p in (out / "published").iterdir()}  # what is shown: unchanged


def test_cross_coin_features_reach_the_feature_based_models(demo_copy: Path):
    """cross_coins on, for a built two-coin project (both raw histories stored): each coin's features.parquet gets the
    other coin's lagged log returns, and the backtest's LightGBM reads them (named in its settings, so it is another
    model than LightGBM without them); the forecast and monitor tasks run on."""
    project = demo_copy
    args = ["--env", "env.test.yaml", "--coins", "bitcoin,ethereum", "--set", "cross_coins=[bitcoin, ethereum]", "--set", "retrain_every_hours=0",
            "--set", "models=[{kind: naive}, {kind: lightgbm, window_days: 7, n_estimators: 40}]"]
    result = coincast(project, *args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for coin, other in (("bitcoin", "ethereum"), ("ethereum", "bitcoin")):
        features = pd.read_parquet(products(project, coin) / "features.parquet")
        cross = [c for c in features.columns if c.startswith("cross_")]
        assert cross == [f"cross_{other}_log_return_{k}h" for k in (1, 3, 6, 12, 24)]
        assert features[cross].iloc[-1].notna().all()
        models = json.loads((products(project, coin) / "backtest.json").read_text())["models"]
        (lgb,) = [name for name in models if name.startswith("lightgbm-")]
        assert models[lgb]["spec"]["exog"] == sorted(cross)
        assert np.isfinite(pd.read_parquet(products(project, coin) / "forecast.parquet")["forecast"]).all()

"""MLflow tracking and registry: one run per build, the gate applied to the registry, the champion round trip and
serving (the promotion rule itself, without MLflow: test_promotion.py).

Real MLflow on a sqlite store in a temporary folder (one store for the module: creating its tables takes
seconds); every test uses its own coin, so its registered model ``coincast-<coin>`` is its own.
"""
from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import hourly_frame

import mlflow  # noqa: E402  (conftest switched telemetry off first)
from mlflow.tracking import MlflowClient  # noqa: E402

from coincast import registry  # noqa: E402
from coincast.forecasting.models import make_model  # noqa: E402
from coincast.registry import tracking, versions  # noqa: E402
from coincast.forecasting.serving import ServedForecaster, hourly_series  # noqa: E402

QUANTILES = {1: {"80": 1.3, "95": 2.0}, 24: {"80": 1.3, "95": 2.1}}
SPECS = {
    "naive": {"kind": "naive"},
    "drift": {"kind": "drift", "window": 24},
    "seasonal_naive": {"kind": "seasonal_naive"},
}
#: the registry knows a model by its identity (kind + settings hash): the names the tests use, to those
ID = {alias: make_model(spec).name for alias, spec in SPECS.items()}
DATA_THROUGH = "2024-01-13T11:00:00+00:00"
LEVEL = 0.05
ORIGINS = pd.date_range(end=DATA_THROUGH, periods=240, freq="h")
NAIVE_ERRORS = np.abs(np.random.default_rng(0).normal(0, 1, len(ORIGINS))) + 0.05
MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")


# --- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """configure() on a fresh local store; the working directory is an empty folder that must stay empty."""
    root = tmp_path_factory.mktemp("mlstore")
    cwd = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as mp:
        for key in MLFLOW_ENV:  # set first so that leaving the context restores (or removes) them
            mp.setenv(key, "placeholder")
            mp.delenv(key)
        mp.chdir(cwd)
        experiment_id = registry.configure(root)
        yield {"root": root, "cwd": cwd, "uri": registry.tracking_uri(root), "experiment_id": experiment_id}
        if mlflow.active_run():
            mlflow.end_run()


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return hourly_frame(300)[["timestamp", "price"]]


@pytest.fixture(scope="module")
def served(history) -> dict[str, ServedForecaster]:
    y = hourly_series(history)
    return {ID[alias]: ServedForecaster(make_model(spec).fit(y), QUANTILES) for alias, spec in SPECS.items()}


def backtest(rel_1h: dict[str, float | None], rel_24h: dict[str, float] | None = None) -> dict:
    """A backtest summary as the pipeline writes it (JSON keys: horizons are strings), by alias (``ID``)."""
    models = {}
    for alias, rel in rel_1h.items():
        h1 = {"mae": 0.1, "coverage_80": 0.79, "coverage_95": 0.94, "rel_crps": 0.97, "rel_interval_score_95": None}
        if rel is not None:
            h1["rel_mae"] = rel
        models[ID[alias]] = {"spec": SPECS[alias], "horizons": {
            "1": h1, "24": {"mae": 0.5, "rel_mae": (rel_24h or {}).get(alias, 1.0)}}}
    return {"data_through": DATA_THROUGH, "models": models}


def errors(rel_1h: dict[str, float | None], noisy: tuple[str, ...] = ()) -> pd.DataFrame:
    """The backtest's 1 h absolute errors by origin (``errors_by_origin``'s shape) that go with ``rel_1h``: each
    model's are naive's times its rel_mae, so an edge is an edge at every origin (far beyond noise); a ``noisy``
    model's are also scattered by ±50 % at random origin by origin (an edge of a fraction of a percent is noise)."""
    rng = np.random.default_rng(1)
    cols = {}
    for alias, rel in rel_1h.items():
        scatter = rng.uniform(0.5, 1.5, len(ORIGINS)) if alias in noisy else 1.0
        cols[ID[alias]] = NAIVE_ERRORS * (1.0 if rel is None else rel) * scatter
    return pd.DataFrame(cols, index=pd.Index(ORIGINS, name="origin"))


def promote(coin: str, run_id: str, summary: dict, served: dict, rel_1h: dict, noisy: tuple[str, ...] = ()) -> dict:
    return registry.promote(coin, run_id, summary, served, errors(rel_1h, noisy), LEVEL)


def build(coin: str, served: dict, rel_1h: dict, rel_24h: dict | None = None, noisy: tuple[str, ...] = ()) -> dict:
    run_id = registry.log_build(coin, {"coin": coin}, {}, [], {"data_through": DATA_THROUGH})
    result = promote(coin, run_id, backtest(rel_1h, rel_24h), served, rel_1h, noisy)
    json.dumps(result)  # JSON ready
    return result


def aliases(coin: str) -> dict[str, str]:
    # RegisteredModel.aliases maps to int versions (ModelVersion.version is a str)
    return {k: str(v) for k, v in tracking.client().get_registered_model(f"coincast-{coin}").aliases.items()}


def version(coin: str, v: str):
    return tracking.client().get_model_version(f"coincast-{coin}", v)


def iso_history(history: pd.DataFrame) -> pd.DataFrame:
    return history.assign(timestamp=[t.isoformat() for t in history["timestamp"]])


# --- tracking ---------------------------------------------------------------------------------------
def test_a_new_sqlite_store_is_a_copy_of_an_empty_one_and_the_same_as_mlflow_makes(tmp_path, monkeypatch):
    """configure() on a new local store copies an empty store MLflow made once (per MLflow version, in
    COINCAST_CACHE_DIR) instead of replaying MLflow's migrations: the same tables, the same Default experiment
    (with this store's own artifact root) and experiment ids, and an existing store is never replaced."""
    import sqlite3

    from coincast.registry import sqlite_template

    for key in MLFLOW_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("COINCAST_CACHE_DIR", str(tmp_path / "cache"))
    template = sqlite_template.template_path()
    assert template.parent == tmp_path / "cache" and mlflow.__version__ in template.name

    def schema(db: Path) -> list:  # each table's and index's DDL, line by line in any order: MLflow's migrations
        with sqlite3.connect(db) as conn:  # write a table's CHECK constraints in an order that varies by process
            return sorted((kind, name, sorted(line.strip().rstrip(",") for line in (sql or "").splitlines()))
                          for kind, name, sql in conn.execute("SELECT type, name, sql FROM sqlite_master "
                                                              "WHERE name NOT LIKE 'sqlite_%'"))

    made_by_mlflow = tmp_path / "mlflow" / "mlflow.db"
    made_by_mlflow.parent.mkdir()
    MlflowClient(f"sqlite:///{made_by_mlflow}").search_experiments()  # MLflow's own migrations
    copied = tmp_path / "project"
    assert registry.configure(copied) == "1" and template.is_file()
    assert schema(copied / "mlflow.db") == schema(made_by_mlflow)
    with sqlite3.connect(copied / "mlflow.db") as a, sqlite3.connect(made_by_mlflow) as b:
        assert a.execute("SELECT * FROM alembic_version").fetchall() == b.execute(
            "SELECT * FROM alembic_version").fetchall()
    client = MlflowClient(registry.tracking_uri(copied))
    default = client.get_experiment("0")
    assert default.name == "Default" and default.lifecycle_stage == "active"
    assert "cache" not in default.artifact_location  # not the folder the template was made in
    assert client.get_experiment("1").name == "coincast"

    # a second store copies the same template (made once); a store that exists is opened as it is
    stamp = template.stat().st_mtime_ns
    assert sqlite_template.seed(registry.tracking_uri(tmp_path / "other")) and template.stat().st_mtime_ns == stamp
    before = (copied / "mlflow.db").read_bytes()
    assert not sqlite_template.seed(registry.tracking_uri(copied)) and (copied / "mlflow.db").read_bytes() == before
    assert not sqlite_template.seed("postgresql+psycopg2://u@h/db") and not sqlite_template.seed("http://127.0.0.1:5000")
    # a cache that cannot be written leaves the store to MLflow
    monkeypatch.setenv("COINCAST_CACHE_DIR", str(template / "x"))
    assert not sqlite_template.seed(registry.tracking_uri(tmp_path / "third"))
    assert registry.configure(tmp_path / "third") == "1"


def test_tracking_uri(tmp_path, monkeypatch, store):
    # configure() remembers the store for this process; MLflow's process-wide URI (which mlflow would export as
    # MLFLOW_TRACKING_URI, to be mistaken for a user's setting) is left alone
    assert "MLFLOW_TRACKING_URI" not in os.environ and tracking.store_uri() == store["uri"]
    assert registry.tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve().as_posix()}/mlflow.db"
    assert store["uri"] == f"sqlite:///{store['root'].resolve().as_posix()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://dagshub.com/someone/coincast.mlflow")
    assert registry.tracking_uri(tmp_path) == "https://dagshub.com/someone/coincast.mlflow"
    assert registry.redact_uri("https://user:token@dagshub.com/x.mlflow?k=v") == "https://***@dagshub.com/x.mlflow"
    exp = MlflowClient(store["uri"]).get_experiment(store["experiment_id"])
    assert exp.name == "coincast"
    assert exp.artifact_location == (store["root"] / "mlartifacts").resolve().as_uri()


def test_fluent_scopes_mlflow_global_uri(monkeypatch, store):
    """MLflow's process-wide URI points at the store only inside fluent() (and a log_build); a user's
    MLFLOW_TRACKING_URI survives the block."""
    outside = mlflow.get_tracking_uri()
    with tracking.fluent() as uri:
        assert uri == store["uri"] == mlflow.get_tracking_uri() == os.environ["MLFLOW_TRACKING_URI"]
    registry.log_build("fluentcoin", {"coin": "fluentcoin"}, {}, [], {"data_through": DATA_THROUGH})
    assert mlflow.get_tracking_uri() == outside and "MLFLOW_TRACKING_URI" not in os.environ
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://example.org/mlflow")
    with tracking.fluent(store["uri"]):
        assert mlflow.get_tracking_uri() == store["uri"]
    assert os.environ["MLFLOW_TRACKING_URI"] == "https://example.org/mlflow" == mlflow.get_tracking_uri()


def test_live_metrics_go_to_one_run_per_coin_and_series(store):
    """The prediction log is kept per series, so are its live metrics: a simulated replay's and a live series' are
    never points of one run (before, the run of ``bitcoin`` took both, and its latest values were the other
    series')."""
    t = pd.Timestamp("2024-05-01T03:05Z")
    a = registry.log_live("seriesbtc", {"live_n_1h": 120}, t, {"model_version": "1"}, series="simulated/seed42/usd")
    b = registry.log_live("seriesbtc", {"live_n_1h": 6}, t, {"model_version": "7"}, series="replay/BTCUSDT/usd")
    again = registry.log_live("seriesbtc", {"live_n_1h": 7}, t + pd.Timedelta(hours=1), {"model_version": "7"},
                              series="replay/BTCUSDT/usd")
    assert a != b == again
    client = tracking.client()
    assert [m.value for m in client.get_metric_history(b, "live_n_1h")] == [6, 7]
    assert client.get_run(a).data.metrics["live_n_1h"] == 120
    assert client.get_run(b).data.tags["coincast.live_series"] == "replay/BTCUSDT/usd"
    assert registry.series_label({"source": "replay", "series": "BTCUSDT", "vs_currency": "usd"}) == "replay/BTCUSDT/usd"


def test_log_build(tmp_path, store):
    notebook = tmp_path / "05_train.html"
    notebook.write_text("<html><body>report</body></html>")
    summary = tmp_path / "backtest.json"
    summary.write_text("{}")
    params = {
        "coin": "logcoin", "days": 90, "models": [{"kind": "naive"}, {"kind": "drift", "window": 24}],
        "backtest": {"origins": 200, "refit_every": 24}, "notes": "x" * 7000, "source (live)": "coingecko",
    }
    metrics = {
        "prophet_seasonal.h1.rel_mae": 0.9931, "naive.h1.mae": 12.5, "naive.h24.rel_mae": 1.0,
        "drift.h1.coverage_80": np.float64(0.8), "bad%name(x)": 2.0,
        "prophet_default.h1.rel_mae": float("nan"), "inf.h1.mae": math.inf, "none.h1.mae": None,
    }
    tags = {"source": "simulated", "data_through": DATA_THROUGH, "git_commit": "abc1234"}
    run_id = registry.log_build("logcoin", params, metrics, [notebook, summary, tmp_path / "missing.html"], tags)

    run = tracking.client().get_run(run_id)
    assert run.info.run_name == "logcoin-2024-01-13T1100Z"
    assert run.info.status == "FINISHED"
    assert run.info.experiment_id == store["experiment_id"]
    p = run.data.params
    assert p["days"] == "90"
    assert json.loads(p["models"]) == params["models"]
    assert json.loads(p["backtest"]) == params["backtest"]
    assert len(p["notes"]) == 6000 and p["notes"].endswith("[truncated]")
    assert p["source _live_"] == "coingecko"
    m = run.data.metrics
    assert m["prophet_seasonal.h1.rel_mae"] == pytest.approx(0.9931)
    assert m["naive.h1.mae"] == 12.5 and m["drift.h1.coverage_80"] == 0.8
    assert m["bad_name_x_"] == 2.0
    assert not {"prophet_default.h1.rel_mae", "inf.h1.mae", "none.h1.mae"} & set(m)
    t = run.data.tags
    assert t["coin"] == "logcoin" and t["source"] == "simulated" and t["git_commit"] == "abc1234"
    assert t["data_through"] == DATA_THROUGH

    names = {a.path for a in tracking.client().list_artifacts(run_id)}
    assert names == {"05_train.html", "backtest.json", "params.json"}
    assert run.info.artifact_uri.startswith((store["root"] / "mlartifacts").resolve().as_uri())
    local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="params.json",
                                                     dst_path=str(tmp_path / "dl"), tracking_uri=store["uri"]))
    assert json.loads(local.read_text())["notes"] == "x" * 7000  # the full value survives as an artifact
    assert list(store["cwd"].iterdir()) == []  # nothing written to the working directory


# --- registry -------------------------------------------------------------------------------------
def test_promotion_gate(store, served):
    coin = "gatecoin"
    # build 1: drift beats naive, no champion yet
    r1 = build(coin, served, {"naive": 1.0, "drift": 0.98})
    assert r1["registered_model"] == "coincast-gatecoin"
    assert r1["promoted"] is True
    assert r1["challenger"] == {"version": "1", "model_name": ID["drift"], "rel_mae_1h": 0.98}
    assert r1["champion"] == r1["challenger"]
    assert aliases(coin) == {"champion": "1", "challenger": "1"}
    v1 = version(coin, "1")
    assert v1.tags["model_name"] == ID["drift"] and json.loads(v1.tags["spec"]) == SPECS["drift"]
    assert float(v1.tags["rel_mae_1h"]) == 0.98 and float(v1.tags["rel_mae_24h"]) == 1.0
    assert float(v1.tags["coverage_80_1h"]) == 0.79 and float(v1.tags["coverage_95_1h"]) == 0.94
    assert float(v1.tags["rel_crps_1h"]) == 0.97 and "rel_interval_score_95_1h" not in v1.tags  # None: no tag
    assert v1.tags["data_through"] == DATA_THROUGH
    assert json.loads(v1.tags["interval_scaling"]) == {"1": "rv24", "24": "rv24"}  # no scalings: the legacy one
    assert v1.tags["promotion_reason"] == r1["reason"] == v1.description
    assert pd.Timestamp(v1.tags["promoted_at"]).tzinfo is not None
    # the decision and its Diebold-Mariano test are on the version and in registry.json, and the reason names them
    test = r1["decision"]["vs_naive"]
    assert r1["decision"]["promoted"] and r1["decision"]["rule"] == "naive_only" and r1["decision"]["vs_champion"] is None
    assert test["p_value"] < LEVEL and test["statistic"] < 0 and test["n"] == len(ORIGINS)
    assert v1.tags["promotion_decision"] == "promoted" and v1.tags["promotion_p_value"] == "0.05"
    assert float(v1.tags["dm_p_value_vs_naive"]) == pytest.approx(test["p_value"], rel=1e-5)
    assert float(v1.tags["dm_statistic_vs_naive"]) == pytest.approx(test["statistic"], rel=1e-5)
    assert f"DM {test['statistic']:.2f}, p {test['p_value']:.3g} < 0.05" in r1["reason"]

    # build 2: the champion's model (drift) scores 0.99 on this backtest; seasonal naive ties it in the first
    # hour and wins on the day, so it is the challenger — a tie does not promote
    r2 = build(coin, served, {"naive": 1.0, "drift": 0.99, "seasonal_naive": 0.99},
               {"drift": 1.02, "seasonal_naive": 0.95})
    assert r2["promoted"] is False
    assert r2["challenger"] == {"version": "2", "model_name": ID["seasonal_naive"], "rel_mae_1h": 0.99}
    assert r2["champion"] == {"version": "1", "model_name": ID["drift"], "rel_mae_1h": 0.99}
    assert aliases(coin) == {"champion": "1", "challenger": "2"}
    v2 = version(coin, "2")
    assert f"ties champion {ID['drift']} (0.9900)" in v2.tags["promotion_reason"]
    assert v2.tags["promotion_decision"] == "not_promoted" and v2.tags["dm_p_value_vs_champion"] == "0.5"
    assert v2.description == v2.tags["promotion_reason"] == r2["reason"]
    assert "promoted_at" not in v2.tags
    # the retraining schedule counts from this training, not from the kept champion's
    assert registry.last_training(coin)["version"] == "2" and registry.champion_info(coin)["version"] == "1"

    # build 3: nothing beats naive -> naive (the build's best) becomes champion
    r3 = build(coin, served, {"naive": 1.0, "drift": 1.03, "seasonal_naive": 1.05})
    assert r3["promoted"] is True
    assert r3["champion"] == {"version": "3", "model_name": "naive", "rel_mae_1h": 1.0}
    assert aliases(coin) == {"champion": "3", "challenger": "3"}
    assert "nothing beats naive" in version(coin, "3").description

    # build 4: drift beats the naive champion
    r4 = build(coin, served, {"naive": 1.0, "drift": 0.97})
    assert r4["promoted"] is True and r4["reason"].startswith(f"{ID['drift']} 1h rel_mae 0.9700 beats champion naive")
    assert aliases(coin) == {"champion": "4", "challenger": "4"}

    # build 5: drift is the best again: its refit replaces the previous drift version
    r5 = build(coin, served, {"naive": 1.0, "drift": 0.985})
    assert r5["promoted"] is True and "refit" in r5["reason"]
    assert aliases(coin) == {"champion": "5", "challenger": "5"}

    # build 6: the champion's model is not in this backtest: the challenger is judged against naive only
    r6 = build(coin, served, {"naive": 1.0, "seasonal_naive": 0.995})
    assert r6["promoted"] is True and "not scored in this backtest" in r6["reason"]
    assert r6["champion"]["model_name"] == ID["seasonal_naive"]
    info = registry.champion_info(coin)
    assert (info["version"], info["model_name"], info["reason"]) == ("6", ID["seasonal_naive"], r6["reason"])

    # build 7: drift below the champion and naive by a fraction of a percent, within noise: the champion stays
    r7 = build(coin, served, {"naive": 1.0, "drift": 0.99, "seasonal_naive": 0.995}, noisy=("drift",))
    assert r7["promoted"] is False and r7["champion"]["version"] == "6" and aliases(coin)["champion"] == "6"
    d7 = r7["decision"]
    assert d7["vs_naive"]["p_value"] >= LEVEL and d7["rule"] == "beats_champion_not_naive"
    # picked from two candidates, the challenger's edge counts below 0.05 / 2 (Bonferroni)
    assert "does not beat naive (1.0000) beyond noise" in r7["reason"] and ">= 0.025 (0.05 / 2 candidates)" in r7["reason"]
    assert d7["candidates"] == 2 and d7["threshold"] == 0.025 and d7["champion_vs_naive"]["p_value"] < LEVEL
    v7 = version(coin, "7")
    assert v7.tags["promotion_decision"] == "not_promoted" and float(v7.tags["dm_p_value_vs_naive"]) >= LEVEL
    assert v7.tags["promotion_candidates"] == "2" and v7.tags["promotion_threshold"] == "0.025"
    assert float(v7.tags["dm_p_value_champion_vs_naive"]) < LEVEL

    # build 8: the champion's own edge over naive is now within noise, and drift has a real one: drift takes over
    # (the champion is held to beating naive whether or not it is the build's best)
    r8 = build(coin, served, {"naive": 1.0, "drift": 0.99, "seasonal_naive": 0.995}, noisy=("seasonal_naive",))
    assert r8["promoted"] is True and r8["decision"]["rule"] == "champion_no_edge"
    assert r8["champion"]["model_name"] == ID["drift"] and aliases(coin)["champion"] == r8["challenger"]["version"]
    assert r8["decision"]["champion_vs_naive"]["p_value"] >= LEVEL
    assert f"champion {ID['seasonal_naive']} (0.9950) no longer beats naive (1.0000) beyond noise" in r8["reason"]


def test_naive_registered_when_nothing_beats_it(store, served):
    """A challenger worse than naive while naive itself was not scored: naive gets its own version."""
    coin = "naivecoin"
    r = build(coin, served, {"naive": None, "drift": 1.02})
    assert r["promoted"] is False
    assert r["challenger"] == {"version": "1", "model_name": ID["drift"], "rel_mae_1h": 1.02}
    assert r["champion"] == {"version": "2", "model_name": "naive", "rel_mae_1h": 1.0}
    assert aliases(coin) == {"champion": "2", "challenger": "1"}
    v1, v2 = version(coin, "1"), version(coin, "2")
    assert v2.tags["model_name"] == "naive" and "promoted_at" in v2.tags
    assert v1.tags["promotion_reason"] == v2.tags["promotion_reason"] == r["reason"]
    # again: the naive champion is kept, not registered a second time
    r2 = build(coin, served, {"naive": None, "drift": 1.01})
    assert r2["champion"] == {"version": "2", "model_name": "naive", "rel_mae_1h": 1.0}
    assert aliases(coin) == {"champion": "2", "challenger": "3"}


def test_champion_round_trip(store, served, history):
    coin = "roundcoin"
    build(coin, served, {"naive": 1.0, "drift": 0.98, "seasonal_naive": 0.99})
    champion, info = registry.load_champion(coin)
    assert isinstance(champion, ServedForecaster)
    assert champion.model.spec == served[ID["drift"]].model.spec and champion.quantiles == QUANTILES
    assert info["version"] == "1" and info["model_name"] == ID["drift"]
    assert info["reason"] and info["promoted_at"]

    recent = history.tail(48)
    fc = champion.forecast(recent)
    assert len(fc) == 24 and list(fc["horizon"]) == list(range(1, 25))
    assert fc["target_time"].iloc[0] == recent["timestamp"].iloc[-1] + pd.Timedelta(hours=1)
    assert (fc["lower_95"] < fc["lower_80"]).all() and (fc["lower_80"] < fc["forecast"]).all()
    assert (fc["forecast"] < fc["upper_80"]).all() and (fc["upper_80"] < fc["upper_95"]).all()
    pd.testing.assert_frame_equal(fc, served[ID["drift"]].forecast(recent))

    # the pyfunc, as `mlflow models serve` runs it: ISO strings in, JSON-friendly frame out
    with tracking.fluent(store["uri"]):
        pyfunc = mlflow.pyfunc.load_model(f"models:/coincast-{coin}@champion")
    out = pyfunc.predict(iso_history(recent))
    assert list(out.columns) == list(fc.columns) and len(out) == 24
    assert out["target_time"].tolist() == [t.isoformat() for t in fc["target_time"]]
    np.testing.assert_allclose(out[["forecast", "lower_95", "upper_95"]], fc[["forecast", "lower_95", "upper_95"]])
    assert len(pyfunc.predict(recent, params={"max_horizon": 6})) == 6  # datetimes work too
    with pytest.raises(Exception, match="needs 25 hours"):
        pyfunc.predict(iso_history(recent.tail(10)))


def test_load_champion_loads_each_version_once(store, served, monkeypatch):
    """The forecast and monitor tasks of an in-process tick both ask for the champion: its version is loaded
    from the store once per process; a newly promoted version is loaded (and served) at once."""
    coin = "oncecoin"
    build(coin, served, {"naive": 1.0, "drift": 0.98})
    loads = []
    real = mlflow.artifacts.download_artifacts  # a version is fetched from the store, then loaded from its folder
    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", lambda *a, **k: (
        loads.append(k.get("artifact_uri", a[0] if a else None))) or real(*a, **k))
    first, info = registry.load_champion(coin)
    again, info_again = registry.load_champion(coin)
    assert again is first and info_again == info and loads == [f"models:/coincast-{coin}/1"]
    assert first.name == ID["drift"]
    build(coin, served, {"naive": 1.0, "drift": 0.99, "seasonal_naive": 0.95})  # a better model is promoted
    newer, newer_info = registry.load_champion(coin)
    assert newer_info["version"] != info["version"] and newer.name == ID["seasonal_naive"]
    assert loads == [f"models:/coincast-{coin}/1", f"models:/coincast-{coin}/{newer_info['version']}"]


def test_a_version_logged_with_other_packages_is_served_with_a_warning_naming_them(store, served, caplog,
                                                                                   monkeypatch):
    """The pins a version was logged with (its requirements.txt) are checked against the installed packages when it
    is loaded. MLflow's own check is off when a version is logged and when it is loaded: it maps every installed
    distribution first (~0.7 s a process); the map is never made."""
    from importlib import metadata

    from mlflow.utils import requirements_utils

    from coincast.registry.pyfunc import requirement_mismatches

    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)  # as in a fresh process

    numpy = metadata.version("numpy")
    assert requirement_mismatches([f"numpy=={numpy}", "pandas", ""]) == []
    assert requirement_mismatches(["numpy==0.0.1", "no-such-package-xyz==1.0"]) == [
        f"numpy==0.0.1 (installed: {numpy})", "no-such-package-xyz==1.0 (installed: none)"]

    coin = "pincoin"
    info = build(coin, served, {"naive": 1.0, "drift": 0.98})["champion"]
    with caplog.at_level("WARNING", logger="coincast.registry.pyfunc"):
        registry.load_champion(coin)
    assert not [r for r in caplog.records if "other packages" in r.getMessage()]
    assert requirements_utils._MODULES_TO_PACKAGES is None  # logged and loaded without MLflow's scan
    # the stored copy of the version (a load downloads one; its MLmodel names where the store keeps it)
    with tracking.fluent(store["uri"]):
        fetched = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/coincast-{coin}/{info['version']}"))
    where = next(line.split(": ", 1)[1] for line in (fetched / "MLmodel").read_text().splitlines()
                 if line.startswith("artifact_path: file://"))
    stored = [Path(where.removeprefix("file://")) / "requirements.txt"]
    assert stored[0].is_file() and str(stored[0]).startswith(str(store["root"]))
    stored[0].write_text(stored[0].read_text().replace(f"numpy=={numpy}", "numpy==0.0.1"))
    versions._load_version.cache_clear()
    caplog.clear()
    with caplog.at_level("WARNING", logger="coincast.registry.pyfunc"):
        served_model, _ = registry.load_champion(coin)
    warned = [r.getMessage() for r in caplog.records if "other packages" in r.getMessage()]
    assert len(warned) == 1 and f"numpy==0.0.1 (installed: {numpy})" in warned[0], warned
    assert served_model.name == ID["drift"]  # served all the same


def test_the_version_in_force_at_an_hour(store, served, monkeypatch):
    """A catch-up prediction is made by the version that was champion at its hour: the current champion if it was
    trained on data up to that hour, else the last promoted version that was; none when all were trained after."""
    coin = "forcecoin"
    t0 = pd.Timestamp("2024-01-10T00:00Z")

    def build_at(hours: int, rel: dict, rel_24h: dict | None = None) -> dict:
        through = (t0 + pd.Timedelta(hours=hours)).isoformat()
        run_id = registry.log_build(coin, {"coin": coin}, {}, [], {"data_through": through})
        return promote(coin, run_id, {**backtest(rel, rel_24h), "data_through": through}, served, rel)

    assert build_at(0, {"naive": 1.0, "drift": 0.98})["champion"]["version"] == "1"  # drift, data through t0
    # v2 (a tie at 1 h, the challenger for its day-ahead score) is never champion
    assert not build_at(5, {"naive": 1.0, "drift": 0.99, "seasonal_naive": 0.99}, {"seasonal_naive": 0.9})["promoted"]
    assert build_at(10, {"naive": 1.0, "seasonal_naive": 0.97})["champion"]["version"] == "3"
    history = registry.champion_versions(coin)
    assert [v["version"] for v in history] == ["1", "3"]
    champion = registry.champion_info(coin)
    at = {h: registry.version_in_force(champion, history, t0 + pd.Timedelta(hours=h)) for h in (-1, 0, 7, 9, 10, 30)}
    assert at[-1] is None and at[0]["version"] == at[7]["version"] == at[9]["version"] == "1"
    assert at[10] == at[30] == champion
    # loaded models: the older version for an hour before the retrain, the champion from it on
    old, old_info = registry.load_version_in_force(coin, t0 + pd.Timedelta(hours=9))
    assert (old_info["version"], old.name) == ("1", ID["drift"])
    now, now_info = registry.load_version_in_force(coin, "2024-01-10T10:00Z")
    assert (now_info["version"], now.name) == ("3", ID["seasonal_naive"])
    assert registry.load_version_in_force(coin, t0 - pd.Timedelta(hours=1)) is None
    # the history is read from the registry only for hours before the champion's data
    reads = []
    real = versions.champion_versions
    monkeypatch.setattr(versions, "champion_versions", lambda c: reads.append(c) or real(c))
    pick = registry.in_force_at(coin, champion)
    assert pick(t0 + pd.Timedelta(hours=11))[1]["version"] == "3" and reads == []
    assert pick(t0 + pd.Timedelta(hours=3))[1]["version"] == "1" and pick(t0)[1]["version"] == "1"
    assert reads == [coin]
    assert not registry.series_differs(champion, {"source": "coingecko"})  # no series tags here: no claim


def test_a_version_of_another_series_is_never_in_force(store, served):
    """One registry per coin: after a simulated champion, a live one; a live catch-up hour before the live
    champion's data has no version in force (the simulated one was trained on another series)."""
    coin = "seriescoin"
    t0 = pd.Timestamp("2024-01-10T00:00Z")
    for hours, source, series in ((0, "simulated", "seed42"), (10, "coingecko", "api")):
        through = (t0 + pd.Timedelta(hours=hours)).isoformat()
        run_id = registry.log_build(coin, {"coin": coin}, {}, [], {"data_through": through})
        rel = {"naive": 1.0, "drift": 0.98 - hours / 1000}
        promote(coin, run_id, {**backtest(rel), "data_through": through, "source": source, "series": series},
                served, rel)
    champion = registry.champion_info(coin)
    assert (champion["version"], champion["source"], champion["series"]) == ("2", "coingecko", "api")
    pick = registry.in_force_at(coin, champion)
    assert pick(t0 + pd.Timedelta(hours=5)) is None  # v1 is simulated: never used for live hours
    assert pick(t0 + pd.Timedelta(hours=12))[1]["version"] == "2"


def test_a_champion_of_another_series_is_replaced_not_defended(store, served):
    """A champion the build's data cannot be served by (another series, or trained on later data than a replay's)
    is no rival: the build's naive or best model replaces it even when it scored better, so the next build is
    not due again (before, it stayed, and every tick retrained and registered a challenger)."""
    coin = "movecoin"
    t0 = pd.Timestamp("2024-01-10T00:00Z")

    def build_on(hours: int, series: str, rel: dict, noisy: tuple[str, ...] = ()) -> dict:
        through = (t0 + pd.Timedelta(hours=hours)).isoformat()
        run_id = registry.log_build(coin, {"coin": coin}, {}, [], {"data_through": through})
        return promote(coin, run_id, {**backtest(rel), "data_through": through, "source": "simulated",
                                      "series": series}, served, rel, noisy)

    first = build_on(0, "seed42", {"naive": None, "drift": 1.02})  # naive champion (v2) on the first series
    assert first["champion"] == {"version": "2", "model_name": "naive", "rel_mae_1h": 1.0}
    r = build_on(5, "seed7", {"naive": None, "drift": 1.02})  # nothing beats naive on the new series either
    assert r["champion"] == {"version": "4", "model_name": "naive", "rel_mae_1h": 1.0}  # a naive of seed7's
    info = registry.champion_info(coin)
    assert (info["version"], info["series"]) == ("4", "seed7") and aliases(coin)["champion"] == "4"
    assert registry.cannot_serve(info, {"series": "seed7", "now": (t0 + pd.Timedelta(hours=6)).isoformat()}) is None
    # the same series again: the naive champion is defended as usual, not registered again
    r = build_on(6, "seed7", {"naive": None, "drift": 1.01})
    assert r["champion"]["version"] == "4" and not r["promoted"]
    # a replay of hours before the champion's data: naive of that build replaces it
    r = build_on(2, "seed7", {"naive": None, "drift": 1.01})
    assert r["champion"]["model_name"] == "naive" and r["champion"]["version"] == "7"
    assert registry.champion_info(coin)["data_through"] == (t0 + pd.Timedelta(hours=2)).isoformat()


def test_load_champion_without_one(store):
    with pytest.raises(LookupError, match="no champion"):
        registry.load_champion("nocoin")


# --- serving ----------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: dict, timeout: float = 30) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


@pytest.mark.pipeline
def test_mlflow_models_serve(store, served, history, tmp_path):
    coin = "servecoin"
    build(coin, served, {"naive": 1.0, "drift": 0.98})
    bin_dir = Path(sys.executable).parent
    port = _free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": store["uri"],
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # the scoring server is started as `uvicorn ...` through a shell: it must be on PATH
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log = tmp_path / "serve.log"
    cmd = [str(bin_dir / "mlflow"), "models", "serve", "-m", f"models:/coincast-{coin}@champion",
           "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    base = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow models serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow models serve not up after 90 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)

        recent = history.tail(48)
        body = {"dataframe_split": {"columns": ["timestamp", "price"],
                                    "data": [[t.isoformat(), float(p)] for t, p in zip(recent["timestamp"],
                                                                                         recent["price"])]}}
        got = pd.DataFrame(_post(f"{base}/invocations", body)["predictions"])
        expected = registry.load_champion(coin)[0].forecast(recent)
        assert len(got) == 24 and list(got.columns) == list(expected.columns)
        assert got["horizon"].tolist() == list(range(1, 25))
        assert got["target_time"].tolist() == [t.isoformat() for t in expected["target_time"]]
        cols = ["forecast", "lower_80", "upper_80", "lower_95", "upper_95"]
        np.testing.assert_allclose(got[cols].to_numpy(), expected[cols].to_numpy(), rtol=1e-9)

        short = _post(f"{base}/invocations", {**body, "params": {"max_horizon": 3}})["predictions"]
        assert [row["horizon"] for row in short] == [1, 2, 3]
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


def test_a_registered_model_tag_or_alias_inserted_by_two_workers_at_once_is_retried():
    """The messages MLflow's SQL stores give when two workers insert the same alias or model tag (seen on the shared
    PostgreSQL server in tests/test_services.py) are retried; other errors are not."""
    from mlflow.exceptions import MlflowException

    from coincast.registry.versions import _insert_race

    postgres = ('BAD_REQUEST: (psycopg2.errors.UniqueViolation) duplicate key value violates unique constraint '
                '"registered_model_tag_pk" DETAIL: Key (workspace, key, name)=(default, coin, coincast-racecoin)')
    assert _insert_race(MlflowException(postgres))
    assert _insert_race(MlflowException("UNIQUE constraint failed: registered_model_aliases.name"))
    assert not _insert_race(MlflowException("RESOURCE_DOES_NOT_EXIST: model not found"))
    assert not _insert_race(ValueError(postgres))

"""coincast.dashboard.data: finding the project and its coins, reading a coin's products and MLflow (read-only)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from coincast.dashboard import data
from coincast.registry import redact_uri
from dashboard_products import live_json, prediction_log, publish_products, write_live, write_products


def test_find_project(tmp_path, monkeypatch):
    monkeypatch.delenv(data.PROJECT_ENV, raising=False)
    (tmp_path / "pipeline.yaml").write_text("tasks: []\n")
    (tmp_path / "notebooks").mkdir()
    assert data.find_project(tmp_path / "notebooks") == tmp_path.resolve()  # Voila's cwd is notebooks/
    bare = tmp_path / "elsewhere" / "notebooks"
    bare.mkdir(parents=True)
    (tmp_path / "pipeline.yaml").unlink()
    assert data.find_project(bare) == bare.parent.resolve()
    monkeypatch.setenv(data.PROJECT_ENV, str(tmp_path))
    assert data.find_project(bare) == tmp_path.resolve()


def test_list_coins_and_settings(tmp_path):
    products = tmp_path / "products"
    assert data.list_coins(products) == []
    for coin in ("litecoin", "ethereum", "bitcoin"):
        (products / coin).mkdir(parents=True)
        (products / coin / "extract.json").write_text("{}")
    (products / "empty").mkdir()
    (products / ".hidden").mkdir()
    (products / "dogecoin" / ".published-x").mkdir(parents=True)  # only a published snapshot
    (products / "dogecoin" / "published").symlink_to(".published-x")
    assert data.list_coins(products) == ["bitcoin", "dogecoin", "ethereum", "litecoin"]
    shutil.rmtree(products / "dogecoin")
    assert data.list_coins(products) == ["bitcoin", "ethereum", "litecoin"]
    assert data.list_coins(products, ["ethereum", "dogecoin", "bitcoin"]) == ["ethereum", "bitcoin", "litecoin"]
    # min_scored_rows is not the dashboard's: live.json carries the one the monitor stage scored with
    (tmp_path / "env.yaml").write_text("coins: [ethereum]\nmax_staleness_hours: 5\nsource: simulated\n"
                                       "min_scored_rows: 12\n")
    assert data.read_settings(tmp_path) == {"coins": ["ethereum"], "max_staleness_hours": 5}
    (tmp_path / "env.yaml").write_text(": not yaml [")
    assert data.read_settings(tmp_path) == {}
    assert data.read_settings(None) == {}


def test_load_coin_reads_the_published_snapshot_and_live_json(tmp_path):
    products = tmp_path / "products"
    frames = write_products(products)
    log = prediction_log(frames["raw"])
    metrics = live_json(log, frames["raw"], 5)
    write_live(products / "bitcoin", log, metrics)
    cp = data.load_coin(products, "bitcoin")
    assert cp.live is None  # not published yet: the snapshot is one build
    publish_products(products / "bitcoin")
    cp = data.load_coin(products, "bitcoin")
    assert cp.live == metrics and cp.problems == []
    assert cp.folder == (products / "bitcoin" / "published").resolve()
    assert str(cp.raw["timestamp"].dt.tz) == "UTC" and cp.profile_bytes == (cp.folder / "profile.html").stat().st_size
    (cp.folder / "live.json").unlink()
    (cp.folder / "live.json").write_text("{broken")
    assert data.load_coin(products, "bitcoin").problems == ["live.json could not be read (JSONDecodeError)"]
    assert data.load_coin(products, "litecoin").folder is None  # nothing published, never raises
    assert data.read_profile(cp.profile_path).startswith("<!doctype html>")


def test_mlflow_champion_never_creates_a_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    info = data.mlflow_champion(tmp_path, "bitcoin")
    assert info == {"ok": False, "message": "no MLflow registry (mlflow.db) in the project"}
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlartifacts").exists()
    assert data.mlflow_champion(None, "bitcoin")["ok"] is False


def test_mlflow_champion_broken_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "mlflow.db").write_text("not a database")
    before = os.environ.get("MLFLOW_TRACKING_URI")
    info = data.mlflow_champion(tmp_path, "bitcoin")
    assert info["ok"] is False and "MLflow could not be read" in info["message"]
    assert os.environ.get("MLFLOW_TRACKING_URI") == before  # no process-wide MLflow state changed
    # a secret in a tracking URI is never shown
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////nonexistent-dir/sub/x.db?token=SECRET")
    info = data.mlflow_champion(tmp_path, "bitcoin")
    assert info["ok"] is False and "SECRET" not in info["message"]
    assert not Path("/nonexistent-dir").exists()  # MLflow would have created the folders and the database
    assert redact_uri("https://user:SECRET@dagshub.com/x.mlflow?token=SECRET2") == "https://***@dagshub.com/x.mlflow"

"""coincast.dashboard.app (the ipywidgets page) on synthetic products, and .serve (the Voila command line)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from coincast import files, patches
from coincast.dashboard import app, render, serve
from conftest import ROOT
from dashboard_products import (T_LAST, find, fmt2, live_json, outputs, prediction_log, publish_products, raw_frame,
                                span, widget_text, write_failed_build, write_live, write_products)


def test_app_without_products(tmp_path):
    for products in (tmp_path / "missing", tmp_path / "empty"):
        if products.name == "empty":
            (products / "bitcoin").mkdir(parents=True)  # a coin folder with nothing in it
        page = app.dashboard(products, tmp_path, mlflow="off")
        text = widget_text(page)
        assert 'id="cc-empty"' in text and "make demo" in text
        assert "cc-forecast" not in text and "Traceback" not in text
    assert re.sub(r"<[^>]+>", "", render.empty_html()).count(".") == 1  # one sentence


def test_app_reads_products_and_refresh(tmp_path, monkeypatch):
    secret = "CG-SENTINEL-dashboard-key"
    monkeypatch.setenv("COINGECKO_API_KEY", secret)
    products = tmp_path / "products"
    frames = write_products(products)
    page = app.dashboard(products, tmp_path, now=T_LAST + pd.Timedelta(hours=1), mlflow="off")
    text = widget_text(page)
    assert secret not in text
    fc = frames["forecast"]
    assert span(text, "cc-forecast")[0] == fmt2(fc["forecast"].iloc[0])
    for needle in ("SIMULATED DATA, NOT LIVE", "Data fresh", "Backtest: champion vs naive", "No live predictions yet",
                   "Gate <span class=\"cc-pass\">PASSED", "version 3", "ydata-profiling report", 'data-reads="1"'):
        assert needle in text, needle
    assert len(outputs(page)) == 2  # the forecast chart and the error by hour
    # refresh re-reads products: a new forecast appears
    new = frames["forecast"].assign(forecast=frames["forecast"]["forecast"] + 100.0)
    files.write_parquet_atomic(new, products / "bitcoin" / "forecast.parquet")
    assert span(widget_text(page), "cc-forecast")[0] == fmt2(fc["forecast"].iloc[0])  # read once per render
    publish_products(products / "bitcoin")
    refresh = find(page, lambda w: "cc-refresh" in getattr(w, "_dom_classes", ()))
    refresh.click()
    text = widget_text(page)
    assert span(text, "cc-forecast")[0] == fmt2(new["forecast"].iloc[0]) and 'data-reads="2"' in text
    # the profile is embedded only on demand
    toggle = find(page, lambda w: "cc-profile-button" in getattr(w, "_dom_classes", ()))
    assert "iframe" not in widget_text(page)
    toggle.value = True
    assert 'class="cc-profile-frame"' in widget_text(page) and "srcdoc=" in widget_text(page)
    toggle.value = False
    assert "iframe" not in widget_text(page)


def test_app_coin_selector_and_live_stale_coin(tmp_path):
    products = tmp_path / "products"
    write_products(products, "bitcoin")
    frames = write_products(products, "litecoin", source="coingecko", seed=3)
    (tmp_path / "env.yaml").write_text("coins: [litecoin, bitcoin]\nmax_staleness_hours: 3\n")
    page = app.dashboard(products, tmp_path, now=T_LAST + pd.Timedelta(hours=9), mlflow="off")
    selector = find(page, lambda w: "cc-coin" in getattr(w, "_dom_classes", ()))
    assert list(selector.options) == ["litecoin", "bitcoin"] and selector.value == "litecoin"
    text = widget_text(page)
    assert "STALE DATA" in text and "9.0 h" in text and "CoinGecko" in text and "NOT LIVE" not in text
    assert span(text, "cc-forecast")[0] == fmt2(frames["forecast"]["forecast"].iloc[0])
    selector.value = "bitcoin"
    text = widget_text(page)
    assert "SIMULATED DATA, NOT LIVE" in text and "STALE" not in text and 'data-coin="bitcoin"' in text


def test_app_live_accuracy_is_the_published_live_json(tmp_path):
    """The monitor stage's live.json is what the page shows, scored with its min_scored_rows (env.yaml), even where
    the prediction log beside it would give other numbers."""
    products = tmp_path / "products"
    frames = write_products(products)
    log = prediction_log(frames["raw"])  # 5 scored
    write_live(products / "bitcoin", log, live_json(log, frames["raw"], 24))  # env.yaml's default
    publish_products(products / "bitcoin")
    text = widget_text(app.dashboard(products, tmp_path, now=T_LAST + pd.Timedelta(hours=1), mlflow="off"))
    assert "too few to score (n &lt; 24)" in text
    (tmp_path / "env.yaml").write_text("coins: [bitcoin]\nmin_scored_rows: 5\n")  # the dashboard does not rescore
    text = widget_text(app.dashboard(products, tmp_path, now=T_LAST + pd.Timedelta(hours=1), mlflow="off"))
    assert "too few to score (n &lt; 24)" in text
    metrics = live_json(log, frames["raw"], 5)
    write_live(products / "bitcoin", log.assign(forecast=log["forecast"] * 2), metrics)  # a log that disagrees
    publish_products(products / "bitcoin")
    text = widget_text(app.dashboard(products, tmp_path, now=T_LAST + pd.Timedelta(hours=1), mlflow="off"))
    assert 'data-live="scored"' in text and "too few to score" not in text
    assert f'<td>{metrics["horizons"]["1"]["all"]["rel_mae"]:.3f}</td>' in text


def test_app_survives_broken_and_partial_products(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    products = tmp_path / "products"
    write_products(products)
    snap = products / "bitcoin" / "published"  # what the dashboard reads, damaged (a disk, a hand edit)
    for name in ("forecast.parquet", "backtest.json", "registry.json", "profile.html", "backtest_forecasts.parquet"):
        (snap / name).unlink()  # replaced, never written into: a snapshot's file is a hard link of the working one
    (snap / "forecast.parquet").write_bytes(b"not parquet")
    (snap / "backtest.json").write_text("{broken")
    (snap / "live.json").write_text("[1, 2]")  # JSON, but not live.json's shape
    text = widget_text(app.dashboard(products, tmp_path, mlflow="sync"))  # no mlflow.db: MLflow is not touched
    assert "forecast.parquet could not be read" in text and "backtest.json could not be read" in text
    assert "no forecast yet" in text and "Validation gate" in text and "cc-build-failed" not in text
    assert "registry.json is missing" in text and "no MLflow registry" in text and "profile.html is missing" in text
    assert "Could not show live accuracy" in text
    assert "Traceback" not in text and not (tmp_path / "mlflow.db").exists()
    # files that parse but hold the unexpected
    (snap / "forecast.parquet").unlink()
    pd.DataFrame({"horizon": [np.nan], "forecast": [1.0]}).to_parquet(snap / "forecast.parquet", index=False)
    pd.DataFrame({"model": ["naive"], "origin": ["garbage"], "horizon": [1], "forecast": [1.0], "actual": [2.0]}) \
        .to_parquet(snap / "backtest_forecasts.parquet", index=False)
    text = widget_text(app.dashboard(products, tmp_path, mlflow="off"))
    assert "the forecast numbers could not be read" in text and "Validation gate" in text
    # a snapshot holding only the data
    for p in snap.iterdir():
        if p.name != "raw.parquet":
            p.unlink()
    text = widget_text(app.dashboard(products, tmp_path, mlflow="off"))
    assert "no forecast yet" in text and "extract.json is missing" in text and "backtest.json is missing" in text
    # nothing published, only the data of a build that stopped early: no numbers, and why
    only = tmp_path / "only" / "products"
    (only / "bitcoin").mkdir(parents=True)
    raw_frame().to_parquet(only / "bitcoin" / "raw.parquet", index=False)
    text = widget_text(app.dashboard(only, tmp_path / "only", mlflow="off"))
    assert "No successful build yet: run <code>make demo</code>" in text
    assert "cc-last-price" not in text and "cc-forecast" not in text and "Traceback" not in text


def test_app_shows_the_last_successful_build_beside_a_failed_one(tmp_path):
    """Issue 14, item 3: after a simulated build, a live build extracted 0 rows and failed its gate. Every number
    and label comes from the simulated build (published), and the failed live build is a warning beside it."""
    products = tmp_path / "products"
    frames = write_products(products)
    folder = products / "bitcoin"
    write_failed_build(folder)  # products/bitcoin/ now holds the live build's extract.json (0 rows) and gate
    page = app.dashboard(products, tmp_path, now=T_LAST + pd.Timedelta(hours=1), mlflow="off")
    text = widget_text(page)
    assert span(text, "cc-last-price")[0] == fmt2(frames["raw"]["price"].iloc[-1])
    assert span(text, "cc-forecast")[0] == fmt2(frames["forecast"]["forecast"].iloc[0])
    assert "SIMULATED DATA, NOT LIVE" in text and "Live data provided by CoinGecko" not in text
    assert "Data fresh" in text and "freshness unknown" not in text
    banner = re.search(r'<div class="[^"]*cc-build-failed[^"]*" data-build="failed">(.*?)</div>', text).group(1)
    assert banner == ("⚠ The latest build (live CoinGecko, clock 2025-06-01 13:30 UTC) failed: validation gate "
                      "failed: gaps (gaps message); showing the last successful build of 2025-06-01 12:30 UTC "
                      "(simulated).")
    # the gates: the latest build's (failed, not published), then the published build's
    assert text.index('data-passed="false"') < text.index('data-passed="true"')
    assert "its products were not published" in text
    # a later build that stopped before its gate reported
    write_failed_build(folder, gate=False)
    text = widget_text(app.dashboard(products, tmp_path, now=T_LAST + pd.Timedelta(hours=1), mlflow="off"))
    assert "failed: did not finish: it stopped before the validation gate reported" in text
    assert 'data-passed="false"' not in text and span(text, "cc-last-price")[0] == fmt2(frames["raw"]["price"].iloc[-1])
    # the next successful build is published: its numbers, no warning
    again = write_products(products, seed=4)
    text = widget_text(app.dashboard(products, tmp_path, now=T_LAST + pd.Timedelta(hours=1), mlflow="off"))
    assert "cc-build-failed" not in text and span(text, "cc-last-price")[0] == fmt2(again["raw"]["price"].iloc[-1])


def test_app_before_any_successful_build(tmp_path):
    products = tmp_path / "products"
    (products / "bitcoin").mkdir(parents=True)
    write_failed_build(products / "bitcoin")
    text = widget_text(app.dashboard(products, tmp_path, mlflow="off"))
    assert ("⚠ No successful build yet: the latest build (live CoinGecko, clock 2025-06-01 13:30 UTC) failed: "
            "validation gate failed: gaps (gaps message).") in text
    assert 'data-passed="false"' in text and "gaps message" in text  # why, in full
    assert "cc-last-price" not in text and "cc-forecast" not in text and "Live data provided by CoinGecko" not in text


def test_voila_command_and_notebook_are_thin():
    cmd = serve.voila_command(ROOT, port=9999)
    assert cmd[:4] == [sys.executable, "-m", "voila", "notebooks/dashboard.ipynb"]
    assert "--port=9999" in cmd and "--Voila.ip=127.0.0.1" in cmd and "--strip_sources=True" in cmd
    assert "--no-browser" in cmd and "--show_tracebacks=False" in cmd
    assert "--MappingKernelManager.cull_idle_timeout=900" in cmd  # closed pages' kernels do not pile up
    assert "--Voila.ip=0.0.0.0" in serve.voila_command(ROOT, ip="0.0.0.0")
    with pytest.raises(FileNotFoundError):
        serve.voila_command(ROOT / "src")
    nb = json.loads((ROOT / "notebooks" / "dashboard.ipynb").read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(code) <= 4 and all(not c.get("outputs") for c in nb["cells"])
    statements = [line for c in code for line in c.splitlines() if line.strip() and not line.startswith("#")]
    assert statements == ["from coincast.dashboard import app", "app.prepare()", "app.dashboard()"]


def test_voila_and_its_kernels_get_telemetry_off_from_the_launcher():
    """``python -m coincast.dashboard`` imports coincast (patches.telemetry_off), then execs Voila, whose kernels
    inherit its environment: the process it execs sees every TELEMETRY_OFF variable, the caller's left alone."""
    env = {k: v for k, v in os.environ.items() if k not in patches.TELEMETRY_OFF}
    env["DVC_NO_ANALYTICS"] = "caller's"
    show = f"import json, os; print(json.dumps({{k: os.environ.get(k) for k in {sorted(patches.TELEMETRY_OFF)!r}}}))"
    code = ("import sys\nfrom coincast.dashboard import serve\n"
            f"serve.voila_command = lambda *a, **k: [sys.executable, '-c', {show!r}]\n"
            f"serve.main(['--project', {str(ROOT)!r}])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == {**patches.TELEMETRY_OFF, "DVC_NO_ANALYTICS": "caller's"}

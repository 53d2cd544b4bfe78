"""The Voila dashboard (notebooks/dashboard.ipynb, coincast.dashboard, make dashboard).

* unit tests of coincast.dashboard on in-memory data and synthetic products (no products, a missing
  registry / MLflow, broken files, a prediction log);
* against a real ``coincast build`` (module fixture): the dashboard on real products, the notebook executed
  headless with nbclient, and the served dashboard (``python -m coincast.dashboard``, i.e. Voila, exactly as
  ``make dashboard`` runs it) in headless Chromium through Playwright: the next-hour numbers shown are
  forecast.parquet's, no JavaScript console errors, a screenshot, the first render time, refresh, the coin
  selector, the profile, the MLflow registry; and a project without products in the browser.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cg_server import FakeCoinGecko
from conftest import BIN, ROOT, coincast, copy_project, hourly_frame
from coincast import dashboard as dash
from coincast import io, publish

T_LAST = pd.Timestamp("2025-06-01T12:00Z")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Voila's lab template links Font Awesome from cdn.jsdelivr.net; offline that request fails
# ("Failed to load resource"). It is Voila's page head, not the dashboard; every other console error fails.
TOLERATED_CONSOLE_URLS = ("https://cdn.jsdelivr.net/npm/@fortawesome/",)


# --- synthetic products ---------------------------------------------------------------------------------------
def raw_frame(last: pd.Timestamp = T_LAST, hours: int = 200, seed: int = 0, source: str = "simulated") -> pd.DataFrame:
    df = hourly_frame(hours=hours, start=str(last - pd.Timedelta(hours=hours - 1)), seed=seed)
    df["price"] = df["price"] * 250  # a BTC-like level: two decimals shown
    df["source"] = source
    return df


def forecast_frame(raw: pd.DataFrame, model: str = "drift", version: str = "3", step: float = 0.001) -> pd.DataFrame:
    last_t, last_p = raw["timestamp"].iloc[-1], float(raw["price"].iloc[-1])
    h = np.arange(1, 25)
    point = last_p * (1 + step * h)
    half80, half95 = 0.004 * np.sqrt(h), 0.006 * np.sqrt(h)
    return pd.DataFrame({
        "coin": "bitcoin", "horizon": h, "target_time": [last_t + pd.Timedelta(hours=int(k)) for k in h],
        "forecast": point, "lower_80": point * np.exp(-half80), "upper_80": point * np.exp(half80),
        "lower_95": point * np.exp(-half95), "upper_95": point * np.exp(half95), "model_name": model,
        "model_version": version, "data_through": last_t, "generated_at": pd.Timestamp("2025-06-01T12:31Z"),
        "source": str(raw["source"].iloc[-1]),
    })


def backtest_dict(models=("naive", "drift", "prophet_seasonal")) -> dict:
    rel = {"naive": (1.0, 1.0), "drift": (0.95, 0.99), "prophet_seasonal": (1.02, 1.10), "seasonal_naive": (4.8, 1.0)}
    return {
        "coin": "bitcoin", "source": "simulated", "simulated": True, "data_through": T_LAST.isoformat(),
        "first_scored_origin": (T_LAST - pd.Timedelta(hours=120)).isoformat(),
        "last_origin": (T_LAST - pd.Timedelta(hours=1)).isoformat(), "scored_origins": 120,
        "settings": {"horizons": [1, 24]},
        "models": {m: {"spec": {"kind": m}, "horizons": {
            "1": {"n": 120, "rel_mae": rel[m][0], "coverage_80": 0.8, "coverage_95": 0.95},
            "24": {"n": 97, "rel_mae": rel[m][1], "coverage_80": 0.5, "coverage_95": 0.8}}} for m in models},
    }


def backtest_forecasts(raw: pd.DataFrame, models=("naive", "drift")) -> pd.DataFrame:
    prices = raw.set_index("timestamp")["price"]
    rows = []
    for origin in prices.index[-72:-1]:
        for m in models:
            f = prices[origin] * (1.0 if m == "naive" else 1.0005)
            rows.append({"model": m, "origin": origin, "horizon": 1, "forecast": f,
                         "target_time": origin + pd.Timedelta(hours=1),
                         "actual": prices.get(origin + pd.Timedelta(hours=1), np.nan), "scored": True})
    return pd.DataFrame(rows)


def validation_dict(passed: bool = True) -> dict:
    checks = [
        {"name": "min_rows", "passed": True, "message": "200 rows (minimum 100)", "rows": 200, "minimum": 100},
        {"name": "gaps", "passed": passed, "message": "gaps message", "missing_fraction": 0.0 if passed else 0.05,
         "longest_gap_hours": 0 if passed else 9},
        {"name": "staleness", "passed": True, "message": "last row 0.5 h before the clock (limit 3 h)",
         "age_hours": 0.5, "limit_hours": 3},
    ]
    return {"coin": "bitcoin", "passed": passed, "failed": [] if passed else ["gaps"], "rows": 200,
            "source": "simulated", "now": "2025-06-01T12:30:00+00:00",
            "limits": {"max_staleness_hours": 3}, "checks": checks}


REGISTRY = {"registered_model": "coincast-bitcoin",
            "challenger": {"version": "3", "model_name": "drift", "rel_mae_1h": 0.95},
            "champion": {"version": "3", "model_name": "drift", "rel_mae_1h": 0.95}, "promoted": True,
            "reason": "drift 1h rel_mae 0.9500 beats champion naive (1.0000)"}


def extract_dict(source: str = "simulated", now: str = "2025-06-01T12:30:00+00:00", last: pd.Timestamp = T_LAST) -> dict:
    return {"coin": "bitcoin", "source": source, "simulated": source == "simulated", "now": now,
            "first": (last - pd.Timedelta(hours=199)).isoformat(), "last": last.isoformat(), "rows": 200,
            "build_id": publish.new_build_id(source, now)}


def write_products(products: Path, coin: str = "bitcoin", source: str = "simulated", now: str | None = None,
                   last: pd.Timestamp = T_LAST, seed: int = 0) -> dict:
    """A complete synthetic products/<coin>/ folder of one build, published as the pipeline's last task does
    (coincast.publish); returns the frames written. Written atomically, as the tasks write: the snapshot holds
    hard links, so a later rewrite must replace a file (io.write_*_atomic), never write into it."""
    folder = products / coin
    folder.mkdir(parents=True, exist_ok=True)
    ext = extract_dict(source, now or (last + pd.Timedelta(minutes=30)).isoformat(), last)
    raw = raw_frame(last, seed=seed, source=source)
    fc = publish.stamp(forecast_frame(raw), ext)
    io.write_parquet_atomic(raw, folder / "raw.parquet")
    io.write_parquet_atomic(fc, folder / "forecast.parquet")
    io.write_parquet_atomic(backtest_forecasts(raw), folder / "backtest_forecasts.parquet")
    io.write_json_atomic(ext, folder / "extract.json")
    io.write_json_atomic(publish.stamp(validation_dict(True), ext), folder / "validation.json")
    io.write_json_atomic(backtest_dict(), folder / "backtest.json")
    io.write_json_atomic(REGISTRY, folder / "registry.json")
    io.write_text_atomic("<!doctype html><html><body><h1>Overview</h1><p>profile</p></body></html>",
                         folder / "profile.html")
    publish_products(folder)
    return {"raw": raw, "forecast": fc, "extract": ext}


def publish_products(folder: Path) -> dict:
    """Publish a products folder as it is (what the publish task does at the end of a successful build)."""
    files = [p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")
             and p.name != publish.MANIFEST]
    return publish.publish_files(folder, files, copies=[p for p in files if p.suffix in (".html", ".ipynb")
                                                        and p.name[:2].isdigit()])


def write_failed_build(folder: Path, source: str = "coingecko", rows: int = 0, gate: bool = True) -> dict:
    """The working products of a later build that failed (issue 14: a live build with 0 rows after a simulated
    one): a new extract.json and raw.parquet, and its gate report when ``gate``; nothing published."""
    ext = {**extract_dict(source, "2025-06-01T13:30:00+00:00"), "rows": rows, "first": None, "last": None,
           "build_id": publish.new_build_id(source, "2025-06-01T13:30:00+00:00")}
    io.write_parquet_atomic(raw_frame().iloc[:rows], folder / "raw.parquet")
    io.write_json_atomic(ext, folder / "extract.json")
    if gate:
        io.write_json_atomic(publish.stamp(validation_dict(False), ext), folder / "validation.json")
    return ext


def widget_text(widget) -> str:
    """Every HTML value and Output text of a widget tree, concatenated."""
    parts = []
    value = getattr(widget, "value", None)
    if isinstance(value, str):
        parts.append(value)
    for out in getattr(widget, "outputs", ()) or ():
        parts.append(json.dumps(out.get("data", {}).get("text/plain", "")))
    for child in getattr(widget, "children", ()) or ():
        parts.append(widget_text(child))
    return "\n".join(parts)


def span(text: str, cls: str) -> tuple[str, float | None]:
    """(shown text, data-value) of the element carrying class ``cls``."""
    m = re.search(rf'<span class="{cls}[^"]*"[^>]*?(?: data-value="([^"]*)")?>([^<]*)</span>', text)
    assert m, f"no element with class {cls}"
    return m.group(2), (float(m.group(1)) if m.group(1) else None)


def fmt2(x: float) -> str:
    return f"{round(float(x), 2):,.2f}"


# --- unit tests: formatting, finding things ------------------------------------------------------------------
def test_price_formatting():
    assert dash.fmt_price(25526.586124) == "25,526.59"
    assert dash.fmt_price(1234.5) == "1,234.50"
    assert dash.fmt_price(0.123456) == "0.1235"
    assert dash.fmt_price(2.5) == "2.500"
    assert dash.fmt_price(None) == "–" and dash.fmt_price(float("nan")) == "–"
    assert dash.fmt_pct(0.1234) == "+0.12 %" and dash.fmt_pct(-1.5) == "-1.50 %"
    assert dash.fmt_time("2025-06-01T12:00:00+00:00") == "2025-06-01 12:00 UTC"
    assert dash.fmt_age(0.5) == "30 min" and dash.fmt_age(5.25) == "5.2 h" and dash.fmt_age(72) == "3.0 days"


def test_find_project(tmp_path, monkeypatch):
    monkeypatch.delenv(dash.PROJECT_ENV, raising=False)
    (tmp_path / "pipeline.yaml").write_text("tasks: []\n")
    (tmp_path / "notebooks").mkdir()
    assert dash.find_project(tmp_path / "notebooks") == tmp_path.resolve()  # Voila's cwd is notebooks/
    bare = tmp_path / "elsewhere" / "notebooks"
    bare.mkdir(parents=True)
    (tmp_path / "pipeline.yaml").unlink()
    assert dash.find_project(bare) == bare.parent.resolve()
    monkeypatch.setenv(dash.PROJECT_ENV, str(tmp_path))
    assert dash.find_project(bare) == tmp_path.resolve()


def test_list_coins_and_settings(tmp_path):
    products = tmp_path / "products"
    assert dash.list_coins(products) == []
    for coin in ("litecoin", "ethereum", "bitcoin"):
        (products / coin).mkdir(parents=True)
        (products / coin / "extract.json").write_text("{}")
    (products / "empty").mkdir()
    (products / ".hidden").mkdir()
    (products / "dogecoin" / ".published-x").mkdir(parents=True)  # only a published snapshot
    (products / "dogecoin" / "published").symlink_to(".published-x")
    assert dash.list_coins(products) == ["bitcoin", "dogecoin", "ethereum", "litecoin"]
    shutil.rmtree(products / "dogecoin")
    assert dash.list_coins(products) == ["bitcoin", "ethereum", "litecoin"]
    assert dash.list_coins(products, ["ethereum", "dogecoin", "bitcoin"]) == ["ethereum", "bitcoin", "litecoin"]
    (tmp_path / "env.yaml").write_text("coins: [ethereum]\nmax_staleness_hours: 5\nsource: simulated\n"
                                       "min_scored_rows: 12\n")
    assert dash.read_settings(tmp_path) == {"coins": ["ethereum"], "max_staleness_hours": 5, "min_scored_rows": 12}
    (tmp_path / "env.yaml").write_text(": not yaml [")
    assert dash.read_settings(tmp_path) == {}
    assert dash.read_settings(None) == {}


# --- unit tests: the numbers, banners, freshness --------------------------------------------------------------
def test_headline_numbers_and_dom():
    raw = raw_frame()
    fc = forecast_frame(raw)
    head = dash.headline(raw, fc)
    assert head["last_price"] == pytest.approx(raw["price"].iloc[-1])
    assert head["last_time"] == T_LAST
    assert head["next"]["forecast"] == pytest.approx(fc["forecast"].iloc[0])
    assert head["next"]["target_time"] == T_LAST + pd.Timedelta(hours=1)
    assert head["change_pct"] == pytest.approx(0.1)  # step 0.001 at h=1
    assert (head["model_name"], head["model_version"]) == ("drift", "3")
    html = dash.headline_html(head)
    for cls, col in (("cc-forecast", "forecast"), ("cc-lower-80", "lower_80"), ("cc-upper-80", "upper_80"),
                     ("cc-lower-95", "lower_95"), ("cc-upper-95", "upper_95")):
        shown, value = span(html, cls)
        assert shown == fmt2(fc[col].iloc[0]), cls
        assert value == pytest.approx(fc[col].iloc[0], rel=1e-12), cls
    assert span(html, "cc-last-price")[0] == fmt2(raw["price"].iloc[-1])
    assert "+0.10 %" in html and "cc-up" in html
    assert 'class="cc-last-time" id="cc-last-time">2025-06-01 12:00 UTC<' in html


def test_headline_without_forecast_or_data():
    raw = raw_frame()
    html = dash.headline_html(dash.headline(raw, None))
    assert "no forecast yet" in html and "cc-forecast" not in html
    assert span(html, "cc-last-price")[0] == fmt2(raw["price"].iloc[-1])
    empty = dash.headline(None, None)
    assert empty["last_price"] is None and empty["next"] is None
    assert "–" in dash.headline_html(empty)


def test_change_is_relative_to_the_price_the_forecast_was_made_from():
    raw = raw_frame()
    fc = forecast_frame(raw.iloc[:-1])  # made an hour ago, a newer price has arrived since
    head = dash.headline(raw, fc)
    assert head["change_pct"] == pytest.approx(0.1)


def test_source_banner():
    sim = dash.source_banner_html(extract_dict("simulated"))
    assert "SIMULATED DATA, NOT LIVE" in sim and "cc-banner-simulated" in sim and "2025-06-01 12:30 UTC" in sim
    rep = dash.source_banner_html(extract_dict("replay"))
    assert "REPLAYED DATA, NOT LIVE" in rep and "cc-banner-replay" in rep
    live = dash.source_banner_html(extract_dict("coingecko"))
    assert "CoinGecko" in live and "NOT LIVE" not in live and "cc-banner-live" in live
    assert "unknown" in dash.source_banner_html(None)


def test_freshness_clock_and_warning():
    raw = raw_frame()
    # simulated / replayed data: against the clock the extraction ran at, not the real one
    sim = dash.freshness(extract_dict("simulated", "2025-06-01T12:30:00+00:00"), raw, 3,
                         now=pd.Timestamp("2030-01-01T00:00Z"))
    assert sim["age_hours"] == pytest.approx(0.5) and not sim["stale"] and "simulation clock" in sim["clock_kind"]
    assert 'data-stale="false"' in dash.freshness_html(sim)
    rep = dash.freshness(extract_dict("replay", "2025-06-01T17:00:00+00:00"), raw, 3)
    assert rep["age_hours"] == pytest.approx(5) and rep["stale"] and "replay clock" in rep["clock_kind"]
    # live data: against the real clock
    live = dash.freshness(extract_dict("coingecko"), raw, 3, now=T_LAST + pd.Timedelta(hours=2))
    assert live["age_hours"] == pytest.approx(2) and not live["stale"]
    stale = dash.freshness(extract_dict("coingecko"), raw, 3, now=T_LAST + pd.Timedelta(hours=7, minutes=30))
    assert stale["stale"] and stale["age_hours"] == pytest.approx(7.5)
    html = dash.freshness_html(stale)
    assert "STALE DATA" in html and "7.5 h" in html and "limit 3 h" in html and "make run" in html
    # no raw.parquet: extract.json's last row
    assert dash.freshness(extract_dict("simulated"), None, 3)["age_hours"] == pytest.approx(0.5)
    assert "freshness unknown" in dash.freshness_html(dash.freshness({}, None, 3))


def test_staleness_limit():
    assert dash.staleness_limit(validation_dict()) == 3
    assert dash.staleness_limit({"limits": {"max_staleness_hours": 6}}) == 6
    assert dash.staleness_limit(None, {"max_staleness_hours": 2}) == 2
    assert dash.staleness_limit(None, None) == dash.DEFAULT_STALENESS_HOURS
    assert dash.staleness_limit({"limits": {"max_staleness_hours": "x"}}, {}) == dash.DEFAULT_STALENESS_HOURS


# --- unit tests: figures and tables ---------------------------------------------------------------------------
def test_forecast_figure():
    raw = raw_frame()
    fc = forecast_frame(raw)
    fig = dash.forecast_figure(raw, fc, "bitcoin", history_hours=48)
    names = [t.name for t in fig.data]
    assert names[0] == "price" and "95 % interval" in names and "80 % interval" in names
    assert "forecast (drift)" in names and "naive (price stays)" in names
    price = fig.data[0]
    assert len(price.x) == 48
    fcast = next(t for t in fig.data if t.name == "forecast (drift)")
    assert list(fcast.y[1:]) == pytest.approx(list(fc["forecast"]))  # anchored at the last price
    assert fcast.y[0] == pytest.approx(raw["price"].iloc[-1])
    naive = next(t for t in fig.data if t.name.startswith("naive"))
    assert list(naive.y) == pytest.approx([raw["price"].iloc[-1]] * 2)
    assert pd.Timestamp(naive.x[1]) == pd.Timestamp("2025-06-02T12:00")  # 24 h ahead, UTC without a zone
    bundle = dash.figure_bundle(fig)
    json.dumps(bundle)  # JSON-clean for the kernel protocol
    assert bundle["application/vnd.plotly.v1+json"]["data"][0]["name"] == "price"
    # only history (the forecast stage did not run) or nothing at all: still a figure
    assert [t.name for t in dash.forecast_figure(raw, None).data] == ["price"]
    assert len(dash.forecast_figure(None, None).data) == 0


def test_backtest_table_and_html():
    bt = backtest_dict(("prophet_seasonal", "naive", "seasonal_naive", "drift"))
    table = dash.backtest_table(bt, champion="drift")
    assert list(table["model"]) == ["drift", "naive", "prophet_seasonal", "seasonal_naive"]
    assert list(table["role"]) == ["champion", "naive", "", ""]
    assert table.loc[0, "rel_mae_1h"] == 0.95 and table.loc[0, "coverage_80_24h"] == 0.5
    html = dash.backtest_html(bt, "drift")
    assert '<tr class="cc-champion" data-model="drift">' in html
    assert "0.950" in html and "80.0 %" in html and "95.0 %" in html and "120 scored hourly origins" in html
    assert dash.backtest_table(bt, "naive").loc[0, "role"] == "champion (naive)"
    assert "backtest.json is missing" in dash.backtest_html(None)
    assert "no models" in dash.backtest_html({"models": {}})


def test_error_by_hour():
    raw = raw_frame()
    bf = backtest_forecasts(raw)
    table = dash.error_by_hour(bf, 1)
    assert list(table.columns) == ["drift", "naive"] and set(table.index) <= set(range(24))
    g = bf[(bf["model"] == "naive")].assign(hour=bf["origin"].dt.hour)
    g = g[g["hour"] == 5]
    assert table.loc[5, "naive"] == pytest.approx((g["actual"] - g["forecast"]).abs().mean())
    fig = dash.error_by_hour_figure(table, "drift", 1)
    assert [t.name for t in fig.data] == ["drift", "naive"] and all(t.visible is True for t in fig.data)
    # a model far worse than naive is listed but not drawn, so it does not flatten the others
    wide = table.assign(seasonal_naive=table["naive"] * 5, prophet_x=table["naive"] * 1.1)
    shown = {t.name: t.visible for t in dash.error_by_hour_figure(wide, "drift", 1).data}
    assert shown == {"drift": True, "naive": True, "seasonal_naive": "legendonly", "prophet_x": True}
    assert dash.error_by_hour(None).empty and dash.error_by_hour(bf.drop(columns=["actual"])).empty
    assert dash.error_by_hour(bf.assign(scored=False)).empty


# --- unit tests: live accuracy from the prediction log --------------------------------------------------------
def prediction_log(raw: pd.DataFrame) -> pd.DataFrame:
    prices = raw.set_index("timestamp")["price"]
    rows = []
    for k, origin in enumerate(prices.index[-6:]):
        target = origin + pd.Timedelta(hours=1)
        f = prices[origin] * 1.001
        rows.append({"coin": "bitcoin", "made_at": origin + pd.Timedelta(minutes=5), "target_time": target,
                     "horizon": 1, "forecast": f, "lower_80": f * 0.999, "upper_80": f * 1.001,
                     "lower_95": f * 0.99, "upper_95": f * 1.01, "model_version": "3",
                     "actual": prices.get(target, np.nan)})
    return pd.DataFrame(rows)


def test_live_accuracy_absent():
    assert dash.live_accuracy(None) is None
    assert dash.live_accuracy(pd.DataFrame()) is None
    assert dash.live_accuracy(pd.DataFrame({"x": [1]})) is None
    assert "No live predictions yet" in dash.live_accuracy_html(None)


def test_live_accuracy_scored_rows_against_naive():
    raw = raw_frame()
    log = prediction_log(raw)
    acc = dash.live_accuracy(log, raw, min_scored=5)
    row = acc.iloc[0]
    assert (row["horizon"], row["predictions"], row["scored"], row["pending"]) == (1, 6, 5, 1)  # last: not yet known
    scored = log.dropna(subset=["actual"])
    prices = raw.set_index("timestamp")["price"]
    naive = scored["target_time"].map(lambda t: prices[t - pd.Timedelta(hours=1)])
    expected = (scored["actual"] - scored["forecast"]).abs().mean() / (scored["actual"] - naive).abs().mean()
    assert row["rel_mae"] == pytest.approx(expected)
    inside = ((scored["actual"] >= scored["lower_95"]) & (scored["actual"] <= scored["upper_95"])).mean()
    assert row["coverage_95"] == pytest.approx(inside)
    html = dash.live_accuracy_html(acc)
    assert 'data-live="scored"' in html and f"{expected:.3f}" in html
    # an actual the log does not have yet but raw.parquet does is filled in; a log naive column is used as is
    filled = dash.live_accuracy(log.assign(actual=np.nan), raw, min_scored=5).iloc[0]
    assert filled["scored"] == 5 and filled["rel_mae"] == pytest.approx(expected)
    own = dash.live_accuracy(log.assign(naive=log["forecast"]), raw, min_scored=1).iloc[0]
    assert own["rel_mae"] == pytest.approx(1.0)


def test_live_accuracy_defensive():
    raw = raw_frame()
    log = prediction_log(raw)
    pending = dash.live_accuracy(log.assign(actual=np.nan))  # nothing known yet, no raw to fill from
    assert int(pending["scored"].sum()) == 0
    assert "waiting for their actual price" in dash.live_accuracy_html(pending)
    sparse = log[["horizon", "forecast", "target_time", "actual"]].assign(horizon=["1", "1", "x", "1", "1", "1"])
    acc = dash.live_accuracy(sparse, min_scored=1)  # no bounds, no naive source, a bad horizon
    assert acc.iloc[0]["scored"] == 4 and acc.iloc[0]["rel_mae"] is None and acc.iloc[0]["coverage_80"] is None
    dash.live_accuracy_html(acc)


def test_live_accuracy_from_too_few_rows_is_too_few_to_score():
    raw = raw_frame()
    log = prediction_log(raw)  # 5 scored rows
    few = dash.live_accuracy(log, raw, min_scored=6).iloc[0]
    assert few["scored"] == 5 and few["status"] == "too few to score (n < 6)"
    assert few[["mae", "naive_mae", "rel_mae", "coverage_80", "coverage_95"]].isna().all()
    html = dash.live_accuracy_html(dash.live_accuracy(log, raw, min_scored=6))
    assert "too few to score (n &lt; 6)" in html and 'data-status="too-few"' in html
    enough = dash.live_accuracy(log, raw, min_scored=5).iloc[0]
    assert enough["status"] is None and enough["rel_mae"] is not None
    assert dash.live_accuracy(log, raw).iloc[0]["status"] == f"too few to score (n < {dash.DEFAULT_MIN_SCORED_ROWS})"


def test_live_accuracy_leaves_out_rows_made_by_a_model_trained_after_their_hour():
    raw = raw_frame()
    log = prediction_log(raw)
    flagged = log.assign(in_force=[True, True, False, False, True, True], forecast=log["forecast"].where(
        [True, True, False, False, True, True], log["forecast"] * 2))  # the flagged rows are far off
    row = dash.live_accuracy(flagged, raw, min_scored=1).iloc[0]
    kept = dash.live_accuracy(log.iloc[[0, 1, 4, 5]], raw, min_scored=1).iloc[0]
    assert (row["predictions"], row["scored"], row["excluded"]) == (4, 3, 2)
    assert row["rel_mae"] == pytest.approx(kept["rel_mae"])
    assert "2 prediction(s) made by a model trained after their hour" in dash.live_accuracy_html(
        dash.live_accuracy(flagged, raw, min_scored=1))
    # an older log without the column: its catch-up (late) rows are the ones left out
    legacy = dash.live_accuracy(log.assign(late=[False, False, True, True, False, False]), raw, min_scored=1).iloc[0]
    assert legacy["excluded"] == 2 and legacy["rel_mae"] == pytest.approx(kept["rel_mae"])


# --- unit tests: gate, registry, MLflow -----------------------------------------------------------------------
def test_validation_html():
    html = dash.validation_html(validation_dict(True))
    assert 'data-passed="true"' in html and "PASSED" in html and html.count("✔ pass") == 3
    assert "rows: 200; minimum: 100" in html and "age_hours: 0.5" in html
    failed = dash.validation_html(validation_dict(False))
    assert 'data-passed="false"' in failed and "FAILED" in failed and "1 of 3 checks failed" in failed
    assert '<tr data-check="gaps">' in failed and "✘ FAIL" in failed and "longest_gap_hours: 9" in failed
    assert "validation.json is missing" in dash.validation_html(None)


def test_validation_html_shows_warnings_and_accepted_hours():
    report = {**validation_dict(True),
              "warnings": [{"name": "zero_volume", "count": 3, "first": "2025-05-20T01:00:00+00:00",
                            "last": "2025-05-21T04:00:00+00:00", "message": "3 hours with volume 0 (...): kept"}],
              "accepted": [{"time": "2025-05-19T13:00:00+00:00", "reason": "crash <confirmed>", "check": "jumps",
                            "accepted_at": "2025-05-20T00:00:00+00:00"}]}
    html = dash.validation_html(report)
    assert 'data-passed="true"' in html and 'data-warning="zero_volume"' in html and "⚠ warning zero_volume" in html
    assert "3 hours with volume 0" in html and "2025-05-19 13:00 UTC: crash &lt;confirmed&gt;" in html
    assert "warning" not in dash.validation_html(validation_dict(True))


def test_registry_html():
    written = pd.Timestamp("2025-06-01T12:40Z")
    html = dash.registry_html(REGISTRY, None, written)
    assert "version 3" in html and "drift" in html and "beats champion naive" in html
    assert "in the build of 2025-06-01 12:40 UTC" in html and 'data-mlflow="pending"' in html
    ml = {"ok": True, "version": "3", "model_name": "drift", "reason": "drift beats naive",
          "promoted_at": "2025-06-01T12:39:00+00:00", "run_id": "abc123"}
    html = dash.registry_html(REGISTRY, ml, written)
    assert "2025-06-01 12:39 UTC" in html and "promoted_at" in html and 'data-mlflow="yes"' in html
    stays = {**REGISTRY, "promoted": False, "challenger": {"version": "4", "model_name": "naive", "rel_mae_1h": 1.0}}
    html = dash.registry_html(stays, {"ok": False, "message": "no MLflow registry (mlflow.db) in the project"}, written)
    assert "earlier build" in html and "not promoted" in html and "no MLflow registry" in html
    html = dash.registry_html(None, {"ok": False, "message": "no MLflow registry (mlflow.db) in the project"})
    assert "registry.json is missing" in html and "no MLflow registry" in html
    assert "registry.json is missing" in dash.registry_html(None, None)
    # only MLflow knows (registry.json lost)
    assert "version 3" in dash.registry_html(None, ml)


def test_mlflow_champion_never_creates_a_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    info = dash.mlflow_champion(tmp_path, "bitcoin")
    assert info == {"ok": False, "message": "no MLflow registry (mlflow.db) in the project"}
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlartifacts").exists()
    assert dash.mlflow_champion(None, "bitcoin")["ok"] is False


def test_mlflow_champion_broken_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "mlflow.db").write_text("not a database")
    before = os.environ.get("MLFLOW_TRACKING_URI")
    info = dash.mlflow_champion(tmp_path, "bitcoin")
    assert info["ok"] is False and "MLflow could not be read" in info["message"]
    assert os.environ.get("MLFLOW_TRACKING_URI") == before  # no process-wide MLflow state changed
    # a secret in a tracking URI is never shown
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////nonexistent-dir/sub/x.db?token=SECRET")
    info = dash.mlflow_champion(tmp_path, "bitcoin")
    assert info["ok"] is False and "SECRET" not in info["message"]
    assert not Path("/nonexistent-dir").exists()  # MLflow would have created the folders and the database
    assert dash._redact("https://user:SECRET@dagshub.com/x.mlflow?token=SECRET2") == "https://***@dagshub.com/x.mlflow"


# --- unit tests: the app on synthetic products ----------------------------------------------------------------
def test_app_without_products(tmp_path):
    for products in (tmp_path / "missing", tmp_path / "empty"):
        if products.name == "empty":
            (products / "bitcoin").mkdir(parents=True)  # a coin folder with nothing in it
        page = dash.app(products, tmp_path, mlflow="off")
        text = widget_text(page)
        assert 'id="cc-empty"' in text and "make demo" in text
        assert "cc-forecast" not in text and "Traceback" not in text
    assert re.sub(r"<[^>]+>", "", dash.EMPTY_MESSAGE).count(".") == 1  # one sentence


def test_app_reads_products_and_refresh(tmp_path, monkeypatch):
    secret = "CG-SENTINEL-dashboard-key"
    monkeypatch.setenv("COINGECKO_API_KEY", secret)
    products = tmp_path / "products"
    frames = write_products(products)
    page = dash.app(products, tmp_path, now=T_LAST + pd.Timedelta(hours=1), mlflow="off")
    text = widget_text(page)
    assert secret not in text
    fc = frames["forecast"]
    assert span(text, "cc-forecast")[0] == fmt2(fc["forecast"].iloc[0])
    for needle in ("SIMULATED DATA, NOT LIVE", "Data fresh", "Backtest: champion vs naive", "No live predictions yet",
                   "Gate <span class=\"cc-pass\">PASSED", "version 3", "ydata-profiling report", 'data-reads="1"'):
        assert needle in text, needle
    assert len([o for o in _outputs(page)]) == 2  # the forecast chart and the error by hour
    # refresh re-reads products: a new forecast appears
    new = frames["forecast"].assign(forecast=frames["forecast"]["forecast"] + 100.0)
    io.write_parquet_atomic(new, products / "bitcoin" / "forecast.parquet")
    assert span(widget_text(page), "cc-forecast")[0] == fmt2(fc["forecast"].iloc[0])  # read once per render
    publish_products(products / "bitcoin")
    refresh = _find(page, lambda w: "cc-refresh" in getattr(w, "_dom_classes", ()))
    refresh.click()
    text = widget_text(page)
    assert span(text, "cc-forecast")[0] == fmt2(new["forecast"].iloc[0]) and 'data-reads="2"' in text
    # the profile is embedded only on demand
    toggle = _find(page, lambda w: "cc-profile-button" in getattr(w, "_dom_classes", ()))
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
    page = dash.app(products, tmp_path, now=T_LAST + pd.Timedelta(hours=9), mlflow="off")
    selector = _find(page, lambda w: "cc-coin" in getattr(w, "_dom_classes", ()))
    assert list(selector.options) == ["litecoin", "bitcoin"] and selector.value == "litecoin"
    text = widget_text(page)
    assert "STALE DATA" in text and "9.0 h" in text and "CoinGecko" in text and "NOT LIVE" not in text
    assert span(text, "cc-forecast")[0] == fmt2(frames["forecast"]["forecast"].iloc[0])
    selector.value = "bitcoin"
    text = widget_text(page)
    assert "SIMULATED DATA, NOT LIVE" in text and "STALE" not in text and 'data-coin="bitcoin"' in text


def test_app_live_accuracy_follows_env_min_scored_rows(tmp_path):
    products = tmp_path / "products"
    frames = write_products(products)
    io.write_parquet_atomic(prediction_log(frames["raw"]), products / "bitcoin" / "predictions.parquet")  # 5 scored
    publish_products(products / "bitcoin")
    text = widget_text(dash.app(products, tmp_path, now=T_LAST + pd.Timedelta(hours=1), mlflow="off"))
    assert f"too few to score (n &lt; {dash.DEFAULT_MIN_SCORED_ROWS})" in text  # no env.yaml: the default
    (tmp_path / "env.yaml").write_text("coins: [bitcoin]\nmin_scored_rows: 5\n")
    text = widget_text(dash.app(products, tmp_path, now=T_LAST + pd.Timedelta(hours=1), mlflow="off"))
    assert 'data-live="scored"' in text and "too few to score" not in text


def test_app_survives_broken_and_partial_products(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    products = tmp_path / "products"
    write_products(products)
    snap = products / "bitcoin" / "published"  # what the dashboard reads, damaged (a disk, a hand edit)
    for name in ("forecast.parquet", "backtest.json", "registry.json", "profile.html", "backtest_forecasts.parquet"):
        (snap / name).unlink()  # replaced, never written into: a snapshot's file is a hard link of the working one
    (snap / "forecast.parquet").write_bytes(b"not parquet")
    (snap / "backtest.json").write_text("{broken")
    text = widget_text(dash.app(products, tmp_path, mlflow="sync"))  # no mlflow.db: MLflow is not touched
    assert "forecast.parquet could not be read" in text and "backtest.json could not be read" in text
    assert "no forecast yet" in text and "Validation gate" in text and "cc-build-failed" not in text
    assert "registry.json is missing" in text and "no MLflow registry" in text and "profile.html is missing" in text
    assert "Traceback" not in text and not (tmp_path / "mlflow.db").exists()
    # files that parse but hold the unexpected
    (snap / "forecast.parquet").unlink()
    pd.DataFrame({"horizon": [np.nan], "forecast": [1.0]}).to_parquet(snap / "forecast.parquet", index=False)
    pd.DataFrame({"model": ["naive"], "origin": ["garbage"], "horizon": [1], "forecast": [1.0], "actual": [2.0]}) \
        .to_parquet(snap / "backtest_forecasts.parquet", index=False)
    text = widget_text(dash.app(products, tmp_path, mlflow="off"))
    assert "the forecast numbers could not be read" in text and "Validation gate" in text
    # a snapshot holding only the data
    for p in snap.iterdir():
        if p.name != "raw.parquet":
            p.unlink()
    text = widget_text(dash.app(products, tmp_path, mlflow="off"))
    assert "no forecast yet" in text and "extract.json is missing" in text and "backtest.json is missing" in text
    # nothing published, only the data of a build that stopped early: no numbers, and why
    only = tmp_path / "only" / "products"
    (only / "bitcoin").mkdir(parents=True)
    raw_frame().to_parquet(only / "bitcoin" / "raw.parquet", index=False)
    text = widget_text(dash.app(only, tmp_path / "only", mlflow="off"))
    assert "No successful build yet: run <code>make demo</code>" in text
    assert "cc-last-price" not in text and "cc-forecast" not in text and "Traceback" not in text


def test_app_shows_the_last_successful_build_beside_a_failed_one(tmp_path):
    """Issue 14, item 3: after a simulated build, a live build extracted 0 rows and failed its gate. Every number
    and label comes from the simulated build (published), and the failed live build is a warning beside it."""
    products = tmp_path / "products"
    frames = write_products(products)
    folder = products / "bitcoin"
    write_failed_build(folder)  # products/bitcoin/ now holds the live build's extract.json (0 rows) and gate
    page = dash.app(products, tmp_path, now=T_LAST + pd.Timedelta(hours=1), mlflow="off")
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
    text = widget_text(dash.app(products, tmp_path, now=T_LAST + pd.Timedelta(hours=1), mlflow="off"))
    assert "failed: did not finish: it stopped before the validation gate reported" in text
    assert 'data-passed="false"' not in text and span(text, "cc-last-price")[0] == fmt2(frames["raw"]["price"].iloc[-1])
    # the next successful build is published: its numbers, no warning
    again = write_products(products, seed=4)
    text = widget_text(dash.app(products, tmp_path, now=T_LAST + pd.Timedelta(hours=1), mlflow="off"))
    assert "cc-build-failed" not in text and span(text, "cc-last-price")[0] == fmt2(again["raw"]["price"].iloc[-1])


def test_app_before_any_successful_build(tmp_path):
    products = tmp_path / "products"
    (products / "bitcoin").mkdir(parents=True)
    write_failed_build(products / "bitcoin")
    text = widget_text(dash.app(products, tmp_path, mlflow="off"))
    assert ("⚠ No successful build yet: the latest build (live CoinGecko, clock 2025-06-01 13:30 UTC) failed: "
            "validation gate failed: gaps (gaps message).") in text
    assert 'data-passed="false"' in text and "gaps message" in text  # why, in full
    assert "cc-last-price" not in text and "cc-forecast" not in text and "Live data provided by CoinGecko" not in text


def test_voila_command_and_notebook_are_thin():
    cmd = dash.voila_command(ROOT, port=9999)
    assert cmd[:4] == [sys.executable, "-m", "voila", "notebooks/dashboard.ipynb"]
    assert "--port=9999" in cmd and "--Voila.ip=127.0.0.1" in cmd and "--strip_sources=True" in cmd
    assert "--no-browser" in cmd and "--show_tracebacks=False" in cmd
    assert "--MappingKernelManager.cull_idle_timeout=900" in cmd  # closed pages' kernels do not pile up
    assert "--Voila.ip=0.0.0.0" in dash.voila_command(ROOT, ip="0.0.0.0")
    with pytest.raises(FileNotFoundError):
        dash.voila_command(ROOT / "src")
    nb = json.loads((ROOT / "notebooks" / "dashboard.ipynb").read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(code) <= 4 and all(not c.get("outputs") for c in nb["cells"])
    statements = [line for c in code for line in c.splitlines() if line.strip() and not line.startswith("#")]
    assert statements == ["from coincast import dashboard", "dashboard.prepare()", "dashboard.app()"]


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()) or ():
        yield from _walk(child)


def _find(widget, pred):
    return next(w for w in _walk(widget) if pred(w))


def _outputs(widget):
    return [w for w in _walk(widget) if hasattr(w, "outputs") and w.outputs]


# --- against a real build -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("dash") / "project")
    res = coincast(project, "--env", "env.test.yaml")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert (project / "products" / "bitcoin" / "forecast.parquet").is_file()
    return project


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.pipeline
def test_dashboard_on_real_products(built):
    before = _snapshot(built / "products")
    db_before = (built / "mlflow.db").stat().st_mtime_ns
    page = dash.app(project_root=built, mlflow="sync")
    text = widget_text(page)
    fc = pd.read_parquet(built / "products" / "bitcoin" / "forecast.parquet").sort_values("horizon")
    for cls, col in (("cc-forecast", "forecast"), ("cc-lower-80", "lower_80"), ("cc-upper-95", "upper_95")):
        assert span(text, cls)[0] == fmt2(fc[col].iloc[0])
    backtest = json.loads((built / "products" / "bitcoin" / "backtest.json").read_text())
    for model in backtest["models"]:
        assert f'data-model="{model}"' in text
    assert "SIMULATED DATA, NOT LIVE" in text and "(MLflow tag promoted_at)" in text and 'data-mlflow="yes"' in text
    assert "No live predictions yet" in text and 'data-passed="true"' in text
    assert _snapshot(built / "products") == before  # reads only
    assert (built / "mlflow.db").stat().st_mtime_ns == db_before


@pytest.mark.pipeline
def test_notebook_executes_headless(built):
    import nbclient
    import nbformat

    nb = nbformat.read(built / "notebooks" / "dashboard.ipynb", as_version=4)
    env_project = os.environ.pop(dash.PROJECT_ENV, None)  # found from the notebook's folder, as under Voila
    try:
        client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                         resources={"metadata": {"path": str(built / "notebooks")}})
        t0 = time.monotonic()
        client.execute()
        elapsed = time.monotonic() - t0
    finally:
        if env_project is not None:
            os.environ[dash.PROJECT_ENV] = env_project
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error" or o.get("name") == "stderr"], outputs
    views = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) == 1
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    html = "\n".join(m["state"].get("value", "") for m in state.values() if m["model_name"] == "HTMLModel")
    fc = pd.read_parquet(built / "products" / "bitcoin" / "forecast.parquet").sort_values("horizon")
    assert span(html, "cc-forecast")[0] == fmt2(fc["forecast"].iloc[0])
    assert elapsed < 60


# --- in the browser -------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dashboard:
    """``python -m coincast.dashboard`` (what ``make dashboard`` runs) in its own process group."""

    def __init__(self, project: Path, log: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = log
        env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(log.parent / "jupyter-runtime"),
               "MLFLOW_DISABLE_TELEMETRY": "true", "PLOOMBER_STATS_ENABLED": "false"}
        env.pop(dash.PROJECT_ENV, None)
        env.pop("MLFLOW_TRACKING_URI", None)
        self.proc = subprocess.Popen([str(BIN / "python"), "-m", "coincast.dashboard", "--project", str(project),
                                      "--port", str(self.port)],
                                     cwd=project, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self, settle: float = 4, timeout: float = 90) -> None:
        """Serving, with the pre-heated kernel started and given ``settle`` seconds to import (in the kernel,
        ``import voila.utils`` alone takes ~3 s here: a long-running server is warm long before anyone asks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"dashboard exited: {self.log.read_text()[-2000:]}"
            if "is filled with" in self.log.read_text():
                time.sleep(settle)
                return
            time.sleep(0.25)
        pytest.fail(f"Voila did not start within {timeout} s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass


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


def _open(browser, viewport=(1300, 900)):
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    problems: list[str] = []

    def on_console(msg):
        url = (msg.location or {}).get("url", "")
        if msg.type == "error" and not url.startswith(TOLERATED_CONSOLE_URLS):
            problems.append(f"console error: {msg.text} ({url})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    return page, problems


def _full_screenshot(page, path: Path) -> None:
    height = page.evaluate("() => { const r = document.querySelector('.cc-app').getBoundingClientRect();"
                           " return Math.ceil(r.bottom + window.scrollY); }")
    page.set_viewport_size({"width": 1300, "height": min(max(int(height) + 40, 900), 8000)})
    page.wait_for_timeout(700)  # plotly re-lays out to the new size
    page.screenshot(path=str(path), full_page=True)


@pytest.mark.pipeline
def test_dashboard_in_the_browser(built, browser, tmp_path):
    server = Dashboard(built, tmp_path / "voila.log")
    try:
        server.wait_ready(settle=8)  # the first render is measured: a warm server, as in use
        # a coin whose products appear after the server (and its pre-heated kernel) started: live and stale
        lite_last = pd.Timestamp.now(tz="UTC").floor("h") - pd.Timedelta(hours=8)
        lite_age_then = (pd.Timestamp.now(tz="UTC") - lite_last) / pd.Timedelta(hours=1)
        lite = write_products(built / "products", "litecoin", source="coingecko", seed=5, last=lite_last)
        page, problems = _open(browser)
        t0 = time.monotonic()
        page.goto(server.url, wait_until="commit", timeout=60_000)
        page.wait_for_selector(".cc-forecast-chart .js-plotly-plot .main-svg", timeout=60_000)
        page.wait_for_selector(".cc-forecast", timeout=10_000)
        first_render = time.monotonic() - t0
        print(f"\ndashboard first render: {first_render:.2f} s (navigation -> numbers and chart drawn)")
        (tmp_path / "first_render.txt").write_text(f"{first_render:.3f}\n")

        # the numbers shown are forecast.parquet's (same rounding), in elements a test can find
        fc = pd.read_parquet(built / "products" / "bitcoin" / "forecast.parquet").sort_values("horizon")
        for cls, col in (("cc-forecast", "forecast"), ("cc-lower-80", "lower_80"), ("cc-upper-80", "upper_80"),
                         ("cc-lower-95", "lower_95"), ("cc-upper-95", "upper_95")):
            assert page.inner_text(f".{cls}") == fmt2(fc[col].iloc[0]), cls
            assert float(page.get_attribute(f".{cls}", "data-value")) == pytest.approx(fc[col].iloc[0], rel=1e-12)
        raw = pd.read_parquet(built / "products" / "bitcoin" / "raw.parquet")
        assert page.inner_text(".cc-last-price") == fmt2(raw["price"].iloc[-1])
        change = 100 * (fc["forecast"].iloc[0] / raw["price"].iloc[-1] - 1)
        assert f"{change:+.2f} %" in page.inner_text(".cc-change")
        body = page.inner_text("body")
        assert "SIMULATED DATA, NOT LIVE" in body and "Validation gate" in body and "No live predictions yet" in body
        assert "Traceback" not in body and "dashboard.app()" not in body  # sources stripped
        assert page.locator(".cc-hour-chart .js-plotly-plot").count() == 1
        # the registry section fills in from MLflow in the background
        page.wait_for_selector(".cc-registry[data-mlflow='yes']", timeout=30_000)
        assert "promoted_at" in page.inner_text(".cc-registry-box")
        # no assertion on time (speed targets are checked by benchmarks); the measurement is kept beside the screenshot

        shot = tmp_path / "dashboard.png"
        _full_screenshot(page, shot)
        shutil.copy(shot, "/tmp/dashboard.png")
        page.set_viewport_size({"width": 1300, "height": 900})

        # refresh re-reads the products: a newly published forecast appears
        new = fc.assign(forecast=fc["forecast"] + 123.0)
        io.write_parquet_atomic(new, built / "products" / "bitcoin" / "forecast.parquet")
        try:
            publish_products(built / "products" / "bitcoin")
            page.click(".cc-refresh")
            page.wait_for_selector(".cc-read-at[data-reads='2']", timeout=30_000)
            assert page.inner_text(".cc-forecast") == fmt2(new["forecast"].iloc[0])
            page.wait_for_selector(".cc-forecast-chart .js-plotly-plot .main-svg", timeout=30_000)
        finally:
            io.write_parquet_atomic(fc, built / "products" / "bitcoin" / "forecast.parquet")
            publish_products(built / "products" / "bitcoin")

        # the coin selector: litecoin was added after the kernel was pre-heated, so products are read per page
        assert page.locator(".cc-coin select option").all_inner_texts() == ["bitcoin", "litecoin"]
        page.select_option(".cc-coin select", "litecoin")
        page.wait_for_selector(".cc-read-at[data-coin='litecoin']", timeout=30_000)
        assert page.inner_text(".cc-forecast") == fmt2(lite["forecast"]["forecast"].iloc[0])
        stale = page.inner_text(".cc-freshness")
        assert "STALE DATA" in stale and "make run" in stale
        # the age shown is the real one: 8 h and the minutes past the hour (so "9.0 h" from minute 57 on)
        age = float(re.search(r"([\d.]+) h before the real clock", stale).group(1))
        age_now = (pd.Timestamp.now(tz="UTC") - lite_last) / pd.Timedelta(hours=1)
        assert lite_age_then - 0.05 <= age <= age_now + 0.05, (age, lite_age_then, age_now)
        assert "NOT LIVE" not in page.inner_text(".cc-source")
        page.wait_for_selector(".cc-forecast-chart .js-plotly-plot .main-svg", timeout=30_000)
        page.screenshot(path=str(tmp_path / "dashboard-live-stale.png"))

        # the data profile, one click away
        page.select_option(".cc-coin select", "bitcoin")
        page.wait_for_selector(".cc-read-at[data-coin='bitcoin']", timeout=30_000)
        page.click(".cc-profile-button")
        page.frame_locator("iframe.cc-profile-frame").locator("text=Overview").first.wait_for(timeout=30_000)

        assert not problems, "\n".join(problems)
        page.close()
    finally:
        server.stop()
        shutil.rmtree(built / "products" / "litecoin", ignore_errors=True)
    assert server.proc.poll() is not None


# --- a failed live build after a successful simulated one (issue 14, item 3) -----------------------------------
LIVE_CLOCK = pd.Timestamp("2025-06-01T12:30Z")  # the simulated build's clock (env.test.yaml)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def failed_live(built, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A copy of ``built`` (a successful simulated build, published), then a live build against the local
    CoinGecko whose data ends 10.5 h before the clock: its gate fails (staleness). Returns the project and the
    published snapshot's file digests from before the live build."""
    from coincast.sources.simulated import simulate_hourly

    project = tmp_path_factory.mktemp("failed-live") / "project"
    shutil.copytree(built, project, symlinks=True)
    before = _digests(project / "products" / "bitcoin" / "published")
    obs = simulate_hourly("bitcoin", 24 * 40)
    obs["timestamp"] += LIVE_CLOCK - pd.Timedelta(hours=10, minutes=30) - obs["timestamp"].iloc[-1]
    with FakeCoinGecko({"bitcoin": obs}, now=LIVE_CLOCK) as server:
        env = {"COINGECKO_BASE_URL": server.url, "COINGECKO_API_KEY": "", "COINGECKO_API_PLAN": "demo"}
        res = coincast(project, "--env", "env.test.yaml", "--source", "coingecko", "--replay-now",
                       LIVE_CLOCK.isoformat(), env=env)
        assert server.requests, "the live build did not call the local CoinGecko"
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-3000:]
    assert "coincast: bitcoin: validation gate failed: " in res.stderr, res.stderr[-2000:]
    assert "staleness (" in res.stderr, res.stderr[-2000:]
    return project, before


@pytest.mark.pipeline
def test_failed_live_build_after_a_simulated_one(failed_live):
    project, before = failed_live
    out = project / "products" / "bitcoin"
    latest, shown = io.read_json(out / "extract.json"), io.read_json(out / "published" / "extract.json")
    assert latest["source"] == "coingecko" and shown["source"] == "simulated"  # the working products mix builds
    assert _digests(out / "published") == before  # the failed build changed nothing that is published
    raw = pd.read_parquet(out / "published" / "raw.parquet")
    fc = pd.read_parquet(out / "published" / "forecast.parquet").sort_values("horizon")
    text = widget_text(dash.app(project_root=project, mlflow="off"))
    assert span(text, "cc-last-price")[0] == fmt2(raw["price"].iloc[-1])
    assert span(text, "cc-forecast")[0] == fmt2(fc["forecast"].iloc[0])
    assert "SIMULATED DATA, NOT LIVE" in text and "Live data provided by CoinGecko" not in text
    assert "freshness unknown" not in text
    assert ("The latest build (live CoinGecko, clock 2025-06-01 12:30 UTC) failed: validation gate failed: "
            in text and "staleness (last row 10.5 h before the clock" in text)
    assert "showing the last successful build of 2025-06-01 12:30 UTC (simulated)." in text


@pytest.mark.pipeline
def test_failed_live_build_in_the_browser(failed_live, browser, tmp_path):
    project, _ = failed_live
    out = project / "products" / "bitcoin"
    raw = pd.read_parquet(out / "published" / "raw.parquet")
    fc = pd.read_parquet(out / "published" / "forecast.parquet").sort_values("horizon")
    server = Dashboard(project, tmp_path / "voila.log")
    try:
        server.wait_ready()
        page, problems = _open(browser)
        page.goto(server.url, wait_until="commit", timeout=60_000)
        page.wait_for_selector(".cc-forecast-chart .js-plotly-plot .main-svg", timeout=60_000)
        warning = page.inner_text(".cc-build-failed")
        assert warning.startswith("⚠ The latest build (live CoinGecko, clock 2025-06-01 12:30 UTC) failed: "
                                  "validation gate failed: ") and "staleness (last row 10.5 h" in warning, warning
        assert warning.endswith("showing the last successful build of 2025-06-01 12:30 UTC (simulated).")
        assert page.inner_text(".cc-last-price") == fmt2(raw["price"].iloc[-1])
        assert page.inner_text(".cc-forecast") == fmt2(fc["forecast"].iloc[0])
        assert "SIMULATED DATA, NOT LIVE" in page.inner_text(".cc-source")
        body = page.inner_text("body")
        assert "Live data provided by CoinGecko" not in body and "freshness unknown" not in body
        assert "Data fresh" in page.inner_text(".cc-freshness")
        page.screenshot(path=str(tmp_path / "dashboard-failed-live.png"), full_page=True)
        assert not problems, "\n".join(problems)
        page.close()
    finally:
        server.stop()


@pytest.mark.pipeline
def test_dashboard_without_products_in_the_browser(browser, tmp_path):
    project = copy_project(tmp_path / "project")
    server = Dashboard(project, tmp_path / "voila.log")
    try:
        server.wait_ready()
        page, problems = _open(browser)
        page.goto(server.url, wait_until="commit", timeout=60_000)
        page.wait_for_selector("#cc-empty", timeout=60_000)
        text = page.inner_text("#cc-empty")
        assert text == "No products yet: run make demo to build them, then press Refresh."
        body = page.inner_text("body")
        assert "Traceback" not in body and "Error" not in body
        assert page.locator(".js-plotly-plot").count() == 0
        page.wait_for_timeout(500)
        assert not problems, "\n".join(problems)
        page.screenshot(path=str(tmp_path / "dashboard-empty.png"))
        page.close()
    finally:
        server.stop()
    assert not (project / "mlflow.db").exists() and not (project / "products").exists()

"""coincast.dashboard.summary and .render: the numbers shown and their HTML (Jinja2 templates), in memory."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coincast.operations import live
from coincast.dashboard import render, summary
from dashboard_products import (REGISTRY, T_LAST, backtest_dict, extract_dict, fmt2, forecast_frame, live_json,
                                prediction_log, raw_frame, span, validation_dict)


# --- formatting ---------------------------------------------------------------------------------------------
def test_price_formatting():
    assert render.fmt_price(25526.586124) == "25,526.59"
    assert render.fmt_price(1234.5) == "1,234.50"
    assert render.fmt_price(0.123456) == "0.1235"
    assert render.fmt_price(2.5) == "2.500"
    assert render.fmt_price(None) == "–" and render.fmt_price(float("nan")) == "–"
    assert render.fmt_pct(0.1234) == "+0.12 %" and render.fmt_pct(-1.5) == "-1.50 %"
    assert render.fmt_time("2025-06-01T12:00:00+00:00") == "2025-06-01 12:00 UTC"
    assert render.fmt_age(0.5) == "30 min" and render.fmt_age(5.25) == "5.2 h" and render.fmt_age(72) == "3.0 days"


def test_templates_escape_what_they_show():
    html = render.source_banner_html({"source": "<script>alert(1)</script>", "now": "x<y"})
    assert "<script>" not in html and "&lt;script&gt;" in html and "Clock: x&lt;y." in html
    assert "style=" not in render.profile_frame_html("<p>") and 'srcdoc="&lt;p&gt;"' in render.profile_frame_html("<p>")
    assert render.title_html().count("<style>") == 1 and ".cc-profile-frame" in render.title_html()


# --- the numbers, banners, freshness --------------------------------------------------------------------------
def test_headline_numbers_and_dom():
    raw = raw_frame()
    fc = forecast_frame(raw)
    head = summary.headline(raw, fc)
    assert head["last_price"] == pytest.approx(raw["price"].iloc[-1])
    assert head["last_time"] == T_LAST
    assert head["next"]["forecast"] == pytest.approx(fc["forecast"].iloc[0])
    assert head["next"]["target_time"] == T_LAST + pd.Timedelta(hours=1)
    assert head["change_pct"] == pytest.approx(0.1)  # step 0.001 at h=1
    assert (head["model_name"], head["model_version"]) == ("drift", "3")
    html = render.headline_html(head)
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
    html = render.headline_html(summary.headline(raw, None))
    assert "no forecast yet" in html and "cc-forecast" not in html
    assert span(html, "cc-last-price")[0] == fmt2(raw["price"].iloc[-1])
    empty = summary.headline(None, None)
    assert empty["last_price"] is None and empty["next"] is None
    assert "–" in render.headline_html(empty)


def test_change_is_relative_to_the_price_the_forecast_was_made_from():
    raw = raw_frame()
    fc = forecast_frame(raw.iloc[:-1])  # made an hour ago, a newer price has arrived since
    head = summary.headline(raw, fc)
    assert head["change_pct"] == pytest.approx(0.1)


def test_source_banner():
    sim = render.source_banner_html(extract_dict("simulated"))
    assert "SIMULATED DATA, NOT LIVE" in sim and "cc-banner-simulated" in sim and "2025-06-01 12:30 UTC" in sim
    rep = render.source_banner_html(extract_dict("replay"))
    assert "REPLAYED DATA, NOT LIVE" in rep and "cc-banner-replay" in rep
    live_banner = render.source_banner_html(extract_dict("coingecko"))
    assert "CoinGecko" in live_banner and "NOT LIVE" not in live_banner and "cc-banner-live" in live_banner
    assert "unknown" in render.source_banner_html(None)


def test_freshness_clock_and_warning():
    raw = raw_frame()
    # simulated / replayed data: against the clock the extraction ran at, not the real one
    sim = summary.freshness(extract_dict("simulated", "2025-06-01T12:30:00+00:00"), raw, 3,
                            now=pd.Timestamp("2030-01-01T00:00Z"))
    assert sim["age_hours"] == pytest.approx(0.5) and not sim["stale"] and "simulation clock" in sim["clock_kind"]
    assert 'data-stale="false"' in render.freshness_html(sim)
    rep = summary.freshness(extract_dict("replay", "2025-06-01T17:00:00+00:00"), raw, 3)
    assert rep["age_hours"] == pytest.approx(5) and rep["stale"] and "replay clock" in rep["clock_kind"]
    # live data: against the real clock
    fresh = summary.freshness(extract_dict("coingecko"), raw, 3, now=T_LAST + pd.Timedelta(hours=2))
    assert fresh["age_hours"] == pytest.approx(2) and not fresh["stale"]
    stale = summary.freshness(extract_dict("coingecko"), raw, 3, now=T_LAST + pd.Timedelta(hours=7, minutes=30))
    assert stale["stale"] and stale["age_hours"] == pytest.approx(7.5)
    html = render.freshness_html(stale)
    assert "STALE DATA" in html and "7.5 h" in html and "limit 3 h" in html and "make run" in html
    # no raw.parquet: extract.json's last row
    assert summary.freshness(extract_dict("simulated"), None, 3)["age_hours"] == pytest.approx(0.5)
    assert "freshness unknown" in render.freshness_html(summary.freshness({}, None, 3))


def test_staleness_limit():
    assert summary.staleness_limit(validation_dict()) == 3
    assert summary.staleness_limit({"limits": {"max_staleness_hours": 6}}) == 6
    assert summary.staleness_limit(None, {"max_staleness_hours": 2}) == 2
    assert summary.staleness_limit(None, None) == summary.DEFAULT_STALENESS_HOURS
    assert summary.staleness_limit({"limits": {"max_staleness_hours": "x"}}, {}) == summary.DEFAULT_STALENESS_HOURS


def test_backtest_table_and_html():
    bt = backtest_dict(("prophet_seasonal", "naive", "seasonal_naive", "drift"))
    table = summary.backtest_table(bt, champion="drift")
    assert list(table["model"]) == ["drift", "naive", "prophet_seasonal", "seasonal_naive"]
    assert list(table["role"]) == ["champion", "naive", "", ""]
    assert table.loc[0, "rel_mae_1h"] == 0.95 and table.loc[0, "coverage_80_24h"] == 0.5
    html = render.backtest_html(bt, "drift")
    assert '<tr class="cc-champion" data-model="drift">' in html
    assert "0.950" in html and "80.0 %" in html and "95.0 %" in html and "120 scored hourly origins" in html
    assert table.loc[0, "rel_crps_24h"] == 1.234 and "<td>0.987</td>" in html and "<td>1.234</td>" in html
    assert summary.backtest_table(bt, "naive").loc[0, "role"] == "champion (naive)"
    assert "backtest.json is missing" in render.backtest_html(None)
    assert "no models" in render.backtest_html({"models": {}})


# --- live accuracy: live.json, as the monitor stage wrote it --------------------------------------------------
def test_live_accuracy_absent():
    assert summary.live_accuracy(None) is None and summary.live_accuracy({}) is None
    assert "No live predictions yet" in render.live_accuracy_html(None)


def test_live_accuracy_is_live_json_scored_against_naive():
    raw = raw_frame()
    log = prediction_log(raw)
    acc = summary.live_accuracy(live_json(log, raw, 5))
    row = acc["rows"][0]
    assert (row["horizon"], row["scored"], row["pending"]) == (1, 5, 1)  # last: not yet known
    scored = log.dropna(subset=["actual"])
    prices = raw.set_index("timestamp")["price"]
    naive = scored["target_time"].map(lambda t: prices[t - pd.Timedelta(hours=1)])
    expected = (scored["actual"] - scored["forecast"]).abs().mean() / (scored["actual"] - naive).abs().mean()
    assert row["rel_mae"] == pytest.approx(expected)
    inside = ((scored["actual"] >= scored["lower_95"]) & (scored["actual"] <= scored["upper_95"])).mean()
    assert row["coverage_95"] == pytest.approx(inside)
    html = render.live_accuracy_html(acc)
    assert 'data-live="scored"' in html and f"{expected:.3f}" in html and "as of 2025-06-01 12:00 UTC" in html
    # the page shows live.json's numbers as they are: it never scores the log itself
    doctored = live_json(log, raw, 5)
    doctored["horizons"]["1"]["all"]["rel_mae"] = 0.123
    assert "0.123" in render.live_accuracy_html(summary.live_accuracy(doctored))
    assert row["rel_crps"] is None  # 5 scored rows: too few known errors (48) for the naive-empirical baseline
    doctored["horizons"]["1"]["all"].update(rel_interval_score_80=0.871, rel_interval_score_95=0.872, rel_crps=0.873)
    html = render.live_accuracy_html(summary.live_accuracy(doctored))
    assert all(f"<td>{v}</td>" in html for v in ("0.871", "0.872", "0.873"))
    # an actual the log does not have yet is filled in from the prices when the monitor stage scores it
    filled, _ = live.score(log.assign(actual=np.nan), live.observed_prices(raw), T_LAST)
    again = summary.live_accuracy(live_json(filled, raw, 5))["rows"][0]
    assert again["scored"] == 5 and again["rel_mae"] == pytest.approx(expected)
    # naive is the log's last_price, used as is
    own = summary.live_accuracy(live_json(log.assign(last_price=log["forecast"]), raw, 1))["rows"][0]
    assert own["rel_mae"] == pytest.approx(1.0)


def test_live_accuracy_defensive():
    raw = raw_frame()
    log = prediction_log(raw)
    pending = summary.live_accuracy(live_json(log.assign(actual=np.nan), raw.iloc[:-5], 1))  # nothing known yet
    assert pending["scored"] == 0 and pending["pending"] == 6
    assert "6 prediction(s) waiting for their actual price" in render.live_accuracy_html(pending)
    # a live.json with parts missing or empty (an older coincast, a hand edit): shown, never a traceback
    sparse = {"horizons": {"1": {"all": {"n": 4.0, "rel_mae": None, "coverage_80": None}}, "24": {}}}
    acc = summary.live_accuracy(sparse)
    assert acc["rows"][0]["scored"] == 4 and acc["rows"][0]["rel_mae"] is None and acc["rows"][0]["pending"] is None
    html = render.live_accuracy_html(acc)
    assert 'data-live="scored"' in html and "<td>–</td>" in html


def test_live_accuracy_from_too_few_rows_is_too_few_to_score():
    raw = raw_frame()
    log = prediction_log(raw)  # 5 scored rows
    few = summary.live_accuracy(live_json(log, raw, 6))["rows"][0]
    assert few["scored"] == 5 and few["status"] == "too few to score (n < 6)"
    assert all(few[k] is None for k in ("mae", "naive_mae", "rel_mae", "coverage_80", "coverage_95"))
    html = render.live_accuracy_html(summary.live_accuracy(live_json(log, raw, 6)))
    assert "too few to score (n &lt; 6)" in html and 'data-status="too-few"' in html
    enough = summary.live_accuracy(live_json(log, raw, 5))["rows"][0]
    assert enough["status"] is None and enough["rel_mae"] is not None
    # a horizon with no scored row yet is too few to score as well (live.json's min_scored_rows)
    both = summary.live_accuracy(live_json(log, raw, 5, horizons=(1, 24)))["rows"]
    assert [r["status"] for r in both] == [None, "too few to score (n < 5)"]


def test_live_accuracy_leaves_out_rows_made_by_a_model_trained_after_their_hour():
    raw = raw_frame()
    log = prediction_log(raw)
    flags = [True, True, False, False, True, True]
    flagged = log.assign(in_force=flags, forecast=log["forecast"].where(flags, log["forecast"] * 2))  # far off
    acc = summary.live_accuracy(live_json(flagged, raw, 1))
    kept = summary.live_accuracy(live_json(log.iloc[[0, 1, 4, 5]], raw, 1))["rows"][0]
    row = acc["rows"][0]
    assert (row["scored"], row["pending"], acc["excluded"]) == (3, 1, 2)
    assert row["rel_mae"] == pytest.approx(kept["rel_mae"])
    assert "2 prediction(s) made by a model trained after their hour" in render.live_accuracy_html(acc)
    # an older log without the column: its catch-up (late) rows are the ones left out
    legacy = live.with_in_force(log.drop(columns=["in_force"]).assign(late=[False, False, True, True, False, False]))
    old = summary.live_accuracy(live_json(legacy, raw, 1))
    assert old["excluded"] == 2 and old["rows"][0]["rel_mae"] == pytest.approx(kept["rel_mae"])


# --- gate, registry -------------------------------------------------------------------------------------------
def test_validation_html():
    html = render.validation_html(validation_dict(True))
    assert 'data-passed="true"' in html and "PASSED" in html and html.count("✔ pass") == 3
    assert "rows: 200; minimum: 100" in html and "age_hours: 0.5" in html
    failed = render.validation_html(validation_dict(False))
    assert 'data-passed="false"' in failed and "FAILED" in failed and "1 of 3 checks failed" in failed
    assert '<tr data-check="gaps">' in failed and "✘ FAIL" in failed and "longest_gap_hours: 9" in failed
    assert "validation.json is missing" in render.validation_html(None)


def test_validation_html_shows_warnings_and_accepted_hours():
    report = {**validation_dict(True),
              "warnings": [{"name": "zero_volume", "count": 3, "first": "2025-05-20T01:00:00+00:00",
                            "last": "2025-05-21T04:00:00+00:00", "message": "3 hours with volume 0 (...): kept"}],
              "accepted": [{"time": "2025-05-19T13:00:00+00:00", "reason": "crash <confirmed>", "check": "jumps",
                            "accepted_at": "2025-05-20T00:00:00+00:00"}]}
    html = render.validation_html(report)
    assert 'data-passed="true"' in html and 'data-warning="zero_volume"' in html and "⚠ warning zero_volume" in html
    assert "3 hours with volume 0" in html and "2025-05-19 13:00 UTC: crash &lt;confirmed&gt;" in html
    assert "warning" not in render.validation_html(validation_dict(True))


def test_registry_html():
    written = pd.Timestamp("2025-06-01T12:40Z")
    html = render.registry_html(REGISTRY, None, written)
    assert "version 3" in html and "drift" in html and "beats champion naive" in html
    assert "in the build of 2025-06-01 12:40 UTC" in html and 'data-mlflow="pending"' in html
    ml = {"ok": True, "version": "3", "model_name": "drift", "reason": "drift beats naive",
          "promoted_at": "2025-06-01T12:39:00+00:00", "run_id": "abc123"}
    html = render.registry_html(REGISTRY, ml, written)
    assert "2025-06-01 12:39 UTC" in html and "promoted_at" in html and 'data-mlflow="yes"' in html
    stays = {**REGISTRY, "promoted": False, "challenger": {"version": "4", "model_name": "naive", "rel_mae_1h": 1.0}}
    html = render.registry_html(stays, {"ok": False, "message": "no MLflow registry (mlflow.db) in the project"}, written)
    assert "earlier build" in html and "not promoted" in html and "no MLflow registry" in html
    html = render.registry_html(None, {"ok": False, "message": "no MLflow registry (mlflow.db) in the project"})
    assert "registry.json is missing" in html and "no MLflow registry" in html
    assert "registry.json is missing" in render.registry_html(None, None)
    # only MLflow knows (registry.json lost)
    assert "version 3" in render.registry_html(None, ml)

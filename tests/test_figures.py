"""What the executed notebooks show, on in-memory data: the figures (coincast.forecasting.figures), the checks table, the
train notebook's note and the stage helpers the notebooks call (training, profiling)."""
from __future__ import annotations

import html
import json

import numpy as np
import pandas as pd
import pytest

from coincast import display
from coincast.forecasting import figures
from coincast.data import profiling
from coincast.operations import training
from coincast.data.validation import measured, validate_data
from conftest import hourly_frame

CLOCK = pd.Timestamp("2025-06-01T12:30Z")


def backtest_report() -> dict:
    rel = {"naive": (1.0, 1.0), "drift": (1.004, 0.96), "seasonal_naive": (4.8, 1.0)}
    return {"data_through": "2025-06-01T12:00:00+00:00", "scored_origins": 120,
            "models": {m: {"horizons": {"1": {"rel_mae": r1, "n": 120}, "24": {"rel_mae": r24, "n": 97}}}
                       for m, (r1, r24) in rel.items()}}


def over_time(n_scored: int, min_scored: int = 24) -> pd.DataFrame:
    t = pd.date_range("2025-06-01T13:00Z", periods=n_scored, freq="h")
    n = np.arange(1, n_scored + 1, dtype=float)
    enough = n >= min_scored
    return pd.DataFrame({"horizon": 1, "target_time": t, "n": n,
                         "rel_mae": np.where(enough, 1.01, np.nan), "coverage_80": np.where(enough, 0.8, np.nan),
                         "coverage_95": np.where(enough, 0.95, np.nan)})


# --- figures ---------------------------------------------------------------------------------------------------
def test_price_history_marks_the_hours_this_build_fetched():
    raw = hourly_frame(100)
    fig = figures.price_history(raw, raw["timestamp"].iloc[-2:], "bitcoin")
    price, fetched = fig.data
    assert len(price.x) == 100 and list(price.y) == pytest.approx(list(raw["price"]))
    assert fetched.name == "fetched by this build (2 h)" and list(fetched.y) == pytest.approx(list(raw["price"][-2:]))
    assert pd.Timestamp(fetched.x[-1]) == raw["timestamp"].iloc[-1].tz_convert(None)  # UTC without a zone
    assert "2 fetched by this build" in fig.layout.title.text
    first = figures.price_history(raw, raw["timestamp"], "bitcoin")  # a first build: no marks, said in the title
    assert [t.name for t in first.data] == ["price"] and "all fetched by this build" in first.layout.title.text
    assert [t.name for t in figures.price_history(raw, [], "bitcoin").data] == ["price"]


def test_backtest_rel_mae_shows_each_model_against_naive_per_horizon():
    fig = figures.backtest_rel_mae(backtest_report(), champion="naive")
    one, day = fig.data
    assert list(one.y) == ["naive (champion)", "drift", "seasonal_naive"]  # sorted by 1 h rel_mae
    assert list(one.x) == pytest.approx([1.0, 1.004, figures.REL_MAE_AXIS_MAX])  # far off: at the edge ...
    assert list(one.text) == ["1.000", "1.004", "4.800 ▶"]  # ... labelled with its value
    assert list(day.x) == pytest.approx([1.0, 0.96, 1.0])
    assert [a.text for a in fig.layout.annotations] == ["1 h ahead", "24 h ahead"]
    assert {s.x0 for s in fig.layout.shapes} == {1}  # the naive line in each panel
    assert len(figures.backtest_rel_mae({"models": {}}).data) == 0


def test_live_accuracy_says_too_few_to_score_until_enough_are_scored():
    few = figures.live_accuracy(over_time(5), [1, 24], min_scored=24, window_hours=168)
    assert "too few to score" in few.layout.title.text
    bars = few.data[0]
    assert list(bars.x) == ["1 h ahead", "24 h ahead"] and list(bars.y) == [5, 0]
    assert few.layout.shapes[0].y0 == 24  # the number needed
    enough = figures.live_accuracy(over_time(30), [1, 24], min_scored=24, window_hours=168)
    names = [t.name for t in enough.data]
    assert names == ["1 h rel_mae", "1 h coverage 80 %", "1 h coverage 95 %"]
    assert len(enough.data[0].x) == 30 - 23  # points only where a score may be given
    assert "too few to score: 24 h: 0 scored" in enough.layout.title.text
    assert {s.y0 for s in enough.layout.shapes} == {1, 0.8, 0.95}  # naive, and the coverage targets
    empty = figures.live_accuracy(over_time(0), [1, 24], 24, 168)
    assert list(empty.data[0].y) == [0, 0]


def test_embed_inlines_plotly_js_only_in_an_html_notebook():
    fig = figures.price_history(hourly_frame(50), [], "bitcoin")
    page = figures.embed(fig, "products/bitcoin/01_extract.html")._repr_mimebundle_()
    assert "window.Plotly" in page["text/html"] and "plotly-graph-div" in page["text/html"]  # draws offline
    assert "<script src=" not in page["text/html"]  # nothing fetched
    kept = figures.embed(fig, "products/bitcoin/01_extract.ipynb")._repr_mimebundle_()
    assert sorted(kept) == ["application/vnd.plotly.v1+json", "text/plain"]
    assert len(json.dumps(kept)) < 50_000  # no plotly.js in the hourly tick's notebooks
    assert kept["application/vnd.plotly.v1+json"]["data"][0]["name"] == "price"


# --- the checks table --------------------------------------------------------------------------------------------
def test_checks_table_gives_value_limit_and_message():
    df = hourly_frame(200)
    report = validate_data(df, fail_on_error=False, now=df["timestamp"].iloc[-1] + pd.Timedelta(hours=5))
    table = display.checks_table(report)
    assert list(table.columns) == ["passed", "value", "limit", "message"]
    assert list(table.index) == [c["name"] for c in report["checks"]]
    assert table.loc["staleness", "passed"] == False  # noqa: E712
    assert table.loc["staleness", ["value", "limit"]].tolist() == ["5.0 h", "<= 3 h"]
    assert table.loc["min_rows", ["value", "limit"]].tolist() == ["200", ">= 100"]
    assert table.loc["positive_price", ["value", "limit"]].tolist() == ["0", "0"]
    assert table.loc["gaps", "limit"] == "<= 2.00%, <= 6 h"
    assert table.loc["jumps", "limit"] == "<= 28%"
    shown = display.checks_view(report).data  # every message in full
    assert all(html.escape(c["message"]) in shown for c in report["checks"])


def test_measured_tolerates_reports_without_the_numbers():
    assert measured({"name": "staleness", "passed": False, "message": "no rows"}, {}) == ("", "")
    assert measured({"name": "gaps", "passed": False, "message": "fewer than 2 timestamps", "missing_hours": None},
                    {"max_missing_fraction": 0.02, "max_gap_hours": 6}) == ("", "<= 2.00%, <= 6 h")
    assert measured({"name": "new_check", "passed": True, "message": "ok"}, {}) == ("", "")
    assert measured({"name": "required_columns", "passed": False, "message": "", "missing": ["price"]}, {})[0] == "price"


# --- the train notebook ------------------------------------------------------------------------------------------
def test_training_note_says_whether_this_build_trained_and_what_is_shown():
    registry = {"champion": {"model_name": "naive", "version": "1"}, "reason": "naive stays champion."}
    skipped = display.training_note({"due": False, "reason": "not due: champion trained 3 h ago, no drift"},
                                    registry, backtest_report()).data
    assert skipped.startswith("**Training skipped this build**: not due: champion trained 3 h ago, no drift.")
    assert "data through 2025-06-01T12:00:00+00:00 (120 scored hourly origins)" in skipped
    assert "champion **naive** (version 1)" in skipped
    trained = display.training_note({"due": True, "reason": "no champion yet"}, registry, backtest_report()).data
    assert trained.startswith("**Trained this build** (no champion yet). naive stays champion.\n")
    assert "backtest.json is missing" in display.training_note({"due": False}, None, None).data


def test_train_stage_helpers():
    s = training.backtest_settings(backtest_days=5, calibration_days=3, calibration_window_days=30,
                                   horizons=[1, 24], refit_every_hours=24, n_jobs=2,
                                   interval_scalings=["unscaled", "rv24"], scaling_p_value=0.05,
                                   interval_adapt_rate=0.01, interval_adapt_horizons=[1])
    assert s.horizons == (1, 24) and s.backtest_days == 5 and s.calibration_window_days == 30
    assert s.adapt_rate == 0.01 and s.adapt_horizons == (1,)
    product = {"backtest": "b.json", "figures": "b.html", "nb": "05.html"}
    upstream = {t: {"nb": f"{t}.html", "report": f"{t}.report"} for t in ("extract", "validate", "features")}
    assert training.run_artifacts(product, upstream) == [
        "b.json", "b.html", "validate.report", "extract.html", "validate.html", "features.html"]
    # not due: nothing is trained, read or written (the last training's products stand)
    assert training.train({"due": False, "reason": "not due"}, None, [], s, {}, {}, {}, "/nonexistent",
                          0.05) is None
    assert profiling.write_profile({"due": False}, "/nonexistent.parquet", {}, {}) is None

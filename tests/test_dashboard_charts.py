"""coincast.dashboard.charts: the forecast fan and the backtest's error by hour of day."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from coincast.dashboard import charts
from coincast.forecasting import figures
from coincast.metrics import mae_by_hour
from dashboard_products import backtest_forecasts, forecast_frame, raw_frame


def test_forecast_figure():
    raw = raw_frame()
    fc = forecast_frame(raw)
    fig = figures.forecast_figure(raw, fc, "bitcoin", history_hours=48)
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
    bundle = figures.figure_bundle(fig)
    json.dumps(bundle)  # JSON-clean for the kernel protocol
    assert bundle["application/vnd.plotly.v1+json"]["data"][0]["name"] == "price"
    # only history (the forecast stage did not run) or nothing at all: still a figure
    assert [t.name for t in figures.forecast_figure(raw, None).data] == ["price"]
    assert len(figures.forecast_figure(None, None).data) == 0


def test_error_by_hour():
    raw = raw_frame()
    bf = backtest_forecasts(raw)
    table = mae_by_hour(bf, 1)
    assert list(table.columns) == ["drift", "naive"] and set(table.index) <= set(range(24))
    g = bf[(bf["model"] == "naive")].assign(hour=bf["origin"].dt.hour)
    g = g[g["hour"] == 5]
    assert table.loc[5, "naive"] == pytest.approx((g["actual"] - g["forecast"]).abs().mean())
    fig = charts.error_by_hour_figure(table, "drift", 1)
    assert [t.name for t in fig.data] == ["drift", "naive"] and all(t.visible is True for t in fig.data)
    # a model far worse than naive is listed but not drawn, so it does not flatten the others
    wide = table.assign(seasonal_naive=table["naive"] * 5, prophet_x=table["naive"] * 1.1)
    shown = {t.name: t.visible for t in charts.error_by_hour_figure(wide, "drift", 1).data}
    assert shown == {"drift": True, "naive": True, "seasonal_naive": "legendonly", "prophet_x": True}
    assert mae_by_hour(None).empty and mae_by_hour(bf.drop(columns=["actual"])).empty
    assert mae_by_hour(bf.assign(scored=False)).empty

"""Plotly figures of a backtest: error by origin and by hour of day, each model against naive."""
from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio

from coincast.backtest import NAIVE, BacktestResult
from coincast.metrics import mae_by_hour, scored_errors


def error_by_origin(result: BacktestResult, horizon: int = 1, smooth_hours: int = 24) -> go.Figure:
    g = scored_errors(result.forecasts, horizon)
    fig = go.Figure()
    for name, m in g.groupby("model", sort=False):
        s = m.set_index("origin")["abs_error"].rolling(smooth_hours, min_periods=1).mean()
        fig.add_trace(go.Scatter(x=s.index, y=s.to_numpy(), mode="lines", name=name,
                                 line={"width": 3 if name == NAIVE else 1.5}))
    fig.update_layout(title=f"{horizon} h absolute error by origin ({smooth_hours} h rolling mean)",
                      xaxis_title="origin (UTC)", yaxis_title="absolute error", template="plotly_white")
    return fig


def error_by_hour(result: BacktestResult, horizon: int = 1) -> go.Figure:
    table = mae_by_hour(result.forecasts, horizon)
    fig = go.Figure()
    for name in (m for m in result.forecasts["model"].unique() if m in table.columns):  # in the models' order
        s = table[name].dropna()
        fig.add_trace(go.Scatter(x=s.index, y=s.to_numpy(), mode="lines+markers", name=name,
                                 line={"width": 3 if name == NAIVE else 1.5}))
    fig.update_layout(title=f"{horizon} h MAE by hour of day of the origin (UTC)",
                      xaxis_title="hour (UTC)", yaxis_title="MAE", template="plotly_white")
    return fig


def backtest_html(result: BacktestResult, title: str) -> str:
    """One self-contained HTML page (plotly.js inline, works offline) with the figures per horizon."""
    figs = []
    for h in result.settings.horizons:
        figs += [error_by_origin(result, h), error_by_hour(result, h)]
    parts = [pio.to_html(f, include_plotlyjs=(i == 0), full_html=False) for i, f in enumerate(figs)]
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body><h1>{title}</h1>{''.join(parts)}</body></html>"

"""The page's plotly figures: recent prices with the forecast fan, and the backtest's error by hour of day."""
from __future__ import annotations

import json
from typing import Any

import pandas as pd

from coincast.backtest import NAIVE
from coincast.timeseries import naive_utc, utc_times

HISTORY_HOURS = 72


def plot_times(values: Any) -> list[Any]:
    """UTC timestamps without a zone (plotly.js has no time zones: mixing offsets and naive strings shifts)."""
    return list(naive_utc(utc_times(list(values))))


def forecast_figure(raw: pd.DataFrame | None, forecast: pd.DataFrame | None, coin: str = "",
                    history_hours: int = HISTORY_HOURS) -> Any:
    """Recent hourly prices, the 24-hour forecast with its 95 % and 80 % fan, and the naive line."""
    import plotly.graph_objects as go

    fig = go.Figure()
    last_t = last_p = None
    if raw is not None and len(raw):
        r = raw.dropna(subset=["price"]).sort_values("timestamp")
        r = r.loc[r["timestamp"] > r["timestamp"].max() - pd.Timedelta(hours=history_hours)]
        fig.add_trace(go.Scatter(x=plot_times(r["timestamp"]), y=r["price"], mode="lines", name="price",
                                 line={"color": "#1f2933", "width": 2}))
        last_t, last_p = plot_times(r["timestamp"].iloc[-1:])[0], float(r["price"].iloc[-1])
    if forecast is not None and len(forecast):
        f = forecast.sort_values("horizon")
        x = plot_times(f["target_time"])
        anchor_x = [last_t] if last_t is not None else []
        anchor_y = [last_p] if last_p is not None else []
        for level, color in (("95", "rgba(66,133,244,0.15)"), ("80", "rgba(66,133,244,0.30)")):
            if {f"lower_{level}", f"upper_{level}"} <= set(f.columns):
                fig.add_trace(go.Scatter(x=anchor_x + x, y=anchor_y + list(f[f"upper_{level}"]), mode="lines",
                                         line={"width": 0}, showlegend=False, hoverinfo="skip",
                                         name=f"upper {level} %"))
                fig.add_trace(go.Scatter(x=anchor_x + x, y=anchor_y + list(f[f"lower_{level}"]), mode="lines",
                                         line={"width": 0}, fill="tonexty", fillcolor=color,
                                         name=f"{level} % interval"))
        model = str(f["model_name"].iloc[0]) if "model_name" in f.columns else "forecast"
        fig.add_trace(go.Scatter(x=anchor_x + x, y=anchor_y + list(f["forecast"]), mode="lines+markers",
                                 name=f"forecast ({model})", line={"color": "#1a73e8", "width": 2},
                                 marker={"size": 4}))
        if last_p is not None:
            fig.add_trace(go.Scatter(x=[last_t, x[-1]], y=[last_p, last_p], mode="lines",
                                     name="naive (price stays)", line={"color": "#e8710a", "dash": "dot", "width": 2}))
    if last_t is not None:
        fig.add_vline(x=last_t, line={"color": "#9aa5b1", "width": 1, "dash": "dash"})
    fig.update_layout(title=f"{coin}: last {history_hours} h and the next {0 if forecast is None else len(forecast)} h",
                      template="plotly_white", height=430, margin={"l": 60, "r": 20, "t": 50, "b": 40},
                      xaxis_title="time (UTC)", yaxis_title="price", hovermode="x unified",
                      legend={"orientation": "h", "y": -0.18, "traceorder": "normal"})
    return fig


def error_by_hour_figure(table: pd.DataFrame, champion: str | None = None, horizon: int = 1,
                         hide_above: float = 1.5) -> Any:
    """One line per model of ``table`` (:func:`coincast.metrics.mae_by_hour`); models whose mean error is over
    ``hide_above`` × naive's start hidden (legend only)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    naive = table[NAIVE] if NAIVE in table.columns else None
    for name in table.columns:
        width = 3 if name in (champion, NAIVE) else 1.3
        style = {"width": width}
        if name == NAIVE:
            style["color"] = "#e8710a"
        # a model far worse than naive would squash the others against the axis: listed, not drawn
        far = naive is not None and name not in (champion, NAIVE) and table[name].mean() > hide_above * naive.mean()
        fig.add_trace(go.Scatter(x=table.index, y=table[name], mode="lines+markers", name=str(name), line=style,
                                 marker={"size": 4}, visible="legendonly" if far else True))
    fig.update_layout(title=f"{horizon} h MAE by hour of day of the origin (UTC); click a name to show/hide it",
                      template="plotly_white",
                      height=340, margin={"l": 60, "r": 20, "t": 50, "b": 40}, xaxis_title="hour (UTC)",
                      yaxis_title="MAE", xaxis={"dtick": 3})
    return fig


def figure_bundle(fig: Any) -> dict[str, Any]:
    """The mime bundle of a plotly figure, JSON-clean (plotly's encoder: typed arrays, dates as strings)."""
    import plotly.io as pio

    return {"application/vnd.plotly.v1+json": json.loads(pio.to_json(fig, validate=False)),
            "text/plain": f"<plotly figure: {fig.layout.title.text or ''}>"}


__all__ = ["HISTORY_HOURS", "error_by_hour_figure", "figure_bundle", "forecast_figure", "plot_times"]

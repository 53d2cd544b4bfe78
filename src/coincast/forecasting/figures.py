"""Plotly figures: the backtest (backtest.html), the plot each executed notebook shows, the dashboard's forecast.

Builders take frames / dicts and return a ``go.Figure``; :func:`embed` shows one in a notebook. In a notebook
exported to HTML (``executed_format: html``) the output carries plotly.js inline, so the page draws offline, as
backtest.html does (~4.8 MB a page); an ``.ipynb`` (the hourly tick) keeps only plotly's JSON, which Jupyter
draws (no 4.8 MB written every hour).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from coincast.forecasting.backtest import NAIVE, BacktestResult
from coincast.metrics import mae_by_hour, scored_errors
from coincast.timeseries import naive_utc, utc_times

#: hours of price history before the forecast in :func:`forecast_figure`
FAN_HISTORY_HOURS = 72
#: :func:`backtest_rel_mae` draws rel_mae up to this; a model further off sits at the edge, labelled with its value
REL_MAE_AXIS_MAX = 1.5
NAIVE_COLOR = "#e8710a"
PRICE_COLOR = "#1f2933"
_AXIS = {"gridcolor": "#EBF0F8", "linecolor": "#EBF0F8", "zerolinecolor": "#EBF0F8", "zerolinewidth": 2, "ticks": "",
         "title": {"standoff": 15}, "automargin": True}
#: plotly_white's layout for 2-D charts as a template of its own: the "plotly_white" template also carries defaults
#: for every trace type, and building it for each figure took most of the notebooks' plotting time in a tick
TEMPLATE = {"layout": {
    "colorway": ["#636efa", "#EF553B", "#00cc96", "#ab63fa", "#FFA15A", "#19d3f3", "#FF6692", "#B6E880", "#FF97FF",
                 "#FECB52"],
    "font": {"color": "#2a3f5f"}, "hoverlabel": {"align": "left"}, "hovermode": "closest", "paper_bgcolor": "white",
    "plot_bgcolor": "white", "xaxis": _AXIS, "yaxis": _AXIS, "title": {"x": 0.05}, "autotypenumbers": "strict",
    "annotationdefaults": {"arrowcolor": "#2a3f5f", "arrowhead": 0, "arrowwidth": 1},
    "shapedefaults": {"line": {"color": "#2a3f5f"}}}}
#: every figure starts from this layout (given to the constructor: plotly's default template is then never built)
LAYOUT = {"template": TEMPLATE, "margin": {"l": 60, "r": 20, "t": 60, "b": 40}}


def plot_times(values: Any) -> np.ndarray:
    """UTC timestamps without a zone (plotly.js has no time zones: mixing offsets and naive strings shifts), as a
    datetime64 array (plotly checks an array of 700 hours ~4x faster than a list of Timestamps)."""
    return naive_utc(utc_times(list(values))).to_numpy().astype("datetime64[s]")


# --- the backtest (backtest.html) -----------------------------------------------------------------------------
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


def _title(text: str, x: float, y: float) -> dict[str, Any]:
    """A panel's title above it (paper coordinates)."""
    return {"text": text, "x": x, "y": y, "xref": "paper", "yref": "paper", "xanchor": "center", "yanchor": "bottom",
            "showarrow": False, "font": {"size": 14}}


def _line(axis: str, at: Any, color: str, **style: Any) -> dict[str, Any]:
    """A line across one panel: vertical at x = ``at`` for an x axis ("x", "x2", ...), else horizontal."""
    across = "x" if axis.startswith("y") else "y"
    ends = {f"{axis[0]}0": at, f"{axis[0]}1": at, f"{across}0": 0, f"{across}1": 1}
    return {"type": "line", f"{axis[0]}ref": axis, f"{across}ref": "paper", **ends,
            "line": {"color": color, **style}}


def backtest_rel_mae(report: Mapping[str, Any], champion: str | None = None) -> go.Figure:
    """backtest.json as dot plots, one panel per horizon: each model's rel_mae (MAE / naive MAE on the same
    origins) against naive's 1; models sorted by 1 h rel_mae, the champion named. (Panels laid out by hand:
    plotly's make_subplots took ten times as long.)"""
    models = report.get("models") or {}
    horizons = sorted({int(h) for m in models.values() for h in m.get("horizons", {})})

    def rel(name: str, h: int) -> float:
        v = models[name]["horizons"].get(str(h), {}).get("rel_mae")
        return float("nan") if v is None else float(v)

    order = sorted(models, key=lambda n: (pd.isna(rel(n, 1)), rel(n, 1), n))
    labels = [f"{n} (champion)" if n == champion else n for n in order]
    gap = 0.06
    width = (1 - gap * (len(horizons) - 1)) / max(len(horizons), 1)
    traces, layout, shapes, titles = [], {}, [], []
    for i, h in enumerate(horizons):
        axis, lo = ("x" if i == 0 else f"x{i + 1}"), i * (width + gap)
        values = [rel(n, h) for n in order]
        traces.append(go.Scatter(
            x=[min(v, REL_MAE_AXIS_MAX) for v in values], y=labels, xaxis=axis, mode="markers+text",
            marker={"size": 11, "color": [NAIVE_COLOR if n == NAIVE else "#1a73e8" for n in order]},
            text=[f"{v:.3f}" + (" ▶" if v > REL_MAE_AXIS_MAX else "") for v in values],
            textposition=["middle left" if v > REL_MAE_AXIS_MAX else "middle right" for v in values],
            textfont={"size": 10}, name=f"{h} h ahead", showlegend=False))
        layout[axis.replace("x", "xaxis")] = {"domain": [lo, lo + width], "anchor": "y", "title": {"text": "rel_mae"}}
        shapes.append(_line(axis, 1, NAIVE_COLOR, dash="dot", width=1.5))
        titles.append(_title(f"{h} h ahead", lo + width / 2, 1))
    return go.Figure(traces, layout={
        **LAYOUT, **layout, "yaxis": {"autorange": "reversed"}, "shapes": shapes, "annotations": titles,
        "height": 140 + 34 * len(order),
        "title": {"text": "Backtest rel_mae per model: < 1 beats naive (dotted line = 1); "
                          f"▶ beyond {REL_MAE_AXIS_MAX}"}})


# --- extract, forecast, monitor ------------------------------------------------------------------------------
def price_history(raw: pd.DataFrame, added_hours: Sequence[Any] = (), coin: str = "") -> go.Figure:
    """The extracted window's hourly price; the hours this extraction added to the history are marked unless
    every hour is new (a first build)."""
    r = raw.dropna(subset=["price"]).sort_values("timestamp")
    new = pd.to_datetime(r["timestamp"], utc=True).isin(pd.to_datetime(pd.Index(list(added_hours)), utc=True))
    fig = go.Figure(go.Scatter(x=plot_times(r["timestamp"]), y=r["price"], mode="lines", name="price",
                               line={"color": PRICE_COLOR, "width": 1.5}), layout=LAYOUT)
    if 0 < new.sum() < len(r):
        fig.add_trace(go.Scatter(x=plot_times(r.loc[new, "timestamp"]), y=r.loc[new, "price"], mode="markers",
                                 name=f"fetched by this build ({int(new.sum())} h)",
                                 marker={"color": NAIVE_COLOR, "size": 7}))
    fetched = "all fetched by this build" if len(r) and new.all() else f"{int(new.sum())} fetched by this build"
    fig.update_layout(title=f"{coin}: {len(r)} hourly prices ({fetched})", height=380,
                      xaxis_title="time (UTC)", yaxis_title="price", hovermode="x unified",
                      legend={"orientation": "h", "y": -0.2})
    return fig


def forecast_figure(raw: pd.DataFrame | None, forecast: pd.DataFrame | None, coin: str = "",
                    history_hours: int = FAN_HISTORY_HOURS) -> go.Figure:
    """Recent hourly prices, the 24-hour forecast with its 95 % and 80 % fan, and the naive line."""
    fig = go.Figure(layout=LAYOUT)
    last_t = last_p = None
    if raw is not None and len(raw):
        r = raw.dropna(subset=["price"]).sort_values("timestamp")
        r = r.loc[r["timestamp"] > r["timestamp"].max() - pd.Timedelta(hours=history_hours)]
        fig.add_trace(go.Scatter(x=plot_times(r["timestamp"]), y=r["price"], mode="lines", name="price",
                                 line={"color": PRICE_COLOR, "width": 2}))
        last_t, last_p = pd.Timestamp(plot_times(r["timestamp"].iloc[-1:])[0]), float(r["price"].iloc[-1])
    if forecast is not None and len(forecast):
        f = forecast.sort_values("horizon")
        x = [pd.Timestamp(t) for t in plot_times(f["target_time"])]
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
                                     name="naive (price stays)",
                                     line={"color": NAIVE_COLOR, "dash": "dot", "width": 2}))
    if last_t is not None:  # the last observed hour
        fig.update_layout(shapes=[_line("x", last_t, "#9aa5b1", width=1, dash="dash")])
    fig.update_layout(title=f"{coin}: last {history_hours} h and the next {0 if forecast is None else len(forecast)} h",
                      height=430, margin={"l": 60, "r": 20, "t": 50, "b": 40},
                      xaxis_title="time (UTC)", yaxis_title="price", hovermode="x unified",
                      legend={"orientation": "h", "y": -0.18, "traceorder": "normal"})
    return fig


def live_accuracy(over_time: pd.DataFrame, horizons: Sequence[int], min_scored: int, window_hours: int) -> go.Figure:
    """``coincast.operations.live.accuracy_over_time`` in two panels: rolling rel_mae per horizon against naive's 1, and
    rolling interval coverage against its 80 % / 95 % targets. Until some horizon has ``min_scored`` scored
    predictions in a window: bars of the scored predictions per horizon against the number needed, titled
    "too few to score"."""
    scored = over_time.dropna(subset=["rel_mae"])
    counts = {int(h): int(over_time.loc[over_time["horizon"] == h, "n"].max()) if (over_time["horizon"] == h).any()
              else 0 for h in horizons}
    short = [f"{h} h: {n} scored" for h, n in counts.items() if n < min_scored]
    if scored.empty:
        fig = go.Figure(go.Bar(x=[f"{h} h ahead" for h in counts], y=list(counts.values()), name="scored",
                               marker={"color": "#9aa5b1"}, text=list(counts.values()), textposition="outside"),
                        layout=LAYOUT)
        needed = {"text": f"needed to score: {min_scored}", "x": 0, "xref": "paper", "xanchor": "left",
                  "y": min_scored, "yref": "y", "yanchor": "bottom", "showarrow": False}
        fig.update_layout(shapes=[_line("y", min_scored, NAIVE_COLOR, dash="dot")], annotations=[needed],
                          height=340, yaxis={"range": [0, min_scored * 1.25], "title": "scored predictions"},
                          title=f"Live accuracy: too few to score yet (fewer than {min_scored} scored predictions "
                                f"in {window_hours} h); hourly builds add one per hour and horizon")
        return fig
    traces = []
    for h, g in scored.groupby("horizon"):
        x = plot_times(g["target_time"])
        traces.append(go.Scatter(x=x, y=g["rel_mae"], mode="lines", name=f"{h} h rel_mae"))
        for level, dash in (("80", "solid"), ("95", "dot")):
            traces.append(go.Scatter(x=x, y=g[f"coverage_{level}"], mode="lines", line={"dash": dash},
                                     xaxis="x2", yaxis="y2", name=f"{h} h coverage {level} %"))
    return go.Figure(traces, layout={  # two panels sharing the time axis (by hand, as in backtest_rel_mae)
        **LAYOUT, "height": 560, "legend": {"orientation": "h", "y": -0.12},
        "xaxis": {"anchor": "y", "matches": "x2", "showticklabels": False}, "xaxis2": {"anchor": "y2"},
        "yaxis": {"domain": [0.56, 1]}, "yaxis2": {"domain": [0, 0.44]},
        "shapes": [_line("y", 1, NAIVE_COLOR, dash="dot"),
                   *(_line("y2", target, "#9aa5b1", dash="dash", width=1) for target in (0.8, 0.95))],
        "annotations": [_title("rel_mae: MAE / naive MAE on the same hours (< 1 beats naive)", 0.5, 1),
                        _title("share of actual prices inside the 80 % / 95 % intervals", 0.5, 0.44)],
        "title": {"text": f"Live accuracy over time (each point: the {window_hours} h before it)"
                          + (f"; too few to score: {', '.join(short)}" if short else "")}})


# --- showing a figure ---------------------------------------------------------------------------------------------
def figure_bundle(fig: go.Figure) -> dict[str, Any]:
    """The mime bundle of a plotly figure, JSON-clean (plotly's encoder: typed arrays, dates as strings)."""
    return {"application/vnd.plotly.v1+json": json.loads(pio.to_json(fig, validate=False)),
            "text/plain": f"<plotly figure: {fig.layout.title.text or ''}>"}


@dataclass(frozen=True)
class Embedded:
    """A figure as a notebook output (IPython calls :meth:`_repr_mimebundle_`)."""

    figure: go.Figure
    inline_js: bool

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle = figure_bundle(self.figure)
        if self.inline_js:  # nbconvert's HTML export shows text/html, not plotly's JSON
            bundle["text/html"] = pio.to_html(self.figure, include_plotlyjs=True, full_html=False, validate=False)
        return bundle


def embed(fig: go.Figure, executed: str | os.PathLike) -> Embedded:
    """``fig`` as the output of a cell of the notebook executed to ``executed`` (its ``product["nb"]``): with
    plotly.js inline when that is an HTML page, plotly's JSON alone otherwise."""
    return Embedded(fig, Path(executed).suffix.lower() == ".html")

"""The page's own plotly figure: the backtest's error by hour of day (the forecast fan is
:func:`coincast.forecasting.figures.forecast_figure`, shared with the forecast notebook)."""
from __future__ import annotations

from typing import Any

import pandas as pd

from coincast.forecasting.backtest import NAIVE


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


__all__ = ["error_by_hour_figure"]

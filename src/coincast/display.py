"""What the executed notebooks show: small renderers, so the notebooks stay one call per cell."""
from __future__ import annotations

import logging
import sys
from typing import Any, Mapping

import pandas as pd

from coincast.data.sources.base import data_label



def setup_logging(level: int = logging.INFO) -> None:
    """Log coincast's messages to stdout, so executed notebooks keep them."""
    root = logging.getLogger("coincast")
    if not any(getattr(h, "_coincast", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._coincast = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)


def banner(summary: Mapping[str, Any]) -> Any:
    """A Markdown banner naming the coin, the window and where the data came from."""
    from IPython.display import Markdown

    label = data_label(summary.get("source"))
    loud = "**⚠ " + label + "**" if summary.get("source") != "coingecko" else label
    return Markdown(
        f"### {summary.get('coin')}: {summary.get('rows')} hourly rows, {summary.get('first')} → {summary.get('last')}\n\n"
        f"{loud}  \nClock: {summary.get('now')}"
    )


def show(*objects: Any) -> None:
    """Display each object as a cell output (for cells whose last line is not an expression)."""
    from IPython.display import display

    for obj in objects:
        display(obj)


def checks_table(report: Mapping[str, Any]) -> pd.DataFrame:
    """The gate's checks as a table: check, passed, the value measured, its limit, the one-line message."""
    from coincast.data.validation import measured

    limits = report.get("limits") or {}
    rows = [{"check": c["name"], "passed": c["passed"], **dict(zip(("value", "limit"), measured(c, limits))),
             "message": c["message"]} for c in report["checks"]]
    return pd.DataFrame(rows).set_index("check")


def checks_view(report: Mapping[str, Any]) -> Any:
    """:func:`checks_table` as a notebook shows it: an HTML table with every message in full (a DataFrame's own
    display cuts text at 50 characters; pandas' Styler would import matplotlib)."""
    from IPython.display import HTML

    return HTML(checks_table(report).to_html())


def training_note(decision: Mapping[str, Any], registry: Mapping[str, Any] | None,
                  backtest: Mapping[str, Any] | None) -> Any:
    """Whether this build trained (and why, or why not) and which backtest the train notebook shows below:
    ``registry`` and ``backtest`` are registry.json and backtest.json (this build's, or the last training's)."""
    from IPython.display import Markdown

    if decision.get("due"):
        promotion = str((registry or {}).get("reason", "")).rstrip(".")
        head = f"**Trained this build** ({decision.get('reason')}). {promotion}."
    else:
        head = (f"**Training skipped this build**: {decision.get('reason')}. The last training's products stand: "
                "its backtest, its registry entry and its champion.")
    bt, champion = backtest or {}, (registry or {}).get("champion") or {}
    shown = (f"the backtest on data through {bt.get('data_through')} ({bt.get('scored_origins')} scored hourly "
             f"origins)" if bt else "no backtest (backtest.json is missing)")
    who = (f"champion **{champion.get('model_name')}** (version {champion.get('version')})" if champion
           else "no champion recorded")
    return Markdown(f"{head}\n\nShown below: {shown}; {who}.")

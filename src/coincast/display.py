"""What the executed notebooks show: small renderers, so the notebooks stay one call per cell."""
from __future__ import annotations

import logging
import sys
from typing import Any, Mapping

import pandas as pd

_LABELS = {
    "simulated": "SIMULATED data from coincast's built-in market simulator: not real prices.",
    "replay": "REPLAYED data from a recorded file at a simulated clock: not live prices.",
    "coingecko": "Live data provided by CoinGecko.",
}


def setup_logging(level: int = logging.INFO) -> None:
    """Log coincast's messages to stdout, so executed notebooks keep them."""
    root = logging.getLogger("coincast")
    if not any(getattr(h, "_coincast", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._coincast = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)


def data_label(source: str | None) -> str:
    return _LABELS.get(source or "", f"data from {source}")


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
    """The gate's checks as a table: name, pass/fail, message."""
    rows = [{"check": c["name"], "passed": c["passed"], "detail": c["message"]} for c in report["checks"]]
    return pd.DataFrame(rows).set_index("check")

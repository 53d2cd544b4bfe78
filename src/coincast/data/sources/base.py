"""The one interface every source implements, and the market_chart parser they share.

A source returns *observations*: one row per sample the source has, with the time the price
was observed (UTC), not aligned to any grid. Aligning to the hourly grid happens once, in
:mod:`coincast.data.history`, so the live API, a replayed file and the simulator are treated alike.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Protocol

import pandas as pd

logger = logging.getLogger(__name__)

#: Columns every source returns, in this order.
OBSERVATION_COLUMNS = ["timestamp", "price", "volume", "market_cap"]

_SERIES = {"prices": "price", "total_volumes": "volume", "market_caps": "market_cap"}


class SourceError(RuntimeError):
    """A source could not deliver data; the message is one line naming the problem."""


class Source(Protocol):
    """fetch(coin, start, end) -> observations in [start, end] (UTC), sorted, unique timestamps."""

    name: str  # "coingecko", "replay" or "simulated": carried to products as the data's label

    def fetch(self, coin: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame: ...


def empty_observations() -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series(dtype="float64") for c in OBSERVATION_COLUMNS})
    df["timestamp"] = pd.Series(dtype="datetime64[ns, UTC]")
    return df


def parse_market_chart(payload: Mapping[str, Any]) -> pd.DataFrame:
    """Turn a CoinGecko ``market_chart`` body into observations.

    Accepts the plain response ``{"prices": [[ms, v], ...], "market_caps": ..., "total_volumes": ...}``
    and the same wrapped in ``{"data": {...}}``. Rows are sorted by time and duplicate timestamps
    dropped (the last one wins, as a later sample of the same instant). Missing series become NaN.
    """
    if not isinstance(payload, Mapping):
        raise SourceError(f"market_chart payload is a {type(payload).__name__}, expected a JSON object")
    if "prices" not in payload and isinstance(payload.get("data"), Mapping):
        payload = payload["data"]
    if "prices" not in payload:
        raise SourceError(f"market_chart payload has no 'prices' array (keys: {sorted(payload)[:5]})")
    frames = []
    for key, column in _SERIES.items():
        rows = payload.get(key) or []
        try:
            s = pd.DataFrame(rows, columns=["ms", column], dtype="float64")
        except (ValueError, TypeError) as exc:
            raise SourceError(f"market_chart '{key}' is not a list of [unix_ms, value] pairs: {exc}") from None
        s = s.dropna(subset=["ms"]).drop_duplicates("ms", keep="last").set_index("ms")
        frames.append(s)
    df = pd.concat(frames, axis=1, join="outer").sort_index()
    if df.empty:
        return empty_observations()
    df.index = pd.to_datetime(df.index.astype("int64"), unit="ms", utc=True)
    df.index.name = "timestamp"
    df = df.reset_index()
    return df[OBSERVATION_COLUMNS]


def clip_window(df: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Rows with start <= timestamp <= end."""
    mask = (df["timestamp"] >= start) & (df["timestamp"] <= end)
    return df.loc[mask].reset_index(drop=True)


#: what a reader is told about where the data came from (notebooks, profile, dashboard)
SOURCE_LABELS = {
    "simulated": "SIMULATED data from coincast's built-in market simulator: not real prices.",
    "replay": "REPLAYED data from a recorded file at a simulated clock: not live prices.",
    "coingecko": "Live data provided by CoinGecko.",
}


def data_label(source: str | None) -> str:
    """The one line telling a reader where the data came from (simulated and replayed data say so loudly)."""
    return SOURCE_LABELS.get(source or "", f"data from {source}")

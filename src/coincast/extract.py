"""Extraction: source -> aligned hourly observations -> the accumulated raw history -> the window.

``extract_data`` is the small public entry point; ``extract`` also reports what it did (the clock,
rows added) for the pipeline's metadata.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from coincast.config import parse_time, utc_now
from coincast.history import align_to_hourly, missing_ranges, read_history, update_history
from coincast.publish import new_build_id
from coincast.sources import make_source
from coincast.sources.base import Source
from coincast.versioning import file_md5

logger = logging.getLogger(__name__)


@dataclass
class Extraction:
    """What one extraction produced: the hourly window and how it was obtained."""

    data: pd.DataFrame
    coin: str
    source: str
    now: pd.Timestamp
    start: pd.Timestamp
    rows_added: int
    history_rows: int
    extra: dict[str, Any] = field(default_factory=dict)
    build_id: str = ""  # this extraction's stamp (coincast.publish): set once, so every summary() agrees

    def __post_init__(self) -> None:
        if not self.build_id:
            self.build_id = new_build_id(self.source, self.now)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description (no secrets: nothing here comes from the environment)."""
        return {
            "coin": self.coin,
            "source": self.source,
            "simulated": self.source == "simulated",
            "now": self.now.isoformat(),
            "window_start": self.start.isoformat(),
            "rows": int(len(self.data)),
            "first": self.data["timestamp"].min().isoformat() if len(self.data) else None,
            "last": self.data["timestamp"].max().isoformat() if len(self.data) else None,
            "rows_added_to_history": int(self.rows_added),
            "history_rows": int(self.history_rows),
            **self.extra,
            "build_id": self.build_id,
        }


def build_source(
    source: str,
    *,
    vs_currency: str = "usd",
    replay_file: str | Path | dict | None = None,
    now: pd.Timestamp | None = None,
    seed: int = 42,
) -> Source:
    if source == "coingecko":
        return make_source("coingecko", vs_currency=vs_currency, now=now)
    if source == "replay":
        return make_source("replay", files=replay_file, now=now)
    return make_source(source, seed=seed, now=now)


def resolve_clock(source: str, coin: str, replay_now: Any = None, replay_file: Any = None) -> pd.Timestamp:
    """The pipeline's "now": ``replay_now`` if given, else the replay file's end, else the real clock."""
    if replay_now is not None:
        return parse_time(replay_now, "replay_now")
    if source == "replay":
        return make_source("replay", files=replay_file).clock(coin)  # type: ignore[attr-defined]
    return utc_now()


def history_path(history_dir: str | Path, src: Source, coin: str, vs_currency: str) -> Path:
    """``<history_dir>/<source>/<series>/<coin>-<vs_currency>.parquet``: one file per distinct series, so a
    different simulator seed, replay file or quote currency never extends another series' history."""
    if src.name == "simulated":
        series = f"seed{src.seed}"  # type: ignore[attr-defined]
    elif src.name == "replay":
        series = src.path_for(coin).stem  # type: ignore[attr-defined]
    else:
        series = "api"
    return Path(history_dir) / src.name / series / f"{coin}-{vs_currency.lower()}.parquet"


def extract(
    coin: str,
    days: int = 90,
    source: str = "coingecko",
    *,
    vs_currency: str = "usd",
    replay_file: str | Path | dict | None = None,
    replay_now: Any = None,
    history_dir: str | Path | None = None,
    seed: int = 42,
    src: Source | None = None,
) -> Extraction:
    """Fetch what the history lacks for the last ``days`` days before the clock, store it, return the window.

    ``src`` injects a ready-made source (e.g. a CoinGecko client with other retry settings); by
    default it is built from ``source`` and the clock.
    """
    now = resolve_clock(source, coin, replay_now, replay_file)  # one clock for the whole extraction
    if src is None:
        src = build_source(source, vs_currency=vs_currency, replay_file=replay_file, now=now, seed=seed)
    start = (now - pd.Timedelta(days=days)).floor("h")

    if history_dir is None:  # stand-alone use: no raw layer, just the aligned window
        obs = src.fetch(coin, start, now)
        hourly = align_to_hourly(obs)
        hourly["source"] = src.name
        history, added = hourly, len(hourly)
    else:
        path = history_path(history_dir, src, coin, vs_currency)
        history = read_history(path)
        added = 0
        for lo, hi in missing_ranges(history, start, now):
            obs = src.fetch(coin, lo, hi)
            history, n = update_history(path, obs, src.name)
            added += n
    window = history.loc[(history["timestamp"] >= start) & (history["timestamp"] <= now)].reset_index(drop=True)
    logger.info("%s: %d hourly rows from %s (%d new), clock %s", coin, len(window), src.name, added, now)
    extra: dict[str, Any] = {"vs_currency": vs_currency.lower()}
    if history_dir is not None:
        extra["series"] = path.parent.name
        extra["data_version"] = file_md5(path) if path.exists() else None
    return Extraction(window, coin, src.name, now, start, added, len(history), extra)


def extract_data(coin_id: str = "bitcoin", days: int = 30, source: str = "coingecko", **kwargs: Any) -> pd.DataFrame:
    """Hourly prices for ``coin_id`` over the last ``days`` days: timestamp (UTC), price, volume, market_cap, source.

    >>> df = extract_data("bitcoin", days=30)                      # live CoinGecko (key from the environment)
    >>> df = extract_data("bitcoin", days=30, source="simulated")  # offline
    """
    return extract(coin_id, days, source, **kwargs).data

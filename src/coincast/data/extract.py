"""Extraction: source -> aligned hourly observations -> the accumulated raw history -> the window.

``extract_data`` is the small public entry point; ``extract`` also reports what it did (the clock,
rows added, rows quarantined) for the pipeline's metadata. Rows failing a row-level rule never enter the
history or the window: they are this extraction's ``quarantined`` rows, which the gate judges with the window.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from coincast.config import parse_time
from coincast.files import file_md5, new_build_id
from coincast.data.history import (
    HistoryError, align_to_hourly, empty_quarantine, missing_ranges, quarantine_rows, read_history, repair_history,
    split_rows, store_batch,
)
from coincast.data.sources import make_source
from coincast.data.sources.base import Source, SourceError
from coincast.timeseries import observed_prices, utc_now

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
    quarantined: pd.DataFrame = field(default_factory=empty_quarantine)  # this extraction's rejected rows
    build_id: str = ""  # this extraction's stamp (coincast.operations.publish): set once, so every summary() agrees
    # the window's hours this extraction added to the history (all of them without a history)
    added_hours: pd.DatetimeIndex = field(default_factory=lambda: pd.DatetimeIndex([], tz="UTC"))

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
            "quarantined": int(len(self.quarantined)),
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
    fetch_retries: int | None = None,
    fetch_max_wait_seconds: float | None = None,
) -> Source:
    """The source ``source`` at the clock ``now``; for CoinGecko, the key and host from the environment and the
    retry budget (``fetch_retries``, ``fetch_max_wait_seconds``; None: the client's defaults)."""
    if source == "coingecko":
        from coincast.data.sources.coingecko import config_from_env

        budget = {"max_retries": fetch_retries, "max_total_seconds": fetch_max_wait_seconds}
        config = config_from_env(**{k: v for k, v in budget.items() if v is not None})
        return make_source("coingecko", vs_currency=vs_currency, now=now, config=config)
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
    fetch_retries: int | None = None,
    fetch_max_wait_seconds: float | None = None,
    src: Source | None = None,
) -> Extraction:
    """Fetch what the history lacks for the last ``days`` days before the clock, store it, return the window.

    ``src`` injects a ready-made source (e.g. a CoinGecko client with other retry settings); by
    default it is built from ``source`` and the clock.
    """
    now = resolve_clock(source, coin, replay_now, replay_file)  # one clock for the whole extraction
    if src is None:
        src = build_source(source, vs_currency=vs_currency, replay_file=replay_file, now=now, seed=seed,
                           fetch_retries=fetch_retries, fetch_max_wait_seconds=fetch_max_wait_seconds)
    start = (now - pd.Timedelta(days=days)).floor("h")

    batches = [empty_quarantine()]
    if history_dir is None:  # stand-alone use: no raw layer, just the aligned window (bad rows kept apart)
        obs = src.fetch(coin, start, now)
        hourly, bad = split_rows(align_to_hourly(obs))
        hourly["source"] = src.name
        history, added, stored_before = hourly, len(hourly), pd.DatetimeIndex([], tz="UTC")
        batches.append(quarantine_rows(bad, src.name, "standalone"))
    else:
        path = history_path(history_dir, src, coin, vs_currency)
        history, legacy = repair_history(path)  # bad rows of older versions out: their hours are refetched
        added, stored_before = 0, pd.DatetimeIndex(history["timestamp"])
        try:
            for lo, hi in missing_ranges(history, start, now):
                stored = store_batch(path, src.fetch(coin, lo, hi), src.name)
                history, added = stored.history, added + stored.added
                batches.append(stored.quarantined)
        except SourceError as exc:  # same error type and fields, its message completed
            exc.args = (f"{exc}. {fetch_failed_note(len(history), added)}", *exc.args[1:])
            raise
    quarantined = pd.concat([b for b in batches if len(b)] or batches, ignore_index=True)
    window = history.loc[(history["timestamp"] >= start) & (history["timestamp"] <= now)].reset_index(drop=True)
    logger.info("%s: %d hourly rows from %s (%d new, %d quarantined), clock %s", coin, len(window), src.name, added,
                len(quarantined), now)
    extra: dict[str, Any] = {"vs_currency": vs_currency.lower()}
    if history_dir is not None:
        extra["series"] = path.parent.name
        extra["data_version"] = file_md5(path) if path.exists() else None
        extra["history_file"] = str(path)
        extra["quarantined_legacy"] = legacy
    fetched = pd.DatetimeIndex(window["timestamp"]).difference(stored_before)
    return Extraction(window, coin, src.name, now, start, added, len(history), extra, quarantined, added_hours=fetched)


def history_file_for(env: Mapping[str, Any], coin: str) -> Path:
    """The raw-history file a build with the settings ``env`` (env.yaml + variants + overrides) uses for ``coin``."""
    src = build_source(env["source"], vs_currency=env.get("vs_currency", "usd"), replay_file=env.get("replay_file"),
                       seed=env.get("seed", 42))
    return history_path(env["history_dir"], src, coin, env.get("vs_currency", "usd"))


def cross_coin_prices(cross_coins: Sequence[str], coin: str, through: Any, env: Mapping[str, Any]) -> dict[str, pd.Series]:
    """The stored hourly prices of each coin of ``cross_coins`` but ``coin`` itself, up to ``through`` (this build's
    origin, its last hour): a row after it is never returned. ``env`` locates the raw histories (source,
    history_dir, vs_currency, replay_file, seed: :func:`history_file_for`). The histories are only read, never
    fetched: each coin's own build stores its history. A coin without a stored history is a one-line error."""
    end = pd.Timestamp(through)
    out = {}
    for other in cross_coins:
        if other == coin:
            continue
        path = history_file_for(env, other)
        if not path.exists():
            raise HistoryError(f"cross_coins: no stored history for {other} ({path}); its own build stores it, so "
                               f"build {other} first (or remove it from cross_coins)")
        prices = observed_prices(read_history(path))
        out[other] = prices.loc[prices.index <= end]
        stale = (end - out[other].index[-1]) / pd.Timedelta(hours=1) if len(out[other]) else float("inf")
        if stale > 1:
            logger.warning("cross_coins: %s's stored history ends %.0f hours before %s: its last price is carried "
                           "forward", other, stale, end)
    return out


def fetch_failed_note(history_rows: int, added: int) -> str:
    """What a failed fetch did to the raw history, and when the hours are tried again (one sentence)."""
    kept = (f"the stored history is unchanged ({history_rows} rows)" if not added else
            f"the stored history kept all its rows and gained {added} good ones before the failure")
    return f"Nothing was lost: {kept}; the next build (the next hourly tick under cron) fetches the missing hours again"


def extract_data(coin_id: str = "bitcoin", days: int = 30, source: str = "coingecko", **kwargs: Any) -> pd.DataFrame:
    """Hourly prices for ``coin_id`` over the last ``days`` days: timestamp (UTC), price, volume, market_cap, source.

    >>> df = extract_data("bitcoin", days=30)                      # live CoinGecko (key from the environment)
    >>> df = extract_data("bitcoin", days=30, source="simulated")  # offline
    """
    return extract(coin_id, days, source, **kwargs).data

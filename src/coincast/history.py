"""The immutable raw layer: one accumulated hourly history per coin.

Observations are aligned to the hourly grid (CoinGecko's points are sample times such as 19:00:22;
a sample counts for the hour mark it follows when taken at most ``tolerance`` after it, the earliest wins;
a trailing "now" sample such as 18:41:43 belongs to no hour and is dropped),
then merged into the stored history. Rows already stored are never changed or lost: new data can
only add hours. Writes are atomic (temp file + rename) under a file lock, so a crash or a second
process never leaves a half-written file.
"""
from __future__ import annotations

import logging
import os

import pandas as pd
from filelock import FileLock

from coincast.io import read_store, write_parquet_atomic
from coincast.sources.base import OBSERVATION_COLUMNS

logger = logging.getLogger(__name__)

HISTORY_COLUMNS = OBSERVATION_COLUMNS + ["source"]
DEFAULT_TOLERANCE = pd.Timedelta(minutes=5)


class HistoryError(RuntimeError):
    """The stored history cannot be used or extended as asked."""


def align_to_hourly(obs: pd.DataFrame, tolerance: pd.Timedelta = DEFAULT_TOLERANCE) -> pd.DataFrame:
    """Label each observation with the hour mark at or before it; keep it only if it was taken at most
    ``tolerance`` after the mark (so a price is never labelled with a time before a later sample's, and a
    sample at 19:50 never stands for 20:00). Among several samples for one hour (5-minute data) the one
    closest after the mark is kept.
    """
    if obs.empty:
        return obs[OBSERVATION_COLUMNS].copy().reset_index(drop=True)
    df = obs[OBSERVATION_COLUMNS].copy()
    hour = df["timestamp"].dt.floor("h")
    offset = df["timestamp"] - hour
    df["timestamp"] = hour
    df["_offset"] = offset
    df = df.loc[offset <= tolerance]
    df = df.sort_values(["timestamp", "_offset"], kind="stable").drop_duplicates("timestamp", keep="first")
    dropped = len(obs) - len(df)
    if dropped:
        logger.debug("alignment dropped %d off-grid or duplicate samples", dropped)
    return df.drop(columns="_offset").reset_index(drop=True)


def merge_history(stored: pd.DataFrame, new: pd.DataFrame, source: str) -> tuple[pd.DataFrame, int]:
    """Stored rows plus the hours of ``new`` that are not stored yet; returns (merged, rows added)."""
    if not stored.empty:
        labels = set(stored["source"].dropna().unique())
        if labels and labels != {source}:
            raise HistoryError(
                f"history holds {'/'.join(sorted(labels))} data; refusing to mix in {source} data "
                "(use another history_dir)"
            )
    fresh = new.loc[~new["timestamp"].isin(stored["timestamp"])].copy() if not stored.empty else new.copy()
    fresh["source"] = source
    if stored.empty:
        merged = fresh
    elif fresh.empty:
        merged = stored
    else:
        merged = pd.concat([stored, fresh], ignore_index=True)
    merged = merged.sort_values("timestamp", kind="stable").reset_index(drop=True)
    return merged[HISTORY_COLUMNS], len(fresh)


def empty_history() -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series(dtype="float64") for c in HISTORY_COLUMNS})
    df["timestamp"] = pd.Series(dtype="datetime64[ns, UTC]")
    df["source"] = pd.Series(dtype="object")
    return df


def read_history(path: str | os.PathLike) -> pd.DataFrame:
    return read_store(path, empty_history, HISTORY_COLUMNS, ["timestamp"], HistoryError, "history file")


def history_lock(path: str | os.PathLike, timeout: float = 60) -> FileLock:
    return FileLock(f"{path}.lock", timeout=timeout)


def update_history(path: str | os.PathLike, observations: pd.DataFrame, source: str) -> tuple[pd.DataFrame, int]:
    """Align, merge and atomically store; returns (the whole history, rows added)."""
    aligned = align_to_hourly(observations)
    with history_lock(path):
        stored = read_history(path)
        merged, added = merge_history(stored, aligned, source)
        if added:
            write_parquet_atomic(merged, path)
    logger.info("history %s: %d rows stored, %d added", path, len(merged), added)
    return merged, added


def missing_ranges(
    stored: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, join_hours: int = 48
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """The parts of [start, end] whose hours the history lacks (holes inside it included), as fetch ranges.

    Missing hours closer than ``join_hours`` are fetched in one range; each range starts an hour early so a
    late sample can still complete the hour before it.
    """
    grid = pd.date_range(start.ceil("h"), end.floor("h"), freq="h")
    have = pd.DatetimeIndex(stored["timestamp"]) if not stored.empty else pd.DatetimeIndex([], tz="UTC")
    missing = grid.difference(have)
    if missing.empty:
        return []
    ranges: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    lo = prev = missing[0]
    for t in missing[1:]:
        if t - prev > pd.Timedelta(hours=join_hours):
            ranges.append((lo, prev))
            lo = t
        prev = t
    ranges.append((lo, prev))
    hour = pd.Timedelta(hours=1)
    return [(max(start, a - hour), min(end, b + hour)) for a, b in ranges]

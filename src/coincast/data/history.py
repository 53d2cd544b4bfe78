"""The immutable raw layer: one accumulated hourly history per coin.

Observations are aligned to the hourly grid (CoinGecko's points are sample times such as 19:00:22;
a sample counts for the hour mark it follows when taken at most ``tolerance`` after it, the earliest wins;
a trailing "now" sample such as 18:41:43 belongs to no hour and is dropped),
then merged into the stored history. Rows already stored are never changed or lost: new data can
only add hours. Writes are atomic (temp file + rename) under a file lock, so a crash or a second
process never leaves a half-written file.

Quarantine: a row that fails a row-level rule (price missing, not a number, not finite or <= 0; volume
missing, not a number, not finite or < 0) never enters the history. It is appended, with its batch id,
fetch time and reason, to ``<history stem>.quarantine.parquet`` beside the history (same lock). Its hour
stays a hole, so the next extraction refetches it and the first good answer repairs the window. Bad rows
written by older versions are moved there by :func:`repair_history`; good rows are never touched.
"""
from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from filelock import FileLock

from coincast.files import read_store, write_parquet_atomic
from coincast.data.sources.base import OBSERVATION_COLUMNS
from coincast.timeseries import HOUR, utc_times

logger = logging.getLogger(__name__)

HISTORY_COLUMNS = OBSERVATION_COLUMNS + ["source"]
QUARANTINE_COLUMNS = HISTORY_COLUMNS + ["batch", "fetched_at", "reason"]
DEFAULT_TOLERANCE = pd.Timedelta(minutes=5)
LEGACY_BATCH = "legacy"  # the batch of bad rows an older version had stored in the history


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


# -- quarantine ----------------------------------------------------------------------------------------
def _column_problems(values: pd.Series, name: str, allow_zero: bool) -> np.ndarray:
    """Per row: why ``values`` is unusable as ``name`` ("" when it is fine; the cases exclude each other)."""
    number = pd.to_numeric(values, errors="coerce").astype("float64")
    missing = values.isna().to_numpy()
    not_numeric = number.isna().to_numpy() & ~missing
    not_finite = np.isinf(number.to_numpy())
    out_of_range = ((number < 0) if allow_zero else (number <= 0)).to_numpy() & ~not_finite
    return np.select([missing, not_numeric, not_finite, out_of_range],
                     [f"{name} null", f"{name} not numeric", f"{name} not finite",
                      f"{name} {'< 0' if allow_zero else '<= 0'}"], default="").astype(object)


def row_problems(df: pd.DataFrame) -> pd.Series:
    """Per row, the row-level rules it breaks ("" when none), e.g. "price null; volume < 0".

    Zero volume is not a problem (maintenance hours, illiquid pairs): the gate only warns about it."""
    price = _column_problems(df["price"], "price", allow_zero=False)
    volume = _column_problems(df["volume"], "volume", allow_zero=True)
    joined = [f"{p}; {v}" if p and v else p or v for p, v in zip(price, volume)]
    return pd.Series(joined, index=df.index, dtype=object)


def split_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(good rows, bad rows with a ``reason`` column); numeric columns of both as float64."""
    reasons = row_problems(df)
    bad_mask = (reasons != "").to_numpy()
    clean = df.copy()
    for c in ("price", "volume", "market_cap"):
        if c in clean.columns:
            clean[c] = pd.to_numeric(clean[c], errors="coerce").astype("float64")
    bad = clean.loc[bad_mask].assign(reason=reasons[bad_mask]).reset_index(drop=True)
    return clean.loc[~bad_mask].reset_index(drop=True), bad


def quarantine_path(path: str | os.PathLike) -> Path:
    """``<dir>/<coin>-<vs>.quarantine.parquet`` beside the history ``<dir>/<coin>-<vs>.parquet``."""
    p = Path(path)
    return p.with_name(f"{p.stem}.quarantine.parquet")


def empty_quarantine() -> pd.DataFrame:
    df = empty_history()
    for c in ("batch", "reason"):
        df[c] = pd.Series(dtype="object")
    df["fetched_at"] = pd.Series(dtype="datetime64[ns, UTC]")
    return df[QUARANTINE_COLUMNS]


def read_quarantine(path: str | os.PathLike) -> pd.DataFrame:
    """The quarantined rows of the history at ``path`` (the history's path, not the quarantine file's)."""
    return read_store(quarantine_path(path), empty_quarantine, QUARANTINE_COLUMNS, ["timestamp", "fetched_at"],
                      HistoryError, "quarantine file")


def quarantine_rows(bad: pd.DataFrame, source: str, batch: str, fetched_at: pd.Timestamp | None = None) -> pd.DataFrame:
    """Bad rows (with ``reason``) as quarantine records of one batch."""
    out = bad.assign(source=source, batch=batch,
                     fetched_at=fetched_at if fetched_at is not None else pd.Timestamp.now(tz="UTC"))
    out["fetched_at"] = utc_times(out["fetched_at"])
    return out[QUARANTINE_COLUMNS].reset_index(drop=True) if len(out) else empty_quarantine()


def _append_quarantine(path: str | os.PathLike, records: pd.DataFrame) -> None:
    """Append under the caller's history lock; a row already recorded for the same batch is not repeated."""
    stored = read_quarantine(path)
    both = records if stored.empty else pd.concat([stored, records], ignore_index=True)
    both = both.drop_duplicates(["timestamp", "batch"], keep="first").reset_index(drop=True)
    write_parquet_atomic(both[QUARANTINE_COLUMNS], quarantine_path(path))


def _repair_locked(path: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    stored = read_history(path)
    good, bad = split_rows(stored)
    if bad.empty:
        return stored, bad
    labels = stored["source"].dropna()
    records = quarantine_rows(bad.drop(columns="source"), str(labels.iloc[0]) if len(labels) else "", LEGACY_BATCH)
    _append_quarantine(path, records)  # first: a crash in between leaves the rows in both, never in neither
    good = good[HISTORY_COLUMNS]
    write_parquet_atomic(good, path)
    logger.warning("history %s: %d bad rows stored by an older version moved to %s", path, len(bad),
                   quarantine_path(path).name)
    return good, records


def repair_history(path: str | os.PathLike) -> tuple[pd.DataFrame, int]:
    """Move bad rows an older version stored into the quarantine; returns (the clean history, rows moved).

    Good rows are kept exactly as stored. A clean history is only read (no lock, no write)."""
    stored = read_history(path)
    if (row_problems(stored) == "").all():
        return stored, 0
    with history_lock(path):
        history, moved = _repair_locked(path)
    return history, len(moved)


class StoredBatch(NamedTuple):
    """What storing one fetched batch did."""

    history: pd.DataFrame  # the whole history after the batch
    added: int  # good rows added
    quarantined: pd.DataFrame  # this batch's rows kept out of the history (QUARANTINE_COLUMNS)


def store_batch(path: str | os.PathLike, observations: pd.DataFrame, source: str) -> StoredBatch:
    """Align; of the hours not stored yet, merge the good rows and quarantine the bad ones; atomically, locked.

    Bad rows stored by an older version are moved to the quarantine first (:func:`repair_history`)."""
    aligned = align_to_hourly(observations)
    batch = uuid.uuid4().hex[:12]
    with history_lock(path):
        stored, _ = _repair_locked(path)
        fresh = aligned.loc[~aligned["timestamp"].isin(stored["timestamp"])] if not stored.empty else aligned
        good, bad = split_rows(fresh)
        merged, added = merge_history(stored, good, source)  # raises before anything is written
        quarantined = quarantine_rows(bad, source, batch)
        if len(quarantined):
            _append_quarantine(path, quarantined)
            logger.warning("history %s: %d bad rows of batch %s quarantined (%s)", path, len(quarantined), batch,
                           "; ".join(sorted(set(quarantined["reason"]))))
        if added:
            write_parquet_atomic(merged, path)
    logger.info("history %s: %d rows stored, %d added", path, len(merged), added)
    return StoredBatch(merged, added, quarantined)


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
    return [(max(start, a - HOUR), min(end, b + HOUR)) for a, b in ranges]

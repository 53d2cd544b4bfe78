import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coincast.data.history import (
    HISTORY_COLUMNS, LEGACY_BATCH, QUARANTINE_COLUMNS, HistoryError, align_to_hourly, merge_history, missing_ranges,
    quarantine_path, read_history, read_quarantine, repair_history, row_problems, split_rows, store_batch,
)
from coincast.files import write_parquet_atomic
from coincast.data.sources.base import OBSERVATION_COLUMNS
from conftest import hourly_frame


def obs(times, prices):
    ts = pd.to_datetime(times, utc=True)
    return pd.DataFrame({"timestamp": ts, "price": prices, "volume": [1.0] * len(ts), "market_cap": [2.0] * len(ts)})


def test_align_labels_each_sample_with_the_hour_it_follows():
    df = obs(["2023-10-03 19:00:22", "2023-10-03 20:00:05", "2023-10-03 19:58:00", "2023-10-03 20:41:43",
              "2023-10-03 21:03:00", "2023-10-03 21:01:00"], [1, 2, 3, 4, 5, 6])
    out = align_to_hourly(df)
    assert list(out["timestamp"]) == list(pd.to_datetime(["2023-10-03 19:00", "2023-10-03 20:00", "2023-10-03 21:00"], utc=True))
    # 19:58 never stands for 20:00 (a later sample's hour); 20:41:43 is a trailing "now" sample: dropped;
    # of 21:01 and 21:03 the one closest after the mark wins
    assert list(out["price"]) == [1, 2, 6]


def test_a_trailing_now_sample_cannot_take_the_next_hour():
    """Run at 19:50: the 19:50 sample is dropped, so the real 20:00:20 sample fills 20:00 later."""
    first = align_to_hourly(obs(["2024-01-01 19:00:22", "2024-01-01 19:50:10"], [100.0, 105.0]))
    stored, _ = merge_history(first.iloc[:0].assign(source=[]), first, "coingecko")
    later = align_to_hourly(obs(["2024-01-01 20:00:20"], [110.0]))
    merged, added = merge_history(stored, later, "coingecko")
    assert added == 1 and merged.set_index("timestamp").loc[pd.Timestamp("2024-01-01 20:00", tz="UTC"), "price"] == 110.0


def test_align_five_minute_points():
    ts = pd.date_range("2024-01-01 00:02", periods=36, freq="5min", tz="UTC")
    out = align_to_hourly(obs(ts, range(36)))
    assert list(out["timestamp"].dt.minute.unique()) == [0] and len(out) == 3
    assert list(out["price"]) == [0, 12, 24]


def test_merge_never_loses_or_changes_stored_rows():
    stored = obs(pd.date_range("2024-01-01", periods=5, freq="h"), [1, 2, 3, 4, 5])
    stored["source"] = "replay"
    new = obs(pd.date_range("2024-01-01 03:00", periods=4, freq="h"), [99, 99, 6, 7])
    merged, added = merge_history(stored, new, "replay")
    assert added == 2 and len(merged) == 7
    assert list(merged["price"]) == [1, 2, 3, 4, 5, 6, 7]
    less, added = merge_history(merged, new.iloc[:0], "replay")  # a fetch that returns nothing
    assert added == 0 and len(less) == 7


def test_merge_refuses_to_mix_sources():
    stored = obs(["2024-01-01"], [1.0])
    stored["source"] = "simulated"
    with pytest.raises(HistoryError, match="refusing to mix"):
        merge_history(stored, obs(["2024-01-02"], [2.0]), "coingecko")


def test_store_batch_round_trip_and_atomic_file(tmp_path: Path):
    path = tmp_path / "h" / "bitcoin.parquet"
    df = hourly_frame(10)
    merged, added, _ = store_batch(path, df, "simulated")
    assert added == 10 and path.exists()
    again, added, _ = store_batch(path, df, "simulated")
    assert added == 0
    back = read_history(path)
    pd.testing.assert_frame_equal(back, again)
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_damaged_history_is_a_clear_error_and_is_not_overwritten(tmp_path: Path):
    path = tmp_path / "bitcoin.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(HistoryError, match="cannot be read"):
        store_batch(path, hourly_frame(5), "simulated")
    assert path.read_bytes() == b"not parquet"


def test_missing_ranges_include_holes_inside_the_history():
    hours = pd.date_range("2024-01-05", periods=24 * 10, freq="h", tz="UTC")
    stored = obs(hours.delete(range(100, 110)), range(230))  # a 10-hour hole on day 5
    start, end = pd.Timestamp("2024-01-01", tz="UTC"), hours[-1] + pd.Timedelta(hours=50)
    ranges = missing_ranges(stored, start, end)
    hour = pd.Timedelta(hours=1)
    assert ranges == [(start, hours[0]), (hours[100] - hour, hours[109] + hour), (hours[-1], end)]
    assert missing_ranges(stored.iloc[:0], start, end) == [(start, end)]
    assert missing_ranges(obs(hours, range(240)), hours[0], hours[-1]) == []


def test_a_killed_writer_leaves_the_old_file_intact(tmp_path: Path):
    """SIGKILL a process in the middle of writes: the stored history is the old or the new version, never broken."""
    path = tmp_path / "bitcoin.parquet"
    store_batch(path, hourly_frame(100), "simulated")
    before = read_history(path)
    code = (
        "import sys; from conftest import hourly_frame; from coincast.data.history import store_batch\n"
        f"p = {str(path)!r}\n"
        "for i in range(10_000):\n"
        "    store_batch(p, hourly_frame(100 + i, seed=0), 'simulated')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parent,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})
    import time

    start_mtime, deadline = path.stat().st_mtime_ns, time.monotonic() + 60
    while path.stat().st_mtime_ns == start_mtime and time.monotonic() < deadline:  # the writer is writing
        time.sleep(0.02)
    assert path.stat().st_mtime_ns != start_mtime, "the writer never replaced the file"
    time.sleep(0.3)  # several more rewrites, then kill mid-way
    proc.kill()
    proc.wait()
    after = read_history(path)  # readable
    assert len(after) >= len(before)
    pd.testing.assert_frame_equal(after.iloc[: len(before)], before)


# --- quarantine: bad rows never enter the history ----------------------------------------------------------
def test_split_rows_names_each_row_level_problem():
    df = obs(pd.date_range("2024-01-01", periods=7, freq="h"), [1.0, np.nan, -1.0, np.inf, 0.0, 2.0, 3.0])
    df["volume"] = [0.0, 1.0, -2.0, 1.0, np.nan, 3.0, np.inf]
    df["market_cap"] = np.nan  # not a row-level rule: replayed files have no market cap
    good, bad = split_rows(df)
    assert list(good["price"]) == [1.0, 2.0]  # zero volume is kept (the gate only warns)
    assert list(bad["reason"]) == ["price null", "price <= 0; volume < 0", "price not finite",
                                   "price <= 0; volume null", "volume not finite"]
    text = df.astype({"price": object})
    text.loc[5, "price"] = "n/a"
    assert row_problems(text).iloc[5] == "price not numeric"


def test_bad_rows_are_quarantined_and_their_hours_refetched(tmp_path: Path):
    path = tmp_path / "bitcoin-usd.parquet"
    batch = hourly_frame(48)
    batch.loc[[10, 11, 30], "price"] = [np.nan, -4.0, np.nan]
    stored = store_batch(path, batch, "coingecko")
    assert stored.added == 45 and len(read_history(path)) == 45
    assert not read_history(path)["timestamp"].isin(batch["timestamp"].iloc[[10, 11, 30]]).any()
    q = read_quarantine(path)
    assert quarantine_path(path).name == "bitcoin-usd.quarantine.parquet" and list(q.columns) == QUARANTINE_COLUMNS
    assert list(q["reason"]) == ["price null", "price <= 0", "price null"] and q["batch"].nunique() == 1
    assert (q["source"] == "coingecko").all() and q["fetched_at"].notna().all()
    pd.testing.assert_frame_equal(stored.quarantined.reset_index(drop=True), q)
    # the quarantined hours are holes: the next extraction refetches them
    hour = pd.Timedelta(hours=1)
    t = batch["timestamp"]
    assert missing_ranges(read_history(path), t.iloc[0], t.iloc[-1], join_hours=1) == [
        (t.iloc[10] - hour, t.iloc[11] + hour), (t.iloc[30] - hour, t.iloc[30] + hour)]
    # a second bad answer is quarantined again, as its own batch; the good answer repairs the history
    again = store_batch(path, batch.iloc[[30]], "coingecko")
    assert again.added == 0 and len(again.quarantined) == 1 and read_quarantine(path)["batch"].nunique() == 2
    healed = store_batch(path, hourly_frame(48), "coingecko")
    assert healed.added == 3 and healed.quarantined.empty
    pd.testing.assert_frame_equal(read_history(path)[OBSERVATION_COLUMNS], hourly_frame(48))


def test_a_bad_row_for_a_stored_hour_is_ignored_not_quarantined(tmp_path: Path):
    path = tmp_path / "bitcoin-usd.parquet"
    store_batch(path, hourly_frame(10), "simulated")
    late = hourly_frame(10)
    late.loc[3, "price"] = np.nan  # the stored hour stays as it was; this row would never have entered
    stored = store_batch(path, late, "simulated")
    assert stored.added == 0 and stored.quarantined.empty and not quarantine_path(path).exists()


def test_legacy_history_with_bad_rows_is_repaired_without_losing_a_good_row(tmp_path: Path):
    """A history written by an older version holds null / negative prices and a negative volume."""
    path = tmp_path / "bitcoin-usd.parquet"
    legacy = hourly_frame(100).assign(source="coingecko")
    legacy.loc[[5, 50], "price"] = [np.nan, -1.0]
    legacy.loc[70, "volume"] = -3.0
    legacy.loc[80, "volume"] = 0.0  # zero volume is a good row
    write_parquet_atomic(legacy, path)
    history, moved = repair_history(path)
    assert moved == 3 and len(history) == 97
    good = legacy.drop(index=[5, 50, 70]).reset_index(drop=True)
    pd.testing.assert_frame_equal(read_history(path), good[HISTORY_COLUMNS])  # every good row, unchanged
    q = read_quarantine(path)
    assert list(q["batch"].unique()) == [LEGACY_BATCH] and list(q["reason"]) == ["price null", "price <= 0", "volume < 0"]
    assert repair_history(path)[1] == 0 and len(read_quarantine(path)) == 3  # clean now: nothing moves
    # a crash between the two writes left the rows in both files: repaired again, recorded once
    write_parquet_atomic(legacy, path)
    _, moved = repair_history(path)
    assert moved == 3 and len(read_quarantine(path)) == 3


def test_the_next_update_repairs_a_legacy_history(tmp_path: Path):
    path = tmp_path / "bitcoin-usd.parquet"
    legacy = hourly_frame(50).assign(source="simulated")
    legacy.loc[7, "price"] = np.nan
    write_parquet_atomic(legacy, path)
    history, added, _ = store_batch(path, hourly_frame(60).iloc[50:], "simulated")
    assert added == 10 and len(history) == 59 and len(read_quarantine(path)) == 1
    pd.testing.assert_frame_equal(read_history(path).iloc[:7], legacy.iloc[:7][HISTORY_COLUMNS])

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from coincast.history import (
    HistoryError, align_to_hourly, merge_history, missing_ranges, read_history, update_history,
)
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


def test_update_history_round_trip_and_atomic_file(tmp_path: Path):
    path = tmp_path / "h" / "bitcoin.parquet"
    df = hourly_frame(10)
    merged, added = update_history(path, df, "simulated")
    assert added == 10 and path.exists()
    again, added = update_history(path, df, "simulated")
    assert added == 0
    back = read_history(path)
    pd.testing.assert_frame_equal(back, again)
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_damaged_history_is_a_clear_error_and_is_not_overwritten(tmp_path: Path):
    path = tmp_path / "bitcoin.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(HistoryError, match="cannot be read"):
        update_history(path, hourly_frame(5), "simulated")
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
    update_history(path, hourly_frame(100), "simulated")
    before = read_history(path)
    code = (
        "import sys; from conftest import hourly_frame; from coincast.history import update_history\n"
        f"p = {str(path)!r}\n"
        "for i in range(10_000):\n"
        "    update_history(p, hourly_frame(100 + i, seed=0), 'simulated')\n"
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

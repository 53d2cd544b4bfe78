"""extract(): source -> aligned hourly rows -> accumulated raw history -> the window before the clock."""
from pathlib import Path

import pandas as pd
import pytest

from cg_server import FakeCoinGecko
from coincast import extract_data
from coincast.extract import extract
from coincast.history import read_history
from coincast.sources.base import SourceError
from coincast.sources.simulated import simulate_hourly

NOW = "2025-06-01T12:30:00Z"


def test_public_api_offline():
    df = extract_data("bitcoin", days=30, source="simulated", replay_now=NOW)
    assert list(df.columns) == ["timestamp", "price", "volume", "market_cap", "source"]
    assert len(df) == 30 * 24 + 1 and (df["timestamp"].dt.minute == 0).all()
    assert df["timestamp"].max() == pd.Timestamp("2025-06-01T12:00Z") and (df["source"] == "simulated").all()


def test_history_accumulates_and_is_never_lost(tmp_path: Path):
    first = extract("bitcoin", 10, "simulated", replay_now="2025-06-01T00:10Z", history_dir=tmp_path)
    path = tmp_path / "simulated" / "bitcoin.parquet"
    assert first.rows_added == 241 and len(read_history(path)) == 241
    later = extract("bitcoin", 2, "simulated", replay_now="2025-06-03T00:10Z", history_dir=tmp_path)
    assert later.rows_added == 48 and later.history_rows == 241 + 48
    assert len(later.data) == 49  # the window is 2 days; the history keeps all 289 hours
    stored = read_history(path)
    pd.testing.assert_frame_equal(stored.iloc[:241], read_history(path).iloc[:241])
    again = extract("bitcoin", 2, "simulated", replay_now="2025-06-03T00:10Z", history_dir=tmp_path)
    assert again.rows_added == 0


def test_failed_fetch_leaves_history_untouched(tmp_path: Path):
    from coincast.sources.coingecko import CoinGeckoConfig, CoinGeckoSource

    series = {"bitcoin": simulate_hourly("bitcoin", 24 * 200)}
    with FakeCoinGecko(series) as server:
        cfg = CoinGeckoConfig(base_url=server.url, backoff_base=0.01, calls_per_minute=0, max_retries=1)

        def run(now: str):
            server.now = pd.Timestamp(now)
            src = CoinGeckoSource(config=cfg, now=pd.Timestamp(now))
            return extract("bitcoin", 5, "coingecko", replay_now=now, history_dir=tmp_path, src=src)

        ok = run("2023-03-01T00:30Z")
        path = tmp_path / "coingecko" / "bitcoin.parquet"
        before = path.read_bytes()
        assert ok.rows_added == 5 * 24 + 1
        for _ in range(2):
            server.queue(500, {"error": "boom"})
        with pytest.raises(SourceError, match="500"):
            run("2023-03-01T05:30Z")
        assert path.read_bytes() == before
        assert run("2023-03-01T05:30Z").rows_added == 5  # the next run catches up

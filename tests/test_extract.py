"""extract(): source -> aligned hourly rows -> accumulated raw history -> the window before the clock."""
from pathlib import Path

import pandas as pd
import pytest

from cg_server import FakeCoinGecko
from coincast import extract_data
from coincast.data.extract import extract
from coincast.data.history import read_history
from coincast.data.sources.base import SourceError
from coincast.data.sources.simulated import simulate_hourly

NOW = "2025-06-01T12:30:00Z"


def test_public_api_offline():
    df = extract_data("bitcoin", days=30, source="simulated", replay_now=NOW)
    assert list(df.columns) == ["timestamp", "price", "volume", "market_cap", "source"]
    assert len(df) == 30 * 24 + 1 and (df["timestamp"].dt.minute == 0).all()
    assert df["timestamp"].max() == pd.Timestamp("2025-06-01T12:00Z") and (df["source"] == "simulated").all()


def test_history_accumulates_and_is_never_lost(tmp_path: Path):
    first = extract("bitcoin", 10, "simulated", replay_now="2025-06-01T00:10Z", history_dir=tmp_path)
    path = tmp_path / "simulated" / "seed42" / "bitcoin-usd.parquet"
    assert first.rows_added == 241 and len(read_history(path)) == 241
    assert first.added_hours.equals(pd.DatetimeIndex(first.data["timestamp"]))  # a first build: every hour is new
    stored_first = read_history(path)
    later = extract("bitcoin", 2, "simulated", replay_now="2025-06-03T00:10Z", history_dir=tmp_path)
    assert later.rows_added == 48 and later.history_rows == 241 + 48
    assert len(later.data) == 49  # the window is 2 days; the history keeps all 289 hours
    assert later.added_hours.equals(pd.DatetimeIndex(later.data["timestamp"].iloc[1:]))  # what 01's chart marks
    pd.testing.assert_frame_equal(read_history(path).iloc[:241], stored_first)  # nothing stored was changed
    again = extract("bitcoin", 2, "simulated", replay_now="2025-06-03T00:10Z", history_dir=tmp_path)
    assert again.rows_added == 0 and again.added_hours.empty


def test_failed_fetch_leaves_history_untouched(tmp_path: Path):
    from coincast.data.sources.coingecko import CoinGeckoConfig, CoinGeckoSource

    series = {"bitcoin": simulate_hourly("bitcoin", 24 * 200)}
    with FakeCoinGecko(series) as server:
        cfg = CoinGeckoConfig(base_url=server.url, backoff_base=0.01, calls_per_minute=0, max_retries=1)

        def run(now: str):
            server.now = pd.Timestamp(now)
            src = CoinGeckoSource(config=cfg, now=pd.Timestamp(now))
            return extract("bitcoin", 5, "coingecko", replay_now=now, history_dir=tmp_path, src=src)

        ok = run("2023-03-01T00:30Z")
        path = tmp_path / "coingecko" / "api" / "bitcoin-usd.parquet"
        before = path.read_bytes()
        assert ok.rows_added == 5 * 24 + 1
        for _ in range(2):
            server.queue(500, {"error": "boom"})
        with pytest.raises(SourceError, match="500"):
            run("2023-03-01T05:30Z")
        assert path.read_bytes() == before
        assert run("2023-03-01T05:30Z").rows_added == 5  # the next run catches up


def test_different_series_never_share_a_history(tmp_path: Path):
    a = extract("bitcoin", 3, "simulated", replay_now="2024-05-01T00:10Z", history_dir=tmp_path, seed=42)
    b = extract("bitcoin", 3, "simulated", replay_now="2024-05-03T00:10Z", history_dir=tmp_path, seed=7)
    assert b.rows_added == 3 * 24 + 1  # seed 7 starts its own history instead of extending seed 42's
    eur = extract("bitcoin", 3, "simulated", replay_now="2024-05-01T00:10Z", history_dir=tmp_path, vs_currency="eur")
    assert eur.rows_added == 3 * 24 + 1
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.parquet")) == [
        "simulated/seed42/bitcoin-eur.parquet", "simulated/seed42/bitcoin-usd.parquet", "simulated/seed7/bitcoin-usd.parquet"]
    assert a.rows_added == 3 * 24 + 1


def test_a_hole_inside_the_history_is_refetched(tmp_path: Path):
    from coincast.data.history import read_history, write_parquet_atomic

    extract("bitcoin", 5, "simulated", replay_now="2024-05-05T00:10Z", history_dir=tmp_path)
    path = tmp_path / "simulated" / "seed42" / "bitcoin-usd.parquet"
    full = read_history(path)
    write_parquet_atomic(full.drop(index=range(50, 60)), path)  # lose 10 hours in the middle
    again = extract("bitcoin", 5, "simulated", replay_now="2024-05-05T00:10Z", history_dir=tmp_path)
    assert again.rows_added == 10
    assert again.added_hours.equals(pd.DatetimeIndex(full["timestamp"].iloc[50:60]))
    pd.testing.assert_frame_equal(read_history(path), full)


def test_a_slow_api_says_what_timed_out_and_that_nothing_was_lost(tmp_path: Path):
    """Not `TimeoutError: timed out`: what timed out, after how long, the history unchanged, when the next try is."""
    from coincast.data.sources.coingecko import CoinGeckoConfig, CoinGeckoError, CoinGeckoSource

    with FakeCoinGecko({"bitcoin": simulate_hourly("bitcoin", 24 * 200)}) as server:
        cfg = CoinGeckoConfig(base_url=server.url, backoff_base=0.01, calls_per_minute=0, max_retries=1,
                              read_timeout=0.3)

        def run(now: str):
            server.now = pd.Timestamp(now)
            return extract("bitcoin", 5, "coingecko", replay_now=now, history_dir=tmp_path,
                           src=CoinGeckoSource(config=cfg, now=pd.Timestamp(now)))

        run("2023-03-01T00:30Z")
        path = tmp_path / "coingecko" / "api" / "bitcoin-usd.parquet"
        before = path.read_bytes()
        server.queue(200, {"prices": []}, delay=1.0, times=2)
        with pytest.raises(CoinGeckoError) as err:
            run("2023-03-01T05:30Z")
    message = str(err.value)
    assert "\n" not in message
    assert "did not answer /coins/bitcoin/market_chart" in message and "read_timeout=0.3 s" in message
    assert "gave up after 2 attempt(s) in" in message
    assert "Nothing was lost: the stored history is unchanged (121 rows)" in message
    assert "the next build (the next hourly tick under cron) fetches the missing hours again" in message
    assert path.read_bytes() == before


def test_a_bad_batch_is_quarantined_and_the_healed_source_repairs_the_window(tmp_path: Path):
    """2 % null prices and two negative ones on the first answer: kept out of history and window, handed to the
    gate as this extraction's quarantined rows; the next extraction refetches exactly those hours."""
    import numpy as np

    from coincast.data.history import read_quarantine
    from coincast.data.sources.coingecko import CoinGeckoConfig, CoinGeckoSource

    good = simulate_hourly("bitcoin", 24 * 40)
    bad = good.copy()
    bad.loc[bad.index[-100:-20:12], "price"] = np.nan  # 7 hours of the last 5 days
    bad.loc[bad.index[-7:-5], "price"] = -1.0
    now = "2023-02-09T23:30Z"  # the series' last hour is 23:00
    with FakeCoinGecko({"bitcoin": bad}, now=pd.Timestamp(now)) as server:
        cfg = CoinGeckoConfig(base_url=server.url, backoff_base=0.01, calls_per_minute=0, max_retries=1)

        def run():
            src = CoinGeckoSource(config=cfg, now=pd.Timestamp(now), wall_clock=lambda: pd.Timestamp(now))
            return extract("bitcoin", 5, "coingecko", replay_now=now, history_dir=tmp_path, src=src)

        first = run()
        n_bad = int(first.quarantined["reason"].isin(["price null", "price <= 0"]).sum())
        assert n_bad == len(first.quarantined) == 9 and first.summary()["quarantined"] == n_bad
        assert first.data["price"].gt(0).all() and len(first.data) == 121 - n_bad
        path = tmp_path / "coingecko" / "api" / "bitcoin-usd.parquet"
        assert first.summary()["history_file"] == str(path) and len(read_quarantine(path)) == n_bad
        server.series["bitcoin"] = good
        healed = run()
    assert healed.rows_added == n_bad and healed.quarantined.empty and len(healed.data) == 121
    assert healed.data["price"].gt(0).all()


def test_the_retry_budget_reaches_the_coingecko_client(monkeypatch):
    """env.yaml's fetch_retries / fetch_max_wait_seconds set the client's retries and deadline; None keeps its
    defaults; the key and host still come from the environment."""
    from coincast.data.extract import build_source
    from coincast.data.sources.coingecko import CoinGeckoConfig

    monkeypatch.setenv("COINGECKO_BASE_URL", "http://127.0.0.1:9/api/v3")
    src = build_source("coingecko", fetch_retries=1, fetch_max_wait_seconds=3.5)
    assert (src.config.max_retries, src.config.max_total_seconds) == (1, 3.5)
    assert src.config.base_url == "http://127.0.0.1:9/api/v3"
    default = build_source("coingecko").config
    assert (default.max_retries, default.max_total_seconds) == (CoinGeckoConfig.max_retries, CoinGeckoConfig.max_total_seconds)

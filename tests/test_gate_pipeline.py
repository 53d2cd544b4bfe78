"""End to end (`coincast build`, in-process notebooks): the gate stops bad new data without blocking a coin.

- a bad first batch from the (local) CoinGecko API stops the build with a named check; the next build against
  the healed API succeeds, because the bad rows were quarantined instead of stored;
- a replay of a real exchange file with zero-volume hours builds (warning only), and its one real extreme hour
  (LTC, 2021-05-19 13:00 UTC, -26 %) stops the build until a person accepts it with `coincast accept`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cg_server import FakeCoinGecko
from coincast.data.history import read_history, read_quarantine
from coincast.data.sources.simulated import simulate_hourly
from conftest import BIN, SHARED_DATA, coincast, need_shared, progress, run

pytestmark = pytest.mark.pipeline

FAST = ["--env", "env.test.yaml"]  # in-process notebooks


def report_of(project: Path, coin: str) -> dict:
    return json.loads((project / "products" / coin / "validation.json").read_text())


def gate_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if "validation gate failed" in line]
    assert len(lines) == 1, result.stdout[-3000:] + result.stderr[-3000:]
    return lines[0]


NOW = pd.Timestamp("2023-06-01T12:20Z")


def window_rows(df: pd.DataFrame) -> pd.Index:
    return df.index[(df["timestamp"] > NOW - pd.Timedelta(days=30)) & (df["timestamp"] <= NOW)]


def negative_prices(df: pd.DataFrame) -> pd.DataFrame:
    df.loc[window_rows(df)[[100, 300, 500, 700]], "price"] *= -1
    return df


def test_a_bad_batch_stops_the_build_and_the_healed_api_passes_the_next(project: Path, tmp_path: Path):
    """Negative prices from the API (null prices take the same path: tests/test_history.py, test_validation.py)."""
    spoil, check = negative_prices, "positive_price"
    good = simulate_hourly("bitcoin", 24 * 160)
    now = NOW
    history = tmp_path / "h"
    args = [*FAST, "--source", "coingecko", "--coins", "bitcoin", "--set", f"history_dir={history}"]
    env = {"COINGECKO_API_KEY": "", "COINGECKO_API_PLAN": "demo"}
    with FakeCoinGecko({"bitcoin": spoil(good.copy())}, now=now) as server:
        env["COINGECKO_BASE_URL"] = server.url
        first = coincast(project, *args, "--replay-now", now.isoformat(), env=env)
        assert first.returncode == 1
        assert f"{check} (" in gate_line(first)
        assert report_of(project, "bitcoin")["failed"][0] == check
        path = history / "coingecko" / "api" / "bitcoin-usd.parquet"
        stored, quarantined = read_history(path), read_quarantine(path)
        assert stored["price"].gt(0).all() and len(quarantined) == 4  # the bad rows never entered
        assert not stored["timestamp"].isin(quarantined["timestamp"]).any()

        server.series["bitcoin"] = good  # the API heals; the next hourly build refetches the quarantined hours
        server.now = later = now + pd.Timedelta(hours=1)
        second = coincast(project, *args, "--replay-now", later.isoformat(), env=env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    report = report_of(project, "bitcoin")
    assert report["passed"] and report["quarantined"] == 0 and report["rows"] == 30 * 24 + 1
    healed = read_history(path)
    assert healed["timestamp"].isin(quarantined["timestamp"]).sum() == len(quarantined)
    assert len(read_quarantine(path)) == len(quarantined)  # kept, with the batch they came in


def test_replay_with_zero_volume_hours_and_an_accepted_extreme_hour(project: Path, tmp_path: Path):
    source = pd.read_csv(need_shared(SHARED_DATA / "LTCUSDT_1h_2020-10_2024-06.csv"))
    opened = pd.to_datetime(source["open_time"], utc=True, format="ISO8601")
    part = source.loc[(opened >= "2021-04-15") & (opened < "2021-05-20")].copy()
    # the shared files have no zero-volume hour: set four, as a maintenance window would (tmp copy only)
    maintenance = (opened.loc[part.index] >= "2021-05-02T03:00Z") & (opened.loc[part.index] < "2021-05-02T07:00Z")
    part.loc[maintenance, "volume"] = 0.0
    csv = tmp_path / "LTCUSDT_1h_slice.csv"
    part.to_csv(csv, index=False)
    history = tmp_path / "h"
    options = [*FAST, "--replay-file", str(csv), "--coins", "litecoin", "--set", f"history_dir={history}",
               "--set", "replay_now=2021-05-20T00:30Z"]

    first = coincast(project, *options)
    assert first.returncode == 1
    assert "jumps (" in gate_line(first) and "2021-05-19T13:00:00+00:00" in gate_line(first)
    report = report_of(project, "litecoin")
    assert report["failed"] == ["jumps"]
    assert next(c for c in report["checks"] if c["name"] == "jumps")["over_limit_at"] == ["2021-05-19T13:00:00+00:00"]
    assert report["warnings"][0]["name"] == "zero_volume" and report["warnings"][0]["count"] == 4

    accept = run([str(BIN / "coincast"), "accept", "--project", str(project), *options, "litecoin",
                  "2021-05-19T13:00Z", "--reason", "LTC crash of 2021-05-19, market-wide"], cwd=project)
    assert accept.returncode == 0, accept.stderr
    path = history / "replay" / "LTCUSDT_1h_slice" / "litecoin-usd.parquet"
    before = path.read_bytes()

    second = coincast(project, *options)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    report = report_of(project, "litecoin")
    assert report["passed"] and report["warnings"][0]["count"] == 4
    assert [(a["time"], a["reason"]) for a in report["accepted"]] == [
        ("2021-05-19T13:00:00+00:00", "LTC crash of 2021-05-19, market-wide")]
    raw = pd.read_parquet(project / "products" / "litecoin" / "raw.parquet")
    assert (raw["volume"] == 0).sum() == 4  # zero-volume hours are data, not holes
    state = json.loads((path.parent / "litecoin-usd.gate.json").read_text())
    assert state["validated_through"] == "2021-05-20T00:00:00+00:00"
    assert path.read_bytes() == before and (project / "products" / "litecoin" / "forecast.parquet").exists()


def test_a_healed_api_repairs_the_coin_within_the_same_hour(project: Path, tmp_path: Path):
    """Real clock: after a gate failure the next build refetches at once (not only from the next hour on, when
    Ploomber would otherwise still take the failed extraction as up to date)."""
    now = pd.Timestamp.now(tz="UTC")
    good = simulate_hourly("bitcoin", 24 * 40)
    good["timestamp"] += now.floor("h") - good["timestamp"].iloc[-1].floor("h")  # the series ends this hour
    spoiled = good.copy()
    spoiled.loc[spoiled.index[-24 * 30::48], "price"] = np.nan
    history = tmp_path / "h"
    args = [*FAST, "--source", "coingecko", "--coins", "bitcoin", "--set", f"history_dir={history}",
            "--set", "replay_now=null", "--set", "max_staleness_hours=3"]
    env = {"COINGECKO_API_KEY": "", "COINGECKO_API_PLAN": "demo"}
    with FakeCoinGecko({"bitcoin": spoiled}) as server:
        env["COINGECKO_BASE_URL"] = server.url
        first = coincast(project, *args, env=env)
        assert first.returncode == 1 and "nulls (" in gate_line(first)
        server.series["bitcoin"] = good
        second = coincast(project, *args, env=env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert report_of(project, "bitcoin")["passed"]
    assert ("bitcoin", "extract", "done") in progress(second.stdout), second.stdout

"""End to end (`coincast build`, in-process notebooks): the gate stops bad new data without blocking a coin.

- a bad first batch from the (local) CoinGecko API stops the build with named checks; the next build against the
  healed API, in the same hour, succeeds, because the bad rows were quarantined instead of stored and their hours
  are refetched at once after a gate failure;
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


def spoiled(good: pd.DataFrame, hour: pd.Timestamp) -> pd.DataFrame:
    """A bad batch: 4 negative and 8 null prices (1.1 %) in the 30 days up to ``hour``, every 4th hour of two days
    (their holes are refetched in one request: the client keeps 2.4 s between requests)."""
    bad = good.copy()
    inside = bad.index[(bad["timestamp"] > hour - pd.Timedelta(days=30)) & (bad["timestamp"] <= hour)]
    spots = inside[100:148:4]
    bad.loc[spots[::3], "price"] *= -1
    bad.loc[spots.difference(spots[::3]), "price"] = np.nan
    return bad


def test_a_bad_batch_stops_the_build_and_the_healed_api_repairs_it_within_the_hour(project: Path, tmp_path: Path):
    """Real clock. The API's first batch has negative and null prices: the gate stops the build naming both checks,
    and the bad rows are quarantined, never stored. The API heals and the next build, in the same hour, refetches
    at once (not only from the next hour on, when Ploomber would otherwise still take the failed extraction as up
    to date): the quarantined hours are holes, refetched good, and the build passes; the quarantine is kept."""
    hour = pd.Timestamp.now(tz="UTC").floor("h")
    # 40 days up to this hour and 3 h past it, on the hour: every hour of a build's window is served whenever in the
    # hour it runs (a build takes nothing after its clock). (A window 3 h short of a 40-day series' end holds other
    # prices, on which the backtest's Prophet fits take 22 s, not 3.)
    end = hour + pd.Timedelta(hours=3)
    good = simulate_hourly("bitcoin", 24 * 40 + 3)
    good["timestamp"] = good["timestamp"].dt.floor("h") + (end - good["timestamp"].iloc[-1].floor("h"))
    history = tmp_path / "h"
    args = [*FAST, "--source", "coingecko", "--coins", "bitcoin", "--set", f"history_dir={history}",
            "--set", "replay_now=null", "--set", "max_staleness_hours=3"]
    env = {"COINGECKO_API_KEY": "", "COINGECKO_API_PLAN": "demo"}
    with FakeCoinGecko({"bitcoin": spoiled(good, hour)}, now=end) as server:
        env["COINGECKO_BASE_URL"] = server.url
        first = coincast(project, *args, env=env)
        assert first.returncode == 1
        line = gate_line(first)
        assert "nulls (" in line and "positive_price (" in line, line
        assert report_of(project, "bitcoin")["failed"] == ["nulls", "positive_price"]
        path = history / "coingecko" / "api" / "bitcoin-usd.parquet"
        stored, quarantined = read_history(path), read_quarantine(path)
        assert stored["price"].gt(0).all()  # the bad rows never entered
        assert quarantined["reason"].value_counts().to_dict() == {"price null": 8, "price <= 0": 4}
        assert not stored["timestamp"].isin(quarantined["timestamp"]).any()

        server.series["bitcoin"] = good  # the API heals
        second = coincast(project, *args, env=env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert ("bitcoin", "extract", "done") in progress(second.stdout), second.stdout
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

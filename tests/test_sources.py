from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coincast.data.sources import SourceError, make_source, parse_market_chart
from coincast.data.sources.replay import ReplaySource, guess_coin_id, load_replay_file
from coincast.data.sources.simulated import SimulatedSource, simulate_hourly
from conftest import BTC_CSV, CHART_JSON, CHART_WRAPPED, need_shared

T = pd.Timestamp


def test_parse_market_chart_plain_wrapped_and_messy():
    body = {"prices": [[3_600_000, 2.0], [0, 1.0], [3_600_000, 2.5]], "total_volumes": [[0, 10.0]], "market_caps": []}
    df = parse_market_chart(body)
    assert list(df["price"]) == [1.0, 2.5] and df["timestamp"].is_monotonic_increasing
    assert np.isnan(df["volume"].iloc[1]) and df["market_cap"].isna().all()
    assert parse_market_chart({"data": body}).equals(df)
    assert parse_market_chart({"prices": [], "total_volumes": [], "market_caps": []}).empty
    with pytest.raises(SourceError, match="no 'prices' array"):
        parse_market_chart({"foo": 1})


def test_real_market_chart_files_parse():
    df = parse_market_chart(__import__("json").loads(need_shared(CHART_JSON).read_text()))
    assert len(df) == 169 and df["timestamp"].iloc[0] == T("2023-10-03 19:00:22.085", tz="UTC")
    wrapped = load_replay_file(need_shared(CHART_WRAPPED))
    assert len(wrapped) == 170 and wrapped["market_cap"].gt(0).all()


def test_replay_of_the_real_candles_converts_local_offsets_to_utc():
    df = load_replay_file(need_shared(BTC_CSV))
    assert len(df) == 31_973
    # first candle opens 2020-10-23 11:00+03:00 = 08:00 UTC; its close is observed at 09:00 UTC
    assert df["timestamp"].iloc[0] == T("2020-10-23 09:00", tz="UTC")
    assert (df["timestamp"].diff().dropna() == pd.Timedelta(hours=1)).all()  # a perfect grid across DST switches
    assert df["price"].iloc[0] == 12919.12


def test_replay_serves_only_data_up_to_its_clock(tmp_path: Path):
    csv = tmp_path / "x.csv"
    ts = pd.date_range("2024-01-01", periods=48, freq="h", tz="UTC")
    pd.DataFrame({"timestamp": ts.astype(str), "price": range(1, 49), "volume": 1.0}).to_csv(csv, index=False)
    src = ReplaySource(csv, now=T("2024-01-01 10:30", tz="UTC"))
    out = src.fetch("bitcoin", T("2023-12-01", tz="UTC"), T("2024-02-01", tz="UTC"))
    assert out["timestamp"].max() == T("2024-01-01 10:00", tz="UTC") and len(out) == 11
    assert ReplaySource(csv).clock("bitcoin") == ts[-1]


def test_replay_parquet_and_close_column(tmp_path: Path):
    p = tmp_path / "eth.parquet"
    ts = pd.date_range("2024-01-01", periods=5, freq="h", tz="UTC")
    pd.DataFrame({"time": ts, "close": [1.0, 2, 3, 4, 5], "volume": 1.0, "market_cap": 9.0}).to_parquet(p)
    df = load_replay_file(p)
    assert list(df["price"]) == [1, 2, 3, 4, 5] and (df["market_cap"] == 9).all()


@pytest.mark.parametrize(
    "content, name, message",
    [
        ("a,b\n1,2\n", "x.csv", "no time column"),
        ("timestamp,volume\n2024-01-01,1\n", "x.csv", "no 'price' or 'close' column"),
        ("timestamp,price\n2024-01-01,1\n", "x.csv", "no 'volume' column"),
        ("timestamp,price,volume\nnot-a-date,1,1\n", "x.csv", "not times"),
        ("{broken", "x.json", "not valid JSON"),
        ("x", "x.xlsx", "unsupported replay file type"),
    ],
)
def test_replay_bad_files_get_clear_errors(tmp_path: Path, content, name, message):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(SourceError, match=message):
        load_replay_file(p)


def test_replay_missing_file_and_coin_mapping(tmp_path: Path):
    with pytest.raises(SourceError, match="replay file not found"):
        load_replay_file(tmp_path / "nope.csv")
    with pytest.raises(SourceError, match="no entry for coin 'ethereum'"):
        ReplaySource({"bitcoin": "a.csv"}).path_for("ethereum")


def test_guess_coin_id():
    assert guess_coin_id("BTCUSDT_1h.csv") == "bitcoin"
    assert guess_coin_id("coingecko_ethereum_market_chart.json") == "ethereum"
    assert guess_coin_id("prices.csv") is None


def test_simulator_is_deterministic_and_consistent_as_the_clock_advances():
    a = SimulatedSource(seed=1, now=T("2024-03-01", tz="UTC")).fetch("bitcoin", T("2024-02-01", tz="UTC"), T("2024-03-01", tz="UTC"))
    b = SimulatedSource(seed=1, now=T("2024-03-05", tz="UTC")).fetch("bitcoin", T("2024-02-01", tz="UTC"), T("2024-03-05", tz="UTC"))
    pd.testing.assert_frame_equal(a, b.iloc[: len(a)])
    c = SimulatedSource(seed=2, now=T("2024-03-01", tz="UTC")).fetch("bitcoin", T("2024-02-01", tz="UTC"), T("2024-03-01", tz="UTC"))
    assert not np.allclose(a["price"], c["price"])
    assert a["timestamp"].max() <= T("2024-03-01", tz="UTC")
    assert (a["timestamp"].dt.second > 0).all()  # sample times, not hour starts


def test_simulator_has_realistic_hourly_behaviour():
    df = simulate_hourly("bitcoin", 24 * 365, seed=3)
    r = np.log(df["price"]).diff().dropna()
    kurtosis = ((r - r.mean()) ** 4).mean() / r.var() ** 2
    assert kurtosis > 4.5  # fat tails (a normal distribution has 3)
    acf_abs = np.corrcoef(r.abs()[1:], r.abs()[:-1])[0, 1]
    assert acf_abs > 0.1  # volatility clustering
    assert abs(np.corrcoef(r[1:], r[:-1])[0, 1]) < 0.05  # but returns themselves barely autocorrelated
    by_hour = df.groupby(df["timestamp"].dt.hour)["volume"].mean()
    assert by_hour.max() / by_hour.min() > 1.3  # intraday volume pattern
    assert (df["price"] > 0).all() and (df["volume"] > 0).all()


def test_make_source_unknown():
    with pytest.raises(SourceError, match="unknown source 'yahoo'"):
        make_source("yahoo")


def test_replay_file_problems_are_one_line(tmp_path: Path):
    from coincast.data.sources.replay import replay_file_problem

    (tmp_path / "btc.csv").write_text("timestamp,price,volume\n")
    assert replay_file_problem("btc.csv", ["bitcoin", "ethereum"], tmp_path) is None  # one file serves every coin
    assert replay_file_problem({"bitcoin": str(tmp_path / "btc.csv")}, ["bitcoin"]) is None
    assert replay_file_problem("/nonexistent.csv", ["bitcoin"]) == "replay file not found: /nonexistent.csv"
    assert replay_file_problem("eth.csv", ["bitcoin"], tmp_path) == f"replay file not found: {tmp_path / 'eth.csv'}"
    assert replay_file_problem({"bitcoin": "btc.csv"}, ["bitcoin", "ethereum"], tmp_path) == (
        "replay_file has no entry for coin 'ethereum' (has ['bitcoin'])")


def test_a_replay_of_a_missing_file_or_coin_stops_at_the_start_in_one_line(project: Path):
    from conftest import BIN, run

    (project / "btc.csv").write_text("timestamp,price,volume\n")
    for args, message in (
            (["--replay-file", "/nonexistent.csv"], "replay file not found: /nonexistent.csv"),
            (["--source", "replay", "--coins", "bitcoin,ethereum", "--set", "replay_file={bitcoin: btc.csv}"],
             "replay_file has no entry for coin 'ethereum' (has ['bitcoin']): give every coin of coins a file")):
        done = run([str(BIN / "coincast"), "replay", "--hours", "2", "--project", str(project), "--no-progress", *args],
                   cwd=project)
        assert (done.returncode, done.stderr) == (2, f"coincast: configuration error: {message}\n"), done.stderr
    assert not (project / "logs").exists() and not (project / "products").exists()  # nothing touched

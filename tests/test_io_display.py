import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coincast import display, files
from coincast.data.validation import validate_data
from conftest import hourly_frame


def test_atomic_writes_round_trip(tmp_path: Path):
    df = hourly_frame(5)
    files.write_parquet_atomic(df, tmp_path / "a" / "x.parquet")
    pd.testing.assert_frame_equal(files.read_frame(tmp_path / "a" / "x.parquet"), df)
    files.write_json_atomic({"t": pd.Timestamp("2024-01-01", tz="UTC"), "n": np.int64(3)}, tmp_path / "x.json")
    assert files.read_json(tmp_path / "x.json") == {"t": "2024-01-01T00:00:00+00:00", "n": 3}
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "x.json", "x.parquet"]  # no temp files left
    # readable as a plain open() would leave it (0666 less the umask), not mkstemp's owner-only 0600
    plain = tmp_path / "plain"
    plain.write_text("x")
    for written in (tmp_path / "x.json", tmp_path / "a" / "x.parquet"):
        assert written.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == files.FILE_MODE


def test_a_failed_write_keeps_the_old_file(tmp_path: Path):
    target = tmp_path / "x.json"
    files.write_json_atomic({"v": 1}, target)
    with pytest.raises(TypeError):
        files.write_json_atomic({"v": object()}, target)
    assert json.loads(target.read_text()) == {"v": 1} and len(list(tmp_path.iterdir())) == 1


def test_banner_labels_non_live_data():
    summary = {"coin": "bitcoin", "rows": 3, "first": "a", "last": "b", "now": "c"}
    assert "SIMULATED" in display.banner({**summary, "source": "simulated"}).data
    assert "REPLAYED" in display.banner({**summary, "source": "replay"}).data
    assert "CoinGecko" in display.banner({**summary, "source": "coingecko"}).data


def test_checks_table():
    report = validate_data(hourly_frame(10), fail_on_error=False)
    table = display.checks_table(report)
    assert table.loc["min_rows", "passed"] == False  # noqa: E712
    assert "10 rows" in table.loc["min_rows", "message"]


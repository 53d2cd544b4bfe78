from pathlib import Path

import pandas as pd
import pytest

from coincast.config import ConfigError, load_dotenv_file, load_env, parse_time, parse_value
from conftest import ROOT


def test_env_yaml_loads_and_has_every_issue_knob():
    env = load_env(ROOT / "env.yaml")
    for key in ["coins", "vs_currency", "days", "source", "replay_file", "replay_now", "null_threshold",
                "min_rows", "lags", "rolling_windows", "target_horizon"]:
        assert key in env
    assert env["null_threshold"] == 0.01 and env["min_rows"] == 100
    assert env["lags"] == [1, 3, 6, 12, 24] and env["rolling_windows"] == [6, 12, 24]
    assert env["target_horizon"] == 1


def test_variant_overrides_only_its_keys():
    env = load_env(ROOT / "env.yaml", ROOT / "env.test.yaml")
    assert env["source"] == "simulated" and env["coins"] == ["bitcoin"]
    assert env["lags"] == [1, 3, 6, 12, 24]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"source": "yahoo"}, "source must be one of"),
        ({"coins": []}, "coins must be a non-empty list"),
        ({"coins": ["bitcoin", "bitcoin"]}, "coins lists a coin twice"),
        ({"days": 0}, "days must be a positive integer"),
        ({"null_threshold": 2}, "null_threshold must be a fraction"),
        ({"lags": [1, -3]}, "lags must be a non-empty list of positive integers"),
        ({"source": "replay", "replay_file": None}, "replay_file is not set"),
        ({"replay_now": "yesterday-ish"}, "replay_now is not a date/time"),
        ({"no_such_key": 1}, "unknown key(s) no_such_key"),
    ],
)
def test_bad_values_get_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=None) as exc:
        load_env(ROOT / "env.yaml", overrides=overrides)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_missing_and_broken_env_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="env file not found"):
        load_env(tmp_path / "env.yaml")
    bad = tmp_path / "env.yaml"
    bad.write_text("coins: [bitcoin\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_env(bad)


def test_parse_value_and_time():
    assert parse_value("30") == 30 and parse_value("[1, 2]") == [1, 2] and parse_value("null") is None
    assert parse_time("2024-05-01T12:00") == pd.Timestamp("2024-05-01T12:00Z")
    assert parse_time("2024-05-01T15:00+03:00") == pd.Timestamp("2024-05-01T12:00Z")


def test_dotenv_is_read_but_never_overrides(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("COINGECKO_API_PLAN", "pro")
    monkeypatch.delenv("COINGECKO_API_KEY", raising=False)
    (tmp_path / ".env").write_text("COINGECKO_API_KEY=from-dotenv\nCOINGECKO_API_PLAN=demo\n")
    assert load_dotenv_file(tmp_path / ".env")
    import os

    assert os.environ["COINGECKO_API_KEY"] == "from-dotenv"
    assert os.environ["COINGECKO_API_PLAN"] == "pro"
    assert load_dotenv_file(tmp_path / "missing.env") is False


def test_env_example_lists_every_variable():
    from coincast.config import ENVIRONMENT_VARIABLES

    text = (ROOT / ".env.example").read_text()
    for name in ENVIRONMENT_VARIABLES:
        assert f"{name}=" in text

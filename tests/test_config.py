from pathlib import Path

import pandas as pd
import pytest

from coincast.config import ConfigError, load_dotenv_file, parse_time, parse_value
from coincast.settings import load_env
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
        ({"source": "yahoo"}, "source must be one of coingecko, replay, simulated, got 'yahoo'"),
        ({"coins": []}, "coins must be a non-empty list of distinct CoinGecko coin ids"),
        ({"coins": ["bitcoin", "bitcoin"]}, "coins must be a non-empty list of distinct"),
        ({"coins": ["bitcoin", "../escapee"]}, "coins must be a non-empty list of distinct CoinGecko coin ids "
                                               "(lowercase letters, digits, '-', '.', '_')"),
        ({"coins": ["a/b"]}, "coins must be a non-empty list of distinct CoinGecko coin ids"),
        ({"coins": ["Bitcoin"]}, "coins must be a non-empty list of distinct CoinGecko coin ids"),
        ({"coin": "x..y"}, "coin must be a CoinGecko coin id (lowercase letters, digits, '-', '.', '_'), e.g. bitcoin, "
                           "got 'x..y'"),
        ({"coin": ".hidden"}, "coin must be a CoinGecko coin id"),
        ({"cross_coins": ["../bitcoin"]}, "cross_coins must be a list of distinct CoinGecko coin ids"),
        ({"days": 0}, "days must be a positive whole number of days, got 0"),
        ({"null_threshold": 2}, "null_threshold must be a fraction from 0 to 1, got 2"),
        ({"min_rows": 0}, "min_rows must be a positive whole number of rows, got 0"),
        ({"lags": [1, "x"]}, "lags must be a non-empty list of distinct positive whole hours, e.g. [1, 3, 6], got [1, 'x']"),
        ({"limits": {"min_rows": 5}}, "unknown key(s) limits"),  # a group's name is not an env.yaml key
        ({"lags": [1, -3]}, "lags must be a non-empty list of distinct positive whole hours"),
        ({"source": "replay", "replay_file": None}, "replay_file must be set when source is replay"),
        ({"replay_now": "yesterday-ish"}, "replay_now is not a date/time"),
        ({"no_such_key": 1}, "unknown key(s) no_such_key"),
        # settings used only when training is due: checked at the start all the same
        ({"models": [{"kind": "nosuch"}]}, "models: unknown model kind 'nosuch': use one of naive,"),
        ({"models": [{"kind": "drift", "windw": 3}]}, "models: bad settings for model 'drift': unknown setting 'windw'"),
        ({"models": [{"kind": "drift", "window": "abc"}]},
         "models: bad settings for model 'drift': window: input should be a valid integer, got 'abc'"),
        ({"models": [{"kind": "prophet_returns", "window_days": -3}]},
         "models: bad settings for model 'prophet_returns': window_days: input should be greater than 0, got -3"),
        ({"models": [{"kind": "naive", "foo": 1}]}, "models: bad settings for model 'naive': unknown setting 'foo'"),
        ({"fetch_max_wait_seconds": float("inf")}, "fetch_max_wait_seconds must be a number of seconds > 0, got inf"),
        ({"models": []}, "models must be a non-empty list of model specs"),
        ({"horizons": [0]}, "horizons must be a non-empty list of distinct positive whole hours, e.g. [1, 24], got [0]"),
        ({"log_horizons": [1, 6]}, "log_horizons must each be in horizons [1, 24]: [6] is not backtested"),
        ({"days": 20, "backtest_days": 30}, "days=20 is too short for backtest_days=30: the backtest's 720 scored hours "
                                              "need 169 hours of history before them (what the models need, at least "
                                              "48), so days must be at least 38 (calibration_days' warm-up uses what "
                                              "is left)"),
        ({"days": 3, "backtest_days": 1, "models": [{"kind": "naive"}]}, "so days must be at least 4 "),  # 24 + 48 + 1 h
        ({"notebook_executor": "docker"}, "notebook_executor must be papermill or ploomber-engine, got 'docker'"),
        ({"executed_format": "pdf"}, "executed_format must be html or ipynb"),
        ({"coin_jobs": 0}, "coin_jobs must be a whole number of coins built at a time"),
        ({"fetch_retries": -1}, "fetch_retries must be a whole number of retries from 0 to 20, got -1"),
        ({"fetch_max_wait_seconds": 0}, "fetch_max_wait_seconds must be a number of seconds > 0, got 0"),
        ({"interval_scalings": ["unscaled", "ewma"]}, "interval_scalings must be a non-empty list of distinct scalings"),
        ({"interval_adapt_rate": -0.01}, "interval_adapt_rate must be a step from 0 (off) to below 1 such as 0.01"),
        ({"interval_adapt_horizons": [1, 1]}, "interval_adapt_horizons must be a list of distinct positive whole hours"),
        ({"retrain_every_hours": -1}, "retrain_every_hours must be a whole number of hours >= 0"),
        ({"drift_volatility_ratio": 0.5}, "drift_volatility_ratio must be a ratio > 1"),
        ({"profile_minimal": "yes"}, "profile_minimal must be true or false, got 'yes'"),
        ({"rolling_windows": [1, 6]}, "rolling_windows must be a non-empty list of distinct whole hours >= 2"),
        ({"forecast_hours": 0}, "forecast_hours must be a whole number of hours from 1 to 168"),
        ({"max_catchup_hours": "lots"}, "max_catchup_hours must be a positive whole number of hours, got 'lots'"),
        ({"dvc_push": 1}, "dvc_push must be true or false, got 1"),
        ({"promotion_p_value": 1.0}, "promotion_p_value must be a p-value level between 0 and 1 such as 0.05, got 1.0"),
    ],
)
def test_bad_values_get_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=None) as exc:
        load_env(ROOT / "env.yaml", overrides=overrides)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_real_coingecko_ids_are_coin_ids():
    from coincast.config import is_coin_id

    for coin in ("bitcoin", "usd-coin", "wrapped-bitcoin", "0x", "bitcoin-cash-sv", "a.b_c-1"):
        assert is_coin_id(coin), coin
    for coin in ("", "..", "../x", "x/y", "-x", "X", "bit coin", "bitcoin\n", None, "a" * 101):
        assert not is_coin_id(coin), coin


def test_every_variant_is_valid_and_whole_numbers_pass_as_floats():
    for variant in (None, ROOT / "env.test.yaml", ROOT / "env.cron.yaml"):
        load_env(ROOT / "env.yaml", variant)
    env = load_env(ROOT / "env.yaml", overrides={"max_staleness_hours": 3, "backtest_days": 2})
    assert env["max_staleness_hours"] == 3
    # the shortest history a backtest fits in: its scored hours and the 48 h before them (the warm-up is cut)
    load_env(ROOT / "env.yaml", overrides={"days": 4, "backtest_days": 1, "calibration_days": 7,
                                           "models": [{"kind": "naive"}]})


def test_every_task_param_is_a_checked_setting():
    """The on_render hook checks what the tasks receive: each param must be a setting it knows."""
    import warnings

    from ploomber.spec import DAGSpec

    from coincast.settings import FIELDS, GROUPS, group, task_settings

    env = load_env(ROOT / "env.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dag = DAGSpec(str(ROOT / "pipeline.yaml"), env=env).to_dag()
    received = task_settings(dag)
    assert {"models", "horizons", "days", "retrain_every_hours", "profile_minimal", "min_rows"} <= set(received)
    assert set(received) <= set(FIELDS), set(received) - set(FIELDS)
    assert set(env) == set(FIELDS)
    for name in dag:  # a group param arrives as the dict of its env.yaml keys, with env.yaml's values
        for key, value in dag[name].params.items():
            assert key not in GROUPS or value == group(env, key), (name, key)


def test_features_feed_training_and_the_profile_runs_beside_it():
    """train reads features.parquet (its upstream is the features task) and never waits for the profile: profile is
    not upstream of train, directly or through another task, and the serial executor runs train first."""
    import warnings

    from ploomber.spec import DAGSpec

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dag = DAGSpec(str(ROOT / "pipeline.yaml"), env=load_env(ROOT / "env.yaml")).to_dag()

    def ancestors(name: str) -> set[str]:
        direct = set(dag[name].upstream)
        return direct.union(*(ancestors(u) for u in direct))

    assert "features" in dag["train"].upstream and "profile" not in ancestors("train")
    assert "train" not in ancestors("profile") and set(dag["profile"].upstream) == {"extract", "features"}
    order = [task.name for task in dag.values()]  # the order the Serial executor runs them
    assert order.index("features") < order.index("train") < order.index("profile") < order.index("publish")
    source = (ROOT / "notebooks" / "05_train.py").read_text()
    assert 'features = files.read_frame(upstream["features"]["data"])' in source and "hourly_series(features)" in source
    assert 'upstream["extract"]["data"]' not in source


def test_pipeline_group_params_have_exactly_their_groups_keys():
    """Each dict param of pipeline.yaml is a group of coincast.settings.GROUPS with exactly that group's keys,
    each carrying the env.yaml key of its name; every group reaches a task."""
    import yaml

    from coincast.settings import GROUPS

    spec = yaml.safe_load((ROOT / "pipeline.yaml").read_text())
    passed = set()
    for task in spec["tasks"]:
        for name, value in (task.get("params") or {}).items():
            if not isinstance(value, dict):
                assert name not in GROUPS, f"{task['name']}.{name} is a group: it must be a dict"
                continue
            assert name in GROUPS, f"{task['name']}.{name} is a dict param but not a group of coincast.settings"
            assert set(value) == set(GROUPS[name].model_fields), (task["name"], name)
            assert all(v == f"{{{{{k}}}}}" for k, v in value.items()), (task["name"], name, value)
            passed.add(name)
    assert passed == set(GROUPS)


def test_a_group_name_is_not_a_setting():
    from coincast.settings import check

    env = load_env(ROOT / "env.yaml")
    with pytest.raises(ConfigError, match="^unknown key 'limits': not an env.yaml setting$"):
        check({**env, "limits": {"min_rows": 5}})


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
    import os

    before = {name: os.environ.get(name) for name in ("COINGECKO_API_KEY", "COINGECKO_API_PLAN")}
    with monkeypatch.context() as mp:
        mp.setenv("COINGECKO_API_PLAN", "pro")
        # set, then deleted: monkeypatch records the variable only when it exists, and so restores what the
        # .env file adds to it (a bare delenv of an unset variable would let the key leak into later tests)
        mp.setenv("COINGECKO_API_KEY", "placeholder")
        mp.delenv("COINGECKO_API_KEY")
        (tmp_path / ".env").write_text("COINGECKO_API_KEY=from-dotenv\nCOINGECKO_API_PLAN=demo\n")
        assert load_dotenv_file(tmp_path / ".env")
        assert os.environ["COINGECKO_API_KEY"] == "from-dotenv"
        assert os.environ["COINGECKO_API_PLAN"] == "pro"
        assert load_dotenv_file(tmp_path / "missing.env") is False
    assert {name: os.environ.get(name) for name in before} == before  # nothing from the .env file is left


def test_env_example_lists_every_variable():
    from coincast.config import ENVIRONMENT_VARIABLES

    text = (ROOT / ".env.example").read_text()
    for name in ENVIRONMENT_VARIABLES:
        assert f"{name}=" in text

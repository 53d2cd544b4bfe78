"""Every pipeline setting, checked once when a build starts: a pydantic model of env.yaml.

``coincast build`` / ``hourly`` / ``replay`` check the merged env (env.yaml + variants + ``--set``) before
anything runs; a bare ``ploomber build`` checks the values its tasks received in the DAG's ``on_render`` hook
(pipeline.yaml), so a bad value stops the build before the first task whether or not the task that reads it
is due. A bad value is one line naming the key, what it accepts and what it got.
"""
from __future__ import annotations

import os
from typing import Any, Literal, Mapping, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from coincast.config import ConfigError, merge_env, parse_time, read_env_file

SOURCES = ("coingecko", "replay", "simulated")


#: a validator's ValueError text meaning "say what the key accepts" (its Field description)
BAD = "bad"


def _hours_list(value: list[int]) -> list[int]:
    if not value or not all(v > 0 for v in value) or len(set(value)) != len(value):
        raise ValueError(BAD)
    return value


class Settings(BaseModel):
    """env.yaml's keys. ``description`` is what the key accepts: it is the error message's text."""

    model_config = ConfigDict(extra="forbid", strict=True)

    # --- what to fetch
    coins: list[str] = Field(description="a non-empty list of distinct CoinGecko coin ids, e.g. [bitcoin, ethereum]")
    coin: str = Field(min_length=1, description="a CoinGecko coin id, e.g. bitcoin")
    vs_currency: str = Field(pattern=r"^[A-Za-z]{2,10}$", description="a quote currency code such as usd")
    days: int = Field(ge=1, description="a positive whole number of days")
    source: Literal["coingecko", "replay", "simulated"] = Field(description="one of coingecko, replay, simulated")
    replay_file: Union[str, dict[str, str], None] = Field(
        description="null, a file path, or a mapping {coin: path}")
    replay_now: Optional[str] = Field(description="null (the real clock) or a date/time such as 2024-05-01T12:00Z")
    build_hour: Optional[str] = Field(description="null (set by coincast build)")
    seed: int = Field(ge=0, description="a non-negative integer")
    history_dir: str = Field(min_length=1, description="a folder path")
    notebook_executor: Literal["papermill", "ploomber-engine"] = Field(
        description="papermill or ploomber-engine")
    executed_format: Literal["html", "ipynb"] = Field(description="html or ipynb")
    coin_jobs: int = Field(ge=1, le=64, description="a whole number of coins built at a time, 1 to 64")
    # --- validation gate
    null_threshold: float = Field(ge=0, le=1, description="a fraction from 0 to 1")
    min_rows: int = Field(ge=1, description="a positive whole number of rows")
    max_missing_fraction: float = Field(ge=0, le=1, description="a fraction from 0 to 1")
    max_gap_hours: int = Field(ge=0, description="a whole number of hours >= 0")
    max_staleness_hours: float = Field(gt=0, description="a number of hours > 0")
    max_abs_log_return: float = Field(gt=0, description="a positive |log return| such as 0.25")
    # --- features
    lags: list[int] = Field(description="a non-empty list of distinct positive whole hours, e.g. [1, 3, 6]")
    rolling_windows: list[int] = Field(description="a non-empty list of distinct whole hours >= 2, e.g. [6, 12, 24]")
    target_horizon: int = Field(ge=1, description="a positive whole number of hours")
    # --- profile
    profile_minimal: bool = Field(description="true or false")
    profile_every_hours: int = Field(ge=0, description="a whole number of hours >= 0 (0 = every build)")
    # --- models, backtest, registry
    models: list[dict[str, Any]] = Field(
        description="a non-empty list of model specs such as {kind: naive}")
    backtest_days: float = Field(gt=0, description="a number of days > 0")
    calibration_days: float = Field(ge=0, description="a number of days >= 0")
    calibration_window_days: float = Field(gt=0, description="a number of days > 0")
    horizons: list[int] = Field(description="a non-empty list of distinct positive whole hours, e.g. [1, 24]")
    refit_every_hours: int = Field(ge=1, description="a positive whole number of hours")
    n_jobs: int = Field(ge=1, le=64, description="a whole number of processes, 1 to 64")
    forecast_hours: int = Field(ge=1, le=24 * 7, description="a whole number of hours from 1 to 168")
    project_root: str = Field(min_length=1, description="a folder path")
    # --- retraining
    retrain_every_hours: int = Field(ge=0, description="a whole number of hours >= 0 (0 = every build)")
    drift_max_rel_mae: float = Field(gt=0, description="a number > 0 such as 1.10")
    drift_volatility_ratio: float = Field(gt=1, description="a ratio > 1 such as 2.5")
    drift_window_hours: int = Field(ge=1, description="a positive whole number of hours")
    drift_min_scored: int = Field(ge=0, description="a whole number of rows >= 0")
    min_retrain_gap_hours: int = Field(ge=0, description="a whole number of hours >= 0")
    # --- hourly operation
    predictions_dir: str = Field(min_length=1, description="a folder path")
    log_horizons: list[int] = Field(
        description="a non-empty list of distinct positive whole hours, each also in horizons")
    live_window_hours: int = Field(ge=1, description="a positive whole number of hours")
    max_catchup_hours: int = Field(ge=1, description="a positive whole number of hours")
    min_scored_rows: int = Field(ge=1, description="a positive whole number of scored predictions")
    dvc_snapshot: bool = Field(description="true or false")
    dvc_push: bool = Field(description="true or false")
    lock_file: str = Field(min_length=1, description="a file path")
    log_dir: str = Field(min_length=1, description="a folder path")

    @field_validator("coins")
    @classmethod
    def _coins(cls, v: list[str]) -> list[str]:
        if not v or not all(c.strip() for c in v) or len(set(v)) != len(v):
            raise ValueError(BAD)
        return v

    @field_validator("lags", "horizons", "log_horizons")
    @classmethod
    def _hours(cls, v: list[int]) -> list[int]:
        return _hours_list(v)

    @field_validator("rolling_windows")
    @classmethod
    def _windows(cls, v: list[int]) -> list[int]:
        if any(w < 2 for w in _hours_list(v)):
            raise ValueError(BAD)
        return v

    @field_validator("replay_now")
    @classmethod
    def _clock(cls, v: Optional[str]) -> Optional[str]:
        if v is not None:

            parse_time(v, "replay_now")  # ConfigError names the key
        return v

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from coincast.forecasting.models import make_model

        if not v:
            raise ValueError(BAD)
        for spec in v:
            try:
                make_model(spec)
            except ValueError as exc:  # names the kind and what is wrong with it
                raise ValueError(f"models: {exc}") from None
        return v

    @model_validator(mode="after")
    def _together(self) -> "Settings":
        if self.source == "replay" and not self.replay_file:
            raise ValueError("replay_file must be set when source is replay (a file path or {coin: path})")
        extra = sorted(set(self.log_horizons) - set(self.horizons))
        if extra:
            raise ValueError(f"log_horizons must each be in horizons {self.horizons}: "
                                f"{extra} {'is' if len(extra) == 1 else 'are'} not backtested, so not calibrated")
        return self


def _coerce(values: Mapping[str, Any]) -> dict[str, Any]:
    """YAML gives ints for whole floats and datetimes for unquoted times: accept what YAML means."""
    out = dict(values)
    for key, field in Settings.model_fields.items():
        if key not in out:
            continue
        v = out[key]
        if field.annotation is float and isinstance(v, int) and not isinstance(v, bool):
            out[key] = float(v)
        elif key in ("replay_now", "build_hour") and v is not None and not isinstance(v, str):
            out[key] = str(v)
    return out


def _message(exc: ValidationError, values: Mapping[str, Any]) -> str:
    err = exc.errors()[0]
    key = str(err["loc"][0]) if err["loc"] else ""
    text = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"unknown key {key!r}: not an env.yaml setting"
    if err["type"] == "missing":
        return f"{key} is missing from env.yaml"
    if not key or (err["type"] == "value_error" and text != BAD):  # a message of its own
        return text
    field = Settings.model_fields[key]
    return f"{key} must be {field.description}, got {values.get(key)!r}"


def check(values: Mapping[str, Any]) -> None:
    """Raise :class:`coincast.config.ConfigError` (one line) for the first bad setting in ``values``."""
    data = _coerce(values)
    try:
        Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_message(exc, values)) from None


#: pipeline.yaml task params that are groups of settings (the train task's ``schedule``).
_GROUPS = ("schedule",)
#: task param names that differ from the env.yaml key they carry
_RENAMED = {"minimal": "profile_minimal"}


def task_settings(dag: Any) -> dict[str, Any]:
    """The settings a rendered Ploomber DAG's tasks received, by env.yaml key."""
    values: dict[str, Any] = {}
    for name in dag:
        params = dict(dag[name].params)
        for group in _GROUPS:
            values.update(params.pop(group, None) or {})
        for key, value in params.items():
            if key not in ("upstream", "product"):
                values[_RENAMED.get(key, key)] = value
    return values


def check_dag(dag: Any) -> None:
    """Ploomber's DAG ``on_render`` hook (pipeline.yaml): check the settings before any task runs.

    The tasks' params (env.yaml as Ploomber rendered it, ``--env--key value`` included) are laid over the
    project's env.yaml (for the keys no task receives), then checked like ``coincast build`` does."""
    from pathlib import Path

    values: dict[str, Any] = {}
    for name in dag:
        loc = getattr(dag[name].source, "loc", None)
        if loc and (Path(str(loc)).resolve().parents[1] / "env.yaml").is_file():
            values = read_env_file(Path(str(loc)).resolve().parents[1] / "env.yaml")
            break
    values.update(task_settings(dag))
    check(values)


def load_env(
    path: str | os.PathLike = "env.yaml",
    variant: str | os.PathLike | list[str | os.PathLike] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """env.yaml, its variants and ``overrides`` merged (:func:`coincast.config.merge_env`), every value checked:
    a bad one raises ConfigError naming the key."""
    env = merge_env(path, variant, overrides)
    check(env)
    return env

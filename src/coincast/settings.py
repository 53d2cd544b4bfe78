"""Every pipeline setting, checked once when a build starts: a pydantic model of env.yaml, in groups.

env.yaml is flat (``--set key=value``, ``--env--key value``); :class:`Settings` holds its keys in groups
(:data:`GROUPS`: the gate's ``limits``, ``feature_spec``, ...), each group one pipeline.yaml task param (a dict of
its env.yaml keys) that the notebook passes on whole.

``coincast build`` / ``hourly`` / ``replay`` check the merged env (env.yaml + variants + ``--set``) before
anything runs; a bare ``ploomber build`` checks the values its tasks received in the DAG's ``on_render`` hook
(pipeline.yaml), so a bad value stops the build before the first task whether or not the task that reads it
is due. A bad value is one line naming the key, what it accepts and what it got.
"""
from __future__ import annotations

import os
from typing import Annotated, Any, Literal, Mapping, Optional, Union

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator,
                      model_validator)
from pydantic.fields import FieldInfo

from coincast.config import ConfigError, is_coin_id, merge_env, parse_time, read_env_file

SOURCES = ("coingecko", "replay", "simulated")


#: a validator's ValueError text meaning "say what the key accepts" (its Field description)
BAD = "bad"


def _hours_list(value: list[int]) -> list[int]:
    if not value or not all(v > 0 for v in value) or len(set(value)) != len(value):
        raise ValueError(BAD)
    return value


def _windows(value: list[int]) -> list[int]:
    if any(w < 2 for w in _hours_list(value)):
        raise ValueError(BAD)
    return value


def _scalings(value: list[str]) -> list[str]:
    from coincast.forecasting.volatility import SCALINGS

    if not value or not all(v in SCALINGS for v in value) or len(set(value)) != len(value):
        raise ValueError(BAD)
    return value


def _some_hours(value: list[int]) -> list[int]:
    if not all(v > 0 for v in value) or len(set(value)) != len(value):
        raise ValueError(BAD)
    return value


def _coin(value: str) -> str:
    if not is_coin_id(value):
        raise ValueError(BAD)
    return value


def _coins(value: list[str]) -> list[str]:
    if not value or not all(is_coin_id(c) for c in value) or len(set(value)) != len(value):
        raise ValueError(BAD)
    return value


def _other_coins(value: list[str]) -> list[str]:
    if not all(is_coin_id(c) for c in value) or len(set(value)) != len(value):
        raise ValueError(BAD)
    return value


Hours = Annotated[list[int], AfterValidator(_hours_list)]


class Group(BaseModel):
    """A group of env.yaml keys (its fields): one pipeline.yaml task param of that name, a dict by env.yaml key.
    ``description`` is what the key accepts: it is the error message's text."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)  # inf passes gt=0: refuse it


class Limits(Group):
    """The validation gate's limits (validate task: ``gate.judge(..., **limits)``)."""

    null_threshold: float = Field(ge=0, le=1, description="a fraction from 0 to 1")
    min_rows: int = Field(ge=1, description="a positive whole number of rows")
    max_missing_fraction: float = Field(ge=0, le=1, description="a fraction from 0 to 1")
    max_gap_hours: int = Field(ge=0, description="a whole number of hours >= 0")
    max_staleness_hours: float = Field(gt=0, description="a number of hours > 0")
    max_abs_log_return: float = Field(gt=0, description="a positive |log return| such as 0.25")


class FeatureSpec(Group):
    """The features (features task: ``transform_data(raw, **feature_spec)``)."""

    lags: Hours = Field(description="a non-empty list of distinct positive whole hours, e.g. [1, 3, 6]")
    rolling_windows: Annotated[list[int], AfterValidator(_windows)] = Field(
        description="a non-empty list of distinct whole hours >= 2, e.g. [6, 12, 24]")
    target_horizon: int = Field(ge=1, description="a positive whole number of hours")


class Profile(Group):
    """The profile report (profile task)."""

    profile_enabled: bool = Field(description="true or false")
    profile_minimal: bool = Field(description="true or false")
    profile_every_hours: int = Field(ge=0, description="a whole number of hours >= 0 (0 = every build)")


class Backtest(Group):
    """The walk-forward backtest (train task: ``training.backtest_settings(**backtest)``)."""

    backtest_days: float = Field(gt=0, description="a number of days > 0")
    calibration_days: float = Field(ge=0, description="a number of days >= 0")
    calibration_window_days: float = Field(gt=0, description="a number of days > 0")
    horizons: Hours = Field(description="a non-empty list of distinct positive whole hours, e.g. [1, 24]")
    refit_every_hours: int = Field(ge=1, description="a positive whole number of hours")
    n_jobs: int = Field(ge=1, le=64, description="a whole number of processes, 1 to 64")
    interval_scalings: Annotated[list[str], AfterValidator(_scalings)] = Field(
        description="a non-empty list of distinct scalings among unscaled, rv24, har, hod, har_hod, garch, blend, qreg")
    scaling_p_value: float = Field(gt=0, le=1, description="a p-value level above 0 and at most 1 such as 0.05")
    interval_adapt_rate: float = Field(ge=0, lt=1, description="a step from 0 (off) to below 1 such as 0.01")
    interval_adapt_horizons: Annotated[list[int], AfterValidator(_some_hours)] = Field(
        description="a list of distinct positive whole hours, e.g. [1] (empty: none adapt)")


class Schedule(Group):
    """When the train task retrains (``training.decide_retrain(..., schedule)``)."""

    retrain_every_hours: int = Field(ge=0, description="a whole number of hours >= 0 (0 = every build)")
    drift_max_rel_mae: float = Field(gt=0, description="a number > 0 such as 1.10")
    drift_volatility_ratio: float = Field(gt=1, description="a ratio > 1 such as 2.5")
    drift_window_hours: int = Field(ge=1, description="a positive whole number of hours")
    drift_min_scored: int = Field(ge=0, description="a whole number of rows >= 0")
    min_retrain_gap_hours: int = Field(ge=0, description="a whole number of hours >= 0")


class Promotion(Group):
    """The promotion gate (train task: ``training.train(..., **promotion)``)."""

    promotion_p_value: float = Field(gt=0, lt=1, description="a p-value level between 0 and 1 such as 0.05")


class Scoring(Group):
    """The prediction log and its live scores (monitor task)."""

    log_horizons: Hours = Field(
        description="a non-empty list of distinct positive whole hours, each also in horizons")
    live_window_hours: int = Field(ge=1, description="a positive whole number of hours")
    max_catchup_hours: int = Field(ge=1, description="a positive whole number of hours")
    min_scored_rows: int = Field(ge=1, description="a positive whole number of scored predictions")
    calibration_window_days: float = Field(gt=0, description="a number of days > 0")


class Settings(BaseModel):
    """env.yaml, checked: its top-level keys, and a field per group of keys (the one place that says which
    env.yaml key is in which group: :data:`GROUPS`). env.yaml itself stays flat; :func:`nest` builds this shape."""

    model_config = Group.model_config

    # --- what to fetch
    coins: Annotated[list[str], AfterValidator(_coins)] = Field(
        description="a non-empty list of distinct CoinGecko coin ids (lowercase letters, digits, '-', '.', '_'), "
                    "e.g. [bitcoin, ethereum]")
    coin: Annotated[str, AfterValidator(_coin)] = Field(description="a CoinGecko coin id (lowercase letters, digits, '-', '.', '_'), "
                                                   "e.g. bitcoin")
    vs_currency: str = Field(pattern=r"^[A-Za-z]{2,10}$", description="a quote currency code such as usd")
    days: int = Field(ge=1, description="a positive whole number of days")
    source: Literal["coingecko", "replay", "simulated"] = Field(description="one of coingecko, replay, simulated")
    replay_file: Union[str, dict[str, str], None] = Field(
        description="null, a file path, or a mapping {coin: path}")
    replay_now: Optional[str] = Field(description="null (the real clock) or a date/time such as 2024-05-01T12:00Z")
    build_hour: Optional[str] = Field(description="null (set by coincast build)")
    seed: int = Field(ge=0, description="a non-negative integer")
    fetch_retries: int = Field(ge=0, le=20, description="a whole number of retries from 0 to 20")
    fetch_max_wait_seconds: float = Field(gt=0, description="a number of seconds > 0")
    history_dir: str = Field(min_length=1, description="a folder path")
    notebook_executor: Literal["papermill", "ploomber-engine"] = Field(
        description="papermill or ploomber-engine")
    executed_format: Literal["html", "ipynb"] = Field(description="html or ipynb")
    coin_jobs: int = Field(ge=1, le=64, description="a whole number of coins built at a time, 1 to 64")
    # --- the stages' groups
    limits: Limits
    feature_spec: FeatureSpec
    cross_coins: Annotated[list[str], AfterValidator(_other_coins)] = Field(
        description="a list of distinct CoinGecko coin ids, each also in coins (empty: no cross-coin features)")
    profile: Profile
    # --- models, backtest, registry, retraining
    models: list[dict[str, Any]] = Field(
        description="a non-empty list of model specs such as {kind: naive}")
    backtest: Backtest
    forecast_hours: int = Field(ge=1, le=24 * 7, description="a whole number of hours from 1 to 168")
    project_root: str = Field(min_length=1, description="a folder path")
    schedule: Schedule
    promotion: Promotion
    # --- hourly operation
    predictions_dir: str = Field(min_length=1, description="a folder path")
    scoring: Scoring
    dvc_snapshot: bool = Field(description="true or false")
    dvc_push: bool = Field(description="true or false")
    lock_file: str = Field(min_length=1, description="a file path")
    log_dir: str = Field(min_length=1, description="a folder path")

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
        if self.source == "replay":
            from coincast.data.sources.replay import lacking_coin

            lacking = lacking_coin(self.replay_file, self.coins)
            if lacking:
                raise ValueError(f"{lacking}: give every coin of coins a file")
        unbuilt = [c for c in self.cross_coins if c not in self.coins]
        if unbuilt:
            raise ValueError(f"cross_coins must each be in coins {self.coins}: the history of "
                             f"{', '.join(unbuilt)} is never fetched")
        short = history_shortfall(self.days, self.backtest.backtest_days, self.models)
        if short:
            raise ValueError(short)
        horizons, logged = self.backtest.horizons, self.scoring.log_horizons
        extra = sorted(set(logged) - set(horizons))
        if extra:
            raise ValueError(f"log_horizons must each be in horizons {horizons}: "
                             f"{extra} {'is' if len(extra) == 1 else 'are'} not backtested, so not calibrated")
        return self


def history_shortfall(days: int, backtest_days: float, models: list[dict[str, Any]]) -> str | None:
    """Why ``days`` of history cannot hold the walk-forward backtest (one line), or None: its scored origins
    (``backtest_days``) need the history the models need before the first of them, at least 48 hours
    (:func:`coincast.forecasting.backtest.plan_origins`). The calibration's warm-up origins before them are cut to
    what is left, so ``calibration_days`` is no part of the minimum."""
    from coincast.forecasting.models import history_needed

    scored = int(round(backtest_days * 24))
    need = history_needed(models)
    if days * 24 > scored + need:  # the newest of days x 24 hours is the end, the first origin is an hour before it
        return None
    return (f"days={days} is too short for backtest_days={backtest_days:g}: the backtest's {scored} scored hours need "
            f"{need} hours of history before them (what the models need, at least 48), so days must be at least "
            f"{(scored + need) // 24 + 1} (calibration_days' warm-up uses what is left)")


#: group name (a Settings field and the pipeline.yaml task param) -> its model, whose fields are env.yaml keys
GROUPS: dict[str, type[Group]] = {
    name: field.annotation for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, Group)
}
#: the env.yaml keys that are in a group
GROUPED = frozenset(key for model in GROUPS.values() for key in model.model_fields)
#: every env.yaml key -> its field (what it accepts)
FIELDS: dict[str, FieldInfo] = {
    **{key: field for key, field in Settings.model_fields.items() if key not in GROUPS},
    **{key: field for model in GROUPS.values() for key, field in model.model_fields.items()},
}


def group(env: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The keys of group ``name`` (:data:`GROUPS`) of a flat env, as the pipeline.yaml param of that name."""
    return {key: env[key] for key in GROUPS[name].model_fields}


def nest(values: Mapping[str, Any]) -> dict[str, Any]:
    """A flat env (env.yaml's shape) in the shape of :class:`Settings`: each group's keys under the group."""
    out = {key: v for key, v in values.items() if key not in GROUPED}
    for name, model in GROUPS.items():
        out[name] = {key: values[key] for key in model.model_fields if key in values}
    return out


def _coerce(values: Mapping[str, Any]) -> dict[str, Any]:
    """YAML gives ints for whole floats and datetimes for unquoted times: accept what YAML means."""
    out = dict(values)
    for key, field in FIELDS.items():
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
    loc = err["loc"][1:] if err["loc"] and err["loc"][0] in GROUPS else err["loc"]
    key = str(loc[0]) if loc else ""
    text = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return f"unknown key {key!r}: not an env.yaml setting"
    if err["type"] == "missing":
        return f"{key} is missing from env.yaml"
    if not key or (err["type"] == "value_error" and text != BAD):  # a message of its own
        return text
    field = FIELDS[key]
    return f"{key} must be {field.description}, got {values.get(key)!r}"


def check(values: Mapping[str, Any]) -> None:
    """Raise :class:`coincast.config.ConfigError` (one line) for the first bad setting in ``values``."""
    clash = sorted(set(values) & set(GROUPS))  # a group's name is not a key: its keys are
    if clash:
        raise ConfigError(f"unknown key {clash[0]!r}: not an env.yaml setting")
    try:
        Settings.model_validate(nest(_coerce(values)))
    except ValidationError as exc:
        raise ConfigError(_message(exc, values)) from None


def task_settings(dag: Any) -> dict[str, Any]:
    """The settings a rendered Ploomber DAG's tasks received, by env.yaml key (each group param flattened)."""
    values: dict[str, Any] = {}
    for name in dag:
        for key, value in dag[name].params.items():
            if key in GROUPS:
                values.update(value or {})
            elif key not in ("upstream", "product"):
                values[key] = value
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

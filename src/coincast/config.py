"""Configuration: env.yaml (+ a variant file of overrides) and the process environment (.env).

Every pipeline knob lives in ``env.yaml``; ``env.test.yaml`` / ``env.cron.yaml`` hold only the keys
they change. Secrets never live there: they come from the environment (or a git-ignored ``.env``).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import yaml

from coincast.timeseries import to_utc

logger = logging.getLogger(__name__)

#: Environment variables coincast reads (documented in .env.example and the README).
ENVIRONMENT_VARIABLES = {
    "COINGECKO_API_KEY": "CoinGecko API key (demo or pro); empty = keyless public API",
    "COINGECKO_API_PLAN": "demo | pro: chooses host and key header (default demo)",
    "COINGECKO_BASE_URL": "override the API host, e.g. http://127.0.0.1:8000/api/v3 in tests",
    "MLFLOW_TRACKING_URI": "MLflow tracking store (default sqlite:///mlflow.db)",
    "COINCAST_ENV": "variant file(s), comma-separated, layered on env.yaml when no --env is given (e.g. for dvc repro)",
}

#: A CoinGecko coin id (its API's ``id``: bitcoin, usd-coin, ...): lowercase letters and digits, then also '-', '.',
#: '_'; never '..' or '/' (a coin id names folders: products/<coin>/, the history's <coin>-<vs>.parquet)
COIN_ID = r"^(?!.*\.\.)[a-z0-9][a-z0-9._-]{0,99}$"


def is_coin_id(value: Any) -> bool:
    """Whether ``value`` is a coin id (:data:`COIN_ID`)."""
    import re

    return isinstance(value, str) and re.fullmatch(COIN_ID, value) is not None


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message names the key."""


def load_dotenv_file(path: str | os.PathLike = ".env") -> bool:
    """Read a git-ignored ``.env`` into os.environ if present (never overriding what is set)."""
    from dotenv import load_dotenv

    p = Path(path)
    return load_dotenv(p, override=False) if p.is_file() else False


def read_env_file(path: str | os.PathLike) -> dict[str, Any]:
    """One env file's keys and values (no checks beyond "a YAML mapping")."""
    return _read_yaml(Path(path))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"env file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"env file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"env file {path} must be a mapping of keys to values")
    return data


def parse_value(text: str) -> Any:
    """Parse a command-line override the way YAML would ("90" -> 90, "[1,2]" -> [1, 2], "null" -> None)."""
    return yaml.safe_load(text)


def merge_env(
    path: str | os.PathLike = "env.yaml",
    variant: str | os.PathLike | list[str | os.PathLike] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """env.yaml, then the keys of each ``variant`` file (in order) and ``overrides`` on top; unknown keys
    are errors. Not checked: :func:`coincast.settings.load_env` checks every value."""
    base_path = Path(path)
    env = _read_yaml(base_path)
    layers: list[tuple[str, Mapping[str, Any]]] = []
    variants = variant if isinstance(variant, (list, tuple)) else [variant] if variant else []
    for v in variants:
        layers.append((str(v), _read_yaml(Path(v))))
    if overrides:
        layers.append(("overrides", overrides))
    for name, layer in layers:
        unknown = sorted(set(layer) - set(env))
        if unknown:
            raise ConfigError(f"{name}: unknown key(s) {', '.join(unknown)} (not in {base_path.name})")
        env.update(layer)
    return env


def resolve_root(env: Mapping[str, Any], root: str | os.PathLike) -> dict[str, Any]:
    """``{{root}}`` in string values -> the project folder, as Ploomber does, for the keys coincast itself
    reads outside a build (lock_file, log_dir, predictions_dir, ...)."""
    return {k: v.replace("{{root}}", str(root)) if isinstance(v, str) else v for k, v in env.items()}


def parse_time(value: Any, name: str = "time") -> pd.Timestamp:
    """A timestamp in UTC; naive values are taken as UTC. Clear error on garbage."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise ConfigError(f"{name} is not a date/time: {value!r}") from None
    if ts is pd.NaT:
        raise ConfigError(f"{name} is not a date/time: {value!r}")
    return to_utc(ts)

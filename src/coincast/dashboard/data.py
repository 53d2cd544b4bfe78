"""What the dashboard reads: the project, its coins, each coin's published snapshot and the MLflow registry.

I/O only, never raising for a missing or broken file: each reader returns dicts / DataFrames (``None`` plus a
note for what could not be read). Nothing here writes, trains or fetches.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from coincast.timeseries import utc_times

PROJECT_ENV = "COINCAST_PROJECT"
# files that make a folder under products/ a coin's products (or its published snapshot: coincast.operations.publish)
PRODUCT_FILES = ("published", "failed.json", "extract.json", "validation.json", "raw.parquet", "forecast.parquet",
                 "backtest.json", "registry.json", "profile.html", "predictions.parquet")
JSON_PRODUCTS = (("extract", "extract.json"), ("validation", "validation.json"), ("backtest", "backtest.json"),
                 ("registry", "registry.json"), ("live", "live.json"))
FRAME_PRODUCTS = (("raw", "raw.parquet", ("timestamp",)),
                  ("forecast", "forecast.parquet", ("target_time", "data_through", "generated_at")),
                  ("backtest_forecasts", "backtest_forecasts.parquet", ("origin", "target_time")))


def find_project(start: str | os.PathLike | None = None) -> Path:
    """The project folder: ``$COINCAST_PROJECT``, else the first of ``start`` (default: the working folder,
    which Voila sets to the notebook's) and its parents that holds ``pipeline.yaml``, else ``start``'s
    parent when ``start`` is ``notebooks/``, else ``start``."""
    env = os.environ.get(PROJECT_ENV, "").strip()
    if env:
        return Path(env).expanduser().resolve()
    here = Path(start or os.getcwd()).expanduser().resolve()
    for folder in (here, *here.parents):
        if (folder / "pipeline.yaml").is_file():
            return folder
    return here.parent if here.name == "notebooks" else here


def read_settings(project_root: str | os.PathLike | None) -> dict[str, Any]:
    """The env.yaml keys the dashboard uses (``coins`` order, ``max_staleness_hours``); {} if unreadable."""
    if project_root is None:
        return {}
    try:
        import yaml

        data = yaml.safe_load((Path(project_root) / "env.yaml").read_text()) or {}
        keys = ("coins", "max_staleness_hours")
        return {k: data[k] for k in keys if k in data} if isinstance(data, dict) else {}
    except Exception:  # a dashboard must not fall over on a config file
        return {}


def list_coins(products_dir: str | os.PathLike, order: list[str] | None = None) -> list[str]:
    """Folders under ``products_dir`` holding at least one product; ``order`` (env.yaml ``coins``) first."""
    p = Path(products_dir)
    if not p.is_dir():
        return []
    found = sorted(d.name for d in p.iterdir()
                   if d.is_dir() and not d.name.startswith(".") and any((d / f).exists() for f in PRODUCT_FILES))
    first = [c for c in (order or []) if c in found]
    return first + [c for c in found if c not in first]


@dataclass
class CoinProducts:
    """One coin's products as read from disk; a missing file is ``None``, an unreadable one adds a note."""

    coin: str
    folder: Path | None = None
    extract: dict | None = None
    validation: dict | None = None
    backtest: dict | None = None
    registry: dict | None = None
    live: dict | None = None  # live.json: the monitor stage's scores of the prediction log
    raw: pd.DataFrame | None = None
    forecast: pd.DataFrame | None = None
    backtest_forecasts: pd.DataFrame | None = None
    profile_path: Path | None = None
    profile_bytes: int | None = None
    registry_written: pd.Timestamp | None = None
    problems: list[str] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)  # coincast.operations.publish.build_status: published vs latest


def read_frame(path: Path, time_columns: tuple[str, ...]) -> pd.DataFrame:
    """A parquet product with its time columns as UTC timestamps."""
    df = pd.read_parquet(path)
    for col in time_columns:
        if col in df.columns:
            df[col] = utc_times(df[col])
    return df


def load_coin(products_dir: str | os.PathLike, coin: str) -> CoinProducts:
    """Read the published snapshot of ``products_dir/<coin>/`` (resolved once, so one build's files) and the
    status of the latest build (``cp.status``). ``cp.folder`` is None when no build has been published yet."""
    from coincast.operations.publish import build_status

    status = build_status(Path(products_dir) / coin)
    folder = status["snapshot"]
    cp = CoinProducts(coin=coin, folder=folder, status=status)
    if folder is None:
        return cp
    readers = [(attr, name, lambda p: json.loads(p.read_text())) for attr, name in JSON_PRODUCTS]
    readers += [(attr, name, lambda p, t=times: read_frame(p, t)) for attr, name, times in FRAME_PRODUCTS]
    for attr, name, read in readers:
        path = folder / name
        if path.is_file():
            try:
                setattr(cp, attr, read(path))
            except Exception as exc:
                cp.problems.append(f"{name} could not be read ({type(exc).__name__})")
    if (folder / "profile.html").is_file():
        cp.profile_path = folder / "profile.html"
        cp.profile_bytes = cp.profile_path.stat().st_size
    if (folder / "registry.json").is_file():
        cp.registry_written = pd.Timestamp((folder / "registry.json").stat().st_mtime, unit="s", tz="UTC")
    return cp


def read_profile(path: Path) -> str:
    """The ydata-profiling report's HTML (OSError if it cannot be read)."""
    return Path(path).read_text(errors="replace")


# --- MLflow -----------------------------------------------------------------------------------------------
def local_store(uri: str) -> Path | None:
    """The file or folder of a local tracking URI (``sqlite:///path``, ``file:///path``, a bare path)."""
    if not uri:
        return None
    if uri.startswith("sqlite:"):
        path = re.sub(r"^sqlite:/{2,3}", "", uri).split("?", 1)[0]
        return Path("/" + path.lstrip("/")) if uri.startswith("sqlite:////") else Path(path)
    if uri.startswith("file:"):
        return Path(re.sub(r"^file:(//)?", "", uri))
    return None if "://" in uri or uri.startswith("databricks") else Path(uri)


def mlflow_champion(project_root: str | os.PathLike | None, coin: str) -> dict[str, Any]:
    """``{"ok": True, "store", **registry.champion_info}`` (version, model_name, reason, promoted_at, rel_mae_1h,
    run_id, ...) or ``{"ok": False, "message": ...}``: never raises.

    Read-only: without ``MLFLOW_TRACKING_URI`` and without ``<project>/mlflow.db``, or with a local store that
    does not exist, it does not touch MLflow (which would create an empty database); it reads through a
    client of that store, not ``registry.configure`` (which creates the experiment)."""
    if project_root is None:
        return {"ok": False, "message": "no project folder"}
    root = Path(project_root)
    env_uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not env_uri and not (root / "mlflow.db").is_file():
        return {"ok": False, "message": "no MLflow registry (mlflow.db) in the project"}
    local = local_store(env_uri)
    if local is not None and not local.exists():  # MLflow would create it (and its folders)
        return {"ok": False, "message": f"no MLflow registry at {local}"}
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from coincast import registry
        from coincast.registry import redact_uri
    except Exception as exc:  # a broken installation: the rest of the page still shows
        return {"ok": False, "message": f"MLflow could not be loaded ({type(exc).__name__})"}
    try:
        uri = registry.tracking_uri(root)
        info = registry.champion_info(coin, uri=uri)
        return {"ok": True, "store": redact_uri(uri), **info}
    except LookupError:
        return {"ok": False, "message": f"{registry.registered_name(coin)} has no champion in MLflow"}
    except Exception as exc:  # unreachable server, broken database, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return {"ok": False, "message": f"MLflow could not be read: {type(exc).__name__} {redact_uri(first)[:200]}"}


__all__ = ["CoinProducts", "PROJECT_ENV", "find_project", "list_coins", "load_coin", "local_store",
           "mlflow_champion", "read_frame", "read_profile", "read_settings"]

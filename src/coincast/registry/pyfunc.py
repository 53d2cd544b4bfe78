"""The MLflow face of a :class:`~coincast.forecasting.serving.ServedForecaster`: what a registered version stores.

``mlflow models serve -m models:/coincast-<coin>@champion`` serves it over HTTP (:class:`CoincastPyfunc`).
Versions registered before the registry became a package pickled the class as ``coincast.registry.CoincastPyfunc``:
the package re-exports it, so they still load.
"""
from __future__ import annotations

import logging
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import mlflow.artifacts
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types.schema import AnyType, ColSpec, ParamSchema, ParamSpec, Schema

from coincast.forecasting.serving import FORECAST_COLUMNS, ServedForecaster
from coincast.patches import pins_trusted
from coincast.timeseries import hourly_series, to_utc

logger = logging.getLogger(__name__)

HORIZONS = tuple(range(1, 25))


class CoincastPyfunc(mlflow.pyfunc.PythonModel):
    """The MLflow face of a :class:`ServedForecaster`.

    Input: a DataFrame with ``timestamp`` (datetimes or ISO-8601 strings, on the hour) and ``price`` — the recent
    hourly history, at least :meth:`ServedForecaster.history_hours` hours of it (what its interval scaling reads,
    capped at the hours it was trained on: a week for ``har``, 60 days for ``garch``, all 90 of the default ``days``
    for ``blend``); a shorter history is refused rather than served with intervals of another width than calibrated. Output: one row per
    horizon 1..24 (``params={"max_horizon": n}`` for fewer or more) with ``target_time`` as ISO-8601 UTC
    strings and the forecast with its 80 % and 95 % intervals. A model that reads cross-coin features (its
    ``exog`` setting) also needs those columns (as in features.parquet).
    """

    def __init__(self, served: ServedForecaster) -> None:
        self.served = served

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        history = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        hours, need = len(hourly_series(history)), self.served.history_hours()
        if hours < need:
            scalings = ", ".join(sorted(set(self.served.scaling_for().values())))
            raise ValueError(f"{self.served.name} needs {need} hours of history for the intervals it was calibrated "
                             f"with ({scalings}), got {hours}")
        max_horizon = int((params or {}).get("max_horizon") or len(HORIZONS))
        if max_horizon < 1:
            raise ValueError(f"max_horizon must be at least 1, got {max_horizon}")
        out = self.served.forecast(history, tuple(range(1, max_horizon + 1)))
        out["target_time"] = [to_utc(t).isoformat() for t in out["target_time"]]
        out["horizon"] = out["horizon"].astype("int64")
        return out.reset_index(drop=True)


def model_signature(extra: Sequence[str] = ()) -> ModelSignature:
    """timestamp (any: strings from JSON, datetimes in process), price and the ``extra`` feature columns a model
    reads (optional in the schema: the model names a missing one) in; the forecast table out."""
    inputs = Schema([ColSpec(AnyType(), "timestamp"), ColSpec("double", "price"),
                     *(ColSpec("double", c, required=False) for c in extra)])
    outputs = Schema(
        [ColSpec("long", "horizon"), ColSpec("string", "target_time")]
        + [ColSpec("double", c) for c in FORECAST_COLUMNS[2:]]
    )
    params = ParamSchema([ParamSpec("max_horizon", "long", len(HORIZONS))])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def input_example(served: ServedForecaster, end: Any = None) -> pd.DataFrame:
    """A small history the model can forecast from (ISO timestamps, JSON friendly)."""
    n = served.history_hours()  # what its intervals need
    end_ts = to_utc(end if end is not None else "2024-01-01T00:00Z").floor("h")
    ts = pd.date_range(end=end_ts, periods=n, freq="h")
    i = np.arange(n)
    price = 100.0 * np.exp(0.002 * np.sin(i / 3.0) + 0.0001 * i)
    extra = {c: 0.0 for c in served.model.params.get("exog", ())}  # cross-coin returns: flat markets
    return pd.DataFrame({"timestamp": [t.isoformat() for t in ts], "price": price, **extra})


def pip_requirements(served: ServedForecaster) -> list[str]:
    """What serving the model needs besides coincast itself (installed with the project)."""
    names = ["mlflow", "cloudpickle", "numpy", "pandas", *served.model.requires]
    reqs = []
    for name in names:
        try:
            reqs.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            reqs.append(name)
    return reqs


def log_pyfunc(served: ServedForecaster, artifact_name: str, data_through: Any, tags: dict[str, str]) -> Any:
    """Log ``served`` as a pyfunc model into the active run (inside :func:`coincast.registry.tracking.fluent`);
    returns MLflow's ModelInfo. Its requirements are this environment's exact pins, so MLflow's scan of every
    installed distribution to compare them with it is skipped (:func:`coincast.patches.pins_trusted`)."""
    with pins_trusted():
        return mlflow.pyfunc.log_model(
            name=artifact_name,
            python_model=CoincastPyfunc(served),
            signature=model_signature(served.model.params.get("exog", ())),
            input_example=input_example(served, data_through),
            pip_requirements=pip_requirements(served),
            tags=tags,
        )


def requirement_mismatches(requirements: Sequence[str]) -> list[str]:
    """The pinned ``name==version`` lines of a logged model's requirements.txt that the installed packages do not
    match, as ``name==logged (installed: version | none)``; unpinned lines are not checked."""
    out = []
    for line in requirements:
        name, pinned, version = line.strip().partition("==")
        if not pinned:
            continue
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            have = "none"
        if have != version:
            out.append(f"{name}=={version} (installed: {have})")
    return out


def load_served(model_uri: str) -> ServedForecaster:
    """The :class:`ServedForecaster` a logged pyfunc wraps (inside :func:`coincast.registry.tracking.fluent`).

    A version logged with other package versions than those installed is served with a warning naming them. The
    check is on the pins the model was logged with (:func:`pip_requirements`), not MLflow's own
    (``suppress_warnings``): MLflow maps every installed distribution to its modules first, ~1 s of CPU per
    model loaded, in every tick."""
    local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri)
    requirements = Path(local, "requirements.txt")
    if requirements.is_file():
        mismatched = requirement_mismatches(requirements.read_text().splitlines())
        if mismatched:
            logger.warning("%s was logged with other packages than these: %s", model_uri, "; ".join(mismatched))
    return mlflow.pyfunc.load_model(local, suppress_warnings=True).unwrap_python_model().served

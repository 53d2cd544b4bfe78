"""The forecast stage: the champion from the registry -> the next hours with calibrated intervals."""
from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from coincast.forecasting.serving import ServedForecaster
from coincast.timeseries import to_utc


def make_forecast(
    served: ServedForecaster,
    version: Mapping[str, Any],
    history: pd.DataFrame,
    hours: int = 24,
    generated_at: pd.Timestamp | str | None = None,
) -> pd.DataFrame:
    """forecast.parquet: horizon, target_time, forecast, lower/upper 80 and 95, model name and version,
    data-through timestamp and generation time (``generated_at``: the build's clock, so a replay's forecast is
    made at its replayed hour; None: now)."""
    fc = served.forecast(history, range(1, hours + 1))
    data_through = pd.Timestamp(fc.attrs["origin"])
    fc.insert(0, "coin", version.get("coin"))
    fc["model_name"] = served.name
    fc["model_version"] = str(version.get("version"))
    fc["data_through"] = data_through
    fc["generated_at"] = to_utc(generated_at) if generated_at is not None else pd.Timestamp.now(tz="UTC")
    if "source" in history.columns and len(history):
        fc["source"] = str(history["source"].iloc[-1])
    return fc

"""What the registry stores and serves: a fitted model plus its out-of-sample interval calibration.

``ServedForecaster.forecast(history)`` turns recent hourly prices into the next hours' forecasts with
80 % and 95 % intervals. It is what ``forecast.parquet`` is made from and what the MLflow pyfunc wraps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from coincast.data.features import cross_feature_frame
from coincast.forecasting.calibration import LEVELS, level_key, quantile_for
from coincast.forecasting.models import Forecaster
from coincast.timeseries import hourly_series, realized_vol

FORECAST_COLUMNS = ["horizon", "target_time", "forecast"] + [
    f"{side}_{level_key(lv)}" for lv in LEVELS for side in ("lower", "upper")
]


@dataclass
class ServedForecaster:
    """A fitted forecaster, its calibration quantiles per horizon and how they were obtained."""

    model: Forecaster
    quantiles: dict[int, dict[str, float]]
    vol_window: int = 24
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.model.name

    def forecast(self, history: pd.DataFrame, horizons: Sequence[int] = tuple(range(1, 25))) -> pd.DataFrame:
        """Forecasts for ``horizons`` hours after the last row of ``history`` (timestamp, price, and the cross-coin
        columns a model that reads them needs: :func:`coincast.data.features.with_cross_features`)."""
        y = hourly_series(history)
        if len(y) < self.model.min_history:
            raise ValueError(f"{self.name} needs {self.model.min_history} hours of history, got {len(y)}")
        origin = y.index[-1]
        point = self.model.predict(y, list(horizons), cross_feature_frame(history))
        sigma = float(realized_vol(y, self.vol_window).iloc[-1])
        rows = {"horizon": list(horizons), "target_time": [origin + pd.Timedelta(hours=h) for h in horizons],
                "forecast": point}
        for lv in LEVELS:
            key = level_key(lv)
            half = np.array([quantile_for(self.quantiles, h, key) * sigma * math.sqrt(h) for h in horizons])
            rows[f"lower_{key}"] = point * np.exp(-half)
            rows[f"upper_{key}"] = point * np.exp(half)
        out = pd.DataFrame(rows)[FORECAST_COLUMNS]
        out.attrs["origin"] = origin.isoformat()
        return out

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
from coincast.forecasting.calibration import LEVELS, level_key
from coincast.forecasting.models import Forecaster
from coincast.forecasting.volatility import LEGACY, history_hours, scale_now
from coincast.timeseries import hourly_series

FORECAST_COLUMNS = ["horizon", "target_time", "forecast"] + [
    f"{side}_{level_key(lv)}" for lv in LEVELS for side in ("lower", "upper")
]


@dataclass
class ServedForecaster:
    """A fitted forecaster, its calibration quantiles and volatility scaling per horizon, and how they were
    obtained. ``scalings`` None (a version pickled before the choice existed) is ``rv24`` at every horizon, the
    scaling its quantiles were calibrated with."""

    model: Forecaster
    quantiles: dict[int, dict[str, float]]
    scalings: dict[int, str] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.model.name

    def scaling_for(self) -> dict[int, str]:
        """{calibrated horizon: its scaling}."""
        return dict(self.scalings) if self.scalings else {h: LEGACY for h in self.quantiles}

    def history_hours(self) -> int:
        """The hours of history a forecast needs for the intervals it was calibrated with: what its scalings read
        (:func:`coincast.forecasting.volatility.history_hours`), but no more than it was trained on
        (``info["history_hours"]``: the backtest's last origin had no more), and at least the model's minimum."""
        need = history_hours(list(self.scaling_for().values()))
        trained = self.info.get("history_hours")
        return max(int(self.model.min_history), min(need, int(trained)) if trained else need)

    def forecast(self, history: pd.DataFrame, horizons: Sequence[int] = tuple(range(1, 25))) -> pd.DataFrame:
        """Forecasts for ``horizons`` hours after the last row of ``history`` (timestamp, price, and the cross-coin
        columns a model that reads them needs: :func:`coincast.data.features.with_cross_features`)."""
        y = hourly_series(history)
        if len(y) < self.model.min_history:
            raise ValueError(f"{self.name} needs {self.model.min_history} hours of history, got {len(y)}")
        origin = y.index[-1]
        point = self.model.predict(y, list(horizons), cross_feature_frame(history))
        scale = scales_now(y, self.scaling_for())
        rows = {"horizon": list(horizons), "target_time": [origin + pd.Timedelta(hours=h) for h in horizons],
                "forecast": point}
        for lv in LEVELS:
            key = level_key(lv)
            half = half_widths({h: self.quantiles[h][key] * scale[h] for h in self.quantiles}, horizons)
            rows[f"lower_{key}"] = point * np.exp(-half)
            rows[f"upper_{key}"] = point * np.exp(half)
        out = pd.DataFrame(rows)[FORECAST_COLUMNS]
        out.attrs["origin"] = origin.isoformat()
        return out


def scales_now(y: pd.Series, scalings: dict[int, str]) -> dict[int, float]:
    """Each calibrated horizon's scaling at the last hour of ``y`` (each scaling computed once)."""
    out: dict[int, float] = {}
    for name in set(scalings.values()):
        out.update(scale_now(y, [h for h, n in scalings.items() if n == name], name))
    return out


def half_widths(calibrated: dict[int, float], horizons: Sequence[int]) -> np.ndarray:
    """Log half-widths at ``horizons`` from those at the calibrated horizons (quantile × scale, each with its own
    scaling): exact at a calibrated horizon, else the half-width / √h interpolated linearly in h (beyond the
    ends, the nearest end's) times √h. Interpolating half-widths, not quantiles, lets horizons with different scalings mix."""
    hs = sorted(calibrated)
    per_root_hour = [calibrated[h] / math.sqrt(h) for h in hs]
    return np.array([calibrated[h] if h in calibrated else float(np.interp(h, hs, per_root_hour)) * math.sqrt(h)
                     for h in horizons])

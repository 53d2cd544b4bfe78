"""Baselines every model is measured against: naive (persistence), seasonal naive (24 h), drift."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from coincast.forecasting.models.base import Count, Forecaster, last_value


class Naive(Forecaster):
    """The price stays where it is: ŷ(t+h) = y(t). At one hour ahead crypto is close to a random walk,
    so this is the forecast to beat."""

    kind = "naive"

    def predict(self, y: pd.Series, horizons: Sequence[int], exog: pd.DataFrame | None = None) -> np.ndarray:
        return np.full(len(horizons), last_value(y))


class SeasonalNaive(Forecaster):
    """ŷ(t+h) = y(t+h-24k), the same hour of the latest day (k = ceil(h/24))."""

    kind = "seasonal_naive"

    def __init__(self, season: Count = 24) -> None:
        super().__init__(season=season)
        self.season = season

    @property
    def min_history(self) -> int:
        return self.season + 1

    def predict(self, y: pd.Series, horizons: Sequence[int], exog: pd.DataFrame | None = None) -> np.ndarray:
        values = y.to_numpy(dtype=float)
        out = []
        for h in horizons:
            back = self.season * int(np.ceil(h / self.season)) - h  # hours before the origin
            v = values[-1 - back]
            out.append(v if np.isfinite(v) else last_value(y))
        return np.asarray(out)


class Drift(Forecaster):
    """The last price plus the average hourly change of the last ``window`` hours, h times
    (in log space, so it is a growth rate)."""

    kind = "drift"

    def __init__(self, window: Count = 168) -> None:
        super().__init__(window=window)
        self.window = window

    @property
    def min_history(self) -> int:
        return self.window + 1

    def predict(self, y: pd.Series, horizons: Sequence[int], exog: pd.DataFrame | None = None) -> np.ndarray:
        last = last_value(y)
        first = float(y.iloc[-1 - self.window])
        rate = (np.log(last) - np.log(first)) / self.window if np.isfinite(first) and first > 0 else 0.0
        return last * np.exp(rate * np.asarray(horizons, dtype=float))

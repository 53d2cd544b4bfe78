"""The one interface every model implements.

A forecaster sees an hourly price series ``y`` (a pandas Series on a complete hourly UTC grid, the last
value being the price at the forecast origin) and forecasts the price ``h`` hours after the origin:

* ``fit(y)`` learns whatever is expensive from the history up to the origin (may be a no-op);
* ``predict(y, horizons)`` gives point forecasts from the *latest* history, reusing the last fit.

The backtest refits on a cadence and predicts at every origin, so fitting stays rare and prediction
cheap. Intervals are not the model's business: :mod:`coincast.forecasting.calibration` adds them out of sample.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd


class Forecaster:
    """Base class: a name, its settings (``spec``) and fit/predict."""

    kind: str = "base"
    #: the distributions serving a fitted model needs besides coincast's own (the registered pyfunc lists them)
    requires: tuple[str, ...] = ()

    def __init__(self, name: str | None = None, **params: Any) -> None:
        self.name = name or self.kind
        self.params = params

    @property
    def spec(self) -> dict[str, Any]:
        """What re-creates this model unfitted: ``make_model(spec)``."""
        return {"kind": self.kind, "name": self.name, **self.params}

    @property
    def min_history(self) -> int:
        """Hours of history ``predict`` needs before the origin."""
        return 1

    def fit(self, y: pd.Series) -> "Forecaster":
        return self

    def predict(self, y: pd.Series, horizons: Sequence[int]) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec})"


def last_value(y: pd.Series) -> float:
    value = float(y.iloc[-1])
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"the price at the origin {y.index[-1]} is missing or not positive ({value})")
    return value

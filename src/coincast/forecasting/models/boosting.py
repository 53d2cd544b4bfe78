"""LightGBM on the features: the log return to each horizon, one model per horizon, from the features at the origin.

``lightgbm`` learns, at each refit, ``log(y[t+h] / y[t])`` from the price features at ``t``
(:func:`coincast.data.features.price_features`: lags, rolling means and standard deviations, calendar terms, the
last log return, 24 h volatility, 12 h momentum, the place in the 24 h range) over the last ``window_days`` of hours
``t`` whose outcome is known at the origin (``t + h`` at or before it), one regressor per horizon in ``horizons``.
Price levels (lags, rolling statistics) enter divided by the price at ``t``, so the trees see relative levels and
not a level that drifts out of the range they were fitted on. The forecast is the last price × exp(the predicted
log return). A horizon without a regressor of its own (the served forecast asks for 1..24 h) takes the log return
interpolated linearly in h between the fitted horizons (0 at h = 0; the longest fitted horizon's beyond it).

The model sees the price series (the :class:`~coincast.forecasting.models.base.Forecaster` interface), plus the
cross-coin columns of features.parquet when the ``cross_coins`` knob makes them (the backtest names them in its
``exog`` setting, so they are part of its identity): the volume lags of features.parquet are not among its inputs.
Opt-in: a ``{kind: lightgbm}`` entry in ``models``.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from coincast.data.features import relative_features
from coincast.forecasting.models.base import (
    Count, Forecaster, Horizons, Positive, Whole, Window, exog_inputs, last_value,
)


class LightGBMReturns(Forecaster):
    kind = "lightgbm"
    requires = ("lightgbm",)
    uses_exog = True

    def __init__(
        self,
        horizons: Horizons = (1, 24),
        window_days: Positive = 30,
        lags: Sequence[Count] = (1, 3, 6, 12, 24),
        rolling_windows: Sequence[Window] = (6, 12, 24),
        n_estimators: Count = 200,
        learning_rate: Positive = 0.03,
        num_leaves: Window = 15,
        min_child_samples: Count = 40,
        seed: Whole = 0,
        exog: Sequence[str] = (),
    ) -> None:
        horizons = sorted({int(h) for h in horizons})  # checked by make_model (base.Horizons)
        super().__init__(horizons=horizons, window_days=window_days, lags=[int(k) for k in lags],
                         rolling_windows=[int(w) for w in rolling_windows], n_estimators=n_estimators,
                         learning_rate=learning_rate, num_leaves=num_leaves, min_child_samples=min_child_samples,
                         seed=seed)
        if exog:  # only when set: the identity of a model without extra features is unchanged
            self.params["exog"] = sorted(exog)
        self.models: dict[int, Any] = {}

    @property
    def min_history(self) -> int:
        """Hours behind the origin its features need (the longest lag or window, and 24 h of returns)."""
        p = self.params
        return max([*p["lags"], *p["rolling_windows"], 24]) + 1

    def features(self, y: pd.Series, exog: pd.DataFrame | None = None) -> pd.DataFrame:
        """The model's inputs at every hour of ``y``: the price features, levels relative to the price, and the
        extra features its ``exog`` setting names."""
        x = relative_features(y, self.params["lags"], self.params["rolling_windows"])
        return x.join(exog_inputs(exog, self.params.get("exog", ()), y.index, self.name))

    def fit(self, y: pd.Series, exog: pd.DataFrame | None = None) -> "LightGBMReturns":
        import lightgbm

        p = self.params
        window = int(p["window_days"] * 24)
        recent = y.iloc[-(window + max(p["horizons"]) + self.min_history):]
        x = self.features(recent, exog)
        complete = x.notna().all(axis=1)
        log_price = np.log(recent)
        models = {}
        for h in p["horizons"]:
            target = log_price.shift(-h) - log_price  # NaN for the last h hours: their outcome is after the origin
            rows = (complete & target.notna()).to_numpy()
            X, r = x.loc[rows].iloc[-window:], target.loc[rows].iloc[-window:]
            if len(r) < 48:
                raise ValueError(f"{self.name}: needs at least 48 hours with a known {h} h outcome to fit, got {len(r)}")
            model = lightgbm.LGBMRegressor(
                n_estimators=p["n_estimators"], learning_rate=p["learning_rate"], num_leaves=p["num_leaves"],
                min_child_samples=p["min_child_samples"], random_state=p["seed"], n_jobs=1, deterministic=True,
                force_row_wise=True, verbose=-1)
            models[h] = model.fit(X.to_numpy(), r.to_numpy())
        self.models = models
        return self

    def predict(self, y: pd.Series, horizons: Sequence[int], exog: pd.DataFrame | None = None) -> np.ndarray:
        if not self.models:
            raise RuntimeError(f"{self.name} is not fitted")
        x = self.features(y.iloc[-self.min_history:], exog).iloc[[-1]]
        if x.isna().to_numpy().any():
            raise ValueError(f"{self.name}: the features at the origin {y.index[-1]} are incomplete")
        fitted = sorted(self.models)
        returns = [float(self.models[h].predict(x.to_numpy())[0]) for h in fitted]
        r = np.interp(np.asarray(horizons, dtype=float), [0.0, *fitted], [0.0, *returns])
        return last_value(y) * np.exp(r)

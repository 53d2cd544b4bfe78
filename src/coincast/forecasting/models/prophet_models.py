"""Prophet variants shaped for hourly crypto prices.

Default Prophet on the price level loses badly to naive at one hour ahead (its trend and seasonality
ignore where the price is *now*). The variants here keep Prophet for what it is good at — smooth daily and
weekly seasonality — and anchor every forecast on the last observed price:

* ``prophet_default``  — Prophet on the price as it comes (kept as the honest reference point);
* ``prophet_seasonal`` — Prophet on log price over a short window; forecast = last price × exp(damping ×
  (seasonal(t+h) - seasonal(t))): a seasonal correction on top of naive;
* ``prophet_returns``  — Prophet on hourly log returns (mean + seasonality, no changepoints); forecast =
  last price × exp(damping × sum of predicted returns over the h hours).

Prophet's own uncertainty is switched off (``uncertainty_samples=0``): intervals come from out-of-sample
calibration. Refits are warm-started from the previous fit's parameters, and the fitted components are
evaluated once on an hourly grid ahead of the fit, so predicting at later origins costs a lookup.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import pandas as pd

from coincast.forecasting.models.base import Forecaster, last_value
from coincast.timeseries import HOUR, log_returns, naive_utc

logger = logging.getLogger(__name__)
# Stan logs two INFO lines per fit ("Chain [1] start/done processing"): hundreds per backtest. cmdstanpy sets
# its logger to DEBUG with a console handler of its own on first use unless it finds a handler: the NullHandler
# keeps this level (warnings still reach the root logger's handlers, or stderr).
for _noisy in ("cmdstanpy", "prophet", "prophet.plot"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)
    logging.getLogger(_noisy).addHandler(logging.NullHandler())


class _ProphetBase(Forecaster):
    kind = "prophet"
    requires = ("prophet",)
    column = "yhat"  # which predicted component the forecast uses
    fit_kwargs: dict[str, Any] = {}  # passed to Stan's optimizer

    def __init__(
        self,
        window_days: float = 30,
        changepoint_prior_scale: float = 0.05,
        n_changepoints: int = 25,
        daily_seasonality: bool | int = True,
        weekly_seasonality: bool | int = True,
        seasonality_prior_scale: float = 10.0,
        damping: float = 1.0,
        cache_hours: int = 24 * 3,
    ) -> None:
        super().__init__(
            window_days=window_days, changepoint_prior_scale=changepoint_prior_scale,
            n_changepoints=n_changepoints, daily_seasonality=daily_seasonality,
            weekly_seasonality=weekly_seasonality, seasonality_prior_scale=seasonality_prior_scale,
            damping=damping,
        )
        self.cache_hours = cache_hours
        self.model: Any = None
        self.fitted_at: pd.Timestamp | None = None
        self._warm: dict[str, Any] | None = None
        self._cache = pd.Series(dtype=float)

    # --- what each variant models ---------------------------------------------------------------
    def _target(self, y: pd.Series) -> pd.Series:
        return np.log(y)

    @property
    def min_history(self) -> int:
        return 2

    # --- fitting ----------------------------------------------------------------------------------
    def _new_prophet(self) -> Any:
        from prophet import Prophet

        p = self.params
        return Prophet(
            uncertainty_samples=0,
            changepoint_prior_scale=p["changepoint_prior_scale"],
            n_changepoints=p["n_changepoints"],
            daily_seasonality=p["daily_seasonality"],
            weekly_seasonality=p["weekly_seasonality"],
            yearly_seasonality=False,
            seasonality_prior_scale=p["seasonality_prior_scale"],
        )

    def fit(self, y: pd.Series) -> "_ProphetBase":
        window = int(self.params["window_days"] * 24)
        target = self._target(y.iloc[-window - 1:]).replace([np.inf, -np.inf], np.nan).dropna().iloc[-window:]
        if len(target) < 48:
            raise ValueError(f"{self.name}: needs at least 48 hours to fit, got {len(target)}")
        frame = pd.DataFrame({"ds": naive_utc(target.index), "y": target.to_numpy()})
        model = self._new_prophet()
        try:
            model.fit(frame, init=self._warm, **self.fit_kwargs) if self._warm else model.fit(frame, **self.fit_kwargs)
        except Exception:  # a warm start with stale shapes: fall back to a cold fit
            if not self._warm:
                raise
            model = self._new_prophet().fit(frame, **self.fit_kwargs)
        self.model = model
        self.fitted_at = y.index[-1]
        self._warm = {
            "k": float(model.params["k"][0][0]), "m": float(model.params["m"][0][0]),
            "sigma_obs": float(model.params["sigma_obs"][0][0]),
            "delta": model.params["delta"][0].tolist(), "beta": model.params["beta"][0].tolist(),
        }
        start = self.fitted_at - 24 * HOUR
        grid = pd.date_range(start, self.fitted_at + self.cache_hours * HOUR, freq="h")
        self._cache = self._evaluate(grid)
        return self

    def _evaluate(self, index: pd.DatetimeIndex) -> pd.Series:
        if self.model is None:
            raise RuntimeError(f"{self.name} is not fitted")
        out = self.model.predict(pd.DataFrame({"ds": naive_utc(index)}))
        return pd.Series(out[self.column].to_numpy(), index=index)

    def component(self, times: pd.DatetimeIndex) -> np.ndarray:
        """The fitted component at ``times`` (cached grid, computed on demand beyond it)."""
        hit = self._cache.reindex(times)
        missing = hit.isna()
        if missing.any():
            extra = self._evaluate(times[missing.to_numpy()])
            hit[missing.to_numpy()] = extra.to_numpy()
        return hit.to_numpy(dtype=float)

    # --- serialisation: Prophet objects go through Prophet's own JSON -----------------------------
    def __getstate__(self) -> dict[str, Any]:
        from prophet.serialize import model_to_json

        state = self.__dict__.copy()
        state["model"] = model_to_json(self.model) if self.model is not None else None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        from prophet.serialize import model_from_json

        if state.get("model") is not None:
            state["model"] = model_from_json(state["model"])
        self.__dict__.update(state)


class ProphetDefault(_ProphetBase):
    """Prophet on the price level; the forecast is its yhat (does not look at the last price)."""

    kind = "prophet_default"

    def _target(self, y: pd.Series) -> pd.Series:
        return y

    def predict(self, y: pd.Series, horizons: Sequence[int]) -> np.ndarray:
        origin = y.index[-1]
        return self.component(pd.DatetimeIndex([origin + h * HOUR for h in horizons]))


class ProphetSeasonal(_ProphetBase):
    """Naive plus Prophet's daily/weekly seasonal change of log price between the origin and t+h."""

    kind = "prophet_seasonal"
    column = "additive_terms"

    def __init__(self, window_days: float = 14, **kw: Any) -> None:
        super().__init__(window_days=window_days, **kw)

    def predict(self, y: pd.Series, horizons: Sequence[int]) -> np.ndarray:
        origin = y.index[-1]
        times = pd.DatetimeIndex([origin] + [origin + h * HOUR for h in horizons])
        s = self.component(times)
        return last_value(y) * np.exp(self.params["damping"] * (s[1:] - s[0]))


class ProphetReturns(_ProphetBase):
    """Prophet on hourly log returns (no changepoints); the forecast compounds the predicted returns."""

    kind = "prophet_returns"
    # L-BFGS stops abnormally on every fit of hourly returns here (Stan exits with code 1), and Prophet
    # then retries with Newton: asking for Newton directly halves the cost and the log noise.
    fit_kwargs = {"algorithm": "Newton"}

    def __init__(self, window_days: float = 30, n_changepoints: int = 0, **kw: Any) -> None:
        super().__init__(window_days=window_days, n_changepoints=n_changepoints, **kw)

    def _target(self, y: pd.Series) -> pd.Series:
        return log_returns(y)

    def _new_prophet(self) -> Any:
        m = super()._new_prophet()
        if self.params["n_changepoints"] == 0:
            m.changepoints = pd.Series(dtype="datetime64[ns]")  # a flat trend: the mean return
        return m

    def predict(self, y: pd.Series, horizons: Sequence[int]) -> np.ndarray:
        origin = y.index[-1]
        steps = pd.DatetimeIndex([origin + k * HOUR for k in range(1, max(horizons) + 1)])
        cum = np.cumsum(self.component(steps))
        return last_value(y) * np.exp(self.params["damping"] * cum[np.asarray(horizons) - 1])

"""Prophet variants shaped for hourly crypto prices.

Default Prophet on the price level loses badly to naive at one hour ahead (its trend and seasonality
ignore where the price is *now*). The variants here keep Prophet for what it is good at — smooth daily and
weekly seasonality — and anchor every forecast on the last observed price:

* ``prophet_default``  — Prophet on the price as it comes (kept as the honest reference point);
* ``prophet_seasonal`` — Prophet on log price over a short window; forecast = last price × exp(damping ×
  (seasonal(t+h) - seasonal(t))): a seasonal correction on top of naive;
* ``prophet_returns``  — Prophet on hourly log returns (mean + seasonality, no changepoints); forecast =
  last price × exp(damping × sum of predicted returns over the h hours);
* ``prophet_regressors`` — Prophet on the h-hour log return with the seed's features as extra regressors
  (``add_regressor``), each lagged by h so it is known at the origin: one fit per horizon (opt-in).

Prophet's own uncertainty is switched off (``uncertainty_samples=0``): intervals come from out-of-sample
calibration. Refits are warm-started from the previous fit's parameters, and the fitted components are
evaluated once on an hourly grid ahead of the fit, so predicting at later origins costs a lookup.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Literal, Sequence

import numpy as np
import pandas as pd

from coincast.data.features import CALENDAR_COLUMNS, relative_features
from coincast.forecasting.models.base import (
    Count, Forecaster, Horizons, Positive, Share, Whole, Window, exog_inputs, last_value,
)
from coincast.timeseries import HOUR, log_returns, naive_utc

logger = logging.getLogger(__name__)
# Stan logs two INFO lines per fit ("Chain [1] start/done processing"): hundreds per backtest. cmdstanpy sets
# its logger to DEBUG with a console handler of its own on first use unless it finds a handler: the NullHandler
# keeps this level (warnings still reach the root logger's handlers, or stderr).
for _noisy in ("cmdstanpy", "prophet", "prophet.plot"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)
    logging.getLogger(_noisy).addHandler(logging.NullHandler())


def fit_warm(new: Callable[[], Any], frame: pd.DataFrame, warm: dict[str, Any] | None,
             fit_kwargs: dict[str, Any]) -> Any:
    """A Prophet from ``new()`` fitted on ``frame``, warm-started from ``warm`` (:func:`warm_start` of an earlier
    fit) when given; a warm start that fails (stale shapes) falls back to a cold fit."""
    model = new()
    try:
        return model.fit(frame, init=warm, **fit_kwargs) if warm else model.fit(frame, **fit_kwargs)
    except Exception:
        if not warm:
            raise
        return new().fit(frame, **fit_kwargs)


def warm_start(model: Any) -> dict[str, Any]:
    """A fitted Prophet's parameters, as the ``init`` of the next fit. ``delta`` and ``beta`` stay arrays: Prophet
    compares their shapes with its defaults' (with lists every warm start raised and fell back to a cold fit)."""
    return {
        "k": float(model.params["k"][0][0]), "m": float(model.params["m"][0][0]),
        "sigma_obs": float(model.params["sigma_obs"][0][0]),
        "delta": np.array(model.params["delta"][0], dtype=float), "beta": np.array(model.params["beta"][0], dtype=float),
    }


class _ProphetBase(Forecaster):
    kind = "prophet"
    requires = ("prophet",)
    column = "yhat"  # which predicted component the forecast uses
    fit_kwargs: dict[str, Any] = {}  # passed to Stan's optimizer
    growth = "linear"  # Prophet's trend

    def __init__(
        self,
        window_days: Positive = 30,
        changepoint_prior_scale: Positive = 0.05,
        n_changepoints: Whole = 25,
        daily_seasonality: bool | Count = True,
        weekly_seasonality: bool | Count = True,
        seasonality_prior_scale: Positive = 10.0,
        damping: Share = 1.0,
        cache_hours: Count = 24 * 3,
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
            growth=self.growth,
            uncertainty_samples=0,
            changepoint_prior_scale=p["changepoint_prior_scale"],
            n_changepoints=p["n_changepoints"],
            daily_seasonality=p["daily_seasonality"],
            weekly_seasonality=p["weekly_seasonality"],
            yearly_seasonality=False,
            seasonality_prior_scale=p["seasonality_prior_scale"],
        )

    def fit(self, y: pd.Series, exog: pd.DataFrame | None = None) -> "_ProphetBase":
        window = int(self.params["window_days"] * 24)
        target = self._target(y.iloc[-window - 1:]).replace([np.inf, -np.inf], np.nan).dropna().iloc[-window:]
        if len(target) < 48:
            raise ValueError(f"{self.name}: needs at least 48 hours to fit, got {len(target)}")
        frame = pd.DataFrame({"ds": naive_utc(target.index), "y": target.to_numpy()})
        model = fit_warm(self._new_prophet, frame, self._warm, self.fit_kwargs)
        self.model = model
        self.fitted_at = y.index[-1]
        self._warm = warm_start(model)
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

    def __init__(self, **kw: Any) -> None:
        if kw.get("damping", 1.0) != 1.0:  # it would change the model's identity and nothing else
            raise ValueError("bad settings for model 'prophet_default': damping applies to the variants that forecast "
                             "a change from the last price (prophet_seasonal, prophet_returns), not to Prophet's level")
        super().__init__(**kw)

    def _target(self, y: pd.Series) -> pd.Series:
        return y

    def predict(self, y: pd.Series, horizons: Sequence[int], exog: pd.DataFrame | None = None) -> np.ndarray:
        origin = y.index[-1]
        return self.component(pd.DatetimeIndex([origin + h * HOUR for h in horizons]))


class ProphetSeasonal(_ProphetBase):
    """Naive plus Prophet's daily/weekly seasonal change of log price between the origin and t+h."""

    kind = "prophet_seasonal"
    column = "additive_terms"

    def __init__(self, window_days: Positive = 14, **kw: Any) -> None:
        super().__init__(window_days=window_days, **kw)

    def predict(self, y: pd.Series, horizons: Sequence[int], exog: pd.DataFrame | None = None) -> np.ndarray:
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

    def __init__(self, window_days: Positive = 30, n_changepoints: Whole = 0, **kw: Any) -> None:
        super().__init__(window_days=window_days, n_changepoints=n_changepoints, **kw)

    def _target(self, y: pd.Series) -> pd.Series:
        return log_returns(y)

    def _new_prophet(self) -> Any:
        m = super()._new_prophet()
        if self.params["n_changepoints"] == 0:
            m.changepoints = pd.Series(dtype="datetime64[ns]")  # a flat trend: the mean return
        return m

    def predict(self, y: pd.Series, horizons: Sequence[int], exog: pd.DataFrame | None = None) -> np.ndarray:
        origin = y.index[-1]
        steps = pd.DatetimeIndex([origin + k * HOUR for k in range(1, max(horizons) + 1)])
        cum = np.cumsum(self.component(steps))
        return last_value(y) * np.exp(self.params["damping"] * cum[np.asarray(horizons) - 1])


class ProphetRegressors(_ProphetBase):
    """Prophet on the h-hour log return with the seed's features as extra regressors, lagged by h: one fit per
    horizon in ``horizons``.

    For horizon h the fit pairs the target r_h(t) = log(y(t) / y(t-h)) at time t with the features at t - h (what
    was known h hours before t), over the last ``window_days`` of hours t at or before the origin. The forecast
    for the origin o + h is Prophet's flat trend and daily (weekly) seasonality at o + h plus each regressor's
    coefficient × (its value at o − its fitted centre): every input is known at o. The features are those of
    :func:`~coincast.data.features.relative_features` (lags, rolling statistics relative to the price, the last
    return, 24 h volatility, 12 h momentum, the place in the 24 h range) without the calendar terms (Prophet's
    seasonality models the hour and weekday of the target), plus the cross-coin columns its ``exog`` setting
    names. Each regressor has the prior scale ``regressor_prior_scale`` (small: shrinks towards no effect).
    Forecast = last price × exp(``damping`` × predicted return); a horizon without a fit of its own takes the
    return interpolated linearly in h between the fitted ones (0 at h = 0), like LightGBM. Refits are
    warm-started per horizon; trend and seasonality are evaluated once on an hourly grid ahead of each fit.
    """

    kind = "prophet_regressors"
    uses_exog = True
    growth = "flat"  # the mean h-hour return: no trend extrapolated from a month of returns
    # as for prophet_returns: L-BFGS stops abnormally on returns and Prophet then retries with Newton
    fit_kwargs = {"algorithm": "Newton"}

    def __init__(
        self,
        horizons: Horizons = (1, 24),
        window_days: Positive = 30,
        weekly_seasonality: bool | Count = False,
        regressor_prior_scale: Positive = 0.05,
        lags: Sequence[Count] = (1, 3, 6, 12, 24),
        rolling_windows: Sequence[Window] = (6, 12, 24),
        exog: Sequence[str] = (),
        n_changepoints: Literal[0] = 0,  # a flat trend; in the spec, so a spec re-creates the model
        **kw: Any,
    ) -> None:
        horizons = sorted({int(h) for h in horizons})  # checked by make_model (base.Horizons)
        super().__init__(window_days=window_days, weekly_seasonality=weekly_seasonality, n_changepoints=n_changepoints,
                         **kw)
        self.params.update(horizons=horizons, regressor_prior_scale=regressor_prior_scale,
                           lags=[int(k) for k in lags], rolling_windows=[int(w) for w in rolling_windows])
        if exog:
            self.params["exog"] = sorted(exog)
        self.models: dict[int, Any] = {}
        self._warms: dict[int, dict[str, Any]] = {}
        self._baselines: dict[int, pd.Series] = {}  # per horizon: trend + seasonality at target times
        self._coefs: dict[int, pd.DataFrame] = {}  # per horizon: regressor -> centre, coef (original units)

    @property
    def min_history(self) -> int:
        p = self.params
        return max([*p["lags"], *p["rolling_windows"], 24]) + 1

    def regressors(self, y: pd.Series, exog: pd.DataFrame | None = None) -> pd.DataFrame:
        """The regressors at every hour of ``y`` (not yet lagged): the relative price features without the
        calendar terms, and the extra features its ``exog`` setting names."""
        x = relative_features(y, self.params["lags"], self.params["rolling_windows"])
        x = x.drop(columns=list(CALENDAR_COLUMNS))
        return x.join(exog_inputs(exog, self.params.get("exog", ()), y.index, self.name))

    def _new_prophet_with(self, columns: Sequence[str]) -> Any:
        m = self._new_prophet()
        for c in columns:
            m.add_regressor(c, prior_scale=self.params["regressor_prior_scale"], standardize=True)
        return m

    def fit(self, y: pd.Series, exog: pd.DataFrame | None = None) -> "ProphetRegressors":
        from prophet.utilities import regressor_coefficients

        p = self.params
        window = int(p["window_days"] * 24)
        recent = y.iloc[-(window + max(p["horizons"]) + self.min_history):]
        x = self.regressors(recent, exog)
        log_price = np.log(recent)
        columns = list(x.columns)
        self.fitted_at = y.index[-1]
        for h in p["horizons"]:
            frame = x.shift(h).assign(y=log_price - log_price.shift(h))  # at t: r_h(t) and the features at t - h
            frame = frame.loc[frame.notna().all(axis=1)].iloc[-window:]
            if len(frame) < 48:
                raise ValueError(f"{self.name}: needs at least 48 hours with a known {h} h outcome to fit, "
                                 f"got {len(frame)}")
            frame.insert(0, "ds", naive_utc(frame.index))
            model = fit_warm(lambda: self._new_prophet_with(columns), frame.reset_index(drop=True),
                             self._warms.get(h), self.fit_kwargs)
            self.models[h], self._warms[h] = model, warm_start(model)
            self._coefs[h] = regressor_coefficients(model).set_index("regressor")[["center", "coef"]]
            ahead = pd.date_range(self.fitted_at + h * HOUR, periods=self.cache_hours + 1, freq="h")
            self._baselines[h] = self._baseline(h, ahead)
        return self

    def _baseline(self, h: int, times: pd.DatetimeIndex) -> pd.Series:
        """Horizon ``h``'s trend + seasonality at target ``times`` (every regressor at its centre: no effect)."""
        model = self.models[h]
        frame = pd.DataFrame({"ds": naive_utc(times)})
        for name, spec in model.extra_regressors.items():
            frame[name] = spec["mu"]
        return pd.Series(model.predict(frame)["yhat"].to_numpy(), index=times)

    def predict(self, y: pd.Series, horizons: Sequence[int], exog: pd.DataFrame | None = None) -> np.ndarray:
        if not self.models:
            raise RuntimeError(f"{self.name} is not fitted")
        origin = y.index[-1]
        x = self.regressors(y.iloc[-self.min_history:], exog).iloc[-1]
        if x.isna().any():
            raise ValueError(f"{self.name}: the features at the origin {origin} are incomplete")
        fitted = sorted(self.models)
        returns = []
        for h in fitted:
            target = origin + h * HOUR
            base = self._baselines[h].get(target)
            if base is None or not np.isfinite(base):
                base = float(self._baseline(h, pd.DatetimeIndex([target])).iloc[0])
            c = self._coefs[h]
            returns.append(float(base + (c["coef"] * (x[c.index] - c["center"])).sum()))
        r = np.interp(np.asarray(horizons, dtype=float), [0.0, *fitted], [0.0, *returns])
        return last_value(y) * np.exp(self.params["damping"] * r)

    def __getstate__(self) -> dict[str, Any]:
        from prophet.serialize import model_to_json

        state = self.__dict__.copy()
        state["models"] = {h: model_to_json(m) for h, m in self.models.items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        from prophet.serialize import model_from_json

        state["models"] = {h: model_from_json(m) for h, m in state.get("models", {}).items()}
        self.__dict__.update(state)

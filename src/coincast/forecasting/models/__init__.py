"""Models: baselines, Prophet variants, Prophet with regressors and LightGBM (opt-in) behind one interface (see :mod:`coincast.forecasting.models.base`)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from coincast.forecasting.models.base import Forecaster, model_id, settings_problem
from coincast.forecasting.models.baselines import Drift, Naive, SeasonalNaive
from coincast.forecasting.models.boosting import LightGBMReturns
from coincast.forecasting.models.prophet_models import (
    ProphetDefault, ProphetRegressors, ProphetReturns, ProphetSeasonal,
)

KINDS: dict[str, type[Forecaster]] = {
    cls.kind: cls for cls in (Naive, SeasonalNaive, Drift, ProphetDefault, ProphetSeasonal, ProphetReturns,
                              LightGBMReturns, ProphetRegressors)
}

#: the fewest hours of history behind a backtest's first origin, whatever the models need
MIN_HISTORY_HOURS = 48

__all__ = ["Forecaster", "KINDS", "MIN_HISTORY_HOURS", "history_needed", "make_model", "model_id", "Naive",
           "with_exog"]


def make_model(spec: Mapping[str, Any]) -> Forecaster:
    """A fresh, unfitted model from a spec such as ``{"kind": "prophet_seasonal", "window_days": 14}``. Its name
    is its identity (:func:`model_id`), derived from kind and settings: a ``name`` key (specs stored before
    names were identities have one) is ignored."""
    params = {k: v for k, v in spec.items() if k != "name"}
    kind = params.pop("kind", None)
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}: use one of {', '.join(KINDS)}")
    problem = settings_problem(KINDS[kind], params)  # every key and value, so the constructor gets good ones
    if problem:
        raise ValueError(f"bad settings for model {kind!r}: {problem}")
    return KINDS[kind](**params)


def history_needed(specs: Sequence[Mapping[str, Any]]) -> int:
    """The hours of history a backtest of ``specs`` needs behind its first origin: the most any of the models
    needs, at least :data:`MIN_HISTORY_HOURS`."""
    return max(MIN_HISTORY_HOURS, *(make_model(spec).min_history for spec in specs))


def with_exog(spec: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    """``spec`` of a model that reads extra features (``uses_exog``) set to read ``columns`` (the cross-coin columns),
    so its identity names what it reads; a spec naming its own ``exog``, any other kind, or no columns: unchanged."""
    out = dict(spec)
    kind = KINDS.get(str(out.get("kind")))
    if columns and kind is not None and kind.uses_exog and "exog" not in out:
        out["exog"] = sorted(columns)
    return out

"""The one interface every model implements.

A forecaster sees an hourly price series ``y`` (a pandas Series on a complete hourly UTC grid, the last
value being the price at the forecast origin) and forecasts the price ``h`` hours after the origin:

* ``fit(y)`` learns whatever is expensive from the history up to the origin (may be a no-op);
* ``predict(y, horizons)`` gives point forecasts from the *latest* history, reusing the last fit.

Both take an optional ``exog``: extra features indexed by the hours of ``y`` (the cross-coin columns of
features.parquet, :func:`coincast.data.features.cross_feature_frame`), cut at the origin like ``y``. Only a model
with ``uses_exog`` reads it, and only the columns its ``exog`` setting names (part of its identity); the others
ignore it.

The backtest refits on a cadence and predicts at every origin, so fitting stays rare and prediction
cheap. Intervals are not the model's business: :mod:`coincast.forecasting.calibration` adds them out of sample.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
import typing
from typing import Annotated, Any, Mapping, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

#: the types of model settings (the annotations of the models' ``__init__``; :func:`settings_problem` checks them)
Count = Annotated[int, Field(ge=1)]  # a whole number >= 1 (hours, windows, trees)
Whole = Annotated[int, Field(ge=0)]  # a whole number >= 0
Positive = Annotated[float, Field(gt=0)]  # a number > 0
Share = Annotated[float, Field(ge=0, le=1)]  # a number from 0 to 1
Horizons = Annotated[Sequence[Count], Field(min_length=1)]  # hours ahead, at least one
Window = Annotated[int, Field(ge=2)]  # a whole number >= 2 (a rolling standard deviation's window; tree leaves)


@functools.lru_cache(maxsize=None)
def settings_schema(cls: type) -> type[BaseModel]:
    """A pydantic model of the settings ``cls(**settings)`` takes: the annotated parameters of ``__init__`` along
    its classes (a subclass's ``**kw`` passes the rest to its base), no other key, no ``inf`` or ``nan``."""
    fields: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if klass is object or init is None:
            continue
        hints = typing.get_type_hints(init, include_extras=True)
        for name, p in inspect.signature(init).parameters.items():
            if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                fields[name] = (hints.get(name, Any), p.default)
    return create_model(f"{cls.__name__}Settings", __config__=ConfigDict(extra="forbid", strict=True,
                                                                          allow_inf_nan=False), **fields)


def settings_problem(cls: type, settings: Mapping[str, Any]) -> str | None:
    """What is wrong with ``settings`` for a model of class ``cls`` in one line (the first problem: the setting,
    what it must be, the value given), or None. Checked before the model is made, which then gets the values
    as given (a check must not change a model's identity, :func:`model_id`)."""
    try:
        settings_schema(cls).model_validate(dict(settings))
    except ValidationError as exc:
        errors = exc.errors()
        err = errors[0]
        if err["type"] == "extra_forbidden":
            return f"unknown setting {err['loc'][0]!r}"
        # a union (``bool | Count``) fails once per member: say every way the value could have been right
        wants = dict.fromkeys(e["msg"][0].lower() + e["msg"][1:] for e in errors if e["loc"][0] == err["loc"][0])
        where = ".".join(str(part) for part in err["loc"] if not isinstance(part, str) or part == err["loc"][0])
        return f"{where}: {' or '.join(wants)}, got {err.get('input')!r}"
    return None


def model_id(kind: str, settings: Mapping[str, Any]) -> str:
    """A model's identity, the name the backtest, the registry and the promotion gate know it by: its kind plus
    a short hash of its settings (``prophet_returns-3f9a2c``), so a model with other settings is another model;
    a kind without settings (naive) is its kind alone. Whole-number floats hash as integers (YAML's ``30`` and
    ``30.0`` are one setting)."""
    if not settings:
        return kind
    plain = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in settings.items()}
    text = json.dumps(plain, sort_keys=True, separators=(",", ":"), default=str)
    return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"


class Forecaster:
    """Base class: its settings (``params``; ``spec`` adds the kind), its identity (``name``) and fit/predict."""

    kind: str = "base"
    #: the distributions serving a fitted model needs besides coincast's own (the registered pyfunc lists them)
    requires: tuple[str, ...] = ()
    #: whether the model reads extra features (``exog``): the backtest then names the columns in its settings
    uses_exog: bool = False

    def __init__(self, **params: Any) -> None:
        self.params = params

    @property
    def name(self) -> str:
        """The model's identity: :func:`model_id` of its kind and settings (defaults included)."""
        return model_id(self.kind, self.params)

    @property
    def spec(self) -> dict[str, Any]:
        """What re-creates this model unfitted: ``make_model(spec)``."""
        return {"kind": self.kind, **self.params}

    @property
    def min_history(self) -> int:
        """Hours of history ``predict`` needs before the origin."""
        return 1

    def fit(self, y: pd.Series, exog: pd.DataFrame | None = None) -> "Forecaster":
        return self

    def predict(self, y: pd.Series, horizons: Sequence[int], exog: pd.DataFrame | None = None) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec})"


def last_value(y: pd.Series) -> float:
    value = float(y.iloc[-1])
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"the price at the origin {y.index[-1]} is missing or not positive ({value})")
    return value


def exog_inputs(exog: pd.DataFrame | None, columns: Sequence[str], index: pd.DatetimeIndex, who: str) -> pd.DataFrame:
    """The extra features ``columns`` of ``exog`` at the hours ``index`` (empty when the model names none); a
    column the model was set up with but ``exog`` lacks is a one-line error."""
    if not columns:
        return pd.DataFrame(index=index)
    have = [] if exog is None else list(exog.columns)
    missing = [c for c in columns if c not in have]
    if missing:
        raise ValueError(f"{who} reads the extra features {', '.join(missing)}, which this data lacks "
                         "(cross_coins in env.yaml makes them)")
    return exog[list(columns)].reindex(index)

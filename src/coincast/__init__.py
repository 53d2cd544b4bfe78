"""coincast: hourly crypto price forecasting from CoinGecko data, as a notebook-driven pipeline.

The small public API the pipeline's notebooks call, usable on its own::

    from coincast import extract_data, validate_data, transform_data
    df = extract_data("bitcoin", days=30)          # live CoinGecko; source="simulated" works offline
    report = validate_data(df, fail_on_error=True)  # raises ValidationFailed naming each failed check
    features = transform_data(df)

Importing coincast switches the usage pings of Ploomber, MLflow, DVC and ydata-profiling off in this process and
the processes it starts (:func:`coincast.patches.telemetry_off`; a variable already set is left alone).
"""
from __future__ import annotations

from coincast import compat
from coincast.patches import telemetry_off

__version__ = "0.1.0"

telemetry_off()  # before anything imports ploomber, mlflow, dvc or ydata_profiling: offline hosts hang on them
compat.install()  # model versions registered before the layers name the old module paths

__all__ = ["extract_data", "validate_data", "transform_data", "__version__"]


def __getattr__(name: str):  # lazy: importing coincast stays cheap for the CLI
    if name == "extract_data":
        from coincast.data.extract import extract_data

        return extract_data
    if name == "validate_data":
        from coincast.data.validation import validate_data

        return validate_data
    if name == "transform_data":
        from coincast.data.features import transform_data

        return transform_data
    raise AttributeError(f"module 'coincast' has no attribute {name!r}")

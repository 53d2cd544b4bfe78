"""MLflow tracking and model registry: one run per coin per build, a champion per coin.

* :mod:`~coincast.registry.tracking`: the store (``configure``, ``MLFLOW_TRACKING_URI`` or
  ``<root>/mlflow.db``), the write lock, one run per build (``log_build``) and the live run (``log_live``).
* :mod:`~coincast.registry.promotion`: the promotion rule, pure (``noise_tests``: the Diebold–Mariano tests;
  ``decide`` → a ``Decision``; ``explain``, ``record``).
* :mod:`~coincast.registry.versions`: registered models, versions, tags, aliases; ``promote``; loading the
  champion or the version in force at an hour.
* :mod:`~coincast.registry.pyfunc`: the MLflow pyfunc a version stores (``mlflow models serve`` runs it).
* :mod:`~coincast.registry.sqlite_template`: a new local sqlite store, copied from an empty one (no migrations).

Imports point one way: tracking (which seeds new stores with sqlite_template) and promotion know nothing of
each other; versions uses both and pyfunc.
"""
from coincast.registry.promotion import Decision, Rule, candidates, decide, explain, noise_tests, pick_challenger, record
from coincast.registry.pyfunc import CoincastPyfunc
from coincast.registry.tracking import (
    clean_metrics,
    configure,
    flatten_params,
    log_build,
    log_live,
    redact_uri,
    tracking_uri,
    write_lock,
)
from coincast.registry.versions import (
    SERIES_KEYS,
    cannot_serve,
    champion_info,
    champion_versions,
    current_champion,
    in_force_at,
    last_training,
    load_champion,
    load_version,
    load_version_in_force,
    promote,
    registered_name,
    series_differs,
    series_label,
    version_in_force,
)

__all__ = [
    "SERIES_KEYS", "CoincastPyfunc", "cannot_serve", "Decision", "Rule", "candidates", "champion_info",
    "champion_versions", "clean_metrics", "configure", "current_champion", "decide", "explain", "flatten_params",
    "in_force_at", "last_training", "load_champion", "load_version", "load_version_in_force", "log_build", "log_live",
    "noise_tests", "pick_challenger", "promote", "record", "redact_uri", "registered_name", "series_differs",
    "series_label", "tracking_uri", "version_in_force", "write_lock",
]

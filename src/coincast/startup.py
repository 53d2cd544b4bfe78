"""Process start-up for pipeline runs: import what a run needs up front, and keep the collector off it.

Measured with ``gc.callbacks`` on one hourly tick (2 shared cores): CPython's cyclic garbage collector took
~1.25 s of a ~7 s tick, 0.65 s while the modules were being imported (each full collection walks every object
imported so far, so the cost grows with the import graph) and 0.6 s during the run walking them again. The same
plain-script run spent ~0.7 s. Nothing an import creates is garbage: modules, classes and functions live as long
as the process. :func:`preload` imports with the collector off and then moves everything alive into the
permanent generation (``gc.freeze``), CPython's documented recipe for long-lived start-up state (and for forking
workers without copy-on-write of those objects). Garbage made afterwards is collected as usual.
"""
from __future__ import annotations

import gc
import importlib
import logging
import sys
from typing import Iterable

logger = logging.getLogger(__name__)

#: What the notebooks (and bench/plain.py, the same computation as a plain script) import, plus MLflow's sqlite
#: stores (~1 s of imports and ORM mapping on first use). tests/test_packaging.py checks it covers every notebook.
PIPELINE_MODULES = ("coincast.backtest", "coincast.display", "coincast.extract", "coincast.features",
                    "coincast.figures", "coincast.gate", "coincast.forecast", "coincast.live", "coincast.profiling",
                    "coincast.publish", "coincast.registry", "coincast.training", "coincast.validation",
                    "mlflow.store.tracking.sqlalchemy_store", "mlflow.store.model_registry.sqlalchemy_store")


def preload(names: Iterable[str]) -> list[str]:
    """Import ``names`` with the cyclic collector off, then freeze what is alive; returns the newly imported.

    Nothing happens (no freeze) when all are imported already: a process that builds many times (a replay)
    freezes once, so garbage from earlier builds is never frozen. MLflow's ORM classes are mapped here too
    when its stores are among ``names`` (SQLAlchemy would do it on the first query). The collector's state
    is restored even if an import fails."""
    missing = [name for name in names if name not in sys.modules]
    if not missing:
        return []
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for name in missing:
            importlib.import_module(name)
        if any(name.startswith("mlflow.store.") for name in missing):
            from sqlalchemy.orm import configure_mappers

            configure_mappers()
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
    logger.debug("preloaded %d modules, %d objects frozen", len(missing), gc.get_freeze_count())
    return missing

"""The module paths of coincast before its layers (``coincast.serving`` ... now ``coincast.forecasting.serving``).

A registered model version pickles its forecaster with cloudpickle, which stores the classes of an installed
package by their module path. Versions registered by an older coincast name the flat paths; :func:`install` (run
by ``import coincast``) makes those names import the moved modules, so such a registry still loads.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType
from typing import Any

#: old path -> today's (only modules whose classes end up in pickled model versions)
MOVED = {
    "coincast.serving": "coincast.forecasting.serving",
    "coincast.calibration": "coincast.forecasting.calibration",
    "coincast.backtest": "coincast.forecasting.backtest",
    "coincast.models": "coincast.forecasting.models",
    "coincast.models.base": "coincast.forecasting.models.base",
    "coincast.models.baselines": "coincast.forecasting.models.baselines",
    "coincast.models.prophet_models": "coincast.forecasting.models.prophet_models",
}


class OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old path as the moved module itself (one module object under both names)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec: Any) -> ModuleType:
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module: ModuleType) -> None:  # already executed under its own name
        return None


def install() -> None:
    """Put the finder first, once: an old package's submodule would otherwise be found again on the moved
    package's ``__path__`` and loaded a second time, as a different module."""
    if not any(isinstance(f, OldPaths) for f in sys.meta_path):
        sys.meta_path.insert(0, OldPaths())

"""ploomber-engine without matplotlib at start-up: ~0.6 s off every in-process build (the hourly tick).

ploomber-engine 0.0.33 (its repository is archived: no fix will come) loads matplotlib twice over before any
notebook runs: ``ploomber_engine.profiling`` imports ``matplotlib.pyplot`` when the package is imported (for a
memory plot coincast never asks for; Ploomber and papermill's engine plugins import the package), and every
in-process notebook shell calls ``enable_matplotlib("inline")``, which imports pyplot and the inline backend.
coincast's notebooks draw with plotly, so the tick paid ~0.5 s of pyplot import for nothing.

:func:`lighten` makes both lazy, the way ipykernel does it for Jupyter kernels: matplotlib's backend is named in
``MPLBACKEND`` and ``matplotlib_inline`` wires itself to the running shell when a notebook first imports pyplot.
A notebook that plots still gets its figures inline (tests/test_engine.py runs one).
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from typing import Any

logger = logging.getLogger(__name__)

#: The ploomber-engine release whose internals this module knows; any other version is left untouched.
KNOWN_VERSION = "0.0.33"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


class _LazyPyplot:
    """Stands in for ``ploomber_engine.profiling.plt``: imports pyplot when a memory plot is drawn."""

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module("matplotlib.pyplot"), name)


def lighten() -> bool:
    """Import ploomber-engine without pyplot and defer each shell's inline-matplotlib set-up until a notebook
    imports matplotlib. Idempotent; call it before anything imports ploomber. False if it did not apply
    (matplotlib already imported, or another ploomber-engine version)."""
    engine = sys.modules.get("ploomber_engine.ipython")
    if engine is not None and getattr(engine.PloomberShell.enable_matplotlib, "_coincast_lazy", False):
        return True
    if "matplotlib" in sys.modules or "ploomber_engine" in sys.modules:
        return False
    from importlib.metadata import version

    if version("ploomber-engine") != KNOWN_VERSION:
        logger.debug("ploomber-engine %s is not %s: left as it is", version("ploomber-engine"), KNOWN_VERSION)
        return False
    sys.modules["matplotlib.pyplot"] = None  # type: ignore[assignment]  # its optional import finds "not installed"
    try:
        profiling = importlib.import_module("ploomber_engine.profiling")
    finally:
        del sys.modules["matplotlib.pyplot"]
    profiling.plt = _LazyPyplot()
    from ploomber_engine.ipython import PloomberShell

    eager_init, eager = PloomberShell.__init__, PloomberShell.enable_matplotlib
    starting = threading.local()

    def __init__(self: Any) -> None:
        starting.shell = True
        try:
            eager_init(self)
        finally:
            starting.shell = False

    def enable_matplotlib(self: Any, gui: str | None = None) -> Any:
        # only the shell's own start-up call is deferred: `%matplotlib inline` in a cell needs the real answer
        if not getattr(starting, "shell", False) or "matplotlib" in sys.modules:
            return eager(self, gui)
        # matplotlib reads MPLBACKEND when first imported; matplotlib_inline then sets up the running shell
        os.environ.setdefault("MPLBACKEND", INLINE_BACKEND)
        return None

    enable_matplotlib._coincast_lazy = True  # type: ignore[attr-defined]
    PloomberShell.__init__ = __init__
    PloomberShell.enable_matplotlib = enable_matplotlib
    return True

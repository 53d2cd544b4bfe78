"""Every change coincast makes to a library's or the interpreter's behaviour, in one place, each with its gain.

- :func:`telemetry_off`: no usage pings (offline hosts hang on them); run when ``coincast`` is imported.
- :func:`lighten_ploomber_engine`: ploomber-engine without matplotlib at start-up (~0.6 s, ~7 % of a tick).
- :func:`release_notebook_shells`: each in-process notebook's IPython shell closed when its notebook ends
  (memory and history threads; a 10-tick replay -19 % CPU, its exit 12 s -> 0.5 s).
- :func:`preload`: the imports with CPython's cyclic garbage collector off, then frozen (~1.1 s, ~14 % of a tick).
- :func:`ydata_patched`: ydata-profiling without its thumbnail histograms (~4.5 s, a third of the report) and
  its stray progress bar.
- :func:`no_tqdm_monitor_thread`: no tqdm monitor thread in a process that forks workers (correctness).
- :func:`same_source_differ`: Ploomber compares a task's unchanged source with itself without normalising it
  (autopep8) first (~0.24 s of every build and ``coincast task`` process, ~5 % of the latter; ~3 % of a tick).
- :func:`pins_trusted`: MLflow logs a model whose requirements are exact pins of this environment without
  scanning every installed distribution to compare them with it (~0.7 s of CPU per training process).

Gains measured on the 2-core machine, shared and busy (a tick: ``coincast hourly`` of a built 1-coin, 90-day
simulated project in a fresh process, 7.9 s CPU median), each with the patch and without it, interleaved; numbers
in docs/performance.md. Dropped as under 5 % of a tick: ``gc.freeze()`` before the process exits (0.2 s, 2.5 %:
the collections at exit walk only what the tick made, since :func:`preload` froze the imports).
"""
from __future__ import annotations

import atexit
import functools
import gc
import importlib
import logging
import os
import sys
import threading
from contextlib import ExitStack, contextmanager
from typing import Any, Iterable, Iterator

logger = logging.getLogger(__name__)

# -- telemetry -----------------------------------------------------------------------------------------------
#: The variables that switch off the usage pings of the libraries coincast runs (values as each expects them).
TELEMETRY_OFF = {
    "PLOOMBER_STATS_ENABLED": "false",
    "PLOOMBER_VERSION_CHECK_DISABLED": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "YDATA_PROFILING_NO_ANALYTICS": "True",  # else a requests.get without timeout on every ProfileReport
}


def telemetry_off() -> None:
    """Set :data:`TELEMETRY_OFF` in this process (and so in every process it starts), unless a variable is set
    already. Must run before ploomber, mlflow, dvc or ydata_profiling is imported: ``coincast/__init__`` does it."""
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)


# -- ploomber-engine: no matplotlib at start-up ---------------------------------------------------------------
#: The ploomber-engine release whose internals :func:`lighten_ploomber_engine` knows; others are left alone.
PLOOMBER_ENGINE_VERSION = "0.0.33"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


class LazyPyplot:
    """Stands in for ``ploomber_engine.profiling.plt``: imports pyplot when a memory plot is drawn."""

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module("matplotlib.pyplot"), name)


def lighten_ploomber_engine() -> bool:
    """ploomber-engine without matplotlib until a notebook draws: 0.57 s CPU per tick (median of 12 interleaved
    fresh-process pairs of the tick's imports and 7 shells; 0.0-0.9 s), ~7 % of a tick.

    ploomber-engine 0.0.33 (archived: no fix will come) imports ``matplotlib.pyplot`` when it is imported (for a
    memory plot coincast never asks for; Ploomber and papermill's engine plug-ins import the package), and each
    in-process notebook shell calls ``enable_matplotlib("inline")``. coincast's notebooks draw with plotly. This
    makes both lazy, the way ipykernel does: ``MPLBACKEND`` names the inline backend, which wires itself to the
    running shell when a notebook first imports pyplot; ``%matplotlib inline`` in a cell still works
    (tests/test_patches.py). Call it before anything imports ploomber; idempotent. False if it did not apply
    (matplotlib or ploomber_engine imported already, or another ploomber-engine version)."""
    engine = sys.modules.get("ploomber_engine.ipython")
    if engine is not None and getattr(engine.PloomberShell.enable_matplotlib, "_coincast_lazy", False):
        return True
    if "matplotlib" in sys.modules or "ploomber_engine" in sys.modules:
        return False
    from importlib.metadata import version

    if version("ploomber-engine") != PLOOMBER_ENGINE_VERSION:
        logger.debug("ploomber-engine %s is not %s: left as it is", version("ploomber-engine"), PLOOMBER_ENGINE_VERSION)
        return False
    sys.modules["matplotlib.pyplot"] = None  # type: ignore[assignment]  # its optional import finds "not installed"
    try:
        profiling = importlib.import_module("ploomber_engine.profiling")
    finally:
        del sys.modules["matplotlib.pyplot"]
    profiling.plt = LazyPyplot()
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
        os.environ.setdefault("MPLBACKEND", INLINE_BACKEND)  # read by matplotlib when first imported
        return None

    enable_matplotlib._coincast_lazy = True  # type: ignore[attr-defined]
    PloomberShell.__init__ = __init__
    PloomberShell.enable_matplotlib = enable_matplotlib
    return True


def release_notebook_shells() -> bool:
    """Close each in-process notebook's IPython shell when its notebook ends, as IPython would at exit.

    ploomber-engine 0.0.33 starts a fresh ``PloomberShell`` per notebook and, when the notebook ends, only drops
    its singleton and the notebook's own variables. Each shell stays registered with ``atexit`` (IPython's
    ``atexit_operations``), which keeps it, its output cache and its history-saving thread alive until the
    process exits, and then runs a full ``gc.collect()`` per shell over everything they kept. A process that
    builds many times (``coincast replay``, a long ``coincast hourly``) grows by 7 shells per tick and its exit
    took 46-53 s after a 25-tick replay. A 10-tick replay of a 1-coin project: 34.4 -> 28.0 s CPU, its exit
    11-13 s -> 0.5 s (2 interleaved pairs, busy 2-core machine). Here the shell's exit operations run when the notebook
    ends (namespaces cleared, history closed, temporary files removed) and are unregistered, and the shell's
    namespace module leaves ``sys.modules["__main__"]`` (IPython's ``restore_sys_module_state``, which
    ploomber-engine never calls: the last shell's namespace stayed reachable from there). Still kept: the one shell
    that matplotlib's inline-backend singleton points to, if a notebook draws with matplotlib (coincast's draw
    with plotly). Call it before the first notebook runs; idempotent. False if ploomber-engine is another version
    (left alone)."""
    from importlib.metadata import version

    if version("ploomber-engine") != PLOOMBER_ENGINE_VERSION:
        return False
    from ploomber_engine.ipython import PloomberClient

    if getattr(PloomberClient.__exit__, "_coincast_release", False):
        return True
    # IPython's completer binds `__main__` when first imported, which the first shell would do while its own
    # namespace stands in sys.modules: imported now, it binds the real one and keeps no shell alive
    importlib.import_module("IPython.core.completer")
    keep_open = PloomberClient.__exit__

    def __exit__(self: Any, *exc: Any) -> Any:
        shell = self._shell
        try:
            return keep_open(self, *exc)
        finally:
            if shell is not None:
                atexit.unregister(shell.atexit_operations)
                # without the full gc.collect() its output cache's flush runs (0.1 s a notebook): the shell is
                # one cycle of garbage, which the collector frees in its own time
                shell.displayhook.do_full_cache = False
                shell.atexit_operations()
                shell.restore_sys_module_state()  # sys.modules["__main__"] back from the shell's namespace

    __exit__._coincast_release = True  # type: ignore[attr-defined]
    PloomberClient.__exit__ = __exit__
    return True


# -- the garbage collector ------------------------------------------------------------------------------------
#: What the notebooks (and bench/plain.py, the same computation as a plain script) import, plus MLflow's sqlite
#: stores (~1 s of imports and ORM mapping on first use). tests/test_packaging.py checks it covers every notebook.
PIPELINE_MODULES = ("coincast.data.extract", "coincast.data.features", "coincast.data.gate", "coincast.data.profiling",
                    "coincast.data.validation", "coincast.display", "coincast.forecasting.backtest",
                    "coincast.forecasting.figures", "coincast.forecasting.forecast", "coincast.operations.live",
                    "coincast.operations.publish", "coincast.operations.training", "coincast.registry",
                    "mlflow.store.tracking.sqlalchemy_store", "mlflow.store.model_registry.sqlalchemy_store")


def preload(names: Iterable[str]) -> list[str]:
    """Import ``names`` with the cyclic collector off, then freeze what is alive; returns the newly imported.
    Garbage collection in a tick: 1.45 s without, 0.29 s with it (``gc.callbacks``; whole tick: -1.2 s CPU, median
    of 8 interleaved pairs), ~14 % of a tick.

    Each full collection walks every object imported so far, so collecting during the imports costs more the
    more is imported; nothing an import creates is garbage (modules, classes and functions live as long as the
    process). ``gc.freeze`` moves it all to the permanent generation: CPython's documented recipe for long-lived
    start-up state (and for forking workers without copy-on-write of those objects); later garbage is collected
    as usual. Nothing happens (no freeze) when all are imported already: a process that builds many times (a
    replay) freezes once, so garbage from earlier builds is never frozen. MLflow's ORM classes are mapped here too
    when its stores are among ``names``. The collector's state is restored even if an import fails."""
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


def no_tqdm_monitor_thread() -> None:
    """tqdm's monitor thread off (tqdm's documented switch, ``monitor_interval = 0``): a process that forks coin
    workers must run no other thread. Correctness, not speed."""
    from tqdm import tqdm

    tqdm.monitor_interval = 0


# -- Ploomber: an unchanged source is not normalised to be compared with itself ----------------------------------
def same_source_differ() -> Any:
    """A Ploomber ``CodeDiffer`` (a DAG's public ``differ``) that answers "unchanged" for a task whose stored source
    is the very text it has now, without normalising both copies first.

    Ploomber's ``CodeDiffer.is_different`` runs each Python source through ``autopep8.fix_code`` (after a parso
    parse) before comparing, even when the two texts are equal; the only Python source in the pipeline is the
    publish task's function, so every build and every ``coincast task`` process (which renders the whole DAG) pays
    two normalisations, most of it autopep8's first call in the process. Equal texts normalise equally, so the
    answer is the same: outdated only if the parameters differ (compared exactly as Ploomber does). Different texts
    still go through Ploomber's own comparison. Measured 2026-12-03 (busy machine, 5 interleaved fresh-process
    pairs): rendering a built 1-coin project's DAG 0.25-0.40 -> 0.08-0.10 s CPU, ~6 % of a no-op build (3.8 s),
    ~5 % of a ``coincast task`` process (Airflow's unit of work), ~3 % of a fresh-process tick."""
    from ploomber.codediffer import CodeDiffer
    from ploomber.products.serializeparams import remove_non_serializable_top_keys

    class SameSourceDiffer(CodeDiffer):
        def is_different(self, a, b, a_params, b_params, extension=None):  # type: ignore[override]
            if a is None or a != b:
                return super().is_different(a, b, a_params, b_params, extension=extension)
            outdated = a_params is not None and b_params is not None and (
                remove_non_serializable_top_keys(a_params) != remove_non_serializable_top_keys(b_params))
            return outdated, self.get_diff(a, b, normalize=False)

    return SameSourceDiffer()


# -- MLflow: a model's exact pins are not checked against the environment they were read from --------------------
_mlflow_lock = threading.Lock()
#: The MLflow 3.17 modules that compare a model's requirements with the environment (each imports the check by name).
MLFLOW_PIN_CHECKS = ("mlflow.utils.environment", "mlflow.pyfunc")


@contextmanager
def pins_trusted() -> Iterator[None]:
    """``mlflow.pyfunc.log_model`` without its comparison of the model's requirements with the installed packages.

    MLflow 3.17 compares every requirement of a model it logs with what is installed, and warns on a mismatch; the
    first comparison in a process maps modules to distributions by reading the metadata of every installed one
    (``importlib_metadata.packages_distributions``: 0.74 s here, 321 distributions), which a training process pays
    once per registration. coincast's requirements are ``name==version`` read from this very environment
    (:func:`coincast.registry.pyfunc.pip_requirements`): the comparison cannot fail. Loading keeps its own check
    of the pins against the loading environment (:func:`coincast.registry.pyfunc.requirement_mismatches`).
    MLflow compares twice: when it writes the model's environment, and when it loads the model back to check the
    input example. Restored on exit; serialised with a lock (module attributes). No-op where MLflow moved it."""
    name = "warn_dependency_requirement_mismatches"
    with _mlflow_lock, ExitStack() as stack:
        for module in (importlib.import_module(m) for m in MLFLOW_PIN_CHECKS):
            if hasattr(module, name):
                stack.enter_context(_attribute(module, name, lambda requirements: None))
        yield


# -- ydata-profiling ----------------------------------------------------------------------------------------
#: Modules of ydata-profiling 4.18 that draw the thumbnail histogram (each imports ``mini_histogram`` by name).
MINI_HISTOGRAM_MODULES = (
    "ydata_profiling.report.structure.variables.render_real",
    "ydata_profiling.report.structure.variables.render_count",
    "ydata_profiling.report.structure.variables.render_date",
)
#: ydata 4.18 wraps its per-column loop in a tqdm bar that ignores ``progress_bar=False``.
LEAKY_TQDM_MODULE = "ydata_profiling.model.pandas.summary_pandas"

_ydata_lock = threading.Lock()


def no_mini_histogram(*args: Any, **kwargs: Any) -> None:
    return None  # ydata renders None as an empty slot (report.utils.image_or_empty)


@contextmanager
def ydata_patched(drop_mini_histograms: bool) -> Iterator[None]:
    """ydata-profiling 4.18 with what it cannot configure switched off; restored on exit. Serialised with a lock
    (the patches are module attributes).

    - its per-column tqdm bar, which ignores ``progress_bar=False``: silenced (clean executed notebooks; no
      speed gain);
    - with ``drop_mini_histograms``: the thumbnail histogram drawn beside each numeric variable's summary (each
      variable keeps its full histogram under "More details"). The fast report of 2,160 rows x 36 columns: 12.4
      -> 7.9 s CPU (median of 5 interleaved pairs), 1.77 -> 1.36 MB. Every build profiles; a tick once a day,
      and on that tick this is ~4.5 s (0.2 s a tick averaged over the day)."""
    with _ydata_lock, ExitStack() as stack:
        summary = importlib.import_module(LEAKY_TQDM_MODULE)
        if hasattr(summary, "tqdm"):
            stack.enter_context(_attribute(summary, "tqdm", functools.partial(summary.tqdm, disable=True)))
        if drop_mini_histograms:
            for name in MINI_HISTOGRAM_MODULES:
                module = importlib.import_module(name)
                if hasattr(module, "mini_histogram"):
                    stack.enter_context(_attribute(module, "mini_histogram", no_mini_histogram))
        yield


@contextmanager
def _attribute(obj: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, original)

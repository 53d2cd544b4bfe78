"""One coin's build: pipeline.yaml's Ploomber DAG for a coin -> a typed :class:`BuildResult`.

``coincast build`` (:mod:`coincast.cli`), the hourly tick and the replay (:mod:`coincast.operations.hourly`) build coins
here. A coin whose build fails does not stop the others. The console gets one line per task as it completes
(:mod:`coincast.operations.console`); Ploomber's and papermill's messages, tracebacks included, go to
``<log_dir>/build.log`` (and to the console too with ``coincast build -v``).
"""
from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence, TextIO

from coincast.operations import console
from coincast.patches import (PIPELINE_MODULES, lighten_ploomber_engine, preload, release_notebook_shells,
                              same_source_differ)

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

BUILD_LOG = "build.log"
#: The task whose failed report is the gate's verdict, and the task stamping the build it judges.
GATE_TASK, EXTRACT_TASK = "validate", "extract"
#: What a build imports before its first notebook runs (tests/test_packaging.py checks it covers the notebooks).
PRELOAD = ("ploomber.spec", *PIPELINE_MODULES)


@dataclass(frozen=True)
class NextHour:
    """The champion's forecast for the first hour ahead, with its 80 % interval."""
    target_time: pd.Timestamp
    forecast: float
    lower_80: float
    upper_80: float


@dataclass(frozen=True)
class BuildResult:
    """What one coin's build did: the tasks it ran, where it stopped and why, and what it produced."""
    coin: str
    built: tuple[str, ...] = ()          # tasks run by this build, in order (none: everything up to date)
    tasks: int = 0                       # tasks in the coin's DAG
    failed_task: str | None = None
    gate_failure: str | None = None      # the gate's one line when validation stopped the build
    gate_passed: bool | None = None      # None: the gate did not judge this build's data
    error: str | None = None             # the root cause (one line) of any other failure
    log: str | None = None               # where the details are
    champion: str | None = None          # e.g. "naive v3" (a successful build)
    next_hour: NextHour | None = None

    @property
    def ok(self) -> bool:
        return self.gate_failure is None and self.error is None

    @property
    def message(self) -> str:
        """One line for a person: ``ok (ran: ...)``, the gate's verdict, or ``build failed: <cause>``."""
        if self.gate_failure:
            return self.gate_failure
        if self.error:
            return f"build failed: {self.error}" + (f" (details in {self.log})" if self.log else "")
        return "ok (ran: " + (", ".join(self.built) if self.built else "nothing, up to date") + ")"


# --- the root cause of a failure: the one place that reads an exception's text ---------------------------
_ERROR_LINE = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception|Failed|Timeout|Invalid|Interrupt|Exit)): (.+)$")
#: lines of Ploomber's that end its error text and say nothing of the cause
_NOT_A_CAUSE = ("Need help?",)
_WRAPPERS = ("TaskBuildError", "DAGBuildError", "PapermillExecutionError", "TaskRenderError", "DAGRenderError")


def root_cause(message: str) -> str:
    """The error a person can act on in a Ploomber build error's text: the notebook's last exception (a
    chained traceback lists the low-level cause first, e.g. ``TimeoutError: timed out``, and the error
    coincast raised from it last), not Ploomber's own wrappers after it."""
    found: list[str] = []
    wrapper = None  # Ploomber's own line, when nothing under it names a cause (e.g. an on_render hook's error)
    for line in message.splitlines():
        m = _ERROR_LINE.match(line.strip())
        if not m:
            continue
        if m.group(1) in _WRAPPERS:
            if found:
                break  # the notebook's traceback ended: Ploomber's wrapper follows it
            wrapper = wrapper or f"{m.group(1)}: {m.group(2)}"[:400]
            continue
        found.append(f"{m.group(1)}: {m.group(2)}"[:400])
    if found or wrapper:
        return (found or [wrapper])[-1]
    lines = [line.strip() for line in message.splitlines()
             if line.strip() and not line.strip().startswith(_NOT_A_CAUSE)]
    return lines[-1][:400] if lines else "unknown error"


# --- the environment of a build -------------------------------------------------------------------------
def real_clock(env: Mapping[str, Any]) -> bool:
    """True when the env's clock is the real one (no replay_now; not a replay): only then is ``build_hour`` stamped."""
    return env.get("replay_now") is None and env.get("source") != "replay"


def with_build_hour(env: dict[str, Any], now: Any = None) -> dict[str, Any]:
    """With a real clock, stamp the current UTC hour into ``build_hour``: Ploomber reruns tasks whose params
    changed, so each new hour refetches instead of being a no-op."""
    if not real_clock(env) or env.get("build_hour") is not None:
        return env
    import pandas as pd

    hour = (pd.Timestamp(now) if now is not None else pd.Timestamp.now(tz="UTC")).floor("h")
    return {**env, "build_hour": hour.isoformat()}


def gate_failed_last(project: Path, coin: str) -> bool:
    """True when the coin's last validation report (products/<coin>/validation.json) says the gate failed."""
    from coincast.files import read_json

    try:
        return read_json(project / "products" / coin / "validation.json").get("passed") is False
    except (OSError, ValueError, AttributeError):
        return False


def coin_env(env: Mapping[str, Any], coin: str, project: Path, refetch: bool = True) -> dict[str, Any]:
    """The env of one coin's DAG. After a gate failure a real-clock build fetches again at once, not at the
    next hour (a quarantined batch's hours are holes, refetched like any other): a healed API repairs it.
    ``refetch=False`` (one task of a run, :func:`build_coin`'s ``task``): every task of the run must render the
    same extract params, so the run's own stamp decides when to refetch."""
    out = {k: v for k, v in env.items() if k not in ("coins", "coin_jobs")}
    out["coin"] = coin
    if refetch and out.get("build_hour") is not None and gate_failed_last(project, coin):
        import pandas as pd

        out["build_hour"] = pd.Timestamp.now(tz="UTC").floor("s").isoformat()
    return out


_LOGGERS = ("ploomber", "papermill", "coincast.operations.build")


def log_target(env: Mapping[str, Any]) -> Path | None:
    """``<log_dir>/build.log``, or None when a caller (a tick) already sends Ploomber's messages to its own log."""
    if any(not isinstance(h, logging.NullHandler) for h in logging.getLogger(_LOGGERS[0]).handlers):
        return None
    return Path(str(env.get("log_dir") or "logs")) / BUILD_LOG


@contextlib.contextmanager
def build_log(env: Mapping[str, Any], verbose: bool = False) -> Iterator[str | None]:
    """Ploomber's and papermill's messages (task tracebacks included) go to ``<log_dir>/build.log``, and with
    ``verbose`` to stderr too; yields the log's path, or None when a caller (a tick) already sends them to its
    own log file."""
    path = log_target(env)
    if path is None:
        yield None
        return
    loggers = [logging.getLogger(n) for n in _LOGGERS]
    path.parent.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.FileHandler(path, encoding="utf-8")]
    if verbose:
        handlers.append(logging.StreamHandler(sys.stderr))
    saved = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        for handler in handlers:
            handler.setFormatter(formatter)
            lg.addHandler(handler)
        lg.setLevel(logging.INFO)
        lg.propagate = False
    try:
        yield str(path)
    finally:
        for lg, (level, propagate) in zip(loggers, saved):
            for handler in handlers:
                lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate
        for handler in handlers:
            handler.close()


def record_outcome(folder: Path, result: BuildResult, env: Mapping[str, Any]) -> None:
    """The dashboard's record of a failed build (products/<coin>/failed.json, removed when the coin builds
    again); never raises."""
    from coincast.operations.publish import FAILURE, record_failure

    reason = None if result.ok else result.message
    try:
        if reason is not None or (folder / FAILURE).exists():
            record_failure(folder, reason, env.get("source"), env.get("replay_now") or env.get("build_hour"))
    except OSError as exc:
        logger.warning("could not record the build's outcome in %s: %s", folder, exc)


# --- reading the DAG after it ran -----------------------------------------------------------------------
def report_progress(dag: Any, coin: str, out: TextIO) -> None:
    """Print :func:`coincast.operations.console.progress_line` as each task of ``dag`` finishes or fails (its seconds:
    since the previous line; the first also counts Ploomber's render)."""
    last = [time.perf_counter()]

    def line(task: Any, ok: bool) -> None:
        now = time.perf_counter()
        try:
            print(console.progress_line(coin, task.name, ok, now - last[0]), file=out, flush=True)
        except (OSError, ValueError):  # a closed console never fails a task
            pass
        last[0] = now

    for name in dag:
        dag[name].on_finish = lambda task: line(task, True)
        dag[name].on_failure = lambda task: line(task, False)


def gate_verdict(dag: Any) -> tuple[bool | None, str | None]:
    """(passed, reason) of the gate in this build: from the gate task's status and its report, when that report
    judged this build's extraction (their build ids agree); (None, None) when the gate did not judge it."""
    from ploomber.constants import TaskStatus

    from coincast.files import read_json
    from coincast.operations.publish import gate_reason

    if GATE_TASK not in dag:
        return None, None
    task = dag[GATE_TASK]
    if task.exec_status in (TaskStatus.Executed, TaskStatus.Skipped):
        return True, None
    if task.exec_status != TaskStatus.Errored:
        return None, None
    try:
        report = read_json(task.product["report"])
        same_build = report.get("build_id") == read_json(dag[EXTRACT_TASK].product["meta"]).get("build_id")
    except (KeyError, OSError, ValueError, AttributeError):
        return None, None
    reason = gate_reason(report) if same_build else None
    return (False, reason) if reason else (None, None)


def read_outlook(dag: Any) -> tuple[str | None, NextHour | None]:
    """The champion (registry.json of the train task) and its next-hour forecast (the forecast task's data)."""
    from coincast.files import read_frame, read_json

    champion, next_hour = None, None
    try:
        found = read_json(dag["train"].product["registry"]).get("champion") or {}
        champion = f"{found['model_name']} v{found['version']}"
    except (KeyError, OSError, ValueError, AttributeError, TypeError):
        pass
    try:
        first = read_frame(dag["forecast"].product["data"]).sort_values("horizon").iloc[0]
        next_hour = NextHour(first["target_time"], float(first["forecast"]), float(first["lower_80"]),
                             float(first["upper_80"]))
    except (KeyError, OSError, ValueError, IndexError):
        pass
    return champion, next_hour


def outcome(dag: Any, coin: str, log: str | None, failure: BaseException | None = None) -> BuildResult:
    """The result of a DAG that ran (``failure``: the DAGBuildError it raised), from its tasks' status."""
    from ploomber.constants import TaskStatus

    names = list(dag)
    built = tuple(n for n in names if dag[n].exec_status == TaskStatus.Executed)
    failed = next((n for n in names if dag[n].exec_status == TaskStatus.Errored), None)
    passed, reason = gate_verdict(dag)
    common = {"coin": coin, "built": built, "tasks": len(names), "failed_task": failed, "gate_passed": passed,
              "log": log}
    if failure is not None or failed is not None:
        if reason:
            return BuildResult(**common, gate_failure=reason)
        return BuildResult(**common, error=root_cause(str(failure) if failure is not None else "unknown error"))
    champion, next_hour = read_outlook(dag)
    return BuildResult(**common, champion=champion, next_hour=next_hour)


# --- building ----------------------------------------------------------------------------------------------
def run_dag(dag: Any, task: str | None, force: bool) -> None:
    """Build the whole DAG, or only its task ``task`` unless it is up to date (its upstream tasks must be: Ploomber
    refuses otherwise, naming them). Raises Ploomber's DAGBuildError / TaskBuildError when a task fails."""
    from ploomber.constants import TaskStatus

    if task is None:
        dag.build(force=force, show_progress=False)
        return
    if task not in dag:
        raise ValueError(f"no task {task!r} in the pipeline (its tasks: {', '.join(dag)})")
    dag.render(show_progress=False)  # upstream tasks as they are: up to date or not (force is for this task)
    if force or dag[task].exec_status != TaskStatus.Skipped:
        dag[task].build(force=force)


def preload_when_work(dag: Any, names: Sequence[str]) -> None:
    """Chain onto the DAG's ``on_render`` hook (pipeline.yaml's settings check): once it is rendered, import
    ``names`` (:func:`coincast.patches.preload`) if any task will run. A no-op build imports none of them: ~2.5 s of
    CPU less (bench/speed.py's no-op `coincast build`)."""
    from ploomber.constants import TaskStatus

    hook = dag.on_render

    def on_render(dag: Any) -> None:
        if hook is not None:
            hook(dag)
        if any(t.exec_status != TaskStatus.Skipped for t in dag.values()):
            preload(names)

    dag.on_render = on_render


def load_dag(pipeline: Path, cenv: Mapping[str, Any]) -> Any:
    """pipeline.yaml's DAG for one coin's env (:func:`coin_env`), not rendered yet; an unchanged task source is not
    normalised to be compared with itself (:func:`coincast.patches.same_source_differ`)."""
    from ploomber.spec import DAGSpec

    dag = DAGSpec(str(pipeline), env=dict(cenv)).to_dag()
    dag.differ = same_source_differ()
    return dag


def coin_lock_path(env: Mapping[str, Any], coin: str, project: Path) -> Path:
    """``build-<coin>.lock`` beside the tick's ``lock_file``: held while one build of the coin runs."""
    from coincast.config import resolve_root

    folder = Path(resolve_root({"lock_file": env.get("lock_file") or "logs/hourly.lock"}, project)["lock_file"]).parent
    return (folder if folder.is_absolute() else project / folder) / f"build-{coin}.lock"


@contextlib.contextmanager
def coin_lock(path: Path, coin: str, out: TextIO) -> Iterator[None]:
    """Hold the coin's build lock, waiting (after saying so in one line on ``out``) while another build of the coin
    holds it: a manual ``coincast build`` during a tick, or a task of a scheduler's run. The OS releases it if
    the holder dies."""
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"coincast: {coin}: waiting for another build of {coin} to finish (lock {path})", file=out, flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def build_coin(env: Mapping[str, Any], coin: str, pipeline: Path, force: bool = False, verbose: bool = False,
               out: TextIO | None = None, task: str | None = None, preload_names: Sequence[str] = ()) -> BuildResult:
    """Build the pipeline's DAG for one coin, a line per task on ``out`` (default stdout); with ``task``, only that
    task (one step of a scheduler's run, e.g. Airflow's: ``coincast task``); ``preload_names`` imported once the
    DAG is rendered with work to do (:func:`preload_when_work`). One build of a coin at a time (:func:`coin_lock`).
    Never raises."""
    from coincast.config import is_coin_id

    out = out or sys.stdout
    if not is_coin_id(coin):  # it names folders and the lock file: never a path
        return BuildResult(str(coin), error=f"not a CoinGecko coin id: {coin!r} (lowercase letters, digits, '-', '.', '_')")
    with coin_lock(coin_lock_path(env, coin, pipeline.parent), coin, out):
        return _build_coin(env, coin, pipeline, force, verbose, out, task, preload_names)


def _build_coin(env: Mapping[str, Any], coin: str, pipeline: Path, force: bool, verbose: bool, out: TextIO,
                task: str | None, preload_names: Sequence[str]) -> BuildResult:
    from ploomber.exceptions import DAGBuildError, TaskBuildError

    cenv = coin_env(env, coin, pipeline.parent, refetch=task is None)
    with build_log(env, verbose) as log, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        console.ignore_known_warnings()
        try:
            dag = load_dag(pipeline, cenv)
            if preload_names:
                preload_when_work(dag, preload_names)
            console.quiet_notebooks(dag)
            report_progress(dag, coin, out)
            try:
                run_dag(dag, task, force)
                result = outcome(dag, coin, log)
            except (DAGBuildError, TaskBuildError) as exc:
                logger.error("%s: build failed:\n%s", coin, exc)
                result = outcome(dag, coin, log, exc)
        except Exception as exc:  # rendering errors etc.: one coin's failure never stops the others
            logger.error("%s: build failed: %s: %s", coin, type(exc).__name__, exc)
            result = BuildResult(coin, error=root_cause(f"{type(exc).__name__}: {exc}"), log=log)
        for w in caught:
            logger.warning("%s: %s", coin, str(w.message).strip())
        if task is None or not result.ok or task == list(dag)[-1]:  # a run's failure, or its last task's success
            record_outcome(pipeline.parent / "products" / coin, result, cenv)
    if result.ok and not result.built:
        print(console.up_to_date_line(coin), file=out, flush=True)
    return result


def _build_coin_captured(env: Mapping[str, Any], coin: str, pipeline: Path, force: bool,
                         verbose: bool) -> tuple[BuildResult, str]:
    """build_coin in a worker process: its output comes back with the result, so coins built side by side
    print whole, one after another, and a quiet caller (a tick) can capture it."""
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        result = build_coin(env, coin, pipeline, force, verbose)
    return result, sink.getvalue()


def deferred_preload(env: Mapping[str, Any], jobs: int = 1) -> tuple[str, ...]:
    """What a build imports only once a coin's DAG has work (:func:`preload_when_work`): the notebooks' modules,
    when they run in this process (ploomber-engine, one coin at a time). Nothing otherwise: forked workers need
    them before the fork, and papermill's kernels import their own."""
    return PIPELINE_MODULES if env.get("notebook_executor") == "ploomber-engine" and jobs == 1 else ()


def preload_build(env: Mapping[str, Any], jobs: int = 1, one_task: bool = False, defer: bool = False) -> list[str]:
    """Import what the builds need up front, the collector off (coincast.patches): everything the notebooks
    import when they run in this process (ploomber-engine) or in workers forked from it, else Ploomber only
    (papermill's kernels import the rest themselves, and ``one_task``'s notebook what it needs). ``defer``: the
    notebooks' modules are left to :func:`preload_when_work` (:func:`deferred_preload`)."""

    lighten_ploomber_engine()  # before Ploomber is imported: no matplotlib unless a notebook draws with it
    in_process = env.get("notebook_executor") == "ploomber-engine"
    if in_process:
        release_notebook_shells()  # each notebook's IPython shell closed when it ends, not at the process's exit
    names = PRELOAD if (in_process and not one_task) or jobs > 1 else ("ploomber.spec",)
    if defer:
        names = tuple(name for name in names if name not in deferred_preload(env, jobs))
    return preload((*names, "ploomber_engine.execute", "IPython") if in_process else names)


def build(env: dict[str, Any], pipeline: Path, force: bool = False, verbose: bool = False) -> dict[str, BuildResult]:
    """Build the pipeline for every coin; returns {coin: BuildResult}.

    ``coin_jobs`` > 1 builds that many coins at a time, each coin's DAG in a worker process forked from
    this one when it runs no other thread (imports shared; the caller's lock is inherited, so an overlapping
    tick still finds it held), else started by a fork server (:mod:`coincast.processes`). Each coin's DAG
    stays one Ploomber DAG run by the executor in pipeline.yaml; MLflow writes are serialized
    (:func:`coincast.registry.write_lock`)."""
    coins = list(env["coins"])
    jobs = max(1, min(int(env.get("coin_jobs") or 1), len(coins)))
    preload_build(env, jobs, defer=True)
    log = log_target(env)
    print(f"coincast: building {len(coins)} coin{'s' if len(coins) > 1 else ''}"
          + (f", {jobs} at a time" if jobs > 1 else "") + f" ({env['source']})"
          + (f"; details in {log}" if log else ""), flush=True)
    if jobs == 1:
        later = deferred_preload(env, jobs)
        return {coin: build_coin(env, coin, pipeline, force, verbose, preload_names=later) for coin in coins}
    from concurrent.futures import ProcessPoolExecutor

    from coincast.processes import die_with_parent, pool_context

    results: dict[str, BuildResult] = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=pool_context(PRELOAD), initializer=die_with_parent) as pool:
        futures = {coin: pool.submit(_build_coin_captured, env, coin, pipeline, force, verbose) for coin in coins}
        for coin, future in futures.items():
            try:
                results[coin], output = future.result()
            except Exception as exc:  # the worker died (killed, out of memory): that coin failed
                results[coin], output = BuildResult(coin, error=f"worker process died ({type(exc).__name__}: "
                                                                f"{exc})"), ""
            sys.stdout.write(output)
            sys.stdout.flush()
    return results

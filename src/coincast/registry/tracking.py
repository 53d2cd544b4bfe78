"""Where MLflow writes, and what a build and an hourly tick record there.

* :func:`configure` picks the project's store — ``MLFLOW_TRACKING_URI`` (e.g. DagsHub) or a local
  ``sqlite:///<root>/mlflow.db`` with artifacts under ``<root>/mlartifacts`` — and makes sure the experiment
  exists. It remembers the store for this process (:func:`store_uri`); it does not touch MLflow's process-wide
  tracking URI: every call goes through an explicit ``MlflowClient(uri)`` (:func:`client`), and the few that
  need MLflow's fluent API run inside :func:`fluent`.
* :func:`log_build` records a build as one run: params, metrics such as ``prophet_seasonal.h1.rel_mae``,
  the rendered notebooks and other artifacts, tags (coin, source, data_through, git commit).
* :func:`log_live` appends an hourly tick's live metrics to the coin's one long-running "live" run.
* :func:`write_lock` serializes writes to a local sqlite store.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import posixpath
import re
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import mlflow
from filelock import FileLock
from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from coincast.registry import sqlite_template
from coincast.timeseries import to_utc, utc_now

logger = logging.getLogger(__name__)

EXPERIMENT = "coincast"
LIVE_RUN_TAG = "coincast.live_coin"
LIVE_SERIES_TAG = "coincast.live_series"  # the data series of a live run (source/series/currency)

# MLflow limits (mlflow.utils.validation)
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_KEY = 250
TRUNCATED = "...[truncated]"

#: the store configure() chose for this process: {"uri": ..., "experiment_id": ...}
_configured: dict[str, str] = {}


# --- where MLflow writes ----------------------------------------------------------------------------
def _default_uri(root: Path) -> str:
    return "sqlite:///" + Path(root).expanduser().resolve().as_posix() + "/mlflow.db"


def tracking_uri(root: Path) -> str:
    """``MLFLOW_TRACKING_URI`` if the environment sets it, else ``sqlite:///<root>/mlflow.db`` (absolute)."""
    return os.environ.get("MLFLOW_TRACKING_URI", "").strip() or _default_uri(root)


def _is_local(uri: str) -> bool:
    """Whether the store is a file on this machine (sqlite, ``file:``, a bare path)."""
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def redact_uri(uri: str) -> str:
    """A URI fit for a log line: no user:password@ part, no query string."""
    return re.sub(r"//[^/@]*@", "//***@", uri).split("?", 1)[0]


def configure(root: Path, experiment: str = EXPERIMENT) -> str:
    """Use the project's tracking store (:func:`tracking_uri`) for this process and make sure ``experiment``
    exists there; returns its id.

    With a local store (the sqlite default) the experiment's artifacts live in ``<root>/mlartifacts``, so
    nothing lands in the process's working directory; a remote server keeps its own artifact store.
    """
    root = Path(root).expanduser().resolve()
    uri = tracking_uri(root)
    if uri == _default_uri(root):
        root.mkdir(parents=True, exist_ok=True)
    # Coins built side by side (coin_jobs) may open a new sqlite store at the same moment: MLflow creates its
    # tables on first use, which two processes must not do at once. A new one starts as a copy of an empty store.
    with write_lock(uri=uri), quiet_mlflow():
        sqlite_template.seed(uri)
        experiment_id = _ensure_experiment(MlflowClient(uri), root, experiment, _is_local(uri))
    _configured.update(uri=uri, experiment_id=experiment_id)
    logger.info("MLflow experiment %r (id %s) at %s", experiment, experiment_id, redact_uri(uri))
    return experiment_id


def _ensure_experiment(client: MlflowClient, root: Path, experiment: str, local: bool) -> str:
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    location = None
    if local:
        artifacts = root / "mlartifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        location = artifacts.as_uri()
    try:
        return client.create_experiment(experiment, artifact_location=location)
    except MlflowException:  # created concurrently by another coin's build
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise
        return exp.experiment_id


def store_uri(uri: str | None = None) -> str:
    """``uri`` if given, else the store :func:`configure` chose, else MLflow's own default."""
    return uri or _configured.get("uri") or mlflow.get_tracking_uri()


def client(uri: str | None = None) -> MlflowClient:
    """A client of the store :func:`store_uri` names (runs and registry alike)."""
    return MlflowClient(tracking_uri=store_uri(uri))


@contextlib.contextmanager
def fluent(uri: str | None = None) -> Iterator[str]:
    """Point MLflow's process-wide tracking URI at the store for the block, then put back what was there.

    MLflow's fluent API (``mlflow.start_run`` with its default run tags, ``mlflow.pyfunc.log_model`` into the
    active run, ``mlflow.register_model``, ``mlflow.pyfunc.load_model`` of a ``models:/`` URI) has no parameter
    for the store: it reads the global URI (and ``set_tracking_uri`` exports it as ``MLFLOW_TRACKING_URI``, which
    must not outlive the block and look like a user's setting). Everything else uses an explicit client."""
    uri = store_uri(uri)
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        with quiet_mlflow():
            yield uri
    finally:
        mlflow.set_tracking_uri(None)  # also unsets MLFLOW_TRACKING_URI
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """MLflow's own console lines (creating the store's tables, notes while logging a model, "Successfully
    registered model ...") go to coincast's log, not to the console a person reads; its errors still show."""
    mlflow_logger = logging.getLogger("mlflow")
    level = mlflow_logger.level
    mlflow_logger.setLevel(logging.ERROR)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stderr(printed):
            yield
    finally:
        mlflow_logger.setLevel(level)
        if printed.getvalue().strip():
            logger.info("MLflow: %s", printed.getvalue().strip())


def write_lock(timeout: float = 600, uri: str | None = None) -> Any:
    """Hold while writing to a local sqlite store: coins built side by side (``coin_jobs``) register versions,
    move aliases and log live metrics one process at a time, so a version and its aliases are always written
    together and sqlite never answers "database is locked". A server store (``http://``, PostgreSQL)
    serializes on its own: no lock."""
    db = sqlite_template.store_file(store_uri(uri))
    if db is not None:
        return FileLock(f"{db}.lock", timeout=timeout)
    return contextlib.nullcontext()


# --- what MLflow accepts ----------------------------------------------------------------------------
def _key(name: Any) -> str:
    """A param/metric/tag key MLflow accepts: alphanumerics _ - . space /, no empty path segments."""
    key = re.sub(r"[^A-Za-z0-9_\-. /]", "_", str(name)).strip()
    key = re.sub(r"/+", "/", key).strip("/")
    if key and posixpath.normpath(key) != key:
        key = key.replace("/", "_")
    return key[:MAX_KEY] or "_"


def truncate(text: str, limit: int = MAX_TAG_VALUE) -> str:
    """``text`` cut to ``limit`` characters (a tag's by default), ending in ``...[truncated]`` when cut."""
    return text if len(text) <= limit else text[: limit - len(TRUNCATED)] + TRUNCATED


def _param_value(value: Any) -> str:
    if isinstance(value, (dict, list, tuple, set)):
        value = sorted(value, key=str) if isinstance(value, set) else value
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, Path):
        return value.as_posix()
    return str(value)


def flatten_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Params as MLflow stores them: lists and dicts as JSON, at most 6000 characters each."""
    out: dict[str, str] = {}
    for name, value in params.items():
        text = _param_value(value)
        if len(text) > MAX_PARAM_VALUE:
            logger.warning("param %s is %d characters long: truncated to %d (the full value is in params.json)",
                           name, len(text), MAX_PARAM_VALUE)
        out[_key(name)] = truncate(text, MAX_PARAM_VALUE)
    return out


def clean_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Metric names MLflow accepts and finite float values (NaN, inf and non-numbers are skipped)."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            logger.debug("metric %s is not a number (%r): skipped", name, value)
            continue
        if math.isfinite(number):
            out[_key(name)] = number
    return out


def clean_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    """Tag keys MLflow accepts and values cut to its limit; None values are left out."""
    return {_key(k): truncate(str(v)) for k, v in tags.items() if v is not None}


# --- one run per build, one live run per coin ---------------------------------------------------------
def _run_name(coin: str, params: Mapping[str, Any], tags: Mapping[str, Any]) -> str:
    through = tags.get("data_through") or params.get("data_through")
    if through is None:
        stamp = utc_now().strftime("%Y-%m-%dT%H%MZ")
    else:
        try:
            stamp = to_utc(through).strftime("%Y-%m-%dT%H%MZ")
        except (TypeError, ValueError):
            stamp = re.sub(r"[^A-Za-z0-9_.:-]", "_", str(through))
    return f"{coin}-{stamp}"


def log_build(
    coin: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    artifacts: Sequence[Path],
    tags: Mapping[str, Any],
) -> str:
    """Record one coin's build as an MLflow run in the experiment :func:`configure` made; returns the run id.
    Artifacts that do not exist are skipped; directories are logged under their name."""
    run_tags = clean_tags(tags)
    run_tags.setdefault("coin", coin)
    flat = flatten_params(params)
    values = clean_metrics(metrics)
    nested = mlflow.active_run() is not None
    with fluent(), mlflow.start_run(experiment_id=_configured.get("experiment_id"), nested=nested,
                                    run_name=_run_name(coin, params, tags), tags=run_tags) as run:
        if flat:
            mlflow.log_params(flat)
        if values:
            mlflow.log_metrics(values)
        if params:
            mlflow.log_dict(json.loads(json.dumps(dict(params), default=str)), "params.json")
        logged = 0
        for path in map(Path, artifacts):
            if path.is_file():
                mlflow.log_artifact(str(path))
                logged += 1
            elif path.is_dir():
                mlflow.log_artifacts(str(path), artifact_path=path.name)
                logged += 1
            else:
                logger.info("artifact %s does not exist: not logged", path)
        run_id = run.info.run_id
    logger.info("%s: run %s logged (%d params, %d metrics, %d artifacts)", coin, run_id, len(flat),
                len(values), logged)
    return run_id


def log_live(coin: str, metrics: Mapping[str, float], now: Any, tags: Mapping[str, Any], series: str = "") -> str:
    """Append the hourly tick's live metrics to the coin's long-running "live" run of its data ``series``
    (e.g. ``coingecko/api/usd``, as the prediction log is kept per series: one run each, created on first use) in
    the coincast experiment (see :func:`configure`), at step = hours since the epoch of ``now``; ``tags`` (model
    and data version) show the latest values."""
    with write_lock():
        return _log_live(client(), coin, metrics, now, tags, series)


def _log_live(client: MlflowClient, coin: str, metrics: Mapping[str, float], now: Any,
              tags: Mapping[str, Any], series: str = "") -> str:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        raise RuntimeError("MLflow is not configured: call registry.configure(project_root) first")
    wanted = f"tags.`{LIVE_RUN_TAG}` = '{coin}'" + (f" and tags.`{LIVE_SERIES_TAG}` = '{series}'" if series else "")
    found = client.search_runs([experiment.experiment_id], filter_string=wanted, max_results=1)
    if found:
        run_id = found[0].info.run_id
    else:
        name = f"live-{coin}" + (f" ({series})" if series else "")
        run = client.create_run(experiment.experiment_id, run_name=name,
                                tags={LIVE_RUN_TAG: coin, LIVE_SERIES_TAG: series, "coin": coin,
                                      "mlflow.runName": name})
        run_id = run.info.run_id
        client.set_terminated(run_id, "FINISHED")
    ts = to_utc(now)
    step = int(ts.timestamp() // 3600)
    millis = int(ts.timestamp() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), millis, step) for k, v in clean_metrics(metrics).items()],
        tags=[RunTag(k, v) for k, v in clean_tags(tags).items()],
    )
    return run_id

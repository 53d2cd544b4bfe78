"""MLflow tracking and model registry: one run per coin per build, a champion per coin.

* :func:`configure` points MLflow at ``MLFLOW_TRACKING_URI`` (e.g. DagsHub) or a local
  ``sqlite:///<root>/mlflow.db`` with artifacts under ``<root>/mlartifacts``.
* :func:`log_build` records a build: params, metrics such as ``prophet_seasonal.h1.rel_mae``, the
  rendered notebooks and other artifacts, tags (coin, source, data_through, git commit).
* :func:`promote` registers the build's best model (the *challenger*) in ``coincast-<coin>`` and runs the
  promotion gate :func:`decide`: a challenger replaces the champion only if its one-hour relative MAE
  (MAE / naive MAE on the same backtest origins) beats the champion's *on the same backtest* and is no
  worse than naive; when nothing beats naive, naive is the champion. Aliases ``challenger`` and
  ``champion`` (MLflow 3 registry aliases, not stages) mark the versions; the reason is kept on them.
* :func:`load_champion` gives back the champion's :class:`~coincast.serving.ServedForecaster`;
  ``mlflow models serve -m models:/coincast-<coin>@champion`` serves the same model over HTTP
  (:class:`CoincastPyfunc`).
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import posixpath
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # offline hosts hang on it

import mlflow  # noqa: E402
import mlflow.pyfunc  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from filelock import FileLock  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.models import ModelSignature  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from mlflow.types.schema import AnyType, ColSpec, ParamSchema, ParamSpec, Schema  # noqa: E402

from coincast.config import ConfigError, parse_time  # noqa: E402
from coincast.serving import FORECAST_COLUMNS, ServedForecaster  # noqa: E402

logger = logging.getLogger(__name__)

EXPERIMENT = "coincast"
NAIVE = "naive"
CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_NAME = "model"  # artifact name of the logged pyfunc
HORIZONS = tuple(range(1, 25))

# MLflow limits (mlflow.utils.validation)
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_KEY = 250
TRUNCATED = "...[truncated]"

# the URI configure() chose itself: mlflow.set_tracking_uri() exports MLFLOW_TRACKING_URI, which must not
# then be mistaken for a user's setting by the next tracking_uri() call
_auto_uri: str | None = None


# --- where MLflow writes ----------------------------------------------------------------------------
def _default_uri(root: Path) -> str:
    return "sqlite:///" + Path(root).expanduser().resolve().as_posix() + "/mlflow.db"


def tracking_uri(root: Path) -> str:
    """``MLFLOW_TRACKING_URI`` if the environment sets it, else ``sqlite:///<root>/mlflow.db`` (absolute)."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env and env != _auto_uri:
        return env
    return _default_uri(root)


def _is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def configure(root: Path, experiment: str = EXPERIMENT) -> str:
    """Point MLflow at the tracking store and make ``experiment`` the active one; returns its id.

    With a local store (the sqlite default) the experiment's artifacts live in ``<root>/mlartifacts``, so
    nothing lands in the process's working directory; a remote server keeps its own artifact store.
    """
    global _auto_uri
    root = Path(root).expanduser().resolve()
    uri = tracking_uri(root)
    if uri == _default_uri(root):
        root.mkdir(parents=True, exist_ok=True)
        _auto_uri = uri
    mlflow.set_tracking_uri(uri)
    # Coins built side by side (coin_jobs) may open a new sqlite store at the same moment: MLflow creates its
    # tables on first use, which two processes must not do at once.
    with write_lock():
        return _configure_experiment(uri, root, experiment)


def _configure_experiment(uri: str, root: Path, experiment: str) -> str:
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        location = None
        if _is_local(uri):
            artifacts = root / "mlartifacts"
            artifacts.mkdir(parents=True, exist_ok=True)
            location = artifacts.as_uri()
        try:
            experiment_id = client.create_experiment(experiment, artifact_location=location)
        except MlflowException:  # created concurrently by another coin's build
            exp = client.get_experiment_by_name(experiment)
            if exp is None:
                raise
            experiment_id = exp.experiment_id
    else:
        experiment_id = exp.experiment_id
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(experiment_id)
    mlflow.set_experiment(experiment_id=experiment_id)
    logger.info("MLflow experiment %r (id %s) at %s", experiment, experiment_id, redact_uri(uri))
    return experiment_id


def write_lock(timeout: float = 600) -> Any:
    """Hold while writing to a local sqlite store: coins built side by side (``coin_jobs``) register versions,
    move aliases and log live metrics one process at a time, so a version and its aliases are always written
    together and sqlite never answers "database is locked". A server store (``http://``, PostgreSQL)
    serializes on its own: no lock."""
    uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///"):
        return FileLock(uri[len("sqlite:///"):] + ".lock", timeout=timeout)
    return contextlib.nullcontext()


def redact_uri(uri: str) -> str:
    """A URI fit for a log line: no user:password@ part, no query string."""
    return re.sub(r"//[^/@]*@", "//***@", uri).split("?", 1)[0]


# --- the served model ------------------------------------------------------------------------------
class CoincastPyfunc(mlflow.pyfunc.PythonModel):
    """The MLflow face of a :class:`ServedForecaster`.

    Input: a DataFrame with ``timestamp`` (datetimes or ISO-8601 strings) and ``price`` — the recent hourly
    history, at least 25 rows (more if the model needs it, e.g. drift's window + 1). Output: one row per
    horizon 1..24 (``params={"max_horizon": n}`` for fewer or more) with ``target_time`` as ISO-8601 UTC
    strings and the forecast with its 80 % and 95 % intervals.
    """

    def __init__(self, served: ServedForecaster) -> None:
        self.served = served

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        history = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        max_horizon = int((params or {}).get("max_horizon") or len(HORIZONS))
        if max_horizon < 1:
            raise ValueError(f"max_horizon must be at least 1, got {max_horizon}")
        out = self.served.forecast(history, tuple(range(1, max_horizon + 1)))
        out["target_time"] = [pd.Timestamp(t).tz_convert("UTC").isoformat() for t in out["target_time"]]
        out["horizon"] = out["horizon"].astype("int64")
        return out.reset_index(drop=True)


def model_signature() -> ModelSignature:
    """timestamp (any: strings from JSON, datetimes in process) and price in; the forecast table out."""
    inputs = Schema([ColSpec(AnyType(), "timestamp"), ColSpec("double", "price")])
    outputs = Schema(
        [ColSpec("long", "horizon"), ColSpec("string", "target_time")]
        + [ColSpec("double", c) for c in FORECAST_COLUMNS[2:]]
    )
    params = ParamSchema([ParamSpec("max_horizon", "long", len(HORIZONS))])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def input_example(served: ServedForecaster, end: Any = None) -> pd.DataFrame:
    """A small history the model can forecast from (ISO timestamps, JSON friendly)."""
    n = max(int(served.model.min_history), served.vol_window + 1, 25) + 1
    end_ts = pd.Timestamp(end) if end is not None else pd.Timestamp("2024-01-01T00:00Z")
    end_ts = (end_ts.tz_localize("UTC") if end_ts.tzinfo is None else end_ts.tz_convert("UTC")).floor("h")
    ts = pd.date_range(end=end_ts, periods=n, freq="h")
    i = np.arange(n)
    price = 100.0 * np.exp(0.002 * np.sin(i / 3.0) + 0.0001 * i)
    return pd.DataFrame({"timestamp": [t.isoformat() for t in ts], "price": price})


def _pip_requirements(served: ServedForecaster) -> list[str]:
    """What serving the model needs besides coincast itself (installed with the project)."""
    names = ["mlflow", "cloudpickle", "numpy", "pandas"]
    if "prophet" in served.model.kind:
        names.append("prophet")
    reqs = []
    for name in names:
        try:
            reqs.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            reqs.append(name)
    return reqs


# --- one run per build ---------------------------------------------------------------------------
def _key(name: Any) -> str:
    """A param/metric/tag key MLflow accepts: alphanumerics _ - . space /, no empty path segments."""
    key = re.sub(r"[^A-Za-z0-9_\-. /]", "_", str(name)).strip()
    key = re.sub(r"/+", "/", key).strip("/")
    if key and posixpath.normpath(key) != key:
        key = key.replace("/", "_")
    return key[:MAX_KEY] or "_"


def _truncate(text: str, limit: int) -> str:
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
        out[_key(name)] = _truncate(text, MAX_PARAM_VALUE)
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


def _run_name(coin: str, params: Mapping[str, Any], tags: Mapping[str, Any]) -> str:
    through = tags.get("data_through") or params.get("data_through")
    if through is None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H%MZ")
    else:
        try:
            ts = pd.Timestamp(through)
            ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
            stamp = ts.strftime("%Y-%m-%dT%H%MZ")
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
    """Record one coin's build as an MLflow run in the active experiment (see :func:`configure`); returns
    the run id. Artifacts that do not exist are skipped; directories are logged under their name."""
    run_tags = {_key(k): _truncate(str(v), MAX_TAG_VALUE) for k, v in tags.items() if v is not None}
    run_tags.setdefault("coin", coin)
    flat = flatten_params(params)
    values = clean_metrics(metrics)
    active = mlflow.active_run()
    with mlflow.start_run(run_name=_run_name(coin, params, tags), tags=run_tags, nested=active is not None) as run:
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


# --- the promotion gate ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    """What the gate decided: whether the challenger became champion, who the champion is, and why."""

    promote: bool
    champion_model: str
    reason: str


def _finite(x: float | None) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def decide(challenger: str, challenger_rel: float, champion: str | None, champion_rel: float | None) -> Decision:
    """The promotion gate (pure). ``*_rel`` are one-hour rel_mae on the same backtest; naive is 1.0.

    * the challenger becomes champion if it beats the champion (strictly: ties do not promote) and is
      no worse than naive (rel_mae <= 1);
    * the champion stays if the challenger does not beat it, unless neither beats naive: then naive is
      the champion;
    * no champion, or a champion this backtest did not score: the challenger if it is no worse than naive,
      else naive;
    * the challenger *is* the champion's model (refit on newer data): its new version takes over if it is
      still no worse than naive — the comparison would otherwise be a tie by construction and the
      champion would never be refreshed.
    """
    c_ok = _finite(challenger_rel) and challenger_rel <= 1.0
    c_txt = f"{challenger} 1h rel_mae {challenger_rel:.4f}" if _finite(challenger_rel) else \
        f"{challenger} has no 1h rel_mae"
    naive_txt = "naive (1.0000)"

    if champion is None or not _finite(champion_rel):
        head = "no champion yet" if champion is None else \
            f"champion {champion} is not scored in this backtest, so compared with naive only"
        if c_ok:
            if challenger == NAIVE:
                return Decision(True, NAIVE, f"{head}: naive (1h rel_mae 1.0000) becomes champion")
            rel = "ties" if challenger_rel == 1.0 else "beats"
            return Decision(True, challenger, f"{head}: {c_txt} {rel} {naive_txt}")
        return Decision(False, NAIVE, f"{head}: {c_txt} does not beat {naive_txt}, so naive is champion")

    k_txt = f"champion {champion} ({champion_rel:.4f})"
    if challenger == champion:
        if c_ok:
            return Decision(True, challenger, f"{c_txt}: the champion's model refit on this build "
                                              f"(no worse than {naive_txt}) replaces its previous version")
        return Decision(False, NAIVE, f"{c_txt}: the champion's model no longer beats {naive_txt}, "
                                      f"so naive is champion")
    if not c_ok and champion_rel > 1.0:
        return Decision(False, NAIVE, f"neither {c_txt} nor {k_txt} beats {naive_txt}, so naive is champion")
    if c_ok and challenger_rel < champion_rel:
        if challenger == NAIVE:
            return Decision(True, NAIVE, f"nothing beats naive: {k_txt} is worse than naive (1h rel_mae 1.0000), "
                                         f"so naive is champion")
        tail = "" if champion == NAIVE else f" and {naive_txt}"
        return Decision(True, challenger, f"{c_txt} beats {k_txt}{tail}")
    if _finite(challenger_rel) and challenger_rel == champion_rel:
        return Decision(False, champion, f"{c_txt} ties {k_txt}: the champion stays")
    if _finite(challenger_rel) and challenger_rel < champion_rel:  # better but worse than naive
        return Decision(False, champion, f"{c_txt} beats {k_txt} but not {naive_txt}: the champion stays")
    return Decision(False, champion, f"{c_txt} does not beat {k_txt}: the champion stays")


# --- registry orchestration --------------------------------------------------------------------------
def registered_name(coin: str) -> str:
    return f"coincast-{coin}"


def _horizon(entry: Mapping[str, Any], h: int) -> Mapping[str, Any]:
    hs = entry.get("horizons") or {}
    return hs.get(str(h)) or hs.get(h) or {}


def _metric(entry: Mapping[str, Any] | None, h: int, name: str) -> float | None:
    if not entry:
        return None
    try:
        value = float(_horizon(entry, h).get(name))
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _json_number(x: float | None) -> float | None:
    return float(x) if _finite(x) else None


def _fmt(x: float | None) -> str:
    return f"{x:.6g}" if _finite(x) else ""


def pick_challenger(models: Mapping[str, Mapping[str, Any]]) -> str:
    """The best model of the build: :func:`coincast.backtest.best_model` at 1 h (one rule everywhere)."""
    from coincast.backtest import best_model

    return best_model(models, 1)


def _version_tags(coin: str, model_name: str, entry: Mapping[str, Any] | None, served: ServedForecaster,
                  backtest: Mapping[str, Any], run_id: str) -> dict[str, str]:
    spec = (entry or {}).get("spec") or served.model.spec
    tags = {
        "coin": coin,
        "model_name": model_name,
        "spec": _truncate(json.dumps(spec, sort_keys=True, default=str), MAX_TAG_VALUE),
        "run_id": run_id,
    }
    for key, h, metric in (("rel_mae_1h", 1, "rel_mae"), ("rel_mae_24h", 24, "rel_mae"),
                           ("coverage_80_1h", 1, "coverage_80"), ("coverage_95_1h", 1, "coverage_95")):
        value = _metric(entry, h, metric)
        if value is not None:
            tags[key] = _fmt(value)
    for key in ("data_through", "data_version", "source", "series", "vs_currency"):
        if backtest.get(key) is not None:
            tags[key] = str(backtest[key])
    return tags


def _register(client: MlflowClient, coin: str, run_id: str, model_name: str, served: ServedForecaster,
              tags: Mapping[str, str], artifact_name: str, data_through: Any) -> str:
    """Log ``served`` as a pyfunc in run ``run_id`` and register it; returns the new version."""
    name = registered_name(coin)
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        run_ctx = None
    else:
        run_ctx = mlflow.start_run(run_id=run_id, nested=active is not None)
    try:
        info = mlflow.pyfunc.log_model(
            name=artifact_name,
            python_model=CoincastPyfunc(served),
            signature=model_signature(),
            input_example=input_example(served, data_through),
            pip_requirements=_pip_requirements(served),
            tags={"coin": coin, "model_name": model_name},
        )
    finally:
        if run_ctx is not None:
            mlflow.end_run()
    mv = mlflow.register_model(info.model_uri, name, tags=dict(tags))
    if not client.get_registered_model(name).description:
        client.update_registered_model(name, description=f"Hourly {coin} price forecaster (coincast): aliases "
                                                         f"'{CHAMPION}' (served) and '{CHALLENGER}' (latest best)")
        client.set_registered_model_tag(name, "coin", coin)
    logger.info("%s: registered %s as %s version %s", coin, model_name, name, mv.version)
    return str(mv.version)


def _current_champion(client: MlflowClient, name: str) -> Any:
    """The version aliased champion, or None when the model or the alias does not exist (other errors, e.g.
    an unreachable server, propagate: they must not look like "no champion")."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        # sqlite: unknown model -> RESOURCE_DOES_NOT_EXIST, unknown alias -> INVALID_PARAMETER_VALUE
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def _annotate(client: MlflowClient, name: str, version: str, reason: str, champion: bool) -> None:
    client.set_model_version_tag(name, version, "promotion_reason", _truncate(reason, MAX_TAG_VALUE))
    client.update_model_version(name, version, description=reason)
    if champion:
        client.set_model_version_tag(name, version, "promoted_at",
                                     datetime.now(timezone.utc).isoformat(timespec="seconds"))
        client.set_registered_model_alias(name, CHAMPION, version)


def promote(coin: str, run_id: str, backtest: Mapping[str, Any], served: Mapping[str, ServedForecaster]) -> dict:
    """Register this build's best model as the challenger of ``coincast-<coin>`` and apply :func:`decide`.

    ``backtest["models"]``: ``{name: {"spec": {...}, "horizons": {"1": {"rel_mae": ...}, "24": {...}}}}``
    (naive included); ``served``: a :class:`ServedForecaster` per model, at least the challenger's and
    naive's. Returns what happened, JSON ready.
    """
    models = backtest.get("models") or {}
    if not models:
        raise ValueError("backtest has no models")
    challenger = pick_challenger(models)
    if challenger not in served:
        raise KeyError(f"no served model for the challenger {challenger!r} (have {', '.join(served)})")
    c_rel = _metric(models[challenger], 1, "rel_mae")
    client = MlflowClient()
    name = registered_name(coin)
    data_through = backtest.get("data_through")

    current = _current_champion(client, name)
    k_model = (current.tags.get("model_name") or f"version {current.version}") if current is not None else None
    k_rel = _metric(models.get(k_model), 1, "rel_mae") if k_model else None
    if k_model == NAIVE and k_rel is None:
        k_rel = 1.0  # naive's rel_mae is 1 by definition

    c_version = _register(client, coin, run_id, challenger, served[challenger],
                          _version_tags(coin, challenger, models[challenger], served[challenger], backtest, run_id),
                          MODEL_NAME, data_through)
    client.set_registered_model_alias(name, CHALLENGER, c_version)
    decision = decide(challenger, c_rel, k_model, k_rel)
    logger.info("%s: %s", coin, decision.reason)

    if decision.promote:
        _annotate(client, name, c_version, decision.reason, champion=True)
        champ_version, champ_model, champ_rel = c_version, challenger, c_rel
    elif decision.champion_model == NAIVE and challenger != NAIVE:
        _annotate(client, name, c_version, decision.reason, champion=False)
        if current is not None and k_model == NAIVE:
            champ_version, champ_model, champ_rel = str(current.version), NAIVE, 1.0
        else:
            if NAIVE not in served:
                raise KeyError("naive must be champion but there is no served naive model")
            naive_entry = models.get(NAIVE)
            champ_version = _register(client, coin, run_id, NAIVE, served[NAIVE],
                                      _version_tags(coin, NAIVE, naive_entry, served[NAIVE], backtest, run_id),
                                      f"{MODEL_NAME}-{NAIVE}", data_through)
            _annotate(client, name, champ_version, decision.reason, champion=True)
            champ_model, champ_rel = NAIVE, _metric(naive_entry, 1, "rel_mae") or 1.0
    else:  # the champion stays
        _annotate(client, name, c_version, decision.reason, champion=False)
        champ_version, champ_model, champ_rel = str(current.version), k_model, k_rel

    return {
        "registered_model": name,
        "challenger": {"version": c_version, "model_name": challenger, "rel_mae_1h": _json_number(c_rel)},
        "champion": {"version": champ_version, "model_name": champ_model, "rel_mae_1h": _json_number(champ_rel)},
        "promoted": bool(decision.promote),
        "reason": decision.reason,
    }


def champion_info(coin: str, client: MlflowClient | None = None) -> dict[str, Any]:
    """The champion version's registry facts (no model loading); raises LookupError if there is none.
    ``client``: default, one for the configured tracking URI."""
    name = registered_name(coin)
    mv = _current_champion(client or MlflowClient(), name)
    if mv is None:
        raise LookupError(f"{name} has no champion (run a build first)")
    return _version_info(name, mv)


def _version_info(name: str, mv: Any) -> dict[str, Any]:
    tags = dict(mv.tags)
    return {
        "registered_model": name,
        "version": str(mv.version),
        "model_name": tags.get("model_name"),
        "reason": tags.get("promotion_reason") or mv.description,
        "promoted_at": tags.get("promoted_at"),
        "rel_mae_1h": _json_number(float(tags["rel_mae_1h"])) if tags.get("rel_mae_1h") else None,
        "data_through": tags.get("data_through"),
        "data_version": tags.get("data_version"),
        "source": tags.get("source"),
        "series": tags.get("series"),
        "vs_currency": tags.get("vs_currency"),
        "run_id": mv.run_id,
    }


def load_champion(coin: str) -> tuple[ServedForecaster, dict[str, Any]]:
    """The champion of ``coincast-<coin>`` and its version info (version, model_name, reason, promoted_at)."""
    info = champion_info(coin)
    # load the version the alias pointed to when read, so model and info agree even if a build moves it
    return load_version(info), info


def load_version(info: Mapping[str, Any]) -> ServedForecaster:
    """The model of the registered version ``info`` describes (:func:`champion_info`, :func:`champion_versions`)."""
    return _load_version(mlflow.get_registry_uri(), info["registered_model"], str(info["version"]), info["run_id"])


# --- the version in force at an hour: catch-up predictions never use a model trained after their origin ---
def champion_versions(coin: str) -> list[dict[str, Any]]:
    """Every version of ``coincast-<coin>`` that was ever champion (:func:`promote` tags it ``promoted_at``), in
    promotion order, which is version order (only the version a build has just registered is promoted)."""
    name = registered_name(coin)
    found = MlflowClient().search_model_versions(f"name = '{name}'")
    ever = [_version_info(name, mv) for mv in found if mv.tags.get("promoted_at")]
    return sorted(ever, key=lambda info: int(info["version"]))


#: what identifies the data a version was trained on (version tags, and extract.json's keys of the same names)
SERIES_KEYS = ("source", "series", "vs_currency")


def series_differs(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two descriptions name different series (a key either lacks, as older versions do, proves nothing)."""
    return any(a.get(k) and b.get(k) and str(a[k]) != str(b[k]) for k in SERIES_KEYS)


def _trained_by(info: Mapping[str, Any] | None, origin: pd.Timestamp) -> bool:
    """Whether the version was trained on data up to ``origin`` at the latest (False when it does not say)."""
    through = (info or {}).get("data_through")
    try:
        return through is not None and parse_time(through, "data_through") <= origin
    except ConfigError:
        return False


def version_in_force(champion: Mapping[str, Any] | None, versions: Sequence[Mapping[str, Any]],
                     origin: Any) -> Mapping[str, Any] | None:
    """The version that was champion at data hour ``origin`` (pure): the current ``champion`` if it was trained
    on data up to ``origin`` at the latest, else the most recently promoted of ``versions``
    (:func:`champion_versions`) that was; None when every one was trained on data after ``origin``."""
    origin = parse_time(origin, "origin")
    if _trained_by(champion, origin):
        return champion
    return next((v for v in reversed(versions) if _trained_by(v, origin)), None)


def in_force_at(coin: str, champion: Mapping[str, Any]) -> Callable[[Any], tuple[ServedForecaster, dict] | None]:
    """``origin -> (model, version info)`` of the version in force at ``origin`` (:func:`version_in_force`), or
    None. The champion history is read from the registry once, and only if an origin precedes the current
    ``champion``'s data (a catch-up after a retrain); each version is loaded once per process."""
    history: list[list[dict[str, Any]]] = []

    def pick(origin: Any) -> tuple[ServedForecaster, dict] | None:
        if not _trained_by(champion, parse_time(origin, "origin")) and not history:  # the champion's series only
            history.append([v for v in champion_versions(coin) if not series_differs(v, champion)])
        chosen = version_in_force(champion, history[0] if history else [], origin)
        return None if chosen is None else (load_version(chosen), dict(chosen))

    return pick


def load_version_in_force(coin: str, origin: Any) -> tuple[ServedForecaster, dict] | None:
    """The version of ``coincast-<coin>`` that was champion at data hour ``origin`` and its info, or None when
    every champion was trained on data after it; LookupError if there is no champion at all."""
    return in_force_at(coin, champion_info(coin))(origin)


@functools.lru_cache(maxsize=16)
def _load_version(registry_uri: str, name: str, version: str, run_id: str) -> ServedForecaster:
    """A registered version never changes: each is loaded once per process (an in-process tick's forecast and
    monitor tasks, and every tick of a replay, share it; ~0.25 s each). The run id is in the key so that a
    registry made anew at the same path (same name and version, another model) is not served from the cache."""
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    return model.unwrap_python_model().served


LIVE_RUN_TAG = "coincast.live_coin"


def log_live(coin: str, metrics: Mapping[str, float], now: Any, tags: Mapping[str, Any]) -> str:
    """Append the hourly tick's live metrics to the coin's one long-running "live" run (created on first
    use) in the coincast experiment (see :func:`configure`), at step = hours since the epoch of ``now``;
    ``tags`` (model and data version) show the latest values."""
    with write_lock():
        return _log_live(coin, metrics, now, tags)


def _log_live(coin: str, metrics: Mapping[str, float], now: Any, tags: Mapping[str, Any]) -> str:
    client = MlflowClient()
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        raise RuntimeError("MLflow is not configured: call registry.configure(project_root) first")
    found = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{LIVE_RUN_TAG}` = '{coin}'",
                               max_results=1)
    if found:
        run_id = found[0].info.run_id
    else:
        run = client.create_run(experiment.experiment_id, run_name=f"live-{coin}",
                                tags={LIVE_RUN_TAG: coin, "coin": coin, "mlflow.runName": f"live-{coin}"})
        run_id = run.info.run_id
        client.set_terminated(run_id, "FINISHED")
    ts = pd.Timestamp(now)
    step = int(ts.timestamp() // 3600)
    millis = int(ts.timestamp() * 1000)
    from mlflow.entities import Metric, RunTag

    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), millis, step) for k, v in clean_metrics(metrics).items()],
        tags=[RunTag(_key(k), _truncate(str(v), MAX_TAG_VALUE)) for k, v in tags.items() if v is not None],
    )
    return run_id


__all__ = [
    "CoincastPyfunc", "Decision", "configure", "decide", "load_champion", "champion_info", "log_build",
    "promote", "tracking_uri", "registered_name", "log_live", "write_lock", "champion_versions", "in_force_at",
    "load_version", "load_version_in_force", "redact_uri", "version_in_force",
]

"""The model registry: one registered model ``coincast-<coin>`` per coin, its versions, tags and aliases.

* :func:`promote` registers a build's best model (the *challenger*) as a new version, applies the promotion
  rule (:mod:`coincast.registry.promotion`) and moves the aliases ``challenger`` and ``champion`` (MLflow 3
  registry aliases, not stages); the reason is kept on the versions.
* :func:`champion_info` / :func:`load_champion` read the champion; :func:`in_force_at` and
  :func:`load_version_in_force` the version that was champion at an earlier hour (catch-up predictions never
  use a model trained after their origin).

Every call uses an explicit client of the store :func:`coincast.registry.tracking.configure` chose.
"""
from __future__ import annotations

import functools
import json
import logging
from typing import Any, Callable, Mapping, Sequence

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from coincast.forecasting.backtest import NAIVE
from coincast.config import ConfigError, parse_time
import coincast.registry.tracking as tracking
from coincast.registry.promotion import (
    Decision, candidates, decide, explain, finite, metric, noise_tests, pick_challenger, record,
)
from coincast.registry.pyfunc import load_served, log_pyfunc
from coincast.forecasting.serving import ServedForecaster
from coincast.timeseries import utc_now

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_NAME = "model"  # artifact name of the logged pyfunc

#: what identifies the data a version was trained on (version tags, and extract.json's keys of the same names)
SERIES_KEYS = ("source", "series", "vs_currency")


def registered_name(coin: str) -> str:
    return f"coincast-{coin}"


def _json_number(x: float | None) -> float | None:
    return float(x) if finite(x) else None


# --- registering a version and moving the aliases ----------------------------------------------------------
#: The backtest scores a version carries as tags (tag, horizon, backtest key): the point score, the coverage and
#: the probabilistic scores relative to the naive-empirical baseline, so the registry UI shows them per version.
VERSION_SCORES = (
    *((f"rel_mae_{h}h", h, "rel_mae") for h in (1, 24)),
    ("coverage_80_1h", 1, "coverage_80"), ("coverage_95_1h", 1, "coverage_95"),
    *((f"{name}_{h}h", h, name) for h in (1, 24) for name in ("rel_interval_score_95", "rel_crps")),
)

def version_tags(coin: str, model_name: str, served: ServedForecaster, backtest: Mapping[str, Any],
                 run_id: str) -> dict[str, str]:
    """The tags of a new version: the model, its spec and backtest scores, the data it was trained on."""
    entry = (backtest.get("models") or {}).get(model_name)
    spec = (entry or {}).get("spec") or served.model.spec
    tags = {
        "coin": coin,
        "model_name": model_name,
        "spec": tracking.truncate(json.dumps(spec, sort_keys=True, default=str)),
        "run_id": run_id,
        # the volatility scaling of its intervals per calibrated horizon (what serving uses)
        "interval_scaling": json.dumps({str(h): n for h, n in sorted(served.scaling_for().items())}),
    }
    for key, h, name in VERSION_SCORES:
        value = metric(entry, h, name)
        if value is not None:
            tags[key] = f"{value:.6g}"
    for key in ("data_through", "data_version", *SERIES_KEYS):
        if backtest.get(key) is not None:
            tags[key] = str(backtest[key])
    return tags


def _register(client: MlflowClient, coin: str, run_id: str, model_name: str, served: ServedForecaster,
              backtest: Mapping[str, Any], artifact_name: str, gate_tags: Mapping[str, str]) -> str:
    """Log ``served`` as a pyfunc in run ``run_id`` and register it with its tags and the gate's
    (``gate_tags``: :func:`decision_tags` and the reason); returns the new version."""
    name = registered_name(coin)
    tags = {**version_tags(coin, model_name, served, backtest, run_id), **gate_tags}
    with tracking.fluent(client.tracking_uri):
        active = mlflow.active_run()
        resume = active is None or active.info.run_id != run_id
        if resume:
            mlflow.start_run(run_id=run_id, nested=active is not None)
        try:
            info = log_pyfunc(served, artifact_name, backtest.get("data_through"),
                              {"coin": coin, "model_name": model_name})
        finally:
            if resume:
                mlflow.end_run()
        mv = mlflow.register_model(info.model_uri, name, tags=tags)
    describe_model(client, name, coin)
    logger.info("%s: registered %s as %s version %s", coin, model_name, name, mv.version)
    return str(mv.version)


def current_champion(client: MlflowClient, name: str) -> Any:
    """The ModelVersion aliased champion, or None when the model or the alias does not exist (other errors, e.g.
    an unreachable server, propagate: they must not look like "no champion")."""
    return aliased(client, name, CHAMPION)


def aliased(client: MlflowClient, name: str, alias: str) -> Any:
    """The ModelVersion ``alias`` points to, or None when the model or the alias does not exist (other errors
    propagate)."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        # sqlite: unknown model -> RESOURCE_DOES_NOT_EXIST, unknown alias -> INVALID_PARAMETER_VALUE
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def decision_tags(d: Decision, champion: bool) -> dict[str, str]:
    """The gate's decision as the tags of a version it makes ``champion`` or not
    (:func:`~coincast.registry.promotion.record`, flattened, and the reason): ``promotion_decision`` (promoted /
    not_promoted: this version), ``promotion_rule``, ``promotion_p_value`` (the level), ``promotion_reason`` and,
    per test that ran, ``dm_statistic_vs_naive``, ``dm_p_value_vs_naive``, ``dm_n_vs_naive`` (and
    ``..._vs_champion``, ``..._champion_vs_naive``), ``promotion_candidates`` and ``promotion_threshold``."""
    r = record(d)
    tags = {"promotion_decision": "promoted" if champion else "not_promoted", "promotion_rule": r["rule"],
            "promotion_p_value": f"{r['promotion_p_value']:g}", "promotion_candidates": str(r["candidates"]),
            "promotion_threshold": f"{r['threshold']:.6g}", "promotion_reason": tracking.truncate(explain(d))}
    for against in ("vs_naive", "vs_champion", "champion_vs_naive"):
        for key, value in (r[against] or {}).items():
            tags[f"dm_{key}_{against}"] = str(value) if key == "n" or value is None else f"{value:.6g}"
    return tags


def _insert_race(exc: BaseException) -> bool:
    """MLflow's SQL store sets an alias or a registered model's tag by reading, then inserting: two workers setting a
    model's first alias (or its ``coin`` tag) at once (an MLflow server on PostgreSQL) make the second insert fail on
    the table's primary key. Read again, it is an update."""
    return isinstance(exc, MlflowException) and any(
        key in str(exc) for key in ("registered_model_alias_pk", "UNIQUE constraint failed: registered_model_aliases",
                                    "registered_model_tag_pk", "UNIQUE constraint failed: registered_model_tags"))


_retried_race = retry(retry=retry_if_exception(_insert_race), stop=stop_after_attempt(5),
                      wait=wait_exponential(multiplier=0.05, max=1), reraise=True)


@_retried_race
def set_alias(client: MlflowClient, name: str, alias: str, version: str) -> None:
    """``alias`` -> ``version`` of ``name``; retried when another worker set the same alias at the same moment."""
    client.set_registered_model_alias(name, alias, version)


@_retried_race
def describe_model(client: MlflowClient, name: str, coin: str) -> None:
    """A new registered model's description and ``coin`` tag (once); retried when another worker's first
    registration of the same model set them at the same moment."""
    if not client.get_registered_model(name).description:
        client.update_registered_model(name, description=f"Hourly {coin} price forecaster (coincast): aliases "
                                                         f"'{CHAMPION}' (served) and '{CHALLENGER}' (latest best)")
        client.set_registered_model_tag(name, "coin", coin)


def _annotate(client: MlflowClient, name: str, version: str, reason: str, champion: bool) -> None:
    """The reason as the version's description; a new champion's time and alias (its tags came with it)."""
    client.update_model_version(name, version, description=reason)
    if champion:
        client.set_model_version_tag(name, version, "promoted_at",
                                     utc_now().isoformat(timespec="seconds"))
        set_alias(client, name, CHAMPION, version)


def promote(coin: str, run_id: str, backtest: Mapping[str, Any], served: Mapping[str, ServedForecaster],
            errors: pd.DataFrame, level: float) -> dict:
    """Register this build's best model as the challenger of ``coincast-<coin>`` and apply the promotion rule
    (:func:`~coincast.registry.promotion.decide`).

    ``backtest["models"]``: ``{name: {"spec": {...}, "horizons": {"1": {"rel_mae": ...}, "24": {...}}}}``
    (naive included); ``served``: a :class:`ServedForecaster` per model, at least the challenger's and
    naive's; ``errors``: the backtest's 1 h absolute errors by origin and model
    (:func:`coincast.forecasting.backtest.errors_by_origin`), for the Diebold–Mariano tests; ``level``: the
    p-value below which an edge counts (``promotion_p_value``). Returns what happened, JSON ready (registry.json):
    the decision (its tests) is also on the challenger's version as tags (:func:`decision_tags`), set when it is
    registered.
    """
    models = backtest.get("models") or {}
    if not models:
        raise ValueError("backtest has no models")
    challenger = pick_challenger(models)
    if challenger not in served:
        raise KeyError(f"no served model for the challenger {challenger!r} (have {', '.join(served)})")
    c_rel = metric(models[challenger], 1, "rel_mae")
    client = tracking.client()
    name = registered_name(coin)

    current = current_champion(client, name)
    foreign = current is not None and cannot_serve(
        dict(current.tags), {**{k: backtest.get(k) for k in SERIES_KEYS}, "now": backtest.get("data_through")})
    if foreign:  # no rival: this build's best model or naive replaces it, or every build would retrain again
        logger.info("%s: champion version %s is replaced whatever it scored: %s", coin, current.version, foreign)
        current = None
    k_model = (current.tags.get("model_name") or f"version {current.version}") if current is not None else None
    k_rel = metric(models.get(k_model), 1, "rel_mae") if k_model else None
    if k_model == NAIVE and k_rel is None:
        k_rel = 1.0  # naive's rel_mae is 1 by definition

    k_scored = k_model if finite(k_rel) else None  # an unscored champion is compared with naive only
    tests = noise_tests(errors, challenger, k_scored, 1)
    decision = decide(challenger, c_rel, k_model, k_rel, tests.vs_naive, tests.vs_champion, level,
                      candidates(models), tests.champion_vs_naive)
    reason = explain(decision)
    logger.info("%s: %s", coin, reason)
    c_version = _register(client, coin, run_id, challenger, served[challenger], backtest, MODEL_NAME,
                          decision_tags(decision, decision.promote))
    set_alias(client, name, CHALLENGER, c_version)

    if decision.promote:
        _annotate(client, name, c_version, reason, True)
        champ_version, champ_model, champ_rel = c_version, challenger, c_rel
    elif decision.champion_model == NAIVE and challenger != NAIVE:
        _annotate(client, name, c_version, reason, False)
        if current is not None and k_model == NAIVE:
            champ_version, champ_model, champ_rel = str(current.version), NAIVE, 1.0
        else:
            if NAIVE not in served:
                raise KeyError("naive must be champion but there is no served naive model")
            champ_version = _register(client, coin, run_id, NAIVE, served[NAIVE], backtest, f"{MODEL_NAME}-{NAIVE}",
                                      decision_tags(decision, True))
            _annotate(client, name, champ_version, reason, True)
            champ_model, champ_rel = NAIVE, metric(models.get(NAIVE), 1, "rel_mae") or 1.0
    else:  # the champion stays
        _annotate(client, name, c_version, reason, False)
        champ_version, champ_model, champ_rel = str(current.version), k_model, k_rel

    return {
        "registered_model": name,
        "challenger": {"version": c_version, "model_name": challenger, "rel_mae_1h": _json_number(c_rel)},
        "champion": {"version": champ_version, "model_name": champ_model, "rel_mae_1h": _json_number(champ_rel)},
        "promoted": bool(decision.promote),
        "reason": reason,
        "decision": record(decision),
    }


# --- reading versions ---------------------------------------------------------------------------------------
def version_info(name: str, mv: Any) -> dict[str, Any]:
    """A registered version's facts from its tags (no model loading)."""
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


def champion_info(coin: str, uri: str | None = None) -> dict[str, Any]:
    """The champion version's registry facts (no model loading) from the configured store, or the one at
    ``uri``; raises LookupError if there is none."""
    name = registered_name(coin)
    mv = current_champion(tracking.client(uri), name)
    if mv is None:
        raise LookupError(f"{name} has no champion (run a build first)")
    return version_info(name, mv)


def last_training(coin: str) -> dict[str, Any] | None:
    """The version the latest training registered (alias ``challenger``, promoted or not), or None: what the
    retraining schedule counts from, since the gate may keep an older champion."""
    name = registered_name(coin)
    mv = aliased(tracking.client(), name, CHALLENGER)
    return None if mv is None else version_info(name, mv)


def champion_versions(coin: str) -> list[dict[str, Any]]:
    """Every version of ``coincast-<coin>`` that was ever champion (:func:`promote` tags it ``promoted_at``), in
    promotion order, which is version order (only the version a build has just registered is promoted)."""
    name = registered_name(coin)
    found = tracking.client().search_model_versions(f"name = '{name}'")
    ever = [version_info(name, mv) for mv in found if mv.tags.get("promoted_at")]
    return sorted(ever, key=lambda info: int(info["version"]))


# --- loading models -----------------------------------------------------------------------------------------
def load_champion(coin: str) -> tuple[ServedForecaster, dict[str, Any]]:
    """The champion of ``coincast-<coin>`` and its version info (version, model_name, reason, promoted_at)."""
    info = champion_info(coin)
    # load the version the alias pointed to when read, so model and info agree even if a build moves it
    return load_version(info), info


def load_version(info: Mapping[str, Any]) -> ServedForecaster:
    """The model of the registered version ``info`` describes (:func:`champion_info`, :func:`champion_versions`)."""
    return _load_version(tracking.store_uri(), info["registered_model"], str(info["version"]), info["run_id"])


@functools.lru_cache(maxsize=16)
def _load_version(uri: str, name: str, version: str, run_id: str) -> ServedForecaster:
    """A registered version never changes: each is loaded once per process (an in-process tick's forecast and
    monitor tasks, and every tick of a replay, share it; ~0.25 s each). The run id is in the key so that a
    registry made anew at the same path (same name and version, another model) is not served from the cache."""
    with tracking.fluent(uri):
        return load_served(f"models:/{name}/{version}")


# --- the version in force at an hour ------------------------------------------------------------------------
def series_differs(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two descriptions name different series (a key either lacks, as older versions do, proves nothing)."""
    return any(a.get(k) and b.get(k) and str(a[k]) != str(b[k]) for k in SERIES_KEYS)


def series_label(d: Mapping[str, Any]) -> str:
    """``source/series/currency`` of a description (build meta, version tags), the parts it has."""
    return "/".join(filter(None, (str(d.get(k) or "") for k in SERIES_KEYS)))


def cannot_serve(champion: Mapping[str, Any] | None, build: Mapping[str, Any]) -> str | None:
    """Why a champion (:func:`champion_info`, or a version's tags) cannot serve a build's data, or None: it was
    trained on another source or series than ``build``'s (:data:`SERIES_KEYS`; the registry is one per coin: a
    simulated champion must not forecast live prices), or on data after the build's clock ``build["now"]`` (a
    replay of the past in a project trained on later data). Such a champion is due for retraining and is no
    rival in the promotion gate: the build's best model or naive replaces it."""
    if not champion:
        return None
    if series_differs(champion, build):  # older versions lack the tags: no claim
        return (f"the champion was trained on {series_label(champion)} data; this build's data is "
                f"{series_label(build)}: retrain on it")
    through, now = champion.get("data_through"), build.get("now")
    if through and now and pd.Timestamp(through) > pd.Timestamp(now):
        return f"the champion was trained on data through {through}, after this build's clock {now}: retrain"
    return None


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

"""coincast on Apache Airflow: the same pipeline as ``coincast hourly``, one Airflow task per Ploomber task.

The graph comes from Ploomber's own DAG, exported by ``coincast airflow export`` to a small JSON
(airflow/coincast-dag.json; ``make airflow`` and ``make airflow-test`` write it): the coins, the tasks and their
upstream tasks, and the settings arguments every command repeats. This file imports neither Ploomber nor
coincast: Airflow keeps its own virtual environment (.venv-airflow), whose pins conflict with Ploomber's.

Each task runs ``<project>/.venv/bin/coincast task NAME --coin C`` in the project folder: the tick's settings
(env.yaml + env.cron.yaml + the exported arguments: in-process notebooks, the profile daily, training only when
due, decided inside the train task; the prediction log written by the monitor task), with the run's logical date
as the stamp that makes a new run refetch (every task of a run renders the same extract params). After every
coin, ``coincast snapshot`` commits (and pushes) the raw history and the prediction log in DVC, as a tick does.

- One task group per coin: a coin's failed gate (validate) stops that coin's downstream tasks only.
- extract retries with exponential backoff (an API outage); the other tasks do not (a failed gate stays failed).
- The trainings of all coins share the pool ``coincast_training`` (``make airflow`` creates it).
- The run fails when any coin failed (the ``every_coin`` leaf), as ``coincast hourly`` exits 1.

Environment variables (each worker): COINCAST_AIRFLOW_GRAPH (the JSON; default next to this folder),
COINCAST_BIN (the coincast executable; default <project>/.venv/bin/coincast), COINCAST_TRAINING_POOL,
COINCAST_AIRFLOW_SCHEDULE (cron; default minute 5 of every hour, as ``make cron-install``; empty: only when
triggered).
"""
from __future__ import annotations

import json
import os
import shlex
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, TaskGroup, TriggerRule

GRAPH_FORMAT = 1
GRAPH = Path(os.environ.get("COINCAST_AIRFLOW_GRAPH") or Path(__file__).resolve().parents[1] / "coincast-dag.json")
TRAINING_POOL = os.environ.get("COINCAST_TRAINING_POOL", "coincast_training")
#: Empty: runs only when triggered (the benchmark).
SCHEDULE = os.environ.get("COINCAST_AIRFLOW_SCHEDULE", "5 * * * *") or None
#: Telemetry off in every task (offline hosts hang on it), as the Makefile exports it.
TELEMETRY_OFF = {"DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "PLOOMBER_STATS_ENABLED": "false",
                 "PLOOMBER_VERSION_CHECK_DISABLED": "true", "PYTHONUNBUFFERED": "1"}
#: The run's stamp, the same for every task of a run (a scheduled run: its hour; a manual one: when triggered).
RUN_STAMP = "{{ dag_run.run_after.isoformat() }}"
EXTRACT_RETRIES = {"retries": 3, "retry_delay": timedelta(minutes=1), "retry_exponential_backoff": True,
                   "max_retry_delay": timedelta(minutes=15)}


def read_graph(path: Path) -> dict:
    """The exported graph; a missing or foreign file is one line naming the command that writes it."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `coincast airflow export` (make airflow does) first")
    graph = json.loads(path.read_text())
    if graph.get("format") != GRAPH_FORMAT:
        raise ValueError(f"{path} has format {graph.get('format')!r}, this DAG reads {GRAPH_FORMAT}: export it again")
    return graph


def command(coincast: str, graph: dict, *words: str) -> str:
    """``coincast WORDS --project P <exported settings arguments>``, quoted for bash."""
    return shlex.join([coincast, *words, "--project", graph["project"], *graph["args"]])


def coin_group(graph: dict, coincast: str, coin: str) -> tuple[TaskGroup, BashOperator]:
    """The coin's tasks wired as Ploomber wires them; returns the group and its last task."""
    with TaskGroup(group_id=coin) as group:
        ops: dict[str, BashOperator] = {}
        for task in graph["tasks"]:
            name = task["name"]
            extra = {**(EXTRACT_RETRIES if name == graph["extract"] else {}),
                     **({"pool": TRAINING_POOL} if name == graph["train"] else {})}
            ops[name] = BashOperator(
                task_id=name,
                bash_command=command(coincast, graph, "task", name, "--coin", coin, "--verbose")
                + f" --run-stamp {RUN_STAMP}",
                cwd=graph["project"], env=TELEMETRY_OFF, append_env=True, **extra)
            for upstream in task["upstream"]:
                ops[upstream] >> ops[name]
    return group, ops[graph["tasks"][-1]["name"]]


def coincast_dag(graph: dict) -> DAG:
    coincast = os.environ.get("COINCAST_BIN") or str(Path(graph["project"]) / ".venv" / "bin" / "coincast")
    with DAG(
        dag_id="coincast",
        description="coincast's hourly pipeline, one task group per coin (the tasks of pipeline.yaml)",
        schedule=SCHEDULE,
        start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
        catchup=False,
        max_active_runs=1,
        default_args={"retries": 0, "execution_timeout": timedelta(hours=1)},
        tags=["coincast"],
    ) as dag:
        last = [coin_group(graph, coincast, coin)[1] for coin in graph["coins"]]
        snapshot = BashOperator(task_id="dvc_snapshot", bash_command=command(coincast, graph, "snapshot"),
                                cwd=graph["project"], env=TELEMETRY_OFF, append_env=True,
                                trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS)
        every_coin = EmptyOperator(task_id="every_coin")  # upstream_failed (the run failed) if any coin failed
        for task in last:
            task >> [snapshot, every_coin]
    return dag


dag = coincast_dag(read_graph(GRAPH))

"""Ploomber's task graph for another scheduler: ``coincast airflow export`` writes it as a small JSON that
airflow/dags/coincast.py reads, so the Airflow processes never import Ploomber or coincast.

The JSON holds what a scheduler needs and nothing it could get wrong: the project folder, the coins, the
pipeline's tasks in Ploomber's order with their upstream tasks (from ``DAGSpec(pipeline.yaml).to_dag()``, the
same DAG ``coincast build`` runs), which task is the gate, the extraction and the training, and the arguments
every ``coincast task`` / ``coincast snapshot`` command of the run repeats (the env files and overrides the
export was given), so each task loads the same settings the export read.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

from coincast.operations.build import EXTRACT_TASK, GATE_TASK, coin_env, load_dag

#: The file's format; the DAG file refuses another.
FORMAT = 1
#: The task that trains (the scheduler's pool of concurrent trainings holds it).
TRAIN_TASK = "train"
#: Where ``coincast airflow export`` writes by default (git-ignored: it names this machine's project folder).
DEFAULT_PATH = Path("airflow") / "coincast-dag.json"


def task_graph(pipeline: Path, env: Mapping[str, Any], coin: str) -> list[dict[str, Any]]:
    """The pipeline's tasks for ``coin`` in Ploomber's order: ``[{"name": ..., "upstream": [...]}, ...]``. The
    graph is the same for every coin (pipeline.yaml has one set of tasks, ``{{coin}}`` only in paths)."""
    with warnings.catch_warnings():  # the env keys pipeline.yaml does not use (coins, lock_file, ...): by design
        warnings.simplefilter("ignore", UserWarning)
        dag = load_dag(pipeline, coin_env(env, coin, pipeline.parent, refetch=False))
    return [{"name": name, "upstream": sorted(dag[name].upstream)} for name in dag]


def graph(project: Path, env: Mapping[str, Any], args: Sequence[str] = ()) -> dict[str, Any]:
    """The JSON's content for the project's pipeline and the env's coins; ``args``: the settings arguments every
    task command repeats (e.g. ``["--env", "env.test.yaml"]``)."""
    coins = [str(c) for c in env["coins"]]
    tasks = task_graph(project / "pipeline.yaml", env, coins[0])
    names = {t["name"] for t in tasks}
    missing = sorted({EXTRACT_TASK, GATE_TASK, TRAIN_TASK} - names)
    if missing:
        raise ValueError(f"pipeline.yaml has no task {', '.join(missing)}: the export names them")
    return {"format": FORMAT, "project": str(project), "coins": coins, "tasks": tasks, "extract": EXTRACT_TASK,
            "gate": GATE_TASK, "train": TRAIN_TASK, "args": list(args)}


def write(project: Path, env: Mapping[str, Any], out: Path, args: Sequence[str] = ()) -> dict[str, Any]:
    """Write :func:`graph` to ``out`` (atomically: a scheduler may be reading it) and return it."""
    from coincast.files import write_json_atomic

    content = graph(project, env, args)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(content, out)
    return content

"""The pipeline on Apache Airflow: the export of Ploomber's task graph (``coincast airflow export``), one task of one
coin (``coincast task``, what each Airflow task runs), and the DAG file run offline by Airflow itself in its own
venv (.venv-airflow), on two LocalExecutor workers, for two simulated coins and one whose gate fails
(``make airflow-test``)."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from coincast.cli import make_parser, settings_args
from coincast.config import resolve_root
from coincast.operations import export
from coincast.operations.build import build_coin
from coincast.settings import load_env
from conftest import BIN, ROOT, run


def _bench_airflow():
    """bench/airflow.py, loaded under another name (``airflow`` is Airflow's package, and a folder of this repo)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_airflow", ROOT / "bench" / "airflow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


most_at_once = _bench_airflow().most_at_once

COINS = ["bitcoin", "ethereum"]


def project_env(project: Path, **overrides) -> dict:
    env = load_env(project / "env.yaml", [project / "env.test.yaml", project / "env.cron.yaml"],
                   {"coins": COINS, **overrides})
    return resolve_root(env, project)


# --- the export (fast) ----------------------------------------------------------------------------------------
def test_export_is_ploomber_graph_in_build_order(project: Path):
    graph = export.graph(project, project_env(project), ["--env", "env.test.yaml"])
    names = [t["name"] for t in graph["tasks"]]
    upstream = {t["name"]: set(t["upstream"]) for t in graph["tasks"]}
    assert names == ["extract", "validate", "features", "train", "profile", "forecast", "monitor", "publish"]
    for i, name in enumerate(names):  # an upstream task always comes earlier: Airflow may run them in this order
        assert upstream[name] <= set(names[:i]), name
    assert upstream["extract"] == set() and upstream["validate"] == {"extract"}
    assert "validate" in upstream["features"] and "profile" not in upstream["train"]
    assert upstream["publish"] == set(names[:-1])  # publish runs only when every other task succeeded
    assert (graph["extract"], graph["gate"], graph["train"]) == ("extract", "validate", "train")
    assert graph["coins"] == COINS and graph["project"] == str(project)
    assert graph["args"] == ["--env", "env.test.yaml"] and graph["format"] == export.FORMAT


def test_export_writes_json_the_dag_file_reads(project: Path, tmp_path: Path):
    out = tmp_path / "deep" / "coincast-dag.json"
    written = export.write(project, project_env(project), out)
    assert json.loads(out.read_text()) == written


def test_export_names_a_missing_task(project: Path):
    text = (project / "pipeline.yaml").read_text()
    (project / "pipeline.yaml").write_text(text[:text.index("  - source: notebooks/02_validate.py")])  # extract only
    with pytest.raises(ValueError, match=r"^pipeline.yaml has no task train, validate: the export names them$"):
        export.graph(project, project_env(project))


def test_task_commands_repeat_the_settings_the_export_read():
    parser = make_parser()
    given = parser.parse_args(["airflow", "export", "--env", "env.test.yaml", "--env", "x.yaml", "--source", "simulated",
                               "--replay-now", "2025-06-01T12:30Z", "--set", "days=3", "--set", "models=[{kind: naive}]",
                               "--no-cron-env", "--coins", "bitcoin"])
    forwarded = settings_args(given)
    task = parser.parse_args(["task", "extract", "--coin", "bitcoin", *forwarded])
    for name in ("env", "source", "replay_file", "replay_now", "set", "no_cron_env"):
        assert getattr(task, name) == getattr(given, name), name
    assert "--coins" not in forwarded  # each task names its one coin


# --- one task of one coin (what each Airflow task runs) ----------------------------------------------------------
def test_one_task_refuses_when_its_upstream_task_has_not_run(project: Path):
    result = build_coin(project_env(project), "bitcoin", project / "pipeline.yaml", task="validate")
    assert not result.ok and result.built == ()
    assert result.error.startswith("Cannot build task 'validate' because the following upstream dependencies are "
                                   "missing: ['extract']")


def test_a_coin_that_is_not_a_coin_id_is_refused_before_anything_is_written(project: Path, tmp_path: Path):
    for args in (["task", "extract", "--coin", "../escapee"], ["build", "--coins", "bitcoin,../escapee"]):
        done = run([str(BIN / "coincast"), *args, "--project", str(project), "--env", "env.test.yaml"], cwd=project)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.startswith("coincast: configuration error: coin") and done.stderr.count("\n") == 1
        assert "CoinGecko coin id" in done.stderr and "(lowercase letters, digits, '-', '.', '_')" in done.stderr
    assert not (project / "escapee").exists() and not (project / "products").exists()
    assert not (project / "logs").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["project"]
    result = build_coin(project_env(project), "../escapee", project / "pipeline.yaml")
    assert not result.ok and result.error.startswith("not a CoinGecko coin id: '../escapee'")
    assert not (project / "products").exists() and not (project / "logs").exists()


def test_one_task_names_an_unknown_task(project: Path):
    result = build_coin(project_env(project), "bitcoin", project / "pipeline.yaml", task="fetch")
    assert result.error == ("ValueError: no task 'fetch' in the pipeline (its tasks: extract, validate, features, "
                            "train, profile, forecast, monitor, publish)")


@pytest.mark.slow
def test_tasks_one_by_one_build_what_the_whole_dag_builds(project: Path):
    """extract, then validate, each in its own `coincast task` process as Airflow runs them: validate finds extract
    up to date (the same run stamp), a second run of extract is a no-op, and --force reruns only that task."""
    common = ["--project", str(project), "--env", "env.test.yaml", "--coin", "bitcoin", "--run-stamp", "2026-01-01T10:00Z"]
    coincast = str(BIN / "coincast")
    for name, expect in (("extract", "ok (ran: extract)"), ("validate", "ok (ran: validate)"),
                         ("extract", "ok (ran: nothing, up to date)")):
        done = run([coincast, "task", name, *common], cwd=project)
        assert done.returncode == 0, done.stderr[-2000:]
        assert f"coincast task: bitcoin {name}: {expect}" in done.stdout
    forced = run([coincast, "task", "validate", "--force", *common], cwd=project)
    assert "coincast task: bitcoin validate: ok (ran: validate)" in forced.stdout, forced.stderr[-2000:]
    assert json.loads((project / "products" / "bitcoin" / "validation.json").read_text())["passed"] is True


# --- Airflow itself, in its own venv ---------------------------------------------------------------------------
UNREACHABLE = re.compile(r"(?i)failed to fetch|connect(ion)? (error|refused|timed out)|dns error|network is unreachable"
                         r"|could not resolve|no solution found .* not found in the package registry")


@pytest.fixture(scope="module")
def airflow_venv() -> Path:
    """.venv-airflow, made from airflow/requirements.lock if absent (`make airflow-venv`, ~15 s from uv's cache)."""
    done = run(["make", "-s", "airflow-venv"], cwd=ROOT, timeout=900)
    if done.returncode != 0 and UNREACHABLE.search(done.stderr + done.stdout):
        pytest.skip(f"the package index is unreachable, so .venv-airflow cannot be made: {done.stderr.strip()[-300:]}")
    assert done.returncode == 0, done.stderr[-3000:]
    return ROOT / ".venv-airflow"


DESCRIBE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
dag = bag.dags["coincast"]
print(json.dumps({"schedule": str(dag.schedule), "catchup": dag.catchup, "max_active_runs": dag.max_active_runs,
                  "tasks": {t.task_id: {"downstream": sorted(t.get_flat_relative_ids(upstream=False)),
                                        "retries": t.retries, "backoff": t.retry_exponential_backoff,
                                        "pool": t.pool, "trigger_rule": getattr(t.trigger_rule, "value", t.trigger_rule),
                                        "command": getattr(t, "bash_command", None), "cwd": getattr(t, "cwd", None)}
                            for t in dag.tasks}}))
"""


@pytest.mark.slow
def test_dag_file_wires_each_coin_apart(airflow_venv: Path, project: Path, tmp_path: Path):
    """The DAG as Airflow loads it: one group per coin wired like Ploomber's DAG, so a failed gate (validate) stops
    only its own coin; retries with backoff on extract only; every training in the pool; the snapshot after every
    coin; each task a `coincast task` in the project."""
    graph = tmp_path / "coincast-dag.json"
    export.write(project, project_env(project), graph, ["--env", "env.test.yaml"])
    done = run([str(airflow_venv / "bin" / "python"), "-c", DESCRIBE, str(ROOT / "airflow" / "dags")], cwd=tmp_path,
               env={"COINCAST_AIRFLOW_GRAPH": str(graph), "AIRFLOW_HOME": str(tmp_path / "home"),
                    "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    dag = json.loads(done.stdout.strip().splitlines()[-1])
    tasks = dag["tasks"]
    assert (dag["catchup"], dag["max_active_runs"]) == (False, 1) and "5 * * * *" in dag["schedule"]
    assert set(tasks) == {f"{c}.{t}" for c in COINS for t in [t["name"] for t in json.loads(graph.read_text())["tasks"]]} \
        | {"dvc_snapshot", "every_coin"}
    for coin in COINS:
        stopped = set(tasks[f"{coin}.validate"]["downstream"])
        assert stopped == {f"{coin}.{t}" for t in ("features", "train", "profile", "forecast", "monitor", "publish")} \
            | {"dvc_snapshot", "every_coin"}
        assert tasks[f"{coin}.extract"]["retries"] == 3 and tasks[f"{coin}.extract"]["backoff"] is True
        assert tasks[f"{coin}.validate"]["retries"] == 0
        assert tasks[f"{coin}.train"]["pool"] == "coincast_training"
        assert tasks[f"{coin}.features"]["pool"] == "default_pool"
        assert tasks[f"{coin}.extract"]["cwd"] == str(project)
        assert tasks[f"{coin}.extract"]["command"].startswith(f"{project}/.venv/bin/coincast task extract --coin {coin} ")
    # the snapshot runs once every coin is done and one succeeded, as a tick; the run fails if any coin failed
    assert tasks["dvc_snapshot"]["trigger_rule"] == "all_done_min_one_success"
    assert tasks["every_coin"]["trigger_rule"] == "all_success"


GATE_COIN = "gatecoin"  # a third coin whose stored data fails the gate inside the run


def plant_bad_history(data: Path, coin: str) -> Path:
    """A data/ folder holding ``coin``'s raw history for the run's whole window (env.test.yaml's clock, days and
    seed, where the run's extract looks: data/history), its prices 60 % up from the middle on. The run's extract
    then finds every hour stored and fetches nothing; the gate fails on the jump. Returns ``data``."""
    from coincast.data.extract import build_source, history_file_for, resolve_clock
    from coincast.data.history import store_batch

    env = {**project_env(ROOT), "history_dir": str(data / "history")}
    now = resolve_clock(env["source"], coin, env["replay_now"])
    start = (now - pd.Timedelta(days=env["days"])).floor("h")
    rows = build_source(env["source"], now=now, seed=env["seed"]).fetch(coin, start, now)
    rows.loc[len(rows) // 2:, "price"] *= 1.6
    store_batch(history_file_for(env, coin), rows, env["source"])
    return data


def task_intervals(airflow_home: Path) -> dict[str, tuple[str, str]]:
    """Each task's first and last log timestamp (ISO, UTC), from its Airflow task log (JSON lines)."""
    out = {}
    for log in (airflow_home / "logs" / "dag_id=coincast").glob("run_id=*/task_id=*/attempt=*.log"):
        stamps = [s for line in log.read_text().splitlines() if line.startswith("{")
                  if (s := json.loads(line).get("timestamp"))]
        out[log.parent.name.removeprefix("task_id=")] = (min(stamps), max(stamps))
    return out


def airflow_states(database: str) -> tuple[str, dict[str, str]]:
    """The DAG run's state and each task's, read from Airflow's metadata database (PostgreSQL)."""
    import psycopg2

    url = database.removeprefix("postgresql+psycopg2://")
    user_host, name = url.split("/", 1)
    user, host_port = user_host.split("@")
    host, port = host_port.rsplit(":", 1)
    conn = psycopg2.connect(host=host, port=int(port), user=user, dbname=name)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT state FROM dag_run WHERE dag_id = 'coincast'")
            (run_state,), = cur.fetchall()
            cur.execute("SELECT task_id, state FROM task_instance WHERE dag_id = 'coincast'")
            return run_state, dict(cur.fetchall())
    finally:
        conn.close()


def dvc_files(project: Path) -> dict[str, bytes]:
    """Every file of the DVC stage's outputs (the raw histories and prediction logs), by path."""
    return {str(p.relative_to(project)): p.read_bytes() for out in ("data/history/simulated", "data/predictions/simulated")
            for p in sorted((project / out).rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="git is needed for DVC's default (git) mode")
def test_airflow_runs_the_dag_on_two_workers_against_the_services(airflow_venv: Path, services, tmp_path: Path):
    """`make airflow-test` with the shared services (tests/services.py): `airflow dags test --use-executor`, so
    LocalExecutor's two task processes run the tasks, with Airflow's metadata on the session's PostgreSQL, the
    MLflow server on PostgreSQL with its artifacts in the S3 stand-in, and the DVC remote in the S3 stand-in.

    - Two tasks run at once (their task logs' intervals overlap), never more than two.
    - bitcoin and ethereum publish a build each (forecast, prediction log, champion); the registry and its model
      files are the server's, not the project's.
    - gatecoin's stored data fails its gate: only its extract and validate run, its later tasks are
      upstream_failed, and the run is failed by `every_coin`, while the snapshot still runs.
    - The snapshot pushes the raw histories and prediction logs to the bucket; deleted with the DVC cache, they
      come back from it byte for byte."""
    from mlflow.tracking import MlflowClient

    from services import create_database, s3_keys

    folder = tmp_path / "af"
    database = create_database(services.postgres, "airflow")
    env = {**services.worker_env(), "PATH": f"{BIN}:{os.environ['PATH']}"}
    done = run(["make", "-s", "airflow-test", f"AIRFLOW_TEST_DIR={folder}", f"AIRFLOW_TEST_DB={database}",
                f"AIRFLOW_TEST_DATA={plant_bad_history(tmp_path / 'data', GATE_COIN)}",
                f"AIRFLOW_TEST_GATE_COIN={GATE_COIN}", f"AIRFLOW_TEST_DVC_REMOTE=s3://{services.bucket}/airflow-dvc",
                f"DVC_REMOTE_ENDPOINT={services.s3_endpoint}"], cwd=ROOT, timeout=1200, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    log = (folder / "dags-test.log").read_text()

    # two workers: two tasks' intervals overlap, never three (AIRFLOW__CORE__PARALLELISM=2)
    intervals = task_intervals(folder / ".airflow")
    at_once, tasks = most_at_once(intervals)
    assert at_once == 2, (at_once, tasks, intervals)

    # the run and its tasks, as Airflow recorded them
    run_state, states = airflow_states(database)
    assert run_state == "failed"
    assert states.pop(f"{GATE_COIN}.extract") == "success" and states.pop(f"{GATE_COIN}.validate") == "failed"
    names = [t["name"] for t in json.loads((folder / "airflow" / "coincast-dag.json").read_text())["tasks"]]
    assert {states.pop(f"{GATE_COIN}.{t}") for t in names[2:]} == {"upstream_failed"}
    assert states.pop("every_coin") == "upstream_failed" and states.pop("dvc_snapshot") == "success"
    assert set(states.values()) == {"success"} and len(states) == 2 * len(names)
    assert {t for t in intervals if t.startswith(GATE_COIN)} == {f"{GATE_COIN}.extract", f"{GATE_COIN}.validate"}
    report = json.loads((folder / "products" / GATE_COIN / "validation.json").read_text())
    assert "jumps" in report["failed"] and not report["passed"]
    assert not (folder / "products" / GATE_COIN / "published").exists()

    for coin in COINS:
        ran = re.findall(rf"coincast task: {coin} (\w+): ok \(ran: (\w+)\)", log)
        assert sorted(ran) == sorted((t, t) for t in names), ran  # each task ran once, in its own process
        published = folder / "products" / coin / "published"
        manifest = json.loads((published / "published.json").read_text())
        assert manifest["coin"] == coin and manifest["source"] == "simulated"
        assert len(pd.read_parquet(published / "forecast.parquet")) == 24
        registry = json.loads((published / "registry.json").read_text())
        assert registry["registered_model"] == f"coincast-{coin}" and registry["champion"]["model_name"] == "naive"
        assert (folder / "data" / "predictions" / "simulated" / "seed42" / f"{coin}-usd.parquet").exists()
        # the registry is the server's: its aliases are what the build recorded, its model files are in the bucket
        client = MlflowClient(services.mlflow_uri)
        aliases = {k: str(v) for k, v in client.get_registered_model(f"coincast-{coin}").aliases.items()}
        assert aliases == {"champion": registry["champion"]["version"], "challenger": registry["challenger"]["version"]}
        run_id = client.get_model_version(f"coincast-{coin}", aliases["champion"]).run_id
        assert any(run_id in key for key in s3_keys(services.s3_endpoint, services.bucket, "mlflow/")), run_id
    assert not (folder / "mlflow.db").exists() and not (folder / "mlartifacts").exists()

    # the snapshot pushed the run's data; without it and the cache, `dvc pull` restores every byte
    assert "coincast snapshot: dvc: build@simulated committed and pushed" in log
    assert s3_keys(services.s3_endpoint, services.bucket, "airflow-dvc/files/md5/")
    saved = dvc_files(folder)
    assert f"data/history/simulated/seed42/{GATE_COIN}-usd.parquet" in saved
    assert {f"data/predictions/simulated/seed42/{c}-usd.parquet" for c in COINS} <= set(saved)
    shutil.rmtree(folder / "data")
    shutil.rmtree(folder / ".dvc" / "cache")
    pulled = run([str(BIN / "dvc"), "pull", "-q", "build@simulated"], cwd=folder, env=env)
    assert pulled.returncode == 0, pulled.stdout[-1500:] + pulled.stderr[-1500:]
    assert dvc_files(folder) == saved


def test_unstick_stops_only_a_worker_idle_through_the_executors_shutdown(tmp_path: Path):
    """airflow/unstick.py (run by airflow/dags-test.sh beside `airflow dags test`) against a stand-in for a stuck
    run: a process whose output is a file, with an idle worker it waits on forever and a busy one. Before the
    shutdown line the idle worker is left alone; after it, the idle one is stopped once idle for the grace period,
    the busy one finishes its work, and the stand-in ends as `dags test` would (apache/airflow#67870)."""
    import subprocess
    import sys
    import time

    out = tmp_path / "dags-test.log"
    stand_in = """
(exec -a "airflow worker -- LocalExecutor: <idle>" sleep 600) & idle=$!
(exec -a "airflow worker -- LocalExecutor: coincast.bitcoin.train" sleep 4) & busy=$!
sleep 2
kill -0 $idle && echo "idle worker alive before the shutdown"
echo "Shutting down LocalExecutor; waiting for running tasks to finish."
wait $busy && echo "busy worker done"
wait $idle; echo "idle worker ended: $?"
"""
    with out.open("w") as sink:
        run_ = subprocess.Popen(["bash", "-c", stand_in], stdout=sink, stderr=subprocess.STDOUT)
    started = time.monotonic()
    watcher = subprocess.run([sys.executable, str(ROOT / "airflow" / "unstick.py"), str(run_.pid), "1"],
                             capture_output=True, text=True, timeout=60)
    assert run_.wait(timeout=10) == 0 and watcher.returncode == 0 and time.monotonic() - started < 30
    lines = out.read_text().splitlines()
    assert lines == ["idle worker alive before the shutdown", "Shutting down LocalExecutor; waiting for running tasks "
                     "to finish.", "busy worker done", "idle worker ended: 143"], lines
    stopped = watcher.stderr.strip().splitlines()
    assert len(stopped) == 1 and "LocalExecutor: <idle> worker" in stopped[0] and "#67870" in stopped[0], stopped

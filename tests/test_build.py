"""coincast.operations.build and coincast.operations.console: a build's typed result, read from the DAG's task status and its products;
the progress lines and the summary table a person reads; the known noise kept off the console."""
from __future__ import annotations

import io
import json
import logging
import pickle
import warnings
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from ploomber import DAG
from ploomber.exceptions import DAGBuildError
from ploomber.executors import Serial
from ploomber.products import File
from ploomber.tasks import PythonCallable

from coincast.operations import console
from coincast.operations.build import BuildResult, NextHour, outcome, report_progress, root_cause, with_build_hour
from conftest import progress, summary

GATE = {"passed": False, "build_id": "b1", "checks": [{"name": "jumps", "passed": False, "message": "+60% at 16:00"},
                                                     {"name": "nulls", "passed": True, "message": "none"}]}


# --- tasks of a small DAG shaped like pipeline.yaml's (the names and product keys build.py reads) ---------------
def extract(product):
    Path(str(product["meta"])).write_text(json.dumps({"build_id": "b1"}))


def validate_fails(product, upstream):
    Path(str(product["report"])).write_text(json.dumps(GATE))
    raise ValueError("validation gate failed: jumps")


def validate_crashes(product, upstream):
    raise KeyError("price")  # before writing a report: the one on disk is an earlier build's


def validate(product, upstream):
    Path(str(product["report"])).write_text(json.dumps({**GATE, "passed": True}))


def train(product, upstream):
    champion = {"version": 3, "model_name": "naive", "rel_mae_1h": 1.0}
    Path(str(product["registry"])).write_text(json.dumps({"champion": champion}))


def forecast(product, upstream):
    pd.DataFrame({"horizon": [2, 1], "target_time": pd.to_datetime(["2025-06-01T14:00Z", "2025-06-01T13:00Z"]),
                  "forecast": [101.0, 100.5], "lower_80": [99.0, 99.5], "upper_80": [103.0, 101.5]}
                 ).to_parquet(str(product["data"]))


def small_dag(folder: Path, gate=validate) -> DAG:
    dag = DAG(executor=Serial(build_in_subprocess=False))
    tasks = [PythonCallable(extract, {"meta": File(folder / "extract.json")}, dag, name="extract"),
             PythonCallable(gate, {"report": File(folder / "validation.json")}, dag, name="validate"),
             PythonCallable(train, {"registry": File(folder / "registry.json")}, dag, name="train"),
             PythonCallable(forecast, {"data": File(folder / "forecast.parquet")}, dag, name="forecast")]
    for up, down in zip(tasks, tasks[1:]):
        up >> down
    return dag


def built(dag: DAG, out: io.StringIO) -> tuple[DAG, DAGBuildError | None]:
    report_progress(dag, "bitcoin", out)
    try:
        dag.build(show_progress=False)
    except DAGBuildError as exc:
        return dag, exc
    return dag, None


def test_a_successful_build_reads_its_tasks_champion_and_next_hour(tmp_path: Path):
    out = io.StringIO()
    dag, failure = built(small_dag(tmp_path), out)
    r = outcome(dag, "bitcoin", "logs/build.log", failure)
    assert failure is None and r.ok and r.message == "ok (ran: extract, validate, train, forecast)"
    assert (r.built, r.tasks, r.failed_task, r.gate_passed) == (("extract", "validate", "train", "forecast"), 4,
                                                                None, True)
    assert r.champion == "naive v3" and r.next_hour == NextHour(pd.Timestamp("2025-06-01T13:00Z"), 100.5, 99.5, 101.5)
    assert [line[:2] for line in progress(out.getvalue())] == [("bitcoin", t) for t in r.built]

    again = outcome(*built(small_dag(tmp_path), io.StringIO()), "bitcoin", None)  # everything up to date
    assert again.ok and again.built == () and again.gate_passed and again.message == "ok (ran: nothing, up to date)"


def test_a_failed_gate_is_read_from_the_task_status_and_its_report(tmp_path: Path):
    out = io.StringIO()
    dag, failure = built(small_dag(tmp_path, validate_fails), out)
    r = outcome(dag, "bitcoin", "logs/build.log", failure)
    assert failure is not None and not r.ok and r.error is None
    assert r.gate_failure == r.message == "validation gate failed: jumps (+60% at 16:00)"
    assert (r.built, r.failed_task, r.gate_passed, r.champion, r.next_hour) == (("extract",), "validate", False,
                                                                                 None, None)
    assert progress(out.getvalue()) == [("bitcoin", "extract", "done"), ("bitcoin", "validate", "FAILED")]


def test_a_crash_in_the_gate_task_is_not_taken_for_an_earlier_verdict(tmp_path: Path):
    (tmp_path / "validation.json").write_text(json.dumps({**GATE, "build_id": "an earlier build"}))
    dag, failure = built(small_dag(tmp_path, validate_crashes), io.StringIO())
    r = outcome(dag, "bitcoin", "logs/build.log", failure)
    assert not r.ok and r.gate_failure is None and r.gate_passed is None and r.failed_task == "validate"
    assert r.error == "KeyError: 'price'" and r.message == "build failed: KeyError: 'price' (details in logs/build.log)"


def test_build_result_ok_message_and_pickling():
    assert BuildResult("bitcoin").ok and BuildResult("bitcoin").message == "ok (ran: nothing, up to date)"
    died = BuildResult("bitcoin", error="worker process died (BrokenProcessPool: ...)")
    assert not died.ok and died.message == "build failed: worker process died (BrokenProcessPool: ...)"
    gate = BuildResult("bitcoin", failed_task="validate", gate_failure="validation gate failed: gaps (7 h)")
    assert not gate.ok and gate.message == "validation gate failed: gaps (7 h)"
    full = BuildResult("bitcoin", ("extract",), 8, champion="naive v1",
                       next_hour=NextHour(pd.Timestamp("2025-06-01T13:00Z"), 1.0, 0.5, 1.5))
    assert pickle.loads(pickle.dumps(full)) == full  # results come back from coin worker processes
    with pytest.raises(AttributeError):
        full.coin = "ethereum"  # type: ignore[misc]


def test_summary_table_one_row_per_coin():
    results = [
        BuildResult("bitcoin", ("extract", "validate"), 8, gate_passed=True, champion="naive v12",
                    next_hour=NextHour(pd.Timestamp("2025-06-01T13:00Z"), 67012.31, 66800.1, 67250.0)),
        BuildResult("ethereum", (), 8, gate_passed=True, champion="drift v2",
                    next_hour=NextHour(pd.Timestamp("2025-06-01T15:00+02:00"), 0.000123456789, 0.0001, 0.00015)),
        BuildResult("nosuchcoin", (), 8, failed_task="extract", error="CoinGeckoError: coin not found"),
        BuildResult("litecoin", ("extract",), 8, failed_task="validate", gate_passed=False,
                    gate_failure="validation gate failed: jumps (+60%)"),
    ]
    text = console.summary_table(results)
    lines = text.splitlines()
    assert len(lines) == 5
    starts = [lines[0].index(c) for c in ("tasks run", "gate", "champion", "next hour (UTC)", "forecast", "80 %")]
    assert all(line[s - 2:s] == "  " and line[s] != " " for line in lines for s in starts), text  # aligned columns
    table = summary("header\n" + text)
    assert table["bitcoin"] == {"coin": "bitcoin", "tasks run": "2 of 8", "gate": "passed", "champion": "naive v12",
                                "next hour (UTC)": "2025-06-01 13:00", "forecast": "67,012.3",
                                "80 % interval": "66,800.1 - 67,250"}
    assert table["ethereum"]["tasks run"] == "0 of 8" and table["ethereum"]["next hour (UTC)"] == "2025-06-01 13:00"
    assert table["ethereum"]["forecast"] == "0.000123457"
    assert table["nosuchcoin"] == {"coin": "nosuchcoin", "tasks run": "0 of 8, extract failed", "gate": "-",
                                   "champion": "-", "next hour (UTC)": "-", "forecast": "-", "80 % interval": "-"}
    assert table["litecoin"]["tasks run"] == "1 of 8, validate failed" and table["litecoin"]["gate"] == "FAILED"
    assert "validation gate failed" not in text  # the reason is the failure's own line, not the table's
    assert console.summary_table([]) == ""


def test_progress_lines_parse_back():
    lines = [console.progress_line("bitcoin", "extract", True, 3.21),
             console.progress_line("a-very-long-coin-id", "validate", False, 1234.5), console.up_to_date_line("eth")]
    assert progress("\n".join(lines)) == [("bitcoin", "extract", "done"), ("a-very-long-coin-id", "validate", "FAILED")]
    assert lines[0] == "  bitcoin    extract   done      3.2 s"


def test_known_ploomber_warnings_are_dropped_and_others_kept():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        console.ignore_known_warnings()
        warnings.warn("These parameters are not used in the task's source code: 'build_hour'")
        warnings.warn("The following placeholders are declared in the environment but unused in the spec: {'coins'}")
        warnings.warn("These parameters are not used in the task's source code: 'days'")  # a real mistake
        warnings.warn("These parameters are not used in the task's source code: 'build_hour', 'days'")
    assert [str(w.message) for w in caught] == [
        "These parameters are not used in the task's source code: 'days'",
        "These parameters are not used in the task's source code: 'build_hour', 'days'"]


def test_notebooks_run_without_progress_bars_and_kernels_log_errors_only():
    dag = {"extract": SimpleNamespace(executor="papermill", executor_params={}),
           "train": SimpleNamespace(executor="ploomber-engine", executor_params={"cwd": "x"}),
           "publish": SimpleNamespace()}
    console.quiet_notebooks(dag)
    assert dag["extract"].executor_params == {"progress_bar": False, "extra_arguments": ["--IPKernelApp.log_level=ERROR"],
                                              "kernel_manager_class": "coincast.operations.kernel.LoggedKernelManager"}
    assert dag["train"].executor_params == {"cwd": "x", "progress_bar": False}


def test_a_papermill_kernels_own_log_goes_to_the_build_log_not_the_console(tmp_path: Path, capfd):
    """The class papermill is given by name (quiet_notebooks): a real kernel, its application log at DEBUG so that
    it writes to its stderr; every line lands in the file of the logger papermill writes to."""
    import asyncio

    from nbclient import NotebookClient
    from nbformat.v4 import new_notebook
    from coincast.operations import kernel

    manager_class = NotebookClient(new_notebook(), kernel_manager_class=console.KERNEL_MANAGER).kernel_manager_class
    assert manager_class is kernel.LoggedKernelManager
    log, lg = tmp_path / "build.log", logging.getLogger("papermill")
    handler = logging.FileHandler(log)
    lg.addHandler(handler)
    try:
        assert kernel.log_file() == str(log) and kernel.log_file("papermill.child") == str(log)

        async def start_and_stop() -> None:
            km = manager_class(kernel_name="python3")
            await km.start_kernel(extra_arguments=["--IPKernelApp.log_level=DEBUG"])
            try:
                kc = km.client()
                kc.start_channels()
                await kc.wait_for_ready(timeout=60)
                kc.stop_channels()
            finally:
                await km.shutdown_kernel(now=True)

        asyncio.run(start_and_stop())
    finally:
        lg.removeHandler(handler)
        handler.close()
    assert "[IPKernelApp] Searching path" in log.read_text(), log.read_text()[:2000]
    assert capfd.readouterr().err == ""


def test_build_root_cause_line():
    text = ("ploomber.exceptions.TaskBuildError: Error when executing task 'extract'\n"
            "coincast.data.sources.coingecko.CoinGeckoError: cannot reach api.coingecko.com: no network?\nNeed help?")
    assert root_cause(text) == "CoinGeckoError: cannot reach api.coingecko.com: no network?"
    # pyarrow's errors end in Invalid; Ploomber's "Need help?" footer is never the cause
    arrow = ("ploomber.exceptions.TaskBuildError: Error when executing task 'publish'\n"
             "pyarrow.lib.ArrowInvalid: Parquet magic bytes not found in footer.\nNeed help? https://ploomber.io/community")
    assert root_cause(arrow) == "ArrowInvalid: Parquet magic bytes not found in footer."
    render = ("ploomber.exceptions.DAGRenderError: Exception when running on_render for DAG \"x\": days must be a "
              "positive whole number of days, got -5\nNeed help? https://ploomber.io/community")
    assert root_cause(render).startswith("DAGRenderError: Exception when running on_render for DAG \"x\": days must")
    assert root_cause("something broke\nNeed help? https://ploomber.io/community") == "something broke"


def test_build_hour_makes_each_new_hour_a_fresh_build():
    live = {"source": "coingecko", "replay_now": None, "build_hour": None}
    assert with_build_hour(live, "2026-01-01T10:59Z")["build_hour"] == "2026-01-01T10:00:00+00:00"
    assert with_build_hour(live, "2026-01-01T11:01Z")["build_hour"] == "2026-01-01T11:00:00+00:00"
    fixed = {**live, "replay_now": "2025-06-01T12:00Z"}
    assert with_build_hour(fixed)["build_hour"] is None  # a fixed clock: a second build is a no-op
    assert with_build_hour({**live, "source": "replay"})["build_hour"] is None


def test_the_notebooks_modules_are_imported_only_once_a_task_will_run(tmp_path: Path, monkeypatch):
    """preload_when_work, chained onto the DAG's own on_render hook (pipeline.yaml's settings check): a build with a
    task to run imports the modules; a no-op build (every task up to date) imports none, and the hook still runs."""
    import sys

    from coincast.operations.build import preload_when_work

    (tmp_path / "probe_build_mod.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "probe_build_mod", raising=False)
    checked = []
    for run in ("first", "no-op"):
        dag = small_dag(tmp_path)
        dag.on_render = lambda dag: checked.append(len(dag))
        preload_when_work(dag, ["probe_build_mod"])
        dag.build(show_progress=False)
        if run == "first":
            assert "probe_build_mod" in sys.modules
            del sys.modules["probe_build_mod"]
        else:
            assert all(str(t.exec_status) == "TaskStatus.Skipped" for t in dag.values()), [t.exec_status for t in dag.values()]
            assert "probe_build_mod" not in sys.modules
    assert checked == [4, 4]  # the DAG's own hook ran both times


def test_the_pipelines_dag_compares_an_unchanged_source_without_normalising_it(project: Path):
    from coincast.config import resolve_root
    from coincast.operations.build import coin_env, load_dag
    from coincast.settings import load_env

    env = resolve_root(load_env(project / "env.yaml", [project / "env.test.yaml"]), project)
    with warnings.catch_warnings():
        console.ignore_known_warnings()  # env.yaml's keys the pipeline does not use
        dag = load_dag(project / "pipeline.yaml", coin_env(env, "bitcoin", project, refetch=False))
    assert type(dag.differ).__name__ == "SameSourceDiffer" and list(dag)[-1] == "publish"


@pytest.mark.pipeline
def test_a_second_build_of_a_coin_waits_for_the_first(project: Path):
    """While another build of bitcoin holds its lock (a tick, a manual build), `coincast task extract --coin bitcoin`
    says in one line that it waits, touches nothing, and runs once the lock is released."""
    import os
    import subprocess
    import time

    from filelock import FileLock

    from conftest import BIN, MLFLOW_EXPORTS

    lock = FileLock(str(project / "logs" / "build-bitcoin.lock"))
    (project / "logs").mkdir()
    output = project / "task.out"
    with lock, output.open("w") as sink:
        proc = subprocess.Popen([str(BIN / "coincast"), "task", "extract", "--coin", "bitcoin", "--project", str(project),
                                 "--env", "env.test.yaml"], cwd=project, stdout=sink, stderr=subprocess.STDOUT, text=True,
                                env={k: v for k, v in os.environ.items() if k not in MLFLOW_EXPORTS})
        try:
            end = time.monotonic() + 120
            while "waiting for another build of bitcoin" not in output.read_text() and time.monotonic() < end:
                assert proc.poll() is None, output.read_text()
                time.sleep(0.1)
            time.sleep(1.0)
            text = output.read_text()
            assert text.count("coincast: bitcoin: waiting for another build of bitcoin to finish (lock ") == 1, text
            assert proc.poll() is None and not (project / "products" / "bitcoin").exists()
        except BaseException:
            proc.kill()
            raise
    assert proc.wait(timeout=300) == 0, output.read_text()
    assert (project / "products" / "bitcoin" / "extract.json").exists()

"""`make bench-airflow`: the same hourly run of 8 simulated coins on Apache Airflow (2 workers) and by `coincast hourly`.

    python bench/airflow.py                  # 8 coins (what issue 17 asks)
    python bench/airflow.py --coins 2        # a smaller run

Two scratch copies of the project get the same settings (env.test.yaml + a bench.yaml: light models, a short
backtest). Each runs two rounds on simulated data: a cold build at env.test.yaml's clock (every coin trains), then
the tick an hour later (no training is due: the steady hourly run). `coincast hourly` builds two coins at a time
(env.cron.yaml's coin_jobs); Airflow runs `make airflow` (standalone: LocalExecutor, AIRFLOW__CORE__PARALLELISM=2, so
two task processes at a time) and each round is one triggered DAG run, timed by Airflow's own dag_run dates.

Per Airflow round: the wall ratio to `coincast hourly`, and the overhead per task in three parts:
- scheduler gap: from the moment a task's upstream tasks had all ended to its start (includes waiting for a free
  one of the 2 slots, so an upper bound of the scheduler's own latency);
- idle slot time: (wall x 2 - the tasks' summed durations) / tasks: worker time spent on no task;
- task process: a task's duration minus what its own progress line says the Ploomber task took (imports, settings,
  Ploomber's render of the coin's DAG in a fresh process; an in-process tick pays them once per coin).
Writes <out>/airflow.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROJECT_FILES = ["pipeline.yaml", "env.yaml", "env.test.yaml", "env.cron.yaml", "notebooks"]
COINS = ["bitcoin", "ethereum", "litecoin", "ripple", "cardano", "solana", "dogecoin", "polkadot"]
CLOCKS = {"cold": "2025-06-01T12:30:00Z", "hourly": "2025-06-01T13:05:00Z"}  # env.test.yaml's clock, an hour on
SETTINGS = {"models": [{"kind": "naive"}, {"kind": "drift", "window": 48}], "backtest_days": 1,
            "calibration_days": 1, "n_jobs": 1, "dvc_snapshot": False}
ENV = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "COINCAST_ENV")}
ENV.update({"PLOOMBER_STATS_ENABLED": "false", "PLOOMBER_VERSION_CHECK_DISABLED": "true",
            "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1", "PYTHONUNBUFFERED": "1"})
PROGRESS = re.compile(r"^  (\S+) +(\S+) +(done|FAILED) +([\d.]+) s$", re.M)
ARGS = ["--env", "env.test.yaml", "--env", "bench.yaml"]


def scratch(dest: Path, coins: list[str], clock: str) -> Path:
    dest.mkdir(parents=True)
    for name in PROJECT_FILES:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy2)(ROOT / name, dest / name)
    set_clock(dest, coins, clock)
    return dest


def set_clock(project: Path, coins: list[str], clock: str) -> None:
    import yaml

    (project / "bench.yaml").write_text(yaml.safe_dump({**SETTINGS, "coins": coins, "replay_now": clock}))


# -- coincast hourly ---------------------------------------------------------------------------------------------
def hourly_round(project: Path) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run([str(BIN / "coincast"), "hourly", "--project", str(project), *ARGS], cwd=project, env=ENV,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"coincast hourly failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return {"wall_seconds": round(wall, 1), "output": done.stdout.strip().splitlines()}


# -- Airflow -----------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def airflow_env(project: Path) -> dict[str, str]:
    """What the airflow CLI needs beside the standalone `make airflow` started (its home, DAG folder and graph)."""
    return {**ENV, "AIRFLOW_HOME": str(project / ".airflow"), "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "airflow" / "dags"),
            "COINCAST_AIRFLOW_GRAPH": str(project / "airflow" / "coincast-dag.json"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "COINCAST_AIRFLOW_SCHEDULE": ""}


def airflow_cli(project: Path, *args: str) -> str:
    done = subprocess.run([str(ROOT / ".venv-airflow" / "bin" / "airflow"), *args], cwd=project,
                          env=airflow_env(project), capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def query(project: Path, sql: str, *params: Any) -> list[tuple]:
    with sqlite3.connect(project / ".airflow" / "airflow.db", timeout=30) as db:
        return db.execute(sql, params).fetchall()


def wait_for(what: str, check: Any, timeout: float, every: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except sqlite3.Error:
            found = None
        if found:
            return found
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


def stamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace(" ", "T"))


def most_at_once(intervals: dict[str, tuple[Any, Any]]) -> tuple[int, list[str]]:
    """How many of the (begin, end) intervals overlap at most, and the first names found overlapping that many."""
    best: tuple[int, list[str]] = (0, [])
    for name, (begin, _) in sorted(intervals.items(), key=lambda kv: kv[1]):
        running = sorted(t for t, (b, e) in intervals.items() if b <= begin < e)
        if len(running) > best[0]:
            best = (len(running), running)
    return best


def airflow_round(project: Path) -> dict[str, Any]:
    """One triggered run to its end; its timings from Airflow's metadata database."""
    known = {r[0] for r in query(project, "SELECT run_id FROM dag_run WHERE dag_id = 'coincast'")}
    airflow_cli(project, "dags", "trigger", "coincast")
    run_id = wait_for("the triggered run", lambda: next(iter({r[0] for r in query(
        project, "SELECT run_id FROM dag_run WHERE dag_id = 'coincast'")} - known), None), 120)
    state = wait_for("the run's end", lambda: next((s for (s,) in query(
        project, "SELECT state FROM dag_run WHERE run_id = ?", run_id) if s in ("success", "failed")), None),
        3600, every=5)
    (start, end), = query(project, "SELECT start_date, end_date FROM dag_run WHERE run_id = ?", run_id)
    tis = {t: (stamp(s), stamp(e), st) for t, s, e, st in query(
        project, "SELECT task_id, start_date, end_date, state FROM task_instance WHERE run_id = ?", run_id)
        if s and e}
    graph = json.loads((project / "airflow" / "coincast-dag.json").read_text())
    upstream = {f"{c}.{t['name']}": [f"{c}.{u}" for u in t["upstream"]] for c in graph["coins"] for t in graph["tasks"]}
    last = [f"{c}.{graph['tasks'][-1]['name']}" for c in graph["coins"]]
    upstream.update({"dvc_snapshot": last, "every_coin": last})
    run_start, run_end = stamp(start), stamp(end)
    gaps = [(tis[t][0] - max([tis[u][1] for u in upstream.get(t, []) if u in tis], default=run_start)).total_seconds()
            for t in tis]
    busy = sum((e - s).total_seconds() for s, e, _ in tis.values())
    wall = (run_end - run_start).total_seconds()
    inside = notebook_seconds(project, run_id)
    ran = [t for t in tis if t in inside]
    return {"state": state, "wall_seconds": round(wall, 1), "tasks": len(tis),
            "scheduler_gap_seconds": {"median": round(statistics.median(gaps), 2), "mean": round(statistics.mean(gaps), 2),
                                      "max": round(max(gaps), 2)},
            "idle_slot_seconds_per_task": round((wall * 2 - busy) / len(tis), 2),
            "task_process_seconds": {"median": round(statistics.median(
                (tis[t][1] - tis[t][0]).total_seconds() - inside[t] for t in ran), 2)} if ran else {},
            "task_seconds": round(busy, 1),
            # the scheduler's limits as it kept them: 2 task slots, the training pool's slots (AIRFLOW_TRAINING_SLOTS)
            "most_tasks_at_once": most_at_once({t: (s, e) for t, (s, e, _) in tis.items()})[0],
            "most_trainings_at_once": most_at_once({t: (s, e) for t, (s, e, _) in tis.items()
                                                    if t.endswith(f".{graph['train']}")})[0]}


def notebook_seconds(project: Path, run_id: str) -> dict[str, float]:
    """Per Airflow task id, the seconds its `coincast task` progress line gives the Ploomber task (0 when up to date)."""
    out: dict[str, float] = {}
    for path in (project / ".airflow" / "logs").rglob("*.log"):
        if f"run_id={run_id}" not in str(path):
            continue
        task_id = next((p.split("=", 1)[1] for p in path.parts if p.startswith("task_id=")), None)
        text = path.read_text(errors="replace")
        found = [float(m.group(4)) for m in map(PROGRESS.match, map(log_event, text.splitlines())) if m]
        if task_id and (found or "up to date" in text):
            out[task_id] = sum(found)
    return out


def log_event(line: str) -> str:
    """The message of one task log line (Airflow 3 writes JSON lines: its "event"), else the line."""
    try:
        return str(json.loads(line).get("event", ""))
    except (ValueError, AttributeError):
        return line


def airflow_rounds(project: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    port = free_port()
    log = open(project / "standalone.log", "w")
    proc = subprocess.Popen(["make", "-s", "-C", str(ROOT), "airflow", f"AIRFLOW_PROJECT={project}",
                             f"AIRFLOW_PORT={port}", "AIRFLOW_EXPORT=" + " ".join(ARGS)],
                            env={**ENV, "COINCAST_AIRFLOW_SCHEDULE": ""}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_for("the DAG parsed", lambda: query(project, "SELECT dag_id FROM dag WHERE dag_id = 'coincast'"), 600)
        airflow_cli(project, "dags", "unpause", "coincast")
        cold = airflow_round(project)
        set_clock(project, json.loads((project / "airflow" / "coincast-dag.json").read_text())["coins"],
                  CLOCKS["hourly"])
        hourly = airflow_round(project)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    return cold, hourly


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "os": platform.platform(),
            "airflow": next(line.split("#")[0].strip() for line in (ROOT / "airflow" / "requirements.in").read_text()
                            .splitlines() if line.startswith("apache-airflow")),
            "load_at_start": os.getloadavg()}


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [f"# Airflow vs `coincast hourly`: {res['coins']} simulated coins, 2 workers", "",
             f"{m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['airflow']}; load average at start "
             f"{m['load_at_start'][0]:.1f}, at end {res['load_at_end'][0]:.1f} (other work on the machine counts).", "",
             "| round | coincast hourly (s) | Airflow run (s) | ratio | tasks | scheduler gap median / mean (s) "
             "| idle slot s per task | task process s (median) | most tasks / trainings at once |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in ("cold", "hourly"):
        c, a = res["coincast"][name], res["airflow"][name]
        lines.append(f"| {name} | {c['wall_seconds']} | {a['wall_seconds']} ({a['state']}) | "
                     f"{a['wall_seconds'] / c['wall_seconds']:.2f} | {a['tasks']} | "
                     f"{a['scheduler_gap_seconds']['median']} / {a['scheduler_gap_seconds']['mean']} | "
                     f"{a['idle_slot_seconds_per_task']} | {a['task_process_seconds'].get('median', '-')} | "
                     f"{a.get('most_tasks_at_once', '-')} / {a.get('most_trainings_at_once', '-')} |")
    lines += ["", "cold: the first build (every coin trains); hourly: the tick an hour later (no training due). "
              "See bench/airflow.py for what each overhead column measures. Most at once: from the task instances' "
              "start and end dates, under the real scheduler (2 task slots; the `coincast_training` pool, 1 slot).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coins", type=int, default=8)
    ap.add_argument("--work", default="/tmp/coincast-bench-airflow", help="scratch folder (emptied first)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)
    coins = COINS[:args.coins]
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    res: dict[str, Any] = {"coins": len(coins), "machine": machine(), "coincast": {}, "airflow": {}}
    tick = scratch(work / "coincast", coins, CLOCKS["cold"])
    res["coincast"]["cold"] = hourly_round(tick)
    set_clock(tick, coins, CLOCKS["hourly"])
    res["coincast"]["hourly"] = hourly_round(tick)
    print("coincast hourly:", res["coincast"], flush=True)
    res["airflow"]["cold"], res["airflow"]["hourly"] = airflow_rounds(scratch(work / "airflow", coins, CLOCKS["cold"]))
    print("airflow:", res["airflow"], flush=True)
    res["load_at_end"] = os.getloadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "airflow.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / "airflow.md").write_text(markdown(res))
    print(markdown(res))
    return 0 if all(r["state"] == "success" for r in res["airflow"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

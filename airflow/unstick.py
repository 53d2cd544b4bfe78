"""airflow/unstick.py PID [GRACE]: wait for the process PID (``airflow dags test``); once its output (a file: its
stdout, as ``make airflow-test`` redirects it) says its executor is shutting down, stop any of its LocalExecutor
workers that stays idle for GRACE seconds (default 15).

Airflow 3.3's LocalExecutor can wait forever at shutdown: ``LocalExecutor.end()`` joins its workers without a
timeout, and now and then one of them sits idle and never takes the message to stop (apache/airflow#67870; seen here
once in 11 runs of the test: the run had ended, every task had finished, and ``airflow dags test`` waited 13 min on one
``airflow worker -- LocalExecutor: <idle>`` before it was stopped by hand). An idle worker runs no task, so stopping
it loses nothing: the join returns and ``dags test`` ends as usual, with its own summary and exit status. Workers
running a task are never touched, whatever the time. Exits when PID does.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

SHUTDOWN = "Shutting down LocalExecutor"
IDLE = "LocalExecutor: <idle>"


def children(pid: int) -> dict[int, str]:
    """The live child processes of ``pid`` with their command lines (from /proc)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                out[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return out


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped by its parent, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def output_file(pid: int) -> Path | None:
    """The regular file ``pid`` writes its standard output to, if it is one (not a terminal or a pipe)."""
    try:
        target = Path(os.readlink(f"/proc/{pid}/fd/1"))
    except OSError:
        return None
    return target if target.is_file() else None


def watch(pid: int, log: Path | None, grace: float = 15.0, poll: float = 1.0) -> list[int]:
    """Until ``pid`` exits: after the shutdown line appears in ``log``, SIGTERM each worker idle for ``grace``
    seconds in a row. Returns the workers stopped. Without a log, only waits."""
    idle_since: dict[int, float] = {}
    stopped: list[int] = []
    while alive(pid):
        time.sleep(poll)
        try:
            shutting_down = log is not None and SHUTDOWN in log.read_text(errors="replace")
        except OSError:
            shutting_down = False
        if not shutting_down:
            continue
        now = time.monotonic()
        idle = {child for child, cmd in children(pid).items() if IDLE in cmd}
        idle_since = {child: idle_since.get(child, now) for child in idle}
        for child, since in idle_since.items():
            if now - since >= grace and child not in stopped:
                print(f"unstick: {IDLE} worker {child} still idle {now - since:.0f} s into the executor's shutdown: "
                      "stopped (apache/airflow#67870)", file=sys.stderr, flush=True)
                try:
                    os.kill(child, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                stopped.append(child)
    return stopped


if __name__ == "__main__":
    watched = int(sys.argv[1])
    watch(watched, output_file(watched), float(sys.argv[2]) if len(sys.argv) > 2 else 15.0)

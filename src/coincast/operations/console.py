"""What a build shows a person: one line per task as it completes, a summary table at the end, and the known
noise kept off the console (here, in one place).

The noise: Ploomber's render warnings about ``build_hour`` (a notebook parameter on purpose, see env.yaml) and
about env.yaml keys the pipeline does not use (env.yaml holds every knob), per-cell progress bars, and each
Jupyter kernel's warning that it talks to papermill over TCP on 127.0.0.1 (and the rest of a kernel's own log:
:mod:`coincast.operations.kernel`). Everything else Ploomber and papermill
say goes to ``logs/build.log`` (:func:`coincast.operations.build.build_log`); Stan's chatter is quieted where Prophet is
used (:mod:`coincast.forecasting.models.prophet_models`).
"""
from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from coincast.operations.build import BuildResult

#: Ploomber warnings that are true by design (matched at the start of the warning's text).
KNOWN_WARNINGS = (
    r"These parameters are not used in the task's source code: 'build_hour'$",
    r"The following placeholders are declared in the environment but unused in the spec",
)
#: Arguments for papermill's kernels: their application log (not the notebook's output) shows errors only.
KERNEL_ARGUMENTS = ("--IPKernelApp.log_level=ERROR",)
#: papermill's kernel manager: a kernel's application log goes to the build's log file (:mod:`.kernel`).
KERNEL_MANAGER = "coincast.operations.kernel.LoggedKernelManager"


def ignore_known_warnings() -> None:
    """Drop :data:`KNOWN_WARNINGS` (call it inside a ``warnings.catch_warnings()`` block); others still show."""
    for pattern in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=UserWarning)


def quiet_notebooks(dag: Any) -> None:
    """No per-cell progress bars for the DAG's notebook tasks, and :data:`KERNEL_ARGUMENTS` and
    :data:`KERNEL_MANAGER` for papermill's kernels (through the tasks' public ``executor_params``)."""
    for name in dag:
        task = dag[name]
        params = getattr(task, "executor_params", None)
        if params is None:  # a Python callable (publish)
            continue
        params["progress_bar"] = False
        if getattr(task, "executor", None) == "papermill":
            params["extra_arguments"] = list(KERNEL_ARGUMENTS)
            params["kernel_manager_class"] = KERNEL_MANAGER


def progress_line(coin: str, task: str, ok: bool, seconds: float) -> str:
    """One task of one coin, as it completes: ``  bitcoin    extract    done     3.2 s``."""
    return f"  {coin:<10} {task:<9} {'done' if ok else 'FAILED':<6} {seconds:6.1f} s"


def up_to_date_line(coin: str) -> str:
    return f"  {coin:<10} up to date: nothing to run"


def number(value: float) -> str:
    """A price at a readable precision: 67,012.3 / 1.23457 / 0.000123457."""
    return f"{value:,.6g}" if math.isfinite(value) else str(value)


def _gate(result: BuildResult) -> str:
    if result.gate_failure:
        return "FAILED"
    return "passed" if result.gate_passed else "-"


def _next_hour(result: BuildResult) -> dict[str, str]:
    nh = result.next_hour
    if nh is None:
        return {"next hour (UTC)": "-", "forecast": "-", "80 % interval": "-"}
    import pandas as pd

    when = pd.Timestamp(nh.target_time)
    when = when.tz_convert("UTC") if when.tzinfo else when
    return {"next hour (UTC)": when.strftime("%Y-%m-%d %H:%M"), "forecast": number(nh.forecast),
            "80 % interval": f"{number(nh.lower_80)} - {number(nh.upper_80)}"}


def summary_rows(results: Iterable[BuildResult]) -> list[dict[str, str]]:
    """One row per coin: tasks run, the gate, the champion and its next-hour forecast (this build's products)."""
    rows = []
    for r in results:
        ran = f"{len(r.built)} of {r.tasks}" if r.tasks else str(len(r.built))
        if r.failed_task:
            ran += f", {r.failed_task} failed"
        elif not r.ok:
            ran += ", failed"
        rows.append({"coin": r.coin, "tasks run": ran, "gate": _gate(r), "champion": r.champion or "-",
                     **_next_hour(r)})
    return rows


def summary_table(results: Iterable[BuildResult]) -> str:
    """The build's summary as a plain-text table, left-aligned (readable in a log file too)."""
    rows = summary_rows(results)
    if not rows:
        return ""
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(row[c]) for row in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(row[c].ljust(widths[c]) for c in columns) for row in rows]
    return "\n".join(line.rstrip() for line in lines)

"""`make bench`: how fast coincast is, how far from the plain-script limit, and how the cost grows.

Every figure is measured in this one run, side by side, each in a fresh process (so imports count, as they do
for cron): the median of ``--reps`` runs with min and max, and the peak resident memory of the process tree
(``ru_maxrss`` from ``wait4``). Results go to bench/results/speed.{json,md} with a description of the machine.

    python bench/speed.py                 # the full suite (~30 min on 2 cores)
    python bench/speed.py --quick         # one repetition on small data (no timing claims)
    python bench/speed.py --smoke         # the harness on tiny data, as `make test` runs it (no timing claims)
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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROJECT_FILES = ["pipeline.yaml", "env.yaml", "env.test.yaml", "env.cron.yaml", "notebooks"]
T0 = "2025-06-01T12:05:00Z"
ENV = {**os.environ, "PLOOMBER_STATS_ENABLED": "false", "PLOOMBER_VERSION_CHECK_DISABLED": "true",
       "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1", "YDATA_PROFILING_NO_ANALYTICS": "True"}
ENV.pop("MLFLOW_TRACKING_URI", None)
ENV.pop("COINCAST_ENV", None)
CHROMIUM = Path("/usr/bin/chromium")


# -- measuring ---------------------------------------------------------------------------------------
def measure(cmd: list[str], cwd: Path, timeout: float = 3600) -> dict[str, Any]:
    """Run ``cmd``; wall seconds, CPU seconds (user + system, the process and the children it waited for),
    peak RSS (MB) of its process tree, output."""
    out = tempfile.TemporaryFile(mode="w+")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = start + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise TimeoutError(f"{cmd} took longer than {timeout} s")
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    text = out.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{text[-3000:]}")
    return {"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024,
            "output": text}


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "n": len(values)}


def repeat(reps: int, once: Callable[[int], dict[str, Any]]) -> dict[str, Any]:
    runs = [once(i) for i in range(reps)]
    out = {"seconds": summary([r["seconds"] for r in runs]), "peak_mb": summary([r["peak_mb"] for r in runs])}
    for key in runs[0]:
        if key not in ("seconds", "peak_mb", "output") and isinstance(runs[0][key], (int, float)):
            out[key] = summary([r[key] for r in runs])
    return out


def paired(n: int, key_a: str, once_a: Callable[[int], dict[str, Any]], key_b: str,
           once_b: Callable[[int], dict[str, Any]]) -> dict[str, Any]:
    """``n`` runs of each, interleaved a b / b a / a b ... so that a shared machine's drift hits both alike;
    also the median [min–max] of the per-pair ratios a/b, of wall seconds and of CPU seconds (the latter moves
    less with another tenant's load on a shared machine)."""
    runs_a: list[dict[str, Any]] = []
    runs_b: list[dict[str, Any]] = []
    for i in range(n):
        for once, runs in ((once_a, runs_a), (once_b, runs_b))[:: 1 if i % 2 == 0 else -1]:
            runs.append(once(i))
    out = {key: repeat(n, lambda i, runs=runs: runs[i]) for key, runs in ((key_a, runs_a), (key_b, runs_b))}
    out[f"{key_a}_paired_ratio"] = summary([a["seconds"] / b["seconds"] for a, b in zip(runs_a, runs_b)])
    out[f"{key_a}_paired_cpu_ratio"] = summary([a["cpu_seconds"] / b["cpu_seconds"] for a, b in zip(runs_a, runs_b)])
    return out


def task_seconds(output: str) -> dict[str, float]:
    """{task: seconds} from Ploomber's build report (name / Ran? / Elapsed (s)) or from the progress lines of
    ``coincast build`` (coincast.operations.console.task_line; summed over the coins)."""
    found: dict[str, float] = {}
    for m in re.finditer(r"^(\w+)\s+(True|False)\s+([\d.]+)", output, re.M):
        found[m.group(1)] = float(m.group(3))
    for m in re.finditer(r"^  \S+ +(\w+) +(?:done|FAILED) +([\d.]+) s$", output, re.M):
        found[m.group(1)] = found.get(m.group(1), 0.0) + float(m.group(2))
    return found


# -- the project under test ----------------------------------------------------------------------------
SMOKE = {"days": 10, "backtest_days": 1, "calibration_days": 1, "models": [{"kind": "naive"}],
         "profile_enabled": False}  # the harness, not ydata (its cost is measured on its own: "profile")


class Bench:
    def __init__(self, work: Path, quick: bool, smoke: bool = False):
        self.work = work
        self.quick = quick or smoke
        self.smoke = smoke  # the harness itself on the tiniest project that builds (make test)
        self.n = 0
        self.built: dict[str, Path] = {}  # the cold builds' projects (smoke: the ticks start from them)

    def project(self, variant: dict[str, Any] | None = None) -> Path:
        """A fresh copy of the project (no data, no products, no MLflow) with a bench variant file."""
        self.n += 1
        dest = self.work / f"p{self.n:03d}"
        dest.mkdir(parents=True)
        for name in PROJECT_FILES:
            src = ROOT / name
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / name)
        base = {"source": "simulated", "coins": ["bitcoin"], "replay_now": T0, "dvc_snapshot": False}
        if self.quick:
            base.update(SMOKE if self.smoke else {"days": 30, "backtest_days": 5, "calibration_days": 3})
        import yaml

        (dest / "env.bench.yaml").write_text(yaml.safe_dump({**base, **(variant or {})}))
        return dest

    def coincast(self, project: Path, *args: str, cron: bool = False) -> list[str]:
        envs = ["--env", "env.cron.yaml"] if cron else []
        return [str(BIN / "coincast"), *args, "--project", str(project), *envs, "--env", "env.bench.yaml"]

    def plain(self, project: Path, now: str, cron: bool = False) -> list[str]:
        envs = ["--env", "env.cron.yaml"] if cron else []
        return [str(BIN / "python"), str(ROOT / "bench" / "plain.py"), "--project", str(project), "--products",
                str(project / "plain-products"), *envs, "--env", "env.bench.yaml", "--now", now]


def hours_after(t: str, h: int) -> str:
    import pandas as pd

    return (pd.Timestamp(t) + pd.Timedelta(hours=h)).isoformat()


# -- the measurements ---------------------------------------------------------------------------------------
def cold_builds(b: Bench, reps: int) -> tuple[dict[str, Any], Path]:
    results: dict[str, Any] = {}
    built: Path | None = None

    def papermill(i: int) -> dict[str, Any]:
        nonlocal built
        p = b.project()
        r = measure(b.coincast(p, "build"), p)
        built = p
        return {**r, **{f"task_{k}": v for k, v in task_seconds(r["output"]).items()}}

    if not b.smoke:  # smoke: the same measure as the in-process build below, with papermill's ~55 s of kernels
        results["build_papermill"] = repeat(reps, papermill)  # (papermill builds: tests/test_pipeline.py's live path)

    def engine(i: int) -> dict[str, Any]:
        p = b.project({"notebook_executor": "ploomber-engine", "executed_format": "ipynb"})
        r = measure(b.coincast(p, "build"), p)
        b.built["engine"] = p
        return {**r, **{f"task_{k}": v for k, v in task_seconds(r["output"]).items()}}

    results["build_engine"] = repeat(reps, engine)
    built = built or b.built["engine"]
    def plain(i: int) -> dict[str, Any]:
        b.built["plain"] = b.project()
        return measure(b.plain(b.built["plain"], T0), ROOT)

    results["build_plain"] = repeat(reps, plain)
    assert built is not None
    return results, built


FLOOR_NOTEBOOK = """# %% tags=["parameters"]
upstream = None
product = None

# %%
x = 1
"""


def floor_project(work: Path) -> Path:
    """Ploomber's own fixed cost: a pipeline of one trivial notebook task, in the same environment."""
    dest = work / "floor"
    dest.mkdir(parents=True)
    (dest / "pipeline.yaml").write_text("tasks:\n  - source: trivial.py\n    product: trivial.ipynb\n")
    (dest / "trivial.py").write_text(FLOOR_NOTEBOOK)
    return dest


def noop_builds(b: Bench, built: Path, reps: int) -> dict[str, Any]:
    out = {"noop_coincast_build": repeat(reps, lambda i: measure(b.coincast(built, "build"), built))}
    # plain Ploomber: build once, then the same command again is the no-op
    p = b.project()
    flags = ["--env--source", "simulated", "--env--replay_now", T0]
    if b.quick:
        tiny = SMOKE if b.smoke else {"days": 30, "backtest_days": 5, "calibration_days": 3}
        flags += [f for k in ("days", "backtest_days", "calibration_days", "profile_enabled") if k in tiny
                  for f in (f"--env--{k}", str(tiny[k]).lower())]
        if "models" in tiny:  # Ploomber reads a --env-- value as a Python literal (ast.literal_eval)
            flags += ["--env--models", repr(tiny["models"])]
    if b.smoke:  # its cold build only prepares the no-op: in-process, without HTML (~35 s less than papermill)
        flags += ["--env--notebook_executor", "ploomber-engine", "--env--executed_format", "ipynb"]
    cmd = [str(BIN / "ploomber"), "build", "--entry-point", "pipeline.yaml", *flags]
    floor = floor_project(b.work)
    floor_cmd = [str(BIN / "ploomber"), "build", "--entry-point", "pipeline.yaml"]
    measure(cmd, p)
    measure(floor_cmd, floor)
    runs = []

    def counted(command: list[str], cwd: Path) -> Callable[[int], dict[str, Any]]:
        def once(i: int) -> dict[str, Any]:  # keeps the tasks each run ran: a no-op runs none
            r = measure(command, cwd)
            runs.append(task_seconds(r["output"]))
            return r
        return once

    # interleaved with the floor, so that the difference is the pipeline's own no-op work
    out.update(paired(reps, "noop_ploomber_build", counted(cmd, p), "noop_ploomber_floor", counted(floor_cmd, floor)))
    out["noop_ploomber_build"]["tasks_run"] = sum(1 for r in runs for v in r.values() if v > 0)
    return out


def ticks(b: Bench, reps: int) -> dict[str, Any]:
    """Light ticks (no retraining due) as cron runs them, against the plain script doing the same, each
    from the same state: a build at T0 and one tick an hour later."""
    engine = {"notebook_executor": "ploomber-engine", "executed_format": "ipynb"}
    if b.smoke and {"engine", "plain"} <= set(b.built):  # the same state: the cold builds at T0
        notebook, plain = b.built["engine"], b.built["plain"]
    else:
        notebook, plain = b.project(engine), b.project()
        measure(b.coincast(notebook, "build"), notebook)
        measure(b.plain(plain, T0), ROOT)
    if not b.smoke:  # a first tick each, unmeasured (smoke: no timing claim, the measured pair is the first)
        measure(b.coincast(notebook, "hourly", cron=True) + ["--now", hours_after(T0, 1)], notebook)
        measure(b.plain(plain, hours_after(T0, 1), cron=True), ROOT)
    pairs = max(reps, 7) if not b.quick else reps
    out = paired(pairs, "tick_coincast", lambda i: measure(
        b.coincast(notebook, "hourly", cron=True) + ["--now", hours_after(T0, 2 + i)], notebook),
                 "tick_plain", lambda i: measure(b.plain(plain, hours_after(T0, 2 + i), cron=True), ROOT))
    import pandas as pd

    a = pd.read_parquet(notebook / "products/bitcoin/forecast.parquet")
    c = pd.read_parquet(plain / "plain-products/bitcoin/forecast.parquet")
    cols = ["forecast", "lower_80", "upper_80", "lower_95", "upper_95"]
    out["plain_forecast_max_rel_diff"] = float(((a[cols] - c[cols]).abs() / c[cols].abs()).max().max())
    replayed = measure(b.coincast(notebook, "replay", cron=True) + [
        "--hours", str(reps if b.smoke else max(reps, 3)), "--start", hours_after(T0, 2 + pairs), "--no-progress"], notebook)
    report = json.loads(Path(re.search(r"report written to (\S+)", replayed["output"]).group(1)).read_text())
    out["tick_in_process_seconds"] = report["tick_seconds"]
    return out


IMPORTS = {  # what a tick process imports before any work (as each does it): the pipeline's path vs the plain script's
    "imports_tick_coincast": ("from coincast.operations.build import preload_build; "
                              "preload_build({'notebook_executor': 'ploomber-engine'})"),
    "imports_tick_plain": "from coincast.patches import PIPELINE_MODULES, preload; preload(PIPELINE_MODULES)",
}


def imports(reps: int, smoke: bool = False) -> dict[str, Any]:
    (key_a, code_a), (key_b, code_b) = IMPORTS.items()
    return paired(reps if smoke else max(reps, 5), key_a, lambda i: measure([str(BIN / "python"), "-c", code_a], ROOT),
                  key_b, lambda i: measure([str(BIN / "python"), "-c", code_b], ROOT))


BACKTEST = """
import sys, time, json
from coincast import files
from coincast.forecasting.backtest import backtest
from coincast.operations.training import backtest_settings
from coincast.settings import group, load_env
from coincast.timeseries import observed_series
env = load_env(sys.argv[1] + "/env.yaml", [sys.argv[1] + "/env.bench.yaml"])
y = observed_series(files.read_frame(sys.argv[1] + "/products/bitcoin/raw.parquet"))
s = backtest_settings(**group(env, "backtest"))
t = time.perf_counter(); r = backtest(y, env["models"], s); dt = time.perf_counter() - t
print(json.dumps({"backtest_seconds": dt, "origins": int(env["backtest_days"]) * 24, "models": len(r.summary["models"])}))
"""

PROFILE = """
import sys, time, json
from coincast import files
from coincast.data.profiling import profile_html
f = files.read_frame(sys.argv[1] + "/products/bitcoin/features.parquet")
t = time.perf_counter(); html = profile_html(f, title="bench"); dt = time.perf_counter() - t
print(json.dumps({"report_seconds": dt, "rows": len(f), "columns": f.shape[1]}))
"""


def in_process(b: Bench, built: Path, reps: int, code: str) -> dict[str, Any]:
    def once(i: int) -> dict[str, Any]:
        r = measure([str(BIN / "python"), "-c", code, str(built)], built)
        return {**r, **json.loads(r["output"].strip().splitlines()[-1])}

    return repeat(reps, once)


def dashboard(built: Path, reps: int, warm_seconds: float = 8) -> dict[str, Any]:
    """First render in headless Chromium: navigation -> the numbers and the forecast chart drawn, on a warm
    server (``make dashboard``'s launcher, its pre-heated kernel given ``warm_seconds`` to import; the smoke run,
    which makes no timing claim, gives it none)."""
    if not CHROMIUM.exists():
        return {"skipped": "/usr/bin/chromium is absent (apt-get install chromium)"}
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = built / "voila.log"
    server = subprocess.Popen([str(BIN / "python"), "-m", "coincast.dashboard", "--project", str(built), "--port",
                               str(port)], cwd=built, env=ENV, stdout=log.open("w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    renders = []
    try:
        deadline = time.monotonic() + 120
        while "is filled with" not in log.read_text():
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"dashboard did not start: {log.read_text()[-2000:]}")
            time.sleep(0.25)
        time.sleep(warm_seconds)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"])
            for i in range(reps):
                page = browser.new_page(viewport={"width": 1300, "height": 900})
                t = time.monotonic()
                page.goto(f"http://127.0.0.1:{port}/", wait_until="commit", timeout=120_000)
                page.wait_for_selector(".cc-forecast-chart .js-plotly-plot .main-svg", timeout=120_000)
                page.wait_for_selector(".cc-forecast", timeout=30_000)
                renders.append(time.monotonic() - t)
                page.close()
                if i + 1 < reps:
                    time.sleep(warm_seconds)  # the server pre-heats the next kernel
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    return {"first_render_seconds": summary(renders)}


def growth(b: Bench) -> dict[str, Any]:
    """One repetition per size. Coins 1/2/4/8: a cold build with two coins at a time (coin_jobs=2: each coin's
    DAG in its own worker process on the 2 cores), the same build one coin at a time for comparison (not at
    the largest size: it took 378 s in series before), then light ticks on the built project, one coin at a
    time and two at a time, alternating. History 30/90/365 days: cold build of one coin."""
    coins_all = ["bitcoin", "ethereum", "litecoin", "ripple", "cardano", "solana", "dogecoin", "polkadot"]
    sizes = [2] if b.smoke else [1, 2] if b.quick else [1, 2, 4, 8]  # smoke: one size runs every branch
    out: dict[str, Any] = {"coins": {}, "days": {}}
    engine = {"notebook_executor": "ploomber-engine", "executed_format": "ipynb"}
    for n in sizes:
        entry: dict[str, Any] = {}
        if not b.smoke and (1 < n < max(sizes) or b.quick and n > 1):
            serial = b.project({**engine, "coins": coins_all[:n], "coin_jobs": 1})
            build = measure(b.coincast(serial, "build"), serial)
            entry.update({"build_serial_seconds": round(build["seconds"], 2),
                          "build_serial_peak_mb": round(build["peak_mb"])})
        p = b.project({**engine, "coins": coins_all[:n], "coin_jobs": 2})
        build = measure(b.coincast(p, "build"), p)
        entry.update({"build_seconds": round(build["seconds"], 2), "build_peak_mb": round(build["peak_mb"])})
        ticks_by_jobs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        # smoke: the tick with coins side by side only (one at a time is the tick `ticks` measures)
        schedule = [2] if b.smoke else ([1, 2, 1, 2] if n > 1 else [1, 1])
        for i, jobs in enumerate(schedule):
            tick = measure(b.coincast(p, "hourly", cron=True) + ["--set", f"coin_jobs={jobs}",
                                                                "--now", hours_after(T0, 1 + i)], p)
            ticks_by_jobs[jobs].append(tick)
        for jobs, runs in ticks_by_jobs.items():
            if runs:
                key = "tick_serial" if jobs == 1 else "tick"
                entry[f"{key}_seconds"] = round(statistics.median(r["seconds"] for r in runs), 2)
                entry[f"{key}_peak_mb"] = round(max(r["peak_mb"] for r in runs))
        if n == 1:
            entry["tick_seconds"], entry["tick_peak_mb"] = entry["tick_serial_seconds"], entry["tick_serial_peak_mb"]
        out["coins"][str(n)] = entry
    for days in ([] if b.smoke else [30] if b.quick else [30, 90, 365]):  # smoke: the same build as a coin size
        # 30 days cannot hold a 30-day backtest + 7 calibration days + a week of history: 14 days are backtested
        p = b.project({**engine, "days": days, **({"backtest_days": 14} if days < 45 and not b.quick else {})})
        try:
            build = measure(b.coincast(p, "build"), p)
        except RuntimeError as exc:  # a size that cannot be built is a finding, not the end of the run
            out["days"][str(days)] = {"error": str(exc).splitlines()[-1][:300]}
            continue
        out["days"][str(days)] = {"build_seconds": round(build["seconds"], 2), "build_peak_mb": round(build["peak_mb"]),
                                  **{f"task_{k}": round(v, 2) for k, v in task_seconds(build["output"]).items()}}
    return out


# -- the machine and the report -------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = None
    try:
        mem = round(int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    from importlib import metadata

    versions = {p: metadata.version(p) for p in ("ploomber", "ploomber-engine", "papermill", "prophet", "mlflow",
                                                 "ydata-profiling", "pandas", "voila", "dvc")}
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": mem, "python": platform.python_version(),
            "os": platform.platform(), "packages": versions, "load_at_start": os.getloadavg()}


def ratio(a: dict[str, Any], b: dict[str, Any]) -> float:
    return round(a["seconds"]["median"] / b["seconds"]["median"], 2)


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    r = res["results"]
    lines = [f"# coincast speed benchmark ({'smoke' if res.get('smoke') else 'quick' if res['quick'] else 'full'})", "",
             f"Measured {res['date']} on {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, Python {m['python']} "
             f"(load average at start {', '.join(f'{x:.1f}' for x in m['load_at_start'])}). Each figure: median "
             f"[min–max] of {res['reps']} fresh processes (imports included; the tick, the plain tick and the imports: "
             f"{r.get('tick_coincast', r.get('imports_tick_coincast', {})).get('seconds', {}).get('n', res['reps'])} "
             f"interleaved pairs); CPU s = median user + system seconds of the process and the children it waited for; "
             f"peak = max resident memory of the process tree. Data: simulated, 1 coin, {res['days']} days, default models.", "",
             "| what | seconds | CPU s | peak MB | target |", "|---|---|---|---|---|"]

    def row(label: str, key: str, target: str = "") -> None:
        if key in r:
            s, p = r[key]["seconds"], r[key]["peak_mb"]
            cpu = r[key].get("cpu_seconds", {}).get("median")
            lines.append(f"| {label} | {s['median']:.2f} [{s['min']:.2f}–{s['max']:.2f}] | "
                         f"{'' if cpu is None else f'{cpu:.2f}'} | {p['median']:.0f} | {target} |")

    row("cold full build, papermill (make demo's executor)", "build_papermill")
    row("cold full build, ploomber-engine", "build_engine")
    row("cold full build, plain script (the limit)", "build_plain")
    row("no-op `coincast build`", "noop_coincast_build", "≤ 3 s")
    row("no-op `ploomber build`", "noop_ploomber_build", "≤ 3 s")
    row("… Ploomber's floor: no-op `ploomber build` of one trivial notebook task", "noop_ploomber_floor")
    row("hourly tick, `coincast hourly` (cron's command)", "tick_coincast")
    row("hourly tick, plain script (the limit)", "tick_plain")
    row("… of which imports: the tick's (ploomber, ploomber-engine, IPython + the package)", "imports_tick_coincast")
    row("… of which imports: the plain script's (the package)", "imports_tick_plain")
    row("profile step, fresh process (report + import)", "profile")
    row("backtest, fresh process", "backtest")
    lines += ["", "| ratio | value | target |", "|---|---|---|"]
    for label, key, target in (("tick: coincast hourly / plain", "tick_ratio", "≤ 1.5"),
                               ("build: papermill / plain", "build_ratio_papermill", ""),
                               ("build: ploomber-engine / plain", "build_ratio_engine", "")):
        if key in res["ratios"]:
            lines.append(f"| {label} | {res['ratios'][key]} | {target} |")
    if "tick_ratio_paired" in res["ratios"]:
        q = res["ratios"]["tick_ratio_paired"]
        lines.append(f"| tick, per interleaved pair (tick, plain run back to back; {q['n']} pairs) | "
                     f"{q['median']:.2f} [{q['min']:.2f}–{q['max']:.2f}] | ≤ 1.5 |")
    if "tick_cpu_ratio_paired" in res["ratios"]:
        q = res["ratios"]["tick_cpu_ratio_paired"]
        lines.append(f"| tick, CPU seconds (user + system) per pair: less moved by other load on the machine | "
                     f"{q['median']:.2f} [{q['min']:.2f}–{q['max']:.2f}] | |")
    extra = []
    if "profile" in r:
        extra.append(f"- profile report alone (import excluded): {r['profile']['report_seconds']['median']:.2f} s; "
                     f"profile task in the {'papermill' if 'build_papermill' in r else 'in-process'} build: "
                     f"{r.get('build_papermill', r['build_engine']).get('task_profile', {}).get('median', float('nan')):.2f} s "
                     "(target ≤ 10 s)")
    if "backtest" in r:
        extra.append(f"- backtest alone: {r['backtest']['backtest_seconds']['median']:.2f} s for "
                     f"{int(r['backtest']['origins']['median'])} origins × {int(r['backtest']['models']['median'])} models "
                     "(target: 720 origins ≤ 60 s)")
    if "noop_ploomber_floor" in r:
        f, n = r["noop_ploomber_floor"]["seconds"]["median"], r["noop_ploomber_build"]["seconds"]["median"]
        extra.append(f"- no-op `ploomber build`: Ploomber's fixed cost here (one trivial notebook task, runs interleaved "
                     f"with the pipeline's) is {f:.2f} s against the 3 s target; coincast's 8 tasks add {n - f:+.2f} s "
                     f"(per-pair ratio {r['noop_ploomber_build_paired_ratio']['median']:.2f})")
    if "plain_forecast_max_rel_diff" in r:
        extra.append(f"- the plain script computes the same thing: its forecast after the same ticks differs from "
                     f"the pipeline's by at most {r['plain_forecast_max_rel_diff']:.1e} (relative)")
    if "tick_in_process_seconds" in r:
        t = r["tick_in_process_seconds"]
        extra.append(f"- tick inside one process (a replay; no start-up): median {t.get('median')} s, max {t.get('max')} s")
    if "coins_per_hour" in res["ratios"]:
        extra.append(f"- coins of hourly ticks per hour on this machine: {res['ratios']['coins_per_hour']:.0f} "
                     "(3600 s × coins / seconds of the largest growth run's tick, two coins at a time; target ≥ 100)")
    if "dashboard" in r:
        d = r["dashboard"]
        extra.append("- dashboard first render: " + (d["skipped"] if "skipped" in d else
                     f"{d['first_render_seconds']['median']:.2f} s [{d['first_render_seconds']['min']:.2f}–"
                     f"{d['first_render_seconds']['max']:.2f}] (navigation → numbers and chart drawn; warm server)"))
    lines += ["", *extra]
    if "growth" in r:
        g = r["growth"]
        lines += ["", "Growth (one run each, ploomber-engine; ticks: median of 2; \"2 at a time\" = coin_jobs 2, each coin's "
                  "DAG in its own worker process):", "",
                  "| coins | cold build s, 2 at a time | cold build s, 1 at a time | tick s, 2 at a time | "
                  "tick s, 1 at a time | build peak MB (2 at a time) |", "|---|---|---|---|---|---|"]
        lines += [f"| {n} | {v['build_seconds']} | {v.get('build_serial_seconds', '—' if int(n) > 1 else v['build_seconds'])} | "
                  f"{v['tick_seconds']} | {v.get('tick_serial_seconds', '')} | {v['build_peak_mb']} |"
                  for n, v in g["coins"].items()]
        lines += ["", "| days of history | cold build s | extract | profile | train | peak MB |", "|---|---|---|---|---|---|"]
        lines += [f"| {d} | {v['build_seconds']} | {v.get('task_extract', '')} | {v.get('task_profile', '')} | "
                  f"{v.get('task_train', '')} | {v['build_peak_mb']} |" if "error" not in v else f"| {d} | failed: "
                  f"{v['error']} | | | | |" for d, v in g["days"].items()]
        if not res["quick"]:
            lines.append("\n(30 days: 14 backtested days instead of 30, which do not fit in 30 days of history.)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repetition, small data")
    parser.add_argument("--smoke", action="store_true", help="one repetition, tiny data: the harness works (make test)")
    parser.add_argument("--reps", type=int, help="repetitions (default 3; --quick: 1)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="results folder")
    parser.add_argument("--name", help="results file name (default speed, or speed-quick)")
    parser.add_argument("--skip", action="append", default=[], help="build|noop|tick|profile|backtest|dashboard|growth")
    args = parser.parse_args(argv)
    quick = args.quick or args.smoke
    reps = args.reps or (1 if quick else 3)
    name = args.name or ("speed-smoke" if args.smoke else "speed-quick" if quick else "speed")
    days = SMOKE["days"] if args.smoke else 30 if quick else 90
    res: dict[str, Any] = {"quick": quick, "smoke": args.smoke, "reps": reps, "days": days, "machine": machine(),
                           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "results": {}, "ratios": {}}
    r = res["results"]
    with tempfile.TemporaryDirectory(prefix="coincast-bench-") as tmp:
        b = Bench(Path(tmp), quick, args.smoke)
        step = lambda label: print(f"bench: {label} ...", file=sys.stderr, flush=True)  # noqa: E731
        step("cold builds (papermill, ploomber-engine, plain)" if not args.smoke else "cold builds (ploomber-engine, plain)")
        builds, built = cold_builds(b, reps)
        r.update(builds)
        def save() -> None:  # after every step: a late failure must not lose what was measured
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"{name}.partial.json").write_text(json.dumps(res, indent=2, default=str) + "\n")

        save()
        if "noop" not in args.skip:
            step("no-op builds")
            r.update(noop_builds(b, built, reps))
            save()
        if "tick" not in args.skip:
            step("hourly ticks")
            r.update(ticks(b, reps))
            save()
        if "tick" not in args.skip:
            step("import costs")
            r.update(imports(reps, args.smoke))
            save()
        if "profile" not in args.skip:
            step("profile")
            r["profile"] = in_process(b, built, reps, PROFILE)
            save()
        if "backtest" not in args.skip:
            step("backtest")
            r["backtest"] = in_process(b, built, reps, BACKTEST)
            save()
        if "dashboard" not in args.skip:
            step("dashboard first render")
            r["dashboard"] = dashboard(built, reps, 0 if args.smoke else 8)
            save()
        if "growth" not in args.skip:
            step("growth")
            r["growth"] = growth(b)
    if "tick_coincast" in r:
        res["ratios"]["tick_ratio"] = ratio(r["tick_coincast"], r["tick_plain"])
        res["ratios"]["tick_ratio_paired"] = r["tick_coincast_paired_ratio"]
        res["ratios"]["tick_cpu_ratio_paired"] = r["tick_coincast_paired_cpu_ratio"]
    if "build_papermill" in r:
        res["ratios"]["build_ratio_papermill"] = ratio(r["build_papermill"], r["build_plain"])
    res["ratios"]["build_ratio_engine"] = ratio(r["build_engine"], r["build_plain"])
    if "growth" in r and r["growth"]["coins"]:
        n, v = max(((int(k), v) for k, v in r["growth"]["coins"].items()), key=lambda kv: kv[0])
        res["ratios"]["coins_per_hour"] = round(3600 / (v["tick_seconds"] / n), 0)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (args.out / f"{name}.md").write_text(markdown(res))
    (args.out / f"{name}.partial.json").unlink(missing_ok=True)
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

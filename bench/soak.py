"""`make bench-soak`: two writers under load. Many coins built two at a time for many replayed ticks, retraining
often, against one sqlite MLflow store; then every registry version and alias is checked.

    python bench/soak.py                          # 8 coins, coin_jobs 2, 48 ticks (what issue 14 asks)
    python bench/soak.py --coins 4 --hours 8      # a smaller run (the test suite's)

Writes <out>/soak.{json,md}: ticks, failures, per coin the versions, aliases and training/live runs, and every
inconsistency found (none expected). Exit status 1 if a tick failed or the registry is inconsistent.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROJECT_FILES = ["pipeline.yaml", "env.yaml", "env.test.yaml", "env.cron.yaml", "notebooks"]
COINS = ["bitcoin", "ethereum", "litecoin", "ripple", "cardano", "solana", "dogecoin", "polkadot"]
START = "2025-06-01T13:05:00Z"  # the first tick after env.test.yaml's clock
ENV = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "COINCAST_ENV")}
ENV.update({"PLOOMBER_STATS_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1"})
#: light models and a short backtest: the point is many registrations side by side, not accuracy
SETTINGS = ["models=[{kind: naive}, {kind: drift, window: 48}, {kind: seasonal_naive, season: 24}]",
            "backtest_days=1", "calibration_days=1", "dvc_snapshot=false", "n_jobs=1"]


def check_registry(client: Any, coin: str, experiment_id: str) -> dict[str, Any]:
    """The registry facts of one coin and every inconsistency among them: versions numbered 1..n without a hole,
    each version's run existing and tagged with this coin, the champion and challenger aliases on existing
    versions, the champion's model the one the version says, one live run per coin."""
    from mlflow.exceptions import MlflowException

    name = f"coincast-{coin}"
    problems: list[str] = []
    versions = client.search_model_versions(f"name = '{name}'")
    numbers = sorted(int(v.version) for v in versions)
    if numbers != list(range(1, len(numbers) + 1)):
        problems.append(f"{name}: versions {numbers} are not 1..{len(numbers)}")
    for v in versions:
        try:
            run = client.get_run(v.run_id)
        except MlflowException:
            problems.append(f"{name} v{v.version}: its run {v.run_id} does not exist")
            continue
        if run.data.tags.get("coin") != coin or v.tags.get("coin") != coin:
            problems.append(f"{name} v{v.version}: tagged for another coin ({run.data.tags.get('coin')})")
        if v.tags.get("run_id") != v.run_id:
            problems.append(f"{name} v{v.version}: tag run_id {v.tags.get('run_id')} != its run {v.run_id}")
    aliases = {}
    for alias in ("champion", "challenger"):
        try:
            mv = client.get_model_version_by_alias(name, alias)
            aliases[alias] = str(mv.version)
            if int(mv.version) not in numbers:
                problems.append(f"{name}: alias {alias} points to a missing version {mv.version}")
        except MlflowException as exc:
            problems.append(f"{name}: alias {alias} unreadable ({exc.error_code})")
    training = client.search_runs([experiment_id], filter_string=f"tags.coin = '{coin}'")
    live = [r for r in training if r.data.tags.get("coincast.live_coin") == coin]
    builds = [r for r in training if "coincast.live_coin" not in r.data.tags]
    if len(live) != 1:
        problems.append(f"{coin}: {len(live)} live runs (expected 1)")
    return {"versions": len(numbers), "aliases": aliases, "training_runs": len(builds), "live_runs": len(live),
            "problems": problems}


def project(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name in PROJECT_FILES:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, folder / name)
    return folder


def soak(folder: Path, coins: int, hours: int, jobs: int, retrain_every: int) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    p = project(folder)
    names = COINS[:coins] if coins <= len(COINS) else [f"coin{i}" for i in range(coins)]
    cmd = [str(BIN / "coincast"), "replay", "--project", str(p), "--env", "env.test.yaml", "--hours", str(hours),
           "--start", START, "--no-progress", "--coins", ",".join(names), "--set", f"coin_jobs={jobs}",
           "--set", f"retrain_every_hours={retrain_every}", *[a for s in SETTINGS for a in ("--set", s)]]
    started = time.perf_counter()
    out = subprocess.run(cmd, cwd=p, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - started
    reports = sorted((p / "logs").glob("replay-*.json"))
    report = json.loads(reports[-1].read_text()) if reports else {}
    client = MlflowClient(tracking_uri=f"sqlite:///{p / 'mlflow.db'}")
    exp = client.get_experiment_by_name("coincast")
    per_coin = {c: check_registry(client, c, exp.experiment_id) if exp else {"problems": ["no experiment"]}
                for c in names}
    return {
        "coins": coins, "hours": hours, "coin_jobs": jobs, "retrain_every_hours": retrain_every,
        "exit_code": out.returncode, "wall_seconds": round(wall, 1),
        "failed_ticks": report.get("failed_ticks", [{"error": out.stderr[-2000:]}]),
        "tick_seconds": report.get("tick_seconds"), "registry": per_coin,
        "problems": [q for c in per_coin.values() for q in c["problems"]],
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "os": platform.platform(),
                    "load_at_start": os.getloadavg()},
    }


def markdown(res: dict[str, Any]) -> str:
    lines = [f"# Soak: {res['coins']} coins, coin_jobs {res['coin_jobs']}, {res['hours']} replayed ticks",
             "", f"Retraining every {res['retrain_every_hours']} replayed hours; one sqlite MLflow store; "
             f"{res['machine']['cores']} cores ({res['machine']['os']}).", "",
             f"- wall {res['wall_seconds']} s, tick median {(res['tick_seconds'] or {}).get('median')} s, "
             f"max {(res['tick_seconds'] or {}).get('max')} s",
             f"- failed ticks: {len(res['failed_ticks'])}; registry inconsistencies: {len(res['problems'])}", "",
             "| coin | versions | champion | challenger | training runs | live runs |", "|---|---|---|---|---|---|"]
    for coin, r in res["registry"].items():
        a = r.get("aliases", {})
        lines.append(f"| {coin} | {r.get('versions')} | {a.get('champion')} | {a.get('challenger')} | "
                     f"{r.get('training_runs')} | {r.get('live_runs')} |")
    lines += ["", *[f"- {q}" for q in res["problems"]]]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--coins", type=int, default=8)
    ap.add_argument("--hours", type=int, default=48)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--retrain-every", type=int, default=6)
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        res = soak(Path(args.work or tmp) / "soak", args.coins, args.hours, args.jobs, args.retrain_every)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (out / "soak.md").write_text(markdown(res))
    print(markdown(res))
    return 0 if res["exit_code"] == 0 and not res["failed_ticks"] and not res["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""The ``coincast`` command: build the Ploomber pipeline once per coin.

``pipeline.yaml`` describes one coin's task set; ``coincast build`` loads env.yaml (plus a variant
file and overrides), then builds that DAG for each coin in ``coins``. A coin whose build fails does
not stop the others; the exit code is 1 if any failed, and a failed validation gate is reported
as one line naming each failed check.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

# Telemetry off before anything imports ploomber, mlflow or dvc: offline hosts hang on it.
for _key, _value in {
    "PLOOMBER_STATS_ENABLED": "false",
    "PLOOMBER_VERSION_CHECK_DISABLED": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "YDATA_PROFILING_NO_ANALYTICS": "True",
}.items():
    os.environ.setdefault(_key, _value)

from coincast.config import ConfigError, load_dotenv_file, load_env, parse_value  # noqa: E402

logger = logging.getLogger(__name__)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in args.set or []:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = parse_value(value)
    if args.source:
        out["source"] = args.source
    if args.replay_file:
        out["replay_file"] = args.replay_file
        out.setdefault("source", "replay")
    if args.replay_now:
        out["replay_now"] = args.replay_now
    if args.coins:
        out["coins"] = [c.strip() for c in args.coins.split(",") if c.strip()]
    elif args.replay_file:
        from coincast.sources.replay import guess_coin_id

        guessed = guess_coin_id(args.replay_file)
        if guessed:
            out["coins"] = [guessed]
    return out


def _gate_failure(dag: Any, started: float) -> str | None:
    """The gate's one-line verdict if this build's validation failed, else None."""
    from coincast.io import read_json

    try:
        path = Path(str(dag["validate"].product["report"]))
        if path.stat().st_mtime < started:
            return None
        report = read_json(path)
    except (KeyError, OSError, ValueError):
        return None
    if report.get("passed", True):
        return None
    failed = [c for c in report["checks"] if not c["passed"]]
    return "validation gate failed: " + "; ".join(f"{c['name']} ({c['message']})" for c in failed)


_ERROR_LINE = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception|Failed)): (.+)$")


def _root_cause(message: str) -> str:
    """The first 'SomeError: text' line of a Ploomber build error that is not Ploomber's own wrapper."""
    for line in message.splitlines():
        m = _ERROR_LINE.match(line.strip())
        if m and m.group(1) not in ("TaskBuildError", "DAGBuildError", "PapermillExecutionError"):
            return f"{m.group(1)}: {m.group(2)}"[:400]
    return message.strip().splitlines()[-1][:400] if message.strip() else "unknown error"


def with_build_hour(env: dict[str, Any], now: Any = None) -> dict[str, Any]:
    """With a real clock (no replay_now; not a replay), stamp the current UTC hour into ``build_hour``:
    Ploomber reruns tasks whose params changed, so each new hour refetches instead of being a no-op."""
    if env.get("replay_now") is not None or env.get("source") == "replay" or env.get("build_hour") is not None:
        return env
    import pandas as pd

    hour = (pd.Timestamp(now) if now is not None else pd.Timestamp.now(tz="UTC")).floor("h")
    return {**env, "build_hour": hour.isoformat()}


def build(env: dict[str, Any], pipeline: Path, force: bool = False) -> dict[str, str]:
    """Build the pipeline for every coin; returns {coin: "ok" | error line}."""
    from ploomber.exceptions import DAGBuildError
    from ploomber.spec import DAGSpec

    results: dict[str, str] = {}
    for coin in env["coins"]:
        coin_env = {k: v for k, v in env.items() if k != "coins"}
        coin_env["coin"] = coin
        print(f"== coincast: building {coin} ({env['source']}) ==", flush=True)
        started = time.time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            dag = DAGSpec(str(pipeline), env=coin_env).to_dag()
        try:
            report = dag.build(force=force)
            table = report.to_dict()
            ran = [name for name, did in zip(table["name"], table["Ran?"]) if did]
            results[coin] = "ok (ran: " + (", ".join(ran) if ran else "nothing, up to date") + ")"
        except DAGBuildError as exc:
            gate = _gate_failure(dag, started)
            if gate is None:
                print(str(exc), file=sys.stderr)
            results[coin] = gate or f"build failed: {_root_cause(str(exc))}"
    return results


def _build_command(args: argparse.Namespace) -> int:
    project = Path(args.project).resolve()
    load_dotenv_file(project / ".env")
    env = load_env(project / "env.yaml", args.env and (project / args.env if not Path(args.env).is_absolute() else args.env),
                   _overrides(args))
    env = with_build_hour(env)
    os.chdir(project)
    results = build(env, project / "pipeline.yaml", force=args.force)
    failed = {c: r for c, r in results.items() if not r.startswith("ok")}
    for coin, result in results.items():
        stream = sys.stderr if coin in failed else sys.stdout
        print(f"coincast: {coin}: {result}", file=stream)
    return 1 if failed else 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coincast", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the pipeline for every coin in env.yaml's coins")
    b.add_argument("--project", default=".", help="folder holding pipeline.yaml and env.yaml (default: .)")
    b.add_argument("--env", help="variant file whose keys override env.yaml (e.g. env.test.yaml)")
    b.add_argument("--source", choices=["coingecko", "replay", "simulated"])
    b.add_argument("--replay-file", help="replay this recorded file (sets source=replay)")
    b.add_argument("--replay-now", help="the simulated clock, e.g. 2024-05-01T12:00Z")
    b.add_argument("--coins", help="comma-separated coin ids (overrides env.yaml's coins)")
    b.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any env.yaml key (repeatable)")
    b.add_argument("--force", action="store_true", help="re-run every task even if up to date")
    b.set_defaults(func=_build_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"coincast: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

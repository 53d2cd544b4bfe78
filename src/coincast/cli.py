"""The ``coincast`` command: parses, calls the build (:mod:`coincast.operations.build`) or the hourly operation
(:mod:`coincast.operations.hourly`), prints.

``pipeline.yaml`` describes one coin's task set; ``coincast build`` loads env.yaml (plus a variant
file and overrides), then builds that DAG for each coin in ``coins``: a line per task, then a summary table.
A coin whose build fails does not stop the others; the exit code is 1 if any failed, and each failure
(a failed validation gate naming each failed check) is one line on stderr.
"""
from __future__ import annotations

import argparse
import atexit
import logging
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

# (importing coincast turned telemetry off: coincast.patches.telemetry_off)
from coincast.config import ConfigError, load_dotenv_file, parse_time, parse_value, resolve_root
from coincast.settings import load_env

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
    if getattr(args, "coin", None) is not None:  # coincast task --coin: checked like env.yaml's coin
        out["coin"] = args.coin
    if args.coins is not None:
        out["coins"] = [c.strip() for c in args.coins.split(",") if c.strip()]
        if not out["coins"]:
            raise ConfigError(f"--coins names no coin ({args.coins!r}): give comma-separated CoinGecko ids, "
                              "e.g. --coins bitcoin,ethereum, or leave it out for env.yaml's coins")
    elif args.replay_file:
        from coincast.data.sources.replay import guess_coin_id

        guessed = guess_coin_id(args.replay_file)
        if guessed:
            out["coins"] = [guessed]
    return out


def _variants(project: Path, names: Sequence[str] | None, defaults: Sequence[str] = ()) -> list[Path]:
    out = []
    for name in [*defaults, *(names or [])]:
        p = Path(name)
        out.append(p if p.is_absolute() else project / p)
    return out


def _load(args: argparse.Namespace, defaults: Sequence[str] = ()) -> tuple[Path, dict[str, Any]]:
    project = Path(args.project).resolve()
    load_dotenv_file(project / ".env")
    names = args.env or [n for n in os.environ.get("COINCAST_ENV", "").split(",") if n.strip()]
    env = resolve_root(load_env(project / "env.yaml", _variants(project, names, defaults), _overrides(args)), project)
    if env["source"] == "replay":  # the files exist, before a lock, a log or a tick
        from coincast.data.sources.replay import replay_file_problem

        problem = replay_file_problem(env["replay_file"], env["coins"], project)
        if problem:
            raise ConfigError(problem)
    if env["source"] == "coingecko":  # the key and plan from the environment, before a lock, a log or a fetch
        from coincast.data.sources.coingecko import CoinGeckoError, config_from_env, reach_problem

        try:
            problem = reach_problem(env["days"], config_from_env())
        except CoinGeckoError as exc:
            raise ConfigError(str(exc)) from None
        if problem:
            raise ConfigError(problem)
    return project, env


def _load_tick(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """:func:`_load` with env.cron.yaml under the --env files, unless --no-cron-env."""
    return _load(args, defaults=[] if args.no_cron_env else ["env.cron.yaml"])


def _build_command(args: argparse.Namespace) -> int:
    from coincast.operations import build
    from coincast.operations import console

    project, env = _load(args)
    env = build.with_build_hour(env)
    os.chdir(project)
    results = build.build(env, project / "pipeline.yaml", force=args.force, verbose=args.verbose)
    print(console.summary_table(results.values()), flush=True)
    failed = [r for r in results.values() if not r.ok]
    for r in failed:
        print(f"coincast: {r.coin}: {r.message}", file=sys.stderr)
    return 1 if failed else 0


def _accept_command(args: argparse.Namespace) -> int:
    from coincast.data import gate

    project, env = _load(args)
    try:
        path, record, new = gate.accept_hour(project, env, args.coin, args.time, args.reason)
    except gate.AcceptError as exc:
        print(f"coincast accept: {exc}", file=sys.stderr)
        return 1
    state = "accepted" if new else f"already accepted at {record['accepted_at']}"
    print(f"coincast accept: {args.coin} {record['time']} {state} for {record['check']} ({record['reason']}); "
          f"recorded in {gate.acceptance_path(path)}")
    return 0


def _hourly_logging(env: Mapping[str, Any], verbose: bool) -> None:
    from coincast.operations.hourly import file_logger

    handler = file_logger(env["log_dir"])
    for name, level in (("coincast", logging.INFO), ("ploomber", logging.WARNING)):
        log = logging.getLogger(name)
        log.addHandler(handler)
        log.setLevel(logging.DEBUG if verbose else level)
        log.propagate = False  # the file has them; the console gets the tick's summary lines


def _hourly_command(args: argparse.Namespace) -> int:
    from coincast.operations import hourly

    project, env = _load_tick(args)
    os.chdir(project)
    clock = parse_time(args.now, "--now") if args.now else None
    try:
        with hourly.tick_lock(env["lock_file"]):  # before anything is touched, the log file included
            _hourly_logging(env, args.verbose)
            result = hourly.run_tick(project, env, clock, locked=True, quiet=True)  # output: hourly.log
    except hourly.AlreadyRunning as exc:
        print(f"coincast hourly: {exc}", file=sys.stderr)
        return hourly.EXIT_BUSY
    for line in hourly.describe(result):
        logging.getLogger("coincast.operations.hourly").log(logging.INFO if result.ok else logging.ERROR, line)
        print(f"coincast {line}", file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


def _replay_command(args: argparse.Namespace) -> int:
    from coincast.operations import hourly

    project, env = _load_tick(args)
    if args.hours < 1:
        raise ConfigError(f"--hours must be a positive number of ticks, got {args.hours}")
    os.chdir(project)
    _hourly_logging(env, args.verbose)
    try:
        report = hourly.replay(project, env, args.hours, start=args.start, progress=not args.no_progress)
    except hourly.AlreadyRunning as exc:
        print(f"coincast replay: {exc}", file=sys.stderr)
        return hourly.EXIT_BUSY
    except hourly.ReplayRefused as exc:  # nothing was run or written
        print(f"coincast replay: {exc}", file=sys.stderr)
        return 2
    print(hourly.format_report(report))
    print(f"coincast replay: report written to {report['report_path']}")
    return 0


def settings_args(args: argparse.Namespace) -> list[str]:
    """The settings arguments of this command (env files, source, overrides; not the coins), as a scheduler's
    task commands repeat them (``coincast airflow export``)."""
    out: list[str] = []
    for name in args.env or []:
        out += ["--env", name]
    for flag, value in (("--source", args.source), ("--replay-file", args.replay_file),
                        ("--replay-now", args.replay_now)):
        if value:
            out += [flag, value]
    for item in args.set or []:
        out += ["--set", item]
    return out + (["--no-cron-env"] if args.no_cron_env else [])


def _task_command(args: argparse.Namespace) -> int:
    from coincast.operations import build

    project, env = _load_tick(args)
    if args.run_stamp and build.real_clock(env):
        env = {**env, "build_hour": parse_time(args.run_stamp, "--run-stamp").isoformat()}
    env = build.with_build_hour(env)
    os.chdir(project)
    build.preload_build(env, one_task=True)
    result = build.build_coin(env, args.coin, project / "pipeline.yaml", force=args.force, verbose=args.verbose,
                              task=args.task)
    if not result.ok:
        print(f"coincast task: {args.coin} {args.task}: {result.message}", file=sys.stderr)
        return 1
    print(f"coincast task: {args.coin} {args.task}: {result.message}")
    return 0


def _snapshot_command(args: argparse.Namespace) -> int:
    from coincast.operations import hourly

    project, env = _load_tick(args)
    if not env.get("dvc_snapshot"):
        print("coincast snapshot: dvc_snapshot is off: nothing versioned")
        return 0
    line = hourly.snapshot_data(project, env)
    failed = line.startswith("dvc failed")
    print(f"coincast snapshot: {line}", file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0


def _airflow_command(args: argparse.Namespace) -> int:
    from coincast.operations import export

    project, env = _load_tick(args)
    out = Path(args.out) if args.out else project / export.DEFAULT_PATH
    try:
        content = export.write(project, env, out, settings_args(args))
    except ValueError as exc:
        print(f"coincast airflow export: {exc}", file=sys.stderr)
        return 1
    print(f"coincast airflow export: {len(content['tasks'])} tasks x {len(content['coins'])} coins "
          f"({', '.join(content['coins'])}) written to {out}")
    return 0


def _cron_command(args: argparse.Namespace) -> int:
    from coincast.operations import cron

    project = Path(args.project).resolve()
    try:
        if args.action == "install":
            try:
                cron.cron_line(project, args.minute, args.env_files or "")  # the minute and the files, before all
            except ValueError as exc:
                print(f"coincast cron: {exc}", file=sys.stderr)
                return 2
            names = [n for n in (args.env_files or "").split(",") if n.strip()]
            load_env(project / "env.yaml", _variants(project, names, ["env.cron.yaml"]))  # the tick's settings
            line = cron.install(project, args.minute, args.env_files or "")
            print(f"coincast cron: installed (hourly at minute {args.minute}; output in {project / 'logs/cron.log'}):\n{line}")
        elif args.action == "remove":
            print("coincast cron: removed" if cron.remove(project) else "coincast cron: no coincast line for this project")
        else:
            lines = [r for r in cron.read_crontab().splitlines() if r.rstrip().endswith(cron.tag_for(project))]
            print("\n".join(lines) if lines else "coincast cron: not installed for this project")
    except RuntimeError as exc:
        print(f"coincast cron: {exc}", file=sys.stderr)
        return 1
    return 0


def _tick_options(p: argparse.ArgumentParser) -> None:
    """The settings options of a command that runs as a tick does (env.cron.yaml under the --env files)."""
    _common(p)
    p.add_argument("--no-cron-env", action="store_true", help="do not layer env.cron.yaml under --env files")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--project", default=".", help="folder holding pipeline.yaml and env.yaml (default: .)")
    p.add_argument("--env", action="append", help="variant file whose keys override env.yaml (e.g. env.test.yaml; "
                                                  "repeatable, later files win)")
    p.add_argument("--source", choices=["coingecko", "replay", "simulated"])
    p.add_argument("--replay-file", help="replay this recorded file (sets source=replay)")
    p.add_argument("--replay-now", help="the simulated clock, e.g. 2024-05-01T12:00Z")
    p.add_argument("--coins", help="comma-separated coin ids (overrides env.yaml's coins)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any env.yaml key (repeatable)")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coincast", description="coincast: hourly crypto price forecasts. Build the pipeline for every coin "
        "(build), run the hourly tick (hourly), replay past hours (replay), and operate it (cron, snapshot, airflow, "
        "...). Settings: env.yaml, overridden by --env FILE and --set KEY=VALUE. Docs: README.md, docs/operations.md.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the pipeline for every coin in env.yaml's coins")
    _common(b)
    b.add_argument("--force", action="store_true", help="re-run every task even if up to date")
    b.add_argument("-v", "--verbose", action="store_true",
                   help="Ploomber's and papermill's messages on the console too (always in logs/build.log)")
    b.set_defaults(func=_build_command)

    h = sub.add_parser("hourly", help="one unattended tick: env.yaml + env.cron.yaml, locked, logged under logs/")
    _tick_options(h)
    h.add_argument("--now", help="the tick's clock (default: the real clock); e.g. 2025-06-01T13:05Z")
    h.add_argument("--verbose", action="store_true", help="debug messages in logs/hourly.log")
    h.set_defaults(func=_hourly_command)

    r = sub.add_parser("replay", help="N hourly ticks over simulated/recorded data, the clock advancing 1 h per tick")
    _tick_options(r)
    r.add_argument("--hours", type=int, required=True, help="number of ticks (hours) to replay")
    r.add_argument("--start", help="the first tick's clock (default: --hours before the env's clock)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--verbose", action="store_true", help="debug messages (incl. build output) in logs/hourly.log")
    r.set_defaults(func=_replay_command)

    t = sub.add_parser("task", help="one task of one coin's pipeline (a step of a scheduler's run, e.g. Airflow's): "
                                    "the tick's settings (env.cron.yaml), its upstream tasks must be up to date")
    _tick_options(t)
    t.add_argument("task", help="the pipeline.yaml task, e.g. extract")
    t.add_argument("--coin", required=True, help="the coin, e.g. bitcoin")
    t.add_argument("--run-stamp", help="the scheduler run's time (Airflow: its logical date), the same for every task "
                                       "of a run: a real-clock run refetches once per stamp (default: this hour)")
    t.add_argument("--force", action="store_true", help="run the task even if up to date")
    t.add_argument("-v", "--verbose", action="store_true",
                   help="Ploomber's messages on the console too (always in logs/build.log)")
    t.set_defaults(func=_task_command)

    s = sub.add_parser("snapshot", help="the tick's DVC snapshot: commit (and push) the raw history and prediction log")
    _tick_options(s)
    s.set_defaults(func=_snapshot_command)

    af = sub.add_parser("airflow", help="export Ploomber's task graph and the coins for airflow/dags/coincast.py")
    af.add_argument("action", choices=["export"])
    _tick_options(af)
    af.add_argument("--out", help="the JSON to write (default: <project>/airflow/coincast-dag.json)")
    af.set_defaults(func=_airflow_command)

    a = sub.add_parser("accept", help="accept a flagged hour as real (the jumps check skips it); kept with the history")
    _common(a)
    a.add_argument("coin", help="coin id, e.g. bitcoin")
    a.add_argument("time", help="the flagged hour as the gate names it, e.g. 2021-05-19T13:00:00+00:00")
    a.add_argument("--reason", help="why the move is real (required; recorded)")
    a.set_defaults(func=_accept_command)

    c = sub.add_parser("cron", help="install / remove / show the crontab line running `make hourly` every hour")
    c.add_argument("action", choices=["install", "remove", "show"])
    c.add_argument("--project", default=".", help="the project folder (default: .)")
    c.add_argument("--minute", type=int, default=5, help="minute past each hour (default 5)")
    c.add_argument("--env-files", help="ENV_FILE for make hourly (comma-separated variant files)")
    c.set_defaults(func=_cron_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # Ploomber lowers the root logger to INFO while it builds
        handler.setLevel(logging.WARNING)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"coincast: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def entry() -> None:
    """The ``coincast`` console script. (A ``gc.freeze`` at exit saved 0.2 s of a tick once the build's imports
    are frozen at start-up, ~2.5 %: dropped, see coincast.patches.)

    After the command, Python's exit handlers run and the process ends without the C/C++ teardown that follows
    them: Arrow's thread pool (any parquet read) can abort there, "terminate called without an active exception"
    and exit code -6 after a command that succeeded (apache/arrow#34314, open; seen once here on a no-op build
    under load), which cron would log as a failed tick."""
    code = main()
    atexit._run_exitfuncs()  # MLflow, logging, multiprocessing, temporary folders: what sys.exit would run
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # a closed pipe (| head): nothing more can be said
            pass
    os._exit(0 if code is None else int(code))


if __name__ == "__main__":
    entry()

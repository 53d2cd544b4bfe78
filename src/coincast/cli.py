"""The ``coincast`` command: build the Ploomber pipeline once per coin.

``pipeline.yaml`` describes one coin's task set; ``coincast build`` loads env.yaml (plus a variant
file and overrides), then builds that DAG for each coin in ``coins``. A coin whose build fails does
not stop the others; the exit code is 1 if any failed, and a failed validation gate is reported
as one line naming each failed check.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

# Telemetry off before anything imports ploomber, mlflow or dvc: offline hosts hang on it.
for _key, _value in {
    "PLOOMBER_STATS_ENABLED": "false",
    "PLOOMBER_VERSION_CHECK_DISABLED": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "YDATA_PROFILING_NO_ANALYTICS": "True",
}.items():
    os.environ.setdefault(_key, _value)

from coincast.config import ConfigError, load_dotenv_file, load_env, parse_time, parse_value, resolve_root  # noqa: E402
from coincast.startup import PIPELINE_MODULES, preload  # noqa: E402

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
    if args.coins is not None:
        out["coins"] = [c.strip() for c in args.coins.split(",") if c.strip()]
        if not out["coins"]:
            raise ConfigError(f"--coins names no coin ({args.coins!r}): give comma-separated CoinGecko ids, "
                              "e.g. --coins bitcoin,ethereum, or leave it out for env.yaml's coins")
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
    from coincast.publish import gate_reason

    return gate_reason(report)


_ERROR_LINE = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception|Failed|Timeout)): (.+)$")
_WRAPPERS = ("TaskBuildError", "DAGBuildError", "PapermillExecutionError", "TaskRenderError", "DAGRenderError")


def _root_cause(message: str) -> str:
    """The error a person can act on in a Ploomber build error's text: the notebook's last exception (a
    chained traceback lists the low-level cause first, e.g. ``TimeoutError: timed out``, and the error
    coincast raised from it last), not Ploomber's own wrappers after it."""
    found: list[str] = []
    for line in message.splitlines():
        m = _ERROR_LINE.match(line.strip())
        if not m:
            continue
        if m.group(1) in _WRAPPERS:
            if found:
                break  # the notebook's traceback ended: Ploomber's wrapper follows it
            continue
        found.append(f"{m.group(1)}: {m.group(2)}"[:400])
    if found:
        return found[-1]
    return message.strip().splitlines()[-1][:400] if message.strip() else "unknown error"


BUILD_LOG = "build.log"


@contextlib.contextmanager
def build_log(env: Mapping[str, Any]) -> Iterator[str | None]:
    """Ploomber's and papermill's messages (task tracebacks included) go to ``<log_dir>/build.log``, not the
    console, which gets one line per coin; yields the log's path, or None when a caller (a tick) already
    sends them to its own log file."""
    names = ("ploomber", "papermill", "coincast.build")
    loggers = [logging.getLogger(n) for n in names]
    if any(not isinstance(h, logging.NullHandler) for h in loggers[0].handlers):
        yield None
        return
    path = Path(str(env.get("log_dir") or "logs")) / BUILD_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    saved = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
        lg.propagate = False
    try:
        yield str(path)
    finally:
        for lg, (level, propagate) in zip(loggers, saved):
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate
        handler.close()


def with_build_hour(env: dict[str, Any], now: Any = None) -> dict[str, Any]:
    """With a real clock (no replay_now; not a replay), stamp the current UTC hour into ``build_hour``:
    Ploomber reruns tasks whose params changed, so each new hour refetches instead of being a no-op."""
    if env.get("replay_now") is not None or env.get("source") == "replay" or env.get("build_hour") is not None:
        return env
    import pandas as pd

    hour = (pd.Timestamp(now) if now is not None else pd.Timestamp.now(tz="UTC")).floor("h")
    return {**env, "build_hour": hour.isoformat()}


def failed_coins(results: Mapping[str, str]) -> dict[str, str]:
    """The coins of a build's results whose build failed, with their one-line error."""
    return {coin: r for coin, r in results.items() if not r.startswith("ok")}


def _mark(folder: Path, outcome: str | None, env: Mapping[str, Any]) -> None:
    """The dashboard's record of a failed build (removed when the coin builds again); never raises."""
    from coincast.publish import FAILURE, record_failure

    try:
        if outcome is not None or (folder / FAILURE).exists():
            record_failure(folder, outcome, env.get("source"), env.get("replay_now") or env.get("build_hour"))
    except OSError as exc:
        logging.getLogger("coincast.build").warning("could not record the build's outcome in %s: %s", folder, exc)


def gate_failed_last(project: Path, coin: str) -> bool:
    """True when the coin's last validation report (products/<coin>/validation.json) says the gate failed."""
    from coincast.io import read_json

    try:
        return read_json(project / "products" / coin / "validation.json").get("passed") is False
    except (OSError, ValueError, AttributeError):
        return False


def build_coin(env: Mapping[str, Any], coin: str, pipeline: Path, force: bool = False) -> str:
    """Build the pipeline's DAG for one coin; "ok (ran: ...)" or a one-line error. Never raises.

    The full error (Ploomber's traceback) and Ploomber's messages go to the build log (:func:`build_log`)."""
    from ploomber.exceptions import DAGBuildError
    from ploomber.spec import DAGSpec

    coin_env = {k: v for k, v in env.items() if k not in ("coins", "coin_jobs")}
    coin_env["coin"] = coin
    if coin_env.get("build_hour") is not None and gate_failed_last(pipeline.parent, coin):
        # the last build of this coin was stopped by the gate: fetch again now, not at the next hour (a
        # quarantined batch's hours are holes, refetched like any other), so a healed API repairs it at once
        import pandas as pd

        coin_env["build_hour"] = pd.Timestamp.now(tz="UTC").floor("s").isoformat()
    print(f"== coincast: building {coin} ({env['source']}) ==", flush=True)
    log = logging.getLogger("coincast.build")
    started = time.time()
    dag = None
    with build_log(env) as log_path, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        where = f" (details in {log_path})" if log_path else ""
        outcome = None
        try:
            dag = DAGSpec(str(pipeline), env=coin_env).to_dag()
            report = dag.build(force=force)
            table = report.to_dict()
            ran = [name for name, did in zip(table["name"], table["Ran?"]) if did]
            return "ok (ran: " + (", ".join(ran) if ran else "nothing, up to date") + ")"
        except DAGBuildError as exc:
            log.error("%s: build failed:\n%s", coin, exc)
            gate = _gate_failure(dag, started) if dag is not None else None
            outcome = gate or f"build failed: {_root_cause(str(exc))}{where}"
            return outcome
        except Exception as exc:  # rendering errors etc.: one coin's failure never stops the others
            log.error("%s: build failed: %s: %s", coin, type(exc).__name__, exc)
            outcome = f"build failed: {_root_cause(f'{type(exc).__name__}: {exc}')}{where}"
            return outcome
        finally:
            _mark(pipeline.parent / "products" / coin, outcome, coin_env)
            for w in caught:
                if "not used in the task's source code" not in str(w.message):  # build_hour, by design
                    log.warning("%s: %s", coin, str(w.message).strip())


def _build_coin_captured(env: Mapping[str, Any], coin: str, pipeline: Path, force: bool) -> tuple[str, str]:
    """build_coin in a worker process: its output comes back with the result, so coins built side by side
    print whole, one after another, and a quiet caller (a tick) can capture it."""
    import io

    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        result = build_coin(env, coin, pipeline, force)
    return result, sink.getvalue()


#: What a build imports before its first notebook runs (tests/test_packaging.py checks it covers the notebooks).
PRELOAD = ("ploomber.spec", *PIPELINE_MODULES)


def _preload(env: Mapping[str, Any], jobs: int = 1) -> list[str]:
    """Import what the builds need up front, the collector off (coincast.startup): everything the notebooks
    import when they run in this process (ploomber-engine) or in workers forked from it, else Ploomber only
    (papermill's kernels import the rest themselves)."""
    from coincast.engine import lighten

    lighten()  # before Ploomber is imported: no matplotlib unless a notebook draws with it
    in_process = env.get("notebook_executor") == "ploomber-engine"
    names = PRELOAD if in_process or jobs > 1 else ("ploomber.spec",)
    return preload((*names, "ploomber_engine.execute", "IPython") if in_process else names)


def build(env: dict[str, Any], pipeline: Path, force: bool = False) -> dict[str, str]:
    """Build the pipeline for every coin; returns {coin: "ok" | error line}.

    ``coin_jobs`` > 1 builds that many coins at a time, each coin's DAG in a worker process forked from
    this one when it runs no other thread (imports shared; the caller's lock is inherited, so an overlapping
    tick still finds it held), else started by a fork server (:mod:`coincast.processes`). Each coin's DAG
    stays one Ploomber DAG run by the executor in pipeline.yaml; MLflow writes are serialized
    (:func:`coincast.registry.write_lock`)."""
    coins = list(env["coins"])
    jobs = max(1, min(int(env.get("coin_jobs") or 1), len(coins)))
    _preload(env, jobs)
    if jobs == 1:
        return {coin: build_coin(env, coin, pipeline, force) for coin in coins}
    from concurrent.futures import ProcessPoolExecutor

    from coincast.processes import pool_context

    results: dict[str, str] = {}
    print(f"== coincast: building {len(coins)} coins, {jobs} at a time ==", flush=True)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=pool_context(PRELOAD)) as pool:
        futures = {coin: pool.submit(_build_coin_captured, env, coin, pipeline, force) for coin in coins}
        for coin, future in futures.items():
            try:
                results[coin], output = future.result()
            except Exception as exc:  # the worker died (killed, out of memory): that coin failed
                results[coin], output = f"build failed: worker process died ({type(exc).__name__}: {exc})", ""
            sys.stdout.write(output)
            sys.stdout.flush()
    return results


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
    env = load_env(project / "env.yaml", _variants(project, names, defaults), _overrides(args))
    return project, resolve_root(env, project)


def _build_command(args: argparse.Namespace) -> int:
    project, env = _load(args)
    env = with_build_hour(env)
    os.chdir(project)
    results = build(env, project / "pipeline.yaml", force=args.force)
    failed = failed_coins(results)
    for coin, result in results.items():
        stream = sys.stderr if coin in failed else sys.stdout
        print(f"coincast: {coin}: {result}", file=stream)
    return 1 if failed else 0


def _accept_command(args: argparse.Namespace) -> int:
    from coincast import gate

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
    from coincast.hourly import file_logger

    handler = file_logger(env["log_dir"])
    for name, level in (("coincast", logging.INFO), ("ploomber", logging.WARNING)):
        log = logging.getLogger(name)
        log.addHandler(handler)
        log.setLevel(logging.DEBUG if verbose else level)
        log.propagate = False  # the file has them; the console gets the tick's summary lines


def _hourly_command(args: argparse.Namespace) -> int:
    from coincast import hourly

    project, env = _load(args, defaults=[] if args.no_cron_env else ["env.cron.yaml"])
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
        logging.getLogger("coincast.hourly").log(logging.INFO if result.ok else logging.ERROR, line)
        print(f"coincast {line}", file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


def _replay_command(args: argparse.Namespace) -> int:
    from coincast import hourly

    project, env = _load(args, defaults=[] if args.no_cron_env else ["env.cron.yaml"])
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


def _cron_command(args: argparse.Namespace) -> int:
    from coincast import cron

    project = Path(args.project).resolve()
    try:
        if args.action == "install":
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
    parser = argparse.ArgumentParser(prog="coincast", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the pipeline for every coin in env.yaml's coins")
    _common(b)
    b.add_argument("--force", action="store_true", help="re-run every task even if up to date")
    b.set_defaults(func=_build_command)

    h = sub.add_parser("hourly", help="one unattended tick: env.yaml + env.cron.yaml, locked, logged under logs/")
    _common(h)
    h.add_argument("--now", help="the tick's clock (default: the real clock); e.g. 2025-06-01T13:05Z")
    h.add_argument("--no-cron-env", action="store_true", help="do not layer env.cron.yaml under --env files")
    h.add_argument("--verbose", action="store_true", help="debug messages in logs/hourly.log")
    h.set_defaults(func=_hourly_command)

    r = sub.add_parser("replay", help="N hourly ticks over simulated/recorded data, the clock advancing 1 h per tick")
    _common(r)
    r.add_argument("--hours", type=int, required=True, help="number of ticks (hours) to replay")
    r.add_argument("--start", help="the first tick's clock (default: --hours before the env's clock)")
    r.add_argument("--no-cron-env", action="store_true", help="do not layer env.cron.yaml under --env files")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--verbose", action="store_true", help="debug messages (incl. build output) in logs/hourly.log")
    r.set_defaults(func=_replay_command)

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
    """The ``coincast`` console script: main(), then exit without a last full garbage collection.

    Each notebook run in-process leaves an IPython shell whose exit hook runs ``gc.collect()`` over the
    whole heap (7 shells: ~1.5 s of a ~5 s tick, measured). The process is ending, so its objects are
    moved out of the collector's reach first (``gc.freeze``). Only here, never inside main(): a long-lived
    caller (a test, a replay) keeps collecting normally."""
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()

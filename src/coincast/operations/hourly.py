"""Hourly operation: one tick (``coincast hourly``) and replayed time (``coincast replay``).

A tick is the ordinary Ploomber build of every coin with ``env.cron.yaml`` on top of env.yaml (notebooks
in-process, profile daily; training only when due, decided inside the train task), wrapped in what
unattended operation needs: a non-blocking lock, a log file under ``logs/``, a non-zero exit naming the
failure, and a DVC snapshot of the raw history and prediction log. A replay runs N ticks with the clock
advanced one hour per tick over simulated or recorded data.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any, Iterator, Mapping

import pandas as pd
from filelock import FileLock, Timeout

from coincast.operations.build import BuildResult, build, with_build_hour

logger = logging.getLogger(__name__)

#: Exit status of a tick that found another one running (EX_TEMPFAIL: "try again later").
EXIT_BUSY = 75
#: Minutes past the hour at which a replayed tick's clock stands (cron runs the tick at :05).
TICK_MINUTE = 5


class AlreadyRunning(RuntimeError):
    """Another tick holds the lock."""


class ReplayRefused(RuntimeError):
    """A replay over hours the stored prediction log has already passed."""


@dataclass
class TickResult:
    clock: pd.Timestamp | None
    results: dict[str, BuildResult] = field(default_factory=dict)
    dvc: str | None = None
    seconds: float = 0.0

    @property
    def built(self) -> list[str]:
        """The coins whose build succeeded."""
        return [coin for coin, r in self.results.items() if r.ok]

    @property
    def failed(self) -> dict[str, str]:
        """The coins whose build failed, with their one-line error."""
        return {coin: r.message for coin, r in self.results.items() if not r.ok}

    @property
    def ok(self) -> bool:
        return not self.failed and not (self.dvc or "").startswith("dvc failed")


@contextlib.contextmanager
def tick_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold the tick lock or raise AlreadyRunning at once (never waits). The OS releases it if the
    process dies, so a killed tick never blocks the next one."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(p), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise AlreadyRunning(f"another coincast tick is already running (lock {p} is held); this one exits "
                             "without touching anything") from None
    try:
        yield
    finally:
        lock.release()


def file_logger(log_dir: str | os.PathLike, name: str = "hourly.log") -> logging.Handler:
    """A size-rotated log file under ``log_dir`` receiving coincast's and Ploomber's messages."""
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(Path(log_dir) / name, maxBytes=10_000_000, backupCount=5)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG)  # the loggers decide (coincast hourly --verbose: debug)
    return handler


def tick_env(env: Mapping[str, Any], clock: pd.Timestamp | None) -> dict[str, Any]:
    """The env of one tick: a replayed ``clock`` becomes ``replay_now``; a real one stamps ``build_hour``."""
    out = dict(env)
    if clock is not None:
        out["replay_now"] = pd.Timestamp(clock).isoformat()
    return with_build_hour(out)


def snapshot_data(project: Path, env: Mapping[str, Any], timeout: float | None = None) -> str:
    """The DVC snapshot after a tick (or an Airflow run: ``coincast snapshot``): the source's raw history and
    prediction log committed, and pushed when ``dvc_push``; one line, ``dvc failed: ...`` when DVC failed or ran
    past ``timeout`` seconds a command (default :data:`coincast.operations.versioning.DVC_TIMEOUT`)."""
    from coincast.operations import versioning

    try:
        return versioning.snapshot(project, str(env["source"]), push=bool(env.get("dvc_push")),
                                   timeout=versioning.DVC_TIMEOUT if timeout is None else timeout)
    except (RuntimeError, OSError) as exc:
        return f"dvc failed: {exc}"


def run_tick(project: Path, env: Mapping[str, Any], clock: pd.Timestamp | None = None,
             quiet: bool = False, locked: bool = False, snapshot: bool | None = None) -> TickResult:
    """One tick under the lock (``locked``: the caller holds it): build every coin, then snapshot the data
    in DVC (``snapshot``: default env's dvc_snapshot). Raises AlreadyRunning if another tick holds the lock."""
    started = time.perf_counter()
    with contextlib.nullcontext() if locked else tick_lock(env["lock_file"]):
        cenv = tick_env(env, clock)
        logger.info("tick %s: started (pid %d)", cenv.get("replay_now") or cenv.get("build_hour"), os.getpid())
        result = TickResult(clock=pd.Timestamp(cenv["replay_now"]) if cenv.get("replay_now") else None)
        sink = io.StringIO() if quiet else None
        with contextlib.ExitStack() as stack:
            if sink is not None:
                stack.enter_context(contextlib.redirect_stdout(sink))
                stack.enter_context(contextlib.redirect_stderr(sink))
            result.results = build(cenv, project / "pipeline.yaml")
        if sink is not None:  # the log file keeps the build's output when a coin failed
            logger.log(logging.WARNING if result.failed else logging.DEBUG, "build output:\n%s", sink.getvalue())
        if (env.get("dvc_snapshot") if snapshot is None else snapshot) and result.built:
            result.dvc = snapshot_data(project, env)
    result.seconds = time.perf_counter() - started
    return result


def describe(result: TickResult) -> list[str]:
    clock = result.clock.isoformat() if result.clock is not None else "now"
    lines = [f"tick {clock}: {coin}: {r.message}" for coin, r in result.results.items()]
    if result.dvc:
        lines.append(f"tick {clock}: {result.dvc}")
    lines.append(f"tick {clock}: {'ok' if result.ok else 'FAILED'} in {result.seconds:.1f} s")
    return lines


# -- replayed time -------------------------------------------------------------------------------------
def replay_start(env: Mapping[str, Any], hours: int, start: Any = None) -> pd.Timestamp:
    """The first tick's clock: ``start``, else ``hours - 1`` hours before the env's clock (replay_now, the
    replay file's end, or the real clock), at TICK_MINUTE past the hour."""
    from coincast.config import parse_time
    from coincast.timeseries import utc_now
    from coincast.data.extract import resolve_clock

    if start is not None:
        first = parse_time(start, "start")
    else:
        if env.get("replay_now") is not None:
            end = parse_time(env["replay_now"], "replay_now")
        elif env.get("source") == "replay":
            end = resolve_clock("replay", env["coins"][0], None, env.get("replay_file"))
        else:
            end = utc_now()
        first = end.floor("h") - pd.Timedelta(hours=hours - 1)
    return first.floor("h") + pd.Timedelta(minutes=TICK_MINUTE)


def replay_log_path(env: Mapping[str, Any], coin: str) -> Path:
    """The prediction log a replay of ``coin`` under ``env`` writes to (the series' own, as the extract names it)."""
    from coincast.operations import live
    from coincast.data.extract import history_file_for

    history = history_file_for(env, coin)  # <history_dir>/<source>/<series>/<coin>-<vs>.parquet
    return live.log_path(env["predictions_dir"], {"source": history.parent.parent.name, "series": history.parent.name,
                                                  "coin": coin, "vs_currency": str(env["vs_currency"]).lower()})


def replay_refusal(env: Mapping[str, Any], first: pd.Timestamp) -> str | None:
    """Why a replay whose first tick is at ``first`` must not run (one line), or None. Its hours must come after
    every coin's logged origins: the log keeps a prediction once made, so a replayed hour already logged (or
    before the last logged one) is not logged again, and the report would count "missed hours" and score the
    few rows left. The registry is not read here (no MLflow in a process that forks the coins' workers): a
    champion trained after a replayed hour is not used for it (see ``live.update_log``)."""
    from coincast.operations import live

    hour = pd.Timestamp(first).floor("h")
    found = []
    for coin in env["coins"]:
        try:
            path = replay_log_path(env, coin)
        except Exception as exc:  # e.g. a replay file without this coin: the ticks report it, one line per coin
            logger.debug("%s: no prediction log path (%s): not checked", coin, exc)
            continue
        log = live.read_log(path)
        if len(log) and log["origin"].max() >= hour:
            found.append((log["origin"].max(), coin, path))
    if not found:
        return None
    last, coin, path = max(found, key=lambda f: f[0])
    start = last.floor("h") + pd.Timedelta(hours=1, minutes=TICK_MINUTE)
    return (f"refused: {coin}'s prediction log ({path}) already holds predictions up to {last:%Y-%m-%dT%H:%MZ}, so "
            f"the replayed hours from {hour:%Y-%m-%dT%H:%MZ} would not be logged; replay after it (--start "
            f"{start:%Y-%m-%dT%H:%MZ}, or make replay START={start:%Y-%m-%dT%H:%MZ}) or in a fresh copy of the project")


def replay_report(project: Path, env: Mapping[str, Any], first: pd.Timestamp, last: pd.Timestamp) -> dict[str, Any]:
    """Per coin: missed hours and unscored predictions over the replay, the rows its ticks caught up late (for
    any hour), and the live accuracy of the predictions logged for origins inside it."""
    from coincast import files as cio
    from coincast.operations import live

    out: dict[str, Any] = {}
    for coin in env["coins"]:
        meta_path = project / "products" / coin / "published" / "extract.json"  # the last successful tick's
        if not meta_path.exists():
            out[coin] = {"error": "no published build: no tick succeeded"}
            continue
        meta = cio.read_json(meta_path)
        log = live.read_log(live.log_path(env["predictions_dir"], meta))
        inside = log.loc[(log["origin"] >= first.floor("h")) & (log["origin"] <= last.floor("h"))]
        entry: dict[str, Any] = {"completeness": live.completeness(inside, first, last, env["log_horizons"]),
                                 # caught up by this replay's ticks, whatever hour they are for
                                 "late_rows": int(log.loc[log["made_at"].between(first, last), "late"].sum()),
                                 "not_in_force_rows": int((~inside["in_force"]).sum()), "accuracy": {}}
        for h in env["log_horizons"]:  # the replay's rows against the baseline of the whole log, as live.json's
            base = live.naive_empirical(log, int(h), float(env["calibration_window_days"]))
            entry["accuracy"][str(h)] = live.accuracy(inside, int(h), None, int(env["min_scored_rows"]),
                                                      baseline=base)
        out[coin] = entry
    return out


def _replay_ticks(project: Path, env: Mapping[str, Any], bar: Any, seconds: list[float],
                  failed: list[dict[str, Any]]) -> str | None:
    """The replay's ticks (lock held); one DVC snapshot at the end rather than one per replayed hour."""
    for clock in bar:
        result = run_tick(project, env, clock, quiet=True, locked=True, snapshot=False)
        seconds.append(result.seconds)
        for line in describe(result):
            logger.info(line)
        if not result.ok:
            failed.append({"clock": clock.isoformat(), "results": {c: r.message for c, r in result.results.items()}})
            bar.write(f"tick {clock.isoformat()} failed: " + "; ".join(
                f"{c}: {r}" for c, r in result.failed.items()))
    return snapshot_data(project, env) if env.get("dvc_snapshot") else None


def replay(project: Path, env: Mapping[str, Any], hours: int, start: Any = None,
           progress: bool = True) -> dict[str, Any]:
    """Run ``hours`` ticks, one replayed hour apart; returns the report (also written under log_dir). Raises
    ReplayRefused, before any tick, if a coin's prediction log has already passed the first hour."""
    from tqdm.auto import tqdm

    from coincast.patches import no_tqdm_monitor_thread

    first = replay_start(env, hours, start)
    clocks = [first + pd.Timedelta(hours=i) for i in range(hours)]
    failed: list[dict[str, Any]] = []
    started = time.perf_counter()
    seconds = []
    no_tqdm_monitor_thread()  # coins built side by side fork from this process
    bar = tqdm(clocks, desc="replay", unit="tick", disable=not progress, file=sys.stderr)
    with tick_lock(env["lock_file"]):
        refusal = replay_refusal(env, first)
        if refusal:
            bar.close()
            raise ReplayRefused(refusal)
        dvc = _replay_ticks(project, env, bar, seconds, failed)
    wall = time.perf_counter() - started
    report = {
        "ticks": hours,
        "first_clock": clocks[0].isoformat(),
        "last_clock": clocks[-1].isoformat(),
        "source": env["source"],
        "wall_seconds": round(wall, 1),
        "tick_seconds": {"median": round(float(pd.Series(seconds).median()), 2),
                         "max": round(float(max(seconds)), 2)} if seconds else {},
        "failed_ticks": failed,
        "dvc": dvc,
        "coins": replay_report(project, env, clocks[0], clocks[-1]),
    }
    path = Path(env["log_dir"]) / f"replay-{clocks[0]:%Y%m%dT%H%M}-{hours}h.json"
    from coincast.files import write_json_atomic

    write_json_atomic(report, path)
    report["report_path"] = str(path)
    return report


def format_report(report: Mapping[str, Any]) -> str:
    """The replay's summary as a few readable lines."""
    lines = [f"replay: {report['ticks']} ticks {report['first_clock']} -> {report['last_clock']} "
             f"({report['source']}) in {report['wall_seconds']:.0f} s "
             f"(median tick {report.get('tick_seconds', {}).get('median', float('nan'))} s); "
             f"{len(report['failed_ticks'])} failed"]
    for coin, entry in report["coins"].items():
        if "error" in entry:
            lines.append(f"  {coin}: {entry['error']}")
            continue
        comp = entry["completeness"]
        missed = ", ".join(f"{h} h: {n}" for h, n in comp["missed"].items())
        lines.append(f"  {coin}: missed hours ({missed}) of {comp['hours']}; unscored though their target hour "
                     f"has passed (no price for it) {comp['unscored_known']}; late (caught-up) rows {entry['late_rows']}"
                     + (f"; rows made by a model trained after their hour (not scored) {entry['not_in_force_rows']}"
                        if entry.get("not_in_force_rows") else ""))
        for h, acc in entry["accuracy"].items():
            if acc.get("status"):
                lines.append(f"    {h} h ahead: {int(acc['n'])} scored: {acc['status']}")
            elif acc.get("n"):
                lines.append(f"    {h} h ahead: {int(acc['n'])} scored, rel_mae vs naive {acc['rel_mae']:.4f}, "
                             f"coverage 80 % {acc['coverage_80']:.1%}, 95 % {acc['coverage_95']:.1%}")
            else:
                lines.append(f"    {h} h ahead: nothing scored yet")
    return "\n".join(lines)


"""Hourly operation end to end, in real processes: replayed ticks with a failing fetch in the middle (a real HTTP
server on 127.0.0.1), overlapping ticks, kill -9, and DVC push / delete / pull."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from cg_server import FakeCoinGecko
from coincast.operations import live
from coincast.data.sources.simulated import EPOCH, simulate_hourly
from coincast.files import file_md5
from conftest import BIN, MLFLOW_EXPORTS, copy_project, run

pytestmark = pytest.mark.pipeline

T0 = pd.Timestamp("2025-06-01T13:05Z")  # the first tick after env.test.yaml's clock (12:30)


def cli(project: Path, *args: str, env: dict | None = None, timeout: int = 1800) -> subprocess.CompletedProcess:
    return run([str(BIN / "coincast"), *args, "--project", str(project)], cwd=project, env=env, timeout=timeout)


def start_tick(project: Path, now: pd.Timestamp, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "coincast"), "hourly", "--project", str(project), "--env", "env.test.yaml",
                             "--now", now.isoformat(), *extra], cwd=project, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={k: v for k, v in os.environ.items() if k not in MLFLOW_EXPORTS})


def wait_for(predicate, timeout: float = 120, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def meta(project: Path, coin: str = "bitcoin") -> dict:
    return json.loads((project / "products" / coin / "extract.json").read_text())


def history_file(project: Path, m: dict, folder: str = "data/history-test") -> Path:
    return project / folder / m["source"] / m["series"] / f"{m['coin']}-{m['vs_currency']}.parquet"


def log_of(project: Path, m: dict, folder: str = "data/predictions-test") -> pd.DataFrame:
    return live.read_log(live.log_path(project / folder, m))


def mlflow_client(project: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")  # no process-wide MLflow state


# The replay's clock runs in hours, so its constants are hours too: a long horizon of 4 h instead of 24 h, a retrain
# every 5 h, 4 scored rows to score, a profile every 8 h. Every behaviour of the 24 h setting happens within 9 ticks.
LONG = 4  # the long horizon, logged and scored like the default 24 h
MIN_SCORED = 4  # min_scored_rows
KNOBS = ["--set", f"horizons=[1, {LONG}]", "--set", f"log_horizons=[1, {LONG}]", "--set", "retrain_every_hours=5",
         "--set", f"min_scored_rows={MIN_SCORED}", "--set", "profile_enabled=true", "--set", "profile_every_hours=8"]
FAILED = 6  # ticks before the one whose fetch fails (HTTP 503): a retrain 5 h after the first, the first scored
# 4 h-ahead predictions, and MIN_SCORED scored 1 h ones happen within them
TICKS = FAILED + 2  # successful ticks: the failed hour is caught up by the next one, and the one after is on time


def test_replay_with_a_failing_fetch_logs_scores_and_catches_up_every_hour(tmp_path: Path):
    """9 replayed hours against a local CoinGecko: 6 ticks in one replay, one `coincast hourly` while the API
    answers 503 (nothing lost), then a replay of 2 ticks whose first catches the failed hour up (late rows)."""
    project = copy_project(tmp_path / "p")
    hours = pd.date_range(T0.floor("h"), periods=TICKS + 1, freq="h")  # every origin, the failed hour included
    # served: the series the simulated source gives up to the last hour (a retrain 5 h after the first, no drift)
    series = simulate_hourly("bitcoin", int((hours[-1] - EPOCH) / pd.Timedelta(hours=1)) + 1)
    with FakeCoinGecko({"bitcoin": series}, now=T0) as cg:
        env = {"COINGECKO_BASE_URL": cg.url, "COINGECKO_API_KEY": "", "COINGECKO_API_PLAN": "demo"}
        common = ["--env", "env.test.yaml", *KNOBS, "--source", "coingecko", "--no-progress"]
        first = cli(project, "replay", *common, "--hours", str(FAILED), "--start", T0.isoformat(), env=env)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        m = meta(project)
        forecast_before = (project / "products/bitcoin/forecast.parquet").read_bytes()
        history_before = history_file(project, m).read_bytes()

        cg.down = 503
        failed = cli(project, "hourly", "--env", "env.test.yaml", *KNOBS, "--source", "coingecko",
                     "--set", "fetch_retries=1",  # one retry (the default 4 wait 15 s: tests/test_coingecko.py's)
                     "--now", (hours[FAILED] + pd.Timedelta(minutes=5)).isoformat(), env=env)
        cg.down = None
        assert failed.returncode == 1
        assert "FAILED" in failed.stderr and "503" in failed.stderr, failed.stderr[-2000:]
        assert "503" in (project / "logs/hourly.log").read_text()
        # the last good forecast, products and history are intact
        assert (project / "products/bitcoin/forecast.parquet").read_bytes() == forecast_before
        assert history_file(project, m).read_bytes() == history_before

        after = cli(project, "replay", *common, "--hours", str(TICKS - FAILED),
                    "--start", (hours[FAILED + 1] + pd.Timedelta(minutes=5)).isoformat(), env=env)
        assert after.returncode == 0, after.stdout[-3000:] + after.stderr[-3000:]

    # the first replay's report: its hours whole, its scored 1 h predictions (more than min_scored_rows) scored
    assert f"missed hours (1 h: 0, {LONG} h: 0) of {FAILED}" in first.stdout and "rel_mae vs naive" in first.stdout
    report = json.loads(next((project / "logs").glob(f"replay-*-{FAILED}h.json")).read_text())
    assert report["failed_ticks"] == [] and report["ticks"] == FAILED
    coin = report["coins"]["bitcoin"]
    assert coin["completeness"]["missed"] == {"1": 0, str(LONG): 0} and coin["completeness"]["unscored_known"] == 0
    assert coin["late_rows"] == 0
    acc = coin["accuracy"]["1"]
    assert acc["n"] == FAILED - 1 and 0.5 < acc["rel_mae"] < 2 and 0 <= acc["coverage_80"] <= 1
    # the second replay's report covers its own hours, and counts the failed hour's 2 rows its first tick caught up
    assert f"missed hours (1 h: 0, {LONG} h: 0) of {TICKS - FAILED}" in after.stdout
    assert "late (caught-up) rows 2" in after.stdout
    assert f"1 h ahead: 1 scored: too few to score (n < {MIN_SCORED})" in after.stdout
    assert "rel_mae vs naive" not in after.stdout
    report = json.loads(next((project / "logs").glob(f"replay-*-{TICKS - FAILED}h.json")).read_text())
    assert report["failed_ticks"] == [] and report["ticks"] == TICKS - FAILED
    coin = report["coins"]["bitcoin"]
    assert coin["completeness"] == {"hours": TICKS - FAILED, "missed": {"1": 0, str(LONG): 0}, "unscored_known": 0}
    assert coin["late_rows"] == 2 and coin["accuracy"]["1"]["n"] == 1 and coin["accuracy"]["1"]["rel_mae"] is None

    log = log_of(project, m)
    assert list(log.loc[log["horizon"] == 1, "origin"]) == list(hours)  # no hole in the log
    assert len(log) == 2 * len(hours)
    # the failed hour was predicted late, by the next tick (from the data up to its origin), and only it
    late = log.loc[log["late"]]
    assert list(late["origin"].unique()) == [hours[FAILED]] and len(late) == 2
    assert (late["made_at"] == hours[FAILED + 1] + pd.Timedelta(minutes=5)).all()
    on_time = log.loc[~log["late"]]
    assert (on_time["made_at"] - on_time["origin"] < pd.Timedelta(hours=1)).all()  # made in the hour of its origin
    # scored against the actual prices in the raw history (the served truth), and only once they were known
    stored = pd.read_parquet(history_file(project, m))
    history = stored.set_index("timestamp")["price"]
    truth = series.assign(timestamp=series["timestamp"].dt.floor("h")).set_index("timestamp")["price"]
    scored = log.loc[log["actual"].notna()]
    # 1 h: all but the last origin; LONG h: targets up to the last clock
    assert len(scored) == (len(hours) - 1) + (len(hours) - LONG)
    assert (scored["actual"] == scored["target_time"].map(history)).all()
    assert (scored["actual"] == scored["target_time"].map(truth)).all()
    assert (scored["scored_at"] >= scored["target_time"]).all()
    # no hole in the history either, and every replayed hour holds the served price
    grid = pd.date_range(stored["timestamp"].min(), stored["timestamp"].max(), freq="h")
    assert len(grid) == len(stored) and stored["timestamp"].max() == hours[-1]
    assert (history.loc[hours] == truth.loc[hours]).all()
    # every successful tick appended data: a new data version per tick, the last one is the file as it is now; the
    # failed hour's rows were made by the next tick, from its data
    assert log["data_version"].nunique() == TICKS
    assert set(log.loc[log["origin"] == hours[-1], "data_version"]) == {file_md5(history_file(project, m))}
    by_tick = log.groupby("origin")["data_version"].agg(set)
    assert by_tick[hours[FAILED]] == by_tick[hours[FAILED + 1]] and len(by_tick[hours[FAILED]]) == 1
    # the dashboard's copy and the live summary agree with the log
    pd.testing.assert_frame_equal(pd.read_parquet(project / "products/bitcoin/predictions.parquet")[live.LOG_COLUMNS],
                                  log, check_dtype=False)
    live_json = json.loads((project / "products/bitcoin/live.json").read_text())
    assert live_json["horizons"]["1"]["all"]["n"] == len(hours) - 1

    client = mlflow_client(project)
    exp = client.get_experiment_by_name("coincast")
    runs = client.search_runs([exp.experiment_id])
    training = [r for r in runs if "coincast.live_coin" not in r.data.tags]
    live_runs = [r for r in runs if r.data.tags.get("coincast.live_coin") == "bitcoin"]
    # trained at the first tick and again 5 replayed hours later (retrain_every_hours), not every hour
    assert len(training) == 2, [r.data.tags.get("data_through") for r in training]
    assert all(r.data.tags.get("data_version") for r in training)
    assert len(live_runs) == 1
    history_rel = client.get_metric_history(live_runs[0].info.run_id, "live_rel_mae_1h")
    # one point per successful tick from the one with MIN_SCORED scored rows on, none from the failed one
    assert len(history_rel) == TICKS - MIN_SCORED
    assert client.get_metric_history(live_runs[0].info.run_id, "live_n_1h")[0].value == 0  # n from the first tick
    assert live_runs[0].data.tags["data_version"] == file_md5(history_file(project, m))
    # the profile is made every profile_every_hours (8), not hourly: at 13:05 and 21:05
    assert json.loads((project / "products/bitcoin/profile.json").read_text())["made_for"] == "2025-06-01T21:05:00+00:00"


def test_overlapping_ticks_and_recovery_after_kill_9(tmp_path: Path):
    project = copy_project(tmp_path / "p")
    first = start_tick(project, T0)
    logfile = project / "logs/hourly.log"
    wait_for(lambda: logfile.exists() and "started" in logfile.read_text(), what="the first tick to start")
    second = cli(project, "hourly", "--env", "env.test.yaml", "--now", T0.isoformat())
    assert second.returncode == 75, second.stderr
    assert "already running" in second.stderr
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, out[-2000:] + err[-2000:]
    assert logfile.read_text().count("started") == 1  # the overlapping tick touched nothing, not even the log

    m = meta(project)
    history_rows = len(pd.read_parquet(history_file(project, m)))
    log_rows = len(log_of(project, m))
    victim = start_tick(project, T0 + pd.Timedelta(hours=1))
    wait_for(lambda: logfile.read_text().count("started") == 2, what="the second tick to start")
    time.sleep(1.5)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    # whatever the moment, what is stored is whole: readable, and nothing lost
    assert len(pd.read_parquet(history_file(project, m))) >= history_rows
    assert len(log_of(project, m)) >= log_rows

    for hours in (1, 2):  # the lock died with the process; the next ticks recover and catch up
        again = cli(project, "hourly", "--env", "env.test.yaml", "--now", (T0 + pd.Timedelta(hours=hours)).isoformat())
        assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    log = log_of(project, m)
    assert list(log.loc[log["horizon"] == 1, "origin"]) == list(pd.date_range(T0.floor("h"), periods=3, freq="h"))
    assert log["actual"].notna().sum() == 2


@pytest.mark.skipif(shutil.which("git") is None, reason="git is needed for DVC's default (git) mode")
def test_dvc_versions_the_data_and_round_trips_through_the_remote(tmp_path: Path):
    project = copy_project(tmp_path / "p")
    # the test variant, but with the data where dvc.yaml expects it
    small = [line for line in (project / "env.test.yaml").read_text().splitlines() if "_dir" not in line]
    (project / "env.small.yaml").write_text("\n".join(small) + "\n")
    shutil.copytree(Path(__file__).resolve().parents[1] / "src" / "coincast", project / "src" / "coincast",
                    ignore=shutil.ignore_patterns("__pycache__"))
    dvc = str(BIN / "dvc")  # (src/coincast above: a dependency of dvc.yaml's stage)
    env = {"PATH": f"{BIN}:{os.environ['PATH']}", "COINCAST_ENV": "env.small.yaml,env.cron.yaml"}
    for cmd in (["git", "init", "-q"], [dvc, "init", "-q"], [dvc, "remote", "add", "-d", "local", str(tmp_path / "remote")]):
        done = run(cmd, cwd=project, env=env)
        assert done.returncode == 0, done.stderr

    repro = run([dvc, "repro", "build@simulated"], cwd=project, env=env)
    assert repro.returncode == 0, repro.stdout[-3000:] + repro.stderr[-3000:]
    tick = cli(project, "hourly", "--env", "env.small.yaml", "--now", T0.isoformat(), env=env)
    assert tick.returncode == 0, tick.stdout[-3000:] + tick.stderr[-3000:]
    assert "committed and pushed" in tick.stdout

    m = meta(project)
    hist = history_file(project, m, "data/history")
    version = m["data_version"]
    assert version == file_md5(hist)
    # the version is DVC's own hash: the committed directory manifest lists the file under it
    lock = (project / "dvc.lock").read_text()
    out_md5 = lock.split("path: data/history/simulated")[1].split("md5: ")[1].split()[0]
    manifest = json.loads((project / ".dvc/cache/files/md5" / out_md5[:2] / out_md5[2:]).read_text())
    assert {"md5": version, "relpath": f"{m['series']}/bitcoin-usd.parquet"}.items() <= next(
        e for e in manifest if e["relpath"].endswith("bitcoin-usd.parquet")).items()
    log = log_of(project, m, "data/predictions")
    assert log.iloc[-1]["data_version"] == version
    client = mlflow_client(project)
    runs = client.search_runs([client.get_experiment_by_name("coincast").experiment_id])
    assert {r.data.tags.get("data_version") for r in runs if "coincast.live_coin" not in r.data.tags} <= set(
        log["data_version"]) | {None} and any(r.data.tags.get("data_version") for r in runs)

    saved = {p: p.read_bytes() for p in (project / "data").rglob("*.parquet")}
    shutil.rmtree(project / "data")
    shutil.rmtree(project / ".dvc" / "cache")
    pulled = run([dvc, "pull", "build@simulated"], cwd=project, env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert {p: p.read_bytes() for p in (project / "data").rglob("*.parquet")} == saved
    status = run([dvc, "status", "build@simulated"], cwd=project, env=env)
    assert status.returncode == 0 and "changed outs" not in status.stdout, status.stdout


def test_replay_over_logged_hours_is_refused_and_catch_up_uses_the_model_in_force(tmp_path: Path):
    """Issue 14 items 8 and 5. A build at a fixed clock (as `make demo`), then a replay ending at that clock: one
    line refusing it, nothing touched. Then ticks with outages: a retrain inside one (retrain_every_hours 3;
    naive only, so every retrain is promoted) and a registry made anew (`make clean`) with the log kept. Catch-up
    rows are made by the version that was champion at their hour; rows no version was in force for are made by
    the current champion, flagged, and left out of live accuracy."""
    project = copy_project(tmp_path / "p")
    knobs = ["--env", "env.test.yaml", "--set", "models=[{kind: naive}]", "--set", "retrain_every_hours=3"]
    built = cli(project, "build", *knobs, "--env", "env.cron.yaml")  # clock 12:30 (env.test.yaml)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    m = meta(project)
    log_file = live.log_path(project / "data/predictions-test", m)
    before = log_file.read_bytes()

    refused = cli(project, "replay", *knobs, "--hours", "24", "--no-progress")  # 11:05 the day before .. 10:05
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    line = refused.stderr.strip()
    assert "\n" not in line and line.startswith("coincast replay: refused: bitcoin's prediction log"), line
    assert "up to 2025-06-01T12:00Z" in line and "--start 2025-06-01T13:05Z" in line
    assert log_file.read_bytes() == before and not list((project / "logs").glob("replay-*.json"))
    assert "missed hours" not in refused.stdout

    after = cli(project, "replay", *knobs, "--hours", "2", "--start", "2025-06-01T13:05Z", "--no-progress")
    assert after.returncode == 0, after.stdout[-3000:] + after.stderr[-3000:]
    assert "missed hours (1 h: 0, 24 h: 0) of 2" in after.stdout
    assert "1 h ahead: 1 scored: too few to score (n < 24)" in after.stdout and "rel_mae vs naive" not in after.stdout

    # 15:05 is missed; at 16:05 the champion (data through 12:00) is 4 h old: retrained and promoted
    tick = cli(project, "hourly", *knobs, "--now", "2025-06-01T16:05Z")
    assert tick.returncode == 0, tick.stdout[-3000:] + tick.stderr[-3000:]
    live16 = json.loads((project / "products/bitcoin/live.json").read_text())
    assert live16["tick"]["model_versions"] == {"2025-06-01T15:00:00+00:00": "1", "2025-06-01T16:00:00+00:00": "2"}
    h1 = live16["horizons"]["1"]["all"]
    assert h1["n"] == 4 and h1["rel_mae"] is None and h1["status"] == "too few to score (n < 24)"

    # the registry is made anew (make clean), the log is kept; 17:05 and 18:05 are missed
    (project / "mlflow.db").unlink()
    shutil.rmtree(project / "mlartifacts")
    tick = cli(project, "hourly", *knobs, "--set", "min_scored_rows=3", "--now", "2025-06-01T19:05Z")
    assert tick.returncode == 0, tick.stdout[-3000:] + tick.stderr[-3000:]

    log = log_of(project, m)
    rows = log.loc[log["horizon"] == 1].set_index("origin")
    hours = pd.date_range("2025-06-01T12:00Z", "2025-06-01T19:00Z", freq="h")
    assert list(rows.index) == list(hours)
    assert list(rows["model_version"]) == ["1", "1", "1", "1", "2", "1", "1", "1"]  # the last three: new registry
    assert list(rows["late"]) == [False, False, False, True, False, True, True, False]
    assert list(rows["in_force"]) == [True] * 5 + [False, False, True]
    # live accuracy: the in-force scored rows only (origins 12..16), not the flagged 17 and 18
    scored = log.loc[log["actual"].notna() & (log["horizon"] == 1)]
    assert len(scored) == 7
    kept = scored.loc[scored["in_force"]]
    rel = (kept["actual"] - kept["forecast"]).abs().sum() / (kept["actual"] - kept["last_price"]).abs().sum()
    report = json.loads((project / "products/bitcoin/live.json").read_text())
    assert report["tick"]["not_in_force"] == 4 and report["not_in_force"] == 4
    assert report["horizons"]["1"]["all"]["n"] == 5 and report["horizons"]["1"]["all"]["rel_mae"] == pytest.approx(rel)
    client = mlflow_client(project)
    run = next(r for r in client.search_runs([client.get_experiment_by_name("coincast").experiment_id])
               if r.data.tags.get("coincast.live_coin") == "bitcoin")
    assert run.data.metrics["live_n_1h"] == 5 and run.data.metrics["live_rel_mae_1h"] == pytest.approx(rel)
    assert run.data.metrics["live_not_in_force"] == 4


def alive(proc) -> bool:
    """The process still runs (not gone, not a zombie left for its new parent to reap)."""
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_coin_workers_die_with_a_killed_tick(tmp_path: Path):
    """kill -9 of the tick's main process alone (not its process group): its coin workers (coin_jobs 2, from
    env.cron.yaml) go with it within seconds instead of building on, unlocked, as orphans."""
    import psutil

    project = copy_project(tmp_path / "p")
    logfile = project / "logs/hourly.log"
    victim = start_tick(project, T0, "--coins", "bitcoin,ethereum")
    try:
        main = psutil.Process(victim.pid)
        wait_for(lambda: logfile.exists() and "started" in logfile.read_text(), what="the tick to start")
        workers: list = []

        def two_workers() -> bool:  # the coins' workers: forked by the tick, or by its fork server
            workers[:] = [p for p in main.children(recursive=True) if alive(p) and p.children() == []
                          and "resource_tracker" not in " ".join(p.cmdline())]
            return len(workers) >= 2

        wait_for(two_workers, timeout=120, what="two coin workers")
        time.sleep(1.0)  # building
        assert all(alive(p) for p in workers) and victim.poll() is None
        os.kill(victim.pid, signal.SIGKILL)  # the main process only
        victim.wait(timeout=30)
        wait_for(lambda: not any(alive(p) for p in workers), timeout=10, what="the coin workers to die with the tick")
    finally:
        try:
            os.killpg(victim.pid, signal.SIGKILL)  # orphans left by a failure (the session outlives its leader)
        except ProcessLookupError:
            pass
        victim.communicate(timeout=30)

"""The prediction log, scoring, live accuracy, the retraining decision and the cron line: in-memory data."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from coincast.operations import cron, live
from coincast.forecasting.calibration import LEVELS, PROBABILISTIC_SCORES as PROBABILISTIC, level_key
from coincast.forecasting.models import make_model
from coincast.data.profiling import profile_due, write_profile
from coincast.forecasting.serving import ServedForecaster
from coincast.timeseries import observed_prices
from conftest import hourly_frame

QUANTILES = {h: {level_key(lv): 1.0 + 0.5 * i for i, lv in enumerate(LEVELS)} for h in (1, 24)}


def served(kind: str = "drift", **kw) -> ServedForecaster:
    return ServedForecaster(model=make_model({"kind": kind, **kw}), quantiles=QUANTILES)


def make_log(raw: pd.DataFrame, upto_hours: int, origins_back: int, now: pd.Timestamp | None = None) -> pd.DataFrame:
    """Log rows for the last ``origins_back`` origins of ``raw[:upto_hours]``."""
    part = raw.iloc[:upto_hours]
    last = part["timestamp"].iloc[-1]
    origins = list(pd.date_range(last - pd.Timedelta(hours=origins_back - 1), last, freq="h"))
    return live.predictions_at(served(), {"version": "3"}, part, origins, [1, 24], coin="bitcoin",
                               data_version="abc", made_at=now or last)


def test_first_run_logs_only_the_newest_origin_then_catches_up_missed_hours():
    raw = hourly_frame(300)
    y = raw.set_index("timestamp")["price"]
    assert live.pending_origins(live.empty_log(), y, 168) == [y.index[-1]]
    log = make_log(raw, 250, 1)
    pending = live.pending_origins(log, y, 168)
    assert pending == list(pd.date_range(y.index[249] + pd.Timedelta(hours=1), y.index[-1], freq="h"))
    assert len(live.pending_origins(log, y, 10)) == 10  # the cap keeps the newest hours
    assert live.pending_origins(live.append(log, make_log(raw, 300, 50)), y, 168) == []


def test_an_origin_hour_without_a_price_is_logged_from_the_last_known_one():
    """A missing candle at 03:00: the tick after it still logs origin 03:00 (the last known price stands for it,
    as in the backtest's filled series), so every origin hour has its row and the summary counts what was added;
    before, the forecast came out stamped 02:00 and the duplicate was dropped without a word."""
    raw = hourly_frame(300)
    hole = raw["timestamp"].iloc[280]
    holed = raw.drop(index=280).reset_index(drop=True)
    y = holed.set_index("timestamp")["price"]
    log = make_log(holed, 280, 1)  # logged through the hour before the hole
    out, summary = live.update_log(log, served(), {"version": "3"}, holed.iloc[:281], coin="bitcoin",
                                   horizons=[1, 24], data_version="v", now=holed["timestamp"].iloc[280], max_catchup_hours=24)
    origins = sorted(out["origin"].unique())
    assert hole in origins and origins[-1] == raw["timestamp"].iloc[281]
    assert summary["rows_added"] == 4 and summary["origins_added"] == [hole.isoformat(), origins[-1].isoformat()]
    at_hole = out.loc[out["origin"] == hole]
    assert (at_hole["last_price"] == y.loc[:hole].iloc[-1]).all() and len(at_hole) == 2


def test_predictions_use_no_data_after_their_origin():
    raw = hourly_frame(300)
    origin = raw["timestamp"].iloc[200]
    full = live.predictions_at(served(), {"version": "1"}, raw, [origin], [1, 24], coin="c", data_version=None,
                               made_at=raw["timestamp"].iloc[-1])
    cut = live.predictions_at(served(), {"version": "1"}, raw.iloc[:201], [origin], [1, 24], coin="c",
                              data_version=None, made_at=raw["timestamp"].iloc[-1])
    pd.testing.assert_series_equal(full["forecast"], cut["forecast"])
    assert full["late"].all() and not cut["late"].any()
    assert (full["last_price"] == raw["price"].iloc[200]).all()
    assert list(full["target_time"]) == [origin + pd.Timedelta(hours=1), origin + pd.Timedelta(hours=24)]
    assert list(full.columns) == live.LOG_COLUMNS


def test_a_logged_prediction_is_never_replaced():
    raw = hourly_frame(300)
    first = make_log(raw, 250, 3)
    again = live.predictions_at(served("naive"), {"version": "9"}, raw.iloc[:250], list(first["origin"].unique()),
                                [1, 24], coin="bitcoin", data_version="zzz", made_at=raw["timestamp"].iloc[260])
    merged = live.append(first, again)
    assert len(merged) == 6 and set(merged["model_version"]) == {"3"} and set(merged["data_version"]) == {"abc"}


def test_scoring_uses_observed_prices_only():
    raw = hourly_frame(300)
    log = make_log(raw, 250, 30)
    known = raw.iloc[:260].drop(index=[251])  # hour 251 was never observed
    scored, n = live.score(log, observed_prices(known), pd.Timestamp("2030-01-01", tz="UTC"))
    prices = raw.set_index("timestamp")["price"]
    done = scored.loc[scored["actual"].notna()]
    assert n == len(done) > 0
    np.testing.assert_allclose(done["actual"], done["target_time"].map(prices))
    assert raw["timestamp"].iloc[251] not in set(done["target_time"])
    assert (scored.loc[scored["target_time"] > raw["timestamp"].iloc[259], "actual"].isna()).all()
    rescored, again = live.score(scored, observed_prices(known), pd.Timestamp("2031-01-01", tz="UTC"))
    assert again == 0 and rescored["scored_at"].equals(scored["scored_at"])


def test_accuracy_is_relative_to_naive_on_the_same_rows():
    t = pd.date_range("2024-01-01", periods=4, freq="h", tz="UTC")
    log = pd.DataFrame({"horizon": 1, "origin": t - pd.Timedelta(hours=1), "target_time": t,
                        "forecast": [101.0, 99.0, 100.0, 100.0],
                        "last_price": [100.0] * 4, "actual": [102.0, 98.0, 100.5, np.nan],
                        "lower_80": 99.5, "upper_80": 100.6, "lower_95": 97.0, "upper_95": 103.0})
    acc = live.accuracy(log, 1)
    assert acc["n"] == 3
    assert acc["rel_mae"] == pytest.approx((1 + 1 + 0.5) / (2 + 2 + 0.5))
    assert acc["coverage_80"] == pytest.approx(1 / 3) and acc["coverage_95"] == 1.0
    none = live.accuracy(log, 24)  # nothing scored yet: the same shape as too few, with its status
    assert none == {"n": 0.0, "mae": None, "naive_mae": None, "rel_mae": None, "coverage_80": None,
                    "coverage_95": None, **dict.fromkeys(PROBABILISTIC), "status": "too few to score (n < 1)"}



def test_live_probabilistic_scores_are_against_the_naive_empirical_baseline_of_the_log():
    rng = np.random.default_rng(7)
    n = 120
    price = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n + 1)))
    origin = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    log = pd.DataFrame({"horizon": 1, "origin": origin, "target_time": origin + pd.Timedelta(hours=1),
                        "last_price": price[:-1], "forecast": price[:-1], "actual": price[1:]})
    log.loc[n - 1, "actual"] = np.nan  # not known yet
    base = live.naive_empirical(log, 1, window_days=30)
    # the baseline at origin t: last_price +- the conformal quantile of |actual - last_price| of origins <= t - 1 h
    t = 100
    errors = np.abs(price[1:t + 1] - price[:t])  # origins 0 .. t-1: their actual is known at t
    q80 = np.sort(errors)[int(np.ceil((t + 1) * 0.8)) - 1]
    assert base["upper_80"].iloc[t] == pytest.approx(price[t] + q80)
    assert base["lower_80"].iloc[:48].isna().all() and base["lower_80"].iloc[48:].notna().all()  # 48 errors needed
    # a model whose intervals are the baseline's: every rel_* is 1, the absolute scores those of metrics
    same = log.assign(**{c: base[c].to_numpy() for c in base.columns if c.startswith(("lower_", "upper_"))})
    acc = live.accuracy(same, 1, calibration_window_days=30)
    assert acc["rel_interval_score_80"] == acc["rel_interval_score_95"] == acc["rel_crps"] == 1.0
    from coincast import metrics

    rows = same.iloc[48: n - 1]
    assert acc["interval_score_95"] == pytest.approx(
        metrics.interval_score(rows["actual"], rows["lower_95"], rows["upper_95"], 0.95))
    wider = same.assign(lower_80=same["lower_80"] - 5, upper_80=same["upper_80"] + 5)
    assert live.accuracy(wider, 1)["rel_interval_score_80"] > 1  # wider for nothing: worse than the baseline
    assert {"live_rel_crps_1h", "live_interval_score_80_1h"} <= set(live.flat_live_metrics(
        {"horizons": {"1": {"all": acc}}}))

def test_completeness_finds_missed_hours_and_unscored_rows():
    raw = hourly_frame(300)
    log = live.append(make_log(raw, 250, 10), make_log(raw, 240, 5))
    log = log.loc[log["origin"] != raw["timestamp"].iloc[245]]
    start, end = raw["timestamp"].iloc[235], raw["timestamp"].iloc[249]
    out = live.completeness(log, start, end, [1, 24])
    assert out["hours"] == 15 and out["missed"] == {"1": 1, "24": 1}
    assert out["unscored_known"] == int((log["target_time"] <= end).sum())


def champion(data_through: str) -> dict:
    return {"version": "2", "data_through": data_through}


KNOBS = dict(every_hours=24, drift_max_rel_mae=1.1, drift_volatility_ratio=2.5, drift_window_hours=72,
             drift_min_scored=3, min_gap_hours=6)


def test_retraining_is_due_on_schedule_not_every_hour():
    y = hourly_frame(24 * 40).set_index("timestamp")["price"]
    now = y.index[-1]
    empty = live.empty_log()
    assert live.retrain_decision(None, now, y, empty, **KNOBS)["due"]
    assert live.retrain_decision(champion(str(now - pd.Timedelta(hours=24))), now, y, empty, **KNOBS)["due"]
    quiet = live.retrain_decision(champion(str(now - pd.Timedelta(hours=23))), now, y, empty, **KNOBS)
    assert not quiet["due"] and "not due" in quiet["reason"]
    assert live.retrain_decision(champion(str(now)), now, y, empty, **{**KNOBS, "every_hours": 0})["due"]
    # the gate kept a 30 h old champion over a challenger trained 2 h ago: the schedule counts from that training
    kept = champion(str(now - pd.Timedelta(hours=30)))
    assert live.retrain_decision(kept, now, y, empty, **KNOBS)["due"]
    later = live.retrain_decision(kept, now, y, empty, last_trained=str(now - pd.Timedelta(hours=2)), **KNOBS)
    assert not later["due"] and later["reason"] == "last training (its challenger not promoted) trained 2 h ago; next scheduled in 22 h"
    older = live.retrain_decision(champion(str(now - pd.Timedelta(hours=2))), now, y, empty,
                                  last_trained=str(now - pd.Timedelta(hours=30)), **KNOBS)  # the champion's is newer
    assert older["reason"].startswith("champion trained 2 h ago")


def test_drift_in_live_accuracy_or_volatility_triggers_retraining():
    frame = hourly_frame(24 * 40)
    y = frame.set_index("timestamp")["price"]
    now = y.index[-1]
    t = pd.date_range(now - pd.Timedelta(hours=9), now, freq="h")
    bad = pd.DataFrame({"horizon": 1, "origin": t - pd.Timedelta(hours=1), "target_time": t, "forecast": 110.0,
                        "last_price": 100.0, "actual": 101.0, "lower_80": 0.0, "upper_80": 1.0, "lower_95": 0.0,
                        "upper_95": 1.0})
    drift = live.retrain_decision(champion(str(now - pd.Timedelta(hours=10))), now, y, bad, **KNOBS)
    assert drift["due"] and "rel_mae" in drift["reason"]
    too_soon = live.retrain_decision(champion(str(now - pd.Timedelta(hours=2))), now, y, bad, **KNOBS)
    assert not too_soon["due"]
    wild = frame.copy()
    last_day = wild.index[-24:]
    wild.loc[last_day, "price"] = wild.loc[last_day, "price"] * np.exp(np.resize([0.06, -0.06], 24))
    yw = wild.set_index("timestamp")["price"]
    vol = live.retrain_decision(champion(str(now - pd.Timedelta(hours=10))), now, yw, live.empty_log(), **KNOBS)
    assert vol["due"] and "volatility" in vol["reason"]
    calm = frame.copy()
    calm.loc[last_day, "price"] = calm.loc[last_day[0], "price"] * np.exp(np.resize([0.0001, -0.0001], 24))
    yc = calm.set_index("timestamp")["price"]
    assert not live.retrain_decision(champion(str(now - pd.Timedelta(hours=10))), now, yc, live.empty_log(), **KNOBS)["due"]


def test_live_metrics_flatten_to_finite_mlflow_metrics():
    raw = hourly_frame(300)
    log, _ = live.score(make_log(raw, 250, 40), observed_prices(raw), raw["timestamp"].iloc[-1])
    metrics = live.live_metrics(log, raw.set_index("timestamp")["price"], raw["timestamp"].iloc[-1], [1, 24], 100)
    flat = live.flat_live_metrics(metrics)
    assert {"live_rel_mae_1h", "live_coverage_80_24h", "live_rel_mae_1h_window", "realized_vol_24h"} <= set(flat)
    assert all(np.isfinite(v) for v in flat.values())
    assert json.loads(json.dumps(metrics, default=str))["horizons"]["1"]["all"]["n"] == 40


def test_live_json_counts_the_predictions_waiting_for_their_actual():
    """live.json holds what the dashboard shows beside the scores: the rows in force not scored yet, per horizon."""
    raw = hourly_frame(300)
    log, _ = live.score(make_log(raw, 250, 40), live.observed_prices(raw.iloc[:260]), raw["timestamp"].iloc[259])
    log.loc[log.index[:4], "in_force"] = False  # made by a model trained after their hour: never pending
    metrics = live.live_metrics(log, raw.iloc[:260].set_index("timestamp")["price"], raw["timestamp"].iloc[259],
                                [1, 24], 100)
    for h in (1, 24):
        rows = log.loc[(log["horizon"] == h) & log["in_force"]]
        assert metrics["pending"][str(h)] == live.pending(log, h) == int(rows["actual"].isna().sum())
        assert metrics["horizons"][str(h)]["all"]["n"] == int(rows["actual"].notna().sum())
    assert metrics["pending"] == {"1": 0, "24": 14} and metrics["not_in_force"] == 4
    # a target hour that passed without a price is never scored: it is not waiting
    holed = raw.iloc[:260].set_index("timestamp")["price"].drop(raw["timestamp"].iloc[255])
    log, _ = live.score(make_log(raw, 250, 40), holed, raw["timestamp"].iloc[259])
    metrics = live.live_metrics(log, holed, raw["timestamp"].iloc[259], [1, 24], 100)
    assert metrics["pending"] == {"1": 0, "24": 14} and live.pending(log, 24) == 15  # 255 + the 14 after 259
    assert not [k for k in live.flat_live_metrics(metrics) if "pending" in k]  # not an MLflow metric


def test_profile_due_follows_its_own_last_report(tmp_path):
    product = {"report": tmp_path / "profile.html", "meta": tmp_path / "profile.json"}
    assert profile_due(product, "2025-01-01T10:00Z", 24)["due"]
    product["report"].write_text("<html>")
    product["meta"].write_text(json.dumps({"made_for": "2025-01-01T10:00:00+00:00"}))
    assert not profile_due(product, "2025-01-02T09:00Z", 24)["due"]
    assert profile_due(product, "2025-01-02T10:00Z", 24)["due"]
    assert profile_due(product, "2025-01-01T10:00Z", 0)["due"]


def test_profiling_off_writes_a_page_saying_so_and_the_next_enabled_build_profiles(tmp_path):
    product = {"report": tmp_path / "profile.html", "meta": tmp_path / "profile.json"}
    off = profile_due(product, "2025-01-01T10:00Z", 0, enabled=False)
    assert not off["due"] and off["enabled"] is False and "profile_enabled is false" in off["reason"]
    meta = {"last": "2025-01-01T10:00:00+00:00", "now": "2025-01-01T10:05:00+00:00"}
    made = write_profile(off, tmp_path / "never-read.parquet", meta, product)  # no ydata, no features read
    assert made["disabled"] and "Profiling is off" in product["report"].read_text()
    assert json.loads(product["meta"].read_text())["disabled"] is True
    # turned on again: the page is replaced at once, whatever profile_every_hours says
    on = profile_due(product, "2025-01-01T11:05Z", 24, enabled="true")
    assert on["due"] and on["reason"] == "the last build had profiling off"


def test_cron_line_is_tagged_and_install_is_idempotent(tmp_path):
    other = "0 3 * * * /usr/bin/backup  # someone else's\n"
    line = cron.cron_line(tmp_path, 7)
    assert line.startswith("7 * * * * cd ") and "make -s hourly" in line and "logs/cron.log" in line
    once = cron.with_line(other, tmp_path, line)
    twice = cron.with_line(once, tmp_path, cron.cron_line(tmp_path, 9))
    assert once.count(cron.tag_for(tmp_path)) == 1 and twice.count(cron.tag_for(tmp_path)) == 1
    assert twice.startswith(other) and "9 * * * *" in twice
    assert cron.without_line(twice, tmp_path) == other
    with pytest.raises(ValueError, match="minute"):
        cron.cron_line(tmp_path, 60)


def as_cron_runs(line: str) -> tuple[str, str]:
    """(the shell command, its standard input) cron makes of a crontab line's command (crontab(5)): ``\\%`` is a
    literal %, the first unescaped % ends the command and the rest, %s as newlines, is its input."""
    text = line.split(None, 5)[5]
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1:i + 2] == "%":
            out.append("%")
            i += 2
        elif text[i] == "%":
            return "".join(out), text[i + 1:].replace("%", "\n")
        else:
            out.append(text[i])
            i += 1
    return "".join(out), ""


def test_cron_line_survives_a_percent_sign_in_the_project_path(tmp_path):
    project = tmp_path / "100% coins"
    project.mkdir()
    (project / "env%b.yaml").write_text("{}\n")
    line = cron.cron_line(project, 5, "env%b.yaml")
    command, stdin = as_cron_runs(line)
    assert stdin == ""
    import shlex

    words = shlex.split(command, comments=True)
    assert words[:2] == ["cd", str(project.resolve())] and "ENV_FILE=env%b.yaml" in words
    assert cron.with_line(line + "\n", project, cron.cron_line(project, 7, "env%b.yaml")).count("coincast-hourly") == 1


def test_cron_install_refuses_a_bad_minute_or_a_missing_env_file_in_one_line(tmp_path):
    from conftest import BIN, copy_project, run

    project = copy_project(tmp_path / "p")
    before = subprocess.run(["crontab", "-l"], capture_output=True, text=True) if shutil.which("crontab") else None
    try:
        for args, message in (
                (["--minute", "75"], "coincast cron: --minute must be 0-59, got 75"),
                (["--env-files", "env.test.yaml,nosuch.yaml"],
                 f"coincast cron: env file not found: {project.resolve() / 'nosuch.yaml'} (--env-files names files in "
                 "the project folder)")):
            done = run([str(BIN / "coincast"), "cron", "install", "--project", str(project), *args], cwd=project)
            assert (done.returncode, done.stderr) == (2, message + "\n"), done.stderr
        (project / "bad.yaml").write_text("days: 0\n")
        done = run([str(BIN / "coincast"), "cron", "install", "--project", str(project), "--env-files", "bad.yaml"],
                   cwd=project)
        assert (done.returncode, done.stderr) == (2, "coincast: configuration error: days must be a positive whole "
                                                     "number of days, got 0\n")
        if before is not None:  # nothing was installed
            assert subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout == before.stdout
    finally:
        if before is not None and before.returncode == 0:
            subprocess.run(["crontab", "-"], input=before.stdout, text=True, check=True)
        elif before is not None:
            subprocess.run(["crontab", "-r"], capture_output=True)


@pytest.mark.skipif(shutil.which("crontab") is None, reason="crontab not installed (Debian package cron)")
def test_cron_install_and_remove_with_the_real_crontab(tmp_path):
    saved = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    try:
        subprocess.run(["crontab", "-"], input="0 3 * * * true  # keep me\n", text=True, check=True)
        cron.install(tmp_path, 5)
        cron.install(tmp_path, 5)
        text = cron.read_crontab()
        assert text.count(cron.tag_for(tmp_path)) == 1 and "# keep me" in text
        assert cron.remove(tmp_path) and not cron.remove(tmp_path)
        assert cron.read_crontab() == "0 3 * * * true  # keep me\n"
    finally:
        if saved.returncode == 0:
            subprocess.run(["crontab", "-"], input=saved.stdout, text=True, check=True)
        else:
            subprocess.run(["crontab", "-r"], capture_output=True)


def test_hourly_log_file_takes_debug_lines_only_when_verbose(tmp_path):
    import logging

    from coincast.cli import _hourly_logging

    names = ("coincast", "ploomber")
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level, logging.getLogger(n).propagate)
             for n in names}
    try:
        for verbose, folder in ((False, "quiet"), (True, "verbose")):
            for n in names:
                logging.getLogger(n).handlers = saved[n][0][:]
            _hourly_logging({"log_dir": str(tmp_path / folder)}, verbose)
            logging.getLogger("coincast.operations.hourly").debug("build output: details")
            logging.getLogger("coincast.operations.hourly").info("tick: ok")
            for n in names:
                for h in logging.getLogger(n).handlers:
                    h.flush()
            text = (tmp_path / folder / "hourly.log").read_text()
            assert "tick: ok" in text
            assert ("build output: details" in text) is verbose
    finally:
        for n, (handlers, level, propagate) in saved.items():
            log = logging.getLogger(n)
            for h in log.handlers:
                if h not in handlers:
                    h.close()
            log.handlers, log.level, log.propagate = handlers, level, propagate


def test_tick_result_separates_built_and_failed_coins():
    from coincast.operations.build import BuildResult
    from coincast.operations.hourly import TickResult

    ok, failed = BuildResult("bitcoin", built=("extract",)), BuildResult("nosuchcoin", error="404")
    r = TickResult(clock=None, results={"bitcoin": ok, "nosuchcoin": failed})
    assert r.built == ["bitcoin"] and r.failed == {"nosuchcoin": "build failed: 404"} and not r.ok
    assert TickResult(clock=None, results={"bitcoin": BuildResult("bitcoin")}).ok
    assert not TickResult(clock=None, results={"bitcoin": ok}, dvc="dvc failed: no remote").ok


# --- catch-up rows are made by the version in force at their hour (issue 14, item 5) ----------------------
def test_catch_up_rows_use_the_version_in_force_at_their_origin_and_flag_the_rest():
    raw = hourly_frame(300)
    y = raw.set_index("timestamp")["price"]
    log = make_log(raw, 250, 1)  # last logged origin: hour 249; ticks for hours 250..299 were missed
    old, new = served("naive"), served("drift", window=24)
    retrained_at = y.index[290]  # the train task of this tick retrained on data through hour 290
    versions = {"1": {"version": "1", "data_through": y.index[200].isoformat()},
                "2": {"version": "2", "data_through": retrained_at.isoformat()}}
    asked = []

    def in_force_at(origin):  # what registry.in_force_at answers: the older version before the retrain
        asked.append(origin)
        if origin >= retrained_at:
            return new, versions["2"]
        return (old, versions["1"]) if origin >= y.index[255] else None  # before 255: no version was in force

    out, summary = live.update_log(log, new, versions["2"], raw, coin="bitcoin", horizons=[1, 24], data_version="v",
                                   now=y.index[-1], max_catchup_hours=168, in_force_at=in_force_at)
    added = out.loc[out["origin"] > y.index[249]]
    by_origin = added.drop_duplicates("origin").set_index("origin")
    assert len(asked) == 50 and len(added) == 100
    assert set(by_origin.loc[y.index[290]:, "model_version"]) == {"2"}
    assert set(by_origin.loc[y.index[255]:y.index[289], "model_version"]) == {"1"}
    assert (by_origin.loc[y.index[255]:, "in_force"]).all()
    # no version in force: the current champion made the rows, flagged out of every score
    early = by_origin.loc[:y.index[254]]
    assert set(early["model_version"]) == {"2"} and not early["in_force"].any() and len(early) == 5
    assert summary["not_in_force"] == 10 and summary["late"] == 98
    assert summary["model_versions"][y.index[260].isoformat()] == "1"
    # each row is what its own model forecasts from the data up to its origin
    at = y.index[270]
    expected = old.forecast(raw.loc[raw["timestamp"] <= at], [1, 24])["forecast"].to_numpy()
    np.testing.assert_allclose(added.loc[added["origin"] == at, "forecast"], expected)

    # live accuracy and the drift check leave the flagged rows out, even when they are far off
    scored, _ = live.score(out, observed_prices(raw), y.index[-1])
    wild = scored.copy()
    wild.loc[~wild["in_force"], "forecast"] *= 3
    assert live.accuracy(wild, 1) == live.accuracy(scored, 1)
    assert live.accuracy(wild, 1)["n"] == int((scored["in_force"] & scored["actual"].notna()
                                               & (scored["horizon"] == 1)).sum())
    knobs = {**KNOBS, "drift_min_scored": 1, "drift_window_hours": 24 * 10}
    champ = champion(str(y.index[-1] - pd.Timedelta(hours=10)))
    only_flagged = wild.loc[~wild["in_force"]]
    assert "rel_mae" not in live.retrain_decision(champ, y.index[-1], y, only_flagged, **knobs)["reason"]
    assert live.retrain_decision(champ, y.index[-1], y, only_flagged.assign(in_force=True), **knobs)["due"]


def test_without_a_resolver_the_champion_is_in_force_and_old_logs_read(tmp_path):
    raw = hourly_frame(300)
    log, summary = live.update_log(make_log(raw, 290, 1), served(), {"version": "3"}, raw, coin="bitcoin",
                                   horizons=[1], data_version=None, now=raw["timestamp"].iloc[-1],
                                   max_catchup_hours=168)
    assert log["in_force"].all() and log["in_force"].dtype == bool and summary["not_in_force"] == 0
    # a log written before the in_force column existed still reads; its catch-up rows are left out of scores
    path = tmp_path / "old.parquet"
    log.drop(columns=["in_force"]).to_parquet(path)
    old = live.read_log(path)
    assert list(old.columns) == live.LOG_COLUMNS and old["in_force"].dtype == bool
    assert (old["in_force"] == ~old["late"]).all() and old["late"].sum() == 9
    live.write_log(live.append(old, make_log(raw, 300, 1)), path)
    assert live.read_log(path)["in_force"].dtype == bool


def test_a_score_from_too_few_rows_is_too_few_to_score_in_live_json_and_mlflow():
    raw = hourly_frame(300)
    log, _ = live.score(make_log(raw, 250, 40), observed_prices(raw.iloc[:260]), raw["timestamp"].iloc[259])
    y = raw.set_index("timestamp")["price"]
    few = live.accuracy(log, 1, min_scored=41)
    assert few == {"n": 40.0, "mae": None, "naive_mae": None, "rel_mae": None, "coverage_80": None,
                   "coverage_95": None, **dict.fromkeys(PROBABILISTIC), "status": "too few to score (n < 41)"}
    assert "status" not in live.accuracy(log, 1, min_scored=40) and live.accuracy(log, 1, min_scored=40)["rel_mae"]
    metrics = live.live_metrics(log, y, raw["timestamp"].iloc[-1], [1, 24], 100, min_scored=30)
    assert metrics["min_scored_rows"] == 30
    h1, h24 = metrics["horizons"]["1"]["all"], metrics["horizons"]["24"]["all"]
    assert h1["n"] == 40 and h1["rel_mae"] is not None and "status" not in h1
    assert h24["n"] == 26 and h24["rel_mae"] is None and h24["status"] == "too few to score (n < 30)"
    as_json = json.loads(json.dumps(metrics))  # live.json: null, with the reason
    assert as_json["horizons"]["24"]["all"]["rel_mae"] is None
    flat = live.flat_live_metrics(metrics)
    assert "live_rel_mae_1h" in flat and "live_n_24h" in flat
    # no number from too few rows
    assert not [k for k in flat if k.startswith("live_") and k.endswith("_24h") and k != "live_n_24h"]
    table = live.summary_table(metrics)
    assert table.loc[(24, "all"), "status"] == "too few to score (n < 30)"


def test_replay_report_says_too_few_to_score():
    from coincast.operations.hourly import format_report

    entry = {"completeness": {"hours": 24, "missed": {"1": 0}, "unscored_known": 0}, "late_rows": 0,
             "not_in_force_rows": 3, "accuracy": {
                 "1": {"n": 1.0, "rel_mae": None, "status": "too few to score (n < 24)"},
                 "24": {"n": 30.0, "rel_mae": 0.98, "coverage_80": 0.8, "coverage_95": 0.9}}}
    text = format_report({"ticks": 24, "first_clock": "a", "last_clock": "b", "source": "simulated",
                          "wall_seconds": 1.0, "tick_seconds": {"median": 1.0}, "failed_ticks": [],
                          "coins": {"bitcoin": entry}})
    assert "1 h ahead: 1 scored: too few to score (n < 24)" in text and "rel_mae vs naive 0.9800" in text
    one_hour = next(line for line in text.splitlines() if "1 h ahead" in line)
    assert "rel_mae" not in one_hour and "coverage" not in one_hour  # no number from one scored row
    assert "not scored) 3" in text


def test_the_replay_report_scores_its_rows_against_the_whole_logs_baseline(tmp_path):
    """The replay's rows are scored as live.json scores them: against the naive-empirical baseline of the whole log
    (its errors before the replay calibrate it), not one rebuilt from the replay's rows alone (which lost its first
    48 hours of baseline and gave other rel_* numbers for the same predictions)."""
    from coincast.files import write_json_atomic
    from coincast.operations.hourly import replay_report

    raw = hourly_frame(400)
    t = raw["timestamp"]
    log = live.predictions_at(served(), {"version": "1"}, raw, list(t.iloc[200:399]), [1], coin="bitcoin",
                              data_version="v", made_at=t.iloc[399])
    log, _ = live.score(log, observed_prices(raw), t.iloc[399])
    meta = {"coin": "bitcoin", "source": "simulated", "series": "seed1", "vs_currency": "usd"}
    env = {"coins": ["bitcoin"], "predictions_dir": str(tmp_path / "predictions"), "log_horizons": [1],
           "min_scored_rows": 5, "calibration_window_days": 30}
    live.write_log(log, live.log_path(env["predictions_dir"], meta))
    write_json_atomic(meta, tmp_path / "products" / "bitcoin" / "published" / "extract.json")
    first, last = t.iloc[330], t.iloc[398]  # the replay: the last 69 origins; 130 logged before it
    got = replay_report(tmp_path, env, first, last)["bitcoin"]["accuracy"]["1"]
    inside = log.loc[log["origin"].between(first, last)]
    whole = live.accuracy(inside, 1, None, 5, baseline=live.naive_empirical(log, 1, 30))
    alone = live.accuracy(inside, 1, None, 5, 30)  # the baseline from the replay's rows only
    assert got == whole and got["n"] == 69
    assert got["rel_interval_score_80"] is not None and alone["rel_interval_score_80"] != got["rel_interval_score_80"]


def test_a_replay_over_hours_the_log_already_holds_is_refused(tmp_path):
    from coincast.operations.hourly import replay_log_path, replay_refusal

    env = {"coins": ["bitcoin"], "source": "simulated", "vs_currency": "usd", "seed": 42, "replay_file": None,
           "history_dir": str(tmp_path / "history"), "predictions_dir": str(tmp_path / "predictions")}
    path = replay_log_path(env, "bitcoin")
    assert path == tmp_path / "predictions/simulated/seed42/bitcoin-usd.parquet"
    first = pd.Timestamp("2024-01-11T00:05Z")
    assert replay_refusal(env, first) is None  # no log yet
    raw = hourly_frame(300)  # hours 2024-01-01T00:00 .. 2024-01-13T11:00
    path.parent.mkdir(parents=True)
    live.write_log(make_log(raw, 250, 1), path)  # last origin 2024-01-11T09:00
    why = replay_refusal(env, first)
    assert why.startswith("refused: bitcoin's prediction log") and "\n" not in why
    assert "up to 2024-01-11T09:00Z" in why and "--start 2024-01-11T10:05Z" in why and "START=" in why
    assert replay_refusal(env, pd.Timestamp("2024-01-11T09:05Z")) is not None  # that hour is logged
    assert replay_refusal(env, pd.Timestamp("2024-01-11T10:05Z")) is None  # right after it
    assert replay_refusal({**env, "seed": 7}, first) is None  # another series has its own log


def test_a_champion_of_another_series_or_from_the_future_is_retrained():
    """One registry per coin: a champion trained on simulated data must not forecast live prices, nor one
    trained on later data forecast a replay of the past."""
    from coincast.registry import cannot_serve

    meta = {"source": "coingecko", "series": "api", "vs_currency": "usd", "now": "2026-01-02T10:05:00+00:00"}
    champ = {"source": "coingecko", "series": "api", "vs_currency": "usd", "data_through": "2026-01-02T09:00:00+00:00"}
    assert cannot_serve(champ, meta) is None and cannot_serve(None, meta) is None
    assert "trained on simulated/seed42/usd data; this build's data is coingecko/api/usd" in cannot_serve(
        {**champ, "source": "simulated", "series": "seed42"}, meta)
    assert "coingecko/api/eur" in cannot_serve({**champ, "vs_currency": "eur"}, meta)
    assert "after this build's clock" in cannot_serve({**champ, "data_through": "2026-01-03T00:00:00+00:00"}, meta)
    assert cannot_serve({"data_through": champ["data_through"]}, meta) is None  # an older version: no tags


def test_accuracy_over_time_ends_at_the_window_score_and_says_too_few_before():
    raw = hourly_frame(300)
    now = raw["timestamp"].iloc[250] + pd.Timedelta(minutes=30)  # a build: data through the hour after the log's
    log, _ = live.score(make_log(raw, 250, 60), live.observed_prices(raw.iloc[:251]), now)
    log.loc[log.index[:4], "in_force"] = False  # made by a model trained after their hour: never scored
    over = live.accuracy_over_time(log, [1, 24], window_hours=48, min_scored=20)
    assert list(over.columns) == ["horizon", "target_time", "n", "rel_mae", "coverage_80", "coverage_95"]
    for h in (1, 24):
        g = over.loc[over["horizon"] == h]
        assert g["target_time"].is_monotonic_increasing and g["target_time"].max() <= now
        window = live.accuracy(log, h, now - pd.Timedelta(hours=48), min_scored=20)
        last = g.iloc[-1]
        assert last["n"] == window["n"]
        for key in ("rel_mae", "coverage_80", "coverage_95"):  # live.json's window numbers, at the newest hour
            assert last[key] == pytest.approx(window[key])
        early = g.loc[g["n"] < 20]
        assert len(early) and early[["rel_mae", "coverage_80", "coverage_95"]].isna().all().all()  # too few
    all_time = live.accuracy_over_time(log, [1], window_hours=1000, min_scored=1)
    assert all_time["n"].iloc[-1] == live.accuracy(log, 1)["n"] == 60 - 2  # rows not in force are left out
    assert live.accuracy_over_time(live.empty_log(), [1, 24], 48, 20).empty

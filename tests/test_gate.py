"""coincast.data.gate: the hours a passing gate accepted and the hours a person accepted, kept beside the history."""
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coincast.data import gate
from coincast.data.extract import extract
from coincast.data.history import read_history, store_batch
from conftest import BIN, copy_project, hourly_frame, run

NOW = pd.Timestamp("2024-01-09T07:30Z")  # 30 min after the last of 200 hours from 2024-01-01
LIMITS = {"min_rows": 50}


def stored(tmp_path: Path, frame: pd.DataFrame) -> tuple[Path, dict]:
    path = tmp_path / "simulated" / "seed42" / "bitcoin-usd.parquet"
    store_batch(path, frame, "simulated")
    return path, {"coin": "bitcoin", "now": NOW.isoformat(), "history_file": str(path)}


def test_a_real_extreme_hour_blocks_once_then_accepted_hours_are_not_rejudged(tmp_path: Path):
    frame = hourly_frame()
    path, meta = stored(tmp_path, frame.iloc[:150])
    window = read_history(path)
    report = gate.judge(window, None, {**meta, "now": window["timestamp"].iloc[-1].isoformat()}, **LIMITS)
    assert report["passed"] and report["validated_through"] is None and not gate.state_path(path).exists()
    assert gate.record_pass(report, window, meta) == "2024-01-07T05:00:00+00:00"
    state = json.loads(gate.state_path(path).read_text())
    assert state["validated"] == [["2024-01-01T00:00:00+00:00", "2024-01-07T05:00:00+00:00"]]
    assert gate.state_path(path).name == "bitcoin-usd.gate.json"

    # a new hour moves +60 %: the gate stops it (naming the hour) and records nothing
    new = hourly_frame().iloc[150:]
    new.loc[160:, "price"] *= 1.6
    store_batch(path, new, "simulated")
    window = read_history(path)
    report = gate.judge(window, None, meta, **LIMITS)
    assert report["failed"] == ["jumps"] and "2024-01-07T16:00:00+00:00" in report["checks"][-1]["message"]
    assert report["validated_through"] == "2024-01-07T05:00:00+00:00"
    before = gate.state_path(path).read_bytes()
    assert gate.record_pass(report, window, meta) is None and gate.state_path(path).read_bytes() == before

    # a person accepts it; the gate passes, lists the acceptance, and records the window
    history_before = path.read_bytes()
    record, new_record = gate.accept(path, "2024-01-07 16:00", "exchange listing, confirmed on two venues")
    assert new_record and record["time"] == "2024-01-07T16:00:00+00:00" and record["check"] == "jumps"
    assert path.read_bytes() == history_before  # price rows never rewritten
    report = gate.judge(window, None, meta, **LIMITS)
    assert report["passed"] and [a["reason"] for a in report["accepted"]] == ["exchange listing, confirmed on two venues"]
    assert gate.record_pass(report, window, meta) == "2024-01-09T07:00:00+00:00"
    again, new_record = gate.accept(path, "2024-01-07T16:00Z", "another reason")
    assert not new_record and again == record and len(gate.read_acceptances(path)) == 1


def test_validated_hours_keep_holes_apart(tmp_path: Path):
    frame = hourly_frame()
    path, meta = stored(tmp_path, frame.drop(index=[60, 61]))
    window = read_history(path)
    gate.record_pass({"passed": True}, window, meta)
    assert gate.read_validated(path) == [(frame["timestamp"].iloc[0], frame["timestamp"].iloc[59]),
                                         (frame["timestamp"].iloc[62], frame["timestamp"].iloc[199])]
    filled = frame.iloc[[60, 61]].copy()
    filled["price"] *= 3  # the refetched hole is bad: still judged although it lies before validated_through
    store_batch(path, filled, "simulated")
    assert gate.judge(read_history(path), None, meta, **LIMITS)["failed"] == ["jumps"]


@pytest.mark.parametrize("time, reason, message", [
    ("2024-01-03T05:00Z", "", "a reason is required"),
    ("2024-01-03T05:00Z", "   ", "a reason is required"),
    ("2024-02-03T05:00Z", "real", "2024-02-03T05:00:00+00:00 is not an hour stored in"),
    ("2024-01-03T05:30Z", "real", "is not an hour stored in"),
    ("yesterday-ish", "real", "TIME 'yesterday-ish' is not a date/time"),
])
def test_accept_refuses(tmp_path: Path, time, reason, message):
    path, _ = stored(tmp_path, hourly_frame())
    with pytest.raises(gate.AcceptError, match=re.escape(message)):
        gate.accept(path, time, reason)
    assert not gate.acceptance_path(path).exists()


def test_accept_without_a_history(tmp_path: Path):
    with pytest.raises(gate.AcceptError, match=r"no history at .* \(build first"):
        gate.accept(tmp_path / "bitcoin-usd.parquet", "2024-01-03T05:00Z", "real")


def test_a_damaged_gate_state_is_a_clear_error(tmp_path: Path):
    path, meta = stored(tmp_path, hourly_frame())
    gate.state_path(path).write_text("{not json")
    with pytest.raises(Exception, match="bitcoin-usd.gate.json cannot be read .* restore it from DVC"):
        gate.judge(read_history(path), None, meta)


def test_coincast_accept_command_uses_the_builds_history(tmp_path: Path):
    """`coincast accept` resolves the file a build with the same options uses (env.test.yaml: simulated, seed 42)."""
    project = copy_project(tmp_path / "project")
    extract("bitcoin", 3, "simulated", replay_now="2025-06-01T12:30Z", history_dir=project / "data" / "history-test")
    path = project / "data/history-test/simulated/seed42/bitcoin-usd.parquet"
    cmd = [str(BIN / "coincast"), "accept", "--project", str(project), "--env", "env.test.yaml", "bitcoin"]
    ok = run([*cmd, "2025-06-01T10:00Z", "--reason", "checked against the exchange"], cwd=project)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("coincast accept: bitcoin 2025-06-01T10:00:00+00:00 accepted for jumps")
    assert [r["reason"] for r in json.loads(gate.acceptance_path(path).read_text())] == ["checked against the exchange"]
    for args, text in ((["2025-06-01T10:00Z"], "a reason is required"),
                       (["2020-01-01T00:00Z", "--reason", "x"], "is not an hour stored in"),
                       (["2025-06-01T10:00Z", "--reason", "x", "--set", "seed=7"], "no history at")):
        refused = run([*cmd, *args], cwd=project)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and text in refused.stderr, refused.stderr
    assert len(json.loads(gate.acceptance_path(path).read_text())) == 1


def test_zero_volume_hours_are_stored_and_only_warned_about(tmp_path: Path):
    frame = hourly_frame()
    frame.loc[[10, 11], "volume"] = 0.0
    path, meta = stored(tmp_path, frame)
    window = read_history(path)
    assert len(window) == 200 and (window["volume"] == 0).sum() == 2
    report = gate.judge(window, None, meta)
    assert report["passed"] and report["warnings"][0]["count"] == 2
    assert np.isfinite(window["price"]).all()

"""DVC snapshots: a DVC command that runs too long is stopped and reported in one line, never a traceback."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from coincast.operations import hourly, versioning


@pytest.fixture
def dvc_project(tmp_path: Path) -> Path:
    """A folder DVC snapshots are enabled in (.dvc/ and dvc.yaml): the real `dvc` starts there."""
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    assert versioning.dvc_enabled(tmp_path)
    return tmp_path


def test_a_dvc_command_past_its_timeout_is_stopped_with_one_line(dvc_project: Path):
    started = time.monotonic()
    with pytest.raises(RuntimeError) as exc:
        versioning.snapshot(dvc_project, "simulated", push=False, timeout=0.01)
    assert str(exc.value) == "dvc commit timed out after 0.01 s (stopped)"
    assert time.monotonic() - started < 30  # cut off, not run to its end


def test_the_tick_reports_a_dvc_timeout_as_its_dvc_line(dvc_project: Path):
    line = hourly.snapshot_data(dvc_project, {"source": "simulated", "dvc_push": True}, timeout=0.01)
    assert line == "dvc failed: dvc commit timed out after 0.01 s (stopped)"
    result = hourly.TickResult(clock=None, dvc=line)
    assert not result.ok and hourly.describe(result)[-2] == f"tick now: {line}"


def test_a_dvc_that_cannot_start_is_one_line(dvc_project: Path, monkeypatch):
    monkeypatch.setattr(versioning, "dvc_executable", lambda: str(dvc_project / "no-such-dvc"))
    with pytest.raises(RuntimeError, match=r"^dvc commit could not run: FileNotFoundError: .*no-such-dvc"):
        versioning.snapshot(dvc_project, "simulated", push=False)

"""Data versions: the DVC hash of a raw-history file, and DVC snapshots of the data layer.

``coincast.files.file_md5`` is the hash DVC 3 records for a file (the md5 of its bytes): the same value appears in
``dvc.lock`` / the directory manifest once the history is committed, and names the file's copy in the
DVC cache and remote. Every MLflow run and every logged prediction carries it as ``data_version``.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

logger = logging.getLogger(__name__)

#: The DVC stage (dvc.yaml) that owns each source's raw history and prediction log.
DVC_STAGES = {"simulated": "build@simulated", "coingecko": "build@coingecko"}


def dvc_executable() -> str:
    """The ``dvc`` next to this interpreter (the project's venv), else the one on PATH."""
    local = Path(sys.executable).with_name("dvc")
    return str(local) if local.exists() else (shutil.which("dvc") or "dvc")


def dvc_enabled(root: str | os.PathLike) -> bool:
    return (Path(root) / ".dvc").is_dir() and (Path(root) / "dvc.yaml").is_file()


#: Seconds each DVC command of a snapshot may take before it is stopped (a hung remote must not hang the tick).
DVC_TIMEOUT = 300.0


def _dvc(root: Path, args: Sequence[str], timeout: float) -> subprocess.CompletedProcess:
    """Run ``dvc <args>`` in ``root``; a command that runs past ``timeout`` seconds is killed and raises
    RuntimeError (one line), as does one that cannot be started."""
    # DVC's analytics are off in this process's environment (coincast.patches.telemetry_off), so in DVC's too
    try:
        return subprocess.run([dvc_executable(), *args], cwd=root, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"dvc {args[0]} timed out after {timeout:g} s (stopped)") from None
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"dvc {args[0]} could not run: {type(exc).__name__}: {exc}") from None


def snapshot(root: str | os.PathLike, source: str, push: bool = True, timeout: float = DVC_TIMEOUT) -> str:
    """Record the source's raw history and prediction log in DVC (``dvc commit``; ``dvc push`` when asked).

    Returns a one-line outcome; raises RuntimeError (one line) with DVC's own message when a command fails, or
    when it runs past ``timeout`` seconds (each command; it is stopped)."""
    root = Path(root)
    stage = DVC_STAGES.get(source)
    if stage is None:
        return f"dvc: no stage versions source {source!r} (dvc.yaml covers {', '.join(DVC_STAGES)})"
    if not dvc_enabled(root):
        return "dvc: not initialised here (make dvc-init): data not versioned"
    steps = [["commit", "--force", "--quiet", stage]]
    if push:
        steps.append(["push", "--quiet", stage])
    for args in steps:
        proc = _dvc(root, args, timeout)
        if proc.returncode != 0:
            lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
            raise RuntimeError(f"dvc {args[0]} failed: {lines[-1] if lines else 'exit ' + str(proc.returncode)}")
    return f"dvc: {stage} committed" + (" and pushed" if push else "")

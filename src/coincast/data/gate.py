"""The gate's memory, kept beside the raw history and versioned with it (DVC tracks the whole folder).

- ``<coin>-<vs>.gate.json``: the hours a passing gate has accepted, as runs of consecutive hours
  (``validated``; ``validated_through`` is the newest). Rows already accepted are not re-judged by the
  ``jumps`` check, so one real extreme hour cannot block a coin for the whole window. Runs, not just the last
  hour: a hole (a quarantined hour) refetched later lies before the last accepted hour and is still judged.
- ``<coin>-<vs>.accepted.json``: hours a person accepted (``coincast accept COIN TIME --reason ...``), each
  ``{time, reason, accepted_at, check}``; the move ending at such an hour is not judged by ``check``.

Both are written atomically under the history's lock; neither ever changes a price row.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from coincast.data.extract import history_file_for
from coincast.data.history import HistoryError, history_lock, read_history
from coincast.files import write_json_atomic
from coincast.data.sources.base import SourceError
from coincast.timeseries import to_utc, utc_times
from coincast.data.validation import hour_ranges, validate_data

logger = logging.getLogger(__name__)


class AcceptError(ValueError):
    """``coincast accept`` refuses: the message is one line naming why."""


def state_path(history_file: str | os.PathLike) -> Path:
    p = Path(history_file)
    return p.with_name(f"{p.stem}.gate.json")


def acceptance_path(history_file: str | os.PathLike) -> Path:
    p = Path(history_file)
    return p.with_name(f"{p.stem}.accepted.json")


def _read(path: Path, empty: Any) -> Any:
    if not path.exists():
        return empty
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HistoryError(f"{path} cannot be read ({type(exc).__name__}): restore it from DVC") from None


def read_validated(history_file: str | os.PathLike) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """The hour ranges a passing gate accepted for this history ([] before the first pass)."""
    state = _read(state_path(history_file), {})
    return [(pd.Timestamp(a), pd.Timestamp(b)) for a, b in state.get("validated", [])]


def read_acceptances(history_file: str | os.PathLike) -> list[dict[str, Any]]:
    return list(_read(acceptance_path(history_file), []))


def judge(raw: pd.DataFrame, quarantined: pd.DataFrame | None, meta: Mapping[str, Any], **limits: Any) -> dict[str, Any]:
    """The gate's report for this build: the window ``raw`` plus the extraction's ``quarantined`` rows, with the
    history's validated hours and acceptances (``meta``: extract.json; no ``history_file``: judge everything)."""
    history_file = meta.get("history_file")
    validated = read_validated(history_file) if history_file else []
    accepted = read_acceptances(history_file) if history_file else []
    return validate_data(raw, fail_on_error=False, now=meta["now"], coin=meta.get("coin"), quarantined=quarantined,
                         validated=validated, accepted=accepted, start=meta.get("window_start"), **limits)


def record_pass(report: Mapping[str, Any], raw: pd.DataFrame, meta: Mapping[str, Any]) -> str | None:
    """After a passing gate, add the window's hours to the history's validated hours; returns the new
    ``validated_through`` (None if the gate failed or there is no history). Written only when it changes."""
    history_file = meta.get("history_file")
    if not report.get("passed") or not history_file or raw.empty:
        return None
    path = state_path(history_file)
    with history_lock(history_file):
        old = read_validated(history_file)
        new = hour_ranges(utc_times(raw["timestamp"]), old)
        through = new[-1][1].isoformat()
        if new != old:
            write_json_atomic({"validated_through": through,
                               "validated": [[a.isoformat(), b.isoformat()] for a, b in new],
                               "updated_at": pd.Timestamp.now(tz="UTC").floor("s").isoformat()}, path)
    logger.info("gate: hours through %s accepted (%s)", through, path.name)
    return through


def accept(history_file: str | os.PathLike, time: Any, reason: str | None, check: str = "jumps",
           accepted_at: pd.Timestamp | None = None) -> tuple[dict[str, Any], bool]:
    """Record that a person accepted the hour ``time`` of this history for ``check``; returns (record, new).

    Refuses (:class:`AcceptError`) without a reason, or when ``time`` is not an hour stored in the history.
    An hour already accepted for ``check`` keeps its first record (new is False)."""
    reason = (reason or "").strip()
    if not reason:
        raise AcceptError('a reason is required: --reason "why this hour is real"')
    try:
        ts = to_utc(time)
    except (ValueError, TypeError):
        ts = pd.NaT
    if ts is pd.NaT:
        raise AcceptError(f"TIME {time!r} is not a date/time (e.g. 2021-05-19T13:00Z)")
    path = Path(history_file)
    if not path.exists():
        raise AcceptError(f"no history at {path} (build first, with the same --env/--set/--source options)")
    with history_lock(path):
        if not read_history(path)["timestamp"].eq(ts).any():
            raise AcceptError(f"{ts.isoformat()} is not an hour stored in {path}")
        records = read_acceptances(path)
        for r in records:
            if pd.Timestamp(r["time"]) == ts and r.get("check") == check:
                return r, False
        record = {"time": ts.isoformat(), "reason": reason, "check": check,
                  "accepted_at": (accepted_at or pd.Timestamp.now(tz="UTC")).floor("s").isoformat()}
        write_json_atomic([*records, record], acceptance_path(path))
    logger.info("gate: %s accepted for %s (%s)", ts.isoformat(), check, reason)
    return record, True


def accept_hour(project: str | os.PathLike, env: Mapping[str, Any], coin: str, time: Any,
                reason: str | None) -> tuple[Path, dict[str, Any], bool]:
    """``coincast accept``: :func:`accept` on the history file a build with ``env`` uses for ``coin`` (relative
    paths from ``project``); returns (that file, record, new). Every refusal is an :class:`AcceptError`."""
    try:
        path = Path(project) / history_file_for(env, coin)
        record, new = accept(path, time, reason)
    except (HistoryError, SourceError) as exc:
        raise AcceptError(str(exc)) from None
    return path, record, new

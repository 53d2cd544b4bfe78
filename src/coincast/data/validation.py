"""The validation gate: nothing downstream runs on data that fails it.

Row-level rules (required columns, types, positive finite price, non-negative finite volume, unique
timestamps) are a pandera schema; series-level rules (nulls, row count, hourly grid, gaps, staleness,
jumps) are measured here so the report can give their numbers. ``validate_data`` returns a JSON-ready report:
``{"passed": bool, "checks": [{"name", "passed", "message", ...numbers}], "warnings": [...], ...}``.

Rows the extraction quarantined (``quarantined``) count in the row-level checks (nulls, types,
positive_price, non_negative_volume), so a bad batch still stops the build although its rows never entered
the window; the window-level checks judge the window only. Zero-volume hours pass with a warning.
``jumps`` judges only 1-hour moves that touch an hour not yet accepted by an earlier passing gate
(``validated``: ranges of hours) and not accepted by a person (``accepted``: ``coincast accept``).
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import pandera.pandas as pa

from coincast.timeseries import HOUR, utc_times

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("timestamp", "price", "volume")
Ranges = Sequence[tuple[pd.Timestamp, pd.Timestamp]]

DEFAULTS: dict[str, Any] = {
    "null_threshold": 0.01,
    "min_rows": 100,
    "max_missing_fraction": 0.02,
    "max_gap_hours": 6,
    "max_staleness_hours": 3,
    "max_abs_log_return": 0.25,
}


class ValidationFailed(RuntimeError):
    """Raised by the gate; ``report`` holds every check."""

    def __init__(self, report: dict[str, Any]) -> None:
        self.report = report
        failed = [c for c in report["checks"] if not c["passed"]]
        coin = f" for {report['coin']}" if report.get("coin") else ""
        super().__init__(
            f"validation failed{coin}: " + "; ".join(f"{c['name']}: {c['message']}" for c in failed)
        )


def _finite() -> pa.Check:
    return pa.Check(lambda s: ~np.isinf(s), name="finite")


def _schema() -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            "timestamp": pa.Column("datetime64[ns, UTC]", unique=True, nullable=False, coerce=True),
            "price": pa.Column(float, [pa.Check.gt(0), _finite()], nullable=True, coerce=True),
            "volume": pa.Column(float, [pa.Check.ge(0), _finite()], nullable=True, coerce=True),
        },
        strict=False,
    )


def _schema_failures(df: pd.DataFrame) -> pd.DataFrame:
    try:
        _schema().validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        return exc.failure_cases
    return pd.DataFrame(columns=["column", "check", "failure_case"])


def _check(name: str, passed: bool, message: str, **numbers: Any) -> dict[str, Any]:
    clean = {k: (v.isoformat() if isinstance(v, pd.Timestamp) else v) for k, v in numbers.items()}
    return {"name": name, "passed": bool(passed), "message": message, **clean}


def hour_ranges(hours: Sequence[pd.Timestamp] | pd.DatetimeIndex, ranges: Ranges = ()) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """The union of ``ranges`` (inclusive [first, last] hour pairs) and ``hours``, as sorted runs of
    consecutive hours: [(first, last), ...]."""
    spans = [(pd.Timestamp(a), pd.Timestamp(b)) for a, b in ranges]
    idx = pd.DatetimeIndex(utc_times(list(hours))).unique().sort_values()
    if len(idx):
        breaks = np.flatnonzero(np.diff(idx.asi8) != HOUR.value) + 1
        starts, ends = np.r_[0, breaks], np.r_[breaks, len(idx)] - 1
        spans += [(idx[i], idx[j]) for i, j in zip(starts, ends)]
    out: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1] + HOUR:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def in_ranges(times: pd.DatetimeIndex, ranges: Ranges) -> np.ndarray:
    """Whether each time lies in one of the inclusive ``ranges``."""
    mask = np.zeros(len(times), dtype=bool)
    for a, b in ranges:
        mask |= np.asarray((times >= pd.Timestamp(a)) & (times <= pd.Timestamp(b)))
    return mask


def _row_checks(df: pd.DataFrame, quarantined: pd.DataFrame, lim: Mapping[str, Any]) -> list[dict[str, Any]]:
    """nulls, types, positive_price, non_negative_volume over the window plus the quarantined rows."""
    cols = list(REQUIRED_COLUMNS)
    rows = pd.concat([df[cols], quarantined[cols]], ignore_index=True) if len(quarantined) else df[cols]
    n, q = len(rows), len(quarantined)
    extra = f" ({q} of them quarantined by this extraction)" if q else ""
    fractions = {c: float(rows[c].isna().mean()) if n else 0.0 for c in cols}
    worst = max(fractions, key=fractions.get)
    checks = [_check(
        "nulls", all(f <= lim["null_threshold"] for f in fractions.values()),
        f"worst column {worst}: {fractions[worst]:.2%} null (limit {lim['null_threshold']:.2%}) of {n} rows{extra}",
        null_fraction=fractions, threshold=lim["null_threshold"], quarantined=q,
    )]
    failures = _schema_failures(rows.dropna(subset=["timestamp"]))
    kinds = failures["check"].astype(str) if len(failures) else pd.Series(dtype=str)
    value_rule = kinds.str.startswith("greater_than") | (kinds == "finite")
    ranged = failures.loc[value_rule] if len(failures) else failures
    bad_type = failures.loc[~value_rule & ~kinds.str.contains("unique")] if len(failures) else failures
    not_numeric = int(quarantined["reason"].astype(str).str.contains("not numeric").sum()) if "reason" in quarantined else 0
    n_types = len(bad_type) + not_numeric
    checks.append(_check(
        "types", n_types == 0,
        "ok" if n_types == 0 else f"{n_types} values not coercible"
        + (f" ({', '.join(sorted(set(bad_type['column'].astype(str))))})" if len(bad_type) else " (quarantined)"),
        failures=int(n_types),
    ))
    for rule, column, text in (("positive_price", "price", "price <= 0 or not finite"),
                               ("non_negative_volume", "volume", "volume < 0 or not finite")):
        count = int((ranged["column"] == column).sum()) if len(ranged) else 0
        checks.append(_check(rule, count == 0, f"{count} rows with {text}{extra if count else ''}", failures=count))
    return checks


def _jumps(df: pd.DataFrame, lim: Mapping[str, Any], validated: Ranges, accepted: Sequence[pd.Timestamp]) -> dict[str, Any]:
    """The largest 1-hour move among those not accepted before: the move from each price to the next one present,
    as a 1-hour move (its |log return| / √hours: across a missing hour or a bad price the move is judged over the
    hours it spans, never skipped). A move ending at hour t is judged unless both its start and t lie in
    ``validated`` (accepted by an earlier passing gate) or t is in ``accepted``."""
    series = df.dropna(subset=["timestamp"]).sort_values("timestamp")
    series = series.set_index(utc_times(series["timestamp"]))["price"]
    series = pd.to_numeric(series[~series.index.duplicated()], errors="coerce")
    series = series[series > 0]  # NaN, non-positive: not a price (positive_price names them)
    ends, starts = pd.DatetimeIndex(series.index[1:]), pd.DatetimeIndex(series.index[:-1])
    spans = np.asarray((ends - starts) / HOUR, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        moves = np.abs(np.diff(np.log(series.to_numpy(dtype=float)))) / np.sqrt(spans)
    r = pd.Series(moves, index=ends)
    old = in_ranges(ends, validated) & in_ranges(starts, validated) if len(ends) else np.zeros(0, bool)
    by_person = np.asarray(ends.isin(pd.DatetimeIndex(list(accepted)))) if len(accepted) and len(ends) else np.zeros(len(ends), bool)
    judged = r[~old & ~by_person]
    limit = lim["max_abs_log_return"]
    over = judged[judged > limit]
    worst = float(judged.max()) if len(judged) else 0.0
    through = max((pd.Timestamp(b) for _, b in validated), default=None)
    if len(judged):
        message = f"largest new 1 h move {np.expm1(worst):+.1%} (limit {np.expm1(limit):.0%})"
        span = float(pd.Series(spans, index=ends)[judged.idxmax()])
        if span > 1:  # the 1 h equivalent of a move across missing hours
            message += f", as a {span:g} h move across missing hours / √{span:g}"
    else:
        message = "no new 1 h moves to judge"
    if len(over):
        shown = ", ".join(t.isoformat() for t in over.index[:5]) + (", ..." if len(over) > 5 else "")
        message += f" at {shown} (accept a real move: coincast accept COIN TIME --reason ...)"
    return _check(
        "jumps", len(over) == 0, message,
        max_abs_log_return=round(worst, 6), limit=limit, jumps_over_limit=int(len(over)),
        over_limit_at=[t.isoformat() for t in over.index[:20]], judged=int(len(judged)),
        skipped_validated=int(old.sum()), skipped_accepted=int((by_person & ~old).sum()),
        validated_through=through,
    )


def warnings_for(df: pd.DataFrame, start: Any = None) -> list[dict[str, Any]]:
    """What the gate lets through but reports: zero-volume hours (maintenance, illiquid pairs), and a window
    whose first price comes more than a day after its ``start`` (the first hour ``days`` asks for: a young coin, a
    replay file or a source that returned less; the gaps check counts hours from the first price on)."""
    if "volume" not in df.columns or "timestamp" not in df.columns:
        return []
    out = []
    times = utc_times(df["timestamp"].dropna(), errors="coerce").dropna()
    if start is not None and len(times):
        late = int((times.min() - pd.Timestamp(start).ceil("h")) / HOUR)
        if late > 24:
            out.append({"name": "short_window", "hours": late, "first": times.min().isoformat(),
                        "message": f"the first price is {late} hours after the window's start "
                                   f"{pd.Timestamp(start).isoformat()} (the source has less history than days asks)"})
    zero = df.loc[pd.to_numeric(df["volume"], errors="coerce") == 0, "timestamp"]
    if zero.empty:
        return out
    first, last = pd.Timestamp(zero.min()), pd.Timestamp(zero.max())
    return [*out, {"name": "zero_volume", "count": int(len(zero)), "first": first.isoformat(),
                   "last": last.isoformat(),
                   "message": f"{len(zero)} hours with volume 0 ({first.isoformat()} .. {last.isoformat()}): kept"}]


def run_checks(
    df: pd.DataFrame,
    now: pd.Timestamp | None = None,
    *,
    quarantined: pd.DataFrame | None = None,
    validated: Ranges = (),
    accepted: Sequence[pd.Timestamp] = (),
    **limits: Any,
) -> list[dict[str, Any]]:
    """Every check of the gate, each with pass/fail, a one-line message and its numbers."""
    lim = {**DEFAULTS, **{k: v for k, v in limits.items() if v is not None}}
    missing_cols = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    checks = [
        _check(
            "required_columns",
            not missing_cols,
            f"missing {', '.join(missing_cols)}" if missing_cols else "timestamp, price, volume present",
            missing=missing_cols,
        )
    ]
    n = len(df)
    checks.append(_check("min_rows", n >= lim["min_rows"], f"{n} rows (minimum {lim['min_rows']})",
                         rows=n, minimum=lim["min_rows"]))
    if missing_cols:
        return checks

    if quarantined is None or not set(REQUIRED_COLUMNS) <= set(quarantined.columns):
        quarantined = df.iloc[:0]
    checks += _row_checks(df, quarantined, lim)
    dupes = int(df["timestamp"].dropna().duplicated().sum())
    checks.append(_check("unique_timestamps", dupes == 0, f"{dupes} duplicate timestamps", duplicates=dupes))

    ts = utc_times(df["timestamp"].dropna(), errors="coerce").dropna().drop_duplicates().sort_values()
    off_grid = int((ts != ts.dt.floor("h")).sum())
    checks.append(_check("hourly_grid", off_grid == 0, f"{off_grid} timestamps not on the hour", off_grid=off_grid))

    if len(ts) >= 2:
        span_hours = int((ts.iloc[-1] - ts.iloc[0]) / HOUR) + 1
        missing = span_hours - len(ts)
        gaps = (ts.diff().dropna() / HOUR) - 1
        longest = int(gaps.max()) if len(gaps) else 0
        frac = missing / span_hours
        ok = frac <= lim["max_missing_fraction"] and longest <= lim["max_gap_hours"]
        checks.append(_check(
            "gaps", ok,
            f"{missing} of {span_hours} hours missing ({frac:.2%}, limit {lim['max_missing_fraction']:.2%}); "
            f"longest gap {longest} h (limit {lim['max_gap_hours']} h)",
            missing_hours=missing, expected_hours=span_hours, missing_fraction=frac, longest_gap_hours=longest,
        ))
    else:
        checks.append(_check("gaps", False, "fewer than 2 timestamps", missing_hours=None))

    if now is not None and len(ts):
        age = (pd.Timestamp(now) - ts.iloc[-1]) / HOUR
        checks.append(_check(
            "staleness", age <= lim["max_staleness_hours"],
            f"last row {age:.1f} h before the clock (limit {lim['max_staleness_hours']} h)",
            last=ts.iloc[-1], now=pd.Timestamp(now), age_hours=round(float(age), 3),
            limit_hours=lim["max_staleness_hours"],
        ))
    elif now is not None:
        checks.append(_check("staleness", False, "no rows", now=pd.Timestamp(now)))

    checks.append(_jumps(df, lim, validated, accepted))
    return checks


def validate_data(
    df: pd.DataFrame,
    fail_on_error: bool = True,
    *,
    now: pd.Timestamp | None = None,
    coin: str | None = None,
    quarantined: pd.DataFrame | None = None,
    validated: Ranges = (),
    accepted: Sequence[Mapping[str, Any]] = (),
    start: Any = None,
    **limits: Any,
) -> dict[str, Any]:
    """Run the gate and return its report; raise :class:`ValidationFailed` if a check fails and ``fail_on_error``.

    ``limits`` override :data:`DEFAULTS` (null_threshold, min_rows, max_missing_fraction, max_gap_hours,
    max_staleness_hours, max_abs_log_return). Staleness is checked only when ``now`` is given.
    ``quarantined``: this extraction's rejected rows (row-level checks); ``validated``: hour ranges an earlier
    passing gate accepted; ``accepted``: records ``{time, reason, accepted_at, check}`` made by ``coincast accept``
    (those with check "jumps" exclude the move ending at ``time``; the ones inside the window are reported);
    ``start``: the window's first hour (extract.json's ``window_start``), for the ``short_window`` warning.
    """
    unknown = set(limits) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"validate_data got unknown limit(s): {', '.join(sorted(unknown))}")
    jumps_ok = [pd.Timestamp(a["time"]) for a in accepted if a.get("check", "jumps") == "jumps"]
    checks = run_checks(df, now=now, quarantined=quarantined, validated=validated, accepted=jumps_ok, **limits)
    times = utc_times(df["timestamp"]) if "timestamp" in df.columns and len(df) else None
    in_window = [dict(a) for a in accepted
                 if times is not None and times.min() <= pd.Timestamp(a["time"]) <= times.max()]
    report = {
        "coin": coin,
        "passed": all(c["passed"] for c in checks),
        "failed": [c["name"] for c in checks if not c["passed"]],
        "warnings": warnings_for(df, start),
        "accepted": in_window,
        "rows": int(len(df)),
        "quarantined": int(len(quarantined)) if quarantined is not None else 0,
        "validated_through": next((c.get("validated_through") for c in checks if c["name"] == "jumps"), None),
        "source": str(df["source"].iloc[0]) if "source" in df.columns and len(df) else None,
        "now": pd.Timestamp(now).isoformat() if now is not None else None,
        "limits": {**DEFAULTS, **{k: v for k, v in limits.items() if v is not None}},
        "checks": checks,
    }
    for c in checks:
        (logger.info if c["passed"] else logger.error)("check %s: %s", c["name"], c["message"])
    for w in report["warnings"]:
        logger.warning("warning %s: %s", w["name"], w["message"])
    if fail_on_error and not report["passed"]:
        raise ValidationFailed(report)
    return report


#: checks that count offending rows or values: they pass only at 0 (key of the count in the check)
_COUNTED = {"types": "failures", "positive_price": "failures", "non_negative_volume": "failures",
            "unique_timestamps": "duplicates", "hourly_grid": "off_grid"}


def _text(value: Any, spec: str = "", before: str = "", after: str = "") -> str:
    return "" if value is None else f"{before}{format(value, spec)}{after}"


def measured(check: Mapping[str, Any], limits: Mapping[str, Any]) -> tuple[str, str]:
    """(what ``check`` measured, the limit it was held to) as short text for a table; "" where the check
    (or a report of an older version) has no such number. ``limits``: the report's ``limits``."""
    name, get = check["name"], check.get
    if name in _COUNTED:
        return _text(get(_COUNTED[name])), "0"
    if name == "required_columns":
        return ", ".join(get("missing") or []) or "none missing", "none missing"
    if name == "min_rows":
        return _text(get("rows")), _text(get("minimum", limits.get("min_rows")), before=">= ")
    if name == "nulls":
        worst = max((get("null_fraction") or {}).values(), default=None)
        return _text(worst, ".2%"), _text(get("threshold", limits.get("null_threshold")), ".2%", "<= ")
    if name == "gaps":
        return (_text(get("missing_fraction"), ".2%", after=" missing")
                + _text(get("longest_gap_hours"), before=", longest ", after=" h"),
                _text(limits.get("max_missing_fraction"), ".2%", "<= ")
                + _text(limits.get("max_gap_hours"), before=", <= ", after=" h"))
    if name == "staleness":
        return _text(get("age_hours"), ".1f", after=" h"), _text(get("limit_hours"), before="<= ", after=" h")
    if name == "jumps":  # the largest new 1 h move, as a percentage like the message
        worst, limit = get("max_abs_log_return"), get("limit", limits.get("max_abs_log_return"))
        return (_text(None if worst is None else float(np.expm1(worst)), "+.1%"),
                _text(None if limit is None else float(np.expm1(limit)), ".0%", "<= "))
    return "", ""


def enforce(report: dict[str, Any]) -> None:
    """Raise :class:`ValidationFailed` naming every failed check, if any failed."""
    if not report["passed"]:
        raise ValidationFailed(report)

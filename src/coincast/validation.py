"""The validation gate: nothing downstream runs on data that fails it.

Row-level rules (required columns, types, positive price and volume, unique timestamps) are a
pandera schema; series-level rules (nulls, row count, hourly grid, gaps, staleness, jumps) are
measured here so the report can give their numbers. ``validate_data`` returns a JSON-ready report:
``{"passed": bool, "checks": [{"name", "passed", "message", ...numbers}], ...}``.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("timestamp", "price", "volume")

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


def _schema() -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            "timestamp": pa.Column("datetime64[ns, UTC]", unique=True, nullable=False, coerce=True),
            "price": pa.Column(float, pa.Check.gt(0), nullable=True, coerce=True),
            "volume": pa.Column(float, pa.Check.gt(0), nullable=True, coerce=True),
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


def run_checks(df: pd.DataFrame, now: pd.Timestamp | None = None, **limits: Any) -> list[dict[str, Any]]:
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

    fractions = {c: float(df[c].isna().mean()) if n else 0.0 for c in ("timestamp", "price", "volume")}
    worst = max(fractions, key=fractions.get)
    checks.append(_check(
        "nulls", all(f <= lim["null_threshold"] for f in fractions.values()),
        f"worst column {worst}: {fractions[worst]:.2%} null (limit {lim['null_threshold']:.2%})",
        null_fraction=fractions, threshold=lim["null_threshold"],
    ))

    failures = _schema_failures(df.dropna(subset=["timestamp"]))
    kinds = failures["check"].astype(str) if len(failures) else pd.Series(dtype=str)
    positive = failures.loc[kinds.str.startswith("greater_than")] if len(failures) else failures
    bad_type = failures.loc[~kinds.str.startswith("greater_than") & ~kinds.str.contains("unique")] if len(failures) else failures
    checks.append(_check(
        "types", bad_type.empty,
        "ok" if bad_type.empty else f"{len(bad_type)} values not coercible ({', '.join(sorted(set(bad_type['column'].astype(str))))})",
        failures=int(len(bad_type)),
    ))
    for rule, column in (("positive_price", "price"), ("positive_volume", "volume")):
        count = int((positive["column"] == column).sum()) if len(positive) else 0
        checks.append(_check(rule, count == 0, f"{count} rows with {column} <= 0", failures=count))
    dupes = int(df["timestamp"].dropna().duplicated().sum())
    checks.append(_check("unique_timestamps", dupes == 0, f"{dupes} duplicate timestamps", duplicates=dupes))

    ts = pd.to_datetime(df["timestamp"].dropna(), utc=True, errors="coerce").dropna().drop_duplicates().sort_values()
    off_grid = int((ts != ts.dt.floor("h")).sum())
    checks.append(_check("hourly_grid", off_grid == 0, f"{off_grid} timestamps not on the hour", off_grid=off_grid))

    if len(ts) >= 2:
        span_hours = int((ts.iloc[-1] - ts.iloc[0]) / pd.Timedelta(hours=1)) + 1
        missing = span_hours - len(ts)
        gaps = (ts.diff().dropna() / pd.Timedelta(hours=1)) - 1
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
        age = (pd.Timestamp(now) - ts.iloc[-1]) / pd.Timedelta(hours=1)
        checks.append(_check(
            "staleness", age <= lim["max_staleness_hours"],
            f"last row {age:.1f} h before the clock (limit {lim['max_staleness_hours']} h)",
            last=ts.iloc[-1], now=pd.Timestamp(now), age_hours=round(float(age), 3),
            limit_hours=lim["max_staleness_hours"],
        ))
    elif now is not None:
        checks.append(_check("staleness", False, "no rows", now=pd.Timestamp(now)))

    series = df.dropna(subset=["timestamp"]).sort_values("timestamp")
    series = series.set_index(pd.to_datetime(series["timestamp"], utc=True))["price"]
    series = series[~series.index.duplicated()].asfreq("h") if len(series) else series
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log(series.where(series > 0)).diff().abs().dropna()
    worst_jump = float(r.max()) if len(r) else 0.0
    when = r.idxmax() if len(r) else None
    checks.append(_check(
        "jumps", worst_jump <= lim["max_abs_log_return"],
        f"largest 1 h move {np.expm1(worst_jump):+.1%} (limit {np.expm1(lim['max_abs_log_return']):.0%})"
        + (f" at {when.isoformat()}" if when is not None and worst_jump > lim["max_abs_log_return"] else ""),
        max_abs_log_return=round(worst_jump, 6), limit=lim["max_abs_log_return"],
        jumps_over_limit=int((r > lim["max_abs_log_return"]).sum()),
    ))
    return checks


def validate_data(
    df: pd.DataFrame,
    fail_on_error: bool = True,
    *,
    now: pd.Timestamp | None = None,
    coin: str | None = None,
    **limits: Any,
) -> dict[str, Any]:
    """Run the gate and return its report; raise :class:`ValidationFailed` if a check fails and ``fail_on_error``.

    ``limits`` override :data:`DEFAULTS` (null_threshold, min_rows, max_missing_fraction, max_gap_hours,
    max_staleness_hours, max_abs_log_return). Staleness is checked only when ``now`` is given.
    """
    unknown = set(limits) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"validate_data got unknown limit(s): {', '.join(sorted(unknown))}")
    checks = run_checks(df, now=now, **limits)
    report = {
        "coin": coin,
        "passed": all(c["passed"] for c in checks),
        "failed": [c["name"] for c in checks if not c["passed"]],
        "rows": int(len(df)),
        "source": str(df["source"].iloc[0]) if "source" in df.columns and len(df) else None,
        "now": pd.Timestamp(now).isoformat() if now is not None else None,
        "limits": {**DEFAULTS, **{k: v for k, v in limits.items() if v is not None}},
        "checks": checks,
    }
    for c in checks:
        (logger.info if c["passed"] else logger.error)("check %s: %s", c["name"], c["message"])
    if fail_on_error and not report["passed"]:
        raise ValidationFailed(report)
    return report


def enforce(report: dict[str, Any]) -> None:
    """Raise :class:`ValidationFailed` naming every failed check, if any failed."""
    if not report["passed"]:
        raise ValidationFailed(report)

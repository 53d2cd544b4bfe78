"""One test per bad-data class: each names its failed check (and only the checks that should fail)."""
import numpy as np
import pandas as pd
import pytest

from coincast.validation import DEFAULTS, ValidationFailed, enforce, validate_data
from conftest import hourly_frame

NOW = pd.Timestamp("2024-01-09T07:30Z")  # 30 min after the last of 200 hours from 2024-01-01


def failed(df, **kw):
    return validate_data(df, fail_on_error=False, now=kw.pop("now", NOW), **kw)["failed"]


def test_clean_data_passes_every_check(frame):
    report = validate_data(frame, now=NOW, coin="bitcoin")
    assert report["passed"] and report["failed"] == []
    names = [c["name"] for c in report["checks"]]
    assert names == ["required_columns", "min_rows", "nulls", "types", "positive_price", "positive_volume",
                     "unique_timestamps", "hourly_grid", "gaps", "staleness", "jumps"]
    staleness = next(c for c in report["checks"] if c["name"] == "staleness")
    assert staleness["age_hours"] == 0.5


def test_missing_column(frame):
    with pytest.raises(ValidationFailed, match="required_columns: missing volume") as exc:
        validate_data(frame.drop(columns="volume"), now=NOW, coin="bitcoin")
    assert "for bitcoin" in str(exc.value) and "\n" not in str(exc.value)


def test_too_many_nulls(frame):
    original = frame.copy()
    frame.loc[frame.index[10:13], "price"] = np.nan  # 1.5 % > 1 %
    assert failed(frame) == ["nulls"]
    frame.loc[frame.index[11:13], "price"] = original["price"].iloc[11:13]  # 0.5 % is tolerated
    assert failed(frame) == []


def test_too_few_rows(frame):
    assert failed(frame.tail(50)) == ["min_rows"]
    assert failed(frame.tail(50), min_rows=40) == []


def test_non_positive_price(frame):
    frame.loc[5, "price"] = -1.0
    out = failed(frame)
    assert "positive_price" in out and set(out) <= {"positive_price", "jumps"}


def test_zero_volume(frame):
    frame.loc[5, "volume"] = 0.0
    assert failed(frame) == ["positive_volume"]


def test_duplicate_timestamps(frame):
    dup = pd.concat([frame, frame.iloc[[7]]]).sort_values("timestamp")
    assert failed(dup) == ["unique_timestamps"]


def test_off_grid_timestamps(frame):
    frame.loc[3, "timestamp"] += pd.Timedelta(seconds=22)
    assert "hourly_grid" in failed(frame)


def test_gaps(frame):
    assert failed(frame.drop(index=range(50, 58))) == ["gaps"]  # 8 h hole > 6 h
    assert failed(frame.drop(index=[10, 40, 70, 100, 130])) == ["gaps"]  # 5 of 200 = 2.5 % > 2 %
    assert failed(frame.drop(index=[10, 40])) == []


def test_stale(frame):
    assert failed(frame, now=NOW + pd.Timedelta(hours=5)) == ["staleness"]


def test_implausible_jump(frame):
    frame.loc[100:, "price"] *= 1.5
    out = validate_data(frame, fail_on_error=False, now=NOW)
    assert out["failed"] == ["jumps"]
    jump = next(c for c in out["checks"] if c["name"] == "jumps")
    assert jump["jumps_over_limit"] == 1 and "2024-01-05T04:00:00+00:00" in jump["message"]


def test_report_is_json_ready_and_enforce(frame):
    import json

    report = validate_data(frame.tail(10), fail_on_error=False, now=NOW, coin="x")
    json.dumps(report)
    assert report["limits"] == DEFAULTS
    with pytest.raises(ValidationFailed) as exc:
        enforce(report)
    assert exc.value.report is report


def test_unknown_limit_is_an_error(frame):
    with pytest.raises(TypeError, match="max_gap"):
        validate_data(frame, max_gap=3)

"""One test per bad-data class: each names its failed check (and only the checks that should fail)."""
import numpy as np
import pandas as pd
import pytest

from coincast.data.validation import DEFAULTS, ValidationFailed, enforce, validate_data

NOW = pd.Timestamp("2024-01-09T07:30Z")  # 30 min after the last of 200 hours from 2024-01-01


def failed(df, **kw):
    return validate_data(df, fail_on_error=False, now=kw.pop("now", NOW), **kw)["failed"]


def test_clean_data_passes_every_check(frame):
    report = validate_data(frame, now=NOW, coin="bitcoin")
    assert report["passed"] and report["failed"] == []
    names = [c["name"] for c in report["checks"]]
    assert names == ["required_columns", "min_rows", "nulls", "types", "positive_price", "non_negative_volume",
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


def test_zero_volume_passes_with_a_warning(frame):
    frame.loc[[5, 6, 90], "volume"] = 0.0
    report = validate_data(frame, now=NOW)
    assert report["passed"]
    assert report["warnings"] == [{
        "name": "zero_volume", "count": 3, "first": "2024-01-01T05:00:00+00:00", "last": "2024-01-04T18:00:00+00:00",
        "message": "3 hours with volume 0 (2024-01-01T05:00:00+00:00 .. 2024-01-04T18:00:00+00:00): kept"}]
    assert validate_data(frame.drop(index=[5, 6, 90]), now=NOW)["warnings"] == []


def test_negative_or_infinite_volume_fails(frame):
    frame.loc[5, "volume"] = -3.0
    assert failed(frame) == ["non_negative_volume"]
    frame.loc[5, "volume"] = np.inf
    assert failed(frame) == ["non_negative_volume"]


def test_infinite_price_fails_positive_price(frame):
    frame.loc[5, "price"] = np.inf
    assert "positive_price" in failed(frame)


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


# --- quarantined rows: judged with the window by the row-level checks only -------------------------------------
def quarantine_of(frame, rows, **values):
    bad = frame.loc[rows].copy()
    for column, value in values.items():
        bad[column] = value
    return bad.assign(reason="test")


def test_quarantined_rows_fail_the_row_level_checks(frame):
    """A batch with 2 % null prices: the rows are out of the window (4 holes: gaps passes) but nulls fails."""
    rows = [20, 60, 100, 140]
    window = frame.drop(index=rows)
    report = validate_data(window, fail_on_error=False, now=NOW, quarantined=quarantine_of(frame, rows, price=np.nan))
    assert report["failed"] == ["nulls"] and report["quarantined"] == 4
    nulls = next(c for c in report["checks"] if c["name"] == "nulls")
    assert nulls["null_fraction"]["price"] == 0.02 and "4 of them quarantined" in nulls["message"]
    assert failed(window) == []  # the same window without this build's bad rows passes: the next build heals

    negative = validate_data(window, fail_on_error=False, now=NOW, quarantined=quarantine_of(frame, rows[:2], price=-5.0))
    assert negative["failed"] == ["positive_price"]
    volume = validate_data(window, fail_on_error=False, now=NOW, quarantined=quarantine_of(frame, rows[:1], volume=-1.0))
    assert volume["failed"] == ["non_negative_volume"]
    text = quarantine_of(frame, rows[:1], price=np.nan).assign(reason="price not numeric")
    assert validate_data(window, fail_on_error=False, now=NOW, quarantined=text)["failed"] == ["types"]


# --- jumps: moves accepted before are not judged again -----------------------------------------------------------
def hours(frame, first, last):
    return (frame["timestamp"].iloc[first], frame["timestamp"].iloc[last])


def jump_check(report):
    return next(c for c in report["checks"] if c["name"] == "jumps")


def test_jumps_judges_only_moves_after_validated_through(frame):
    frame.loc[100:, "price"] *= 1.5  # a +50 % move ending at row 100
    assert failed(frame) == ["jumps"]
    report = validate_data(frame, now=NOW, validated=[hours(frame, 0, 150)])  # accepted by an earlier gate
    jumps = jump_check(report)
    assert report["passed"] and jumps["judged"] == 49 and jumps["skipped_validated"] == 150
    assert report["validated_through"] == frame["timestamp"].iloc[150].isoformat()
    # a new hour's move after validated_through is judged
    frame.loc[180:, "price"] *= 0.5
    report = validate_data(frame, fail_on_error=False, now=NOW, validated=[hours(frame, 0, 150)])
    assert report["failed"] == ["jumps"] and jump_check(report)["over_limit_at"] == ["2024-01-08T12:00:00+00:00"]


def test_a_jump_across_a_missing_hour_is_judged_over_the_hours_it_spans(frame):
    """The move from the last price before a hole to the first after it is a move too: ×10 across a missing hour
    fails (it was skipped, both returns next to the hole being NaN); an ordinary move across a 4-hour gap, judged
    as a 1-hour move by |log return| / √4, passes."""
    frame.loc[101:, "price"] *= 10.0
    holed = frame.drop(index=[100, 101]).reset_index(drop=True)  # the move spans 99 -> 102
    report = validate_data(holed, fail_on_error=False, now=NOW)
    assert report["failed"] == ["jumps"] and jump_check(report)["over_limit_at"] == ["2024-01-05T06:00:00+00:00"]
    assert jump_check(report)["max_abs_log_return"] == pytest.approx(np.log(10) / np.sqrt(3), rel=0.02)
    assert "as a 3 h move across missing hours" in jump_check(report)["message"]
    calm = frame.loc[:99].copy()
    calm.loc[50:, "price"] *= 1.4  # |log 1.4| = 0.34 over the 4 h from 46 to 50: 0.17 an hour, under 0.25
    calm = calm.drop(index=[47, 48, 49]).reset_index(drop=True)
    assert "jumps" not in failed(calm, now=calm["timestamp"].iloc[-1] + pd.Timedelta(minutes=30))


def test_a_window_whose_prices_start_late_passes_with_a_warning(frame):
    """The gaps check counts from the first price; a window that starts days after the hour ``days`` asks for
    (a young coin, a cut-short source) passes, but says so."""
    start = frame["timestamp"].iloc[0] - pd.Timedelta(days=10)
    report = validate_data(frame, now=NOW, start=start.isoformat())
    assert report["passed"] and [w["name"] for w in report["warnings"]] == ["short_window"]
    assert report["warnings"][0]["hours"] == 240 and "240 hours after the window's start" in report["warnings"][0]["message"]
    assert validate_data(frame, now=NOW, start=frame["timestamp"].iloc[0].isoformat())["warnings"] == []


def test_a_refetched_hole_before_validated_through_is_still_judged(frame):
    """Hours 60-62 were a hole (quarantined) when the gate passed; refetched later, their moves are new."""
    frame.loc[61, "price"] *= 2.0
    validated = [hours(frame, 0, 59), hours(frame, 63, 199)]
    report = validate_data(frame, fail_on_error=False, now=NOW, validated=validated)
    assert report["failed"] == ["jumps"] and jump_check(report)["jumps_over_limit"] == 2
    assert jump_check(report)["judged"] == 4  # 60, 61, 62 and 63 (63's move starts at the new 62)


def test_accepted_hours_are_skipped_and_listed(frame):
    frame.loc[100:, "price"] *= 1.5
    when = frame["timestamp"].iloc[100]
    record = {"time": when.isoformat(), "reason": "listing pump", "accepted_at": "2024-01-10T00:00:00+00:00",
              "check": "jumps"}
    outside = {**record, "time": "2023-01-01T00:00:00+00:00"}
    report = validate_data(frame, now=NOW, accepted=[record, outside])
    assert report["passed"] and report["accepted"] == [record]
    assert jump_check(report)["skipped_accepted"] == 1 and jump_check(report)["judged"] == 198
    other_check = {**record, "check": "something_else"}
    assert validate_data(frame, fail_on_error=False, now=NOW, accepted=[other_check])["failed"] == ["jumps"]

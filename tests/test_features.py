import numpy as np
import pandas as pd
import pytest

from coincast.data.features import target_column, transform_data
from conftest import hourly_frame

EXPECTED = (
    ["price_lag_%dh" % k for k in (1, 3, 6, 12, 24)] + ["volume_lag_%dh" % k for k in (1, 3, 6, 12, 24)]
    + [f"price_rolling_{s}_{w}h" for w in (6, 12, 24) for s in ("mean", "std")]
    + ["hour", "day_of_week", "is_weekend", "hour_sin", "hour_cos", "volatility_24h", "momentum_12h",
       "price_position", "target_price_1h"]
)


def test_the_seed_feature_set_and_values(frame):
    out = transform_data(frame, drop_warmup=True)
    assert set(EXPECTED) <= set(out.columns)
    assert len(out) == len(frame) - 24  # warm-up of the longest lag/window
    row = out.iloc[10]
    t = row["timestamp"]
    src = frame.set_index("timestamp")
    assert row["price_lag_3h"] == src.loc[t - pd.Timedelta(hours=3), "price"]
    assert row["volume_lag_24h"] == src.loc[t - pd.Timedelta(hours=24), "volume"]
    window = src.loc[t - pd.Timedelta(hours=5): t, "price"]
    assert row["price_rolling_mean_6h"] == pytest.approx(window.mean())
    assert row["price_rolling_std_6h"] == pytest.approx(window.std())
    assert row["momentum_12h"] == pytest.approx(src.loc[t, "price"] / src.loc[t - pd.Timedelta(hours=12), "price"] - 1)
    assert row["target_price_1h"] == src.loc[t + pd.Timedelta(hours=1), "price"]
    assert 0 <= out["price_position"].min() and out["price_position"].max() <= 1
    assert row["hour"] == t.hour and row["is_weekend"] == int(t.dayofweek >= 5)
    assert row["hour_sin"] ** 2 + row["hour_cos"] ** 2 == pytest.approx(1)


def test_every_hour_is_kept_and_the_price_series_is_the_raw_one(frame, tmp_path):
    """The features task's default: one row per hour of the grid (warm-up and gap rows with empty features), so the
    price series the train task builds from features.parquet is exactly the raw frame's (what the models saw)."""
    from coincast.files import read_frame, write_parquet_atomic
    from coincast.timeseries import hourly_series

    raw = frame.drop(index=range(100, 103))  # a 3-hour gap
    raw.loc[150, "price"] = np.nan  # and an hour without a price
    write_parquet_atomic(transform_data(raw), tmp_path / "features.parquet")
    out = read_frame(tmp_path / "features.parquet")
    assert len(out) == len(frame) and out["timestamp"].is_monotonic_increasing
    assert out["price_lag_24h"].iloc[:24].isna().all() and out["price_lag_24h"].iloc[24:100].notna().all()
    pd.testing.assert_series_equal(hourly_series(out), hourly_series(raw))


def test_last_row_kept_without_target(frame):
    out = transform_data(frame)
    assert out["timestamp"].iloc[-1] == frame["timestamp"].iloc[-1]
    assert np.isnan(out["target_price_1h"].iloc[-1])


def test_no_feature_at_t_uses_data_after_t(frame):
    """Recompute on data truncated at t: every non-target feature at or before t is unchanged,
    and changing every price after t changes none of them."""
    full = transform_data(frame).set_index("timestamp")
    features = [c for c in full.columns if not c.startswith("target_")]
    for cut in (60, 120, 180):
        t = frame["timestamp"].iloc[cut]
        truncated = transform_data(frame.iloc[: cut + 1]).set_index("timestamp")
        pd.testing.assert_frame_equal(truncated[features], full.loc[:t, features], check_freq=False)
        shocked = frame.copy()
        shocked.loc[cut + 1:, ["price", "volume"]] *= 3.0
        again = transform_data(shocked).set_index("timestamp")
        pd.testing.assert_frame_equal(again.loc[:t, features], full.loc[:t, features], check_freq=False)


def test_lags_are_hours_not_rows_across_a_gap(frame):
    holed = frame.drop(index=range(100, 103))
    out = transform_data(holed, drop_warmup=True).set_index("timestamp")
    t = frame["timestamp"].iloc[130]
    assert out.loc[t, "price_lag_24h"] == frame["price"].iloc[106]
    assert frame["timestamp"].iloc[101] not in out.index  # rows whose windows touch the hole are dropped


def test_configurable_lags_windows_horizon(frame):
    out = transform_data(frame, lags=[2], rolling_windows=[4], target_horizon=3)
    assert "price_lag_2h" in out and "price_rolling_mean_4h" in out and target_column(3) in out
    assert "price_lag_24h" not in out


def test_empty_frame_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        transform_data(hourly_frame(0))


def test_provenance_label_travels_to_the_feature_file(frame, tmp_path):
    from coincast.files import read_frame, write_parquet_atomic

    frame["source"] = "simulated"
    write_parquet_atomic(transform_data(frame), tmp_path / "f.parquet")
    assert read_frame(tmp_path / "f.parquet").attrs["source"] == "simulated"

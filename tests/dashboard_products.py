"""Synthetic products for the dashboard tests: one build of a coin, published as the pipeline's last task does,
and readers of what the page shows (widget text, the numbers' spans)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from coincast import files
from coincast.operations import live, publish
from conftest import hourly_frame

T_LAST = pd.Timestamp("2025-06-01T12:00Z")
# --- synthetic products ---------------------------------------------------------------------------------------
def raw_frame(last: pd.Timestamp = T_LAST, hours: int = 200, seed: int = 0, source: str = "simulated") -> pd.DataFrame:
    df = hourly_frame(hours=hours, start=str(last - pd.Timedelta(hours=hours - 1)), seed=seed)
    df["price"] = df["price"] * 250  # a BTC-like level: two decimals shown
    df["source"] = source
    return df


def forecast_frame(raw: pd.DataFrame, model: str = "drift", version: str = "3", step: float = 0.001) -> pd.DataFrame:
    last_t, last_p = raw["timestamp"].iloc[-1], float(raw["price"].iloc[-1])
    h = np.arange(1, 25)
    point = last_p * (1 + step * h)
    half80, half95 = 0.004 * np.sqrt(h), 0.006 * np.sqrt(h)
    return pd.DataFrame({
        "coin": "bitcoin", "horizon": h, "target_time": [last_t + pd.Timedelta(hours=int(k)) for k in h],
        "forecast": point, "lower_80": point * np.exp(-half80), "upper_80": point * np.exp(half80),
        "lower_95": point * np.exp(-half95), "upper_95": point * np.exp(half95), "model_name": model,
        "model_version": version, "data_through": last_t, "generated_at": pd.Timestamp("2025-06-01T12:31Z"),
        "source": str(raw["source"].iloc[-1]),
    })


def backtest_dict(models=("naive", "drift", "prophet_seasonal")) -> dict:
    rel = {"naive": (1.0, 1.0), "drift": (0.95, 0.99), "prophet_seasonal": (1.02, 1.10), "seasonal_naive": (4.8, 1.0)}
    return {
        "coin": "bitcoin", "source": "simulated", "simulated": True, "data_through": T_LAST.isoformat(),
        "first_scored_origin": (T_LAST - pd.Timedelta(hours=120)).isoformat(),
        "last_origin": (T_LAST - pd.Timedelta(hours=1)).isoformat(), "scored_origins": 120,
        "settings": {"horizons": [1, 24]},
        "models": {m: {"spec": {"kind": m}, "horizons": {
            "1": {"n": 120, "rel_mae": rel[m][0], "coverage_80": 0.8, "coverage_95": 0.95, "rel_crps": 0.987},
            "24": {"n": 97, "rel_mae": rel[m][1], "coverage_80": 0.5, "coverage_95": 0.8, "rel_crps": 1.234}}}
                   for m in models},
    }


def backtest_forecasts(raw: pd.DataFrame, models=("naive", "drift")) -> pd.DataFrame:
    prices = raw.set_index("timestamp")["price"]
    rows = []
    for origin in prices.index[-72:-1]:
        for m in models:
            f = prices[origin] * (1.0 if m == "naive" else 1.0005)
            rows.append({"model": m, "origin": origin, "horizon": 1, "forecast": f,
                         "target_time": origin + pd.Timedelta(hours=1),
                         "actual": prices.get(origin + pd.Timedelta(hours=1), np.nan), "scored": True})
    return pd.DataFrame(rows)


def validation_dict(passed: bool = True) -> dict:
    checks = [
        {"name": "min_rows", "passed": True, "message": "200 rows (minimum 100)", "rows": 200, "minimum": 100},
        {"name": "gaps", "passed": passed, "message": "gaps message", "missing_fraction": 0.0 if passed else 0.05,
         "longest_gap_hours": 0 if passed else 9},
        {"name": "staleness", "passed": True, "message": "last row 0.5 h before the clock (limit 3 h)",
         "age_hours": 0.5, "limit_hours": 3},
    ]
    return {"coin": "bitcoin", "passed": passed, "failed": [] if passed else ["gaps"], "rows": 200,
            "source": "simulated", "now": "2025-06-01T12:30:00+00:00",
            "limits": {"max_staleness_hours": 3}, "checks": checks}


REGISTRY = {"registered_model": "coincast-bitcoin",
            "challenger": {"version": "3", "model_name": "drift", "rel_mae_1h": 0.95},
            "champion": {"version": "3", "model_name": "drift", "rel_mae_1h": 0.95}, "promoted": True,
            "reason": "drift 1h rel_mae 0.9500 beats champion naive (1.0000)"}


def extract_dict(source: str = "simulated", now: str = "2025-06-01T12:30:00+00:00", last: pd.Timestamp = T_LAST) -> dict:
    return {"coin": "bitcoin", "source": source, "simulated": source == "simulated", "now": now,
            "first": (last - pd.Timedelta(hours=199)).isoformat(), "last": last.isoformat(), "rows": 200,
            "build_id": files.new_build_id(source, now)}


def write_products(products: Path, coin: str = "bitcoin", source: str = "simulated", now: str | None = None,
                   last: pd.Timestamp = T_LAST, seed: int = 0) -> dict:
    """A complete synthetic products/<coin>/ folder of one build, published as the pipeline's last task does
    (coincast.operations.publish); returns the frames written. Written atomically, as the tasks write: the snapshot holds
    hard links, so a later rewrite must replace a file (files.write_*_atomic), never write into it."""
    folder = products / coin
    folder.mkdir(parents=True, exist_ok=True)
    ext = extract_dict(source, now or (last + pd.Timedelta(minutes=30)).isoformat(), last)
    raw = raw_frame(last, seed=seed, source=source)
    fc = publish.stamp(forecast_frame(raw), ext)
    files.write_parquet_atomic(raw, folder / "raw.parquet")
    files.write_parquet_atomic(fc, folder / "forecast.parquet")
    files.write_parquet_atomic(backtest_forecasts(raw), folder / "backtest_forecasts.parquet")
    files.write_json_atomic(ext, folder / "extract.json")
    files.write_json_atomic(publish.stamp(validation_dict(True), ext), folder / "validation.json")
    files.write_json_atomic(backtest_dict(), folder / "backtest.json")
    files.write_json_atomic(REGISTRY, folder / "registry.json")
    files.write_text_atomic("<!doctype html><html><body><h1>Overview</h1><p>profile</p></body></html>",
                         folder / "profile.html")
    publish_products(folder)
    return {"raw": raw, "forecast": fc, "extract": ext}


def publish_products(folder: Path) -> dict:
    """Publish a products folder as it is (what the publish task does at the end of a successful build)."""
    products = [p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")
             and p.name != publish.MANIFEST]
    return publish.publish_files(folder, products, copies=[p for p in products if p.suffix in (".html", ".ipynb")
                                                        and p.name[:2].isdigit()])


def write_failed_build(folder: Path, source: str = "coingecko", rows: int = 0, gate: bool = True) -> dict:
    """The working products of a later build that failed (issue 14: a live build with 0 rows after a simulated
    one): a new extract.json and raw.parquet, and its gate report when ``gate``; nothing published."""
    ext = {**extract_dict(source, "2025-06-01T13:30:00+00:00"), "rows": rows, "first": None, "last": None,
           "build_id": files.new_build_id(source, "2025-06-01T13:30:00+00:00")}
    files.write_parquet_atomic(raw_frame().iloc[:rows], folder / "raw.parquet")
    files.write_json_atomic(ext, folder / "extract.json")
    if gate:
        files.write_json_atomic(publish.stamp(validation_dict(False), ext), folder / "validation.json")
    return ext


def widget_text(widget) -> str:
    """Every HTML value and Output text of a widget tree, concatenated."""
    parts = []
    value = getattr(widget, "value", None)
    if isinstance(value, str):
        parts.append(value)
    for out in getattr(widget, "outputs", ()) or ():
        parts.append(json.dumps(out.get("data", {}).get("text/plain", "")))
    for child in getattr(widget, "children", ()) or ():
        parts.append(widget_text(child))
    return "\n".join(parts)


def span(text: str, cls: str) -> tuple[str, float | None]:
    """(shown text, data-value) of the element carrying class ``cls``."""
    m = re.search(rf'<span class="{cls}[^"]*"[^>]*?(?: data-value="([^"]*)")?>([^<]*)</span>', text)
    assert m, f"no element with class {cls}"
    return m.group(2), (float(m.group(1)) if m.group(1) else None)


def fmt2(x: float) -> str:
    return f"{round(float(x), 2):,.2f}"


def prediction_log(raw: pd.DataFrame) -> pd.DataFrame:
    """Six 1-hour predictions from the last six hours of ``raw``: five scored, the last waiting for its actual."""
    prices = raw.set_index("timestamp")["price"]
    rows = []
    for origin in prices.index[-6:]:
        target = origin + pd.Timedelta(hours=1)
        f = prices[origin] * 1.001
        rows.append({"coin": "bitcoin", "origin": origin, "made_at": origin + pd.Timedelta(minutes=5),
                     "target_time": target, "horizon": 1, "forecast": f, "lower_80": f * 0.999, "upper_80": f * 1.001,
                     "lower_95": f * 0.99, "upper_95": f * 1.01, "last_price": prices[origin], "model_version": "3",
                     "in_force": True, "actual": prices.get(target, np.nan)})
    return pd.DataFrame(rows)


def live_json(log: pd.DataFrame, raw: pd.DataFrame, min_scored: int, horizons=(1,)) -> dict:
    """What the monitor stage writes to live.json for ``log`` (coincast.operations.live.live_metrics), read back as JSON."""
    y = raw.set_index("timestamp")["price"]
    return json.loads(json.dumps(live.live_metrics(log, y, T_LAST, list(horizons), 168, min_scored)))


def write_live(folder: Path, log: pd.DataFrame, metrics: dict) -> None:
    """The monitor stage's products (predictions.parquet, live.json) in a coin's working folder."""
    files.write_parquet_atomic(log, folder / "predictions.parquet")
    files.write_json_atomic(metrics, folder / "live.json")


def walk(widget):
    yield widget
    for child in getattr(widget, "children", ()) or ():
        yield from walk(child)


def find(widget, pred):
    return next(w for w in walk(widget) if pred(w))


def outputs(widget):
    return [w for w in walk(widget) if hasattr(w, "outputs") and w.outputs]

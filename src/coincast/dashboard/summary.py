"""The numbers the page shows, taken from the products (pure: dicts / DataFrames in, dicts / DataFrames out).

Nothing is scored here: the backtest's numbers are ``backtest.json``'s, live accuracy is ``live.json``'s (the
monitor stage's, :func:`coincast.operations.live.live_metrics`), so the page cannot disagree with the products.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import pandas as pd

from coincast.forecasting.backtest import NAIVE
from coincast.operations.live import too_few
from coincast.timeseries import to_utc, utc_now, utc_times

DEFAULT_STALENESS_HOURS = 3.0


def headline(raw: pd.DataFrame | None, forecast: pd.DataFrame | None) -> dict[str, Any]:
    """Last price and time; the next-hour forecast row; change in % from the last price."""
    out: dict[str, Any] = {"last_price": None, "last_time": None, "next": None, "change_pct": None,
                           "model_name": None, "model_version": None, "data_through": None, "generated_at": None}
    if raw is not None and len(raw) and {"timestamp", "price"} <= set(raw.columns):
        r = raw.dropna(subset=["price"]).sort_values("timestamp")
        if len(r):
            out["last_price"] = float(r["price"].iloc[-1])
            out["last_time"] = to_utc(r["timestamp"].iloc[-1])
    if forecast is not None and len(forecast) and {"horizon", "forecast"} <= set(forecast.columns):
        f = forecast.sort_values("horizon")
        row = f.iloc[0]
        nxt = {k: (float(row[k]) if k in row and pd.notna(row[k]) else None)
               for k in ("forecast", "lower_80", "upper_80", "lower_95", "upper_95")}
        nxt["horizon"] = int(row["horizon"])
        nxt["target_time"] = to_utc(row["target_time"]) if "target_time" in row else None
        out["next"] = nxt
        for key in ("model_name", "model_version"):
            if key in f.columns:
                out[key] = None if pd.isna(row[key]) else str(row[key])
        for key in ("data_through", "generated_at"):
            if key in f.columns and pd.notna(row[key]):
                out[key] = to_utc(row[key])
        base = out["last_price"]
        if out["data_through"] is not None and raw is not None and out["last_time"] is not None \
                and out["data_through"] != out["last_time"]:
            # the change is relative to the price the forecast was made from
            match = raw.loc[utc_times(raw["timestamp"]) == out["data_through"], "price"]
            base = float(match.iloc[-1]) if len(match) else base
        if base and nxt["forecast"] is not None:
            out["change_pct"] = 100.0 * (nxt["forecast"] / base - 1.0)
    return out


def staleness_limit(validation: Mapping[str, Any] | None, settings: Mapping[str, Any] | None = None) -> float:
    """The gate's ``max_staleness_hours`` (validation.json limits, else env.yaml, else 3 h)."""
    for source in ((validation or {}).get("limits") or {}, settings or {}):
        try:
            value = float(source["max_staleness_hours"])
            if math.isfinite(value) and value > 0:
                return value
        except (KeyError, TypeError, ValueError):
            continue
    return DEFAULT_STALENESS_HOURS


def freshness(extract: Mapping[str, Any] | None, raw: pd.DataFrame | None, limit_hours: float,
              now: pd.Timestamp | None = None) -> dict[str, Any]:
    """How old the last data point is. Live data is compared with the real clock (``now``, default the
    current time); simulated and replayed data with the clock the extraction ran at (extract.json ``now``)."""
    real_now = to_utc(now) if now is not None else utc_now()
    extract = extract or {}
    last = None
    if raw is not None and len(raw) and "timestamp" in raw.columns:
        last = utc_times(raw["timestamp"]).max()
    elif extract.get("last"):
        last = to_utc(extract["last"])
    live = extract.get("source") == "coingecko" and not extract.get("simulated")
    if live or not extract.get("now"):
        clock, clock_kind = real_now, "the real clock"
    else:
        clock = to_utc(extract["now"])
        clock_kind = f"the {'replay' if extract.get('source') == 'replay' else 'simulation'} clock"
    age = None if last is None or pd.isna(last) else (clock - last).total_seconds() / 3600.0
    return {"last": last, "clock": clock, "clock_kind": clock_kind, "age_hours": age, "limit_hours": float(limit_hours),
            "stale": age is None or age > limit_hours, "live": live}


def champion_name(registry: Mapping[str, Any] | None, forecast: pd.DataFrame | None = None) -> str | None:
    """The champion's model name: registry.json's, else the forecast's."""
    name = ((registry or {}).get("champion") or {}).get("model_name")
    if not name and forecast is not None and len(forecast) and "model_name" in forecast.columns:
        name = str(forecast["model_name"].iloc[0])
    return name


def backtest_table(backtest: Mapping[str, Any] | None, champion: str | None = None) -> pd.DataFrame:
    """One row per model: role, then rel_mae / coverage_80 / coverage_95 / rel_crps (against the naive-empirical
    baseline) / n per horizon. Champion first, naive next, the others by 1 h rel_mae."""
    models = (backtest or {}).get("models") or {}
    horizons = [str(h) for h in ((backtest or {}).get("settings") or {}).get("horizons") or []]
    if not horizons:
        horizons = sorted({h for m in models.values() for h in (m.get("horizons") or {})}, key=lambda s: int(s))
    rows = []
    for name, entry in models.items():
        row: dict[str, Any] = {"model": name,
                               "role": "champion" if name == champion else ("naive" if name == NAIVE else "")}
        if name == champion == NAIVE:
            row["role"] = "champion (naive)"
        hs = entry.get("horizons") or {}
        for h in horizons:
            m = hs.get(h) or hs.get(int(h)) or {}
            for metric in ("rel_mae", "coverage_80", "coverage_95", "rel_crps", "n"):
                row[f"{metric}_{h}h"] = m.get(metric)
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    first = f"rel_mae_{horizons[0]}h" if horizons else None
    df["_order"] = [0 if n == champion else (1 if n == NAIVE else 2) for n in df["model"]]
    df["_rel"] = pd.to_numeric(df[first], errors="coerce") if first else 0
    return df.sort_values(["_order", "_rel", "model"], na_position="last").drop(columns=["_order", "_rel"]) \
        .reset_index(drop=True)


def live_accuracy(live: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """live.json's all-time accuracy, one row per horizon (horizon, scored, pending, mae, naive_mae, rel_mae,
    coverage_80, coverage_95, rel_interval_score_80, rel_interval_score_95, rel_crps, status), the totals (scored, pending, excluded: the rows made by a model trained
    after their hour) and ``as_of`` (the clock it was scored at). ``status`` is live.json's "too few to score",
    also for a horizon with no scored row yet. None without live.json."""
    if not live:
        return None
    minimum = int(live.get("min_scored_rows") or 1)
    pending = live.get("pending") or {}
    rows = []
    for h, parts in (live.get("horizons") or {}).items():
        scores = (parts or {}).get("all") or {}
        n = int(scores.get("n") or 0)
        rows.append({"horizon": int(h), "scored": n, "pending": pending.get(str(h)),
                     **{k: scores.get(k) for k in ("mae", "naive_mae", "rel_mae", "coverage_80", "coverage_95",
                                                   "rel_interval_score_80", "rel_interval_score_95", "rel_crps")},
                     "status": scores.get("status") or too_few(n, minimum)})
    return {"rows": rows, "scored": sum(r["scored"] for r in rows),
            "pending": sum(int(r["pending"] or 0) for r in rows), "excluded": int(live.get("not_in_force") or 0),
            "as_of": live.get("now")}


__all__ = ["DEFAULT_STALENESS_HOURS", "backtest_table", "champion_name", "freshness", "headline", "live_accuracy",
           "staleness_limit"]

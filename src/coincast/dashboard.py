"""The Voila dashboard (``notebooks/dashboard.ipynb``, ``make dashboard``): what a person looks at every hour.

It only *reads*: the coin's published snapshot ``products/<coin>/published/`` (``coincast.publish``: the last
whole, successful build, every number and chart from it, labelled with that build's own source), the working
``extract.json`` / ``validation.json`` beside it (a warning when the latest build failed) and, for the champion's
promotion time, the MLflow registry when there is one. It never trains or fetches. The notebook is three lines::

    from coincast import dashboard
    dashboard.prepare()      # imports; a pre-heated Voila kernel waits here for the page request
    dashboard.app()          # the project: $COINCAST_PROJECT, else the folder above notebooks/

``python -m coincast.dashboard`` (``make dashboard``) serves it with Voila on 127.0.0.1: see
:func:`voila_command`.

The logic is small functions that take dicts / DataFrames and return HTML strings, plotly figures or
widgets, so they are testable with in-memory data:

* :func:`load_coin` reads one coin's published products and the latest build's status (missing or unreadable
  files become ``None`` plus a note); :func:`build_status_html` is the failed-build warning;
* :func:`headline`, :func:`freshness`, :func:`backtest_table`, :func:`error_by_hour`, :func:`live_accuracy`
  compute; the ``*_html`` / ``*_figure`` functions render;
* :func:`coin_panel` assembles one coin, :func:`app` the page (coin selector, refresh button).

The exact numbers a test reads carry stable classes: ``cc-last-price``, ``cc-last-time``, ``cc-forecast``,
``cc-change``, ``cc-lower-80``, ``cc-upper-80``, ``cc-lower-95``, ``cc-upper-95`` (text = the shown, rounded
value; ``data-value`` = the full float).
"""
from __future__ import annotations

import html
import logging
import math
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

logger = logging.getLogger(__name__)

PROJECT_ENV = "COINCAST_PROJECT"
MLFLOW_ENV = "COINCAST_DASHBOARD_MLFLOW"  # background (default) | sync | off
NAIVE = "naive"
DEFAULT_STALENESS_HOURS = 3.0
DEFAULT_MIN_SCORED_ROWS = 24  # env.yaml min_scored_rows, when env.yaml cannot be read
HISTORY_HOURS = 72
EMPTY_MESSAGE = "No products yet: run <code>make demo</code> to build them, then press Refresh."
NO_LIVE = "no live predictions yet"
# files that make a folder under products/ a coin's products (or its published snapshot: coincast.publish)
PRODUCT_FILES = ("published", "failed.json", "extract.json", "validation.json", "raw.parquet", "forecast.parquet",
                 "backtest.json", "registry.json", "profile.html", "predictions.parquet")

CSS = """
<style>
.cc-app {font-family: var(--jp-ui-font-family, system-ui, sans-serif); color: #1f2933;}
.cc-title {font-size: 22px; font-weight: 600; margin: 0;}
.cc-muted {color: #616e7c; font-size: 12px;}
.cc-banner {padding: 10px 14px; border-radius: 6px; margin: 4px 0; font-size: 15px; line-height: 1.4;}
.cc-banner-simulated, .cc-banner-replay {background: #fff3cd; border: 2px solid #e0a800; color: #6b4e00;}
.cc-banner-live {background: #e6f4ea; border: 1px solid #8fd19e; color: #1e5631; font-size: 13px;}
.cc-banner-stale {background: #fdecea; border: 2px solid #d93025; color: #8a1c13;}
.cc-banner-info {background: #eef2f7; border: 1px solid #c5d0de; color: #243b53;}
.cc-empty {font-size: 18px; padding: 24px 8px;}
.cc-cards {display: flex; flex-wrap: wrap; gap: 12px; margin: 8px 0;}
.cc-card {flex: 1 1 180px; border: 1px solid #d9e2ec; border-radius: 8px; padding: 10px 14px; background: #fff;}
.cc-card .cc-label {font-size: 12px; color: #616e7c; text-transform: uppercase; letter-spacing: .04em;}
.cc-card .cc-big {font-size: 26px; font-weight: 600; font-variant-numeric: tabular-nums;}
.cc-card .cc-mid {font-size: 17px; font-weight: 600; font-variant-numeric: tabular-nums;}
.cc-up {color: #137333;} .cc-down {color: #c5221f;} .cc-flat {color: #52606d;}
.cc-h {font-size: 17px; font-weight: 600; margin: 14px 0 4px 0; border-bottom: 1px solid #d9e2ec;}
table.cc-table {border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; margin: 4px 0;}
table.cc-table th, table.cc-table td {padding: 3px 8px; border-bottom: 1px solid #e4e7eb; text-align: right;}
table.cc-table th {background: #f5f7fa; font-weight: 600;}
table.cc-table td.cc-l, table.cc-table th.cc-l {text-align: left;}
tr.cc-champion td {background: #e8f0fe; font-weight: 600;}
tr.cc-naive td {background: #f5f7fa;}
.cc-pass {color: #137333; font-weight: 600; white-space: nowrap;}
.cc-fail {color: #c5221f; font-weight: 600; white-space: nowrap;}
.cc-warn {color: #8a5a00; font-weight: 600;}
.cc-last-time, .cc-nowrap {white-space: nowrap;}
.cc-num {font-variant-numeric: tabular-nums;}
.cc-note {font-size: 12px; color: #616e7c; margin: 2px 0;}
</style>
"""


# --- kernel warm-up ---------------------------------------------------------------------------------------
def prepare() -> None:
    """Import what the dashboard needs and, in a pre-heated Voila kernel (``voila --preheat_kernel=True``),
    wait here for the page request: the kernel starts and imports before anyone asks, while the products
    are still read when the page is requested (so they are never older than the request)."""
    import ipywidgets  # noqa: F401
    import plotly.graph_objects as go
    import plotly.io as pio
    import pyarrow.parquet  # noqa: F401

    pio.to_json(go.Figure(go.Scatter(x=[0], y=[0])), validate=False)  # loads plotly's validators
    if os.environ.get("VOILA_PREHEAT", "False") == "True":
        from voila.utils import wait_for_request

        wait_for_request()


# --- finding the project and reading products ------------------------------------------------------------
def find_project(start: str | os.PathLike | None = None) -> Path:
    """The project folder: ``$COINCAST_PROJECT``, else the first of ``start`` (default: the working folder,
    which Voila sets to the notebook's) and its parents that holds ``pipeline.yaml``, else ``start``'s
    parent when ``start`` is ``notebooks/``, else ``start``."""
    env = os.environ.get(PROJECT_ENV, "").strip()
    if env:
        return Path(env).expanduser().resolve()
    here = Path(start or os.getcwd()).expanduser().resolve()
    for folder in (here, *here.parents):
        if (folder / "pipeline.yaml").is_file():
            return folder
    return here.parent if here.name == "notebooks" else here


def read_settings(project_root: str | os.PathLike | None) -> dict[str, Any]:
    """The few env.yaml keys the dashboard uses (``coins`` order, ``max_staleness_hours``, ``min_scored_rows``);
    {} if unreadable."""
    if project_root is None:
        return {}
    try:
        import yaml

        data = yaml.safe_load((Path(project_root) / "env.yaml").read_text()) or {}
        keys = ("coins", "max_staleness_hours", "min_scored_rows")
        return {k: data[k] for k in keys if k in data} if isinstance(data, dict) else {}
    except Exception:  # a dashboard must not fall over on a config file
        return {}


def list_coins(products_dir: str | os.PathLike, order: list[str] | None = None) -> list[str]:
    """Folders under ``products_dir`` holding at least one product; ``order`` (env.yaml ``coins``) first."""
    p = Path(products_dir)
    if not p.is_dir():
        return []
    found = sorted(d.name for d in p.iterdir()
                   if d.is_dir() and not d.name.startswith(".") and any((d / f).exists() for f in PRODUCT_FILES))
    first = [c for c in (order or []) if c in found]
    return first + [c for c in found if c not in first]


@dataclass
class CoinProducts:
    """One coin's products as read from disk; a missing file is ``None``, an unreadable one adds a note."""

    coin: str
    folder: Path | None = None
    extract: dict | None = None
    validation: dict | None = None
    backtest: dict | None = None
    registry: dict | None = None
    raw: pd.DataFrame | None = None
    forecast: pd.DataFrame | None = None
    backtest_forecasts: pd.DataFrame | None = None
    predictions: pd.DataFrame | None = None
    profile_path: Path | None = None
    registry_written: pd.Timestamp | None = None
    problems: list[str] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)  # coincast.publish.build_status: published vs latest


def _utc(values: Any) -> Any:
    return pd.to_datetime(values, utc=True)


def _read_parquet(path: Path, time_columns: tuple[str, ...]) -> pd.DataFrame:
    df = pd.read_parquet(path)
    for col in time_columns:
        if col in df.columns:
            df[col] = _utc(df[col])
    return df


def load_coin(products_dir: str | os.PathLike, coin: str) -> CoinProducts:
    """Read the published snapshot of ``products_dir/<coin>/`` (resolved once, so one build's files) and the
    status of the latest build (``cp.status``). ``cp.folder`` is None when no build has been published yet.
    Never raises for a missing or broken file."""
    import json

    from coincast.publish import build_status

    status = build_status(Path(products_dir) / coin)
    folder = status["snapshot"]
    cp = CoinProducts(coin=coin, folder=folder, status=status)
    if folder is None:
        return cp
    for attr, name in (("extract", "extract.json"), ("validation", "validation.json"),
                       ("backtest", "backtest.json"), ("registry", "registry.json")):
        path = folder / name
        if path.is_file():
            try:
                setattr(cp, attr, json.loads(path.read_text()))
            except Exception as exc:
                cp.problems.append(f"{name} could not be read ({type(exc).__name__})")
    frames = (("raw", "raw.parquet", ("timestamp",)),
              ("forecast", "forecast.parquet", ("target_time", "data_through", "generated_at")),
              ("backtest_forecasts", "backtest_forecasts.parquet", ("origin", "target_time")),
              ("predictions", "predictions.parquet", ("made_at", "target_time")))
    for attr, name, times in frames:
        path = folder / name
        if path.is_file():
            try:
                setattr(cp, attr, _read_parquet(path, times))
            except Exception as exc:
                cp.problems.append(f"{name} could not be read ({type(exc).__name__})")
    if (folder / "profile.html").is_file():
        cp.profile_path = folder / "profile.html"
    if (folder / "registry.json").is_file():
        cp.registry_written = pd.Timestamp((folder / "registry.json").stat().st_mtime, unit="s", tz="UTC")
    return cp


# --- formatting ------------------------------------------------------------------------------------------
def price_decimals(x: float) -> int:
    """Decimals that show a price to at least ~4 significant digits: 2 for BTC/ETH, more for cheap coins."""
    if x is None or not math.isfinite(x) or x == 0:
        return 2
    return max(2, 3 - math.floor(math.log10(abs(x))))


def fmt_price(x: float | None, decimals: int | None = None) -> str:
    """``25,526.59``; ``–`` for missing values."""
    if x is None or not isinstance(x, (int, float)) or not math.isfinite(float(x)):
        return "–"
    d = price_decimals(float(x)) if decimals is None else decimals
    return f"{float(x):,.{d}f}"


def fmt_pct(x: float | None, decimals: int = 2, signed: bool = True) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:+.{decimals}f} %" if signed else f"{x:.{decimals}f} %"


def fmt_time(ts: Any) -> str:
    if ts is None:
        return "–"
    try:
        t = _utc(ts)
    except (TypeError, ValueError):
        return html.escape(str(ts))
    if pd.isna(t):
        return "–"
    return t.strftime("%Y-%m-%d %H:%M UTC")


def fmt_age(hours: float | None) -> str:
    if hours is None or not math.isfinite(hours):
        return "–"
    if abs(hours) < 1:
        return f"{hours * 60:.0f} min"
    if abs(hours) < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"


def _num(x: Any, digits: int = 3) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "–"
    return f"{v:.{digits}f}" if math.isfinite(v) else "–"


def _share(x: Any) -> str:
    """0.7833 -> ``78.3 %``."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "–"
    return f"{100 * v:.1f} %" if math.isfinite(v) else "–"


def _value_span(cls: str, value: float | None, text: str | None = None) -> str:
    shown = fmt_price(value) if text is None else text
    data = f' data-value="{float(value)!r}"' if value is not None and math.isfinite(float(value)) else ""
    return f'<span class="{cls} cc-num" id="{cls}"{data}>{html.escape(shown)}</span>'


def _h(text: str) -> str:
    return f'<div class="cc-h">{html.escape(text)}</div>'


def _note(text: str) -> str:
    return f'<div class="cc-note">{text}</div>'


def empty_html() -> str:
    """The one sentence shown when there are no products at all."""
    return f'<div class="cc-empty" id="cc-empty">{EMPTY_MESSAGE}</div>'


# --- the data label ---------------------------------------------------------------------------------------
def source_banner_html(extract: Mapping[str, Any] | None) -> str:
    """A loud banner for simulated / replayed data, a quiet one for live CoinGecko data."""
    from coincast.display import data_label

    if not extract:
        return ('<div class="cc-banner cc-banner-info cc-source" data-source="unknown">Data source unknown: '
                'extract.json is missing.</div>')
    source = str(extract.get("source") or "unknown")
    label = html.escape(data_label(source))
    if source == "coingecko" and not extract.get("simulated"):
        return f'<div class="cc-banner cc-banner-live cc-source" data-source="coingecko">{label}</div>'
    kind = "replay" if source == "replay" else "simulated"
    clock = f" Clock: {fmt_time(extract.get('now'))}." if extract.get("now") else ""
    word = "REPLAYED" if kind == "replay" else "SIMULATED"
    return (f'<div class="cc-banner cc-banner-{kind} cc-source" data-source="{html.escape(source)}">'
            f'<b>⚠ {word} DATA, NOT LIVE.</b> {label}{html.escape(clock)}</div>')


_SOURCE_NAMES = {"coingecko": "live CoinGecko", "simulated": "simulated", "replay": "replayed"}


def _source_name(source: Any) -> str:
    return _SOURCE_NAMES.get(str(source), str(source or "unknown source"))


def build_status_html(status: Mapping[str, Any] | None) -> str:
    """The latest build vs the published one (``coincast.publish.build_status``): a warning naming the failed
    build, its source, clock and one-line reason, and which successful build is shown instead; "" when the
    latest build is the published one."""
    status = status or {}
    if status.get("published") and not status.get("failed"):
        return ""
    latest = (f"the latest build ({html.escape(_source_name(status.get('latest_source')))}, clock "
              f"{fmt_time(status.get('latest_clock'))}) failed: {html.escape(str(status.get('reason') or ''))}")
    if not status.get("published"):
        text = "No successful build yet" + (f": {latest}." if status.get("failed") else ": run <code>make demo</code> "
                                            "(or <code>coincast build</code>), then press Refresh.")
        return f'<div class="cc-banner cc-banner-stale cc-build-failed" data-build="none">⚠ {text}</div>'
    return (f'<div class="cc-banner cc-banner-stale cc-build-failed" data-build="failed">⚠ '
            f'{latest[0].upper() + latest[1:]}; showing the last successful build of '
            f'{fmt_time(status.get("published_clock"))} ({html.escape(_source_name(status.get("published_source")))}).'
            '</div>')


def gate_html(cp: CoinProducts) -> str:
    """The published build's gate; before it, the latest build's own gate when that build failed there."""
    gate = cp.status.get("gate")
    if not (cp.status.get("failed") and gate):
        return validation_html(cp.validation)
    latest = _note("The latest build's gate (its products were not published):") + validation_html(gate)
    if cp.folder is None:
        return latest
    return latest + _note("The published build's gate:") + validation_html(cp.validation)


# --- headline numbers -------------------------------------------------------------------------------------
def headline(raw: pd.DataFrame | None, forecast: pd.DataFrame | None) -> dict[str, Any]:
    """Last price and time; the next-hour forecast row; change in % from the last price."""
    out: dict[str, Any] = {"last_price": None, "last_time": None, "next": None, "change_pct": None,
                           "model_name": None, "model_version": None, "data_through": None, "generated_at": None}
    if raw is not None and len(raw) and {"timestamp", "price"} <= set(raw.columns):
        r = raw.dropna(subset=["price"]).sort_values("timestamp")
        if len(r):
            out["last_price"] = float(r["price"].iloc[-1])
            out["last_time"] = _utc(r["timestamp"].iloc[-1])
    if forecast is not None and len(forecast) and {"horizon", "forecast"} <= set(forecast.columns):
        f = forecast.sort_values("horizon")
        row = f.iloc[0]
        nxt = {k: (float(row[k]) if k in row and pd.notna(row[k]) else None)
               for k in ("forecast", "lower_80", "upper_80", "lower_95", "upper_95")}
        nxt["horizon"] = int(row["horizon"])
        nxt["target_time"] = _utc(row["target_time"]) if "target_time" in row else None
        out["next"] = nxt
        for key in ("model_name", "model_version"):
            if key in f.columns:
                out[key] = None if pd.isna(row[key]) else str(row[key])
        for key in ("data_through", "generated_at"):
            if key in f.columns and pd.notna(row[key]):
                out[key] = _utc(row[key])
        base = out["last_price"]
        if out["data_through"] is not None and raw is not None and out["last_time"] is not None \
                and out["data_through"] != out["last_time"]:
            # the change is relative to the price the forecast was made from
            match = raw.loc[_utc(raw["timestamp"]) == out["data_through"], "price"]
            base = float(match.iloc[-1]) if len(match) else base
        if base and nxt["forecast"] is not None:
            out["change_pct"] = 100.0 * (nxt["forecast"] / base - 1.0)
    return out


def _pct_from(base: float | None, x: float | None) -> str:
    if not base or x is None:
        return ""
    return f'<span class="cc-muted">({100 * (x / base - 1):+.2f} %)</span>'


def headline_html(head: Mapping[str, Any]) -> str:
    """Cards: last price and time, next-hour forecast and change, 80 % and 95 % intervals, the champion."""
    cards = []
    cards.append(
        '<div class="cc-card"><div class="cc-label">Last price</div>'
        f'<div class="cc-big">{_value_span("cc-last-price", head.get("last_price"))}</div>'
        f'<div class="cc-muted">at <span class="cc-last-time" id="cc-last-time">'
        f'{fmt_time(head.get("last_time"))}</span></div></div>')
    nxt = head.get("next")
    if not nxt:
        cards.append('<div class="cc-card"><div class="cc-label">Next hour</div><div class="cc-mid">'
                     'no forecast yet</div><div class="cc-muted">the pipeline has not reached the forecast '
                     'stage for this coin</div></div>')
        return '<div class="cc-cards">' + "".join(cards) + "</div>"
    change = head.get("change_pct")
    direction = "cc-flat" if change is None or abs(change) < 0.005 else ("cc-up" if change > 0 else "cc-down")
    arrow = {"cc-up": "▲", "cc-down": "▼", "cc-flat": "■"}[direction]
    change_txt = fmt_pct(change)
    change_attr = f' data-value="{change!r}"' if change is not None else ""
    base = head.get("last_price")
    cards.append(
        '<div class="cc-card"><div class="cc-label">Next-hour forecast</div>'
        f'<div class="cc-big">{_value_span("cc-forecast", nxt.get("forecast"))}</div>'
        f'<div class="{direction}"><span class="cc-change" id="cc-change"'
        f'{change_attr}>{arrow} {html.escape(change_txt)}</span>'
        ' vs last price</div>'
        f'<div class="cc-muted">for <span class="cc-target-time cc-nowrap">{fmt_time(nxt.get("target_time"))}'
        '</span></div></div>')
    for level in ("80", "95"):
        lo, hi = nxt.get(f"lower_{level}"), nxt.get(f"upper_{level}")
        cards.append(
            f'<div class="cc-card"><div class="cc-label">{level} % interval</div>'
            f'<div class="cc-mid">{_value_span(f"cc-lower-{level}", lo)} – {_value_span(f"cc-upper-{level}", hi)}</div>'
            f'<div>{_pct_from(base, lo)} {_pct_from(base, hi)}</div></div>')
    model = head.get("model_name") or "?"
    version = head.get("model_version")
    cards.append(
        '<div class="cc-card"><div class="cc-label">Champion model</div>'
        f'<div class="cc-mid cc-champion-name">{html.escape(model)}'
        f'{" v" + html.escape(version) if version else ""}</div>'
        f'<div class="cc-muted">from data through <span class="cc-nowrap">{fmt_time(head.get("data_through"))}'
        '</span></div>'
        f'<div class="cc-muted">made <span class="cc-nowrap">{fmt_time(head.get("generated_at"))}</span></div></div>')
    return '<div class="cc-cards">' + "".join(cards) + "</div>"


# --- freshness --------------------------------------------------------------------------------------------
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
    real_now = _utc(now) if now is not None else pd.Timestamp.now(tz="UTC")
    extract = extract or {}
    last = None
    if raw is not None and len(raw) and "timestamp" in raw.columns:
        last = _utc(raw["timestamp"]).max()
    elif extract.get("last"):
        last = _utc(extract["last"])
    live = extract.get("source") == "coingecko" and not extract.get("simulated")
    if live or not extract.get("now"):
        clock, clock_kind = real_now, "the real clock"
    else:
        clock = _utc(extract["now"])
        clock_kind = f"the {'replay' if extract.get('source') == 'replay' else 'simulation'} clock"
    age = None if last is None or pd.isna(last) else (clock - last).total_seconds() / 3600.0
    return {"last": last, "clock": clock, "clock_kind": clock_kind, "age_hours": age, "limit_hours": float(limit_hours),
            "stale": age is None or age > limit_hours, "live": live}


def freshness_html(fresh: Mapping[str, Any]) -> str:
    age, limit = fresh.get("age_hours"), fresh.get("limit_hours")
    if age is None:
        return ('<div class="cc-banner cc-banner-stale cc-freshness" data-stale="true">⚠ No data timestamp '
                'found: freshness unknown.</div>')
    text = (f"last data point {fmt_time(fresh['last'])}, {fmt_age(age)} before {fresh['clock_kind']} "
            f"({fmt_time(fresh['clock'])}; limit {limit:g} h)")
    if fresh.get("stale"):
        fix = "run <code>make run</code>" if fresh.get("live") else "rebuild the products"
        return (f'<div class="cc-banner cc-banner-stale cc-freshness" data-stale="true"><b>⚠ STALE DATA:</b> '
                f'{html.escape(text)}. The forecast is out of date: {fix}.</div>')
    return f'<div class="cc-note cc-freshness" data-stale="false">Data fresh: {html.escape(text)}.</div>'


# --- the forecast chart -----------------------------------------------------------------------------------
def _plot_times(values: Any) -> list[Any]:
    """UTC timestamps without a zone (plotly.js has no time zones: mixing offsets and naive strings shifts)."""
    return list(_utc(pd.Series(list(values))).dt.tz_convert(None))


def forecast_figure(raw: pd.DataFrame | None, forecast: pd.DataFrame | None, coin: str = "",
                    history_hours: int = HISTORY_HOURS) -> Any:
    """Recent hourly prices, the 24-hour forecast with its 95 % and 80 % fan, and the naive line."""
    import plotly.graph_objects as go

    fig = go.Figure()
    last_t = last_p = None
    if raw is not None and len(raw):
        r = raw.dropna(subset=["price"]).sort_values("timestamp")
        r = r.loc[r["timestamp"] > r["timestamp"].max() - pd.Timedelta(hours=history_hours)]
        fig.add_trace(go.Scatter(x=_plot_times(r["timestamp"]), y=r["price"], mode="lines", name="price",
                                 line={"color": "#1f2933", "width": 2}))
        last_t, last_p = _plot_times(r["timestamp"].iloc[-1:])[0], float(r["price"].iloc[-1])
    if forecast is not None and len(forecast):
        f = forecast.sort_values("horizon")
        x = _plot_times(f["target_time"])
        anchor_x = [last_t] if last_t is not None else []
        anchor_y = [last_p] if last_p is not None else []
        for level, color in (("95", "rgba(66,133,244,0.15)"), ("80", "rgba(66,133,244,0.30)")):
            if {f"lower_{level}", f"upper_{level}"} <= set(f.columns):
                fig.add_trace(go.Scatter(x=anchor_x + x, y=anchor_y + list(f[f"upper_{level}"]), mode="lines",
                                         line={"width": 0}, showlegend=False, hoverinfo="skip",
                                         name=f"upper {level} %"))
                fig.add_trace(go.Scatter(x=anchor_x + x, y=anchor_y + list(f[f"lower_{level}"]), mode="lines",
                                         line={"width": 0}, fill="tonexty", fillcolor=color,
                                         name=f"{level} % interval"))
        model = str(f["model_name"].iloc[0]) if "model_name" in f.columns else "forecast"
        fig.add_trace(go.Scatter(x=anchor_x + x, y=anchor_y + list(f["forecast"]), mode="lines+markers",
                                 name=f"forecast ({model})", line={"color": "#1a73e8", "width": 2},
                                 marker={"size": 4}))
        if last_p is not None:
            fig.add_trace(go.Scatter(x=[last_t, x[-1]], y=[last_p, last_p], mode="lines",
                                     name="naive (price stays)", line={"color": "#e8710a", "dash": "dot", "width": 2}))
    if last_t is not None:
        fig.add_vline(x=last_t, line={"color": "#9aa5b1", "width": 1, "dash": "dash"})
    fig.update_layout(title=f"{coin}: last {history_hours} h and the next {0 if forecast is None else len(forecast)} h",
                      template="plotly_white", height=430, margin={"l": 60, "r": 20, "t": 50, "b": 40},
                      xaxis_title="time (UTC)", yaxis_title="price", hovermode="x unified",
                      legend={"orientation": "h", "y": -0.18, "traceorder": "normal"})
    return fig


# --- backtest ---------------------------------------------------------------------------------------------
def champion_name(registry: Mapping[str, Any] | None, forecast: pd.DataFrame | None = None) -> str | None:
    name = ((registry or {}).get("champion") or {}).get("model_name")
    if not name and forecast is not None and len(forecast) and "model_name" in forecast.columns:
        name = str(forecast["model_name"].iloc[0])
    return name


def backtest_table(backtest: Mapping[str, Any] | None, champion: str | None = None) -> pd.DataFrame:
    """One row per model: role, then rel_mae / coverage_80 / coverage_95 / n per horizon. Champion first,
    naive next, the others by 1 h rel_mae."""
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
            for metric in ("rel_mae", "coverage_80", "coverage_95", "n"):
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


def backtest_html(backtest: Mapping[str, Any] | None, champion: str | None = None) -> str:
    if not backtest:
        return _note("No backtest yet (backtest.json is missing): the pipeline has not reached the train stage.")
    table = backtest_table(backtest, champion)
    if table.empty:
        return _note("The backtest has no models.")
    horizons = [c[len("rel_mae_"):-1] for c in table.columns if c.startswith("rel_mae_")]
    head = ('<tr><th class="cc-l" rowspan="2">model</th><th class="cc-l" rowspan="2">role</th>'
            + "".join(f'<th colspan="3">{h} h ahead</th>' for h in horizons) + "</tr><tr>"
            + "".join("<th>rel_mae</th><th>cover 80 %</th><th>cover 95 %</th>" for _ in horizons) + "</tr>")
    body = []
    for _, r in table.iterrows():
        cls = "cc-champion" if r["model"] == champion else ("cc-naive" if r["model"] == NAIVE else "")
        cells = "".join(f'<td>{_num(r[f"rel_mae_{h}h"])}</td><td>{_share(r[f"coverage_80_{h}h"])}</td>'
                        f'<td>{_share(r[f"coverage_95_{h}h"])}</td>' for h in horizons)
        body.append(f'<tr class="{cls}" data-model="{html.escape(r["model"])}"><td class="cc-l">'
                    f'{html.escape(r["model"])}</td><td class="cc-l">{html.escape(r["role"])}</td>{cells}</tr>')
    n = backtest.get("scored_origins")
    window = (f"{n} scored hourly origins, {fmt_time(backtest.get('first_scored_origin'))} → "
              f"{fmt_time(backtest.get('last_origin'))}" if n else "")
    return (f'<table class="cc-table cc-backtest"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'
            + _note(f"Walk-forward backtest, {html.escape(window)}. rel_mae = MAE / naive MAE on the same origins "
                    "(&lt; 1 beats naive); cover = share of actuals inside the calibrated interval "
                    "(target 80 % / 95 %)."))


def error_by_hour(backtest_forecasts: pd.DataFrame | None, horizon: int = 1) -> pd.DataFrame:
    """Mean absolute error by hour of day (UTC) of the origin: index hour 0-23, one column per model."""
    bf = backtest_forecasts
    if bf is None or bf.empty or not {"model", "origin", "horizon", "forecast", "actual"} <= set(bf.columns):
        return pd.DataFrame()
    g = bf.loc[(bf["horizon"] == horizon) & bf["actual"].notna()]
    if "scored" in g.columns:
        g = g.loc[g["scored"].astype(bool)]
    if g.empty:
        return pd.DataFrame()
    g = g.assign(hour=_utc(g["origin"]).dt.hour, abs_error=(g["actual"] - g["forecast"]).abs())
    return g.pivot_table(index="hour", columns="model", values="abs_error", aggfunc="mean").sort_index()


def error_by_hour_figure(table: pd.DataFrame, champion: str | None = None, horizon: int = 1,
                         hide_above: float = 1.5) -> Any:
    """One line per model; models whose mean error is over ``hide_above`` × naive's start hidden (legend only)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    naive = table[NAIVE] if NAIVE in table.columns else None
    for name in table.columns:
        width = 3 if name in (champion, NAIVE) else 1.3
        style = {"width": width}
        if name == NAIVE:
            style["color"] = "#e8710a"
        # a model far worse than naive would squash the others against the axis: listed, not drawn
        far = naive is not None and name not in (champion, NAIVE) and table[name].mean() > hide_above * naive.mean()
        fig.add_trace(go.Scatter(x=table.index, y=table[name], mode="lines+markers", name=str(name), line=style,
                                 marker={"size": 4}, visible="legendonly" if far else True))
    fig.update_layout(title=f"{horizon} h MAE by hour of day of the origin (UTC); click a name to show/hide it",
                      template="plotly_white",
                      height=340, margin={"l": 60, "r": 20, "t": 50, "b": 40}, xaxis_title="hour (UTC)",
                      yaxis_title="MAE", xaxis={"dtick": 3})
    return fig


# --- live accuracy ----------------------------------------------------------------------------------------
def live_accuracy(predictions: pd.DataFrame | None, raw: pd.DataFrame | None = None,
                  min_scored: int | None = None) -> pd.DataFrame | None:
    """Accuracy of the prediction log (hourly operation), per horizon: scored rows, MAE, naive MAE,
    rel_mae, coverage 80 / 95 %. ``None`` when there is no log.

    The actual is the log's ``actual`` (filled from ``raw`` at ``target_time`` when the log has none yet);
    the naive forecast is the log's ``naive``/``last_price`` column, else the price at ``target_time -
    horizon`` in ``raw``. Rows without an actual are pending, not scored. Rows made by a model trained after
    their origin (``in_force`` False; a log without the column: its ``late`` rows) are counted in ``excluded``
    and never scored. From fewer than ``min_scored`` scored rows (env.yaml ``min_scored_rows``; default
    DEFAULT_MIN_SCORED_ROWS) the numbers are None and ``status`` says "too few to score (n < min)"."""
    if predictions is None or predictions.empty or not {"horizon", "forecast", "target_time"} <= set(predictions.columns):
        return None
    minimum = DEFAULT_MIN_SCORED_ROWS if min_scored is None else int(min_scored)
    p = predictions.copy()
    if "in_force" in p.columns:
        in_force = p["in_force"].where(p["in_force"].notna(), True).astype(bool)
    elif "late" in p.columns:
        in_force = ~p["late"].fillna(False).astype(bool)
    else:
        in_force = pd.Series(True, index=p.index)
    p["_in_force"] = in_force
    p["target_time"] = _utc(p["target_time"])
    p["horizon"] = pd.to_numeric(p["horizon"], errors="coerce")
    p = p.dropna(subset=["horizon", "forecast"])
    prices = None
    if raw is not None and len(raw) and {"timestamp", "price"} <= set(raw.columns):
        prices = pd.Series(raw["price"].to_numpy(), index=_utc(raw["timestamp"])).groupby(level=0).last()
    actual = pd.to_numeric(p["actual"], errors="coerce") if "actual" in p.columns else pd.Series(float("nan"), index=p.index)
    if prices is not None:
        actual = actual.fillna(p["target_time"].map(prices))
    p["_actual"] = actual
    naive = None
    for col in ("naive", "last_price"):
        if col in p.columns:
            naive = pd.to_numeric(p[col], errors="coerce")
            break
    if naive is None:
        naive = pd.Series(float("nan"), index=p.index)
    if prices is not None:
        origin = p["target_time"] - pd.to_timedelta(p["horizon"], unit="h")
        naive = naive.fillna(origin.map(prices))
    p["_naive"] = naive
    rows = []
    for h, g in p.groupby("horizon"):
        excluded = g.loc[~g["_in_force"]]
        g = g.loc[g["_in_force"]]
        scored = g.loc[g["_actual"].notna()]
        row: dict[str, Any] = {"horizon": int(h), "predictions": len(g), "scored": len(scored),
                               "pending": len(g) - len(scored), "excluded": len(excluded), "mae": None,
                               "naive_mae": None, "rel_mae": None, "coverage_80": None, "coverage_95": None,
                               "status": f"too few to score (n < {minimum})" if len(scored) < minimum else None}
        if len(scored) and row["status"] is None:
            err = (scored["_actual"] - scored["forecast"]).abs()
            row["mae"] = float(err.mean())
            with_naive = scored.loc[scored["_naive"].notna()]
            if len(with_naive):
                naive_mae = float((with_naive["_actual"] - with_naive["_naive"]).abs().mean())
                model_mae = float((with_naive["_actual"] - with_naive["forecast"]).abs().mean())
                row["naive_mae"] = naive_mae
                row["rel_mae"] = model_mae / naive_mae if naive_mae > 0 else None
            for level in ("80", "95"):
                lo, hi = f"lower_{level}", f"upper_{level}"
                if {lo, hi} <= set(scored.columns):
                    inside = (scored["_actual"] >= scored[lo]) & (scored["_actual"] <= scored[hi])
                    ok = scored[lo].notna() & scored[hi].notna()
                    row[f"coverage_{level}"] = float(inside[ok].mean()) if ok.any() else None
        rows.append(row)
    return pd.DataFrame(rows)


def _live_row(r: Mapping[str, Any]) -> str:
    head = f'<td>{int(r["horizon"])} h</td><td>{int(r["scored"])}</td><td>{int(r["pending"])}</td>'
    if isinstance(r.get("status"), str):  # a number from a handful of rows would mislead: none is shown
        status = html.escape(str(r["status"]))
        return f'<tr data-status="too-few">{head}<td colspan="5" class="cc-muted">{status}</td></tr>'
    return (f'<tr>{head}<td>{fmt_price(r["mae"])}</td><td>{fmt_price(r["naive_mae"])}</td><td>{_num(r["rel_mae"])}</td>'
            f'<td>{_share(r["coverage_80"])}</td><td>{_share(r["coverage_95"])}</td></tr>')


def live_accuracy_html(acc: pd.DataFrame | None) -> str:
    if acc is None:
        return f'<div class="cc-note cc-live" data-live="none">{NO_LIVE.capitalize()}.</div>'
    if acc.empty or int(acc["scored"].sum()) == 0:
        pending = 0 if acc.empty else int(acc["pending"].sum())
        return (f'<div class="cc-note cc-live" data-live="pending">{NO_LIVE.capitalize()} with a known outcome: '
                f'{pending} prediction(s) waiting for their actual price.</div>')
    body = "".join(_live_row(r) for _, r in acc.iterrows())
    excluded = int(acc["excluded"].sum()) if "excluded" in acc.columns else 0
    tail = (f" {excluded} prediction(s) made by a model trained after their hour (a catch-up after a retrain) "
            "are kept out." if excluded else "")
    return ('<table class="cc-table cc-live" data-live="scored"><thead><tr><th>horizon</th><th>scored</th>'
            '<th>pending</th><th>MAE</th><th>naive MAE</th><th>rel_mae</th><th>cover 80 %</th><th>cover 95 %</th>'
            f'</tr></thead><tbody>{body}</tbody></table>'
            + _note(f"From the hourly prediction log (predictions.parquet), scored rows only.{tail}"))


# --- validation gate --------------------------------------------------------------------------------------
_CHECK_FIELDS_SKIP = {"name", "passed", "message"}


def _check_numbers(check: Mapping[str, Any]) -> str:
    parts = []
    for key, value in check.items():
        if key in _CHECK_FIELDS_SKIP:
            continue
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, dict):
            value = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(map(str, value)) or "none"
        parts.append(f"{key}: {value}")
    return html.escape("; ".join(parts))


def validation_html(validation: Mapping[str, Any] | None) -> str:
    if not validation:
        return _note("No validation report yet (validation.json is missing).")
    checks = validation.get("checks") or []
    passed = bool(validation.get("passed"))
    n_fail = sum(1 for c in checks if not c.get("passed"))
    verdict = (f'<span class="cc-pass">PASSED</span> ({len(checks)} checks)' if passed
               else f'<span class="cc-fail">FAILED</span> ({n_fail} of {len(checks)} checks failed: the pipeline '
                    'stopped, products downstream of the gate are from an earlier build or missing)')
    rows = "".join(
        f'<tr data-check="{html.escape(str(c.get("name")))}"><td class="cc-l">{html.escape(str(c.get("name")))}</td>'
        f'<td class="cc-l {"cc-pass" if c.get("passed") else "cc-fail"}">{"✔ pass" if c.get("passed") else "✘ FAIL"}</td>'
        f'<td class="cc-l">{html.escape(str(c.get("message", "")))}</td>'
        f'<td class="cc-l cc-muted">{_check_numbers(c)}</td></tr>'
        for c in checks)
    warns = "".join(
        f'<div class="cc-note cc-gate-warning" data-warning="{html.escape(str(w.get("name")))}">'
        f'<span class="cc-warn">⚠ warning {html.escape(str(w.get("name")))}</span>: '
        f'{html.escape(str(w.get("message", "")))}</div>'
        for w in validation.get("warnings") or [])
    accepted = "".join(
        f'<div class="cc-note cc-gate-accepted">accepted by a person ({html.escape(str(a.get("check", "")))}): '
        f'{fmt_time(a.get("time"))}: {html.escape(str(a.get("reason", "")))}</div>'
        for a in validation.get("accepted") or [])
    return (f'<div class="cc-gate" data-passed="{str(passed).lower()}">Gate {verdict}, '
            f'{validation.get("rows", "?")} rows, clock {fmt_time(validation.get("now"))}</div>{warns}{accepted}'
            '<table class="cc-table cc-checks"><thead><tr><th class="cc-l">check</th><th class="cc-l">result</th>'
            f'<th class="cc-l">message</th><th class="cc-l">numbers</th></tr></thead><tbody>{rows}</tbody></table>')


# --- model registry ---------------------------------------------------------------------------------------
def _redact(uri: str) -> str:
    """No user:password@ part, no query string (where tokens live)."""
    return re.sub(r"//[^/@]*@", "//***@", uri).split("?", 1)[0]


def _local_store(uri: str) -> Path | None:
    """The file or folder of a local tracking URI (``sqlite:///path``, ``file:///path``, a bare path)."""
    if not uri:
        return None
    if uri.startswith("sqlite:"):
        path = re.sub(r"^sqlite:/{2,3}", "", uri).split("?", 1)[0]
        return Path("/" + path.lstrip("/")) if uri.startswith("sqlite:////") else Path(path)
    if uri.startswith("file:"):
        return Path(re.sub(r"^file:(//)?", "", uri))
    return None if "://" in uri or uri.startswith("databricks") else Path(uri)


def mlflow_champion(project_root: str | os.PathLike | None, coin: str) -> dict[str, Any]:
    """The champion version's registry facts from MLflow, as ``{"ok": True, "version", "model_name", "reason",
    "promoted_at", "rel_mae_1h", "data_through", "run_id", ...}`` (what ``registry.champion_info`` gives), or
    ``{"ok": False, "message": ...}``: never raises.

    Read-only: without ``MLFLOW_TRACKING_URI`` and without ``<project>/mlflow.db`` it does not touch MLflow
    (which would create an empty database), and it uses its own client rather than ``registry.configure``
    (which creates the experiment and sets the process-wide tracking URI)."""
    if project_root is None:
        return {"ok": False, "message": "no project folder"}
    root = Path(project_root)
    if not os.environ.get("MLFLOW_TRACKING_URI", "").strip() and not (root / "mlflow.db").is_file():
        return {"ok": False, "message": "no MLflow registry (mlflow.db) in the project"}
    local = _local_store(os.environ.get("MLFLOW_TRACKING_URI", "").strip())
    if local is not None and not local.exists():  # MLflow would create it (and its folders)
        return {"ok": False, "message": f"no MLflow registry at {local}"}
    try:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        for name in ("mlflow", "alembic", "sqlalchemy"):
            logging.getLogger(name).setLevel(logging.ERROR)
        from mlflow.tracking import MlflowClient

        from coincast import registry

        uri = registry.tracking_uri(root)
        name = registry.registered_name(coin)
        mv = registry.current_champion(MlflowClient(tracking_uri=uri), name)
        if mv is None:
            return {"ok": False, "message": f"{name} has no champion in MLflow"}
        tags = dict(mv.tags or {})
        try:
            rel = float(tags["rel_mae_1h"]) if tags.get("rel_mae_1h") else None
        except ValueError:
            rel = None
        return {"ok": True, "store": _redact(uri), "registered_model": name, "version": str(mv.version),
                "model_name": tags.get("model_name"), "reason": tags.get("promotion_reason") or mv.description,
                "promoted_at": tags.get("promoted_at"), "rel_mae_1h": rel, "data_through": tags.get("data_through"),
                "run_id": mv.run_id}
    except Exception as exc:  # unreachable server, broken database, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return {"ok": False, "message": f"MLflow could not be read: {type(exc).__name__} {_redact(first)[:200]}"}


def registry_html(registry: Mapping[str, Any] | None, mlflow_info: Mapping[str, Any] | None = None,
                  registry_written: pd.Timestamp | None = None) -> str:
    """The champion version, when and why it was promoted: registry.json first, MLflow for the time."""
    reg = registry or {}
    champ = reg.get("champion") or {}
    ml = mlflow_info or {}
    ml_ok = bool(ml.get("ok"))
    if not champ and not ml_ok:
        msg = "No model registry record yet (registry.json is missing)"
        if ml.get("message"):
            msg += f"; MLflow: {html.escape(str(ml['message']))}"
        return f'<div class="cc-note cc-registry" data-champion="">{msg}.</div>'
    name = reg.get("registered_model") or ml.get("registered_model") or "?"
    version = champ.get("version") or ml.get("version")
    model = champ.get("model_name") or ml.get("model_name")
    rel = champ.get("rel_mae_1h") if champ.get("rel_mae_1h") is not None else ml.get("rel_mae_1h")
    reason = ml.get("reason") if ml_ok and ml.get("version") == version and ml.get("reason") else None
    reason = reason or reg.get("reason") or "–"
    if ml_ok and ml.get("promoted_at") and str(ml.get("version")) == str(version):
        when = f'{fmt_time(ml["promoted_at"])} <span class="cc-muted">(MLflow tag promoted_at)</span>'
    elif reg.get("promoted") and registry_written is not None:
        when = (f'in the build of {fmt_time(registry_written)} '
                '<span class="cc-muted">(registry.json written)</span>')
    elif reg:
        when = "in an earlier build (this build's challenger was not promoted)"
    else:
        when = "–"
    challenger = reg.get("challenger") or {}
    rows = [("registered model", html.escape(str(name))),
            ("champion", f'<span class="cc-registry-version">version {html.escape(str(version))}</span>: '
                         f'{html.escape(str(model))}'
                         + (f" (1 h rel_mae {_num(rel, 4)})" if rel is not None else "")),
            ("promoted", when),
            ("why", f'<span class="cc-registry-reason">{html.escape(str(reason))}</span>')]
    if challenger:
        verdict = "promoted" if reg.get("promoted") else "not promoted"
        rows.append(("this build's challenger",
                     f'version {html.escape(str(challenger.get("version")))}: '
                     f'{html.escape(str(challenger.get("model_name")))} '
                     f'(1 h rel_mae {_num(challenger.get("rel_mae_1h"), 4)}), {verdict}'))
    if ml_ok:
        rows.append(("MLflow", f'alias champion → version {html.escape(str(ml.get("version")))}, '
                               f'run {html.escape(str(ml.get("run_id") or "")[:12])}'))
    elif ml:
        rows.append(("MLflow", html.escape(str(ml.get("message", "")))))
    body = "".join(f'<tr><th class="cc-l">{k}</th><td class="cc-l">{v}</td></tr>' for k, v in rows)
    return (f'<table class="cc-table cc-registry" data-champion="{html.escape(str(model))}" '
            f'data-mlflow="{"yes" if ml_ok else ("no" if ml else "pending")}"><tbody>{body}</tbody></table>')


# --- widgets ----------------------------------------------------------------------------------------------
# Every widget is a model (plus Layout and Style models) the browser creates before anything shows, so the
# page uses few of them: static HTML is merged, layouts and styles are shared.
_shared: dict[str, Any] = {}


def _full_width() -> Any:
    import ipywidgets as w

    if "layout" not in _shared:
        _shared["layout"] = w.Layout(width="100%")
        from ipywidgets.widgets.widget_string import HTMLStyle

        _shared["style"] = HTMLStyle()
    return _shared["layout"]


def _html_style() -> Any:
    _full_width()
    return _shared["style"]


def _html_widget(value: str, cls: str | None = None) -> Any:
    import ipywidgets as w

    widget = w.HTML(value=value, layout=_full_width(), style=_shared["style"])
    if cls:
        widget.add_class(cls)
    return widget


def figure_bundle(fig: Any) -> dict[str, Any]:
    """The mime bundle of a plotly figure, JSON-clean (plotly's encoder: typed arrays, dates as strings)."""
    import json

    import plotly.io as pio

    return {"application/vnd.plotly.v1+json": json.loads(pio.to_json(fig, validate=False)),
            "text/plain": f"<plotly figure: {fig.layout.title.text or ''}>"}


def figure_output(fig: Any, cls: str | None = None) -> Any:
    """A plotly figure in an Output widget as a plotly mime bundle, rendered by the jupyterlab-plotly
    extension: plotly.js is loaded once per page. (A FigureWidget ships plotly.js through anywidget per
    widget: first render took 8.5 s instead of 3.3 s for one chart here.)"""
    import ipywidgets as w

    out = w.Output(layout=_full_width())
    if cls:
        out.add_class(cls)
    # set the outputs directly rather than `with out: display(...)`: capturing sets the widget's msg_id,
    # which makes the executing client (Voila's nbclient) send comm messages back to the kernel mid-cell;
    # under Voila 0.5.13 that intermittently left the page spinning on "Executing 2 of 2"
    out.outputs = ({"output_type": "display_data", "data": figure_bundle(fig), "metadata": {}},)
    return out


def profile_widgets(path: Path | None) -> list[Any]:
    """A toggle that embeds the ydata-profiling report (an iframe) only when asked: ~1 MB, not on first render."""
    import ipywidgets as w

    if path is None or not Path(path).is_file():
        return []
    button = w.ToggleButton(value=False, description="Show the data profile", tooltip=str(Path(path).name),
                            layout=w.Layout(width="220px", align_self="flex-start"))
    button.add_class("cc-profile-button")
    frame = _html_widget("", "cc-profile")

    def toggle(change: Mapping[str, Any]) -> None:
        if change["new"]:
            try:
                doc = Path(path).read_text(errors="replace")
            except OSError as exc:
                frame.value = _note(f"profile.html could not be read ({type(exc).__name__})")
                return
            frame.value = (f'<iframe class="cc-profile-frame" title="ydata-profiling report" '
                           f'style="width:100%;height:900px;border:1px solid #d9e2ec" '
                           f'srcdoc="{html.escape(doc, quote=True)}"></iframe>')
            button.description = "Hide the data profile"
        else:
            frame.value = ""
            button.description = "Show the data profile"

    button.observe(toggle, names="value")
    return [button, frame]


def profile_html(path: Path | None) -> str:
    if path is None or not Path(path).is_file():
        return _note("No data profile yet (profile.html is missing).")
    return _note(f"The ydata-profiling report of the features ({html.escape(Path(path).name)}, "
                 f"{Path(path).stat().st_size / 1e6:.1f} MB), embedded on demand:")


def _safe(title: str, build: Callable[[], str]) -> str:
    """A section's HTML; an exception becomes a one-line note instead of a traceback."""
    try:
        return build()
    except Exception as exc:
        logger.debug("dashboard section %s failed", title, exc_info=True)
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        return _note(f"Could not show {html.escape(title)}: {html.escape(type(exc).__name__)}: {html.escape(first)}")


def _safe_figure(title: str, build: Callable[[], Any], cls: str) -> list[Any]:
    """``[Output with the figure]``, or ``[HTML note]`` when building it fails."""
    try:
        return [figure_output(build(), cls)]
    except Exception as exc:
        logger.debug("dashboard figure %s failed", title, exc_info=True)
        return [_html_widget(_note(f"Could not show {html.escape(title)}: {html.escape(type(exc).__name__)}"))]


def top_html(cp: CoinProducts, head: Mapping[str, Any], settings: Mapping[str, Any] | None = None,
             now: pd.Timestamp | None = None) -> str:
    """The banners above the numbers: data source, freshness, a failed gate, an outdated forecast, bad files."""
    top = [source_banner_html(cp.extract),
           freshness_html(freshness(cp.extract, cp.raw, staleness_limit(cp.validation, settings), now)),
           build_status_html(cp.status)]
    if head.get("data_through") is not None and head.get("last_time") is not None \
            and head["data_through"] < head["last_time"]:
        top.append(f'<div class="cc-banner cc-banner-stale">⚠ The forecast was made from data through '
                   f'{fmt_time(head["data_through"])}, older than the last price.</div>')
    top += [f'<div class="cc-banner cc-banner-info">{html.escape(p)}</div>' for p in cp.problems]
    return "".join(top)


def coin_panel(products_dir: str | os.PathLike, coin: str, project_root: str | os.PathLike | None = None,
               settings: Mapping[str, Any] | None = None, now: pd.Timestamp | None = None,
               mlflow: str = "background") -> Any:
    """Everything about one coin, as an ipywidgets VBox. ``mlflow``: ``"background"`` (read the registry in a
    thread and update the section when done), ``"sync"`` or ``"off"``."""
    import ipywidgets as w

    cp = load_coin(products_dir, coin)
    if cp.folder is None:  # nothing published: no numbers, only why
        box = w.VBox([_html_widget(_safe("the build status", lambda: build_status_html(cp.status))
                                   + _h("Validation gate") + _safe("the validation gate", lambda: gate_html(cp)),
                                   "cc-head")], layout=_full_width())
        box.add_class("cc-coin-panel")
        return box
    try:
        head = headline(cp.raw, cp.forecast)
    except Exception as exc:  # e.g. a forecast file with unexpected content: show the rest
        logger.debug("headline failed", exc_info=True)
        cp.problems.append(f"the forecast numbers could not be read ({type(exc).__name__})")
        head = headline(None, None)
    try:
        champ = champion_name(cp.registry, cp.forecast)
    except Exception:
        champ = None
    has_chart = cp.raw is not None or cp.forecast is not None

    parts: list[Any] = [_html_widget(
        _safe("the banners", lambda: top_html(cp, head, settings, now))
        + _safe("the forecast", lambda: headline_html(head))
        + _h("Live accuracy: every logged prediction, scored out of sample")
        + _safe("live accuracy", lambda: live_accuracy_html(live_accuracy(cp.predictions, cp.raw,
                                                                          (settings or {}).get("min_scored_rows"))))
        + (_h("Recent history and the next 24 hours") if has_chart else ""), "cc-head")]
    if has_chart:
        parts += _safe_figure("the forecast chart", lambda: forecast_figure(cp.raw, cp.forecast, coin),
                              "cc-forecast-chart")
    parts.append(_html_widget(_h("Backtest: champion vs naive vs the other models")
                              + _safe("the backtest", lambda: backtest_html(cp.backtest, champ)), "cc-backtest"))
    try:
        by_hour = error_by_hour(cp.backtest_forecasts, 1)
    except Exception:
        logger.debug("error by hour failed", exc_info=True)
        by_hour = pd.DataFrame()
    if not by_hour.empty:
        parts += _safe_figure("the error by hour", lambda: error_by_hour_figure(by_hour, champ, 1), "cc-hour-chart")
    parts.append(_html_widget(
        _h("Validation gate") + _safe("the validation gate", lambda: gate_html(cp))
        + _h("Model registry"), "cc-status"))
    registry_widget = _html_widget(_safe("the registry", lambda: registry_html(cp.registry, None, cp.registry_written)),
                                   "cc-registry-box")
    parts.append(registry_widget)
    parts.append(_html_widget(_h("Data profile") + _safe("the profile", lambda: profile_html(cp.profile_path))))
    parts += profile_widgets(cp.profile_path)

    if mlflow != "off":
        def fill() -> None:
            info = mlflow_champion(project_root, coin)
            try:
                registry_widget.value = registry_html(cp.registry, info, cp.registry_written)
            except Exception:  # the widget may be gone (refresh); nothing to show
                logger.debug("registry update failed", exc_info=True)

        if mlflow == "sync":
            fill()
        else:
            threading.Thread(target=fill, name=f"coincast-mlflow-{coin}", daemon=True).start()
    box = w.VBox(parts, layout=_full_width())
    box.add_class("cc-coin-panel")
    return box


def app(products_dir: str | os.PathLike | None = None, project_root: str | os.PathLike | None = None,
        now: pd.Timestamp | None = None, mlflow: str | None = None) -> Any:
    """The dashboard: title, coin selector, refresh button and the selected coin's panel.

    ``project_root`` defaults to :func:`find_project`; ``products_dir`` to ``<project_root>/products``.
    With no products at all it shows one sentence telling the user to run ``make demo``."""
    import ipywidgets as w

    mlflow = mlflow or os.environ.get(MLFLOW_ENV, "").strip().lower() or "background"
    root = Path(project_root) if project_root is not None else find_project()
    products = Path(products_dir) if products_dir is not None else root / "products"
    settings = read_settings(root)

    selector = w.Dropdown(description="Coin", options=[], layout=w.Layout(width="240px"))
    selector.add_class("cc-coin")
    refresh = w.Button(description="⟳ Refresh", tooltip="re-read the products", layout=w.Layout(width="auto"))
    refresh.add_class("cc-refresh")
    stamp = w.HTML("", layout=w.Layout(width="auto", margin="0 0 0 12px"), style=_html_style())
    stamp.add_class("cc-stamp")
    body = w.VBox([], layout=_full_width())
    body.add_class("cc-body")
    state = {"reads": 0}

    def render(*_: Any) -> None:
        if state.get("quiet"):
            return
        state["reads"] += 1
        read_at = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        coin = selector.value
        if not coin:
            body.children = [_html_widget(empty_html())]
        else:
            try:
                body.children = [coin_panel(products, coin, root, settings, now, mlflow)]
            except Exception as exc:  # never a traceback on the page
                logger.debug("coin panel failed", exc_info=True)
                body.children = [_html_widget(_note(f"Could not show {html.escape(coin)}: "
                                                    f"{html.escape(type(exc).__name__)}"))]
        # last, so that data-reads changing means the new panel is in place
        stamp.value = (f'<span class="cc-muted cc-read-at" data-reads="{state["reads"]}" '
                       f'data-coin="{html.escape(coin or "")}">products read {read_at}</span>')

    def reload(*_: Any) -> None:
        coins = list_coins(products, settings.get("coins"))
        current = selector.value
        state["quiet"] = True  # setting options/value fires the observer: render once, below
        try:
            selector.options = coins
            selector.value = current if current in coins else (coins[0] if coins else None)
        finally:
            state["quiet"] = False
        selector.layout.visibility = "visible" if coins else "hidden"
        render()

    selector.observe(render, names="value")
    refresh.on_click(reload)
    title = w.HTML(CSS + '<div class="cc-title">coincast · hourly forecasts</div>',
                   layout=w.Layout(width="auto", margin="0 24px 0 0"), style=stamp.style)
    header = w.HBox([title, selector, refresh, stamp],
                    layout=w.Layout(align_items="center", width="100%", justify_content="flex-start"))
    page = w.VBox([header, body], layout=w.Layout(width="100%", max_width="1280px"))
    page.add_class("cc-app")
    reload()
    return page


# --- serving: make dashboard ------------------------------------------------------------------------------
NOTEBOOK = Path("notebooks") / "dashboard.ipynb"
DEFAULT_PORT = 8866
# lab extensions the dashboard does not use: jupytext's and Ploomber's fail to activate outside JupyterLab
# (errors in the browser console); anywidget, pygments and the Voila preview only add downloads
UNUSED_EXTENSIONS = ("jupyterlab-jupytext", "ploomber-extension", "anywidget", "jupyterlab_pygments",
                     "@voila-dashboards/jupyterlab-preview")


def voila_command(project_root: str | os.PathLike, port: int = DEFAULT_PORT, ip: str = "127.0.0.1",
                  preheat: bool = True) -> list[str]:
    """The Voila command line ``make dashboard`` runs (in ``project_root``), sources stripped.

    ``preheat``: Voila keeps one kernel started with the imports done (:func:`prepare`), so the first render
    does not wait for a kernel (here ~2 s of a ~5 s first render); the products are still read when the page
    is requested. The pool is refilled 5 s after a page takes its kernel, so refilling does not compete with
    that page's rendering."""
    notebook = Path(project_root) / NOTEBOOK
    if not notebook.is_file():
        raise FileNotFoundError(f"{notebook} not found: run from the coincast project (or pass --project)")
    cmd = [sys.executable, "-m", "voila", str(NOTEBOOK), f"--port={int(port)}", f"--Voila.ip={ip}",
           "--no-browser", "--strip_sources=True", "--show_tracebacks=False"]
    cmd += [f"--VoilaConfiguration.extension_denylist={name}" for name in UNUSED_EXTENSIONS]
    # Voila 0.5.13 does not reliably shut a page's kernel down when the page goes away (here the unload
    # request was refused for lack of an XSRF token, or not sent): without culling every page view would
    # leave a Python process behind. Open pages' kernels stay (connected), and so does the pre-heated one.
    cmd += ["--MappingKernelManager.cull_idle_timeout=900", "--MappingKernelManager.cull_interval=60"]
    if preheat:
        cmd += ["--preheat_kernel=True", "--VoilaKernelManager.fill_delay=5"]
    return cmd


def main(argv: list[str] | None = None) -> int:
    """``python -m coincast.dashboard [--port P] [--ip IP] [--project DIR] [Voila options]``: serve the dashboard."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m coincast.dashboard", description=main.__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("DASHBOARD_PORT") or DEFAULT_PORT))
    parser.add_argument("--ip", default=os.environ.get("DASHBOARD_IP") or "127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--project", default=None, help="the project folder (default: found from here)")
    parser.add_argument("--no-preheat", action="store_true", help="start a kernel per page instead")
    args, voila_options = parser.parse_known_args(argv)  # anything else goes to Voila
    root = Path(args.project).resolve() if args.project else find_project()
    try:
        cmd = voila_command(root, args.port, args.ip, preheat=not args.no_preheat) + voila_options
    except FileNotFoundError as exc:
        print(f"coincast dashboard: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ[PROJECT_ENV] = str(root)
    print(f"coincast dashboard: http://{args.ip}:{args.port}/ (products of {root})", flush=True)
    os.chdir(root)
    os.execv(cmd[0], cmd)  # replaces this process: signals reach Voila directly
    return 0  # pragma: no cover


__all__ = [
    "CoinProducts", "app", "backtest_html", "backtest_table", "coin_panel", "empty_html", "error_by_hour",
    "error_by_hour_figure", "find_project", "fmt_price", "forecast_figure", "freshness", "freshness_html",
    "headline", "headline_html", "list_coins", "live_accuracy", "live_accuracy_html", "load_coin",
    "mlflow_champion", "prepare", "price_decimals", "profile_html", "registry_html", "source_banner_html",
    "staleness_limit", "top_html", "validation_html", "voila_command",
    "build_status_html", "gate_html",
]


if __name__ == "__main__":
    sys.exit(main())

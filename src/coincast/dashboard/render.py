"""HTML of the page's sections, from the Jinja2 templates in ``templates/`` (autoescaped) and its one stylesheet.

Each ``*_html`` function takes what :mod:`coincast.dashboard.data` read or :mod:`coincast.dashboard.summary`
computed and returns an HTML string. The formatting helpers are the templates' filters (``price``, ``pct``,
``time``, ``age``, ``num``, ``share``).

The exact numbers a test reads carry stable classes: ``cc-last-price``, ``cc-last-time``, ``cc-forecast``,
``cc-change``, ``cc-lower-80``, ``cc-upper-80``, ``cc-lower-95``, ``cc-upper-95`` (text = the shown, rounded
value; ``data-value`` = the full float).
"""
from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import jinja2
import pandas as pd
from markupsafe import Markup

from coincast.forecasting.backtest import NAIVE
from coincast.dashboard.data import CoinProducts
from coincast.dashboard.summary import backtest_table
from coincast.data.sources.base import data_label
from coincast.timeseries import to_utc, utc_now

SOURCE_NAMES = {"coingecko": "live CoinGecko", "simulated": "simulated", "replay": "replayed"}


# --- formatting: the templates' filters ---------------------------------------------------------------------
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
    """``2025-06-01 12:00 UTC``; ``–`` for a missing time, the value itself when it is not a time."""
    if ts is None:
        return "–"
    try:
        t = to_utc(ts)
    except (TypeError, ValueError):
        return str(ts)
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


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def fmt_num(x: Any, digits: int = 3) -> str:
    v = _finite(x)
    return "–" if v is None else f"{v:.{digits}f}"


def fmt_share(x: Any) -> str:
    """0.7833 -> ``78.3 %``."""
    v = _finite(x)
    return "–" if v is None else f"{100 * v:.1f} %"


def data_value(x: Any) -> str | None:
    """The full float for a ``data-value`` attribute; None when there is no finite number."""
    v = _finite(x)
    return None if v is None else repr(v)


def source_name(source: Any) -> str:
    return SOURCE_NAMES.get(str(source), str(source or "unknown source"))


def check_numbers(check: Mapping[str, Any]) -> str:
    """A gate check's numbers: ``rows: 200; minimum: 100``."""
    parts = []
    for key, value in check.items():
        if key in ("name", "passed", "message"):
            continue
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, dict):
            value = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(map(str, value)) or "none"
        parts.append(f"{key}: {value}")
    return "; ".join(parts)


ENV = jinja2.Environment(loader=jinja2.PackageLoader("coincast.dashboard", "templates"), autoescape=True,
                         trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
ENV.filters.update(price=fmt_price, pct=fmt_pct, time=fmt_time, age=fmt_age, num=fmt_num, share=fmt_share,
                   data_value=data_value, source_name=source_name, check_numbers=check_numbers)


def render(template: str, **context: Any) -> str:
    """One template, autoescaped, as an HTML string."""
    return ENV.get_template(template).render(**context).strip()


# --- sections -------------------------------------------------------------------------------------------------
def title_html() -> str:
    """The page title with the stylesheet (once per page)."""
    return render("title.html")


def stamp_html(reads: int, coin: str | None, read_at: datetime | None = None) -> str:
    """When the products were read; ``data-reads`` changes last, so a test knows the new panel is in place."""
    when = (read_at or utc_now()).strftime("%Y-%m-%d %H:%M:%S UTC")
    return render("stamp.html", reads=reads, coin=coin or "", read_at=when)


def empty_html() -> str:
    """The one sentence shown when there are no products at all."""
    return render("empty.html")


def heading_html(text: str) -> str:
    return render("heading.html", text=text)


def note_html(text: str) -> str:
    return render("note.html", text=text)


def source_banner_html(extract: Mapping[str, Any] | None) -> str:
    """A loud banner for simulated / replayed data, a quiet one for live CoinGecko data."""
    source = str((extract or {}).get("source") or "unknown")
    return render("source_banner.html", extract=extract, source=source, label=data_label(source))


def build_status_html(status: Mapping[str, Any] | None) -> str:
    """The latest build vs the published one (``coincast.operations.publish.build_status``): a warning naming the failed
    build, its source, clock and one-line reason, and which successful build is shown instead; "" when the
    latest build is the published one."""
    status = status or {}
    if status.get("published") and not status.get("failed"):
        return ""
    return render("build_status.html", status=status)


def validation_html(validation: Mapping[str, Any] | None) -> str:
    checks = (validation or {}).get("checks") or []
    return render("validation.html", validation=validation, passed=bool((validation or {}).get("passed")),
                  failed=sum(1 for c in checks if not c.get("passed")))


def gate_html(cp: CoinProducts) -> str:
    """The published build's gate; before it, the latest build's own gate when that build failed there."""
    gate = cp.status.get("gate")
    if not (cp.status.get("failed") and gate):
        return validation_html(cp.validation)
    latest = note_html("The latest build's gate (its products were not published):") + validation_html(gate)
    if cp.folder is None:
        return latest
    return latest + note_html("The published build's gate:") + validation_html(cp.validation)


def headline_html(head: Mapping[str, Any]) -> str:
    """Cards: last price and time, next-hour forecast and change, 80 % and 95 % intervals, the champion."""
    return render("headline.html", head=head)


def freshness_html(fresh: Mapping[str, Any]) -> str:
    return render("freshness.html", fresh=fresh)


def top_html(cp: CoinProducts, head: Mapping[str, Any], fresh: Mapping[str, Any]) -> str:
    """The banners above the numbers: data source, freshness, a failed build, an outdated forecast, bad files."""
    through, last = head.get("data_through"), head.get("last_time")
    outdated = through if through is not None and last is not None and through < last else None
    return render("top.html", source=Markup(source_banner_html(cp.extract)), freshness=Markup(freshness_html(fresh)),
                  build=Markup(build_status_html(cp.status)), outdated=outdated, problems=cp.problems)


def backtest_html(backtest: Mapping[str, Any] | None, champion: str | None = None) -> str:
    if not backtest:
        return note_html("No backtest yet (backtest.json is missing): the pipeline has not reached the train stage.")
    table = backtest_table(backtest, champion)
    if table.empty:
        return note_html("The backtest has no models.")
    horizons = [c[len("rel_mae_"):-1] for c in table.columns if c.startswith("rel_mae_")]
    return render("backtest.html", backtest=backtest, rows=table.to_dict("records"), horizons=horizons,
                  champion=champion, naive=NAIVE)


def live_accuracy_html(acc: Mapping[str, Any] | None) -> str:
    """``summary.live_accuracy`` (live.json): a table per horizon, "too few to score" where live.json says so."""
    return render("live.html", acc=acc)


def registry_html(registry: Mapping[str, Any] | None, mlflow_info: Mapping[str, Any] | None = None,
                  registry_written: pd.Timestamp | None = None) -> str:
    """The champion version, when and why it was promoted: registry.json first, MLflow for the time."""
    reg = registry or {}
    champ = reg.get("champion") or {}
    ml = mlflow_info or {}
    ml_ok = bool(ml.get("ok"))
    version = champ.get("version") or ml.get("version")
    reason = ml.get("reason") if ml_ok and ml.get("version") == version and ml.get("reason") else None
    if ml_ok and ml.get("promoted_at") and str(ml.get("version")) == str(version):
        when = "mlflow"
    elif reg.get("promoted") and registry_written is not None:
        when = "build"
    else:
        when = "earlier" if reg else None
    return render("registry.html", champion=champ, ml=ml, ml_ok=ml_ok, version=version, when=when,
                  name=reg.get("registered_model") or ml.get("registered_model") or "?",
                  model=champ.get("model_name") or ml.get("model_name"),
                  rel=champ.get("rel_mae_1h") if champ.get("rel_mae_1h") is not None else ml.get("rel_mae_1h"),
                  reason=reason or reg.get("reason") or "–", written=registry_written,
                  challenger=reg.get("challenger") or {}, promoted=reg.get("promoted"))


def profile_html(path: Path | None, size_bytes: int | None = None) -> str:
    """What the data profile is, above the button that embeds it."""
    return render("profile.html", name=None if path is None else Path(path).name,
                  megabytes=(size_bytes or 0) / 1e6)


def profile_frame_html(doc: str) -> str:
    """The ydata-profiling report in an iframe (``srcdoc``, escaped)."""
    return render("profile_frame.html", doc=doc)


__all__ = [
    "ENV", "backtest_html", "build_status_html", "check_numbers", "data_value", "empty_html", "fmt_age",
    "fmt_num", "fmt_pct", "fmt_price", "fmt_share", "fmt_time", "freshness_html", "gate_html", "heading_html",
    "headline_html", "live_accuracy_html", "note_html", "price_decimals", "profile_frame_html", "profile_html",
    "registry_html", "render", "source_banner_html", "source_name", "stamp_html", "title_html", "top_html",
    "validation_html",
]

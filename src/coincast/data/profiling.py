"""ydata-profiling HTML reports of the feature frames, in a configuration fast enough to run per coin.

The one place the profiling configuration lives is `profile_config`; `profile_html` builds the report.

Where the time goes (ydata-profiling 4.18.4, 2-core host, 2,160 hourly rows x 36 columns: a UTC
timestamp + 35 numeric features; report build only, import excluded; the host is shared, so ±1 s):

* ydata's full default mode: ~300 s (as first observed; not re-run). Its largest share is the
  pairwise "interactions" scatter plots: 35 x 35 = 1,225 matplotlib figures, and one target
  column's 35 measured +5 s, so ~175 s extrapolated; then correlations and missing diagrams.
* ydata's `minimal=True` preset: ~8 s (7.4-10.3 s). The statistics themselves take ~0.25 s;
  ~95 % is matplotlib drawing two SVG histograms per variable (a "mini" thumbnail + the full
  histogram) with 50 bars each.
* this configuration: ~4 s (3.7-5.7 s; minimal preset + 25 bins + no thumbnail histogram).

Importing ydata_profiling costs another ~2.5 s with compiled bytecode (the install compiles it), 6-9 s
without (every process then recompiles scipy, statsmodels, matplotlib, numba, ...). The import is done
lazily, inside `profile_html`, so `import coincast.data.profiling` stays cheap.
"""
from __future__ import annotations

import copy
import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from coincast.patches import ydata_patched

logger = logging.getLogger(__name__)

# Histogram bars per numeric variable. ydata's default is 50 (both presets); each bar is a
# matplotlib patch drawn and serialised to SVG. 25 bins: ~8.2 s -> ~6.4 s on its own and
# 2.14 MB -> 1.76 MB of HTML, and still resolves the shape of 2,160 hourly values.
HISTOGRAM_BINS = 25

# ydata draws every numeric/date variable twice: a thumbnail ("mini histogram") next to the
# variable's summary table and the full histogram under "More details". ydata has no setting for
# the thumbnail; `profile_html` skips it in the fast mode (coincast.patches.ydata_patched).
DROP_MINI_HISTOGRAMS = True

_ProfileReport: Any = None

# profile.html when profile_enabled is false (the product exists, so the build and the dashboard stay whole)
DISABLED_PAGE = ("<!doctype html><html><head><meta charset=\"utf-8\"><title>coincast profile</title></head><body>"
                 "<p>Profiling is off for this build (<code>profile_enabled: false</code> in the env file): no "
                 "ydata-profiling report was made.</p></body></html>\n")


def profile_config(title: str, description: str = "", minimal: bool | None = True) -> dict[str, Any]:
    """Keyword arguments for `ydata_profiling.ProfileReport` (`ProfileReport(df, **profile_config(...))`).

    minimal=True (also None): the fast configuration, ydata's `minimal` preset plus the switches below.
    minimal=False: ydata's full default report (~300 s here), kept for one-off deep dives.
    Either way: no progress bars, no time-series mode, assets inlined, title and description set.
    Measured timings are for 2,160 rows x 36 columns on this 2-core host (see the module docstring).
    """
    minimal = _as_bool(minimal, default=True)
    cfg: dict[str, Any] = {
        # Shown in the <title>, the navigation bar and the overview; the description in the
        # overview's "Dataset" tab.
        "title": title,
        "dataset": {"description": description},
        # tqdm bars go to stderr and clutter the executed notebooks.
        "progress_bar": False,
        # Time-series mode adds ACF/PACF plots per variable and a time-index section; the
        # timestamp column is profiled as an ordinary DateTime variable (range, histogram) instead.
        "tsmode": False,
        # One self-contained file: Bootstrap CSS/JS and all images inlined, no CDN fetch when the
        # report is opened offline. minify_html costs well under the noise (<0.1 s) and saves
        # a third of the file (1.98 MB -> 1.35 MB).
        "html": {"inline": True, "use_local_assets": True, "minify_html": True},
    }
    if not minimal:
        return cfg
    cfg.update(
        {
            # ydata's minimal preset (ydata_profiling/config_minimal.yaml) is the base; the
            # switches it already sets are repeated here so the costs are visible in one place.
            "minimal": True,
            # Correlations: pearson alone adds ~1.9 s, "auto" ~2.7 s (the heatmaps), and on lag and
            # rolling features they would only raise a wall of HIGH_CORRELATION alerts.
            "correlations": {
                name: {"calculate": False}
                for name in ("auto", "pearson", "spearman", "kendall", "phi_k", "cramers")
            },
            "correlation_table": False,
            # Interactions: 35 x 35 scatter/hexbin plots, the bulk of the 300 s full mode
            # (one target column alone: +5 s).
            "interactions": {"continuous": False, "targets": []},
            # Missing-value diagrams: the bar chart +0.7 s, bar+matrix+heatmap +2 s. Missing counts
            # stay in every variable's table, the overview totals and the MISSING alerts.
            "missing_diagrams": {"bar": False, "matrix": False, "heatmap": False},
            # Duplicate rows: with a unique hourly timestamp per row there can be none (duplicate
            # hours are the validation gate's job); skips a groupby over all columns.
            "duplicates": {"head": 0},
            # First/last rows: an HTML table, no measurable cost (<0.1 s); shows the newest hours.
            "samples": {"head": 5, "tail": 5, "random": 0},
            # Per-variable extreme/common value tables: cheap HTML tables, kept small.
            "n_extreme_obs": 5,
            "n_freq_table_max": 10,
            # No string->number/date guessing: the frame is already typed (features are floats,
            # calendar terms ints, the timestamp datetime64[ns, UTC]).
            "infer_dtypes": False,
            "vars": {
                # Text analyses (length/character/word counts, word clouds): nothing textual in
                # the features; off so a stray string column cannot cost a word cloud.
                "cat": {"length": False, "characters": False, "words": False},
                "text": {"length": False, "characters": False, "words": False},
                # The chi-squared uniformity test per numeric column; off in the minimal preset.
                "num": {"chi_squared_threshold": 0.0},
            },
            # SVG images (crisp, ~the same speed as PNG at 100 dpi here: 3.8 s vs 3.9 s).
            "plot": {"image_format": "svg", "histogram": {"bins": HISTOGRAM_BINS}},
        }
    )
    return cfg


def profile_html(
    df: pd.DataFrame, title: str, description: str = "", minimal: bool | None = True
) -> str:
    """Profile `df` with ydata-profiling and return the report as one self-contained HTML string.

    The caller writes it to disk. minimal=True (or None) is the fast configuration of
    `profile_config`; minimal=False is ydata's full report (slow: ~300 s for 90 days x 36 columns).
    """
    minimal = _as_bool(minimal, default=True)
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"profile_html needs a pandas DataFrame, got {type(df).__name__}")
    if df.empty:
        raise ValueError("profile_html needs a non-empty DataFrame")
    df = _with_timestamp_column(df)

    ProfileReport = _ydata()
    start = time.perf_counter()
    with ydata_patched(drop_mini_histograms=minimal and DROP_MINI_HISTOGRAMS):
        # deepcopy: ydata merges its defaults into the dicts it is given.
        report = ProfileReport(df, **copy.deepcopy(profile_config(title, description, minimal)))
        html = report.to_html()
    elapsed = time.perf_counter() - start
    logger.info(
        "ydata-profiling report '%s' (%s mode): %d rows x %d columns in %.1f s, %.2f MB of HTML",
        title,
        "fast" if minimal else "full",
        len(df),
        df.shape[1],
        elapsed,
        len(html.encode("utf-8")) / 1e6,
    )
    return html


def profile_due(product: Mapping[str, Any], now: Any, every_hours: int | None,
                enabled: bool = True) -> dict[str, Any]:
    """Whether to (re)make the report: never when not ``enabled`` (:func:`write_profile` then writes a page saying
    so); always when ``every_hours`` is 0/None, a product is missing or the last build had profiling off; else when
    the last report was made for a clock ``every_hours`` or more before ``now``."""
    paths = {k: Path(str(v)) for k, v in product.items() if k in ("report", "meta")}
    if not _as_bool(enabled, default=True):
        return {"due": False, "enabled": False, "reason": "profile_enabled is false: no report is made"}
    if not every_hours:
        return {"due": True, "reason": "profile_every_hours is 0: every build profiles"}
    missing = [p.name for p in paths.values() if not p.exists()]
    if missing:
        return {"due": True, "reason": f"no previous report ({missing[0]} missing)"}
    try:
        last = json.loads(paths["meta"].read_text())
        made_for = pd.Timestamp(last["made_for"])
    except (OSError, ValueError, KeyError):
        return {"due": True, "reason": "the previous report's metadata cannot be read"}
    if last.get("disabled"):
        return {"due": True, "reason": "the last build had profiling off"}
    age = (pd.Timestamp(now) - made_for).total_seconds() / 3600
    if age >= every_hours:
        return {"due": True, "reason": f"last report is {age:.0f} h old (profile_every_hours {every_hours})"}
    return {"due": False, "reason": f"not due: last report is {age:.0f} h old (profile_every_hours {every_hours})"}


def write_profile(decision: Mapping[str, Any], features: str | Path, meta: Mapping[str, Any],
                  product: Mapping[str, Any], minimal: bool | None = True) -> dict[str, Any] | None:
    """The profile task when ``decision`` (:func:`profile_due`) says it is due: profile the features frame at
    ``features`` and write ``product["report"]`` and ``product["meta"]`` (returned; ``meta``: extract.json).
    Profiling off: a page saying so and ``disabled`` in the metadata. None when not due: the last report stays."""
    from coincast import files

    if decision.get("enabled") is False:
        made = {"data_through": meta["last"], "made_for": meta["now"], "rows": 0, "disabled": True}
        files.write_text_atomic(DISABLED_PAGE, product["report"])
        files.write_json_atomic(made, product["meta"])
        return made
    if not decision["due"]:
        return None
    from coincast.data.sources.base import data_label

    df = files.read_frame(features)
    html = profile_html(df, title=f"coincast · {meta['coin']} features", minimal=minimal,
                        description=data_label(meta["source"]) + f" Window {meta['first']} to {meta['last']}.")
    files.write_text_atomic(html, product["report"])
    made = {"data_through": meta["last"], "made_for": meta["now"], "rows": len(df)}
    files.write_json_atomic(made, product["meta"])
    return made


def _as_bool(value: Any, default: bool) -> bool:
    """`minimal` as a bool: None -> default; "false"/"0"/"no" strings (e.g. from a CLI) -> False."""
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() not in {"false", "0", "no", "off", ""}
    return bool(value)


def _with_timestamp_column(df: pd.DataFrame) -> pd.DataFrame:
    """ydata profiles columns only: a DatetimeIndex becomes a column so the time window is shown."""
    if isinstance(df.index, pd.DatetimeIndex):
        name = df.index.name or "timestamp"
        if name not in df.columns:
            return df.rename_axis(name).reset_index()
    return df


def _ydata() -> Any:
    """Import ydata_profiling once (slow: see the module docstring) and return ProfileReport."""
    global _ProfileReport
    if _ProfileReport is None:
        start = time.perf_counter()
        with warnings.catch_warnings():
            # "`import ydata_profiling` is deprecated ... use fg-data-profiling" (4.18 is the last
            # release; the project pins it) and pkg_resources' own deprecation notice.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            from ydata_profiling import ProfileReport
        _ProfileReport = ProfileReport
        logger.info("imported ydata_profiling in %.1f s", time.perf_counter() - start)
    return _ProfileReport

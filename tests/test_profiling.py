"""coincast.data.profiling: the fast ydata-profiling report is valid, self-contained and shows what matters.

No timing assertions here (speed targets are checked by benchmarks, never by timed tests).
"""
from __future__ import annotations

import importlib
import os
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from coincast.data import profiling
from coincast.data.profiling import profile_config, profile_html

TITLE = "coincast · bitcoin features"
DESCRIPTION = "SIMULATED data from the built-in simulator. Window 2026-01-01 to 2026-03-31."


def feature_frame(n_rows: int = 2160, seed: int = 0) -> pd.DataFrame:
    """A synthetic hourly feature frame like notebooks/03_features.py makes: a UTC timestamp + 35 features."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2026-01-01", periods=n_rows, freq="h", tz="UTC")
    price = pd.Series(30_000 * np.exp(np.cumsum(rng.normal(0, 0.004, n_rows))))
    volume = pd.Series(rng.lognormal(20, 0.5, n_rows))
    df = pd.DataFrame({"timestamp": ts, "price": price, "volume": volume, "market_cap": price * 19.6e6})
    for lag in (1, 3, 6, 12, 24):
        df[f"price_lag_{lag}h"] = price.shift(lag)
        df[f"volume_lag_{lag}h"] = volume.shift(lag)
    for w in (6, 12, 24):
        df[f"price_rolling_mean_{w}h"] = price.rolling(w).mean()
        df[f"price_rolling_std_{w}h"] = price.rolling(w).std()
        df[f"volume_rolling_mean_{w}h"] = volume.rolling(w).mean()
        df[f"volume_rolling_std_{w}h"] = volume.rolling(w).std()
    df["hour"] = ts.hour
    df["day_of_week"] = ts.dayofweek
    df["is_weekend"] = (ts.dayofweek >= 5).astype(int)
    df["hour_sin"] = np.sin(2 * np.pi * ts.hour / 24)
    df["hour_cos"] = np.cos(2 * np.pi * ts.hour / 24)
    df["return_1h"] = price.pct_change()
    df["volatility_24h"] = df["return_1h"].rolling(24).std()
    df["momentum_12h"] = price / price.shift(12) - 1
    low, high = price.rolling(24).min(), price.rolling(24).max()
    df["price_position"] = (price - low) / (high - low)
    df["target_price_1h"] = price.shift(-1)
    return df


SMALL_COLUMNS = [
    "timestamp", "price", "volume", "price_lag_1h", "price_lag_24h",
    "volume_lag_3h", "price_rolling_std_6h", "hour", "is_weekend", "target_price_1h",
]


class _Parsed(HTMLParser):
    """Tags, `title` attributes and the <title> text of a document (html.parser is lenient, like browsers)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.title_attrs: set[str] = set()
        self.external: list[str] = []
        self.doc_title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if attrs.get("title"):
            self.title_attrs.add(attrs["title"])
        for key in ("src", "href"):
            value = (attrs.get(key) or "").strip().lower()
            # <a href> links (e.g. the ydata footer) are fine; anything the page *loads* is not.
            if tag != "a" and value.startswith(("http:", "https:", "//")):
                self.external.append(f"<{tag} {key}={value}>")
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.doc_title += data


def _parse(html: str) -> _Parsed:
    parsed = _Parsed()
    parsed.feed(html)
    parsed.close()
    return parsed


def _variable_text(html: str, column: str) -> str:
    """The text (tags stripped) of one variable's section, from its header to the next variable."""
    start = re.search(rf"<p class=\"?item-header[^>]*title=\"?{re.escape(column)}\"?>", html)
    assert start, f"no variable section for {column!r}"
    end = re.compile(r"\bid=\"?pp_var_").search(html, start.end())  # the next variable's anchor
    segment = html[start.start() : end.start() if end else len(html)]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", segment))


def _missing_count(html: str, column: str) -> int:
    match = re.search(r"Missing (\d[\d,]*) ", _variable_text(html, column))
    assert match, f"no Missing count shown for {column!r}"
    return int(match.group(1).replace(",", ""))


@pytest.fixture(scope="module")
def small_df() -> pd.DataFrame:
    return feature_frame(300)[SMALL_COLUMNS]


@pytest.fixture(scope="module")
def small_html(small_df) -> str:
    return profile_html(small_df, TITLE, DESCRIPTION)


def test_report_is_a_self_contained_html_document(small_html):
    assert small_html.lstrip()[:15].lower() == "<!doctype html>"
    parsed = _parse(small_html)
    assert "html" in parsed.tags and "script" in parsed.tags and "style" in parsed.tags
    assert parsed.doc_title.strip() == TITLE
    # Nothing fetched from the network when the file is opened offline (CSS/JS/images inline).
    assert parsed.external == []
    assert not re.search(r"<(script|img|iframe)\b[^>]*\bsrc=", small_html, re.I)
    assert not re.search(r"<link\b", small_html, re.I)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//|@import", small_html, re.I)


def test_report_shows_title_description_and_every_column(small_html, small_df):
    assert TITLE in small_html
    assert DESCRIPTION in small_html
    assert set(small_df.columns) <= _parse(small_html).title_attrs  # one variable header each


def test_report_shows_missing_counts(small_html, small_df):
    for column in ("price_lag_1h", "price_lag_24h", "volume_lag_3h", "price_rolling_std_6h", "target_price_1h", "price"):
        assert _missing_count(small_html, column) == small_df[column].isna().sum()
    assert "Missing cells" in small_html  # the overview's total
    assert "Alerts" in small_html  # e.g. the MISSING alerts of the lag columns


def test_report_keeps_stats_and_histograms_and_drops_the_costly_sections(small_html):
    text = _variable_text(small_html, "price")
    for stat in ("Distinct", "Mean", "Minimum", "Maximum", "Q1", "median", "Standard deviation", "Histogram"):
        assert stat in text
    timestamp = _variable_text(small_html, "timestamp")
    assert "2026-01-01 00:00:00+00:00" in timestamp  # the window, from the UTC datetime column
    assert "First rows" in small_html and "Last rows" in small_html
    assert "Interactions" not in small_html
    assert "Correlations" not in small_html


def test_constant_and_all_nan_columns_do_not_crash():
    n = 60
    df = pd.DataFrame(
        {
            "timestamp": pd.date_range("2026-01-01", periods=n, freq="h", tz="UTC"),
            "price": np.linspace(100.0, 110.0, n),
            "constant": 1.0,
            "constant_int": np.zeros(n, dtype=int),
            "all_nan": np.full(n, np.nan),
            "all_none": pd.Series([None] * n, dtype=object),
        }
    )
    html = profile_html(df, "edge cases")
    assert set(df.columns) <= _parse(html).title_attrs
    assert "Constant" in _variable_text(html, "constant")
    assert _missing_count(html, "all_nan") == n
    assert _missing_count(html, "all_none") == n


def test_datetime_index_becomes_the_timestamp_column():
    df = feature_frame(48)[["timestamp", "price", "volume"]].set_index("timestamp")
    html = profile_html(df, "indexed")
    assert {"timestamp", "price", "volume"} <= _parse(html).title_attrs


def test_full_size_frame(capfd):
    # 90 days of hourly rows x (timestamp + 35 features), the size the pipeline profiles per coin.
    df = feature_frame(2160)
    assert df.shape == (2160, 36)
    html = profile_html(df, TITLE, DESCRIPTION)
    assert set(df.columns) <= _parse(html).title_attrs
    assert _missing_count(html, "price_lag_24h") == 24
    # No tqdm progress bars (ydata's per-column bar ignores progress_bar=False; profile_html silences it).
    err = capfd.readouterr().err
    assert "it/s" not in err and "%|" not in err


PROFILE_THEN_CONTROL = """
import numpy as np, pandas as pd, requests
from coincast.data.profiling import profile_html
profile_html(pd.DataFrame({"a": np.arange(50.0), "b": np.arange(50.0) ** 2}), "offline")
requests.get("http://control.invalid/ping", timeout=10)  # proves the proxy sees what the process sends
"""


def test_analytics_are_off_and_never_reach_the_network():
    """A report in a fresh process whose every HTTP(S) request goes through a recording proxy on 127.0.0.1: with
    coincast's settings only the control request arrives; with ydata's analytics switched back on (an empty
    YDATA_PROFILING_NO_ANALYTICS, which coincast leaves as it is) the ping to packages.ydata.ai arrives too."""
    import http.server
    import subprocess
    import sys
    import threading

    seen: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def record(self) -> None:
            seen.append(f"{self.command} {self.path}")
            self.send_response(403 if self.command == "CONNECT" else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_CONNECT = do_GET = do_POST = do_HEAD = record

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for analytics_off in (None, ""):  # None: as coincast sets it; "": ydata's ping on
            env = {k: v for k, v in os.environ.items() if k != "YDATA_PROFILING_NO_ANALYTICS"}
            env.update({k: proxy for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")},
                       NO_PROXY="", no_proxy="")
            if analytics_off is not None:
                env["YDATA_PROFILING_NO_ANALYTICS"] = analytics_off
            seen.clear()
            subprocess.run([sys.executable, "-c", PROFILE_THEN_CONTROL], env=env, check=True, timeout=300)
            pings = [s for s in seen if "ydata" in s]
            assert "GET http://control.invalid/ping" in seen, seen
            assert (pings == []) if analytics_off is None else (pings == ["CONNECT packages.ydata.ai:443"]), seen
    finally:
        server.shutdown()


def test_ydata_patches_are_undone_after_the_report(small_html):
    render_real = importlib.import_module("ydata_profiling.report.structure.variables.render_real")
    plot = importlib.import_module("ydata_profiling.visualisation.plot")
    summary = importlib.import_module("ydata_profiling.model.pandas.summary_pandas")
    assert render_real.mini_histogram is plot.mini_histogram
    assert summary.tqdm is importlib.import_module("tqdm").tqdm


def test_profile_config_fast_and_full():
    fast = profile_config("t", "d")
    assert fast["title"] == "t" and fast["dataset"] == {"description": "d"}
    assert fast["minimal"] is True and fast["progress_bar"] is False and fast["tsmode"] is False
    assert fast["html"]["inline"] is True and fast["html"]["use_local_assets"] is True
    assert fast["interactions"]["continuous"] is False
    assert not any(c["calculate"] for c in fast["correlations"].values())
    assert not any(fast["missing_diagrams"].values())
    assert fast["plot"]["histogram"]["bins"] == profiling.HISTOGRAM_BINS
    assert profile_config("t", minimal=None) == fast | {"dataset": {"description": ""}}

    full = profile_config("t", "d", minimal=False)
    assert "minimal" not in full and "correlations" not in full and "interactions" not in full
    assert full["progress_bar"] is False and full["html"]["inline"] is True
    assert profile_config("t", "d", minimal="false") == full  # a stray string from a CLI

"""Serve a recorded file as if it were the API, at a simulated clock.

Accepted files: CSV or parquet with a time column plus ``price`` (or ``close``) and ``volume``
(``market_cap`` optional), and saved CoinGecko ``market_chart`` JSON (plain or wrapped in
``{"data": ...}``). Offsets such as ``+03:00`` are honoured and everything is converted to UTC.

For candle files (``open_time`` + ``close``), the close is the price at the *end* of the hour,
so the observation time is ``close_time`` (or ``open_time`` + 1 h).
"""
from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path

import pandas as pd

from coincast.data.sources.base import OBSERVATION_COLUMNS, SourceError, clip_window, parse_market_chart
from coincast.timeseries import utc_times

logger = logging.getLogger(__name__)

_TIME_COLUMNS = ("timestamp", "time", "datetime", "date")
_SYMBOLS = {"btc": "bitcoin", "eth": "ethereum", "ltc": "litecoin", "sol": "solana", "xrp": "ripple",
            "doge": "dogecoin", "ada": "cardano", "bnb": "binancecoin"}


def _to_utc(values: pd.Series, column: str, path: Path) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values):
        unit = "ms" if values.abs().max() > 1e11 else "s"
        return pd.to_datetime(values, unit=unit, utc=True)
    try:
        return pd.to_datetime(values, utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise SourceError(f"{path.name}: column {column!r} has values that are not times ({exc})") from None


def _frame_to_observations(raw: pd.DataFrame, path: Path) -> pd.DataFrame:
    cols = {c.lower().strip(): c for c in raw.columns}
    if "close_time" in cols:
        ts = _to_utc(raw[cols["close_time"]], "close_time", path).dt.ceil("s")
    elif "open_time" in cols:
        ts = _to_utc(raw[cols["open_time"]], "open_time", path) + pd.Timedelta(hours=1)
    else:
        name = next((cols[c] for c in _TIME_COLUMNS if c in cols), None)
        if name is None:
            raise SourceError(f"{path.name}: no time column (expected one of timestamp, time, date, open_time)")
        ts = _to_utc(raw[name], name, path)
    price_col = cols.get("price") or cols.get("close")
    if price_col is None:
        raise SourceError(f"{path.name}: no 'price' or 'close' column")
    volume_col = cols.get("volume") or cols.get("total_volume") or cols.get("total_volumes")
    if volume_col is None:
        raise SourceError(f"{path.name}: no 'volume' column")
    mcap_col = cols.get("market_cap") or cols.get("market_caps")
    df = pd.DataFrame(
        {
            "timestamp": ts.to_numpy(),
            "price": pd.to_numeric(raw[price_col], errors="coerce").to_numpy(),
            "volume": pd.to_numeric(raw[volume_col], errors="coerce").to_numpy(),
            "market_cap": pd.to_numeric(raw[mcap_col], errors="coerce").to_numpy() if mcap_col else float("nan"),
        }
    )
    df["timestamp"] = utc_times(df["timestamp"])
    return df


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime: float) -> pd.DataFrame:
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".json":
        try:
            payload = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise SourceError(f"{p.name}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        df = parse_market_chart(payload)
    elif suffix in (".csv", ".gz"):
        df = _frame_to_observations(pd.read_csv(p), p)
    elif suffix in (".parquet", ".pq"):
        df = _frame_to_observations(pd.read_parquet(p), p)
    else:
        raise SourceError(f"{p.name}: unsupported replay file type {suffix!r} (use .csv, .parquet or .json)")
    df = df.dropna(subset=["timestamp"]).sort_values("timestamp", kind="stable")
    return df.drop_duplicates("timestamp", keep="last").reset_index(drop=True)[OBSERVATION_COLUMNS]


def load_replay_file(path: str | Path) -> pd.DataFrame:
    """All observations in a recorded file, UTC, sorted, unique timestamps."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise SourceError(f"replay file not found: {p}")
    return _load_cached(str(p.resolve()), p.stat().st_mtime).copy()


def guess_coin_id(path: str | Path) -> str | None:
    """'BTCUSDT_1h.csv' -> 'bitcoin'; 'coingecko_bitcoin_market_chart.json' -> 'bitcoin'; else None."""
    stem = Path(path).name.lower()
    for coin in _SYMBOLS.values():
        if coin in stem:
            return coin
    for symbol, coin in _SYMBOLS.items():
        if stem.startswith(symbol):
            return coin
    return None


def lacking_coin(files: str | Path | dict[str, str | Path], coins: list[str]) -> str | None:
    """Which coin a {coin: path} ``replay_file`` has no entry for (one line), or None (one path serves every coin)."""
    lacking = [coin for coin in coins if coin not in files] if isinstance(files, dict) else []
    return f"replay_file has no entry for coin {lacking[0]!r} (has {sorted(files)})" if lacking else None


def replay_file_problem(files: str | Path | dict[str, str | Path], coins: list[str],
                        root: str | Path = ".") -> str | None:
    """Why ``files`` (replay_file: one path, or {coin: path}) cannot serve ``coins`` (one line), or None: a coin
    without an entry, or a file that does not exist (a relative path is taken from ``root``, the project)."""
    lacking = lacking_coin(files, coins)
    if lacking:
        return lacking
    paths = [files[coin] for coin in coins] if isinstance(files, dict) else [files]
    for path in paths:
        p = Path(path).expanduser()
        p = p if p.is_absolute() else Path(root) / p
        if not p.is_file():
            return f"replay file not found: {p}"
    return None


class ReplaySource:
    """The Source interface over a recorded file, answering only with data up to the clock ``now``.

    ``now`` None means the file's last timestamp. ``files`` maps coin ids to paths; a single path
    serves every coin asked for.
    """

    name = "replay"

    def __init__(self, files: str | Path | dict[str, str | Path], now: pd.Timestamp | None = None) -> None:
        self.files = files
        self.now = now

    def path_for(self, coin: str) -> Path:
        if isinstance(self.files, dict):
            if coin not in self.files:
                raise SourceError(f"replay_file has no entry for coin {coin!r} (has {sorted(self.files)})")
            return Path(self.files[coin])
        return Path(self.files)

    def clock(self, coin: str) -> pd.Timestamp:
        """The simulated clock: ``now`` or the file's last timestamp."""
        if self.now is not None:
            return self.now
        df = load_replay_file(self.path_for(coin))
        if df.empty:
            raise SourceError(f"replay file {self.path_for(coin).name} has no rows")
        return df["timestamp"].iloc[-1]

    def fetch(self, coin: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        df = load_replay_file(self.path_for(coin))
        end = min(end, self.clock(coin))
        out = clip_window(df, start, end)
        logger.info("replayed %d rows of %s from %s up to %s", len(out), coin, self.path_for(coin).name, end)
        return out

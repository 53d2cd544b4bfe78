"""A seeded market simulator so the whole pipeline runs on a fresh offline machine.

Hourly log-returns follow a GARCH(1,1) process with Student-t(4) innovations (fat tails and
volatility clustering, as in real hourly crypto returns); volume has an intraday pattern (busiest
around the US/EU overlap), rises with the size of the move and has log-normal noise. Sample times
carry a few seconds of jitter like CoinGecko's (19:00:22, not 19:00:00).

The series for a coin is a pure function of (coin, seed): it starts at a fixed epoch and is cut at
the clock, so asking again later returns the same past plus new hours, as a live API would.
Everything it produces is labelled ``simulated``.
"""
from __future__ import annotations

import logging
import zlib

import numpy as np
import pandas as pd

from coincast.data.sources.base import OBSERVATION_COLUMNS, clip_window, empty_observations

logger = logging.getLogger(__name__)

EPOCH = pd.Timestamp("2023-01-01T00:00:00Z")
_START_PRICE = {"bitcoin": 30_000.0, "ethereum": 2_000.0, "litecoin": 90.0}
_SUPPLY = {"bitcoin": 19.5e6, "ethereum": 120e6, "litecoin": 74e6}


_BLOCK = 1024


def _shocks(coin: str, hours: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random draws in fixed blocks of hours, each block from its own stream: the first n hours
    are the same whatever the length asked for (a longer history extends, never rewrites, the past)."""
    parts = []
    for block in range(-(-hours // _BLOCK)):
        rng = np.random.default_rng([seed, zlib.crc32(coin.encode()), block])
        parts.append((rng.standard_t(4.0, size=_BLOCK), rng.lognormal(0.0, 0.25, size=_BLOCK),
                      rng.integers(5, 50, size=_BLOCK)))
    return tuple(np.concatenate([p[i] for p in parts])[:hours] for i in range(3))  # type: ignore[return-value]


def simulate_hourly(coin: str, hours: int, seed: int = 42) -> pd.DataFrame:
    """``hours`` hourly observations from EPOCH for ``coin`` (deterministic in coin and seed)."""
    z, noise, jitter_s = _shocks(coin, hours, seed)
    # GARCH(1,1): sigma2_t = omega + alpha * r_{t-1}^2 + beta * sigma2_{t-1}; long-run hourly vol ~0.6 %
    alpha, beta, long_run_vol = 0.07, 0.90, 0.006
    omega = long_run_vol**2 * (1 - alpha - beta)
    nu = 4.0
    z = z / np.sqrt(nu / (nu - 2))  # unit-variance fat-tailed shocks
    r = np.empty(hours)
    sigma2 = long_run_vol**2
    prev = 0.0
    for t in range(hours):
        sigma2 = omega + alpha * prev * prev + beta * sigma2
        prev = np.sqrt(sigma2) * z[t]
        r[t] = prev
    price = _START_PRICE.get(coin, 100.0) * np.exp(np.cumsum(r))

    ts = EPOCH + pd.to_timedelta(np.arange(hours), unit="h")
    hour = ts.hour.to_numpy()
    intraday = 1.0 + 0.45 * np.exp(-0.5 * ((hour - 15) / 3.5) ** 2) - 0.25 * np.exp(-0.5 * ((hour - 4) / 3.0) ** 2)
    weekend = np.where(ts.dayofweek.to_numpy() >= 5, 0.7, 1.0)
    move = np.abs(r) / long_run_vol
    base_volume = 5e8 if coin == "bitcoin" else 1e8
    volume = base_volume * intraday * weekend * (1 + 0.35 * move) * noise
    market_cap = price * _SUPPLY.get(coin, 50e6)

    jitter = pd.to_timedelta(jitter_s, unit="s")  # sample times, not hour starts
    return pd.DataFrame(
        {"timestamp": ts + jitter, "price": price, "volume": volume, "market_cap": market_cap}
    )[OBSERVATION_COLUMNS]


class SimulatedSource:
    """Source interface over :func:`simulate_hourly`, cut at the clock ``now``."""

    name = "simulated"

    def __init__(self, seed: int = 42, now: pd.Timestamp | None = None) -> None:
        self.seed = seed
        self.now = now

    def fetch(self, coin: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        now = self.now if self.now is not None else pd.Timestamp.now(tz="UTC")
        end = min(end, now)
        if end < EPOCH:
            return empty_observations()
        hours = int((end - EPOCH) / pd.Timedelta(hours=1)) + 1
        df = simulate_hourly(coin, hours, self.seed)
        logger.info("simulated %d hours of %s up to %s", hours, coin, end)
        return clip_window(df, start, end)

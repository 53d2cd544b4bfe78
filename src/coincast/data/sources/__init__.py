"""Data sources behind one interface: ``fetch(coin, start, end) -> observations``."""
from coincast.data.sources.base import OBSERVATION_COLUMNS, Source, SourceError, parse_market_chart

__all__ = ["OBSERVATION_COLUMNS", "Source", "SourceError", "parse_market_chart", "make_source"]


def make_source(name: str, **options) -> Source:
    """Build the source called ``name`` ("coingecko", "replay" or "simulated")."""
    if name == "coingecko":
        from coincast.data.sources.coingecko import CoinGeckoSource

        return CoinGeckoSource(**options)
    if name == "replay":
        from coincast.data.sources.replay import ReplaySource

        return ReplaySource(**options)
    if name == "simulated":
        from coincast.data.sources.simulated import SimulatedSource

        return SimulatedSource(**options)
    raise SourceError(f"unknown source {name!r}: use 'coingecko', 'replay' or 'simulated'")

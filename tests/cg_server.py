"""A fake CoinGecko API: a real HTTP server on 127.0.0.1 for tests (no mocking of requests).

    with FakeCoinGecko({"bitcoin": observations}) as cg:
        cg.queue(429, {"status": {"error_code": 429}}, headers={"Retry-After": "1"})  # one-off, FIFO
        source = CoinGeckoSource(config=CoinGeckoConfig(base_url=cg.url, ...))
        ...
        cg.requests  # [(path, query, headers), ...] with the /api/v3 prefix removed, header names lower-case

Unscripted requests are served from the in-memory observations: ``/coins/{id}/market_chart``
(the last ``days`` days before ``cg.now``), ``/coins/{id}/market_chart/range`` (``from`` <= t <= ``to``,
UNIX seconds) and ``/ping``, in CoinGecko's JSON shape with unix-ms timestamps.
"""
from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Mapping, NamedTuple
from urllib.parse import parse_qsl, urlsplit

import pandas as pd

PREFIX = "/api/v3"
_CHART = re.compile(r"^/coins/(?P<coin>[^/]+)/market_chart(?P<range>/range)?$")
_SERIES = {"prices": "price", "market_caps": "market_cap", "total_volumes": "volume"}


class Recorded(NamedTuple):
    """One request as the server saw it (path without the /api/v3 prefix, header names lower-case)."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]


class Scripted(NamedTuple):
    status: int
    body: Any
    headers: dict[str, str]
    delay: float


def market_chart_body(df: pd.DataFrame) -> dict[str, list[list[float]]]:
    """Observations (timestamp/price/volume/market_cap) as a CoinGecko market_chart body."""
    ms = (pd.to_datetime(df["timestamp"], utc=True).astype("int64") // 1_000_000).tolist()
    out = {}
    for key, column in _SERIES.items():
        values = df[column].tolist() if column in df else [None] * len(ms)
        out[key] = [[t, v] for t, v in zip(ms, values) if v is not None and v == v]
    return out


class FakeCoinGecko:
    """Threaded HTTP server imitating the CoinGecko endpoints coincast uses."""

    def __init__(self, series: Mapping[str, pd.DataFrame] | None = None, now: pd.Timestamp | None = None) -> None:
        self.series = {coin: df.sort_values("timestamp").reset_index(drop=True) for coin, df in (series or {}).items()}
        self.now = pd.Timestamp.now("UTC") if now is None else pd.Timestamp(now)
        self.requests: list[Recorded] = []
        self.raw_urls: list[str] = []  # request targets exactly as received (path + query string)
        self.times: list[float] = []  # time.monotonic() at arrival
        self._scripted: deque[Scripted] = deque()
        self.down: int | None = None  # an outage: every request gets this status until reset to None
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting ---------------------------------------------------------------------------
    def queue(self, status: int, body: Any, headers: Mapping[str, str] | None = None, delay: float = 0.0, times: int = 1) -> None:
        """Serve ``status``/``body`` to the next request(s), before the default handler.

        ``body``: dict/list -> JSON; str/bytes -> sent as is (content type text/html when it starts
        with ``<``, else application/json, unless ``headers`` say otherwise). ``delay`` seconds pass
        before the answer (to provoke read timeouts). ``times`` repeats the response.
        """
        with self._lock:
            self._scripted.extend([Scripted(status, body, dict(headers or {}), delay)] * times)

    @property
    def pending(self) -> int:
        """Scripted responses not consumed yet."""
        return len(self._scripted)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "FakeCoinGecko":
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeCoinGecko":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{PREFIX}"

    # -- default behaviour -------------------------------------------------------------------
    def respond(self, path: str, query: Mapping[str, str]) -> tuple[int, Any]:
        """Default (unscripted) answer to GET ``path`` (without the /api/v3 prefix)."""
        if self.down:
            return self.down, {"status": {"error_code": self.down, "error_message": "service unavailable (outage)"}}
        if path == "/ping":
            return 200, {"gecko_says": "(V3) To the Moon!"}
        m = _CHART.match(path)
        if not m:
            return 404, {"error": "Incorrect path. Please check https://www.coingecko.com/api/documentation/"}
        if "vs_currency" not in query:
            return 400, {"error": "Missing parameter vs_currency"}
        df = self.series.get(m["coin"])
        if df is None:
            return 404, {"error": "coin not found"}
        try:
            if m["range"]:
                lo = pd.Timestamp(float(query["from"]), unit="s", tz="UTC")
                hi = pd.Timestamp(float(query["to"]), unit="s", tz="UTC")
            else:
                days = query["days"]
                hi = pd.Timestamp(self.now)
                hi = hi.tz_localize("UTC") if hi.tzinfo is None else hi.tz_convert("UTC")
                lo = pd.Timestamp.min.tz_localize("UTC") if days == "max" else hi - pd.Timedelta(days=float(days))
        except (KeyError, ValueError) as exc:
            return 400, {"error": f"Invalid or missing parameter: {exc}"}
        ts = pd.to_datetime(df["timestamp"], utc=True)
        return 200, market_chart_body(df.loc[(ts >= lo) & (ts <= hi)])

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: avoid 40 ms stalls

            def log_message(self, format: str, *args: Any) -> None:  # silence stderr
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                path = parts.path[len(PREFIX):] if parts.path.startswith(PREFIX) else parts.path
                query = dict(parse_qsl(parts.query, keep_blank_values=True))
                with fake._lock:
                    fake.requests.append(Recorded(path, query, {k.lower(): v for k, v in self.headers.items()}))
                    fake.raw_urls.append(self.path)
                    fake.times.append(time.monotonic())
                    scripted = fake._scripted.popleft() if fake._scripted else None
                if scripted is None:
                    status, body = fake.respond(path, query)
                    scripted = Scripted(status, body, {}, 0.0)
                self._send(scripted)

            def _send(self, s: Scripted) -> None:
                if isinstance(s.body, (bytes, str)):
                    data = s.body.encode() if isinstance(s.body, str) else s.body
                    ctype = "text/html; charset=UTF-8" if data.lstrip()[:1] == b"<" else "application/json; charset=utf-8"
                else:
                    data, ctype = json.dumps(s.body).encode(), "application/json; charset=utf-8"
                headers = {"Content-Type": ctype, "Content-Length": str(len(data))}
                headers = {k: v for k, v in headers.items() if k.lower() not in {h.lower() for h in s.headers}}
                headers.update(s.headers)
                if s.delay:
                    time.sleep(s.delay)
                try:
                    self.send_response(s.status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (read timeout)

        return Handler

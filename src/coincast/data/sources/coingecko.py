"""Live CoinGecko source: ``/coins/{id}/market_chart`` and ``/coins/{id}/market_chart/range``.

The API key travels only in the ``x-cg-demo-api-key`` / ``x-cg-pro-api-key`` header; it never
appears in a URL, a log line, an exception message or ``repr(config)``. Transient failures (429,
5xx, connection errors, timeouts, invalid JSON on a 200) are retried with :mod:`tenacity` under a
bounded number of attempts and an overall deadline, so "no network" fails in well under 30 s.
"""
from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Mapping
from urllib.parse import quote, urlsplit

import pandas as pd
import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, stop_before_delay, wait_exponential

from coincast import __version__
from coincast.data.sources.base import OBSERVATION_COLUMNS, SourceError, clip_window, empty_observations, parse_market_chart
from coincast.timeseries import to_utc

logger = logging.getLogger(__name__)

PRO_BASE_URL = "https://pro-api.coingecko.com/api/v3"
PUBLIC_BASE_URL = "https://api.coingecko.com/api/v3"
_KEY_HEADERS = {"pro": "x-cg-pro-api-key", "demo": "x-cg-demo-api-key"}
#: CoinGecko serves hourly points for windows of 2..90 days; shorter is 5-minutely, longer daily.
MAX_HOURLY_DAYS = 90
MIN_HOURLY_DAYS = 2
#: how far back the demo plan (and the keyless public API) reaches; a request from further back is refused (10012)
DEMO_REACH_DAYS = 365
_DAY = 86_400
_MAX_DETAIL = 160  # characters of server-provided text kept in a message


class CoinGeckoError(SourceError):
    """CoinGecko could not deliver data. ``status`` is the HTTP status and ``code`` the CoinGecko
    ``error_code`` when known. The message is one line and never contains the API key."""

    def __init__(self, message: str, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class _Transient(CoinGeckoError):
    """A failure worth retrying; ``retry_after`` is the server's Retry-After in seconds, if any."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


@dataclass(frozen=True)
class CoinGeckoConfig:
    """How to reach CoinGecko. ``api_key=None`` is keyless public use (public host, no key header).
    ``base_url=""`` means the default host for ``plan``. ``calls_per_minute=0`` disables the
    client-side rate limit."""

    api_key: str | None = None
    plan: str = "demo"
    base_url: str = ""
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_retries: int = 4
    backoff_base: float = 1.0
    backoff_max: float = 20.0
    max_total_seconds: float = 25.0
    calls_per_minute: float = 25.0

    def __post_init__(self) -> None:
        if self.plan not in _KEY_HEADERS:
            raise CoinGeckoError(f"unknown CoinGecko plan {self.plan!r}: use 'demo' or 'pro'")
        if self.api_key == "":
            object.__setattr__(self, "api_key", None)
        if self.api_key is not None:
            bad = key_problem(self.api_key)
            if bad:
                raise CoinGeckoError(f"COINGECKO_API_KEY is not a valid key: {bad} (the key is not shown; check the "
                                     "environment or .env)")
        if self.plan == "pro" and self.api_key is None:
            raise CoinGeckoError("CoinGecko plan 'pro' needs an API key: set COINGECKO_API_KEY (or COINGECKO_API_PLAN=demo)")
        base = self.base_url or (PRO_BASE_URL if self.plan == "pro" else PUBLIC_BASE_URL)
        object.__setattr__(self, "base_url", base.rstrip("/"))
        if self.max_retries < 0 or self.calls_per_minute < 0 or self.backoff_base < 0:
            raise CoinGeckoError("CoinGecko config: max_retries, calls_per_minute and backoff_base must be >= 0")

    @property
    def key_header(self) -> str | None:
        """Name of the header carrying the key, None when keyless."""
        return _KEY_HEADERS[self.plan] if self.api_key else None

    def __repr__(self) -> str:
        key = "None" if self.api_key is None else "'***'"
        return (
            f"CoinGeckoConfig(api_key={key}, plan={self.plan!r}, base_url={self.base_url!r}, "
            f"connect_timeout={self.connect_timeout}, read_timeout={self.read_timeout}, "
            f"max_retries={self.max_retries}, backoff_base={self.backoff_base}, backoff_max={self.backoff_max}, "
            f"max_total_seconds={self.max_total_seconds}, calls_per_minute={self.calls_per_minute})"
        )


def key_problem(key: str) -> str | None:
    """What makes ``key`` unusable as an HTTP header value (CoinGecko keys are printable ASCII without spaces),
    without quoting it; None when it is fine."""
    for i, ch in enumerate(key, 1):
        if not "\x21" <= ch <= "\x7e":
            kind = ("whitespace" if ch.isspace() else "a control character" if ord(ch) < 32 or ord(ch) == 127
                    else "a non-ASCII character")
            return f"it contains {kind} at character {i} of {len(key)}"
    return None


def reach_problem(days: float, config: CoinGeckoConfig) -> str | None:
    """Why ``days`` of history cannot be fetched on ``config``'s plan (one line), or None: the demo plan and the
    public API reach back :data:`DEMO_REACH_DAYS` days (further is CoinGecko error 10012)."""
    if config.plan == "pro" or days <= DEMO_REACH_DAYS:
        return None
    return (f"days={days:g} reaches back further than CoinGecko's demo plan and public API do ({DEMO_REACH_DAYS} "
            "days): lower days, or set COINGECKO_API_KEY with COINGECKO_API_PLAN=pro")


def config_from_env(environ: Mapping[str, str] = os.environ, **overrides: Any) -> CoinGeckoConfig:
    """Config from ``COINGECKO_API_KEY`` (empty -> keyless), ``COINGECKO_API_PLAN`` ("demo" default,
    or "pro") and ``COINGECKO_BASE_URL`` (optional host override); keyword ``overrides`` win."""
    plan = (environ.get("COINGECKO_API_PLAN") or "demo").strip().lower()
    if plan not in _KEY_HEADERS:
        raise CoinGeckoError(
            f"COINGECKO_API_PLAN={environ.get('COINGECKO_API_PLAN')!r} is not valid: use 'demo' or 'pro'"
        )
    fields: dict[str, Any] = {
        "api_key": (environ.get("COINGECKO_API_KEY") or "").strip() or None,
        "plan": plan,
        "base_url": (environ.get("COINGECKO_BASE_URL") or "").strip(),
    }
    fields.update(overrides)
    return CoinGeckoConfig(**fields)


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or HTTP date), None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - pd.Timestamp.now("UTC")).total_seconds())
    except (TypeError, ValueError):
        return None


def _one_line(text: Any) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()[:_MAX_DETAIL]


def _error_body(body: Any) -> tuple[int | None, str]:
    """(error_code, message) from ``{"status": {...}}``, ``{"error": {"status": {...}}}`` or ``{"error": "..."}``."""
    if not isinstance(body, Mapping):
        return None, ""
    err = body.get("status") if isinstance(body.get("status"), Mapping) else body.get("error")
    if isinstance(err, Mapping) and isinstance(err.get("status"), Mapping):
        err = err["status"]
    if isinstance(err, Mapping):
        code = err.get("error_code")
        try:
            code = int(code) if code is not None else None
        except (TypeError, ValueError):
            code = None
        return code, _one_line(err.get("error_message") or err.get("message") or "")
    return None, _one_line(err) if err else ""


_CODE_MESSAGES = {
    10002: "API key missing (CoinGecko error 10002): set COINGECKO_API_KEY",
    10005: "endpoint or data not available on this plan (CoinGecko error 10005), e.g. history beyond what "
    "the plan reaches: shorten the window or upgrade the plan",
    10012: f"history beyond what the plan reaches (CoinGecko error 10012; the demo plan and the public API reach "
    f"back {DEMO_REACH_DAYS} days): lower days or use a pro key",
    10010: "a pro API key was used on the demo host (CoinGecko error 10010): set COINGECKO_API_PLAN=pro",
    10011: "a demo API key was used on the pro host (CoinGecko error 10011): set COINGECKO_API_PLAN=demo",
}


def _is_html(resp: requests.Response) -> bool:
    return "text/html" in resp.headers.get("content-type", "").lower() or resp.content.lstrip()[:1] == b"<"


class CoinGeckoClient:
    """HTTP client: key header, timeouts, client-side rate limit, bounded retries, clear errors."""

    def __init__(
        self,
        config: CoinGeckoConfig,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.host = urlsplit(config.base_url).netloc or config.base_url
        self._sleep = sleep
        self._lock = threading.Lock()
        self._last_request = -math.inf
        self.session = session or requests.Session()
        self.session.headers.update({"accept": "application/json", "User-Agent": f"coincast/{__version__}"})
        if config.key_header:
            self.session.headers[config.key_header] = config.api_key  # header only, never the URL

    def _redact(self, text: str) -> str:
        """``text`` without the key, as it is or as Python quotes it (``repr``: escaped control characters)."""
        key = self.config.api_key
        if not key:
            return text
        for form in (key, repr(key)[1:-1], ascii(key)[1:-1]):
            text = text.replace(form, "***")
        return text

    def _throttle(self) -> None:
        """Keep at least 60/calls_per_minute seconds between requests of this client."""
        if self.config.calls_per_minute <= 0:
            return
        with self._lock:
            wait = self._last_request + 60.0 / self.config.calls_per_minute - time.monotonic()
            if wait > 0:
                self._sleep(wait)
            self._last_request = time.monotonic()

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return exc.retry_after
        return wait_exponential(multiplier=self.config.backoff_base, max=self.config.backoff_max)(state)

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        logger.warning(
            "%s; retry %d/%d in %.2f s",
            self._redact(str(exc)), state.attempt_number, self.config.max_retries, state.upcoming_sleep,
        )

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET ``base_url + path`` and return the decoded JSON (a dict for the endpoints used here)."""
        cfg = self.config
        started = time.monotonic()
        retrying = Retrying(
            retry=retry_if_exception_type(_Transient),
            stop=stop_after_attempt(cfg.max_retries + 1) | stop_before_delay(cfg.max_total_seconds),
            wait=self._wait,
            before_sleep=self._log_retry,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(self._attempt, path, dict(params or {}), started)
        except _Transient as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            msg = f"{exc} (gave up after {attempts} attempt(s) in {time.monotonic() - started:.1f} s)"
            raise CoinGeckoError(self._redact(msg), status=exc.status) from exc

    def _attempt(self, path: str, params: dict[str, Any], started: float) -> Any:
        cfg = self.config
        self._throttle()
        remaining = cfg.max_total_seconds - (time.monotonic() - started)
        budget = max(0.1, remaining)
        timeout = (min(cfg.connect_timeout, budget), min(cfg.read_timeout, budget))
        logger.debug("GET %s params=%s", path, params)
        try:
            resp = self.session.get(cfg.base_url + path, params=params, timeout=timeout, allow_redirects=False)
        except requests.exceptions.SSLError as exc:  # a TLS failure does not heal on retry: say so at once
            raise CoinGeckoError(f"TLS with {self.host} failed ({_one_line(self._redact(str(exc)))[:200]}): check "
                                 "COINGECKO_BASE_URL (https to a plain-http server?) and the system's certificates"
                                 ) from None
        except requests.exceptions.ConnectTimeout as exc:
            raise _Transient(
                f"cannot reach {self.host}: no connection within connect_timeout={cfg.connect_timeout:g} s "
                "(no network? `make demo` runs the pipeline offline)"
            ) from exc
        except (requests.exceptions.Timeout, requests.exceptions.ConnectionError) as exc:
            if isinstance(exc, requests.exceptions.Timeout) or "timed out" in str(exc).lower():
                # ReadTimeout, or the body stalled mid-answer (requests reports that as a ConnectionError)
                raise _Transient(
                    f"CoinGecko did not answer {path} within read_timeout={cfg.read_timeout:g} s "
                    "(slow API or network)"
                ) from exc
            reason = re.search(r"\[Errno -?\d+\][^')\"]*|Connection refused", str(exc))
            detail = reason.group(0).strip() if reason else type(exc).__name__
            raise _Transient(
                f"cannot reach {self.host} ({detail}): no network? `make demo` runs the pipeline offline"
            ) from exc
        except requests.exceptions.ChunkedEncodingError as exc:
            raise _Transient(f"CoinGecko response for {path} was cut off ({type(exc).__name__})") from exc
        except requests.exceptions.RequestException as exc:
            # e.g. InvalidHeader quotes the header's value, the key: redacted, and not chained (a traceback would
            # print the original)
            raise CoinGeckoError(f"request to CoinGecko {path} failed: {_one_line(self._redact(str(exc)))}") from None
        return self._decode(resp, path)

    def _decode(self, resp: requests.Response, path: str) -> Any:
        """JSON of a 200, else raise _Transient (retry) or CoinGeckoError (final)."""
        status = resp.status_code
        html = _is_html(resp)
        json_error = ""
        try:
            body = resp.json()
        except ValueError as exc:
            body = None
            json_error = _one_line(exc)
        html_msg = f"CoinGecko returned an HTML error page (HTTP {status}, e.g. Cloudflare) instead of JSON for {path}"
        code, server_msg = _error_body(body)
        server_msg = self._redact(server_msg)
        if status == 200 and code is None:
            if body is None:
                raise _Transient(
                    html_msg if html
                    else f"CoinGecko returned invalid or truncated JSON for {path} (HTTP 200, {len(resp.content)} bytes: {json_error})",
                    status=status,
                )
            return body
        if status == 429:
            after = _retry_after(resp.headers.get("Retry-After"))
            hint = f", Retry-After {after:g} s" if after is not None else ""
            raise _Transient(f"CoinGecko rate limited the requests (HTTP 429{hint}) for {path}", status, after)
        if status >= 500 and status != 501:  # 501 Not Implemented does not heal on retry
            raise _Transient(html_msg if html else f"CoinGecko server error HTTP {status} for {path}", status)
        if code in _CODE_MESSAGES:
            raise CoinGeckoError(f"{_CODE_MESSAGES[code]} (HTTP {status} for {path})", status, code)
        if html:
            raise CoinGeckoError(html_msg, status)
        detail = f": {server_msg}" if server_msg else ""
        if status in (401, 403):
            raise CoinGeckoError(
                f"CoinGecko rejected the API key (HTTP {status}{', error ' + str(code) if code else ''}{detail}): "
                "check COINGECKO_API_KEY / COINGECKO_API_PLAN", status, code,
            )
        if status == 404:
            raise CoinGeckoError(f"CoinGecko HTTP 404 for {path}: unknown coin id or path{detail}", status, code)
        if 300 <= status < 400:
            raise CoinGeckoError(f"CoinGecko redirected {path} (HTTP {status}): check COINGECKO_BASE_URL", status)
        raise CoinGeckoError(f"CoinGecko HTTP {status} for {path}{', error ' + str(code) if code else ''}{detail}", status, code)

    def ping(self) -> bool:
        """True when ``/ping`` answers; the reason for a failure is logged as a warning."""
        try:
            return isinstance(self.get("/ping"), Mapping)
        except CoinGeckoError as exc:
            logger.warning("CoinGecko ping failed: %s", exc)
            return False


class CoinGeckoSource:
    """Observations from the live API, hourly where CoinGecko offers it (windows of 2..90 days)."""

    name = "coingecko"

    def __init__(
        self,
        vs_currency: str = "usd",
        config: CoinGeckoConfig | None = None,
        now: pd.Timestamp | None = None,
        wall_clock: Callable[[], pd.Timestamp] | None = None,
    ) -> None:
        """``now`` is the pipeline's clock (the window's end); ``wall_clock`` the API's idea of the present
        (the real UTC time; tests against a fake server at a fixed time inject that time)."""
        self.wall_clock = wall_clock or (lambda: pd.Timestamp.now("UTC"))
        self.vs_currency = vs_currency.lower()
        self.config = config if config is not None else config_from_env()
        self.client = CoinGeckoClient(self.config)
        self._fixed_now = None if now is None else to_utc(now)

    def now(self) -> pd.Timestamp:
        """The clock: the ``now`` given at construction, else the real UTC time."""
        return self._fixed_now if self._fixed_now is not None else pd.Timestamp.now("UTC")

    def ping(self) -> bool:
        return self.client.ping()

    def plan_requests(self, coin: str, start: pd.Timestamp, end: pd.Timestamp) -> list[tuple[str, dict[str, Any]]]:
        """The (path, params) requests ``fetch`` makes for [start, end]."""
        start, end = to_utc(start), to_utc(end)
        base = f"/coins/{quote(coin, safe='')}"
        # market_chart?days=N covers [real now - N days, real now]: usable only when the window ends at the
        # real clock (a fixed clock in the past, e.g. replay_now, needs /range)
        now = to_utc(self.wall_clock())
        back = now - start
        if abs(end - now) <= pd.Timedelta(hours=1) and back <= pd.Timedelta(days=MAX_HOURLY_DAYS):
            days = max(MIN_HOURLY_DAYS, math.ceil(back / pd.Timedelta(days=1)))
            return [(f"{base}/market_chart", {"vs_currency": self.vs_currency, "days": str(days)})]
        first, last = math.floor(start.timestamp()), math.ceil(end.timestamp())
        reach = math.ceil((now - pd.Timedelta(days=DEMO_REACH_DAYS)).timestamp()) + 60  # a minute inside it
        if self.config.plan != "pro" and first < reach < last - MIN_HOURLY_DAYS * _DAY:
            first = reach  # a window reaching a little past the plan's reach starts inside it (CoinGecko refuses
            # the rest, 10012); one wholly past it is asked as it is and gets that error's message
        out: list[tuple[str, dict[str, Any]]] = []
        lo = first
        while True:
            hi = min(lo + MAX_HOURLY_DAYS * _DAY, last)
            params = {"vs_currency": self.vs_currency, "from": min(lo, hi - MIN_HOURLY_DAYS * _DAY), "to": hi}
            out.append((f"{base}/market_chart/range", params))
            if hi >= last:
                return out
            lo = hi

    def fetch(self, coin: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Observations of ``coin`` in [start, end] (UTC): sorted, unique timestamps."""
        start, end = to_utc(start), to_utc(end)
        if not coin or end < start:
            raise CoinGeckoError(f"bad request: coin={coin!r}, start={start}, end={end} (need a coin id and start <= end)")
        frames = []
        for path, params in self.plan_requests(coin, start, end):
            try:
                payload = self.client.get(path, params)
            except CoinGeckoError as exc:
                if exc.status == 404:
                    raise CoinGeckoError(
                        f"unknown CoinGecko coin id {coin!r} ({exc}); ids look like 'bitcoin', see /coins/list",
                        404, exc.code,
                    ) from exc
                raise
            frames.append(parse_market_chart(payload))
        df = pd.concat([f for f in frames if not f.empty] or [empty_observations()], ignore_index=True)
        df = df.sort_values("timestamp", kind="stable").drop_duplicates("timestamp", keep="last")
        df = clip_window(df, start, end)[OBSERVATION_COLUMNS]
        if df.empty:
            logger.warning("CoinGecko returned no %s/%s data between %s and %s", coin, self.vs_currency, start, end)
            return empty_observations()
        return df

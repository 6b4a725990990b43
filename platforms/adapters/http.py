"""The one HTTP path every adapter takes (STYLE principle 7).

:func:`call_api` performs the request on the process-wide pooled session with the config's
``(connect, read)`` timeouts and maps every transport and HTTP outcome to a ``platforms.errors`` type, so
the mapping lives in exactly one place. Platforms that report errors inside a 200 or a 400 (TikTok's
``code``, the Graph API's ``error.code``) plug in an ``api_error`` hook that sees the decoded response
first; platforms that put their throttle hint somewhere other than ``Retry-After`` plug in a
``retry_hint``.

Also here: the small decoding helpers every adapter needs to turn the platform's numbers (often strings)
into counts without letting a malformed value pass as data.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from platforms.adapters.base import AdapterConfig
from platforms.errors import AuthError, FetchError, NotFound, PlatformError, RateLimited, Timeout

#: Connections kept per host: the Celery pool and the fetcher's threads share one session per process.
POOL_MAXSIZE = 64
USER_AGENT = "affiliate-reconciliation/1.0 (+platform-adapters)"
#: How much of an unexpected body we quote in an error message (never credentials: they travel in headers).
_SNIPPET = 200


@dataclass(frozen=True)
class ApiResponse:
    """A platform's answer as the error hooks see it. ``body`` is None when the body is not JSON."""

    status: int
    headers: Mapping[str, str]  # requests' CaseInsensitiveDict
    body: Any
    text: str

    @property
    def is_json(self) -> bool:
        return self.body is not None

    def json_object(self) -> Mapping[str, Any]:
        """The body if it is a JSON object, else an empty mapping (hooks must not crash on odd bodies)."""
        return self.body if isinstance(self.body, Mapping) else {}


#: Returns the error a platform-level envelope stands for, or None to fall through to the HTTP mapping.
ErrorHook = Callable[[ApiResponse], PlatformError | None]
#: Seconds until the platform accepts calls again, from wherever this platform puts it (None: unknown).
RetryHint = Callable[[ApiResponse], float | None]


# --- The pooled session --------------------------------------------------------------------------------

_session: requests.Session | None = None
_session_pid: int | None = None
_session_lock = threading.Lock()


def _new_session() -> requests.Session:
    session = requests.Session()
    # No retries here: the fetcher owns retries, backoff and the breaker, and a hidden retry would
    # double the calls the breaker and the rate limiter think we made.
    adapter = HTTPAdapter(
        pool_connections=16,
        pool_maxsize=POOL_MAXSIZE,
        max_retries=Retry(total=0, connect=0, read=0, redirect=0, status=0, raise_on_status=False),
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    # One session serves every platform: a cookie one API sets must never ride along to another.
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
    _read_environment_once(session)
    return session


def _read_environment_once(session: requests.Session) -> None:
    """requests reads the proxy and CA-bundle variables of the environment on every request: about 1 ms of
    CPU per call, a sixth of a reconciliation. The CA bundle is read here once instead; only when proxies
    are configured (their ``no_proxy`` exceptions are decided per URL) does requests keep reading it. A
    ``.netrc`` is never consulted: every adapter sends its own credentials."""
    from urllib.request import getproxies

    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.trust_env = bool(getproxies())


def get_session() -> requests.Session:
    """The process's pooled session, created lazily.

    Keyed by pid because Celery's prefork pool forks after import: a child must never reuse the parent's
    sockets, or two processes would interleave bytes on one connection.
    """
    global _session, _session_pid
    pid = os.getpid()
    if _session is None or _session_pid != pid:
        with _session_lock:
            if _session is None or _session_pid != pid:
                _session, _session_pid = _new_session(), pid
    return _session


# --- The one request function --------------------------------------------------------------------------


def call_api(
    config: AdapterConfig,
    method: str,
    url: str,
    *,
    platform: str,
    params: Mapping[str, str] | None = None,
    json_body: Any = None,
    headers: Mapping[str, str] | None = None,
    auth: requests.auth.AuthBase | None = None,
    api_error: ErrorHook | None = None,
    retry_hint: RetryHint | None = None,
) -> Any:
    """Perform one API call and return its decoded JSON body, or raise a ``platforms.errors`` error.

    ``auth`` signs the prepared request (X's OAuth 1.0a); plain credentials travel in ``headers``.
    """
    response = _send(
        config, method, url, platform=platform, params=params, json_body=json_body, headers=headers, auth=auth
    )
    api_response = _decode(response)
    error = map_response(api_response, platform=platform, api_error=api_error, retry_hint=retry_hint)
    if error is not None:
        raise error
    return api_response.body


def download(config: AdapterConfig, url: str, *, platform: str) -> bytes:
    """GET a result file (a report job's output) as bytes, with the same timeouts and error mapping.

    No credentials travel with it: report files are pre-signed CDN links, not API calls.
    """
    response = _send(config, "GET", url, platform=platform)
    if 200 <= response.status_code < 300:
        return response.content
    error = map_response(_decode(response), platform=platform)
    raise error or FetchError(f"{platform}: HTTP {response.status_code} for a result file", status=response.status_code)


def _send(
    config: AdapterConfig,
    method: str,
    url: str,
    *,
    platform: str,
    params: Mapping[str, str] | None = None,
    json_body: Any = None,
    headers: Mapping[str, str] | None = None,
    auth: requests.auth.AuthBase | None = None,
) -> requests.Response:
    try:
        return get_session().request(
            method,
            url,
            params=params,
            json=json_body,
            headers=dict(headers or {}),
            auth=auth,
            timeout=(config.connect_timeout, config.read_timeout),
            # A redirect would carry custom auth headers (Access-Token, developer-token) to another host,
            # and no reporting API redirects a data call: treat one as an error instead.
            allow_redirects=False,
        )
    except requests.Timeout as exc:
        # Before ConnectionError: ConnectTimeout is both.
        raise Timeout(f"{platform}: {type(exc).__name__}") from exc
    except requests.ConnectionError as exc:
        if _is_read_timeout(exc):
            raise Timeout(f"{platform}: read timed out while receiving the body") from exc
        raise FetchError(f"{platform}: connection failed ({type(exc).__name__})") from exc
    except requests.RequestException as exc:
        raise FetchError(f"{platform}: request failed ({type(exc).__name__})") from exc


def map_response(
    response: ApiResponse,
    *,
    platform: str,
    api_error: ErrorHook | None = None,
    retry_hint: RetryHint | None = None,
) -> PlatformError | None:
    """The error ``response`` stands for, or None when it is a usable JSON success."""
    if api_error is not None:
        mapped = api_error(response)
        if mapped is not None:
            return mapped
    status = response.status
    if 200 <= status < 300:
        if not response.is_json:
            return FetchError(f"{platform}: invalid JSON in HTTP {status} body: {response.text!r}", status=status)
        return None
    detail = f"{platform}: HTTP {status}: {response.text!r}"
    if status == 404:
        return NotFound(detail, status=status)
    if status in (401, 403):
        return AuthError(detail, status=status)
    if status == 429:
        return RateLimited(detail, retry_after=retry_after_seconds(response, retry_hint), status=status)
    return FetchError(detail, status=status)


def _decode(response: requests.Response) -> ApiResponse:
    text = response.content.decode("utf-8", errors="replace")
    try:
        body = json.loads(text) if text.strip() else None
    except ValueError:
        body = None
    return ApiResponse(status=response.status_code, headers=response.headers, body=body, text=text[:_SNIPPET])


def _is_read_timeout(exc: requests.ConnectionError) -> bool:
    # requests re-raises urllib3's ReadTimeoutError as ConnectionError when the stall happens while the
    # body is being read (after the headers arrived); it is still a read timeout.
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ReadTimeoutError):
            return True
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
        pending.extend([current.__cause__, current.__context__])
    return False


# --- Retry-After ---------------------------------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value: delay-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT by definition
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def retry_after_seconds(response: ApiResponse, hint: RetryHint | None = None) -> float | None:
    """The standard header wins; otherwise the platform's own hint (reset headers, body fields)."""
    seconds = parse_retry_after(response.headers.get("Retry-After"))
    if seconds is None and hint is not None:
        seconds = hint(response)
    return seconds


def seconds_until_epoch(value: str | None, *, now: float | None = None) -> float | None:
    """For reset headers that carry a Unix timestamp (X's ``x-rate-limit-reset``)."""
    try:
        reset = float(value) if value is not None else None
    except ValueError:
        return None
    if reset is None or not math.isfinite(reset):
        return None
    return max(0.0, reset - (time.time() if now is None else now))


# --- Request and response helpers ----------------------------------------------------------------------


def require_credential(config: AdapterConfig, key: str, platform: str) -> str:
    """A credential the adapter cannot work without; missing is an auth problem, not a platform failure
    to retry, so it surfaces the same way a refused token does."""
    value = config.credentials.get(key, "")
    if not value:
        raise AuthError(f"{platform}: credentials[{key!r}] is not configured")
    return value


def endpoint(config: AdapterConfig, *segments: str) -> str:
    """``base_url`` joined with path segments, each percent-encoded so an id can never add a path."""
    return "/".join([config.base_url.rstrip("/"), *(quote(s, safe="") for s in segments)])


@contextmanager
def unexpected_shape(platform: str) -> Iterator[None]:
    """Turn a body that is JSON but not the documented shape into FetchError, not a crash."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise FetchError(f"{platform}: unexpected response shape ({type(exc).__name__}: {exc})") from exc


def to_count(value: Any, field: str) -> int | None:
    """A platform number (int, float or numeric string) as a count; None when the platform gave none."""
    if value is None:
        return None
    if isinstance(value, bool):  # bool is an int subclass; True is not "1 click"
        raise FetchError(f"{field}: expected a number, got {value!r}")
    if isinstance(value, int):
        count = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise FetchError(f"{field}: expected a number, got {value!r}")
        # Fractional conversions exist (data-driven attribution); a count is the nearest whole one.
        count = round(value)
    elif isinstance(value, str):
        text = value.strip()
        if text in ("", "-"):  # some report APIs print "-" for "not available"
            return None
        try:
            count = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise FetchError(f"{field}: expected a number, got {value!r}") from None
            return to_count(number, field)
    else:
        raise FetchError(f"{field}: expected a number, got {type(value).__name__}")
    if count < 0:
        raise FetchError(f"{field}: negative count {value!r}")
    return count


def sum_counts(values: Iterable[int | None]) -> int | None:
    """Sum over report rows; None only when no row reported the metric at all."""
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def utc_hour_ceiling(now: datetime | None = None) -> datetime:
    """The next whole UTC hour (or ``now`` if already whole): report APIs want hour-aligned bounds."""
    current = (now or datetime.now(UTC)).astimezone(UTC)
    floor = current.replace(minute=0, second=0, microsecond=0)
    return floor if floor == current else floor + timedelta(hours=1)


def isoformat_z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

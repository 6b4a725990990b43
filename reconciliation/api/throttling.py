"""Per-API-key rate limits in Redis, rates from ``settings.RATE_LIMIT_SETTINGS`` (submission, query, staff_run).

A DRF throttle (the framework's hook, its ``Retry-After`` handling), but not ``SimpleRateThrottle``: that
one keeps each caller's history as a list in the cache and writes it back after reading it, so
concurrent requests of one key all read the same history and all pass (the limit leaks under exactly the
load it exists for), and every request re-reads a list as long as the limit.

Here each (scope, credential) is a Redis sorted set of request timestamps — a sliding log, the same
semantics as DRF's — checked and updated by one Lua script, atomically: drop entries older than the
period, refuse if the log is full (a refused request is not counted, and ``Retry-After`` is when the
oldest counted request leaves the window), else add this request.

If Redis is unreachable the request is let through and a warning logged: losing rate limiting for a
moment is better than refusing every affiliate's submissions.

:class:`FailedAuthThrottle` counts failed API-key authentications per client address the same way
(``AUTH_FAILURE_RATE``), so keys cannot be guessed at request speed. For an authenticated request to an
API view the check "has this address failed too often?" runs in the same script as the rate limit: one
Redis round trip per request for both (see :meth:`KeyedRateThrottle.allow_request`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from redis.exceptions import RedisError
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from reconcile_project.redis import get_redis

logger = logging.getLogger("reconciliation.api.throttling")

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
KEY_PREFIX = "reconcile:throttle"


@functools.lru_cache(maxsize=64)  # called on every throttled request with a handful of distinct rates
def parse_rate(rate: str, setting: str = "RATE_LIMIT_SETTINGS") -> tuple[int, int]:
    """``"100/hour"`` → (100, 3600); the period is read from its first letter, as DRF does."""
    try:
        num, period = rate.split("/")
        count, seconds = int(num), _PERIODS[period.strip()[0].lower()]
    except (ValueError, KeyError, IndexError):
        raise ImproperlyConfigured(f"{setting}: bad rate {rate!r} (expected like '100/hour')") from None
    if count < 1:
        raise ImproperlyConfigured(f"{setting}: bad rate {rate!r} (at least 1 request)")
    return count, seconds


def _hashed(owner: str) -> str:
    return hashlib.sha256(owner.encode()).hexdigest()[:24]


def _retry_after(oldest: list[tuple[str, float]], period: int, now: float) -> float:
    """Seconds until the oldest counted entry leaves the window."""
    oldest_at = oldest[0][1] if oldest else now
    return max(1.0, math.ceil(oldest_at + period - now))


#: One round trip for both limits of a request. KEYS: the client address's failed-authentication log, the
#: (scope, credential) request log. ARGV: now, check failures (1/0), failure limit, failure period, request
#: limit (0: none), request period, this request's member. Returns {0} (allowed), {1, oldest failure score}
#: (the address is blocked) or {2, oldest request score} (over the rate; this request not counted).
_CHECK_SCRIPT = """
local now = tonumber(ARGV[1])
if ARGV[2] == '1' then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, now - tonumber(ARGV[4]))
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {1, oldest[2] or ARGV[1]}
  end
end
local limit = tonumber(ARGV[5])
if limit > 0 then
  local period = tonumber(ARGV[6])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], 0, now - period)
  if redis.call('ZCARD', KEYS[2]) >= limit then
    local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    return {2, oldest[2] or ARGV[1]}
  end
  redis.call('ZADD', KEYS[2], now, ARGV[7])
  redis.call('EXPIRE', KEYS[2], period + 1)
end
return {0}
"""

#: Set on the request by the authentication when it leaves the failed-authentication check of the
#: caller's address to the view's throttle (one round trip instead of two); see APIKeyAuthentication.
AUTH_FAILURES_PENDING = "_reconcile_auth_failures_pending"


def _run_check(keys: list[str], args: list[Any]) -> list[Any]:
    client = get_redis()
    script = _scripts.get(id(client))
    if script is None:
        script = _scripts[id(client)] = client.register_script(_CHECK_SCRIPT)
    return list(script(keys=keys, args=args))


_scripts: dict[int, Any] = {}


def auth_failures_blocked(wait: float) -> exceptions.Throttled:
    return exceptions.Throttled(
        wait, detail="Too many failed authentications from this address.", code="too_many_auth_failures"
    )


class KeyedRateThrottle(BaseThrottle):
    """Sliding-log limit for one scope (a field of RATE_LIMIT_SETTINGS), per API key or staff user.

    ``scope=None``: no rate limit, only the failed-authentication check the authentication left to the
    throttle (``AUTH_FAILURES_PENDING``), so every API view runs that check. In one script with the rate
    limit; an address past ``AUTH_FAILURE_RATE`` gets 429 ``too_many_auth_failures`` whatever its key.
    """

    def __init__(self, scope: str | None):
        self.scope = scope
        self._wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        # Imported here: the authentication module uses the failed-authentication throttle below.
        from reconciliation.api.authentication import credential_of

        django_request = getattr(request, "_request", request)
        check_failures = bool(getattr(django_request, AUTH_FAILURES_PENDING, False))
        if check_failures:
            setattr(django_request, AUTH_FAILURES_PENDING, False)
        owner = credential_of(request) if self.scope is not None else None
        if owner is None and not check_failures:
            return True  # unauthenticated requests are refused before the throttle runs
        now = time.time()
        keys = [FailedAuthThrottle.key_prefix(), ""]
        args: list[Any] = [repr(now), "0", 0, 0, 0, 0, ""]
        if check_failures:
            fail_limit, fail_period = parse_rate(settings.AUTH_FAILURE_RATE, "AUTH_FAILURE_RATE")
            keys[0] = FailedAuthThrottle().key(request)
            args[1:4] = ["1", fail_limit, fail_period]
        period = 0
        if owner is not None:
            assert self.scope is not None
            limit, period = parse_rate(getattr(settings.RATE_LIMIT_SETTINGS, self.scope))
            key = f"{KEY_PREFIX}:{self.scope}:{_hashed(f'{owner[0]}:{owner[1]}')}"
            affiliate = getattr(request.user, "affiliate", None)
            if self.scope == "submission" and affiliate is not None and affiliate.submission_rate:
                # A throttled high-risk affiliate (reconciliation.services.affiliates.affiliate_throttle): its
                # own lower rate, counted across all its keys so that minting another key does not lift it.
                limit, period = parse_rate(affiliate.submission_rate, "Affiliate.submission_rate")
                key = f"{KEY_PREFIX}:{self.scope}:affiliate:{affiliate.pk}"
            keys[1] = key
            args[4:7] = [limit, period, f"{now:.6f}:{uuid.uuid4().hex[:8]}"]
        else:
            keys[1] = keys[0]
        try:
            result = _run_check(keys, args)
        except RedisError as exc:
            logger.warning(
                "Rate limiter unavailable; request allowed", extra={"scope": self.scope, "error": type(exc).__name__}
            )
            return True
        verdict = int(result[0])
        if verdict == 0:
            return True
        oldest = [("", float(result[1]))]
        if verdict == 1:
            _, fail_period = parse_rate(settings.AUTH_FAILURE_RATE, "AUTH_FAILURE_RATE")
            raise auth_failures_blocked(_retry_after(oldest, fail_period, now))
        self._wait = _retry_after(oldest, period, now)
        return False

    def wait(self) -> float | None:
        return self._wait


class FailedAuthThrottle(BaseThrottle):
    """Failed API-key authentications per client address (``settings.AUTH_FAILURE_RATE``), to slow key guessing.

    Not a view throttle: the authentication class asks :meth:`blocked_for` (or, for a good key on an API
    view, leaves the question to :class:`KeyedRateThrottle`, which asks it in its own round trip) and
    calls :meth:`record_failure` when the key is unknown, so once an address has failed N times within
    the period every key it sends (a right one too, or it would learn which guess was right) answers 429
    with ``Retry-After`` until its oldest failure leaves the window. The address is DRF's ``get_ident``:
    REMOTE_ADDR, or the ``NUM_PROXIES``-th X-Forwarded-For entry from the right behind proxies.

    The check and the count are two round trips, so a burst of concurrent guesses may overshoot N by about
    the number of requests in flight; the limit still holds each address to N per period over time.
    """

    scope = "auth_failure"

    @classmethod
    def key_prefix(cls) -> str:
        return f"{KEY_PREFIX}:{cls.scope}:"

    def key(self, request: Request) -> str:
        # No address at all (a WSGI server that sets no REMOTE_ADDR): such callers share one allowance.
        return self.key_prefix() + _hashed(self.get_ident(request) or "unknown")

    def blocked_for(self, request: Request, *, now: float | None = None) -> float | None:
        """Seconds this address must wait before its next key attempt, or None if it may try now."""
        limit, period = parse_rate(settings.AUTH_FAILURE_RATE, "AUTH_FAILURE_RATE")
        now = time.time() if now is None else now
        key = self.key(request)
        try:
            pipe = get_redis().pipeline(transaction=True)
            pipe.zremrangebyscore(key, 0, now - period)
            pipe.zcard(key)
            pipe.zrange(key, 0, 0, withscores=True)
            _, count, oldest = pipe.execute()
        except RedisError as exc:
            logger.warning(
                "Failed-authentication throttle unavailable; attempt allowed", extra={"error": type(exc).__name__}
            )
            return None
        return _retry_after(oldest, period, now) if count >= limit else None

    def record_failure(self, request: Request, *, now: float | None = None) -> None:
        _, period = parse_rate(settings.AUTH_FAILURE_RATE, "AUTH_FAILURE_RATE")
        now = time.time() if now is None else now
        key = self.key(request)
        try:
            pipe = get_redis().pipeline(transaction=True)
            pipe.zadd(key, {f"{now:.6f}:{uuid.uuid4().hex[:8]}": now})
            pipe.expire(key, period + 1)
            pipe.execute()
        except RedisError as exc:
            logger.warning(
                "Failed-authentication throttle unavailable; failure not counted", extra={"error": type(exc).__name__}
            )

    def allow_request(self, request: Request, view: Any) -> bool:
        return self.blocked_for(request) is None

"""A token bucket per platform in Redis, so that all workers together stay under a platform's quota.

The bucket (``<prefix><platform>``: ``tokens``, ``ts``) is refilled and drawn from inside one Lua
script on Redis server time, so concurrent workers on different hosts see one bucket and one clock.
Over any interval of length T the bucket grants at most ``burst + rate × T`` tokens.

A token is taken only when one is available; a caller told to wait has reserved nothing, so a caller
that gives up costs the others nothing. If Redis is unreachable every call is allowed: the quota is a
courtesy to the platform (which answers 429 anyway, and the fetcher honours that), not a safety limit.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis
from redis.commands.core import Script

from platforms.breaker import RedisGuard, RedisSource

logger = logging.getLogger("platforms.ratelimit")

# KEYS: bucket. ARGV: rate (tokens/s), burst (capacity), cost (tokens this call takes, default 1). Returns
# the wait in seconds as a string ('0' when the tokens were taken): a float returned as a Lua number would be
# truncated to an integer.
_ACQUIRE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3] or '1')
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local h = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(h[1])
local ts = tonumber(h[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
else
  wait = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts', string.format('%.6f', now))
-- An idle bucket is full again after burst/rate seconds, which is what a missing key means too.
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return string.format('%.6f', wait)
"""


class RateLimiter:
    """Per-platform token buckets shared through Redis; ``redis_source`` is a client or a factory."""

    def __init__(
        self,
        redis_source: RedisSource,
        key_prefix: str = "rl:",
        *,
        warn_interval_seconds: float = 5.0,
        redis_retry_seconds: float = 1.0,
    ):
        self._redis = RedisGuard(
            redis_source,
            logger,
            "rate_limiter_redis_unavailable: allowing calls without a quota",
            retry_seconds=redis_retry_seconds,
            warn_interval_seconds=warn_interval_seconds,
        )
        self.key_prefix = key_prefix
        self._script: Script | None = None

    def acquire(self, platform: str, rate_per_sec: float, burst: float, cost: int = 1) -> float:
        """Take ``cost`` tokens: 0.0 if taken, else the seconds until they will be available (nothing taken).

        ``cost`` is more than one for a batch request a platform bills per item (Meta's ``ids=``); the bucket
        holds at least ``cost`` tokens for such a request (``burst`` is raised to it), or it could never pass.
        """
        # NaN passes every comparison-based bound, and inf would reach the Lua script as a string it
        # cannot parse: refuse both here, with the values, so the recorded error says what was wrong.
        if not (math.isfinite(rate_per_sec) and rate_per_sec > 0) or not (math.isfinite(burst) and burst >= 1):
            raise ValueError(
                f"rate_per_sec must be a finite number > 0 and burst >= 1, got {rate_per_sec!r} and {burst!r}"
            )
        try:
            client = self._redis.client()
            if self._script is None:
                self._script = client.register_script(_ACQUIRE)
            args = [rate_per_sec, max(burst, cost), cost] if cost != 1 else [rate_per_sec, burst]
            wait = self._script(keys=[f"{self.key_prefix}{platform}"], args=args, client=client)
        except redis.RedisError as exc:
            self._redis.failed(platform, exc)
            return 0.0
        return float(wait)

    def wait(
        self,
        platform: str,
        rate: float,
        burst: float,
        deadline: float,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> bool:
        """Block until a token is taken (True) or until it is clear none can be had by ``deadline``
        (a ``clock()`` value), returning False without sleeping past it."""
        return wait_for_token(self, platform, rate, burst, deadline, sleep=sleep, clock=clock).taken


class TokenSource(Protocol):
    def acquire(self, platform: str, rate_per_sec: float, burst: float) -> float: ...


@dataclass(frozen=True)
class TokenWait:
    taken: bool
    #: Seconds slept before the token was taken (0: taken at once).
    waited: float
    #: When not taken: the last wait the bucket asked for, a retry-after hint for the caller.
    retry_after: float | None = None


def wait_for_token(
    limiter: TokenSource,
    platform: str,
    rate: float,
    burst: float,
    deadline: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
    cost: int = 1,
) -> TokenWait:
    """:meth:`RateLimiter.wait` with the details: whether and how long it waited, and why it gave up."""
    jitter = (rng or random).random
    waited = 0.0
    while True:
        # A cost of one keeps the plain three-argument call every token source understands.
        needed = (
            limiter.acquire(platform, rate, burst) if cost == 1 else _acquire_many(limiter, platform, rate, burst, cost)
        )
        if needed <= 0:
            return TokenWait(taken=True, waited=waited)
        if clock() + needed > deadline:
            return TokenWait(taken=False, waited=waited, retry_after=needed)
        # Every worker that was refused at the same instant is told the same wait; a little jitter
        # keeps them from all returning in the same millisecond to fight over one token.
        pause = min(needed * (1 + 0.2 * jitter()), max(0.0, deadline - clock()))
        sleep(pause)
        waited += pause


def _acquire_many(limiter: TokenSource, platform: str, rate: float, burst: float, cost: int) -> float:
    acquire: Callable[..., float] = limiter.acquire
    return acquire(platform, rate, burst, cost=cost)


@functools.cache
def get_limiter() -> RateLimiter:
    """The process's rate limiter on ``settings.REDIS_URL``."""
    from reconcile_project.redis import get_redis

    return RateLimiter(get_redis)

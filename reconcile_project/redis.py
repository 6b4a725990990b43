"""One Redis connection pool per process for the application's own keys (breaker, rate limiter,
worker exceptions). The Celery broker uses a different database (see settings.CELERY_BROKER_URL)."""

from __future__ import annotations

import functools

import redis


@functools.cache
def _client(url: str) -> redis.Redis:
    # Short timeouts: Redis is on the hot path of every fetch, and a hung Redis must degrade
    # (the breaker lets calls through) rather than stall workers.
    return redis.Redis.from_url(
        url, socket_connect_timeout=0.5, socket_timeout=0.5, health_check_interval=30, decode_responses=True
    )


def get_redis(url: str | None = None) -> redis.Redis:
    if url is None:
        from django.conf import settings

        url = settings.REDIS_URL
    return _client(url)

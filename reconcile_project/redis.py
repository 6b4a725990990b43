"""One Redis connection pool per process for the application's own keys (breaker, rate limiter,
worker exceptions). The Celery broker uses a different database (see settings.CELERY_BROKER_URL)."""

from __future__ import annotations

import threading

import redis

_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


def _client(url: str) -> redis.Redis:
    client = _clients.get(url)
    if client is not None:
        return client
    # Built under a lock, not with functools.cache: two threads of a fresh gunicorn worker would each build
    # a client, the cache would keep one, and the other, garbage-collected, closes its pool (Redis.__del__
    # with auto_close_connection_pool) under the thread still using it: a handshake cut in half, a 500.
    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            # Short timeouts: Redis is on the hot path of every fetch, and a hung Redis must degrade
            # (the breaker lets calls through) rather than stall workers.
            client = redis.Redis.from_url(
                url, socket_connect_timeout=0.5, socket_timeout=0.5, health_check_interval=30, decode_responses=True
            )
            _clients[url] = client
        return client


def get_redis(url: str | None = None) -> redis.Redis:
    if url is None:
        from django.conf import settings

        url = settings.REDIS_URL
    return _client(url)

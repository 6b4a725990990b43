"""Suite-wide fixtures."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest


def reset_celery_pools() -> None:
    """Forget the publishing side's cached connection and producer pools.

    Celery builds them lazily from ``app.conf.broker_url``, which reads Django settings live: a pool first
    built inside ``override_settings(CELERY_BROKER_URL=<a private Redis>)`` would keep publishing there
    for the rest of the session. Only the app's references are dropped: kombu keeps its pools in a
    registry keyed by URL, and a pool closed here would be handed back, closed, to its next user.
    """
    from reconcile_project.celery import app

    app._pool = None
    with contextlib.suppress(AttributeError, KeyError):
        app.__dict__["amqp"]._producer_pool = None


@pytest.fixture(autouse=True)
def celery_publishes_to_the_test_broker() -> Iterator[None]:
    yield
    reset_celery_pools()


@pytest.fixture(autouse=True)
def no_failed_authentications_carried_over() -> Iterator[None]:
    """Every test client calls from 127.0.0.1: without this, the bad keys that tests send on purpose would
    add up across tests to the per-address limit (AUTH_FAILURE_RATE) and turn later 401s into 429s."""
    from redis.exceptions import RedisError

    from reconcile_project.redis import get_redis
    from reconciliation.api.throttling import FailedAuthThrottle

    with contextlib.suppress(RedisError):
        client = get_redis()
        keys = list(client.scan_iter(match=f"{FailedAuthThrottle.key_prefix()}*", count=500))
        if keys:
            client.delete(*keys)
    yield

"""``GET /health`` (liveness, no I/O) and ``GET /health/detailed`` (every dependency).

Plain views rather than django-health-check: its JSON shape (``{"Database": "working"}``) is not the
runbook's, and the two checks that matter most here (Celery workers, breakers) would be custom anyway.

``/health/detailed`` status:

* ``unhealthy`` (HTTP 503) when the database or the broker is down: nothing can be submitted or
  reconciled. ``failing`` names the checks.
* ``degraded`` (HTTP 200) when the app Redis is down, no worker answers the ping, or a platform's breaker
  is OPEN or HALF_OPEN: work is accepted but delayed or MISSING. ``degraded`` names the checks.
* ``healthy`` otherwise.

``/health/detailed`` is for monitoring and staff only (``reconcile_project/ops_access.py``): the metrics
token, a staff key or session. A failed check says which exception class failed, never its text (which can
name hosts, users or paths); the text goes to the log line ``Health check failed`` with the request id the
body carries. ``platforms`` says whether the adapters call the real APIs (``live``) or the sandbox.

The worker ping waits up to ``WORKER_PING_TIMEOUT`` for replies, so its result is shared through the app
Redis for ``HEALTH_WORKER_PING_CACHE_SECONDS``: however many monitors and operators ask at once, one
request pings and the others read its answer (see :func:`check_workers`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from redis.exceptions import RedisError
from rest_framework.request import Request

from reconcile_project import platform_settings
from reconcile_project.metrics import breaker_states, queue_depths
from reconcile_project.observability import get_request_id
from reconcile_project.ops_access import monitoring_or_staff

logger = logging.getLogger("reconcile_project.health")

HEALTHY = "healthy"
#: Seconds to wait for workers to answer ``inspect().ping()``.
WORKER_PING_TIMEOUT = 1.0
#: Checks whose failure makes the service unusable (503).
CRITICAL_CHECKS = ("database", "broker")
#: App-Redis keys of the shared worker ping: the last answer, and the lock of the request refreshing it.
WORKER_PING_KEY = "ops:health:workers"
WORKER_PING_LOCK = "ops:health:workers:refresh"
#: A stale answer is kept this many times the cache period, to answer while another request refreshes it.
STALE_FACTOR = 12


def _base(status: str) -> dict[str, Any]:
    return {
        "status": status,
        "service": settings.SERVICE_NAME,
        "version": settings.VERSION,
        "timestamp": time.time(),
    }


def _error(exc: BaseException, check: str) -> str:
    """The check's value for a failure: the exception class only; its text goes to the log."""
    logger.warning("Health check failed", extra={"check": check, "error": f"{type(exc).__name__}: {exc}"[:500]})
    return f"unhealthy: {type(exc).__name__}"


@never_cache
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers: answers as long as the process serves requests (no I/O)."""
    return JsonResponse(_base(HEALTHY))


def check_database() -> str:
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return _error(exc, "database")
    return HEALTHY


def check_redis() -> str:
    from reconcile_project.redis import get_redis

    try:
        get_redis().ping()
    except Exception as exc:
        return _error(exc, "redis")
    return HEALTHY


def check_broker() -> str:
    from reconcile_project.redis import get_redis

    try:
        get_redis(settings.CELERY_BROKER_URL).ping()
    except Exception as exc:
        return _error(exc, "broker")
    return HEALTHY


def ping_workers(timeout: float = WORKER_PING_TIMEOUT) -> dict[str, Any]:
    """Ask every worker for a pong (takes ``timeout``: Celery cannot know how many will answer)."""
    from reconcile_project.celery import app

    try:
        # A connection to the broker the settings name now (not the one the app was built with), so the
        # ping always asks the broker that check_broker() just found up.
        with app.connection_for_write(settings.CELERY_BROKER_URL) as connection:
            replies = app.control.inspect(timeout=timeout, connection=connection).ping() or {}
    except Exception as exc:
        return {"status": _error(exc, "workers"), "count": 0, "names": []}
    names = sorted(replies)
    return {"status": HEALTHY if names else "no workers", "count": len(names), "names": names}


def check_workers(
    *, ping: Callable[[], dict[str, Any]] | None = None, clock: Callable[[], float] = time.time
) -> dict[str, Any]:
    """The workers' ping, shared by every caller for ``HEALTH_WORKER_PING_CACHE_SECONDS``.

    Fresh answer in Redis: returned as is. Otherwise one request takes the refresh lock (SET NX, expiring
    after the ping's timeout, so a killed process does not hold it) and pings; the others answer with the
    previous, stale result if there is one, or wait for the refresh (the first calls after a start). The
    answer carries ``checked_at``. If the app Redis is down the ping runs uncached (the page is already
    ``degraded`` for Redis then).
    """
    ping = ping or ping_workers
    ttl = float(settings.HEALTH_WORKER_PING_CACHE_SECONDS)
    if ttl <= 0:
        return {**ping(), "checked_at": clock()}
    from reconcile_project.redis import get_redis

    client = get_redis()
    try:
        cached = _cached_ping(client.get(WORKER_PING_KEY))
        if cached is not None and clock() - cached["checked_at"] < ttl:
            return cached
        lock_seconds = WORKER_PING_TIMEOUT + 2
        # redis-py's lock: its release checks the owner and deletes in one script, so an expired lock
        # that another request has taken since is never deleted from under it.
        lock = client.lock(WORKER_PING_LOCK, timeout=lock_seconds, blocking=False, raise_on_release_error=False)
        if lock.acquire():
            try:
                # Read again under the lock: another request may have pinged and let go of the lock
                # between our first read and our taking it.
                cached = _cached_ping(client.get(WORKER_PING_KEY))
                if cached is not None and clock() - cached["checked_at"] < ttl:
                    return cached
                result = {**ping(), "checked_at": clock()}
                client.set(WORKER_PING_KEY, json.dumps(result), px=int(ttl * STALE_FACTOR * 1000))
            finally:
                lock.release()
            return result
        if cached is not None:
            return cached  # another request is refreshing it: the previous answer, without waiting
        return _wait_for_ping(client, deadline=time.monotonic() + lock_seconds)
    except RedisError:
        return {**ping(), "checked_at": clock()}


def _cached_ping(raw: Any) -> dict[str, Any] | None:
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    return value if isinstance(value, dict) and isinstance(value.get("checked_at"), (int, float)) else None


def _wait_for_ping(client: Any, *, deadline: float) -> dict[str, Any]:
    """No answer yet and another request is pinging: wait for its answer (bounded by its lock)."""
    while time.monotonic() < deadline:
        cached = _cached_ping(client.get(WORKER_PING_KEY))
        if cached is not None:
            return cached
        time.sleep(0.05)
    return {"status": "unknown: worker ping still running", "count": 0, "names": []}


def check_queues() -> dict[str, Any]:
    try:
        return {"status": HEALTHY, "depth": queue_depths()}
    except Exception as exc:
        return {"status": _error(exc, "queues"), "depth": {}}


def check_breakers() -> dict[str, Any]:
    try:
        states = breaker_states()
    except Exception as exc:
        return {"status": _error(exc, "breakers"), "states": {}}
    if states is None:
        return {"status": "not configured", "states": {}}
    tripped = sorted(p for p, s in states.items() if s in ("OPEN", "HALF_OPEN"))
    return {"status": f"degraded: {', '.join(tripped)}" if tripped else HEALTHY, "states": states}


def platforms_block() -> dict[str, Any]:
    return platform_settings.platforms_mode(
        settings.PLATFORM_API, sandbox_url=settings.SANDBOX_URL, use_sandbox=settings.PLATFORMS_USE_SANDBOX
    )


@monitoring_or_staff
def health_detailed(request: Request) -> JsonResponse:
    checks: dict[str, Any] = {
        "database": check_database(),
        "redis": check_redis(),
        "broker": check_broker(),
    }
    broker_up = checks["broker"] == HEALTHY
    skipped = {"status": "skipped: broker down"}
    checks["workers"] = check_workers() if broker_up else {**skipped, "count": 0, "names": []}
    checks["queues"] = check_queues() if broker_up else {**skipped, "depth": {}}
    checks["breakers"] = (
        check_breakers() if checks["redis"] == HEALTHY else {"status": "skipped: redis down", "states": {}}
    )

    failing = [name for name in CRITICAL_CHECKS if checks[name] != HEALTHY]
    degraded = []
    if checks["redis"] != HEALTHY:
        degraded.append("redis")
    if broker_up and checks["workers"]["status"] != HEALTHY:
        degraded.append("workers")
    if str(checks["breakers"]["status"]).startswith("degraded"):
        degraded.append("breakers")

    status = "unhealthy" if failing else "degraded" if degraded else HEALTHY
    body = {
        **_base(status),
        "checks": checks,
        "failing": failing,
        "degraded": degraded,
        "platforms": platforms_block(),
        "request_id": get_request_id(),
    }
    return JsonResponse(body, status=503 if failing else 200)

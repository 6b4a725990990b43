"""``GET /health`` (liveness, no I/O) and ``GET /health/detailed`` (every dependency).

Plain views rather than django-health-check: its JSON shape (``{"Database": "working"}``) is not the
runbook's, and the two checks that matter most here (Celery workers, breakers) would be custom anyway.

``/health/detailed`` status:

* ``unhealthy`` (HTTP 503) when the database or the broker is down: nothing can be submitted or
  reconciled. ``failing`` names the checks.
* ``degraded`` (HTTP 200) when the app Redis is down, no worker answers the ping, or a platform's breaker
  is OPEN or HALF_OPEN: work is accepted but delayed or MISSING. ``degraded`` names the checks.
* ``healthy`` otherwise.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from reconcile_project.metrics import breaker_states, queue_depths

HEALTHY = "healthy"
#: Seconds to wait for workers to answer ``inspect().ping()``.
WORKER_PING_TIMEOUT = 1.0
#: Checks whose failure makes the service unusable (503).
CRITICAL_CHECKS = ("database", "broker")


def _base(status: str) -> dict[str, Any]:
    return {
        "status": status,
        "service": settings.SERVICE_NAME,
        "version": settings.VERSION,
        "timestamp": time.time(),
    }


def _error(exc: BaseException) -> str:
    return f"unhealthy: {type(exc).__name__}: {exc}"[:300]


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
        return _error(exc)
    return HEALTHY


def check_redis() -> str:
    from reconcile_project.redis import get_redis

    try:
        get_redis().ping()
    except Exception as exc:
        return _error(exc)
    return HEALTHY


def check_broker() -> str:
    from reconcile_project.redis import get_redis

    try:
        get_redis(settings.CELERY_BROKER_URL).ping()
    except Exception as exc:
        return _error(exc)
    return HEALTHY


def check_workers(timeout: float = WORKER_PING_TIMEOUT) -> dict[str, Any]:
    from reconcile_project.celery import app

    try:
        # A connection to the broker the settings name now (not the one the app was built with), so the
        # ping always asks the broker that check_broker() just found up.
        with app.connection_for_write(settings.CELERY_BROKER_URL) as connection:
            replies = app.control.inspect(timeout=timeout, connection=connection).ping() or {}
    except Exception as exc:
        return {"status": _error(exc), "count": 0, "names": []}
    names = sorted(replies)
    return {"status": HEALTHY if names else "no workers", "count": len(names), "names": names}


def check_queues() -> dict[str, Any]:
    try:
        return {"status": HEALTHY, "depth": queue_depths()}
    except Exception as exc:
        return {"status": _error(exc), "depth": {}}


def check_breakers() -> dict[str, Any]:
    try:
        states = breaker_states()
    except Exception as exc:
        return {"status": _error(exc), "states": {}}
    if states is None:
        return {"status": "not configured", "states": {}}
    tripped = sorted(p for p, s in states.items() if s in ("OPEN", "HALF_OPEN"))
    return {"status": f"degraded: {', '.join(tripped)}" if tripped else HEALTHY, "states": states}


@never_cache
@require_GET
def health_detailed(request: HttpRequest) -> JsonResponse:
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
    body = {**_base(status), "checks": checks, "failing": failing, "degraded": degraded}
    return JsonResponse(body, status=503 if failing else 200)

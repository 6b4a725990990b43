"""Staff-only debugging endpoints: breaker snapshot and the last worker exceptions.

Staff means a Django staff session (the admin login) or a staff ``ClientAPIKey`` sent as
``Authorization: Bearer <key>``, checked by the API's own authentication and permission classes
(``reconcile_project/ops_access.py``): no credentials or an unknown key 401, a revoked or expired key
or an inactive account 403, valid credentials that are not staff 403, all in the API's error envelope.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import JsonResponse
from rest_framework.request import Request

from reconcile_project.ops_access import staff_only

logger = logging.getLogger("reconcile_project.debug")


@staff_only
def circuit_breakers(request: Request) -> JsonResponse:
    """The runbook's ``GLOBAL_CIRCUIT_BREAKER.snapshot()`` for every configured platform."""
    try:
        from platforms.breaker import get_breaker
    except ImportError:
        return JsonResponse({"detail": "circuit breaker not installed"}, status=503)
    return JsonResponse(get_breaker().snapshot(list(settings.PLATFORM_SLUGS)))


@staff_only
def worker_exceptions(request: Request) -> JsonResponse:
    """The last 50 worker exceptions across all workers, newest first."""
    from reconcile_project.worker_exceptions import recent_worker_exceptions

    try:
        entries = recent_worker_exceptions()
    except Exception as exc:
        logger.warning("Worker exceptions unavailable", extra={"error": f"{type(exc).__name__}: {exc}"})
        return JsonResponse({"detail": f"redis unavailable: {type(exc).__name__}"}, status=503)
    return JsonResponse({"count": len(entries), "exceptions": entries})

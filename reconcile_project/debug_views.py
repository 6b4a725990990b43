"""Staff-only debugging endpoints: breaker snapshot and the last worker exceptions.

Staff means a Django staff session (the admin login) or a staff ``ClientAPIKey`` sent as
``Authorization: Bearer <key>`` (``Api-Key <key>`` is accepted too). No credentials: 401; valid
credentials that are not staff: 403. Both answer JSON.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, cast

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

_SCHEMES = ("bearer", "api-key")


def _bearer_key(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() in _SCHEMES and key.strip():
        return key.strip()
    return None


def staff_status(request: HttpRequest) -> int:
    """200 if the caller is staff, 403 if identified but not staff, 401 if not identified."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        if user.is_staff and user.is_active:
            return 200
        identified = True
    else:
        identified = False
    key = _bearer_key(request)
    if key:
        from reconciliation.models import ClientAPIKey

        try:
            api_key = cast(ClientAPIKey, ClientAPIKey.objects.get_from_key(key))
        except ClientAPIKey.DoesNotExist:
            return 403 if identified else 401
        if api_key.has_expired:
            return 403 if identified else 401
        return 200 if api_key.is_staff else 403
    return 403 if identified else 401


def staff_only(view: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    @functools.wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        status = staff_status(request)
        if status == 401:
            response = JsonResponse(
                {"detail": "Authentication credentials were not provided.", "request_id": _rid(request)}, status=401
            )
            response["WWW-Authenticate"] = 'Bearer realm="api"'
            return response
        if status == 403:
            return JsonResponse({"detail": "Staff only.", "request_id": _rid(request)}, status=403)
        return view(request)

    return wrapper


def _rid(request: HttpRequest) -> Any:
    return getattr(request, "request_id", None)


@never_cache
@require_GET
@staff_only
def circuit_breakers(request: HttpRequest) -> JsonResponse:
    """The runbook's ``GLOBAL_CIRCUIT_BREAKER.snapshot()`` for every configured platform."""
    try:
        from platforms.breaker import get_breaker
    except ImportError:
        return JsonResponse({"detail": "circuit breaker not installed"}, status=503)
    return JsonResponse(get_breaker().snapshot(list(settings.PLATFORM_SLUGS)))


@never_cache
@require_GET
@staff_only
def worker_exceptions(request: HttpRequest) -> JsonResponse:
    """The last 50 worker exceptions across all workers, newest first."""
    from reconcile_project.worker_exceptions import recent_worker_exceptions

    try:
        entries = recent_worker_exceptions()
    except Exception as exc:
        return JsonResponse({"detail": f"redis unavailable: {type(exc).__name__}"}, status=503)
    return JsonResponse({"count": len(entries), "exceptions": entries})

"""Who may read the operations endpoints: ``/health`` is public, the rest is not.

* ``/metrics`` and ``/health/detailed``: monitoring — ``Authorization: Bearer <METRICS_TOKEN>`` (what
  Prometheus and uptime checks send) — or staff. With ``METRICS_TOKEN`` unset, outside production only,
  callers on the loopback interface are let in without it (``make run`` binds there); production refuses
  to start without a token (``reconcile_project/checks.py``).
* ``/debug/*``: staff only.

Staff is the API's own notion (``reconciliation.api.permissions.is_staff_caller``): a staff API key
(``Authorization: Bearer <key>``, through the API's authentication class, so revoked and expired keys,
inactive clients and the failed-authentication throttle behave as on the API) or an active Django staff
session. The views are DRF function views, so a refusal is the API's error envelope: 401 with
``WWW-Authenticate`` and the header to send, 403 ``staff_only``, 429 after repeated bad keys.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.views.decorators.cache import never_cache
from drf_spectacular.utils import extend_schema
from rest_framework.authentication import BaseAuthentication, SessionAuthentication, get_authorization_header
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from reconciliation.api.authentication import APIKeyAuthentication
from reconciliation.api.permissions import IsStaff, is_staff_caller


class MonitoringCaller:
    """``request.user`` for a request that presented the metrics token: may read, is nobody's staff."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    pk = id = "monitoring"

    def get_username(self) -> str:
        return "monitoring"

    def __str__(self) -> str:
        return "monitoring token"


class MetricsTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer <METRICS_TOKEN>``. Any other credential is left to the next class (API keys)."""

    def authenticate(self, request: Request) -> tuple[MonitoringCaller, None] | None:
        token = settings.METRICS_TOKEN
        if not token:
            return None
        parts = get_authorization_header(request).split()
        if len(parts) == 2 and parts[0].lower() == b"bearer" and hmac.compare_digest(parts[1], token.encode()):
            return MonitoringCaller(), None
        return None

    def authenticate_header(self, request: Request) -> str:
        return APIKeyAuthentication.keyword + ' realm="api"'


def _loopback(request: Request) -> bool:
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def open_on_loopback(request: Request) -> bool:
    """Development without a metrics token: the local machine may look (behind a proxy every caller would
    come from loopback, which is why production never takes this path)."""
    return not settings.METRICS_TOKEN and not settings.PRODUCTION and _loopback(request)


class IsMonitoringOrStaff(BasePermission):
    message = "This endpoint needs the metrics token (Authorization: Bearer <METRICS_TOKEN>) or staff access."
    code = "monitoring_only"

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, MonitoringCaller) or is_staff_caller(request) or open_on_loopback(request)


def _ops_view(
    permission: type[BasePermission], *, monitoring: bool
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    auth: list[type[BaseAuthentication]] = [APIKeyAuthentication, SessionAuthentication]
    if monitoring:
        auth.insert(0, MetricsTokenAuthentication)

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        drf_view = api_view(["GET"])(authentication_classes(auth)(permission_classes([permission])(view)))
        # Not part of the API's OpenAPI document (its prefix is /api/v1; these are the operator's).
        return never_cache(extend_schema(exclude=True)(drf_view))

    return decorate


#: ``@monitoring_or_staff``: the metrics token, staff, or (development without a token) loopback.
monitoring_or_staff = _ops_view(IsMonitoringOrStaff, monitoring=True)
#: ``@staff_only``: a staff API key or a staff session.
staff_only = _ops_view(IsStaff, monitoring=False)

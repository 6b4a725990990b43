"""Which kind of caller may use an endpoint. A wrong kind is 403; another tenant's object is 404 (selectors)."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from reconciliation.api.authentication import Principal


def _principal(request: Request) -> Principal | None:
    return request.user if isinstance(request.user, Principal) else None


def is_staff_caller(request: Request) -> bool:
    """A staff API key, or a logged-in, active Django staff user (admin session)."""
    principal = _principal(request)
    if principal is not None:
        return principal.is_staff
    user: Any = request.user
    return bool(user and user.is_authenticated and user.is_active and user.is_staff)


class IsAffiliate(BasePermission):
    message = "This endpoint needs an affiliate API key."
    code = "wrong_key_kind"

    def has_permission(self, request: Request, view: Any) -> bool:
        principal = _principal(request)
        return principal is not None and principal.kind == "affiliate"


class IsClientOrStaff(BasePermission):
    message = "This endpoint needs a client API key (or staff access)."
    code = "wrong_key_kind"

    def has_permission(self, request: Request, view: Any) -> bool:
        principal = _principal(request)
        if principal is not None and principal.kind in ("client", "staff"):
            return True
        return is_staff_caller(request)


class IsStaff(BasePermission):
    message = "This endpoint needs staff access (a staff API key or an admin session)."
    code = "staff_only"

    def has_permission(self, request: Request, view: Any) -> bool:
        return is_staff_caller(request)

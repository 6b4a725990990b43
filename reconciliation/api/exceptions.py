"""One error envelope for every 4xx/5xx of the API:

    {"error": {"code": "validation_error", "message": "...", "fields": {"post_url": ["..."]}},
     "request_id": "..."}

``code`` is stable and machine-readable; ``message`` is for people; ``fields`` (400 only) maps each
rejected field to its messages; 429 adds ``retry_after`` (seconds, also the ``Retry-After`` header);
the duplicate-post 409 adds ``existing_post_id`` and ``update_url``.

The DRF exception handler maps the services' domain errors (SubmissionRejected, DuplicatePost, ...) to
HTTP here, in one place, so views stay a parse-call-render. ``handler400/403/404/500`` give the same
envelope for ``/api/`` paths that never reach a DRF view (unknown URL, crash in middleware).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from reconcile_project.observability import REQUEST_ID_PATTERN, get_request_id
from reconciliation.api.authentication import not_authenticated_message
from reconciliation.api.errors import (
    Conflict,
    DuplicatePostConflict,
    NotJSON,
    PayloadTooLarge,
    UnprocessableEntity,
)
from reconciliation.services.idempotency import IdempotencyInFlight, IdempotencyMismatch
from reconciliation.services.submissions import (
    DuplicatePost,
    PostNotFound,
    RunTargetNotFound,
    SubmissionRejected,
)

logger = logging.getLogger("reconciliation.api")

API_PREFIX = "/api/"


def request_id_of(request: HttpRequest | None) -> str:
    """The id the middleware bound to this request; else the client's (if safe) or a new one."""
    bound = get_request_id()
    if bound:
        return bound
    if request is not None:
        cached = getattr(request, "_api_request_id", None)
        if cached:
            return cached
        supplied = request.META.get("HTTP_X_REQUEST_ID", "")
        value = supplied if REQUEST_ID_PATTERN.fullmatch(supplied or "") else str(uuid.uuid4())
        request._api_request_id = value  # type: ignore[attr-defined]
        return value
    return str(uuid.uuid4())


def envelope(
    *, code: str, message: str, request: HttpRequest | None, fields: dict[str, list[str]] | None = None, **extra: Any
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    error.update(extra)
    return {"error": error, "request_id": request_id_of(request)}


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as {"field" or "parent.child": [messages]}."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            for k, v in _flatten(value, name).items():
                out.setdefault(k, []).extend(v)
    elif isinstance(detail, list):
        for index, item in enumerate(detail):
            if isinstance(item, (dict, list)):
                for k, v in _flatten(item, f"{prefix}.{index}" if prefix else str(index)).items():
                    out.setdefault(k, []).extend(v)
            else:
                out.setdefault(prefix or "non_field_errors", []).append(str(item))
    else:
        out.setdefault(prefix or "non_field_errors", []).append(str(detail))
    return out


def _translate(exc: Exception, request: Any) -> Exception:
    """Domain and Django exceptions → DRF exceptions with the right status."""
    if isinstance(exc, SubmissionRejected):
        return exceptions.ValidationError(exc.fields)
    if isinstance(exc, DuplicatePost):
        path = reverse("api:submission-metrics", kwargs={"post_id": exc.post_id})
        url = request.build_absolute_uri(path) if request is not None else path
        return DuplicatePostConflict(exc.post_id, url)
    if isinstance(exc, (PostNotFound, RunTargetNotFound)):
        return exceptions.NotFound(str(exc) if isinstance(exc, RunTargetNotFound) else None)
    if isinstance(exc, IdempotencyInFlight):
        return Conflict(
            "A request with this Idempotency-Key is still being processed; retry shortly.",
            code="idempotency_key_in_flight",
        )
    if isinstance(exc, IdempotencyMismatch):
        return UnprocessableEntity(
            "This Idempotency-Key was already used with a different request body.", code="idempotency_key_reused"
        )
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge()
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return NotJSON()
    if isinstance(exc, Http404):
        return exceptions.NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied()
    return exc


def _code(exc: exceptions.APIException) -> str:
    detail = exc.detail
    if isinstance(exc, exceptions.ValidationError):
        return "validation_error"
    if isinstance(detail, exceptions.ErrorDetail) and detail.code and detail.code != "error":
        return str(detail.code)
    return str(exc.default_code)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    request = context.get("request")
    exc = _translate(exc, request)
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: Django logs it and handler500 answers with the envelope
    headers: dict[str, str] = {}
    extra: dict[str, Any] = dict(getattr(exc, "extra", {}) or {})
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    wait = getattr(exc, "wait", None)
    if wait:
        headers["Retry-After"] = str(int(wait))
        extra["retry_after"] = int(wait)
    fields: dict[str, list[str]] | None = None
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        message = "The request has invalid fields: " + ", ".join(sorted(fields)) + "."
    elif isinstance(exc, exceptions.Throttled):
        message = f"Rate limit exceeded; retry in {int(wait or 1)} s."
    elif isinstance(exc, exceptions.NotAuthenticated) and request is not None:
        message = not_authenticated_message(request)  # which header to send, and what came instead
    else:
        message = str(exc.detail) if not isinstance(exc.detail, (dict, list)) else "Request failed."
    body = envelope(code=_code(exc), message=message, request=request, fields=fields, **extra)
    set_rollback()
    return Response(body, status=exc.status_code, headers=headers)


# --- Django handlers for /api/ paths that never reach a DRF view ----------------------------------


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def _json(request: HttpRequest, status_code: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(envelope(code=code, message=message, request=request), status=status_code)


def handler400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        if isinstance(exception, RequestDataTooBig):
            return _json(request, 413, "payload_too_large", "Request body too large.")
        return _json(request, 400, "bad_request", "Bad request.")
    return defaults.bad_request(request, exception or Exception())


def handler403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return _json(request, 403, "permission_denied", "You do not have permission to perform this action.")
    return defaults.permission_denied(request, exception or Exception())


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return _json(request, 404, "not_found", "Not found.")
    return defaults.page_not_found(request, exception or Http404())


def read_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """GET and HEAD only, any other method the envelope's 405: for the OpenAPI document and its UI.

    Their views render YAML or an HTML template, which cannot render an error (OPTIONS on the Swagger
    page was a 500). Not ``functools.wraps``: the copied view attributes would list it in the document.
    """

    @csrf_exempt
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            message = f'Method "{request.method}" not allowed.'
            response = _json(request, 405, "method_not_allowed", message)
            response["Allow"] = "GET, HEAD"
            return response
        return view(request, *args, **kwargs)

    return guarded


@csrf_exempt
def api_not_found(request: HttpRequest) -> HttpResponse:
    """Every method on an unknown /api/ path: the envelope's 404 (no CSRF page, no slash redirect)."""
    return _json(request, 404, "not_found", "Not found.")


def handler500(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return _json(request, 500, "internal_error", "Internal server error; the request id identifies it in our logs.")
    return defaults.server_error(request)

"""OpenAPI documentation pieces: the Bearer security scheme and the documented error responses.

Every operation lists each error status it can answer, with the envelope and an example, so a client
(and schemathesis) can rely on the document: an undocumented status is a bug.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerExtension
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse

from reconciliation.api.idempotency import HEADER as IDEMPOTENCY_HEADER
from reconciliation.api.idempotency import KEY_PATTERN
from reconciliation.api.serializers import ErrorEnvelopeOutput, evidence_components


class APIKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "reconciliation.api.authentication.APIKeyAuthentication"
    name = "BearerApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "<prefix>.<secret>",
            "description": (
                "An affiliate, client or staff API key: `Authorization: Bearer <key>`. Keys are shown once at "
                "creation (`manage.py create_affiliate`, `create_client`) and stored hashed."
            ),
        }


class ReconciliationRunInputScheme(OpenApiSerializerExtension):
    """Exactly one selector: as a schema, one property out of three and no other (the serializer's rule)."""

    target_class = "reconciliation.api.serializers.ReconciliationRunInput"

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_basic_serializer(self.target, direction)
        schema.pop("required", None)
        return {
            **schema,
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": False,
            "description": "Exactly one of `report_id`, `campaign_id` or `status`.",
        }


def add_evidence_components(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: the per-depth schemas the evidence field refers to (one copy each)."""
    result.setdefault("components", {}).setdefault("schemas", {}).update(evidence_components())
    return result


def require_request_bodies(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: every operation that takes a body refuses a request without one.

    drf-spectacular marks a body required only when its schema has required properties, which a
    "one of three" body cannot have.
    """
    for item in result.get("paths", {}).values():
        for operation in item.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                operation["requestBody"]["required"] = True
    return result


_RID = "0b7e9c1e-5d2a-4f5e-9a51-6c1f0f0d2a10"

_ERRORS: dict[int, tuple[str, str, dict[str, Any]]] = {
    400: (
        "Invalid input",
        "A field is missing or invalid, the body is not JSON, or a query parameter is invalid.",
        {
            "code": "validation_error",
            "message": "The request has invalid fields: post_url.",
            "fields": {"post_url": ["not a post URL of a supported platform (Reddit, Instagram, ...)"]},
        },
    ),
    401: (
        "Not authenticated",
        "No `Authorization: Bearer <key>` header, or the key is unknown. Carries `WWW-Authenticate: Bearer`.",
        {
            "code": "not_authenticated",
            "message": "Authentication credentials were not provided. Use 'Authorization: Bearer <key>'.",
        },
    ),
    403: (
        "Forbidden",
        "The key is of the wrong kind for this endpoint, revoked or expired, or its account is inactive.",
        {"code": "wrong_key_kind", "message": "This endpoint needs an affiliate API key."},
    ),
    404: (
        "Not found",
        "No such object among yours (another tenant's object is not found either).",
        {"code": "not_found", "message": "Not found."},
    ),
    409: (
        "Conflict",
        "The post was already submitted by you (`duplicate_post`, naming it and where to PUT new metrics), "
        "or a request with the same Idempotency-Key is still in flight (`idempotency_key_in_flight`).",
        {
            "code": "duplicate_post",
            "message": "You already submitted this post (post 42). Send new metrics for it with PUT "
            "https://api.example.com/api/v1/submissions/42/metrics",
            "existing_post_id": 42,
            "update_url": "https://api.example.com/api/v1/submissions/42/metrics",
        },
    ),
    413: (
        "Body too large",
        "The request body is over 64 KB.",
        {"code": "payload_too_large", "message": "Request body too large (at most 65536 bytes)."},
    ),
    422: (
        "Idempotency-Key reused",
        "The Idempotency-Key was used before with a different request body.",
        {
            "code": "idempotency_key_reused",
            "message": "This Idempotency-Key was already used with a different request body.",
        },
    ),
    429: (
        "Rate limited",
        "Too many requests for this API key. `Retry-After` (header and `retry_after`) says when to retry.",
        {"code": "throttled", "message": "Rate limit exceeded; retry in 42 s.", "retry_after": 42},
    ),
    500: (
        "Server error",
        "A bug on our side; the request id identifies it in our logs.",
        {"code": "internal_error", "message": "Internal server error; the request id identifies it in our logs."},
    ),
}

#: Every authenticated operation can answer these.
COMMON = (401, 403, 429, 500)


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """Documented error responses (the envelope with an example) for ``statuses`` plus COMMON."""
    out: dict[int, OpenApiResponse] = {}
    for status in sorted(set(statuses) | set(COMMON)):
        summary, description, error = _ERRORS[status]
        out[status] = OpenApiResponse(
            response=ErrorEnvelopeOutput,
            description=description,
            examples=[OpenApiExample(summary, value={"error": error, "request_id": _RID}, status_codes=[str(status)])],
        )
    return out


IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    type=str,
    location=OpenApiParameter.HEADER,
    required=False,
    pattern=KEY_PATTERN,
    description=(
        "Optional. The same key with the same body within 24 h returns the original response (header "
        "`Idempotent-Replayed: true`) instead of acting twice; with a different body → 422; while the first "
        "request is still running → 409. Scoped to your API key."
    ),
    examples=[OpenApiExample("uuid", value="3f1c2a1e-8b7d-4c55-9e0a-1d2b3c4d5e6f")],
)

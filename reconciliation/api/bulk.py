"""``POST /api/v1/submissions/bulk``: many claims in one CSV or JSON-lines body (see services/bulk.py).

An affiliate key imports the affiliate's own claims; a staff key imports on behalf of an affiliate named
by the ``affiliate_id`` query parameter or column. The answer lists every refused row by line number with
the same field errors a single submission would get; the other rows are imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.parsers import BaseParser
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from reconciliation.api.authentication import APIKeyAuthentication, Principal
from reconciliation.api.errors import PayloadTooLarge
from reconciliation.api.exceptions import request_id_of
from reconciliation.api.filters import MAX_ID
from reconciliation.api.schema import errors
from reconciliation.api.serializers import ErrorEnvelopeOutput
from reconciliation.api.views import ApiView
from reconciliation.models import Affiliate
from reconciliation.services import bulk
from reconciliation.services.submissions import BulkResult


class UnsupportedFileType(exceptions.APIException):
    status_code = 415
    default_detail = f"Send the file as one of: {', '.join(bulk.CONTENT_TYPES)} (UTF-8)."
    default_code = "unsupported_file_type"


class FileParser(BaseParser):
    """The body as bytes, at most BULK_IMPORT_MAX_BYTES (by Content-Length first, then by what is read)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        limit = settings.BULK_IMPORT_MAX_BYTES
        request = (parser_context or {}).get("request")
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0) if request is not None else 0
        except ValueError:
            declared = 0
        message = f"The file is too large: at most {limit} bytes may be imported at once (BULK_IMPORT_MAX_BYTES)."
        if declared > limit:
            raise PayloadTooLarge(message)
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(message)
        return raw


def _parser(content_type: str) -> type[FileParser]:
    return type(f"FileParser_{content_type}", (FileParser,), {"media_type": content_type})


class IsAffiliateOrStaff(BasePermission):
    message = "This endpoint needs an affiliate API key (or a staff key naming the affiliate)."
    code = "wrong_key_kind"

    def has_permission(self, request: Request, view: Any) -> bool:
        principal = request.user
        return isinstance(principal, Principal) and (principal.kind == "affiliate" or principal.is_staff)


# "fields" is a name a Serializer class cannot declare (it is the serializer's own attribute).
RejectedRowOutput = inline_serializer(
    "BulkRejectedRow",
    fields={
        "line": serializers.IntegerField(help_text="Line number in the file (the CSV header is line 1)."),
        "fields": serializers.DictField(
            child=serializers.ListField(child=serializers.CharField()),
            help_text="Field → messages, as a single submission's 400 names them.",
        ),
    },
)


class BulkImportOutput(serializers.Serializer):
    dry_run = serializers.BooleanField()
    rows = serializers.IntegerField(help_text="Data rows read (blank lines are not rows).")
    created = serializers.IntegerField(help_text="Claims recorded by this import (would be, in a dry run).")
    already_imported = serializers.IntegerField(help_text="Rows whose claim was already recorded: not again.")
    rejected_count = serializers.IntegerField()
    rejected = serializers.ListField(child=RejectedRowOutput)
    dispatched = serializers.BooleanField(
        help_text="Sent to reconciliation at once; false: the outbox sweeper sends them within seconds."
    )
    report_ids = serializers.ListField(child=serializers.IntegerField())


def result_body(result: BulkResult) -> dict[str, Any]:
    return {
        "dry_run": result.dry_run,
        "rows": result.rows,
        "created": result.created,
        "already_imported": result.already_imported,
        "rejected_count": len(result.rejected),
        "rejected": [{"line": r.line, "fields": r.fields} for r in result.rejected],
        "dispatched": result.dispatched,
        "report_ids": result.report_ids,
    }


def _error_response(summary: str, description: str, code: str, message: str) -> OpenApiResponse:
    example = {"error": {"code": code, "message": message}, "request_id": "0b7e9c1e-5d2a-4f5e-9a51-6c1f0f0d2a10"}
    return OpenApiResponse(
        ErrorEnvelopeOutput, description=description, examples=[OpenApiExample(summary, value=example)]
    )


def _dry_run(request: Request) -> bool:
    raw = request.query_params.get("dry_run", "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise exceptions.ValidationError({"dry_run": ["Must be true or false."]})
    return raw in ("true", "1")


class BulkSubmissionsView(ApiView):
    authentication_classes = [APIKeyAuthentication]
    permission_classes = [IsAffiliateOrStaff]
    parser_classes = [_parser(content_type) for content_type in bulk.CONTENT_TYPES]
    throttle_scopes = {"POST": "submission"}

    @extend_schema(
        operation_id="submissions_bulk",
        summary="Import many claims from a CSV or JSON-lines file",
        description=(
            "Columns (CSV header or JSON keys): `campaign_id`, `post_url`, `claimed_views`, `claimed_clicks`, "
            "`claimed_conversions`; optional `platform`, `evidence` (JSON object; in CSV its JSON text), "
            "`title`, `submitted_at` (ISO 8601), `idempotency_key`, and `affiliate_id` (staff keys). Each row "
            "is checked like a single submission; refused rows are listed by line, the others recorded "
            "(`submission_method` BULK). A post you already submitted gets a new claim. Sending the same "
            "file again records nothing new: a row is identified by its `idempotency_key`, else by affiliate, "
            "post, claimed numbers and `submitted_at`. At most BULK_IMPORT_MAX_BYTES bytes (413) and "
            "BULK_IMPORT_MAX_ROWS rows (400)."
        ),
        request={content_type: OpenApiTypes.STR for content_type in bulk.CONTENT_TYPES},
        parameters=[
            OpenApiParameter(
                "affiliate_id",
                {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                description=(
                    "Staff keys: the affiliate the rows belong to (else an `affiliate_id` column); an unknown "
                    "or inactive one is a 404. An affiliate key may only name itself (else 403)."
                ),
            ),
            OpenApiParameter("dry_run", bool, description="Check every row and answer; record nothing."),
        ],
        responses={
            200: OpenApiResponse(
                BulkImportOutput,
                description="Read; the accepted rows are recorded.",
                examples=[
                    OpenApiExample(
                        "one row refused",
                        value={
                            "dry_run": False,
                            "rows": 3,
                            "created": 2,
                            "already_imported": 0,
                            "rejected_count": 1,
                            "rejected": [{"line": 3, "fields": {"claimed_views": ["must be between 0 and 10^12"]}}],
                            "dispatched": True,
                            "report_ids": [101, 102],
                        },
                    )
                ],
            ),
            **errors(400, 404),
            413: _error_response(
                "File too large",
                "More than BULK_IMPORT_MAX_BYTES bytes.",
                "payload_too_large",
                "The file is too large: at most 10485760 bytes may be imported at once (BULK_IMPORT_MAX_BYTES).",
            ),
            415: _error_response(
                "Not a file type we read",
                "The Content-Type is not CSV or JSON lines.",
                UnsupportedFileType.default_code,
                str(UnsupportedFileType.default_detail),
            ),
        },
        tags=["affiliates"],
    )
    def post(self, request: Request) -> Response:
        fmt = bulk.format_of(content_type=request.content_type or "")
        if fmt is None:
            raise UnsupportedFileType()
        principal = request.user
        assert isinstance(principal, Principal)
        staff = principal.kind != "affiliate"
        affiliate = self._named_affiliate(request) if staff else self._own(request, principal)
        dry_run = _dry_run(request)
        data = request.data
        try:
            result = bulk.claims_import(
                data=data if isinstance(data, bytes) else b"",
                fmt=fmt,
                affiliate=affiliate,
                staff=staff,
                now=timezone.now(),
                dry_run=dry_run,
                max_bytes=settings.BULK_IMPORT_MAX_BYTES,
                max_rows=settings.BULK_IMPORT_MAX_ROWS,
                request_id=request_id_of(request),
            )
        except bulk.BulkFileTooLarge as exc:
            raise PayloadTooLarge(str(exc)) from None
        except bulk.BulkFileError as exc:
            raise exceptions.ParseError(str(exc), code="invalid_file") from None
        return Response(result_body(result))

    def _own(self, request: Request, principal: Principal) -> Affiliate:
        affiliate = principal.affiliate
        assert affiliate is not None
        named = request.query_params.get("affiliate_id")
        if named is not None and named != str(affiliate.pk):
            raise exceptions.PermissionDenied(
                "An affiliate key imports its own claims: affiliate_id is for staff keys.", code="wrong_key_kind"
            )
        return affiliate

    def _named_affiliate(self, request: Request) -> Affiliate | None:
        raw = request.query_params.get("affiliate_id")
        if raw is None:
            return None
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_ID:
            raise exceptions.ValidationError({"affiliate_id": [f"Must be an integer from 1 to {MAX_ID}."]})
        affiliate = Affiliate.objects.filter(pk=int(raw), is_active=True).first()
        if affiliate is None:
            raise exceptions.NotFound(f"No active affiliate with id {raw}.")
        return affiliate

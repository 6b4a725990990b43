"""Staff: the compliance export of one affiliate as a ZIP download (see reconciliation.services.exports).

The archive is built into an anonymous temporary file first (zipfile writes its directory at the end,
and a failure half-way must be a 500, not a truncated download), then streamed from disk: memory stays
bounded whatever the affiliate's size, and the file disappears when the response is closed.
"""

from __future__ import annotations

import tempfile
from typing import Any

from django.http import FileResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotFound
from rest_framework.request import Request

from reconciliation.api.authentication import APIKeyAuthentication, Principal
from reconciliation.api.filters import MAX_ID
from reconciliation.api.permissions import IsStaff
from reconciliation.api.schema import errors
from reconciliation.api.views import ApiView
from reconciliation.models import Affiliate
from reconciliation.services.exports import affiliate_export


def _actor(request: Request) -> str:
    # Who asked, for the audit line: a key's public prefix ("staff:AbCd1234") or the admin user, never
    # the key's id (which embeds its hash).
    user: Any = request.user
    if isinstance(user, Principal):
        return user.pk
    return f"user:{user.get_username()}"


class AffiliateExportView(ApiView):
    """Staff: everything held about one affiliate, as one archive."""

    authentication_classes = [APIKeyAuthentication, SessionAuthentication]
    permission_classes = [IsStaff]
    # Heavy (reads every row of the affiliate): the staff actions' budget.
    throttle_scopes = {"GET": "staff_run"}

    @extend_schema(
        operation_id="affiliate_export",
        summary="Staff: compliance export of an affiliate (ZIP of CSV + JSON)",
        description=(
            "Everything held about the affiliate: profile, API keys (prefix, name and dates; never the secret "
            "or its hash), posts, claims with their evidence, platform snapshots, attempts, verdicts, the "
            "trust ledger, alerts (with who acknowledged or resolved them) and the idempotency keys of its API "
            "keys. One `<table>.csv` (UTF-8, header row, ISO 8601 datetimes, formula cells escaped with `'`) "
            "and one `<table>.json` (an array of objects) per table, `manifest.json` (export time, affiliate "
            "id, format version, rows and SHA-256 per file) and `SHA256SUMS`. Staff API key or admin session."
        ),
        responses={
            (200, "application/zip"): OpenApiResponse(
                OpenApiTypes.BINARY,
                description="The archive, as an attachment (`Content-Disposition: attachment; filename=...`).",
            ),
            **errors(404),
        },
        tags=["staff"],
    )
    def get(self, request: Request, affiliate_id: int) -> FileResponse:
        affiliate = Affiliate.objects.filter(pk=affiliate_id).first() if affiliate_id <= MAX_ID else None
        if affiliate is None:
            raise NotFound()
        now = timezone.now()
        archive = tempfile.TemporaryFile()
        try:
            affiliate_export(affiliate=affiliate, out=archive, now=now, actor=_actor(request))
            archive.seek(0)
        except BaseException:
            archive.close()
            raise
        filename = f"affiliate-{affiliate.pk}-{now:%Y%m%dT%H%M%SZ}.zip"
        response = FileResponse(archive, as_attachment=True, filename=filename, content_type="application/zip")
        response["Cache-Control"] = "no-store"
        return response

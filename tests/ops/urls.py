"""The project's URLs plus test-only views: one that raises, JSON bodies, a parametrised route, a submission."""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from reconcile_project.observability import get_request_id
from reconcile_project.urls import urlpatterns as project_urlpatterns


def boom(request: HttpRequest) -> JsonResponse:
    raise RuntimeError("boom from a test view")


def big(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"items": [{"id": i, "name": f"item number {i}"} for i in range(200)]})


def small(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


def item(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse({"id": pk, "request_id": get_request_id()})


@csrf_exempt
def submit(request: HttpRequest) -> JsonResponse:
    """What the submission API does, minus authentication: the middleware's request id goes along."""
    from django.utils import timezone

    from reconciliation import rules
    from reconciliation.models import Affiliate
    from reconciliation.services.submissions import report_submit

    body = json.loads(request.body)
    result = report_submit(
        affiliate=Affiliate.objects.get(pk=body["affiliate_id"]),
        campaign_id=body["campaign_id"],
        platform=body["platform"],
        post_url=body["post_url"],
        claims=rules.Claim(**body["claims"]),
        evidence=body.get("evidence"),
        request_id=get_request_id() or "",
        now=timezone.now(),
    )
    return JsonResponse({"report_id": result.report.pk}, status=201)


urlpatterns = [
    *project_urlpatterns,
    path("ops-test/boom", boom),
    path("ops-test/big", big),
    path("ops-test/small", small),
    path("ops-test/items/<int:pk>", item, name="ops-test-item"),
    path("ops-test/submit", submit),
]

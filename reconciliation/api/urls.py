"""``/api/v1/`` routes (included from reconcile_project/urls.py with namespace ``api``).

Every route answers with and without its trailing slash. Django's APPEND_SLASH would otherwise answer
``POST /api/v1/submissions`` with a 301, which common clients follow as a GET: the claim is dropped
without an error. The other spelling is a second pattern to the same view, left out of the OpenAPI
document (``schema=None``) so that each operation is documented once, under its canonical path.
"""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, path, register_converter
from rest_framework.views import APIView

from alerts import api as alerts_api
from chat.api import ChatLinkCodeView
from notifications import api as webhooks_api
from reconciliation.api import (
    bulk,
    exports,
    schema,  # noqa: F401  (registers the Bearer security scheme)
    statements,
    views,
)


class IdConverter:
    """1 to 19 digits: never an overflow error from the database (views 404 anything past bigint)."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "api_id")


def either_slash(route: str, view: type[APIView], name: str, **initkwargs: Any) -> list[URLPattern]:
    """``route`` as documented and named, plus its other spelling (slash toggled), undocumented."""
    other = route.removesuffix("/") if route.endswith("/") else route + "/"
    return [
        path(route, view.as_view(**initkwargs), name=name),
        path(other, view.as_view(**initkwargs, schema=None)),
    ]


app_name = "api"

urlpatterns = [
    *either_slash("submissions/", views.SubmissionsView, "submissions"),
    *either_slash("submissions/bulk", bulk.BulkSubmissionsView, "submissions-bulk"),
    *either_slash("submissions/<api_id:post_id>/metrics", views.SubmissionMetricsView, "submission-metrics"),
    *either_slash("reports/<api_id:report_id>", views.ReportDetailView, "report-detail"),
    *either_slash("affiliates/me", views.AffiliateMeView, "affiliate-me"),
    *either_slash("affiliates/me/chat-link-code", ChatLinkCodeView, "affiliate-chat-link-code"),
    *either_slash("affiliates/<api_id:affiliate_id>/export", exports.AffiliateExportView, "affiliate-export"),
    *either_slash("campaigns/", views.CampaignListView, "campaigns"),
    *either_slash("campaigns/<api_id:campaign_id>", views.CampaignDetailView, "campaign-detail"),
    *either_slash("campaigns/<api_id:campaign_id>/reports/", views.CampaignReportsView, "campaign-reports"),
    *either_slash("campaigns/<api_id:campaign_id>/statement", statements.CampaignStatementView, "campaign-statement"),
    *either_slash("reconciliation/run", views.ReconciliationRunView, "reconciliation-run"),
    *either_slash("rules/simulate", views.RuleSimulationView, "rules-simulate"),
    *either_slash("alerts/", alerts_api.AlertListView, "alerts"),
    *either_slash("alerts/<api_id:alert_id>", alerts_api.AlertDetailView, "alert-detail"),
    *either_slash("alerts/<api_id:alert_id>/acknowledge", alerts_api.AlertAcknowledgeView, "alert-acknowledge"),
    *either_slash("alerts/<api_id:alert_id>/resolve", alerts_api.AlertResolveView, "alert-resolve"),
    *either_slash("alerts/<api_id:alert_id>/reopen", alerts_api.AlertReopenView, "alert-reopen"),
    *either_slash("webhooks/", webhooks_api.WebhookListView, "webhooks"),
    *either_slash("webhooks/<api_id:webhook_id>", webhooks_api.WebhookDetailView, "webhook-detail"),
]

"""``/api/v1/`` routes (included from reconcile_project/urls.py with namespace ``api``)."""

from __future__ import annotations

from django.urls import path, register_converter

from reconciliation.api import (
    schema,  # noqa: F401  (registers the Bearer security scheme)
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

app_name = "api"

urlpatterns = [
    path("submissions/", views.SubmissionsView.as_view(), name="submissions"),
    path("submissions/<api_id:post_id>/metrics", views.SubmissionMetricsView.as_view(), name="submission-metrics"),
    path("reports/<api_id:report_id>", views.ReportDetailView.as_view(), name="report-detail"),
    path("affiliates/me", views.AffiliateMeView.as_view(), name="affiliate-me"),
    path("campaigns/", views.CampaignListView.as_view(), name="campaigns"),
    path("campaigns/<api_id:campaign_id>", views.CampaignDetailView.as_view(), name="campaign-detail"),
    path("campaigns/<api_id:campaign_id>/reports/", views.CampaignReportsView.as_view(), name="campaign-reports"),
    path("reconciliation/run", views.ReconciliationRunView.as_view(), name="reconciliation-run"),
]

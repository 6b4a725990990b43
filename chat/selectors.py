"""Reads for the chat edges: who is typing, and where one of their claims stands."""

from __future__ import annotations

from dataclasses import dataclass

from chat.models import ChatIdentity
from reconciliation import selectors
from reconciliation.models import Affiliate, AffiliateReport, PlatformReport


def identity_get(*, provider: str, team_id: str, user_id: str) -> ChatIdentity | None:
    return (
        ChatIdentity.objects.select_related("affiliate")
        .filter(provider=provider, team_id=team_id, external_user_id=user_id)
        .first()
    )


@dataclass(frozen=True)
class ReportStatus:
    report: AffiliateReport
    #: What the platform reported at the latest attempt that reached it (None: not yet).
    snapshot: PlatformReport | None


def report_status(*, affiliate: Affiliate, report_id: int) -> ReportStatus | None:
    """One of the affiliate's own reports (another affiliate's id is "not found") and its latest snapshot."""
    report = selectors.report_get(affiliate=affiliate, report_id=report_id)
    if report is None:
        return None
    snapshot = PlatformReport.objects.filter(attempt__report=report).order_by("-fetched_at", "-id").first()
    return ReportStatus(report=report, snapshot=snapshot)

"""Reads of the analysts' admin pages: an alert's decision page and the risk dashboard.

Every figure a page shows is computed here (aggregated in SQL, or with the pure rules), never by a
template walking relations, and each page costs a fixed number of queries whatever the data's size.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from alerts.models import Alert
from reconciliation import rules
from reconciliation.models import (
    Affiliate,
    AffiliateReport,
    PlatformReport,
    ReconciliationAttempt,
    ReconciliationLog,
    ReconciliationStatus,
    campaign_ruleset,
)
from reconciliation.selectors import PAGE_ROWS, affiliate_recent_claims, affiliate_trust_series, trust_bucket

#: Snapshots and attempts shown on a decision page (a report has a few; a long re-check history is cut).
HISTORY_ROWS = 50


@dataclass(frozen=True)
class SnapshotComparison:
    """One platform snapshot next to the claim: the pure rules' verdict for that pair."""

    snapshot: PlatformReport
    hours_since_claim: float
    classification: rules.Classification
    #: (metric, claimed, platform, diff as a fraction or None, |C - P| or None, side or None)
    rows: list[tuple[str, int, int | None, float | None, int | None, str | None]]


@dataclass(frozen=True)
class AlertDecision:
    alert: Alert
    escalations: list[Alert]
    report: AffiliateReport | None
    comparisons: list[SnapshotComparison]
    attempts: list[ReconciliationAttempt]
    #: The rule set in force for the report's campaign: the thresholds named on the page.
    thresholds: dict[str, Any]
    affiliate: Affiliate | None
    trust_bucket: str | None
    trust_series: list[tuple[str, Any]]
    other_open_alerts: list[Alert]
    recent_claims: list[AffiliateReport]
    history: list[Any]


def _compare(report: AffiliateReport, snapshot: PlatformReport, settings: Any) -> SnapshotComparison:
    hours = max((snapshot.fetched_at - report.submitted_at).total_seconds() / 3600, 0.0)
    observed = rules.Observed(views=snapshot.views, clicks=snapshot.clicks, conversions=snapshot.conversions)
    claim = rules.Claim(
        views=report.claimed_views, clicks=report.claimed_clicks, conversions=report.claimed_conversions
    )
    classification = rules.classify(claimed=claim, platform=observed, hours_since_claim=hours, settings=settings)
    rows = [
        (m.metric, m.claimed, m.observed, m.diff, m.abs_count_diff, None if m.side is None else str(m.side))
        for m in classification.metrics
    ]
    return SnapshotComparison(snapshot=snapshot, hours_since_claim=hours, classification=classification, rows=rows)


def alert_decision(*, alert_id: int) -> AlertDecision | None:
    """What an analyst needs to decide on one alert; None when it does not exist. About a dozen queries."""
    alert = (
        Alert.objects.select_related(
            "affiliate",
            "platform",
            "report__post__platform",
            "report__post__campaign__client",
            "report__post__affiliate",
            "report__log",
            "escalated_from",
            "acknowledged_by",
            "resolved_by",
        )
        .filter(pk=alert_id)
        .first()
    )
    if alert is None:
        return None
    report = alert.report
    affiliate = alert.affiliate or (report.post.affiliate if report else None)
    comparisons: list[SnapshotComparison] = []
    attempts: list[ReconciliationAttempt] = []
    thresholds: dict[str, Any] = {}
    if report is not None:
        ruleset = campaign_ruleset(report.post.campaign.rule_overrides)
        settings = ruleset.reconciliation
        thresholds = settings.model_dump()
        snapshots = PlatformReport.objects.filter(attempt__report=report).order_by("fetched_at", "id")[:HISTORY_ROWS]
        comparisons = [_compare(report, snapshot, settings) for snapshot in snapshots]
        attempts = list(ReconciliationAttempt.objects.filter(report=report).order_by("number")[:HISTORY_ROWS])
    other_open: list[Alert] = []
    recent: list[AffiliateReport] = []
    series: list[tuple[str, Any]] = []
    if affiliate is not None:
        other_open = list(
            Alert.objects.filter(affiliate=affiliate, status=Alert.Status.OPEN)
            .exclude(pk=alert.pk)
            .order_by("-created_at", "-id")[:PAGE_ROWS]
        )
        recent = affiliate_recent_claims(affiliate_id=affiliate.pk, exclude_id=report.pk if report else None)
        series = affiliate_trust_series(affiliate_id=affiliate.pk)
    # The alert's own change history (django-simple-history), newest first.
    history = list(alert.history.select_related("history_user").order_by("-history_date")[:HISTORY_ROWS])
    return AlertDecision(
        alert=alert,
        escalations=list(alert.escalations.order_by("created_at", "id")[:PAGE_ROWS]),
        report=report,
        comparisons=comparisons,
        attempts=attempts,
        thresholds=thresholds,
        affiliate=affiliate,
        trust_bucket=trust_bucket(affiliate.trust_score) if affiliate else None,
        trust_series=series,
        other_open_alerts=other_open,
        recent_claims=recent,
        history=history,
    )


# --- the risk dashboard --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dashboard:
    open_by_type_severity: list[dict[str, Any]]
    severities: list[str]
    open_total: int
    created_per_day: list[tuple[str, int]]
    lowest_trust: list[Affiliate]
    most_overclaims: list[dict[str, Any]]
    status_24h: list[tuple[str, int]]
    status_7d: list[tuple[str, int]]
    platforms: list[dict[str, Any]]
    queues: dict[str, int] | None


def _status_counts(qs: QuerySet[AffiliateReport]) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for status, n in qs.values_list("log__status").annotate(n=Count("id")).values_list("log__status", "n"):
        key = status or ReconciliationStatus.PENDING
        counts[key] = counts.get(key, 0) + n
    return sorted(counts.items())


def risk_dashboard(
    *,
    now: dt.datetime,
    breaker_states: dict[str, str] | None = None,
    queues: dict[str, int] | None = None,
    days: int = 30,
    top: int = 10,
) -> Dashboard:
    """The single pane of risk posture; Redis figures (breakers, queues) are passed in by the view."""
    severities = [s for s, _ in Alert.Severity.choices]
    matrix: dict[str, dict[str, int]] = {}
    for row in (
        Alert.objects.filter(status=Alert.Status.OPEN)
        .values("alert_type", "severity")
        .annotate(n=Count("id"))
        .order_by()
    ):
        matrix.setdefault(row["alert_type"], dict.fromkeys(severities, 0))[row["severity"]] = row["n"]
    totals = {t: sum(counts.values()) for t, counts in matrix.items()}
    open_rows: list[dict[str, Any]] = [
        {"alert_type": t, "counts": [matrix[t][s] for s in severities], "total": totals[t]} for t in sorted(matrix)
    ]

    start = timezone.localdate(now) - dt.timedelta(days=days - 1)
    per_day = dict(
        Alert.objects.filter(created_at__date__gte=start)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("day", "n")
    )
    created = [(f"{day:%m-%d}", per_day.get(day, 0)) for day in (start + dt.timedelta(days=i) for i in range(days))]

    week = now - dt.timedelta(days=7)
    over: list[dict[str, Any]] = [
        dict(row)
        for row in AffiliateReport.objects.filter(
            submitted_at__gte=week, log__status=ReconciliationStatus.AFFILIATE_OVERCLAIMED
        )
        .values("post__affiliate_id", "post__affiliate__name", "post__affiliate__trust_score")
        .annotate(n=Count("id"))
        .order_by("-n", "post__affiliate_id")[:top]
    ]

    logs = ReconciliationLog.objects.filter(report__submitted_at__gte=week)
    platform_rows = list(
        logs.values("report__post__platform__slug", "report__post__platform__name")
        .annotate(
            total=Count("report_id"),
            missing=Count("report_id", filter=Q(status=ReconciliationStatus.MISSING_PLATFORM_DATA)),
        )
        .order_by("report__post__platform__slug")
    )
    states = breaker_states or {}
    platforms = [
        {
            "slug": r["report__post__platform__slug"],
            "name": r["report__post__platform__name"],
            "total": r["total"],
            "missing": r["missing"],
            "missing_rate": r["missing"] / r["total"] if r["total"] else None,
            "breaker": states.get(r["report__post__platform__slug"]),
        }
        for r in platform_rows
    ]
    seen = {p["slug"] for p in platforms}
    platforms += [
        {"slug": slug, "name": slug, "total": 0, "missing": 0, "missing_rate": None, "breaker": state}
        for slug, state in sorted(states.items())
        if slug not in seen
    ]

    return Dashboard(
        open_by_type_severity=open_rows,
        severities=severities,
        open_total=sum(totals.values()),
        created_per_day=created,
        lowest_trust=list(Affiliate.objects.order_by("trust_score", "id")[:top]),
        most_overclaims=over,
        status_24h=_status_counts(AffiliateReport.objects.filter(submitted_at__gte=now - dt.timedelta(hours=24))),
        status_7d=_status_counts(AffiliateReport.objects.filter(submitted_at__gte=week)),
        platforms=platforms,
        queues=queues,
    )

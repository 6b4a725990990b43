"""Reads for the API: querysets scoped to their owner, loaded with what the serializers need.

Scoping is done here, not in the views: an affiliate's querysets start from ``affiliate=...`` and a
client's from ``client=...``, so "another tenant's id" is simply "not found" (404, never 403).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, OuterRef, Prefetch, QuerySet, Subquery

from reconciliation.models import (
    Affiliate,
    AffiliateAPIKey,
    AffiliateReport,
    AffiliateRiskAction,
    Campaign,
    Client,
    PlatformReport,
    Post,
    ReconciliationAttempt,
    ReconciliationLog,
    ReconciliationStatus,
    TrustEvent,
)

METRICS = ("views", "clicks", "conversions")


def _latest_report() -> QuerySet[AffiliateReport]:
    return AffiliateReport.objects.filter(post=OuterRef("pk")).order_by("-submitted_at", "-id")


def post_list(*, affiliate: Affiliate) -> QuerySet[Post]:
    """The affiliate's posts, newest first, annotated with their latest report id and its status."""
    latest = _latest_report()
    return (
        Post.objects.filter(affiliate=affiliate)
        .select_related("platform")
        .annotate(
            latest_report_id=Subquery(latest.values("id")[:1]),
            latest_status=Subquery(latest.values("log__status")[:1]),
        )
        .order_by("-created_at", "-id")
    )


def attach_latest_reports(posts: list[Post]) -> list[Post]:
    """Load the latest report (with its log) of each post in one query: ``post.latest_report``."""
    ids = [getattr(p, "latest_report_id", None) for p in posts]
    reports = {r.pk: r for r in AffiliateReport.objects.filter(pk__in=[i for i in ids if i]).select_related("log")}
    for p, report_id in zip(posts, ids, strict=True):
        p.latest_report = reports.get(report_id) if report_id else None  # type: ignore[attr-defined]
    return posts


def post_get(*, affiliate: Affiliate, post_id: int) -> Post | None:
    return Post.objects.select_related("platform", "campaign").filter(pk=post_id, affiliate=affiliate).first()


@dataclass(frozen=True)
class PostHistory:
    post: Post
    claims: list[AffiliateReport]
    snapshots: list[PlatformReport]


def post_history(*, post: Post, limit: int) -> PostHistory:
    """The post's latest ``limit`` claims and platform snapshots, each oldest first."""
    claims = list(
        AffiliateReport.objects.filter(post=post).select_related("log").order_by("-submitted_at", "-id")[:limit]
    )
    snapshots = list(PlatformReport.objects.filter(post=post).order_by("-fetched_at", "-id")[:limit])
    return PostHistory(post=post, claims=claims[::-1], snapshots=snapshots[::-1])


def report_get(*, affiliate: Affiliate, report_id: int) -> AffiliateReport | None:
    return (
        AffiliateReport.objects.select_related("post__platform", "post__campaign", "log")
        .prefetch_related(
            Prefetch("attempts", queryset=ReconciliationAttempt.objects.order_by("number")),
        )
        .filter(pk=report_id, post__affiliate=affiliate)
        .first()
    )


def campaign_list(*, client: Client | None) -> QuerySet[Campaign]:
    """The client's campaigns; ``client=None`` (staff) sees every campaign."""
    qs = Campaign.objects.select_related("client").prefetch_related("platforms").order_by("-created_at", "-id")
    return qs if client is None else qs.filter(client=client)


def campaign_get(*, client: Client | None, campaign_id: int) -> Campaign | None:
    return campaign_list(client=client).filter(pk=campaign_id).first()


def campaign_reports(*, campaign: Campaign) -> QuerySet[AffiliateReport]:
    return (
        AffiliateReport.objects.filter(post__campaign=campaign)
        .select_related("post__platform", "post__affiliate", "log")
        .order_by("-submitted_at", "-id")
    )


@dataclass
class Totals:
    posts: int = 0
    posts_verified: int = 0
    claimed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(METRICS, 0))
    verified: dict[str, int] = field(default_factory=lambda: dict.fromkeys(METRICS, 0))
    statuses: dict[str, int] = field(default_factory=dict)

    def add(self, row: Mapping[str, Any]) -> None:
        self.posts += 1
        for metric in METRICS:
            self.claimed[metric] += row[f"c_{metric}"] or 0
        if row["snap_id"] is not None:
            self.posts_verified += 1
            for metric in METRICS:
                self.verified[metric] += row[f"v_{metric}"] or 0
        status = row["status"] or ReconciliationStatus.PENDING
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "posts": self.posts,
            "posts_verified": self.posts_verified,
            "claimed": self.claimed,
            "verified": self.verified,
            "statuses": dict(sorted(self.statuses.items())),
        }


def campaign_totals(*, campaign: Campaign) -> dict[str, Any]:
    """Claimed vs verified, in total, per platform and per affiliate.

    Per post: the latest claim, and the latest platform snapshot (what the platform itself reported at
    the last attempt); ``statuses`` counts the latest claim's reconciliation status.
    """
    latest = _latest_report()
    snap = PlatformReport.objects.filter(post=OuterRef("pk")).order_by("-fetched_at", "-id")
    rows = (
        Post.objects.filter(campaign=campaign)
        .annotate(
            c_views=Subquery(latest.values("claimed_views")[:1]),
            c_clicks=Subquery(latest.values("claimed_clicks")[:1]),
            c_conversions=Subquery(latest.values("claimed_conversions")[:1]),
            status=Subquery(latest.values("log__status")[:1]),
            snap_id=Subquery(snap.values("id")[:1]),
            v_views=Subquery(snap.values("views")[:1]),
            v_clicks=Subquery(snap.values("clicks")[:1]),
            v_conversions=Subquery(snap.values("conversions")[:1]),
        )
        .values(
            "platform__slug",
            "affiliate_id",
            "affiliate__name",
            "c_views",
            "c_clicks",
            "c_conversions",
            "status",
            "snap_id",
            "v_views",
            "v_clicks",
            "v_conversions",
        )
        .iterator(chunk_size=2000)
    )
    total = Totals()
    by_platform: dict[str, Totals] = defaultdict(Totals)
    by_affiliate: dict[int, Totals] = defaultdict(Totals)
    names: dict[int, str] = {}
    for row in rows:
        total.add(row)
        by_platform[row["platform__slug"]].add(row)
        by_affiliate[row["affiliate_id"]].add(row)
        names[row["affiliate_id"]] = row["affiliate__name"]
    return {
        "total": total.as_dict(),
        "by_platform": [{"platform": slug, **t.as_dict()} for slug, t in sorted(by_platform.items())],
        "by_affiliate": [
            {"affiliate_id": aid, "affiliate_name": names[aid], **t.as_dict()}
            for aid, t in sorted(by_affiliate.items())
        ],
    }


def affiliate_counters(*, affiliate: Affiliate) -> dict[str, Any]:
    """Submission counters: totals from the affiliate row, posts and latest statuses counted live."""
    posts = Post.objects.filter(affiliate=affiliate).count()
    by_status = dict(
        AffiliateReport.objects.filter(post__affiliate=affiliate)
        .values_list("log__status")
        .annotate(n=Count("id"))
        .values_list("log__status", "n")
    )
    counts: dict[str, int] = {}
    for status, n in by_status.items():
        key = status or ReconciliationStatus.PENDING
        counts[key] = counts.get(key, 0) + n
    return {"posts": posts, "reports_by_status": dict(sorted(counts.items()))}


# --- the analysts' admin pages ----------------------------------------------------------------------------

#: How many rows each list on an analyst's page shows (the page stays bounded whatever the history).
PAGE_ROWS = 20
#: Ledger points drawn on a trust chart (the latest ones).
TRUST_POINTS = 200


def trust_bucket(score: Any) -> str:
    from django.conf import settings

    from reconciliation import rules

    return str(rules.bucket(score, settings.TRUST_SCORING))


def affiliate_trust_series(*, affiliate_id: int, limit: int = TRUST_POINTS) -> list[tuple[str, Any]]:
    """(when, score after) of the affiliate's latest ``limit`` ledger rows, oldest first: one query."""
    rows = list(
        TrustEvent.objects.filter(affiliate_id=affiliate_id)
        .order_by("-created_at", "-id")
        .values_list("created_at", "score_after")[:limit]
    )
    return [(f"{when:%Y-%m-%d %H:%M}", score) for when, score in reversed(rows)]


def affiliate_recent_claims(
    *, affiliate_id: int, limit: int = PAGE_ROWS, exclude_id: int | None = None
) -> list[AffiliateReport]:
    """The affiliate's latest claims with their post, platform, campaign and log: one query."""
    qs = (
        AffiliateReport.objects.filter(post__affiliate_id=affiliate_id)
        .select_related("post__platform", "post__campaign", "log")
        .order_by("-submitted_at", "-id")
    )
    if exclude_id is not None:
        qs = qs.exclude(pk=exclude_id)
    return list(qs[:limit])


@dataclass(frozen=True)
class AffiliateRisk:
    affiliate: Affiliate
    bucket: str
    accuracy_rate: float | None
    trust_series: list[tuple[str, Any]]
    claims_by_status: list[tuple[str, int]]
    claims_30d: int
    open_alerts: list[Any]
    open_alert_count: int
    recent_claims: list[AffiliateReport]
    api_keys: list[AffiliateAPIKey]
    risk_actions: list[AffiliateRiskAction]
    open_claims: int


def affiliate_risk(*, affiliate: Affiliate, now: dt.datetime) -> AffiliateRisk:
    """Everything the affiliate's risk page shows, in a fixed number of queries whatever its history."""
    from alerts.models import Alert

    since = now - dt.timedelta(days=30)
    by_status: dict[str, int] = {}
    for status, n in (
        AffiliateReport.objects.filter(post__affiliate=affiliate, submitted_at__gte=since)
        .values_list("log__status")
        .annotate(n=Count("id"))
        .values_list("log__status", "n")
    ):
        key = status or ReconciliationStatus.PENDING
        by_status[key] = by_status.get(key, 0) + n
    open_alerts_qs = Alert.objects.filter(affiliate=affiliate, status=Alert.Status.OPEN)
    total, accurate = affiliate.total_submissions, affiliate.accurate_submissions
    return AffiliateRisk(
        affiliate=affiliate,
        bucket=trust_bucket(affiliate.trust_score),
        accuracy_rate=accurate / total if total else None,
        trust_series=affiliate_trust_series(affiliate_id=affiliate.pk),
        claims_by_status=sorted(by_status.items()),
        claims_30d=sum(by_status.values()),
        open_alerts=list(
            open_alerts_qs.select_related("platform", "report").order_by("-created_at", "-id")[:PAGE_ROWS]
        ),
        open_alert_count=open_alerts_qs.count(),
        recent_claims=affiliate_recent_claims(affiliate_id=affiliate.pk),
        api_keys=list(AffiliateAPIKey.objects.filter(affiliate=affiliate).order_by("-created")),
        risk_actions=list(AffiliateRiskAction.objects.filter(affiliate=affiliate).select_related("user")[:PAGE_ROWS]),
        open_claims=ReconciliationLog.objects.filter(report__post__affiliate=affiliate, terminal=False).count(),
    )

"""A campaign's statement: what was claimed and what the platforms verified, over a period.

Reads only (a selector module beside ``selectors.py``). What is summed where:

- A claim is in the period when it was submitted in ``[start, end)``.
- *Verified* numbers of a claim are the platform's numbers of its latest conclusive verdict: the
  PlatformReport snapshot of the latest attempt whose status is the log's current, conclusive status
  (the attempt that produced it; a re-check that changed the verdict moves it). A claim without a
  conclusive status (pending, missing, incomplete) counts as claimed but not verified.
- Aggregates (per affiliate and platform, per day) are computed by PostgreSQL, claims and verdict
  snapshots in two grouped queries merged by key; only their rows reach Python. The per-claim lines are
  read with a server-side cursor, a chunk at a time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from django.conf import settings
from django.db import connection
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce, TruncDate

from alerts.models import Alert
from reconcile_project.config import TrustScoring
from reconciliation import rules
from reconciliation.models import (
    AffiliateReport,
    Campaign,
    PlatformReport,
    ReconciliationAttempt,
    ReconciliationStatus,
    TrustEvent,
)

METRICS = rules.METRICS
STATUSES: tuple[str, ...] = tuple(ReconciliationStatus.values)
CONCLUSIVE: tuple[str, ...] = tuple(str(s) for s in rules.CONCLUSIVE_STATUSES)
#: Rows fetched per round trip by the server-side cursor of the per-claim lines.
CHUNK_SIZE = 5000


@dataclass(frozen=True)
class Period:
    """Claims submitted at or after ``start`` and before ``end`` (half-open, aware datetimes)."""

    start: dt.datetime
    end: dt.datetime


def _verdict_snapshot() -> QuerySet[PlatformReport]:
    """The snapshot of the attempt that produced the outer claim's current conclusive status."""
    return PlatformReport.objects.filter(
        attempt__report_id=OuterRef("pk"),
        attempt__status=OuterRef("log__status"),
        attempt__status__in=CONCLUSIVE,
    ).order_by("-attempt__number")


def claims_in_period(*, campaign: Campaign, period: Period) -> QuerySet[AffiliateReport]:
    """The campaign's claims of the period, annotated with ``verified_id`` and ``verified_<metric>``.

    ``verified_id`` is the verdict snapshot's id (None: not verified); a metric is None when the claim
    is not verified.
    """
    snapshot = _verdict_snapshot()
    return AffiliateReport.objects.filter(
        post__campaign=campaign, submitted_at__gte=period.start, submitted_at__lt=period.end
    ).annotate(
        verified_id=Subquery(snapshot.values("id")[:1]),
        **{f"verified_{m}": Subquery(snapshot.values(m)[:1]) for m in METRICS},
    )


def verdict_snapshots(*, campaign: Campaign, period: Period) -> QuerySet[PlatformReport]:
    """The verdict snapshot of each verified claim of the period (at most one per claim).

    The same rule as ``claims_in_period``'s ``verified_id``, written as joins and one anti-join (no later
    attempt with the same status and a snapshot) so that PostgreSQL aggregates a million claims with hash
    joins instead of a correlated subquery per claim and per sum.
    """
    later = ReconciliationAttempt.objects.filter(
        report_id=OuterRef("attempt__report_id"),
        status=OuterRef("attempt__status"),
        number__gt=OuterRef("attempt__number"),
        platform_report__isnull=False,
    )
    return PlatformReport.objects.filter(
        attempt__report__post__campaign=campaign,
        attempt__report__submitted_at__gte=period.start,
        attempt__report__submitted_at__lt=period.end,
        attempt__status__in=CONCLUSIVE,
        attempt__status=F("attempt__report__log__status"),
    ).filter(~Exists(later))


def _claimed_sums() -> dict[str, Any]:
    out: dict[str, Any] = {"claims": Count("id")}
    for m in METRICS:
        out[f"claimed_{m}"] = Coalesce(Sum(f"claimed_{m}"), Value(0))
    return out


def _verified_sums() -> dict[str, Any]:
    out: dict[str, Any] = {"verified_claims": Count("id")}
    for m in METRICS:
        out[f"verified_{m}"] = Coalesce(Sum(m), Value(0))
    return out


def _status_counts() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in STATUSES:
        condition = Q(log__status=s)
        if s == ReconciliationStatus.PENDING:
            condition |= Q(log__isnull=True)  # no log row yet: PENDING, as the API shows it
        out[f"status_{s}"] = Count("id", filter=condition)
    return out


_NOT_VERIFIED: dict[str, int] = {"verified_claims": 0, **{f"verified_{m}": 0 for m in METRICS}}


@dataclass
class StatementRow:
    affiliate_id: int
    affiliate_name: str
    platform: str
    claims: int
    verified_claims: int
    claimed: dict[str, int]
    verified: dict[str, int]
    statuses: dict[str, int]
    trust_at_period_end: Decimal
    open_alerts: int

    @property
    def verification_rate(self) -> float | None:
        return round(self.verified_claims / self.claims, 4) if self.claims else None


@dataclass
class Statement:
    campaign: Campaign
    period: Period
    rows: list[StatementRow]
    total: dict[str, Any]
    daily: list[dict[str, Any]]


def _trust_at(affiliate_ids: list[int], end: dt.datetime) -> dict[int, Decimal]:
    """Each affiliate's score after its last ledger row before ``end`` (absent: no row)."""
    ordered = TrustEvent.objects.filter(affiliate_id__in=affiliate_ids, created_at__lt=end).order_by(
        "affiliate_id", "-created_at", "-id"
    )
    if connection.vendor == "postgresql":
        return dict(ordered.distinct("affiliate_id").values_list("affiliate_id", "score_after"))
    # The embedded SQLite of `make run` has no DISTINCT ON: the first row of each affiliate is its last.
    scores: dict[int, Decimal] = {}
    for affiliate_id, score in ordered.values_list("affiliate_id", "score_after"):
        scores.setdefault(affiliate_id, score)
    return scores


def _open_alerts(campaign: Campaign, period: Period) -> dict[tuple[int, str], int]:
    """OPEN alerts raised on the period's claims, per (affiliate, platform)."""
    rows = (
        Alert.objects.filter(
            status=Alert.Status.OPEN,
            report__post__campaign=campaign,
            report__submitted_at__gte=period.start,
            report__submitted_at__lt=period.end,
        )
        .values_list("report__post__affiliate_id", "report__post__platform__slug")
        .annotate(n=Count("id"))
        .values_list("report__post__affiliate_id", "report__post__platform__slug", "n")
    )
    return {(aid, slug): n for aid, slug, n in rows}


def campaign_statement(*, campaign: Campaign, period: Period) -> Statement:
    """Per affiliate and platform rows, their total, and a daily series (days in the active time zone)."""
    claims = AffiliateReport.objects.filter(
        post__campaign=campaign, submitted_at__gte=period.start, submitted_at__lt=period.end
    )
    snapshots = verdict_snapshots(campaign=campaign, period=period)
    grouped = (
        claims.values("post__affiliate_id", "post__affiliate__name", "post__platform__slug")
        .annotate(**_claimed_sums(), **_status_counts())
        .order_by("post__affiliate__name", "post__affiliate_id", "post__platform__slug")
    )
    verified_by_row = {
        (v.pop("attempt__report__post__affiliate_id"), v.pop("attempt__report__post__platform__slug")): v
        for v in cast(
            list[dict[str, Any]],
            list(
                snapshots.values("attempt__report__post__affiliate_id", "attempt__report__post__platform__slug")
                .annotate(**_verified_sums())
                .order_by()
            ),
        )
    }
    raw = cast(list[dict[str, Any]], list(grouped))  # django-stubs types only the grouped keys
    initial = rules.initial_score(cast(TrustScoring, settings.TRUST_SCORING))
    trust = _trust_at(sorted({r["post__affiliate_id"] for r in raw}), period.end)
    alerts = _open_alerts(campaign, period)
    rows = [
        StatementRow(
            affiliate_id=r["post__affiliate_id"],
            affiliate_name=r["post__affiliate__name"],
            platform=r["post__platform__slug"],
            claims=r["claims"],
            verified_claims=verified_by_row.get(key, _NOT_VERIFIED)["verified_claims"],
            claimed={m: r[f"claimed_{m}"] for m in METRICS},
            verified={m: verified_by_row.get(key, _NOT_VERIFIED)[f"verified_{m}"] for m in METRICS},
            statuses={s: r[f"status_{s}"] for s in STATUSES},
            trust_at_period_end=trust.get(r["post__affiliate_id"], initial),
            open_alerts=alerts.get((r["post__affiliate_id"], r["post__platform__slug"]), 0),
        )
        for r in raw
        for key in [(r["post__affiliate_id"], r["post__platform__slug"])]
    ]
    n_claims = sum(r.claims for r in rows)
    n_verified = sum(r.verified_claims for r in rows)
    total = {
        "claims": n_claims,
        "verified_claims": n_verified,
        "verification_rate": round(n_verified / n_claims, 4) if n_claims else None,
        "claimed": {m: sum(r.claimed[m] for r in rows) for m in METRICS},
        "verified": {m: sum(r.verified[m] for r in rows) for m in METRICS},
        "statuses": {s: sum(r.statuses[s] for r in rows) for s in STATUSES},
        "open_alerts": sum(r.open_alerts for r in rows),
    }
    claimed_daily = (
        claims.annotate(day=TruncDate("submitted_at")).values("day").annotate(**_claimed_sums()).order_by("day")
    )
    verified_daily = {
        v.pop("day"): v
        for v in cast(
            list[dict[str, Any]],
            list(
                snapshots.annotate(day=TruncDate("attempt__report__submitted_at"))
                .values("day")
                .annotate(**_verified_sums())
                .order_by()
            ),
        )
    }
    daily = [
        {
            "date": d["day"],
            "claims": d["claims"],
            "verified_claims": verified_daily.get(d["day"], _NOT_VERIFIED)["verified_claims"],
            "claimed": {m: d[f"claimed_{m}"] for m in METRICS},
            "verified": {m: verified_daily.get(d["day"], _NOT_VERIFIED)[f"verified_{m}"] for m in METRICS},
        }
        for d in cast(list[dict[str, Any]], list(claimed_daily))
    ]
    return Statement(campaign=campaign, period=period, rows=rows, total=total, daily=daily)


#: The per-claim lines: column names, in order (also the CSV header).
CLAIM_COLUMNS: tuple[str, ...] = (
    "claim_id",
    "submitted_at",
    "affiliate_id",
    "affiliate_name",
    "platform",
    "post_url",
    "status",
    "verified",
    *(f"claimed_{m}" for m in METRICS),
    *(f"verified_{m}" for m in METRICS),
)


def statement_claims(*, campaign: Campaign, period: Period, chunk_size: int = CHUNK_SIZE) -> Iterator[tuple]:
    """One tuple per claim of the period (CLAIM_COLUMNS), oldest first, from a server-side cursor.

    ``verified`` is a bool; the verified numbers are None when the claim is not verified.
    """
    rows = (
        claims_in_period(campaign=campaign, period=period)
        .annotate(status_or_pending=Coalesce(F("log__status"), Value(ReconciliationStatus.PENDING.value)))
        .order_by("submitted_at", "id")
        .values_list(
            "id",
            "submitted_at",
            "post__affiliate_id",
            "post__affiliate__name",
            "post__platform__slug",
            "post__url",
            "status_or_pending",
            "verified_id",
            *(f"claimed_{m}" for m in METRICS),
            *(f"verified_{m}" for m in METRICS),
        )
    )
    for row in rows.iterator(chunk_size=chunk_size):
        yield (*row[:7], row[7] is not None, *row[8:])


__all__ = [
    "CLAIM_COLUMNS",
    "STATUSES",
    "Period",
    "Statement",
    "StatementRow",
    "campaign_statement",
    "claims_in_period",
    "verdict_snapshots",
    "statement_claims",
]

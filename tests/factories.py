"""Small factories for tests: plain functions over the ORM, explicit about what they create."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from typing import Any

from django.db.models import F
from django.utils import timezone

from alerts.models import Alert
from platforms.models import Platform
from reconciliation.models import (
    Affiliate,
    AffiliateReport,
    Campaign,
    Client,
    PlatformReport,
    Post,
    ReconciliationAttempt,
    ReconciliationLog,
    TrustEvent,
)

_seq = itertools.count(1)

PLATFORM_NAMES = {
    "reddit": "Reddit",
    "instagram": "Instagram",
    "tiktok": "TikTok",
    "youtube": "YouTube",
    "x": "X",
    "meta": "Meta",
}


def platform(slug: str = "reddit", **fields: Any) -> Platform:
    obj, _ = Platform.objects.get_or_create(slug=slug, defaults={"name": PLATFORM_NAMES.get(slug, slug), **fields})
    return obj


def client(**fields: Any) -> Client:
    n = next(_seq)
    return Client.objects.create(**{"name": f"Client {n}", **fields})


def affiliate(**fields: Any) -> Affiliate:
    n = next(_seq)
    return Affiliate.objects.create(**{"name": f"Affiliate {n}", "email": f"affiliate{n}@example.com", **fields})


def campaign(*, platforms: tuple[str, ...] = ("reddit",), **fields: Any) -> Campaign:
    n = next(_seq)
    fields.setdefault("client", fields.pop("owner", None) or client())
    obj = Campaign.objects.create(
        **{"name": f"Campaign {n}", "start_date": timezone.localdate() - dt.timedelta(days=1), **fields}
    )
    obj.platforms.set([platform(s) for s in platforms])
    return obj


def post(**fields: Any) -> Post:
    n = next(_seq)
    fields.setdefault("campaign", campaign())
    fields.setdefault("affiliate", affiliate())
    fields.setdefault("platform", platform("reddit"))
    post_id = fields.pop("platform_post_id", f"p{n}")
    return Post.objects.create(platform_post_id=post_id, url=f"https://reddit.com/comments/{post_id}", **fields)


def report(*, with_log: bool = True, **fields: Any) -> AffiliateReport:
    fields.setdefault("post", post())
    obj = AffiliateReport.objects.create(
        **{
            "claimed_views": 1000,
            "claimed_clicks": 50,
            "claimed_conversions": 5,
            "submitted_at": timezone.now(),
            **fields,
        }
    )
    # As the submission service does: every report counts as a submission of its affiliate.
    Affiliate.objects.filter(pk=obj.post.affiliate_id).update(total_submissions=F("total_submissions") + 1)
    if with_log:
        ReconciliationLog.objects.create(report=obj, next_attempt_at=obj.submitted_at)
    return obj


def attempt(report: AffiliateReport, **fields: Any) -> ReconciliationAttempt:
    number = fields.pop("number", None) or report.attempts.count() + 1
    return ReconciliationAttempt.objects.create(
        **{"report": report, "number": number, "started_at": timezone.now(), "worker": "test", **fields}
    )


def snapshot(
    attempt: ReconciliationAttempt | None = None, *, post: Post | None = None, **fields: Any
) -> PlatformReport:
    """What the platform reported at ``attempt`` (as the attempt's apply step writes it), or for ``post``."""
    post = post or attempt.report.post  # type: ignore[union-attr]
    return PlatformReport.objects.create(
        **{"post": post, "attempt": attempt, "platform_id": post.platform_id, "fetched_at": timezone.now(), **fields}
    )


def trust_event(attempt: ReconciliationAttempt, **fields: Any) -> TrustEvent:
    """A ledger row for ``attempt``; the affiliate's score is left alone (the row is only evidence here)."""
    report = attempt.report
    return TrustEvent.objects.create(
        **{
            "affiliate_id": report.post.affiliate_id,
            "report": report,
            "attempt": attempt,
            "event": "overclaim",
            "delta": Decimal("-0.1000"),
            "effective_delta": Decimal("-0.1000"),
            "score_after": Decimal("0.4000"),
            **fields,
        }
    )


def alert(**fields: Any) -> Alert:
    alert_type = fields.pop("alert_type", Alert.Type.OVERCLAIM)
    return Alert.objects.create(
        **{
            "alert_type": alert_type,
            "category": Alert.Category.FRAUD,
            "severity": Alert.Severity.HIGH,
            "title": f"{alert_type} {next(_seq)}",
            "last_occurred_at": timezone.now(),
            **fields,
        }
    )


def score(value: str) -> Decimal:
    return Decimal(value)

"""Small factories for tests: plain functions over the ORM, explicit about what they create."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from typing import Any

from django.db.models import F
from django.utils import timezone

from platforms.models import Platform
from reconciliation.models import (
    Affiliate,
    AffiliateReport,
    Campaign,
    Client,
    Post,
    ReconciliationLog,
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


def score(value: str) -> Decimal:
    return Decimal(value)

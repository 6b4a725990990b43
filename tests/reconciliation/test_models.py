"""The database, not only Python, rejects what must never exist."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import cast

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from alerts.models import Alert
from reconciliation.models import (
    AffiliateAPIKey,
    AffiliateReport,
    ReconciliationAttempt,
    ReconciliationLog,
)
from tests import factories

pytestmark = pytest.mark.django_db


def rejected(fn) -> bool:
    try:
        with transaction.atomic():
            fn()
    except IntegrityError:
        return True
    return False


@pytest.mark.parametrize("field", ["claimed_views", "claimed_clicks", "claimed_conversions"])
def test_negative_claim_is_rejected_by_the_database(field: str) -> None:
    post = factories.post()
    values = {"claimed_views": 1, "claimed_clicks": 1, "claimed_conversions": 1, field: -1}
    assert rejected(lambda: AffiliateReport.objects.create(post=post, submitted_at=timezone.now(), **values))


def test_zero_claims_are_accepted() -> None:
    post = factories.post()
    AffiliateReport.objects.create(
        post=post, submitted_at=timezone.now(), claimed_views=0, claimed_clicks=0, claimed_conversions=0
    )


@pytest.mark.parametrize("score", ["-0.0001", "1.0001", "2"])
def test_trust_score_outside_0_1_is_rejected(score: str) -> None:
    affiliate = factories.affiliate()
    affiliate.trust_score = Decimal(score)
    assert rejected(affiliate.save)


@pytest.mark.parametrize("score", ["0", "0.0000", "1", "0.5"])
def test_trust_score_bounds_are_accepted(score: str) -> None:
    affiliate = factories.affiliate()
    affiliate.trust_score = Decimal(score)
    affiliate.save()
    affiliate.refresh_from_db()
    assert affiliate.trust_score == Decimal(score)


def test_new_affiliate_starts_at_half_trust() -> None:
    assert factories.affiliate().trust_score == Decimal("0.5")


def test_duplicate_attempt_number_is_rejected() -> None:
    report = factories.report()
    now = timezone.now()
    ReconciliationAttempt.objects.create(report=report, number=1, started_at=now)
    assert rejected(lambda: ReconciliationAttempt.objects.create(report=report, number=1, started_at=now))


def test_second_log_for_one_report_is_rejected() -> None:
    report = factories.report()
    assert rejected(lambda: ReconciliationLog.objects.create(report=report))


def test_second_alert_of_same_type_for_one_report_is_rejected() -> None:
    report = factories.report()
    fields = dict(category="FRAUD", severity="HIGH", title="over", report=report)
    Alert.objects.create(alert_type=Alert.Type.OVERCLAIM, **fields)
    assert rejected(lambda: Alert.objects.create(alert_type=Alert.Type.OVERCLAIM, **fields))
    # A different type for the same report is fine, and so are report-less alerts of one type.
    Alert.objects.create(alert_type=Alert.Type.HIGH_DISCREPANCY, **fields)
    Alert.objects.create(alert_type=Alert.Type.PLATFORM_OUTAGE, category="SYSTEM_HEALTH", severity="HIGH", title="a")
    Alert.objects.create(alert_type=Alert.Type.PLATFORM_OUTAGE, category="SYSTEM_HEALTH", severity="HIGH", title="b")


def test_same_post_twice_for_one_affiliate_is_rejected() -> None:
    post = factories.post()
    assert rejected(
        lambda: factories.post(
            campaign=post.campaign,
            affiliate=post.affiliate,
            platform=post.platform,
            platform_post_id=post.platform_post_id,
        )
    )


def test_same_post_for_another_affiliate_is_allowed() -> None:
    post = factories.post()
    factories.post(campaign=post.campaign, platform=post.platform, platform_post_id=post.platform_post_id)


def test_campaign_end_before_start_is_rejected() -> None:
    campaign = factories.campaign()
    campaign.end_date = campaign.start_date.replace(year=campaign.start_date.year - 1)
    assert rejected(campaign.save)


def test_api_key_is_stored_hashed() -> None:
    affiliate = factories.affiliate()
    obj, key = AffiliateAPIKey.objects.create_key(name="k", affiliate=affiliate)
    assert key not in obj.hashed_key
    assert cast(AffiliateAPIKey, AffiliateAPIKey.objects.get_from_key(key)).affiliate == affiliate


def test_str_of_every_model_is_readable() -> None:
    report = factories.report()
    attempt = ReconciliationAttempt.objects.create(report=report, number=1, started_at=timezone.now())
    for obj in (report, report.post, report.post.campaign, report.post.affiliate, report.log, attempt):
        assert str(obj) and "object (" not in str(obj)


@pytest.mark.django_db
def test_every_update_of_a_log_stamps_updated_at() -> None:
    """auto_now alone covers save(); the log is only ever written with queryset updates."""
    report = factories.report()
    old = timezone.now() - dt.timedelta(days=1)
    ReconciliationLog.objects.filter(report=report).update(updated_at=old)
    assert ReconciliationLog.objects.get(report=report).updated_at == old
    before = timezone.now()
    ReconciliationLog.objects.filter(report=report).update(dispatched_at=None)
    assert ReconciliationLog.objects.get(report=report).updated_at >= before

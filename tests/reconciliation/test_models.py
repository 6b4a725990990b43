"""The database, not only Python, rejects what must never exist."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, cast

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, models, transaction
from django.db.models import ProtectedError
from django.utils import timezone

from alerts.models import Alert
from platforms.adapters.base import PlatformMetrics
from platforms.fetcher import FetchOutcome
from reconciliation.models import (
    Affiliate,
    AffiliateAPIKey,
    AffiliateReport,
    PlatformReport,
    Post,
    ReconciliationAttempt,
    ReconciliationLog,
    TrustEvent,
)
from reconciliation.services.attempts import attempt_run
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


# --- The verdict trail is append-only: what it is evidence of cannot be deleted from under it. ---

#: The records the engine and the submission service write as evidence (claims, their state and history).
EVIDENCE = (Post, AffiliateReport, ReconciliationLog, ReconciliationAttempt, PlatformReport, TrustEvent, Alert)


@pytest.mark.parametrize("model", EVIDENCE, ids=lambda m: m.__name__)
def test_every_foreign_key_of_evidence_protects_its_target(model: type[models.Model]) -> None:
    """A cascade would delete evidence with its subject, SET_NULL would rewrite it: neither is allowed."""
    for field in model._meta.get_fields():
        if field.many_to_one or field.one_to_one:
            if field.concrete:
                assert field.remote_field is not None
                assert field.remote_field.on_delete is models.PROTECT, f"{model.__name__}.{field.name}"


@pytest.fixture
def trail() -> dict[str, Any]:
    """One of each piece of evidence, linked as the engine links them, and what each is evidence of."""
    report = factories.report()
    post = report.post
    attempt = factories.attempt(report)
    analyst = get_user_model().objects.create_user("analyst", "analyst@example.com", "pw", is_staff=True)
    first = factories.alert(alert_type=Alert.Type.OVERCLAIM, affiliate=post.affiliate)
    return {
        "report": report,
        "post": post,
        "affiliate": post.affiliate,
        "platform": post.platform,
        "attempt": attempt,
        "analyst": analyst,
        "first_alert": first,
        "log": report.log,
        "snapshot": factories.snapshot(attempt),
        # A platform's answer kept without an attempt (nullable link): the post alone is its subject.
        "loose_snapshot": factories.snapshot(post=post),
        "trust_event": factories.trust_event(attempt),
        "alert": factories.alert(
            alert_type=Alert.Type.OVERCLAIM,
            report=report,
            affiliate=post.affiliate,
            platform=post.platform,
            escalated_from=first,
            acknowledged_by=analyst,
            resolved_by=analyst,
        ),
    }


@pytest.mark.parametrize(
    ("target", "evidence"),
    [
        ("report", "log"),
        ("report", "attempt"),
        ("report", "trust_event"),
        ("report", "alert"),
        ("post", "snapshot"),
        ("post", "loose_snapshot"),
        ("attempt", "snapshot"),
        ("attempt", "trust_event"),
        ("affiliate", "trust_event"),
        ("affiliate", "alert"),
        ("platform", "alert"),
        ("first_alert", "alert"),
        ("analyst", "alert"),
    ],
)
def test_deleting_what_evidence_is_about_is_refused(trail: dict[str, Any], target: str, evidence: str) -> None:
    row = trail[evidence]
    with pytest.raises(ProtectedError) as refused:
        with transaction.atomic():
            trail[target].delete()
    assert row in refused.value.protected_objects
    assert type(row)._default_manager.filter(pk=row.pk).exists()


def test_a_reconciled_over_claim_keeps_its_whole_trail_when_its_report_is_deleted() -> None:
    """Through the engine: a report judged an over-claim has a log, an attempt, a snapshot, a ledger row and
    an alert; deleting the report is refused and every one of them is still there."""
    report = factories.report(claimed_views=1000, claimed_clicks=100, claimed_conversions=10)
    metrics = PlatformMetrics(100, 10, 1, raw={"sandbox": True})
    outcome = FetchOutcome(metrics=metrics, missing_fields=metrics.missing_fields(), attempts=1, duration_seconds=0.01)
    now = report.submitted_at + dt.timedelta(seconds=1)
    attempt_run(report_id=report.pk, worker="test", fetcher=lambda _c: outcome, clock=lambda: now)
    trail = {
        "log": ReconciliationLog.objects.filter(report=report),
        "attempt": ReconciliationAttempt.objects.filter(report=report),
        "snapshot": PlatformReport.objects.filter(attempt__report=report),
        "trust_event": TrustEvent.objects.filter(report=report),
        "alert": Alert.objects.filter(report=report, alert_type=Alert.Type.OVERCLAIM),
    }
    before = {name: rows.count() for name, rows in trail.items()}
    assert all(before.values()), before

    with pytest.raises(ProtectedError):
        with transaction.atomic():
            report.delete()
    with pytest.raises(ProtectedError):
        with transaction.atomic():
            Affiliate.objects.filter(pk=report.post.affiliate_id).delete()

    assert {name: rows.count() for name, rows in trail.items()} == before
    assert AffiliateReport.objects.filter(pk=report.pk).exists()


def test_an_affiliate_without_evidence_can_still_be_deleted_with_its_keys() -> None:
    """Keys are credentials, not evidence: they go with their affiliate (and may be deleted on their own)."""
    affiliate = factories.affiliate()
    key, _ = AffiliateAPIKey.objects.create_key(name="k", affiliate=affiliate)
    other, _ = AffiliateAPIKey.objects.create_key(name="k2", affiliate=affiliate)
    other.delete()
    affiliate.delete()
    assert not AffiliateAPIKey.objects.filter(pk=key.pk).exists()

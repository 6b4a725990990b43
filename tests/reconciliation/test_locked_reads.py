"""The attempt protocol's two locking reads in SQL return what the ORM would, and lock only the log row."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
from django.db import connections, transaction
from django.utils import timezone

from reconciliation.models import ReconciliationLog
from reconciliation.services import locked_reads
from tests import factories


def _report_with_everything_set():
    platform = factories.platform("youtube", config={"quota_rps": 12.5})
    campaign = factories.campaign(
        platforms=("youtube",),
        rule_overrides={"RECONCILIATION_SETTINGS": {"low_max": 0.12}},
        shadow_rule_overrides={"RECONCILIATION_SETTINGS": {"low_max": 0.15}},
        recheck_interval_hours=3.5,
        recheck_window_days=0.0,
    )
    post = factories.post(campaign=campaign, platform=platform, platform_post_id="lockedread1")
    report = factories.report(post=post, claimed_views=1234, claimed_clicks=56, claimed_conversions=7)
    lease = timezone.now() - dt.timedelta(minutes=1)
    ReconciliationLog.objects.filter(report=report).update(
        status="MATCHED", attempt_count=3, budget_attempts=2, lease_until=lease, trust_delta=Decimal("0.0100")
    )
    return report


@pytest.mark.django_db
def test_the_claim_read_returns_what_the_orm_returns() -> None:
    report = _report_with_everything_set()
    with transaction.atomic():
        row = locked_reads.CLAIM.fetch(report.pk)
    log = ReconciliationLog.objects.select_related("report__post__platform", "report__post__campaign").get(
        report=report
    )
    post = log.report.post
    assert row == {
        "log_id": log.pk,
        "report_id": log.report_id,
        "terminal": False,
        "next_attempt_at": log.next_attempt_at,
        "lease_until": log.lease_until,
        "attempt_count": 3,
        "budget_attempts": log.budget_attempts,
        "status": "MATCHED",
        "claimed_views": 1234,
        "claimed_clicks": 56,
        "claimed_conversions": 7,
        "submitted_at": log.report.submitted_at,
        "post_id": post.pk,
        "platform_id": post.platform_id,
        "platform_post_id": "lockedread1",
        "affiliate_id": post.affiliate_id,
        "platform_slug": "youtube",
        "platform_config": {"quota_rps": 12.5},
        "campaign_id": post.campaign_id,
        "rule_overrides": {"RECONCILIATION_SETTINGS": {"low_max": 0.12}},
        "shadow_rule_overrides": {"RECONCILIATION_SETTINGS": {"low_max": 0.15}},
        "recheck_interval_hours": 3.5,
        "recheck_window_days": 0.0,
    }
    # Converted as the ORM converts: aware datetimes, a bool, decoded JSON.
    assert row is not None
    assert row["submitted_at"].tzinfo is not None and row["lease_until"].tzinfo is not None
    assert row["terminal"] is False


@pytest.mark.django_db
def test_the_apply_read_returns_what_the_orm_returns() -> None:
    report = _report_with_everything_set()
    with transaction.atomic():
        row = locked_reads.APPLY.fetch(report.pk)
    log = ReconciliationLog.objects.get(report=report)
    assert row == {
        "log_id": log.pk,
        "report_id": log.report_id,
        "attempt_count": 3,
        "lease_until": log.lease_until,
        "budget_attempts": 2,
        "status": "MATCHED",
        "discrepancy_level": log.discrepancy_level,
        "trust_delta": Decimal("0.0100"),
    }
    assert isinstance(row["trust_delta"], Decimal)


@pytest.mark.django_db
def test_nulls_stay_none_and_an_unknown_report_is_none() -> None:
    report = factories.report()
    with transaction.atomic():
        row = locked_reads.CLAIM.fetch(report.pk)
        assert locked_reads.CLAIM.fetch(report.pk + 10_000) is None
        assert locked_reads.APPLY.fetch(report.pk + 10_000) is None
    assert row is not None
    assert (row["lease_until"], row["recheck_interval_hours"], row["recheck_window_days"]) == (None, None, None)
    assert row["platform_config"] == {} and row["rule_overrides"] == {}


@pytest.mark.django_db
def test_the_sql_locks_the_log_row_and_names_the_models_columns() -> None:
    sql, _converters = locked_reads.CLAIM._prepare(connections["default"])
    assert sql.endswith("FOR UPDATE OF l")
    assert f'FROM "{ReconciliationLog._meta.db_table}" l' in sql
    assert sql.count(" JOIN ") == 4


@pytest.mark.django_db(transaction=True)
def test_a_second_claimer_waits_for_the_first_to_commit() -> None:
    """The lock is real: while one transaction holds the row, another's read blocks until it commits."""
    report = factories.report()
    holding = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def first() -> None:
        try:
            with transaction.atomic():
                locked_reads.CLAIM.fetch(report.pk)
                holding.set()
                release.wait(10)
                order.append("first commits")
        finally:
            connections.close_all()

    thread = threading.Thread(target=first)
    thread.start()
    assert holding.wait(10)
    timer = threading.Timer(0.5, release.set)
    timer.start()
    with transaction.atomic():
        locked_reads.APPLY.fetch(report.pk)
        order.append("second reads")
    thread.join(10)
    timer.cancel()
    assert order == ["first commits", "second reads"]


@pytest.mark.django_db
def test_the_affiliate_read_keeps_a_score_of_exactly_zero() -> None:
    affiliate = factories.affiliate(name="Zero", trust_score=Decimal("0.0000"))
    with transaction.atomic():
        row = locked_reads.AFFILIATE.fetch(affiliate.pk)
        assert locked_reads.AFFILIATE.fetch(affiliate.pk + 10_000) is None
    assert row == {"affiliate_id": affiliate.pk, "trust_score": Decimal("0.0000"), "name": "Zero"}
    assert row is not None and isinstance(row["trust_score"], Decimal)


@pytest.mark.django_db
def test_a_claim_carries_the_platform_quota_and_the_campaign_rules_read_through_the_sql() -> None:
    from reconciliation.services.attempts import ClaimedAttempt, attempt_claim

    report = _report_with_everything_set()
    claimed = attempt_claim(report_id=report.pk, now=timezone.now(), worker="test")
    assert isinstance(claimed, ClaimedAttempt)
    assert (claimed.platform_slug, claimed.platform_post_id, claimed.quota_rps) == ("youtube", "lockedread1", 12.5)
    assert claimed.recheck == (3.5, 0.0)
    assert claimed.ruleset.reconciliation.low_max == 0.12
    assert (claimed.number, claimed.previous_status, claimed.is_recheck) == (4, "MATCHED", True)
    assert (claimed.claim.views, claimed.claim.clicks, claimed.claim.conversions) == (1234, 56, 7)

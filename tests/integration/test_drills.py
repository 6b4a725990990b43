"""Fault drills with real Celery workers, beat, PostgreSQL, Redis and the platform sandbox over HTTP."""

from __future__ import annotations

import time

import pytest

from alerts.models import Alert
from platforms.models import Platform
from reconcile_project.worker_exceptions import recent_worker_exceptions
from reconciliation.models import ReconciliationAttempt, ReconciliationLog
from reconciliation.services.dispatch import send_reconcile
from tests import factories
from tests.integration.conftest import wait_until

pytestmark = [pytest.mark.integration]

LEASE_SECONDS = 5
MAX_ATTEMPTS = 3


def attempt_counts(ids: list[int]) -> dict[int, int]:
    return {report_id: ReconciliationAttempt.objects.filter(report_id=report_id).count() for report_id in ids}


def test_a_zero_quota_with_claims_in_flight_ends_every_claim_missing_within_its_budget(
    processes, sandbox_client
) -> None:
    """Issue 10's acceptance drill: ``quota_rps`` set to 0 under load must not make anything retry forever.

    Before the fix every attempt after the change raised in the fetch, the task failed, the lease expired
    and the sweeper sent the report again: a new attempt row every lease period, never terminal.
    """
    # A short schedule so the whole budget plays out in seconds, and a short lease so a loop would show.
    campaign = factories.campaign(
        platforms=("youtube",),
        rule_overrides={
            "RETRY_POLICY": {
                "initial_delay_minutes": 0.02,
                "max_attempts": MAX_ATTEMPTS,
                "jitter_pct": 0,
                "lease_seconds": LEASE_SECONDS,
            }
        },
    )
    platform = factories.platform("youtube")
    # Slow answers keep the first claims in flight when the configuration goes bad; the posts are unknown to
    # the platform, so those first attempts are real failures and every report is still retrying after them.
    sandbox_client.set_fault("youtube", latency_ms=800)
    reports = []
    for index in range(6):
        post = factories.post(campaign=campaign, platform=platform, platform_post_id=f"zeroquota{index:02d}")
        sandbox_client.set_post("youtube", post.platform_post_id, exists=False)
        reports.append(factories.report(post=post))
    ids = [report.pk for report in reports]
    processes.worker("w1", concurrency=4)
    processes.beat(RETRY_POLICY__LEASE_SECONDS=str(LEASE_SECONDS))
    for report_id in ids:
        assert send_reconcile(report_id)
    wait_until(
        lambda: ReconciliationAttempt.objects.filter(report_id__in=ids, outcome="RUNNING").exists(),
        timeout=30,
        what="claims in flight",
    )

    # A bad row, as a raw SQL fix or a migration would write it: around the model's validation.
    Platform.objects.filter(pk=platform.pk).update(config={"quota_rps": 0})

    wait_until(
        lambda: ReconciliationLog.objects.filter(report_id__in=ids, terminal=True).count() == len(ids),
        timeout=90,
        what="every claim to end",
    )
    for report_id in ids:
        log = ReconciliationLog.objects.get(report_id=report_id)
        assert (log.status, log.missing_reason) == ("MISSING_PLATFORM_DATA", "internal_error")
        assert log.next_attempt_at is None
        assert "quota_rps" in log.error_message
        assert log.budget_attempts == MAX_ATTEMPTS
        outcomes = list(ReconciliationAttempt.objects.filter(report_id=report_id).values_list("outcome", flat=True))
        assert len(outcomes) == MAX_ATTEMPTS and "ERROR" in outcomes and "RUNNING" not in outcomes, outcomes
        assert Alert.objects.filter(report_id=report_id, alert_type="MISSING_DATA").count() == 1
    assert any(entry["type"] == "PlatformConfigError" for entry in recent_worker_exceptions())

    # Nothing comes back: over more than two lease periods (and many sweeps) no report gains an attempt.
    before = attempt_counts(ids)
    time.sleep(LEASE_SECONDS * 2.5)
    assert attempt_counts(ids) == before
    assert ReconciliationLog.objects.filter(report_id__in=ids, terminal=True).count() == len(ids)

"""The attempt protocol and the trust ledger, through the services, with synthetic fetch outcomes."""

from __future__ import annotations

import datetime as dt
import functools
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from alerts.models import Alert
from platforms.adapters.base import PlatformMetrics
from platforms.fetcher import FetchOutcome
from platforms.models import Platform
from reconcile_project.jsonsafe import json_safe
from reconcile_project.worker_exceptions import recent_worker_exceptions
from reconciliation.models import Affiliate, Campaign, ReconciliationAttempt, ReconciliationLog, TrustEvent
from reconciliation.services.attempts import (
    AttemptResult,
    SkipReason,
    attempt_apply,
    attempt_claim,
    attempt_run,
    reports_reopen,
)
from tests import factories

pytestmark = pytest.mark.django_db

CLAIM: dict[str, Any] = {"claimed_views": 1000, "claimed_clicks": 100, "claimed_conversions": 10}


def ok(views: int | None = 1000, clicks: int | None = 100, conversions: int | None = 10) -> FetchOutcome:
    metrics = PlatformMetrics(views, clicks, conversions, raw={"sandbox": True})
    return FetchOutcome(metrics=metrics, missing_fields=metrics.missing_fields(), attempts=1, duration_seconds=0.01)


def failed(code: str, retry_after: float | None = None) -> FetchOutcome:
    reached = 0 if code in ("circuit_open", "rate_limited") else 1
    return FetchOutcome(
        metrics=None,
        error_code=code,
        error_message=code,
        attempts=reached,
        retry_after_seconds=retry_after,
        rate_limited=code == "rate_limited",
    )


def run(report, outcome: FetchOutcome, now: dt.datetime):
    return attempt_run(report_id=report.pk, worker="test", fetcher=lambda _c: outcome, clock=lambda: now)


@pytest.fixture
def report():
    return factories.report(**CLAIM)


def test_matched_moves_trust_up_and_schedules_a_recheck(report) -> None:
    now = report.submitted_at + dt.timedelta(seconds=1)
    result = run(report, ok(), now)
    assert isinstance(result, AttemptResult) and result.status == "MATCHED"
    log = ReconciliationLog.objects.get(report=report)
    assert log.trust_delta == Decimal("0.01") and log.next_attempt_at == report.submitted_at + dt.timedelta(hours=6)
    assert log.lease_until is None and log.attempt_count == 1 and log.confidence_ratio == 1.0
    affiliate = Affiliate.objects.get(pk=report.post.affiliate_id)
    assert affiliate.trust_score == Decimal("0.51") and affiliate.accurate_submissions == 1
    assert report.post.platform_reports.count() == 1


def test_not_due_leased_and_terminal_reports_are_skipped(report) -> None:
    now = report.submitted_at
    log = ReconciliationLog.objects.get(report=report)
    log.next_attempt_at = now + dt.timedelta(minutes=1)
    log.save()
    assert attempt_claim(report_id=report.pk, now=now) == SkipReason.NOT_DUE
    log.next_attempt_at = now
    log.lease_until = now + dt.timedelta(seconds=30)
    log.save()
    assert attempt_claim(report_id=report.pk, now=now) == SkipReason.LEASED
    log.lease_until = None
    log.terminal = True
    log.save()
    assert attempt_claim(report_id=report.pk, now=now) == SkipReason.TERMINAL
    assert attempt_claim(report_id=987654321, now=now) == SkipReason.NOT_FOUND
    assert not ReconciliationAttempt.objects.filter(report=report).exists()


def test_a_second_claim_while_leased_does_nothing_and_a_stale_apply_is_discarded(report) -> None:
    now = report.submitted_at
    first = attempt_claim(report_id=report.pk, now=now, worker="a")
    assert attempt_claim(report_id=report.pk, now=now + dt.timedelta(seconds=1), worker="b") == SkipReason.LEASED
    # The lease expires (worker a is stuck); worker c claims attempt 2 and finishes.
    later = now + dt.timedelta(seconds=121)
    second = attempt_claim(report_id=report.pk, now=later, worker="c")
    assert not isinstance(second, str) and second.number == 2
    assert not isinstance(first, str)
    assert isinstance(attempt_apply(claimed=second, outcome=ok(), now=later), AttemptResult)
    # Worker a wakes up: its lease is gone, its result is discarded, no second ledger row.
    assert attempt_apply(claimed=first, outcome=ok(views=100), now=later) == SkipReason.LEASE_LOST
    assert TrustEvent.objects.filter(report=report).count() == 1
    outcomes = dict(ReconciliationAttempt.objects.filter(report=report).values_list("number", "outcome"))
    assert outcomes == {1: "DISCARDED", 2: "SUCCESS"}


def test_recheck_that_changes_the_status_corrects_trust(report) -> None:
    now = report.submitted_at
    run(report, ok(), now)
    recheck_at = report.submitted_at + dt.timedelta(hours=6)
    result = run(report, ok(views=500), recheck_at)  # the platform purged invalid traffic: now an over-claim
    assert result.status == "AFFILIATE_OVERCLAIMED"
    deltas = list(TrustEvent.objects.filter(report=report).order_by("id").values_list("delta", flat=True))
    assert deltas == [Decimal("0.01"), Decimal("-0.11")]
    assert sum(deltas) == Decimal("-0.10")
    affiliate = Affiliate.objects.get(pk=report.post.affiliate_id)
    assert affiliate.trust_score == Decimal("0.40") and affiliate.accurate_submissions == 0
    assert Alert.objects.filter(report=report, alert_type="OVERCLAIM").count() == 1


def test_recheck_with_a_failed_fetch_keeps_the_conclusive_result(report) -> None:
    run(report, ok(), report.submitted_at)
    run(report, failed("timeout"), report.submitted_at + dt.timedelta(hours=6))
    log = ReconciliationLog.objects.get(report=report)
    assert log.status == "MATCHED" and log.trust_delta == Decimal("0.01")
    assert log.next_attempt_at == report.submitted_at + dt.timedelta(hours=12)


def test_a_score_of_exactly_zero_stays_zero(report) -> None:
    Affiliate.objects.filter(pk=report.post.affiliate_id).update(trust_score=Decimal("0"))
    run(report, ok(views=100), report.submitted_at)  # an over-claim: the score cannot go lower
    affiliate = Affiliate.objects.get(pk=report.post.affiliate_id)
    assert affiliate.trust_score == Decimal("0")
    event = TrustEvent.objects.get(report=report)
    assert event.delta == Decimal("-0.10") and event.effective_delta == Decimal("0") and event.score_after == 0


def test_falling_into_critical_raises_low_trust_once(report) -> None:
    Affiliate.objects.filter(pk=report.post.affiliate_id).update(trust_score=Decimal("0.30"))
    run(report, ok(views=100), report.submitted_at)
    assert Alert.objects.filter(alert_type="LOW_TRUST", affiliate_id=report.post.affiliate_id).count() == 1


def test_deferral_spends_no_budget_and_follows_retry_after_plus_jitter(report) -> None:
    now = report.submitted_at
    run(report, failed("circuit_open", retry_after=42), now)
    log = ReconciliationLog.objects.get(report=report)
    assert log.status == "MISSING_PLATFORM_DATA" and log.missing_reason == "circuit_open"
    assert log.budget_attempts == 0 and log.next_attempt_at is not None
    # Never earlier than the cooldown, at most deferral_jitter_pct (25 %) later.
    assert now + dt.timedelta(seconds=42) <= log.next_attempt_at <= now + dt.timedelta(seconds=42 * 1.25)


def test_deferrals_write_no_attempt_rows_and_are_counted_on_the_log(report) -> None:
    now = report.submitted_at
    for minute in range(3):  # three cooldowns of an outage
        at = now + dt.timedelta(minutes=minute)
        ReconciliationLog.objects.filter(report=report).update(next_attempt_at=at)
        result = run(report, failed("circuit_open" if minute < 2 else "rate_limited", retry_after=60), at)
        assert isinstance(result, AttemptResult) and result.attempt_number == 1
    log = ReconciliationLog.objects.get(report=report)
    assert not ReconciliationAttempt.objects.filter(report=report).exists()
    assert (log.deferral_count, log.attempt_count, log.budget_attempts) == (3, 0, 0)
    assert log.last_deferred_at == now + dt.timedelta(minutes=2) and log.lease_until is None
    # The platform comes back: the first real attempt is number 1.
    ReconciliationLog.objects.filter(report=report).update(next_attempt_at=now + dt.timedelta(minutes=3))
    run(report, ok(), now + dt.timedelta(minutes=3))
    attempts = list(ReconciliationAttempt.objects.filter(report=report).values_list("number", "outcome"))
    assert attempts == [(1, "SUCCESS")]
    assert ReconciliationLog.objects.get(report=report).deferral_count == 3


def test_a_stale_apply_after_a_deferral_gave_its_number_back_is_still_refused(report) -> None:
    now = report.submitted_at
    stale = attempt_claim(report_id=report.pk, now=now, worker="stuck")
    assert not isinstance(stale, str)
    later = now + dt.timedelta(seconds=121)  # the stuck worker's lease expired
    second = attempt_claim(report_id=report.pk, now=later, worker="b")
    assert not isinstance(second, str) and second.number == 2
    attempt_apply(claimed=second, outcome=failed("circuit_open", retry_after=5), now=later)
    assert ReconciliationLog.objects.get(report=report).attempt_count == 1  # number 2 given back
    assert attempt_apply(claimed=stale, outcome=ok(), now=later) == SkipReason.LEASE_LOST
    assert not TrustEvent.objects.filter(report=report).exists()
    outcomes = list(ReconciliationAttempt.objects.filter(report=report).values_list("number", "outcome"))
    assert outcomes == [(1, "DISCARDED")]


def test_a_deferral_that_ends_the_window_keeps_its_row_and_alerts(report) -> None:
    now = report.submitted_at + dt.timedelta(hours=23, minutes=59, seconds=30)
    ReconciliationLog.objects.filter(report=report).update(next_attempt_at=now)
    result = run(report, failed("circuit_open", retry_after=60), now)
    assert isinstance(result, AttemptResult) and result.terminal
    assert list(ReconciliationAttempt.objects.filter(report=report).values_list("outcome", flat=True)) == ["DEFERRED"]
    assert Alert.objects.filter(report=report, alert_type="MISSING_DATA").count() == 1


# --- Item: nothing retries forever (a crash after the claim is a recorded outcome) -------------------------


def crash(_claimed: Any) -> FetchOutcome:
    raise RuntimeError("boom in the fetch")


def test_a_crash_in_the_fetch_is_a_recorded_internal_error_that_spends_budget(report) -> None:
    now = report.submitted_at
    result = attempt_run(report_id=report.pk, worker="test", fetcher=crash, clock=lambda: now)
    assert isinstance(result, AttemptResult)
    assert (result.status, result.missing_reason, result.terminal) == ("MISSING_PLATFORM_DATA", "internal_error", False)
    attempt = ReconciliationAttempt.objects.get(report=report)
    assert (attempt.outcome, attempt.missing_reason, attempt.finished_at) == ("ERROR", "internal_error", now)
    log = ReconciliationLog.objects.get(report=report)
    assert (log.status, log.missing_reason, log.budget_attempts, log.lease_until) == (
        "MISSING_PLATFORM_DATA",
        "internal_error",
        1,
        None,
    )
    assert log.error_message == "RuntimeError: boom in the fetch"
    assert log.next_attempt_at is not None and log.next_attempt_at > now  # backoff, not the next sweep
    recorded = [e for e in recent_worker_exceptions() if e["report_id"] == report.pk]
    assert recorded and recorded[0]["type"] == "RuntimeError" and "boom" in recorded[0]["message"]


def test_crashes_end_terminal_missing_with_one_alert_within_the_budget(report) -> None:
    now = report.submitted_at
    for _ in range(5):
        attempt_run(report_id=report.pk, worker="test", fetcher=crash, clock=functools.partial(lambda at: at, now))
        now = ReconciliationLog.objects.get(report=report).next_attempt_at or now
    log = ReconciliationLog.objects.get(report=report)
    assert log.terminal and log.next_attempt_at is None and log.missing_reason == "internal_error"
    assert log.budget_attempts == 5
    assert ReconciliationAttempt.objects.filter(report=report, outcome="ERROR").count() == 5
    alert = Alert.objects.get(report=report, alert_type="MISSING_DATA")
    assert alert.threshold_breached["missing_reason"] == "internal_error"
    assert attempt_claim(report_id=report.pk, now=now + dt.timedelta(days=1)) == SkipReason.TERMINAL


def test_a_zero_quota_in_the_platform_config_fails_the_attempt_recorded(report) -> None:
    # A row written around validation, as a bad migration or a raw SQL fix would.
    Platform.objects.filter(pk=report.post.platform_id).update(config={"quota_rps": 0})
    result = attempt_run(report_id=report.pk, worker="test", clock=lambda: report.submitted_at)
    assert isinstance(result, AttemptResult) and result.missing_reason == "internal_error"
    log = ReconciliationLog.objects.get(report=report)
    assert "quota_rps" in log.error_message and log.lease_until is None


def test_campaign_overrides_that_no_longer_validate_fail_the_attempt_recorded(report) -> None:
    Campaign.objects.filter(pk=report.post.campaign_id).update(
        rule_overrides={"RECONCILIATION_SETTINGS": {"overclaim_critical_pct": "Infinity"}}
    )
    result = run(report, ok(), report.submitted_at)
    assert isinstance(result, AttemptResult) and result.missing_reason == "internal_error"
    assert "overclaim_critical_pct" in ReconciliationLog.objects.get(report=report).error_message


def test_a_write_the_database_refuses_in_the_apply_is_recorded_in_a_fresh_transaction(report) -> None:
    from django.db import connection

    # A real refusal by PostgreSQL inside the apply's transaction (as an Infinity in a JSON column was).
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION refuse_snapshot() RETURNS trigger AS $$ BEGIN"
            " RAISE EXCEPTION 'snapshot refused'; END $$ LANGUAGE plpgsql;"
            " CREATE TRIGGER refuse_snapshot BEFORE INSERT ON reconciliation_platformreport"
            " FOR EACH ROW EXECUTE FUNCTION refuse_snapshot();"
        )
    result = run(report, ok(), report.submitted_at)
    assert isinstance(result, AttemptResult) and result.missing_reason == "internal_error"
    log = ReconciliationLog.objects.get(report=report)
    assert log.status == "MISSING_PLATFORM_DATA" and "snapshot refused" in log.error_message
    assert not TrustEvent.objects.filter(report=report).exists()  # the verdict's writes were rolled back
    assert ReconciliationAttempt.objects.get(report=report).outcome == "ERROR"


def test_a_crash_during_a_recheck_keeps_the_verdict(report) -> None:
    run(report, ok(), report.submitted_at)
    recheck = report.submitted_at + dt.timedelta(hours=6)
    attempt_run(report_id=report.pk, worker="test", fetcher=crash, clock=lambda: recheck)
    log = ReconciliationLog.objects.get(report=report)
    assert log.status == "MATCHED" and log.trust_delta == Decimal("0.01")
    assert log.next_attempt_at == report.submitted_at + dt.timedelta(hours=12)
    assert not Alert.objects.filter(report=report).exists()


def test_an_abandoned_last_attempt_closes_the_report_instead_of_looping(report) -> None:
    now = report.submitted_at
    ReconciliationLog.objects.filter(report=report).update(budget_attempts=4)
    first = attempt_claim(report_id=report.pk, now=now, worker="killed")  # the worker dies: nothing recorded
    assert not isinstance(first, str)
    later = now + dt.timedelta(seconds=121)
    assert attempt_claim(report_id=report.pk, now=later, worker="next") == SkipReason.EXHAUSTED
    log = ReconciliationLog.objects.get(report=report)
    assert log.terminal and log.next_attempt_at is None and log.lease_until is None
    assert (log.status, log.missing_reason, log.budget_attempts) == ("MISSING_PLATFORM_DATA", "internal_error", 5)
    assert Alert.objects.filter(report=report, alert_type="MISSING_DATA").count() == 1
    assert list(ReconciliationAttempt.objects.filter(report=report).values_list("outcome", flat=True)) == ["DISCARDED"]


def test_an_abandoned_attempt_past_the_window_closes_the_report(report) -> None:
    now = report.submitted_at + dt.timedelta(hours=23, minutes=59)
    ReconciliationLog.objects.filter(report=report).update(next_attempt_at=now)
    assert not isinstance(attempt_claim(report_id=report.pk, now=now, worker="killed"), str)
    later = now + dt.timedelta(seconds=121)  # past claimed_at + 24 h
    assert attempt_claim(report_id=report.pk, now=later, worker="next") == SkipReason.EXHAUSTED
    log = ReconciliationLog.objects.get(report=report)
    assert log.terminal and log.budget_attempts == 1 and log.missing_reason == "internal_error"
    alert = Alert.objects.get(report=report, alert_type="MISSING_DATA")
    assert alert.threshold_breached == {"missing_reason": "internal_error", "reason": "window_expired"}


def test_an_abandoned_attempt_with_budget_left_is_retried_at_once(report) -> None:
    now = report.submitted_at
    assert not isinstance(attempt_claim(report_id=report.pk, now=now, worker="killed"), str)
    later = now + dt.timedelta(seconds=121)
    second = attempt_claim(report_id=report.pk, now=later, worker="next")
    assert not isinstance(second, str) and second.number == 2
    assert ReconciliationLog.objects.get(report=report).budget_attempts == 1


def test_json_safe_names_non_finite_floats() -> None:
    value = {"a": float("inf"), "b": [float("-inf"), float("nan"), 1.5], "c": {"d": (2, "x")}}
    assert json_safe(value) == {"a": "Infinity", "b": ["-Infinity", "NaN", 1.5], "c": {"d": [2, "x"]}}


def test_a_recheck_that_confirms_the_same_overclaim_does_not_raise_again(report) -> None:
    run(report, ok(views=500), report.submitted_at)
    run(report, ok(views=500), report.submitted_at + dt.timedelta(hours=6))
    alert = Alert.objects.get(report=report, alert_type="OVERCLAIM")
    assert alert.occurrence_count == 1


def test_a_recheck_that_changes_the_overclaim_level_raises_again(report) -> None:
    run(report, ok(views=800), report.submitted_at)  # 25 % over: HIGH
    assert Alert.objects.get(report=report, alert_type="OVERCLAIM").severity == "HIGH"
    run(report, ok(views=800), report.submitted_at + dt.timedelta(hours=6))  # the same: nothing
    assert Alert.objects.get(report=report, alert_type="OVERCLAIM").occurrence_count == 1
    run(report, ok(views=600), report.submitted_at + dt.timedelta(hours=12))  # 67 % over: CRITICAL
    alert = Alert.objects.get(report=report, alert_type="OVERCLAIM")
    assert (alert.occurrence_count, alert.severity) == (2, "CRITICAL")


def test_missing_budget_exhaustion_is_terminal_with_one_alert(report) -> None:
    now = report.submitted_at
    for _ in range(5):
        run(report, failed("fetch_error"), now)
        log = ReconciliationLog.objects.get(report=report)
        now = log.next_attempt_at or now
    log = ReconciliationLog.objects.get(report=report)
    assert log.terminal and log.next_attempt_at is None and log.budget_attempts == 5
    assert Alert.objects.filter(report=report, alert_type="MISSING_DATA").count() == 1
    assert not TrustEvent.objects.filter(report=report).exists()
    # A manual re-run of a terminal report takes one more attempt and stays at one alert.
    reports_reopen(report_ids=[report.pk], now=now)
    run(report, failed("fetch_error"), now)
    assert Alert.objects.get(report=report, alert_type="MISSING_DATA").occurrence_count == 2


def test_incomplete_gets_one_more_attempt_then_stops(report) -> None:
    now = report.submitted_at
    run(report, ok(conversions=None), now)
    log = ReconciliationLog.objects.get(report=report)
    assert log.status == "INCOMPLETE_PLATFORM_DATA" and log.next_attempt_at == now + dt.timedelta(minutes=15)
    run(report, ok(conversions=None), log.next_attempt_at)
    log = ReconciliationLog.objects.get(report=report)
    assert log.terminal and log.next_attempt_at is None
    assert not TrustEvent.objects.filter(report=report).exists()


# --- Property: the trust invariant under random outcomes, re-checks and duplicate deliveries -------------

OUTCOMES = st.one_of(
    st.builds(ok, views=st.integers(0, 3000), clicks=st.integers(0, 300), conversions=st.integers(0, 30)),
    st.builds(ok, views=st.integers(0, 3000), clicks=st.integers(0, 300), conversions=st.none()),
    st.sampled_from(["not_found", "fetch_error", "timeout", "auth_error", "circuit_open", "rate_limited"]).map(failed),
)
STEP = st.tuples(OUTCOMES, st.integers(1, 3), st.integers(0, 7 * 24 * 60))  # outcome, deliveries, minutes later


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], database=None)
@given(steps=st.lists(STEP, min_size=1, max_size=8), start_score=st.sampled_from(["0", "0.05", "0.5", "0.97", "1"]))
def test_trust_invariant_holds_for_any_sequence(steps, start_score) -> None:
    affiliate = factories.affiliate(trust_score=Decimal(start_score))
    report = factories.report(post=factories.post(affiliate=affiliate), **CLAIM)
    last_conclusive_delta = Decimal("0")
    now = report.submitted_at
    for outcome, deliveries, minutes in steps:
        now = now + dt.timedelta(minutes=minutes)
        log = ReconciliationLog.objects.get(report=report)
        if log.terminal or log.next_attempt_at is None or log.next_attempt_at > now:
            reports_reopen(report_ids=[report.pk], now=now)  # a re-check or a staff re-run
        results = [run(report, outcome, now) for _ in range(deliveries)]
        done = [r for r in results if isinstance(r, AttemptResult)]
        assert len(done) == 1  # duplicate deliveries of the same message do nothing
        if done[0].status in {
            "MATCHED",
            "DISCREPANCY_LOW",
            "DISCREPANCY_MEDIUM",
            "DISCREPANCY_HIGH",
            "AFFILIATE_OVERCLAIMED",
        }:
            last_conclusive_delta = {
                "MATCHED": Decimal("0.01"),
                "DISCREPANCY_LOW": Decimal("-0.01"),
                "DISCREPANCY_MEDIUM": Decimal("-0.03"),
                "DISCREPANCY_HIGH": Decimal("-0.05"),
                "AFFILIATE_OVERCLAIMED": Decimal("-0.10"),
            }[done[0].status]
        ledger = list(TrustEvent.objects.filter(report=report).values_list("delta", "effective_delta"))
        assert sum((d for d, _ in ledger), Decimal("0")) == last_conclusive_delta
        affiliate.refresh_from_db()
        assert Decimal("0") <= affiliate.trust_score <= Decimal("1")
        assert affiliate.trust_score == Decimal(start_score) + sum((e for _, e in ledger), Decimal("0"))
        assert ReconciliationAttempt.objects.filter(report=report, number__gt=0).count() == (
            ReconciliationLog.objects.get(report=report).attempt_count
        )

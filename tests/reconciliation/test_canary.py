"""Rule-set versions on verdicts, and the canary: shadow verdicts beside the live ones, through attempts."""

from __future__ import annotations

import datetime as dt

import pytest

from alerts.models import Alert
from platforms.adapters.base import PlatformMetrics
from platforms.fetcher import FetchOutcome
from reconciliation.models import (
    Affiliate,
    Campaign,
    ReconciliationAttempt,
    ReconciliationLog,
    ShadowVerdict,
    TrustEvent,
    campaign_ruleset,
)
from reconciliation.services.attempts import AttemptResult, attempt_run
from reconciliation.services.canary import canary_agreement
from tests import factories

pytestmark = pytest.mark.django_db

#: Under the default rules 1200 claimed views against 1100 observed is +9.1 %: DISCREPANCY_LOW.
#: Under STRICT (over-claim from 5 %) it is an over-claim.
STRICT = {"RECONCILIATION_SETTINGS": {"overclaim_threshold_pct": 0.05, "overclaim_critical_pct": 0.08}}


def ok(views: int | None = 1100, clicks: int | None = 100, conversions: int | None = 10) -> FetchOutcome:
    metrics = PlatformMetrics(views, clicks, conversions, raw={})
    return FetchOutcome(metrics=metrics, missing_fields=metrics.missing_fields(), attempts=1, duration_seconds=0.01)


def run(report, outcome: FetchOutcome, now: dt.datetime) -> AttemptResult | str:
    return attempt_run(report_id=report.pk, worker="test", fetcher=lambda _c: outcome, clock=lambda: now)


def claim(campaign: Campaign, views: int = 1200):
    return factories.report(
        post=factories.post(campaign=campaign), claimed_views=views, claimed_clicks=100, claimed_conversions=10
    )


def test_a_verdict_records_the_fingerprint_of_the_rules_that_decided_it() -> None:
    plain = factories.campaign()
    overridden = factories.campaign(rule_overrides={"RECONCILIATION_SETTINGS": {"low_max": 0.12}})
    a, b = claim(plain), claim(overridden)
    for report in (a, b):
        run(report, ok(), report.submitted_at + dt.timedelta(seconds=1))
    log_a, log_b = (ReconciliationLog.objects.get(report=r) for r in (a, b))
    assert log_a.ruleset_fingerprint == campaign_ruleset({}).fingerprint
    assert log_b.ruleset_fingerprint == campaign_ruleset(overridden.rule_overrides).fingerprint
    assert log_a.ruleset_fingerprint != log_b.ruleset_fingerprint
    assert ReconciliationAttempt.objects.get(report=b).ruleset_fingerprint == log_b.ruleset_fingerprint


def test_an_inconclusive_recheck_keeps_the_fingerprint_of_the_verdict() -> None:
    campaign = factories.campaign()
    report = claim(campaign)
    first = report.submitted_at + dt.timedelta(seconds=1)
    run(report, ok(), first)
    decided_under = ReconciliationLog.objects.get(report=report).ruleset_fingerprint
    Campaign.objects.filter(pk=campaign.pk).update(rule_overrides={"RECONCILIATION_SETTINGS": {"low_max": 0.15}})
    run(report, ok(clicks=None), first + dt.timedelta(hours=7))  # the re-check: partial data, verdict stands
    log = ReconciliationLog.objects.get(report=report)
    assert log.status == "DISCREPANCY_LOW" and log.ruleset_fingerprint == decided_under
    recheck = ReconciliationAttempt.objects.get(report=report, number=2)
    assert recheck.ruleset_fingerprint == campaign_ruleset({"RECONCILIATION_SETTINGS": {"low_max": 0.15}}).fingerprint


def _evidence(report) -> tuple:
    affiliate = Affiliate.objects.get(pk=report.post.affiliate_id)
    log = ReconciliationLog.objects.get(report=report)
    return (
        affiliate.trust_score,
        affiliate.accurate_submissions,
        list(TrustEvent.objects.filter(report=report).values_list("event", "delta")),
        sorted(Alert.objects.filter(affiliate_id=affiliate.pk).values_list("alert_type", flat=True)),
        log.status,
        log.discrepancy_level,
        log.trust_delta,
    )


@pytest.mark.parametrize(
    ("live_overrides", "shadow_overrides", "live", "shadow"),
    [
        ({}, STRICT, ("DISCREPANCY_LOW", "LOW"), ("AFFILIATE_OVERCLAIMED", "CRITICAL")),  # shadow would alert
        (STRICT, {"RECONCILIATION_SETTINGS": {}}, ("AFFILIATE_OVERCLAIMED", "CRITICAL"), ("DISCREPANCY_LOW", "LOW")),
    ],
)
def test_shadow_verdicts_never_touch_trust_or_alerts(
    live_overrides: dict, shadow_overrides: dict, live: tuple, shadow: tuple
) -> None:
    without = factories.campaign(rule_overrides=live_overrides)
    with_canary = factories.campaign(rule_overrides=live_overrides, shadow_rule_overrides=shadow_overrides)
    a, b = claim(without), claim(with_canary)
    now = a.submitted_at + dt.timedelta(seconds=1)
    for report in (a, b):
        result = run(report, ok(), now)
        assert isinstance(result, AttemptResult) and (result.status, result.level) == live
        run(report, ok(views=1101), now + dt.timedelta(hours=7))  # a re-check: a second shadow verdict
    assert _evidence(a) == _evidence(b)
    assert not ShadowVerdict.objects.filter(report=a).exists()
    verdicts = list(ShadowVerdict.objects.filter(report=b).order_by("attempt__number"))
    assert len(verdicts) == 2
    assert [(v.status, v.level) for v in verdicts] == [shadow, shadow]
    assert [(v.live_status, v.live_level) for v in verdicts] == [live, live]
    assert all(not v.agrees and v.campaign_id == with_canary.pk for v in verdicts)
    assert verdicts[0].fingerprint == campaign_ruleset(shadow_overrides).fingerprint
    assert verdicts[0].live_fingerprint == campaign_ruleset(live_overrides).fingerprint
    # The alerts that exist are the live verdict's alone.
    live_alerts = Alert.objects.filter(affiliate_id=b.post.affiliate_id).count()
    assert live_alerts == (1 if live[0] == "AFFILIATE_OVERCLAIMED" else 0)


def test_no_shadow_verdict_without_platform_data_or_with_broken_shadow_overrides() -> None:
    campaign = factories.campaign(shadow_rule_overrides=STRICT)
    missing = claim(campaign)
    run(missing, FetchOutcome(metrics=None, error_code="not_found", attempts=1), missing.submitted_at)
    deferred = claim(campaign)
    run(deferred, FetchOutcome(metrics=None, error_code="circuit_open", attempts=0), deferred.submitted_at)
    assert not ShadowVerdict.objects.exists()
    # Written around the model's validation: the canary is off, the live verdict is recorded as always.
    Campaign.objects.filter(pk=campaign.pk).update(shadow_rule_overrides={"RECONCILIATION_SETTINGS": {"low_max": 7}})
    report = claim(campaign)
    result = run(report, ok(), report.submitted_at)
    assert isinstance(result, AttemptResult) and result.status == "DISCREPANCY_LOW"
    assert not ShadowVerdict.objects.exists()


def test_agreement_rate_is_counted_for_the_current_shadow_rules() -> None:
    campaign = factories.campaign(shadow_rule_overrides=STRICT)
    assert canary_agreement(factories.campaign()) is None
    reports = [claim(campaign, views) for views in (1100, 1100, 1100, 1200)]  # three exact, one +9 %
    for report in reports:
        run(report, ok(), report.submitted_at)
    agreement = canary_agreement(campaign)
    assert agreement is not None
    assert (agreement["attempts"], agreement["agree"], agreement["agreement_pct"]) == (4, 3, 75.0)
    assert agreement["disagreements"] == [{"live": "DISCREPANCY_LOW", "shadow": "AFFILIATE_OVERCLAIMED", "attempts": 1}]
    # New shadow rules start a new count.
    campaign.shadow_rule_overrides = {"RECONCILIATION_SETTINGS": {"low_max": 0.15}}
    campaign.save()
    fresh = canary_agreement(campaign)
    assert fresh is not None and fresh["attempts"] == 0 and fresh["agreement_pct"] is None


def test_campaign_validation_covers_the_shadow_overrides() -> None:
    from django.core.exceptions import ValidationError

    campaign = factories.campaign()
    campaign.shadow_rule_overrides = {"RECONCILIATION_SETTINGS": {"low_max": 7}}
    with pytest.raises(ValidationError) as error:
        campaign.full_clean()
    assert "shadow_rule_overrides" in error.value.message_dict
    assert Campaign.objects.get(pk=campaign.pk).shadow_rule_overrides == {}

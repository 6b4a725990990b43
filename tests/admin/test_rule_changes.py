"""A campaign's page: new rule overrides show their simulation before they are saved; the rule set that
decided a claim and the canary's agreement are shown."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from platforms.adapters.base import PlatformMetrics
from platforms.fetcher import FetchOutcome
from reconciliation.models import Campaign, ReconciliationLog, campaign_ruleset
from reconciliation.services.attempts import attempt_run
from tests import factories

pytestmark = pytest.mark.django_db

TOLERANCE_8 = '{"RECONCILIATION_SETTINGS": {"base_tolerance_pct": 0.08}}'


def decide(campaign: Campaign, views: int, observed: int = 1000) -> Any:
    report = factories.report(
        post=factories.post(campaign=campaign), claimed_views=views, claimed_clicks=100, claimed_conversions=10
    )
    metrics = PlatformMetrics(observed, 100, 10, raw={})
    outcome = FetchOutcome(metrics=metrics, missing_fields=[], attempts=1, duration_seconds=0.01)
    attempt_run(report_id=report.pk, worker="test", fetcher=lambda _c: outcome, clock=lambda: report.submitted_at)
    return report


def form_data(campaign: Campaign, **changes: Any) -> dict[str, Any]:
    data = {
        "client": campaign.client_id,
        "name": campaign.name,
        "platforms": [p.pk for p in campaign.platforms.all()],
        "start_date": campaign.start_date.isoformat(),
        "end_date": "",
        "status": campaign.status,
        "rule_overrides": "{}",
        "shadow_rule_overrides": "{}",
        "recheck_interval_hours": "",
        "recheck_window_days": "",
        "reviewed_fingerprint": "",
    }
    data.update(changes)
    return data


@pytest.fixture
def campaign() -> Campaign:
    campaign = factories.campaign()
    for views in (1000, 1060, 1070, 1090, 1300):  # MATCHED, LOW, LOW, LOW, OVERCLAIMED
        decide(campaign, views)
    return campaign


def test_new_overrides_show_the_simulation_first_and_apply_on_the_second_save(
    ops_client: Client, campaign: Campaign
) -> None:
    url = reverse("admin:reconciliation_campaign_change", args=[campaign.pk])
    response = ops_client.post(url, form_data(campaign, rule_overrides=TOLERANCE_8))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Simulation of the new rule overrides" in page and "save again to apply them" in page
    # 1060 and 1070 become MATCHED; 1090 stays LOW.
    assert "<strong>2</strong> would change status" in page
    assert re.search(r'class="changed">2 <small>\(66\.67 %\)</small>', page), page
    campaign.refresh_from_db()
    assert campaign.rule_overrides == {} and campaign.history.count() == 1  # nothing saved yet

    reviewed = re.search(r'name="reviewed_fingerprint" value="([0-9a-f]{64})"', page)
    assert reviewed is not None
    proposed = campaign_ruleset({"RECONCILIATION_SETTINGS": {"base_tolerance_pct": 0.08}})
    assert reviewed.group(1) == proposed.fingerprint
    response = ops_client.post(
        url, form_data(campaign, rule_overrides=TOLERANCE_8, reviewed_fingerprint=reviewed.group(1))
    )
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.rule_overrides == {"RECONCILIATION_SETTINGS": {"base_tolerance_pct": 0.08}}
    latest = campaign.history.latest()
    assert latest.history_user.username == "ops" and latest.rule_overrides == campaign.rule_overrides


def test_other_overrides_than_the_reviewed_ones_are_simulated_again(ops_client: Client, campaign: Campaign) -> None:
    url = reverse("admin:reconciliation_campaign_change", args=[campaign.pk])
    stale = campaign_ruleset({"RECONCILIATION_SETTINGS": {"base_tolerance_pct": 0.08}}).fingerprint
    other = '{"RECONCILIATION_SETTINGS": {"base_tolerance_pct": 0.1}}'
    response = ops_client.post(url, form_data(campaign, rule_overrides=other, reviewed_fingerprint=stale))
    assert response.status_code == 200 and "<strong>3</strong> would change status" in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.rule_overrides == {}


def test_a_change_without_new_overrides_saves_at_once_and_bad_overrides_are_named(
    ops_client: Client, campaign: Campaign
) -> None:
    url = reverse("admin:reconciliation_campaign_change", args=[campaign.pk])
    response = ops_client.post(url, form_data(campaign, name="renamed", shadow_rule_overrides=TOLERANCE_8))
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.name == "renamed" and campaign.shadow_rule_overrides != {}
    response = ops_client.post(url, form_data(campaign, rule_overrides='{"RECONCILIATION_SETTINGS": {"low_max": 7}}'))
    assert response.status_code == 200
    page = response.content.decode()
    assert "RECONCILIATION_SETTINGS.low_max" in page and "Simulation of the new rule overrides" not in page


def test_the_campaign_page_shows_its_rule_set_and_canary_agreement(ops_client: Client, campaign: Campaign) -> None:
    url = reverse("admin:reconciliation_campaign_change", args=[campaign.pk])
    page = ops_client.get(url).content.decode()
    assert campaign_ruleset(None).short_fingerprint in page and "no shadow rules" in page
    Campaign.objects.filter(pk=campaign.pk).update(
        shadow_rule_overrides={"RECONCILIATION_SETTINGS": {"base_tolerance_pct": 0.08}}
    )
    for views in (1000, 1060, 1090):  # agree, disagree (LOW live, MATCHED shadow), agree
        decide(campaign, views)
    page = ops_client.get(url).content.decode()
    assert "2 of 3 attempts agree (66.67 %)" in page
    assert "DISCREPANCY_LOW → MATCHED: 1" in page


def test_the_verdict_lists_show_the_rule_set_that_decided(ops_client: Client, campaign: Campaign) -> None:
    short = campaign_ruleset(None).short_fingerprint
    for name in ("reconciliationlog", "reconciliationattempt"):
        page = ops_client.get(reverse(f"admin:reconciliation_{name}_changelist")).content.decode()
        assert f">{short}</code>" in page, name
    log = ReconciliationLog.objects.filter(report__post__campaign=campaign).first()
    assert log is not None
    report_page = ops_client.get(reverse("admin:reconciliation_affiliatereport_change", args=[log.report_id]))
    assert campaign_ruleset(None).fingerprint in report_page.content.decode()


def test_shadow_verdicts_are_listed_for_analysts(analyst_client: Client, campaign: Campaign) -> None:
    Campaign.objects.filter(pk=campaign.pk).update(shadow_rule_overrides={"RECONCILIATION_SETTINGS": {}})
    decide(campaign, 1060)
    page = analyst_client.get(reverse("admin:reconciliation_shadowverdict_changelist"))
    assert page.status_code == 200 and "DISCREPANCY LOW" in page.content.decode()

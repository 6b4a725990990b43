"""POST /api/v1/rules/simulate (staff) and the rule set of a verdict in the report API."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from platforms.adapters.base import PlatformMetrics
from platforms.fetcher import FetchOutcome
from reconciliation.models import ReconciliationLog, campaign_ruleset
from reconciliation.services.attempts import attempt_run
from tests import factories
from tests.api.conftest import World, bearer

pytestmark = pytest.mark.django_db

URL = "/api/v1/rules/simulate"


def decide(world: World, views: int) -> Any:
    report = factories.report(
        post=factories.post(campaign=world.campaign, affiliate=world.owner),
        claimed_views=views,
        claimed_clicks=100,
        claimed_conversions=10,
    )
    metrics = PlatformMetrics(1000, 100, 10, raw={})
    outcome = FetchOutcome(metrics=metrics, missing_fields=[], attempts=1, duration_seconds=0.01)
    attempt_run(report_id=report.pk, worker="test", fetcher=lambda _c: outcome, clock=lambda: report.submitted_at)
    return report


def simulate(api: APIClient, world: World, body: dict[str, Any]) -> Any:
    return api.post(URL, body, format="json", **bearer(world.staff_key))


def test_staff_simulate_a_campaigns_proposed_overrides(api: APIClient, world: World) -> None:
    reports = [decide(world, views) for views in (1000, 1060, 1090, 1300)]
    response = simulate(
        api,
        world,
        {"campaign_id": world.campaign.pk, "overrides": {"RECONCILIATION_SETTINGS": {"base_tolerance_pct": 0.07}}},
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["claims"] == 4 and body["changed_status"] == 1
    assert [c for c in body["matrix"] if c["from"] != c["to"]] == [
        {"from": "DISCREPANCY_LOW", "to": "MATCHED", "claims": 1, "pct_of_from": 50.0}
    ]
    assert [e["report_id"] for e in body["examples"]] == [reports[1].pk]
    assert body["trust"]["largest_moves"][0]["change"] == "0.0200"
    assert ReconciliationLog.objects.get(report=reports[1]).status == "DISCREPANCY_LOW"  # nothing written


def test_global_settings_and_the_selection(api: APIClient, world: World) -> None:
    for views in (1000, 1300):
        decide(world, views)
    response = simulate(
        api,
        world,
        {"set": {"RECONCILIATION_SETTINGS__OVERCLAIM_THRESHOLD_PCT": 0.4}, "status": ["AFFILIATE_OVERCLAIMED"]},
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["claims"] == 1 and body["alerts"]["no_longer_raised"] == {"OVERCLAIM": 1}
    assert simulate(api, world, {"since": "2999-01-01T00:00:00Z"}).json()["claims"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"set": {"RECONCILIATION_SETTINGS__LOW_MAX": 7}}, "set RECONCILIATION_SETTINGS.low_max"),
        ({"set": {"NOPE": 1}}, "NOPE=1"),
        ({"overrides": {"RECONCILIATION_SETTINGS": {"nope": 1}}}, "overrides RECONCILIATION_SETTINGS.nope"),
        ({"overrides": [1]}, "overrides"),
        ({"limit": 0}, "limit"),
        ({"status": ["NOPE"]}, "status.0"),
    ],
)
def test_bad_input_is_a_400_naming_it(api: APIClient, world: World, body: dict[str, Any], field: str) -> None:
    response = simulate(api, world, body)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]


def test_an_unknown_campaign_is_a_404(api: APIClient, world: World) -> None:
    assert simulate(api, world, {"campaign_id": 10**12}).status_code == 404


def test_the_report_api_says_which_rule_set_decided(api: APIClient, world: World) -> None:
    report = decide(world, 1060)
    response = api.get(f"/api/v1/reports/{report.pk}", **bearer(world.owner_key))
    assert response.status_code == 200
    fingerprint = campaign_ruleset(None).fingerprint
    assert response.json()["ruleset_fingerprint"] == fingerprint
    assert [a["ruleset_fingerprint"] for a in response.json()["attempts"]] == [fingerprint]
    pending = factories.report(post=factories.post(campaign=world.campaign, affiliate=world.owner))
    assert api.get(f"/api/v1/reports/{pending.pk}", **bearer(world.owner_key)).json()["ruleset_fingerprint"] == ""

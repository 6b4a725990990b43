"""The affiliate's risk page and the analyst's decisions about an affiliate, through the admin's own views."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from alerts.models import Alert
from reconcile_project.config import RateLimitSettings
from reconciliation.models import AffiliateAPIKey, AffiliateRiskAction, ReconciliationLog, TrustEvent
from tests import factories
from tests.admin.conftest import failed, ok, run
from tests.api.conftest import World, affiliate_with_key, bearer, make_world, submission

pytestmark = pytest.mark.django_db


def url(affiliate: Any) -> str:
    return f"/admin/reconciliation/affiliate/{affiliate.pk}/change/"


@pytest.fixture
def history() -> Any:
    """An affiliate with a key, one matched claim, two over-claims and one claim still open."""
    affiliate, _ = affiliate_with_key()
    campaign = factories.campaign()
    reports = [
        factories.report(post=factories.post(affiliate=affiliate, campaign=campaign), claimed_views=1000)
        for _ in range(4)
    ]
    run(reports[0], ok(views=1000), reports[0].submitted_at + dt.timedelta(minutes=1))
    run(reports[1], ok(views=500), reports[1].submitted_at + dt.timedelta(minutes=1))
    run(reports[2], ok(views=400), reports[2].submitted_at + dt.timedelta(minutes=1))
    run(reports[3], failed("timeout"), reports[3].submitted_at + dt.timedelta(minutes=1))
    affiliate.refresh_from_db()
    return affiliate


def test_risk_page_figures_equal_the_database(browser: Client, history: Any) -> None:
    html = browser.get(url(history)).content.decode()
    assert f'id="trust-score">{history.trust_score}<' in html
    rate = round(100 * history.accurate_submissions / history.total_submissions)
    assert history.total_submissions == 4 and f'id="accuracy">{rate} %<' in html
    ledger = list(TrustEvent.objects.filter(affiliate=history).order_by("created_at", "id"))
    chart = html.split('id="affiliate-risk"')[1].split("</figure>")[0]
    assert len(ledger) == 3 and chart.count("<circle") == 3
    assert [f"{e.score_after}</title>" in chart for e in ledger] == [True] * 3
    by_status = html.split("Claims by status, last 30 days as a table")[1].split("</table>")[0]
    assert "<td>AFFILIATE_OVERCLAIMED</td><td>2</td>" in by_status and "<td>MATCHED</td><td>1</td>" in by_status
    open_alerts = Alert.objects.filter(affiliate=history, status=Alert.Status.OPEN)
    assert f'id="open-alert-count">{open_alerts.count()}<' in html and open_alerts.count() >= 2
    for alert in open_alerts:
        assert f"/admin/alerts/alert/{alert.pk}/change/" in html
    claims = html.split('id="recent-claims"')[1].split("</table>")[0]
    assert claims.count("/admin/reconciliation/affiliatereport/") == 4
    open_claims = ReconciliationLog.objects.filter(report__post__affiliate=history, terminal=False).count()
    assert f'id="open-claims">{open_claims}<' in html
    key = AffiliateAPIKey.objects.get(affiliate=history)
    assert key.prefix in html.split('id="api-keys"')[1]


def test_risk_page_queries_are_bounded(browser: Client, history: Any, django_assert_max_num_queries: Any) -> None:
    for _ in range(20):
        report = factories.report(post=factories.post(affiliate=history), claimed_views=1000)
        run(report, ok(views=500), report.submitted_at + dt.timedelta(minutes=1))
    with django_assert_max_num_queries(30):
        assert browser.get(url(history)).status_code == 200


def test_suspend_needs_a_reason_is_recorded_and_the_api_then_answers_403(browser: Client, admin_user: Any) -> None:
    world: World = make_world()
    api = APIClient()
    assert api.get("/api/v1/affiliates/me", **bearer(world.owner_key)).status_code == 200
    decide = f"/admin/reconciliation/affiliate/{world.owner.pk}/decide/suspend/"

    assert browser.get(decide).status_code == 200
    refused = browser.post(decide, {"confirm": "1", "reason": "  "})
    assert refused.status_code == 200 and "This field is required" in refused.content.decode()
    world.owner.refresh_from_db()
    assert world.owner.is_active

    assert browser.post(decide, {"confirm": "1", "reason": "fake screenshots"}).status_code == 302
    world.owner.refresh_from_db()
    assert not world.owner.is_active
    action = AffiliateRiskAction.objects.get(affiliate=world.owner)
    assert (action.action, action.reason, action.user) == ("SUSPEND", "fake screenshots", admin_user)
    response = api.get("/api/v1/affiliates/me", **bearer(world.owner_key))
    assert response.status_code == 403 and response.json()["error"]["code"] == "affiliate_inactive"
    assert api.get("/api/v1/affiliates/me", **bearer(world.other_key)).status_code == 200
    assert "fake screenshots" in browser.get(url(world.owner)).content.decode()

    reinstate = f"/admin/reconciliation/affiliate/{world.owner.pk}/decide/reinstate/"
    assert browser.post(reinstate, {"confirm": "1", "reason": "appeal accepted"}).status_code == 302
    assert api.get("/api/v1/affiliates/me", **bearer(world.owner_key)).status_code == 200


def test_suspend_as_a_changelist_action_with_an_intermediate_form(browser: Client) -> None:
    a, b = factories.affiliate(), factories.affiliate()
    first = browser.post("/admin/reconciliation/affiliate/", {"action": "suspend", "_selected_action": [a.pk, b.pk]})
    assert first.status_code == 200 and 'name="reason"' in first.content.decode()
    a.refresh_from_db()
    assert a.is_active  # nothing happens before the reason is given
    done = browser.post(
        "/admin/reconciliation/affiliate/",
        {"action": "suspend", "_selected_action": [a.pk, b.pk], "confirm": "1", "reason": "ring of fake accounts"},
    )
    assert done.status_code == 302
    assert AffiliateRiskAction.objects.filter(action="SUSPEND", reason="ring of fake accounts").count() == 2
    a.refresh_from_db()
    b.refresh_from_db()
    assert not a.is_active and not b.is_active


def test_active_flag_is_not_editable_on_the_page(browser: Client) -> None:
    affiliate = factories.affiliate()
    html = browser.get(url(affiliate)).content.decode()
    assert 'name="is_active"' not in html and 'name="submission_rate"' not in html


def test_throttle_limits_the_affiliates_submissions_below_the_default(browser: Client, settings: Any) -> None:
    settings.RATE_LIMIT_SETTINGS = RateLimitSettings.model_validate({"submission": "100/hour"})
    world: World = make_world()
    decide = f"/admin/reconciliation/affiliate/{world.owner.pk}/decide/throttle/"
    above = browser.post(decide, {"confirm": "1", "reason": "bursty", "submission_rate": "200/hour"})
    assert above.status_code == 200 and "not below the default" in above.content.decode()
    assert browser.post(decide, {"confirm": "1", "reason": "high risk", "submission_rate": "2/hour"}).status_code == 302
    world.owner.refresh_from_db()
    assert world.owner.submission_rate == "2/hour"
    assert AffiliateRiskAction.objects.get(affiliate=world.owner).submission_rate == "2/hour"

    api = APIClient()
    key = bearer(world.owner_key)
    for n in (1, 2):
        assert api.post("/api/v1/submissions/", submission(world.campaign, n), format="json", **key).status_code == 201
    third = api.post("/api/v1/submissions/", submission(world.campaign, 3), format="json", **key)
    assert third.status_code == 429 and int(third["Retry-After"]) > 3000
    # A second key of the same affiliate shares the limit; another affiliate keeps the default.
    _, second_key = AffiliateAPIKey.objects.create_key(name="second", affiliate=world.owner)
    assert (
        api.post("/api/v1/submissions/", submission(world.campaign, 4), format="json", **bearer(second_key)).status_code
        == 429
    )
    other = bearer(world.other_key)
    for n in (5, 6, 7):
        assert (
            api.post("/api/v1/submissions/", submission(world.campaign, n), format="json", **other).status_code == 201
        )


def test_rerun_reopens_the_affiliates_open_claims(browser: Client, history: Any) -> None:
    later = timezone.now() + dt.timedelta(days=1)
    ReconciliationLog.objects.filter(report__post__affiliate=history).update(next_attempt_at=later)
    open_ids = set(
        ReconciliationLog.objects.filter(report__post__affiliate=history, terminal=False).values_list(
            "report_id", flat=True
        )
    )
    other = factories.report()
    ReconciliationLog.objects.filter(report=other).update(next_attempt_at=later)
    response = browser.post(f"/admin/reconciliation/affiliate/{history.pk}/decide/rerun/", {"confirm": "1"})
    assert response.status_code == 302
    due = set(
        ReconciliationLog.objects.filter(report__post__affiliate=history, next_attempt_at__lt=later).values_list(
            "report_id", flat=True
        )
    )
    assert open_ids and due == open_ids
    assert ReconciliationLog.objects.get(report=other).next_attempt_at == later


def test_revoke_an_api_key_from_the_page(browser: Client) -> None:
    affiliate, key = affiliate_with_key()
    row = AffiliateAPIKey.objects.get(affiliate=affiliate)
    assert browser.get(f"/admin/reconciliation/affiliate/{affiliate.pk}/keys/{row.pk}/revoke/").status_code == 403
    assert browser.post(f"/admin/reconciliation/affiliate/{affiliate.pk}/keys/{row.pk}/revoke/").status_code == 302
    row.refresh_from_db()
    assert row.revoked
    assert APIClient().get("/api/v1/affiliates/me", **bearer(key)).status_code == 403

"""An alert's page shows what an analyst needs to decide, with figures equal to what the database holds."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.test import Client

from alerts.models import Alert
from reconciliation.models import Affiliate, PlatformReport, TrustEvent
from tests import factories
from tests.admin.conftest import failed, ok, run

pytestmark = pytest.mark.django_db

EVIDENCE = {
    "screenshot": "https://evidence.example.com/shot.png",
    "note": "<script>alert('x')</script>",
    "link": "javascript:alert(1)",
}


@pytest.fixture
def overclaim() -> Alert:
    """A claim of 1000 views that the platform put at 500 (+100 %), after one MISSING attempt."""
    report = factories.report(claimed_views=1000, claimed_clicks=50, claimed_conversions=5, evidence=EVIDENCE)
    run(report, failed("not_found"), report.submitted_at + dt.timedelta(minutes=1))
    run(report, ok(views=500), report.submitted_at + dt.timedelta(hours=2))
    return Alert.objects.get(report=report, alert_type=Alert.Type.OVERCLAIM)


def page(browser: Client, alert: Alert) -> str:
    response = browser.get(f"/admin/alerts/alert/{alert.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def test_the_claim_and_each_snapshot_side_by_side_with_the_rule_that_fired(browser: Client, overclaim: Alert) -> None:
    html = page(browser, overclaim)
    snapshot = PlatformReport.objects.get(attempt__report=overclaim.report)
    assert snapshot.views == 500
    table = html.split('id="comparisons"')[1].split("</table>")[0]
    assert f"#{snapshot.pk}" in table
    # views: claimed 1000, platform 500, +100 %; clicks and conversions equal: +0 %.
    assert re.search(
        r"<td>views</td><td class=\"num\">1000</td><td class=\"num\">500</td>"
        r"\s*<td class=\"num risk-over\">\+100 %</td>",
        table,
    )
    assert "AFFILIATE OVERCLAIMED" in table and "CRITICAL" in table
    # Growth allowance for the two hours between claim and fetch: G = 1 + 0.10 × 2.
    assert "×1.200" in table
    assert "over-claim from 20 % (critical from 50 %)" in html


def test_campaign_overrides_are_the_thresholds_shown(browser: Client) -> None:
    campaign = factories.campaign(rule_overrides={"RECONCILIATION_SETTINGS": {"overclaim_critical_pct": 2.0}})
    report = factories.report(post=factories.post(campaign=campaign), claimed_views=1000)
    run(report, ok(views=500), report.submitted_at + dt.timedelta(minutes=5))
    alert = Alert.objects.get(report=report, alert_type=Alert.Type.OVERCLAIM)
    html = page(browser, alert)
    assert "critical from 200 %" in html
    assert "HIGH" in html.split('id="comparisons"')[1].split("</table>")[0]


def test_attempts_with_outcomes_and_missing_reasons(browser: Client, overclaim: Alert) -> None:
    html = page(browser, overclaim)
    section = html.split('id="attempts"')[1].split("</table>")[0]
    assert overclaim.report is not None
    attempts = list(overclaim.report.attempts.order_by("number"))
    assert len(attempts) == 2 and attempts[0].missing_reason
    assert attempts[0].missing_reason in section
    assert "MISSING" in section and "SUCCESS" in section


def test_evidence_is_escaped_and_only_http_links_are_links(browser: Client, overclaim: Alert) -> None:
    html = page(browser, overclaim)
    section = html.split('id="evidence"')[1].split("</div>")[0]
    assert "<script>" not in section and "&lt;script&gt;" in section
    assert 'href="https://evidence.example.com/shot.png"' in section
    assert 'href="javascript' not in html
    assert "javascript:alert(1)" in section  # shown as text


def test_affiliate_trust_other_alerts_recent_claims_and_escalations(browser: Client, overclaim: Alert) -> None:
    affiliate = Affiliate.objects.get(pk=overclaim.report.post.affiliate_id)  # type: ignore[union-attr]
    other_report = factories.report(post=factories.post(affiliate=affiliate))
    other = factories.alert(affiliate=affiliate, report=other_report, title="another one")
    escalation = factories.alert(
        affiliate=affiliate, escalated_from=overclaim, severity=Alert.Severity.CRITICAL, alert_type=Alert.Type.LOW_TRUST
    )
    Alert.objects.filter(pk=overclaim.pk).update(occurrence_count=3)
    html = page(browser, overclaim)

    assert f'<span class="risk-figure" id="trust-score">{affiliate.trust_score}</span>' in html
    ledger = list(TrustEvent.objects.filter(affiliate=affiliate).order_by("created_at"))
    assert ledger  # the over-claim moved trust: one point per ledger row on the chart
    chart = html.split('id="affiliate"')[1].split("</figure>")[0]
    assert chart.count("<circle") == len(ledger)
    assert f"{ledger[-1].score_after}</title>" in chart
    others = html.split('id="other-open-alerts"')[1].split("</ul>")[0]
    assert f"/admin/alerts/alert/{other.pk}/change/" in others and f"alert/{overclaim.pk}/" not in others
    claims = html.split('id="recent-claims"')[1].split("</table>")[0]
    assert f"/admin/reconciliation/affiliatereport/{other_report.pk}/change/" in claims
    links = html.split('id="escalation-links"')[1].split("</p>")[0]
    assert f"/admin/alerts/alert/{escalation.pk}/change/" in links
    assert 'id="occurrence-count">3<' in html
    back = page(browser, escalation)
    assert f'Escalated from <a href="/admin/alerts/alert/{overclaim.pk}/change/"' in back


def test_history_block_shows_the_alerts_changes_when_recorded(
    browser: Client, overclaim: Alert, admin_user: Any
) -> None:
    from alerts import services

    services.alert_resolve(alert=overclaim, user=admin_user, note="confirmed with the platform")
    html = page(browser, overclaim)
    block = html.split('id="alert-history"')[1].split("</div>")[0]
    assert "No change recorded" not in block
    assert "RESOLVED" in block and admin_user.get_username() in block and "confirmed with the platform" in block


def test_queries_are_bounded_whatever_the_affiliates_history(
    browser: Client, overclaim: Alert, django_assert_max_num_queries: Any
) -> None:
    affiliate = Affiliate.objects.get(pk=overclaim.report.post.affiliate_id)  # type: ignore[union-attr]
    for _ in range(15):
        report = factories.report(post=factories.post(affiliate=affiliate), claimed_views=1000)
        run(report, ok(views=500), report.submitted_at + dt.timedelta(minutes=5))
    with django_assert_max_num_queries(40):
        page(browser, overclaim)


def test_an_alert_without_report_or_affiliate_renders(browser: Client) -> None:
    outage = factories.alert(
        alert_type=Alert.Type.PLATFORM_OUTAGE,
        category=Alert.Category.SYSTEM_HEALTH,
        platform=factories.platform("tiktok"),
        title="tiktok is down",
    )
    html = page(browser, outage)
    assert "tiktok is down" in html and 'id="comparisons"' not in html and 'id="affiliate"' not in html
    assert browser.get("/admin/alerts/alert/999999/change/").status_code == 302  # the admin's "does not exist"

"""SUSPICIOUS_CLAIM: a submission with a HIGH suspicion flag raises one, through the submission service."""

from __future__ import annotations

import pytest
from django.utils import timezone

from alerts.models import Alert
from reconciliation import rules
from reconciliation.services.submissions import report_submit
from tests import factories

pytestmark = pytest.mark.django_db


def submit(claims: rules.Claim, n: str) -> tuple[int, list[dict]]:
    affiliate = factories.affiliate()
    campaign = factories.campaign(platforms=("reddit",))
    result = report_submit(
        affiliate=affiliate,
        campaign_id=campaign.pk,
        platform="reddit",
        post_url=f"https://www.reddit.com/r/test/comments/{n}/",
        claims=claims,
        now=timezone.now(),
    )
    return result.report.pk, result.flags


def test_a_high_flag_raises_one_suspicious_claim_alert_about_the_report() -> None:
    # More clicks than views: the funnel is inverted, a HIGH flag.
    report_id, flags = submit(rules.Claim(views=100, clicks=500, conversions=1), "sus1")
    assert "FUNNEL_INVERSION" in {f["code"] for f in flags}
    alert = Alert.objects.get(report_id=report_id)
    assert (alert.alert_type, alert.category, alert.severity) == ("SUSPICIOUS_CLAIM", "FRAUD", "HIGH")
    assert alert.status == "OPEN"
    assert "FUNNEL_INVERSION" in alert.title
    assert alert.affiliate_id is not None and alert.platform is not None and alert.platform.slug == "reddit"
    assert {f["code"] for f in alert.threshold_breached["flags"]} >= {"FUNNEL_INVERSION"}


def test_a_plausible_claim_raises_no_alert() -> None:
    report_id, flags = submit(rules.Claim(views=10_000, clicks=100, conversions=3), "sus2")
    assert not [f for f in flags if f["severity"] == "HIGH"]
    assert not Alert.objects.filter(report_id=report_id).exists()

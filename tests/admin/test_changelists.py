"""The evidence lists read as an analyst reads: percentages, names with links, one status label style,
filters by affiliate, platform, campaign and date; still view-only."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from reconciliation.models import ReconciliationLog
from tests import factories
from tests.admin.conftest import ok, run

pytestmark = pytest.mark.django_db


@pytest.fixture
def overclaimed() -> Any:
    report = factories.report(claimed_views=1000)
    run(report, ok(views=500), report.submitted_at + dt.timedelta(minutes=1))
    return report


def test_reports_list_shows_percentages_names_links_and_badges(browser: Client, overclaimed: Any) -> None:
    html = browser.get("/admin/reconciliation/affiliatereport/").content.decode()
    post, affiliate, campaign = overclaimed.post, overclaimed.post.affiliate, overclaimed.post.campaign
    assert "+100 %" in html and ">1.0<" not in html
    assert post.url in html and f"/admin/reconciliation/post/{post.pk}/change/" in html
    assert f'<a href="/admin/reconciliation/affiliate/{affiliate.pk}/change/">{affiliate.name}</a>' in html
    assert f'<a href="/admin/reconciliation/campaign/{campaign.pk}/change/">{campaign.name}</a>' in html
    assert 'class="risk-badge"' in html and "AFFILIATE OVERCLAIMED" in html
    assert str(post) == f"Reddit post {post.url}"


@pytest.mark.parametrize(
    "path",
    [
        "/admin/reconciliation/affiliatereport/",
        "/admin/reconciliation/reconciliationlog/",
        "/admin/reconciliation/trustevent/",
        "/admin/reconciliation/post/",
    ],
)
def test_lists_filter_by_affiliate_campaign_and_date(browser: Client, overclaimed: Any, path: str) -> None:
    other = factories.report(claimed_views=1000)
    run(other, ok(views=500), other.submitted_at + dt.timedelta(minutes=1))
    affiliate = overclaimed.post.affiliate_id
    mine = browser.get(f"{path}?affiliate={affiliate}")
    assert mine.status_code == 200
    assert mine.context["cl"].result_count == 1
    assert browser.get(f"{path}?campaign={other.post.campaign_id}").context["cl"].result_count == 1
    assert browser.get(path).context["cl"].result_count == 2
    html = browser.get(path).content.decode()
    assert "By affiliate (lowest trust)" in html and "campaign (latest)" in html
    assert "Any date" in html


def test_reports_filter_by_platform(browser: Client, overclaimed: Any) -> None:
    youtube = factories.report(post=factories.post(platform=factories.platform("youtube")))
    response = browser.get(
        f"/admin/reconciliation/affiliatereport/?post__platform__id__exact={youtube.post.platform_id}"
    )
    assert [r.pk for r in response.context["cl"].result_list] == [youtube.pk]


def test_rerun_selected_reports(browser: Client, overclaimed: Any) -> None:
    later = timezone.now() + dt.timedelta(days=2)
    ReconciliationLog.objects.filter(report=overclaimed).update(next_attempt_at=later, terminal=True)
    response = browser.post(
        "/admin/reconciliation/affiliatereport/", {"action": "rerun", "_selected_action": [overclaimed.pk]}
    )
    assert response.status_code == 302
    log = ReconciliationLog.objects.get(report=overclaimed)
    assert log.next_attempt_at is not None and log.next_attempt_at < later and not log.terminal


def test_evidence_stays_view_only(browser: Client, overclaimed: Any) -> None:
    log = ReconciliationLog.objects.get(report=overclaimed)
    assert browser.get(f"/admin/reconciliation/affiliatereport/{overclaimed.pk}/change/").status_code == 200
    assert browser.get(f"/admin/reconciliation/affiliatereport/{overclaimed.pk}/delete/").status_code == 403
    assert browser.get("/admin/reconciliation/affiliatereport/add/").status_code == 403
    response = browser.post(f"/admin/reconciliation/reconciliationlog/{log.pk}/change/", {"status": "MATCHED"})
    assert response.status_code == 403
    log.refresh_from_db()
    assert log.status == "AFFILIATE_OVERCLAIMED"


def test_lists_queries_are_bounded(browser: Client, django_assert_max_num_queries: Any) -> None:
    for _ in range(25):
        report = factories.report(claimed_views=1000)
        run(report, ok(views=500), report.submitted_at + dt.timedelta(minutes=1))
    for path in (
        "/admin/reconciliation/affiliatereport/",
        "/admin/reconciliation/reconciliationlog/",
        "/admin/reconciliation/trustevent/",
        "/admin/reconciliation/post/",
        "/admin/reconciliation/reconciliationattempt/",
        "/admin/reconciliation/platformreport/",
        "/admin/reconciliation/affiliate/",
        "/admin/reconciliation/affiliateriskaction/",
        "/admin/alerts/alert/",
    ):
        with django_assert_max_num_queries(20):
            assert browser.get(path).status_code == 200


def test_the_alert_queue_is_compact_labelled_and_has_the_whole_width(browser: Client) -> None:
    affiliate = factories.affiliate(name="Wide Screen Creator", email="a-very-long-address@example.com")
    alert = factories.alert(affiliate=affiliate, severity="CRITICAL", title="x" * 200)
    html = browser.get("/admin/alerts/alert/").content.decode()
    # Labels as the admin's badges (with their style on the page), the affiliate by name without its
    # e-mail, a long title cut, and no navigation sidebar taking a quarter of a 1400 px screen.
    assert 'class="risk-badge"' in html and ".risk-badge {" in html
    assert "Wide Screen Creator" in html and "a-very-long-address@example.com" not in html
    assert f"#{alert.pk} " + "x" * 89 + "…" in html
    assert 'id="nav-sidebar"' not in html

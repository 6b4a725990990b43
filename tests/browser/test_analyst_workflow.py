"""An analyst's morning in the real admin, in headless Chromium against a live server (issue 11, "Tested as a
person would use it"): log in through the form, read the dashboard, filter the queue to critical
over-claims, open one, resolve it with a note, find the note in its history, suspend an affiliate (whose
API key is refused from then on), and be refused when trying to delete a report or edit a claim.

Figures read off the pages are compared with what the database holds. Each page is photographed into the
run's screenshot folder (see conftest)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from alerts.models import Alert
from reconciliation.models import AffiliateReport, AffiliateRiskAction
from tests import factories
from tests.admin.conftest import ok, run, staff_in
from tests.api.conftest import World, bearer, make_world
from tests.browser.conftest import Browser

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "x"  # staff_in's
SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")


@dataclass
class Morning:
    world: World
    analyst: Any
    critical: list[Alert]
    high: Alert


@pytest.fixture
def morning() -> Morning:
    """The owner's claims of 1000 views, put by the platform at 750 (a high over-claim), at 1000 (matched) and
    at 400 (twice: critical over-claims), each through the real attempt service. The high one comes first:
    a repeat over-claim by the same affiliate escalates to critical anyway."""
    world = make_world()
    analyst = staff_in("risk_analyst", "analyst")
    reports: dict[int, list[AffiliateReport]] = {}
    for views in (750, 1000, 400, 400):
        post = factories.post(affiliate=world.owner, campaign=world.campaign)
        report = factories.report(post=post, claimed_views=1000)
        run(report, ok(views=views), report.submitted_at + dt.timedelta(minutes=1))
        reports.setdefault(views, []).append(report)
    overclaims = Alert.objects.filter(alert_type=Alert.Type.OVERCLAIM)
    critical = list(overclaims.filter(severity="CRITICAL").order_by("pk"))
    assert [a.report_id for a in critical] == [r.pk for r in reports[400]]
    high = overclaims.get(report=reports[750][0])
    assert high.severity != "CRITICAL"
    return Morning(world, analyst, critical, high)


def numbers(browser: Browser, css: str) -> list[int]:
    return [int(cell.text) for cell in browser.find_all(css)]


def test_analyst_reads_the_dashboard_triages_and_resolves_a_critical_overclaim(
    browser: Browser, morning: Morning
) -> None:
    # Log in through the form: an analyst lands on the risk dashboard.
    browser.log_in("analyst", PASSWORD)
    assert browser.path.startswith("/admin/risk/")
    browser.wait_for("#open-total")
    browser.shot("dashboard")

    # The dashboard's figures are the database's.
    open_alerts = Alert.objects.filter(status=Alert.Status.OPEN)
    assert int(browser.text("#open-total")) == open_alerts.count()
    headers = [th.text.strip().upper() for th in browser.find_all("#open-alerts thead th")][1:-1]
    assert headers == list(SEVERITIES)
    overclaims = open_alerts.filter(alert_type=Alert.Type.OVERCLAIM)
    expected = [overclaims.filter(severity=s).count() for s in SEVERITIES] + [overclaims.count()]
    assert numbers(browser, '#open-alerts tr[data-type="OVERCLAIM"] td.num') == expected == [0, 0, 1, 2, 3]
    owner = morning.world.owner
    row = browser.find_all("#most-overclaims tbody tr")[0]
    assert row.find_element("css selector", "a").text == owner.name
    overclaimed = AffiliateReport.objects.filter(post__affiliate=owner, log__status="AFFILIATE_OVERCLAIMED")
    assert int(row.find_elements("css selector", "td.num")[0].text) == overclaimed.count() == 3

    # The queue, filtered as a person would: click "CRITICAL" then "OVERCLAIM" in the filter sidebar.
    browser.open("/admin/alerts/alert/")
    browser.wait_for("#changelist-filter")
    browser.shot("queue")
    browser.click_and_wait('#changelist-filter a[href*="severity__exact=CRITICAL"]', "#result_list")
    browser.click_and_wait('#changelist-filter a[href*="alert_type__exact=OVERCLAIM"]', "#result_list")
    assert "severity__exact=CRITICAL" in browser.path and "alert_type__exact=OVERCLAIM" in browser.path
    browser.shot("critical-overclaims")
    listed = [int(box.get_attribute("value") or 0) for box in browser.find_all("#result_list input.action-select")]
    assert sorted(listed) == [a.pk for a in morning.critical]
    assert morning.high.pk not in listed
    filtered = browser.path

    # Open one: the claimed and the platform's numbers are on its decision page.
    alert = morning.critical[0]
    browser.click_and_wait(f'#result_list a[href*="/admin/alerts/alert/{alert.pk}/change/"]', "#comparisons")
    browser.shot("alert-decision")
    comparisons = browser.text("#comparisons")
    assert re.search(r"views 1000 400 \+150 % 600 AFFILIATE OVERCLAIMED CRITICAL", comparisons), comparisons

    # Resolve it through the action: tick it, choose the action, Go, write the note, confirm.
    browser.open(filtered)
    browser.click(f'#result_list input.action-select[value="{alert.pk}"]')
    browser.find('select[name="action"] option[value="resolve"]').click()
    browser.click_and_wait('#changelist-form button[name="index"]', 'textarea[name="note"]')
    browser.shot("resolve-note")
    note = "Platform confirms 400 views; claim of 1000 rejected."
    browser.find('textarea[name="note"]').send_keys(note)
    browser.click_and_wait("form input[type=submit].default", "#result_list")
    browser.shot("resolved")
    assert "1 alert" in browser.text(".messagelist")
    alert.refresh_from_db()
    assert (alert.status, alert.resolved_by, alert.resolution_notes) == ("RESOLVED", morning.analyst, note)
    assert [int(b.get_attribute("value") or 0) for b in browser.find_all("#result_list input.action-select")] == [
        morning.critical[1].pk
    ]  # the filtered queue shows only what is still open

    # Its history names the analyst and shows the note.
    browser.open(f"/admin/alerts/alert/{alert.pk}/history/")
    history = browser.text("#content")
    browser.shot("alert-history")
    assert note in history and "analyst" in history and "RESOLVED" in history


def test_analyst_suspends_an_affiliate_and_its_next_api_call_is_refused(browser: Browser, morning: Morning) -> None:
    owner, key = morning.world.owner, morning.world.owner_key
    me = f"{browser.base_url}/api/v1/affiliates/me"
    assert requests.get(me, headers=bearer_header(key), timeout=10).status_code == 200

    browser.log_in("analyst", PASSWORD)
    browser.open(f"/admin/reconciliation/affiliate/{owner.pk}/change/")
    browser.wait_for("#trust-score")
    browser.shot("affiliate-risk")
    browser.click_and_wait(f'a[href$="/affiliate/{owner.pk}/decide/suspend/"]', '[name="reason"]')
    browser.shot("suspend-reason")
    reason = "Screenshots of views doctored in three claims."
    browser.find('[name="reason"]').send_keys(reason)
    browser.click_and_wait('#decide input[name="confirm"]', "#content")
    browser.shot("suspended")

    owner.refresh_from_db()
    assert not owner.is_active
    action = AffiliateRiskAction.objects.get(affiliate=owner)
    assert (action.action, action.reason, action.user) == ("SUSPEND", reason, morning.analyst)
    refused = requests.get(me, headers=bearer_header(key), timeout=10)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "affiliate_inactive"
    other = requests.get(me, headers=bearer_header(morning.world.other_key), timeout=10)
    assert other.status_code == 200

    # The risk page now says so, with the reason.
    browser.open(f"/admin/reconciliation/affiliate/{owner.pk}/change/")
    browser.wait_for("#trust-score")
    browser.shot("affiliate-suspended")
    assert reason in browser.text("#content")


def test_analyst_can_neither_delete_a_report_nor_edit_a_claim(browser: Browser, morning: Morning) -> None:
    report = morning.critical[0].report
    assert report is not None
    browser.log_in("analyst", PASSWORD)

    # The report's page is for reading: no save button, no delete link, no input for the claimed numbers.
    change = f"/admin/reconciliation/affiliatereport/{report.pk}/change/"
    browser.open(change)
    browser.wait_for("#content")
    browser.shot("report-readonly")
    assert "1000" in browser.text("#content")
    assert browser.find_all('input[name="_save"], input[name="_continue"], a.deletelink') == []
    assert browser.find_all('[name="claimed_views"]') == []

    # The delete page refuses outright.
    browser.open(f"/admin/reconciliation/affiliatereport/{report.pk}/delete/")
    browser.shot("report-delete-refused")
    assert "403" in browser.text() and "Forbidden" in browser.text()

    # And a hand-made POST with the analyst's own session is refused too: the claim stays as it was.
    session = requests.Session()
    session.cookies.set("sessionid", browser.cookie("sessionid"))
    session.cookies.set("csrftoken", browser.cookie("csrftoken"))
    headers = {"X-CSRFToken": browser.cookie("csrftoken"), "Referer": browser.base_url + change}
    delete = f"/admin/reconciliation/affiliatereport/{report.pk}/delete/"
    for url, data in ((change, {"claimed_views": "1", "_save": "Save"}), (delete, {"post": "yes"})):
        response = session.post(browser.base_url + url, data=data, headers=headers, timeout=10, allow_redirects=False)
        assert response.status_code == 403, (url, response.status_code)
    # The bulk delete is not among the analyst's actions: the changelist comes back, nothing deleted.
    bulk = {"action": "delete_selected", "_selected_action": str(report.pk), "post": "yes"}
    changelist = browser.base_url + "/admin/reconciliation/affiliatereport/"
    response = session.post(changelist, data=bulk, headers=headers, timeout=10, allow_redirects=False)
    assert response.status_code == 302 and response.headers["Location"].startswith("/admin/reconciliation/")
    report.refresh_from_db()
    assert report.claimed_views == 1000


def bearer_header(key: str) -> dict[str, str]:
    return {"Authorization": bearer(key)["HTTP_AUTHORIZATION"]}

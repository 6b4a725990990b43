"""The alert queue in the admin: opens on open alerts, most severe then newest; filters; the triage
actions (through alerts.services) on ticked rows and on a whole filtered selection; the audit trail."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from alerts.models import Alert
from reconciliation.models import Campaign
from tests import factories

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/alerts/alert/"


def listed(client: Client, query: str = "") -> list[int]:
    response = client.get(CHANGELIST + query)
    assert response.status_code == 200
    return [alert.pk for alert in response.context["cl"].result_list]


def test_the_queue_opens_on_open_alerts_most_severe_then_newest(analyst_client: Client) -> None:
    low = factories.alert(severity="LOW")
    old_critical = factories.alert(severity="CRITICAL")
    high = factories.alert(severity="HIGH")
    new_critical = factories.alert(severity="CRITICAL")
    resolved = factories.alert(severity="CRITICAL", status="RESOLVED")
    acknowledged = factories.alert(severity="MEDIUM", status="ACKNOWLEDGED")
    assert listed(analyst_client) == [new_critical.pk, old_critical.pk, high.pk, low.pk]
    assert listed(analyst_client, "?status=RESOLVED") == [resolved.pk]
    assert listed(analyst_client, "?status=ACKNOWLEDGED") == [acknowledged.pk]
    assert set(listed(analyst_client, "?status=all")) == {a.pk for a in Alert.objects.all()}
    page = analyst_client.get(CHANGELIST).content.decode()
    assert "Open (default)" in page


def test_filters_and_search(analyst_client: Client, analyst: Any) -> None:
    report = factories.report()
    affiliate = report.post.affiliate
    affiliate.name = "Mallory Fraudster"
    affiliate.save()
    campaign: Campaign = report.post.campaign
    about_report = factories.alert(report=report, affiliate=affiliate, platform=report.post.platform)
    outage = factories.alert(alert_type="PLATFORM_OUTAGE", category="SYSTEM_HEALTH", severity="CRITICAL")
    mine = factories.alert(assigned_to=analyst)
    # A related-object filter shows (and applies) only with two or more choices.
    factories.report(post=factories.post(platform=factories.platform("youtube")))
    assert listed(analyst_client, f"?campaign={campaign.pk}") == [about_report.pk]
    assert listed(analyst_client, f"?affiliate={affiliate.pk}") == [about_report.pk]
    assert listed(analyst_client, f"?affiliate={affiliate.email.upper()}") == [about_report.pk]
    assert listed(analyst_client, "?alert_type__exact=PLATFORM_OUTAGE") == [outage.pk]
    assert listed(analyst_client, "?category__exact=SYSTEM_HEALTH") == [outage.pk]
    assert listed(analyst_client, "?severity__exact=CRITICAL") == [outage.pk]
    assert listed(analyst_client, f"?platform__id__exact={report.post.platform_id}") == [about_report.pk]
    assert listed(analyst_client, "?assigned=me") == [mine.pk]
    assert mine.pk not in listed(analyst_client, "?assigned=nobody")
    assert listed(analyst_client, "?q=Fraudster") == [about_report.pk]
    assert about_report.pk in listed(analyst_client, f"?q={report.pk}")  # titles hold numbers too
    assert len(listed(analyst_client, "?created_at__gte=2000-01-01+00:00:00%2B00:00")) == 3


def test_resolve_asks_for_a_note_and_records_it_with_the_analyst(analyst_client: Client, analyst: Any) -> None:
    alert = factories.alert()
    # The action first shows its page with a note to write; nothing is resolved yet.
    page = analyst_client.post(CHANGELIST, {"action": "resolve", "_selected_action": [alert.pk]})
    assert page.status_code == 200 and b"<textarea" in page.content
    # Without a note: the page again, with the error; still open.
    again = analyst_client.post(CHANGELIST, {"action": "resolve", "_selected_action": [alert.pk], "apply": "yes"})
    assert again.status_code == 200 and b"This field is required" in again.content
    alert.refresh_from_db()
    assert alert.status == "OPEN"
    done = analyst_client.post(
        CHANGELIST,
        {"action": "resolve", "_selected_action": [alert.pk], "apply": "yes", "note": "Platform numbers confirmed."},
    )
    assert done.status_code == 302
    alert.refresh_from_db()
    assert (alert.status, alert.resolved_by, alert.resolution_notes) == (
        "RESOLVED",
        analyst,
        "Platform numbers confirmed.",
    )
    assert (alert.decided_by, alert.decision_note) == ("analyst", "Platform numbers confirmed.")
    # The audit trail: a history row with the analyst, the status before and after, and the note.
    latest = alert.history.first()
    assert latest.history_user == analyst
    assert latest.history_change_reason == "resolved by analyst: Platform numbers confirmed."
    changes = {c.field: (c.old, c.new) for c in latest.diff_against(latest.prev_record).changes}
    assert changes["status"] == ("OPEN", "RESOLVED")
    assert changes["resolution_notes"] == ("", "Platform numbers confirmed.")
    # …shown on the alert's history page.
    history = analyst_client.get(reverse("admin:alerts_alert_history", args=[alert.pk]))
    assert history.status_code == 200
    assert b"Platform numbers confirmed." in history.content and b"analyst" in history.content


def test_resolving_with_select_all_resolves_every_filtered_alert(analyst_client: Client) -> None:
    high = [factories.alert(severity="HIGH") for _ in range(55)]  # more than one page (50)
    low = factories.alert(severity="LOW")
    query = "?severity__exact=HIGH"
    page_ids = listed(analyst_client, query)
    assert len(page_ids) == 50
    data = {"action": "resolve", "_selected_action": page_ids, "select_across": "1"}
    confirm = analyst_client.post(CHANGELIST + query, data)
    assert confirm.status_code == 200 and b"55 alerts" in confirm.content
    done = analyst_client.post(CHANGELIST + query, {**data, "apply": "yes", "note": "Known bot wave, reviewed."})
    assert done.status_code == 302
    assert Alert.objects.filter(pk__in=[a.pk for a in high], status="RESOLVED").count() == 55
    low.refresh_from_db()
    assert low.status == "OPEN"


def test_reopen_acknowledge_and_assign(analyst_client: Client, analyst: Any) -> None:
    other = get_user_model().objects.create_user("bea", is_staff=True)
    other.groups.add(analyst.groups.get())
    alert = factories.alert(status="RESOLVED", resolution_notes="wrong call")
    analyst_client.post(
        CHANGELIST + "?status=all",
        {"action": "reopen", "_selected_action": [alert.pk], "apply": "yes", "note": "Resolved too early."},
    )
    alert.refresh_from_db()
    assert (alert.status, alert.resolution_notes, alert.decision_note) == ("OPEN", "", "Resolved too early.")
    assert alert.history.first().history_change_reason == "reopened by analyst: Resolved too early."

    analyst_client.post(CHANGELIST, {"action": "assign_to_me", "_selected_action": [alert.pk]})
    alert.refresh_from_db()
    assert alert.assigned_to == analyst and alert.assigned_at is not None
    assert listed(analyst_client, "?assigned=me") == [alert.pk]

    choose = analyst_client.post(CHANGELIST, {"action": "assign_to_analyst", "_selected_action": [alert.pk]})
    assert choose.status_code == 200 and b"bea" in choose.content
    analyst_client.post(
        CHANGELIST,
        {"action": "assign_to_analyst", "_selected_action": [alert.pk], "apply": "yes", "assignee": other.pk},
    )
    alert.refresh_from_db()
    assert alert.assigned_to == other
    assert listed(analyst_client, "?assigned=me") == []

    analyst_client.post(CHANGELIST, {"action": "acknowledge", "_selected_action": [alert.pk]})
    alert.refresh_from_db()
    assert (alert.status, alert.acknowledged_by) == ("ACKNOWLEDGED", analyst)
    reasons = list(alert.history.values_list("history_change_reason", flat=True))
    assert reasons[:3] == ["acknowledged by analyst", "assigned to bea by analyst", "assigned to analyst by analyst"]


def test_the_status_is_never_edited_on_the_alert_page(analyst_client: Client) -> None:
    alert = factories.alert()
    response = analyst_client.post(reverse("admin:alerts_alert_change", args=[alert.pk]), {"status": "RESOLVED"})
    assert response.status_code == 403
    alert.refresh_from_db()
    assert alert.status == "OPEN"


def test_changing_a_campaigns_rule_overrides_in_the_admin_is_in_its_history(superuser_client: Client) -> None:
    campaign = factories.campaign(platforms=("reddit",))
    url = reverse("admin:reconciliation_campaign_change", args=[campaign.pk])
    form = {
        "client": campaign.client_id,
        "name": campaign.name,
        "platforms": [p.pk for p in campaign.platforms.all()],
        "start_date": campaign.start_date.isoformat(),
        "status": "ACTIVE",
        "rule_overrides": '{"RECONCILIATION_SETTINGS": {"low_max": 0.12}}',
    }
    # New overrides are shown with their simulation first, and saved when the same ones are sent again.
    review = superuser_client.post(url, form)
    assert review.status_code == 200 and campaign.history.count() == 1
    form["reviewed_fingerprint"] = review.context["adminform"].form["reviewed_fingerprint"].value()
    response = superuser_client.post(url, form)
    assert response.status_code == 302, response.content[:3000]
    latest = campaign.history.first()
    assert latest.history_user.username == "root"
    changes = {c.field: (c.old, c.new) for c in latest.diff_against(latest.prev_record).changes}
    assert changes == {"rule_overrides": ({}, {"RECONCILIATION_SETTINGS": {"low_max": 0.12}})}
    assert superuser_client.get(reverse("admin:reconciliation_campaign_history", args=[campaign.pk])).status_code == 200

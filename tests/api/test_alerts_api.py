"""/api/v1/alerts/: staff read the alert queue and decide on alerts through alerts.services."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from alerts.models import Alert
from tests import factories
from tests.api.conftest import World, bearer

pytestmark = pytest.mark.django_db

LIST = "/api/v1/alerts/"


def detail(alert: Alert) -> str:
    return f"/api/v1/alerts/{alert.pk}"


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def test_access_matrix(api: APIClient, world: World, staff_user: Any) -> None:
    alert = factories.alert()
    urls = [LIST, detail(alert), LIST.rstrip("/"), detail(alert) + "/"]
    for url in urls:
        assert api.get(url, **bearer(world.staff_key)).status_code == 200, url
        assert api.get(url, **bearer(world.client_key)).status_code == 403, url
        assert api.get(url, **bearer(world.owner_key)).status_code == 403, url
        assert api.get(url).status_code == 401, url
    for action in ("acknowledge", "resolve", "reopen"):
        url = f"{detail(alert)}/{action}"
        body = {"note": "x"}
        assert api.post(url, body, format="json", **bearer(world.client_key)).status_code == 403, url
        assert api.post(url, body, format="json", **bearer(world.owner_key)).status_code == 403, url
        assert api.post(url, body, format="json").status_code == 401, url
    alert.refresh_from_db()
    assert alert.status == "OPEN"
    # A staff session (the admin's login) reads too.
    api.force_login(staff_user)
    assert api.get(LIST).status_code == 200
    assert api.get("/api/v1/alerts/999999").status_code == 404


def test_filters(api: APIClient, world: World, staff_user: Any) -> None:
    report = factories.report(post=factories.post(campaign=world.campaign, affiliate=world.owner))
    fraud = factories.alert(report=report, affiliate=world.owner, platform=report.post.platform, severity="CRITICAL")
    outage = factories.alert(
        alert_type="PLATFORM_OUTAGE", category="SYSTEM_HEALTH", severity="HIGH", platform=factories.platform("youtube")
    )
    resolved = factories.alert(status="RESOLVED", assigned_to=staff_user)
    Alert.objects.filter(pk=resolved.pk).update(created_at=timezone.now() - dt.timedelta(days=3))
    key = bearer(world.staff_key)
    assert ids(api.get(LIST, **key)) == [outage.pk, fraud.pk, resolved.pk]  # newest first
    assert ids(api.get(LIST, {"type": "PLATFORM_OUTAGE"}, **key)) == [outage.pk]
    assert ids(api.get(LIST, {"category": "FRAUD", "status": "OPEN"}, **key)) == [fraud.pk]
    assert ids(api.get(LIST, {"severity": "CRITICAL"}, **key)) == [fraud.pk]
    assert ids(api.get(LIST, {"status": "RESOLVED"}, **key)) == [resolved.pk]
    assert ids(api.get(LIST, {"platform": "YouTube"}, **key)) == [outage.pk]
    assert ids(api.get(LIST, {"affiliate_id": world.owner.pk}, **key)) == [fraud.pk]
    assert ids(api.get(LIST, {"campaign_id": world.campaign.pk}, **key)) == [fraud.pk]
    assert ids(api.get(LIST, {"assigned_to": staff_user.pk}, **key)) == [resolved.pk]
    since = (timezone.now() - dt.timedelta(days=1)).isoformat()
    assert ids(api.get(LIST, {"created_after": since}, **key)) == [outage.pk, fraud.pk]
    assert ids(api.get(LIST, {"created_before": since}, **key)) == [resolved.pk]
    body = api.get(detail(fraud), **key).json()
    assert (body["campaign_id"], body["report_id"], body["affiliate_id"]) == (
        world.campaign.pk,
        report.pk,
        world.owner.pk,
    )
    for bad in ({"status": "NOPE"}, {"platform": "myspace"}, {"affiliate_id": "0"}, {"type": ""}, {"limit": "0"}):
        assert api.get(LIST, bad, **key).status_code == 400, bad
    # Cursor pagination: two pages of one, no overlap.
    first = api.get(LIST, {"limit": 1}, **key).json()
    second = api.get(first["next"], **key).json()
    assert [first["results"][0]["id"], second["results"][0]["id"]] == [outage.pk, fraud.pk]


def test_each_action_with_a_staff_key_records_the_keys_name(api: APIClient, world: World) -> None:
    alert = factories.alert()
    key = bearer(world.staff_key)
    acked = api.post(f"{detail(alert)}/acknowledge", {"note": "looking"}, format="json", **key)
    assert acked.status_code == 200 and acked.json()["status"] == "ACKNOWLEDGED"
    assert acked.json()["decided_by"] == "staff key 'staff'"

    no_note = api.post(f"{detail(alert)}/resolve", {}, format="json", **key)
    blank = api.post(f"{detail(alert)}/resolve", {"note": "  \n "}, format="json", **key)
    assert (no_note.status_code, blank.status_code) == (400, 400)
    assert "note" in str(no_note.json()["error"])
    alert.refresh_from_db()
    assert alert.status == "ACKNOWLEDGED"

    resolved = api.post(f"{detail(alert)}/resolve", {"note": "Bot traffic, payout withheld."}, format="json", **key)
    assert resolved.status_code == 200
    assert (resolved.json()["status"], resolved.json()["resolution_notes"]) == (
        "RESOLVED",
        "Bot traffic, payout withheld.",
    )
    reopened = api.post(f"{detail(alert)}/reopen/", {"note": "New evidence."}, format="json", **key)
    assert reopened.status_code == 200 and reopened.json()["status"] == "OPEN"

    history = list(alert.history.order_by("history_id"))
    assert [h.status for h in history] == ["OPEN", "ACKNOWLEDGED", "RESOLVED", "OPEN"]
    assert [h.history_change_reason for h in history[1:]] == [
        "acknowledged by staff key 'staff': looking",
        "resolved by staff key 'staff': Bot traffic, payout withheld.",
        "reopened by staff key 'staff': New evidence.",
    ]
    assert all(h.history_user is None for h in history)  # a key is not a user


def test_a_staff_session_decision_records_the_user(api: APIClient, staff_user: Any) -> None:
    alert = factories.alert()
    api.force_login(staff_user)
    response = api.post(f"{detail(alert)}/resolve", {"note": "Duplicate of #12."}, format="json")
    assert response.status_code == 200
    alert.refresh_from_db()
    assert (alert.status, alert.resolved_by, alert.decided_by) == ("RESOLVED", staff_user, "analyst")
    latest = alert.history.first()
    assert latest.history_user == staff_user
    assert latest.history_change_reason == "resolved by analyst: Duplicate of #12."
    # Deciding again is a no-op, not a second history row.
    again = api.post(f"{detail(alert)}/resolve", {"note": "again"}, format="json")
    assert again.status_code == 200 and alert.history.count() == 2

"""The admin (destinations with a test-send, the delivery log with its failure filter and redeliver) and
the management commands of the runbook."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from notifications import services
from notifications.models import Delivery, Destination
from tests import factories
from tests.notifications.conftest import Inbox, webhook

pytestmark = pytest.mark.django_db


def failed_delivery(destination: Destination) -> Delivery:
    alert = factories.alert()
    return Delivery.objects.create(
        event_type="alert.created",
        destination=destination,
        alert=alert,
        status="FAILED",
        attempts=8,
        response_code=500,
        last_error="HTTP 500",
        next_attempt_at=timezone.now(),
        failed_at=timezone.now(),
    )


def test_a_destination_is_created_with_routing_rules_and_a_bad_url_is_refused(admin_client: Any) -> None:
    form = {
        "name": "ops slack",
        "kind": "SLACK",
        "url": "https://169.254.169.254/hook",
        "recipients": "",
        "is_active": "on",
        "events": ["alert.created", "alert.resolved"],
        "alert_types": ["OVERCLAIM"],
        "min_severity": "HIGH",
        "categories": ["FRAUD"],
    }
    refused = admin_client.post("/admin/notifications/destination/add/", form)
    assert refused.status_code == 200 and b"link-local or metadata" in refused.content
    mail = admin_client.post("/admin/notifications/destination/add/", {**form, "kind": "EMAIL", "url": ""})
    assert b"needs at least one address" in mail.content
    created = admin_client.post("/admin/notifications/destination/add/", {**form, "url": "http://127.0.0.1:9/hook"})
    assert created.status_code == 302, created.content[:2000]
    destination = Destination.objects.get(name="ops slack")
    assert destination.events == ["alert.created", "alert.resolved"]
    assert (destination.alert_types, destination.categories, destination.min_severity) == (
        ["OVERCLAIM"],
        ["FRAUD"],
        "HIGH",
    )
    page = admin_client.get(f"/admin/notifications/destination/{destination.pk}/change/")
    assert destination.secret.encode() in page.content  # ops configure their receiver with it


def test_the_test_send_action_delivers_a_test_event(admin_client: Any, inbox: Inbox) -> None:
    destination = webhook(inbox, "ops")
    response = admin_client.post(
        "/admin/notifications/destination/",
        {"action": "send_test", "_selected_action": [destination.pk]},
        follow=True,
    )
    assert b"Test notification queued for ops" in response.content
    (row,) = Delivery.objects.filter(destination=destination, event_type="destination.test")
    assert row.requested_by == "admin"
    assert services.deliver(row.pk) == "delivered"
    (got,) = inbox.received("ops")
    assert got["event_type"] == "destination.test" and got["verified"] is True


def test_the_delivery_log_filters_failures_and_redelivers(admin_client: Any, inbox: Inbox) -> None:
    destination = webhook(inbox, "ops")
    failed = failed_delivery(destination)
    delivered = Delivery.objects.create(
        event_type="alert.created",
        destination=destination,
        alert=factories.alert(),
        status="DELIVERED",
        next_attempt_at=timezone.now(),
    )
    page = admin_client.get("/admin/notifications/delivery/?outcome=failed")
    assert page.status_code == 200
    assert f"/admin/notifications/delivery/{failed.pk}/change/".encode() in page.content
    assert f"/admin/notifications/delivery/{delivered.pk}/change/".encode() not in page.content
    assert admin_client.get(f"/admin/notifications/delivery/{failed.pk}/change/").status_code == 200

    response = admin_client.post(
        "/admin/notifications/delivery/", {"action": "redeliver", "_selected_action": [failed.pk]}, follow=True
    )
    assert b"1 deliveries queued again" in response.content
    again = Delivery.objects.get(redelivery_of=failed)
    assert again.event_id == failed.event_id and again.status == "PENDING"
    failed.refresh_from_db()
    assert failed.status == "FAILED"  # the evidence is unchanged
    # Deliveries cannot be deleted, not even from the admin.
    assert admin_client.get(f"/admin/notifications/delivery/{failed.pk}/delete/").status_code == 403


def test_the_runbook_commands_report_and_redeliver_failures(inbox: Inbox) -> None:
    destination = webhook(inbox, "ops")
    failed = failed_delivery(destination)
    out = StringIO()
    call_command("notifications_status", stdout=out)
    assert "Deliveries by destination" in out.getvalue() and "FAILED 1" in out.getvalue()
    assert f"#{failed.pk} alert.created" in out.getvalue()

    out = StringIO()
    call_command("redeliver_notifications", "--failed", "--dry-run", stdout=out)
    assert out.getvalue().startswith("dry run: 1 deliveries")
    out = StringIO()
    call_command("redeliver_notifications", "--failed", stdout=out)
    assert out.getvalue().startswith("redelivered 1 deliveries")
    # Already redelivered: --failed does not send it a second time.
    out = StringIO()
    call_command("redeliver_notifications", "--failed", stdout=out)
    assert out.getvalue().startswith("redelivered 0 deliveries")
    again = Delivery.objects.get(redelivery_of=failed)
    assert services.deliver(again.pk) == "delivered"
    assert [g["event_id"] for g in inbox.received("ops")] == [str(failed.event_id)]

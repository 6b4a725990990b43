"""``/api/v1/webhooks/``: client keys subscribe, list and end subscriptions of their own campaigns' events."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from notifications.models import Delivery, WebhookSubscription
from notifications.services import notify_report_reconciled
from tests import factories
from tests.api.conftest import affiliate_with_key, bearer, client_with_key
from tests.notifications.conftest import notification_settings

pytestmark = pytest.mark.django_db


@pytest.fixture
def api() -> APIClient:
    return APIClient()


def subscribe(api: APIClient, key: str, **body: Any) -> Any:
    payload = {"url": "http://localhost:9/reconcile", "events": ["report.reconciled"], **body}
    return api.post("/api/v1/webhooks/", payload, format="json", **bearer(key))


def test_subscribe_shows_the_secret_once_then_lists_without_it_and_delete_ends_it(api: APIClient) -> None:
    client, key = client_with_key()
    created = subscribe(api, key, events=["alert.created", "report.reconciled", "alert.created"], description="ERP")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 30
    assert body["events"] == ["alert.created", "report.reconciled"] and body["description"] == "ERP"
    assert WebhookSubscription.objects.get(pk=body["id"]).client == client

    listed = api.get("/api/v1/webhooks/", **bearer(key))
    assert listed.status_code == 200
    assert [s["id"] for s in listed.json()] == [body["id"]]
    assert "secret" not in listed.json()[0]

    assert api.delete(f"/api/v1/webhooks/{body['id']}", **bearer(key)).status_code == 204
    assert api.get("/api/v1/webhooks/", **bearer(key)).json() == []
    row = WebhookSubscription.objects.get(pk=body["id"])  # kept: its deliveries are evidence
    assert not row.is_active and row.deactivated_at is not None
    assert api.delete(f"/api/v1/webhooks/{body['id']}", **bearer(key)).status_code == 404


def test_another_clients_subscription_is_not_found_and_other_keys_are_refused(api: APIClient) -> None:
    _, key = client_with_key()
    _, other_key = client_with_key()
    created = subscribe(api, key).json()
    assert api.delete(f"/api/v1/webhooks/{created['id']}", **bearer(other_key)).status_code == 404
    assert api.get("/api/v1/webhooks/", **bearer(other_key)).json() == []
    _, affiliate_key = affiliate_with_key()
    assert api.get("/api/v1/webhooks/", **bearer(affiliate_key)).status_code == 403
    assert api.get("/api/v1/webhooks/").status_code == 401


def test_bad_subscriptions_are_refused_with_the_reason(api: APIClient) -> None:
    _, key = client_with_key()
    unknown_event = subscribe(api, key, events=["report.deleted"])
    assert unknown_event.status_code == 400 and "events.0" in unknown_event.json()["error"]["fields"]
    assert subscribe(api, key, events=[]).status_code == 400
    with notification_settings(allow_private_addresses=False, allow_http=False):
        private = subscribe(api, key, url="https://127.0.0.1/hook")
        assert private.status_code == 400
        assert "loopback" in private.json()["error"]["fields"]["url"][0]
        metadata = subscribe(api, key, url="https://169.254.169.254/hook")
        assert "metadata" in metadata.json()["error"]["fields"]["url"][0]
        plain = subscribe(api, key, url="http://localhost/x")
        assert "must use https" in plain.json()["error"]["fields"]["url"][0]
    with notification_settings(max_subscriptions_per_client=1):
        assert subscribe(api, key).status_code == 201
        over = subscribe(api, key)
        assert over.status_code == 400 and "at most 1" in over.json()["error"]["fields"]["url"][0]


def test_a_clients_events_are_only_its_own_campaigns(api: APIClient) -> None:
    client, key = client_with_key()
    other, other_key = client_with_key()
    mine = subscribe(api, key, events=["report.reconciled", "alert.created"]).json()
    subscribe(api, other_key, events=["report.reconciled"])
    report = factories.report(post=factories.post(campaign=factories.campaign(client=client)))
    from django.utils import timezone

    rows = notify_report_reconciled(
        report_id=report.pk,
        changed=True,
        previous_status="PENDING",
        status="AFFILIATE_OVERCLAIMED",
        level="HIGH",
        is_recheck=False,
        now=timezone.now(),
    )
    assert [r.subscription_id for r in rows] == [mine["id"]]
    # A re-check that confirms the verdict (not changed), or an inconclusive result, is no event.
    for status, changed in (("AFFILIATE_OVERCLAIMED", False), ("MISSING_PLATFORM_DATA", True)):
        assert (
            notify_report_reconciled(
                report_id=report.pk,
                changed=changed,
                previous_status="AFFILIATE_OVERCLAIMED",
                status=status,
                level=None,
                is_recheck=True,
                now=timezone.now(),
            )
            == []
        )
    assert Delivery.objects.count() == 1

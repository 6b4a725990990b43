"""Delivery to a real receiver (the sandbox's webhook inbox over HTTP): signatures, retries on schedule,
per-destination breakers, refused redirects and addresses, the outbox's transaction, storm folding,
Slack and e-mail bodies, redelivery, and the metrics.

Senders are called directly with an explicit ``now``: a retry "60 s later" passes that time, nothing sleeps.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import random
from typing import Any

import pytest
from django.core import mail
from django.db import transaction
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from alerts.models import Alert
from alerts.services import alert_raise, alert_resolve
from notifications import http, services, signing
from notifications.models import Delivery, DeliveryAttempt, Destination
from reconcile_project.config import AlertingSettings
from tests import factories
from tests.notifications.conftest import Inbox, notification_settings, webhook
from tests.processes import free_port


def alerting(**fields: Any) -> AlertingSettings:
    return AlertingSettings.model_validate({"storm_threshold": 20, "storm_window_minutes": 60, **fields})


def raise_overclaim(report=None, **fields: Any) -> Alert:
    report = report or factories.report()
    fields.setdefault("settings", alerting())
    return alert_raise(
        alert_type="OVERCLAIM",
        severity=fields.pop("severity", "HIGH"),
        title=f"Over-claim on report {report.pk}",
        threshold={"metrics": {"views": {"claimed": 1300, "platform": 1000, "diff": 0.3}}},
        affiliate_id=report.post.affiliate_id,
        platform_id=report.post.platform_id,
        report_id=report.pk,
        **fields,
    ).alert


def deliver_all(now: dt.datetime | None = None) -> list[str]:
    return [services.deliver(pk, now=now) for pk in Delivery.objects.order_by("pk").values_list("pk", flat=True)]


# --- signature -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_webhook_is_signed_and_the_receiver_verifies_it(inbox: Inbox) -> None:
    destination = webhook(inbox)
    alert = raise_overclaim()
    (delivery,) = Delivery.objects.filter(alert=alert)
    assert services.deliver(delivery.pk) == "delivered"

    (got,) = inbox.received("ops")
    assert got["verified"] is True  # the inbox checks t=…,v1=HMAC-SHA256(secret, "t.body") within 5 minutes
    assert got["event_type"] == "alert.created" and got["delivery"] == str(delivery.pk)
    body = got["body"]
    assert body["id"] == str(delivery.event_id) and body["type"] == "alert.created"
    assert body["data"]["alert"]["id"] == alert.pk
    assert body["data"]["alert"]["numbers"] == {"views": {"claimed": 1300, "reported": 1000}}
    assert body["data"]["alert"]["admin_url"].endswith(f"/admin/alerts/alert/{alert.pk}/change/")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("DELIVERED", 1, 200)
    assert delivery.latency_ms is not None and delivery.last_error == ""

    # The same bytes under another secret, or altered, or signed long ago, do not verify.
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    header = signing.sign(destination.secret, raw, 1_700_000_000)
    assert signing.verify(destination.secret, raw, header, now=1_700_000_100)
    assert not signing.verify("whsec_other", raw, header, now=1_700_000_100)
    assert not signing.verify(destination.secret, raw + b" ", header, now=1_700_000_100)
    assert not signing.verify(destination.secret, raw, header, now=1_700_000_000 + 301)


# --- retries ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_500_is_retried_on_schedule_then_delivered_with_the_same_event_id(inbox: Inbox) -> None:
    webhook(inbox)
    inbox.script("ops", status=500, times=1, secret=Destination.objects.get().secret)
    raise_overclaim()
    (delivery,) = Delivery.objects.all()
    t0 = timezone.now()
    assert services.deliver(delivery.pk, now=t0) == "retrying"
    delivery.refresh_from_db()
    conf = services.config()
    first_wait = (delivery.next_attempt_at - t0).total_seconds()
    assert (
        conf.initial_delay_seconds * (1 - conf.jitter_pct)
        <= first_wait
        <= conf.initial_delay_seconds * (1 + conf.jitter_pct)
    )
    assert (delivery.status, delivery.attempts, delivery.response_code, delivery.last_error) == (
        "PENDING",
        1,
        500,
        "HTTP 500",
    )

    # Not due yet: a message (a sweep, a duplicate) that arrives early sends nothing.
    assert services.deliver(delivery.pk, now=t0 + dt.timedelta(seconds=first_wait / 2)) == "skipped"
    assert len(inbox.received("ops")) == 1

    assert services.deliver(delivery.pk, now=delivery.next_attempt_at) == "delivered"
    got = inbox.received("ops")
    assert [g["status"] for g in got] == [500, 200]
    assert got[0]["event_id"] == got[1]["event_id"] == str(delivery.event_id)
    tries = list(DeliveryAttempt.objects.filter(delivery=delivery).values_list("number", "outcome", "response_code"))
    assert tries == [(1, "HTTP_ERROR", 500), (2, "DELIVERED", 200)]


@pytest.mark.django_db
def test_the_retry_budget_ends_in_a_visible_failure_with_exponential_waits(inbox: Inbox) -> None:
    webhook(inbox)
    inbox.script("ops", status=503, secret=Destination.objects.get().secret)
    raise_overclaim()
    (delivery,) = Delivery.objects.all()
    waits = []
    now = timezone.now()
    with notification_settings(max_attempts=4, jitter_pct=0.0):
        for _ in range(3):
            assert services.deliver(delivery.pk, now=now) == "retrying"
            delivery.refresh_from_db()
            waits.append((delivery.next_attempt_at - now).total_seconds())
            now = delivery.next_attempt_at
        assert services.deliver(delivery.pk, now=now) == "failed"
    conf = services.config()
    assert waits == pytest.approx([conf.initial_delay_seconds * conf.backoff_multiplier**n for n in range(3)])
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("FAILED", 4, 503)
    assert delivery.failed_at is not None
    assert len(inbox.received("ops")) == 4
    # Nothing more is sent for a failed delivery, whatever arrives later.
    assert services.deliver(delivery.pk, now=now + dt.timedelta(days=2)) == "skipped"


def test_the_default_schedule_is_eight_tries_over_about_a_day() -> None:
    conf = services.config()
    assert conf.max_attempts == 8
    span_hours = services._schedule_span(conf) / 3600
    assert 20 <= span_hours <= 30
    waits = [services.retry_delay(n, conf, random.Random(n)) for n in range(1, 8)]
    assert all(later > earlier for earlier, later in zip(waits, waits[1:], strict=False))


# --- per-destination breakers -------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_dead_destination_opens_its_breaker_and_the_others_still_deliver(inbox: Inbox) -> None:
    dead = Destination.objects.create(
        name="dead", kind=Destination.Kind.WEBHOOK, url=f"http://127.0.0.1:{free_port()}/hook"
    )
    live = webhook(inbox, "live")
    for _ in range(6):
        raise_overclaim()
    with notification_settings(breaker_failure_threshold=2):
        outcomes: dict[int, list[str]] = {dead.pk: [], live.pk: []}
        for delivery in Delivery.objects.order_by("pk"):
            outcomes[int(delivery.destination_id or 0)].append(services.deliver(delivery.pk))
        assert services.breaker().state(dead.breaker_key) == "OPEN"
        assert services.breaker().state(live.breaker_key) == "CLOSED"
    # Two real tries reached the dead endpoint; the rest were deferred without a try (no worker time spent).
    assert outcomes[dead.pk] == ["retrying", "retrying", "deferred", "deferred", "deferred", "deferred"]
    assert DeliveryAttempt.objects.filter(delivery__destination=dead).count() == 2
    deferred = Delivery.objects.filter(destination=dead, attempts=0)
    assert deferred.count() == 4 and all(d.next_attempt_at > timezone.now() for d in deferred)
    assert outcomes[live.pk] == ["delivered"] * 6
    assert len(inbox.received("live")) == 6


# --- safety ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_redirect_is_not_followed(inbox: Inbox) -> None:
    destination = webhook(inbox)
    inbox.script("ops", status=302, location=inbox.url("elsewhere"), secret=destination.secret)
    raise_overclaim()
    (delivery,) = Delivery.objects.all()
    assert services.deliver(delivery.pk) == "retrying"
    (attempt,) = DeliveryAttempt.objects.filter(delivery=delivery)
    assert (attempt.outcome, attempt.response_code) == ("REDIRECT", 302)
    assert "redirect not followed" in attempt.error
    assert inbox.received("elsewhere") == []


@pytest.mark.django_db
def test_a_private_address_is_refused_when_private_addresses_are_not_allowed(inbox: Inbox) -> None:
    webhook(inbox)  # the inbox listens on 127.0.0.1
    raise_overclaim()
    (delivery,) = Delivery.objects.all()
    with notification_settings(allow_private_addresses=False):
        assert services.deliver(delivery.pk) == "failed"
    delivery.refresh_from_db()
    assert delivery.status == "FAILED" and "127.0.0.1, a loopback address" in delivery.last_error
    assert DeliveryAttempt.objects.get(delivery=delivery).outcome == "REFUSED"
    assert inbox.received() == []


@pytest.mark.parametrize(
    ("address", "allow_private", "problem"),
    [
        ("127.0.0.1", False, "a loopback address"),
        ("10.1.2.3", False, "a private address"),
        ("192.168.0.10", False, "a private address"),
        ("::1", False, "a loopback address"),
        ("::ffff:127.0.0.1", False, "a loopback address"),
        ("fd00::1", False, "a private address"),
        ("169.254.169.254", True, "a link-local or metadata address"),  # cloud metadata: never
        ("fd00:ec2::254", True, "a link-local or metadata address"),
        ("fe80::1", True, "a link-local or metadata address"),
        ("0.0.0.0", True, "a reserved address"),
        ("224.0.0.1", True, "a reserved address"),
        ("127.0.0.1", True, None),
        ("10.1.2.3", True, None),
        ("93.184.215.14", False, None),
    ],
)
def test_addresses_are_checked(address: str, allow_private: bool, problem: str | None) -> None:
    assert http.address_problem(ipaddress.ip_address(address), allow_private=allow_private) == problem


def test_urls_are_checked_after_resolution() -> None:
    conf = services.config().model_copy(update={"allow_private_addresses": False, "allow_http": False})
    with pytest.raises(http.Refused, match="must use https"):
        http.check_url("http://example.com/hook", conf)
    with pytest.raises(http.Refused, match="resolves to 127.0.0.1, a loopback address"):
        http.check_url("https://localhost/hook", conf)
    with pytest.raises(http.Refused, match="a link-local or metadata address"):
        http.check_url("https://169.254.169.254/latest/meta-data/", conf)
    with pytest.raises(http.Refused, match="credentials"):
        http.check_url("https://user:pw@example.com/hook", conf)


# --- the outbox's transaction ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_alert_sends_nothing_and_a_committed_one_is_sent(inbox: Inbox) -> None:
    webhook(inbox)
    report = factories.report()
    with pytest.raises(RuntimeError), transaction.atomic():
        raise_overclaim(report)
        assert Delivery.objects.count() == 1  # written with the alert...
        raise RuntimeError("the apply failed after raising the alert")
    assert Alert.objects.count() == 0 and Delivery.objects.count() == 0  # ...and gone with it
    assert services.sweep_deliveries().selected == 0
    assert inbox.received() == []

    with transaction.atomic():
        alert = raise_overclaim(report)
    (delivery,) = Delivery.objects.filter(alert=alert)
    assert deliver_all() == ["delivered"]
    assert [g["event_id"] for g in inbox.received("ops")] == [str(delivery.event_id)]


# --- storm folding -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_storm_folded_alert_is_sent_once_with_its_occurrence_count(inbox: Inbox) -> None:
    webhook(inbox)
    affiliate = factories.affiliate()
    settings = alerting(storm_threshold=2)
    for _ in range(6):
        alert_raise(
            alert_type="HIGH_DISCREPANCY",
            severity="HIGH",
            title="storm",
            affiliate_id=affiliate.pk,
            settings=settings,
        )
    alerts = list(Alert.objects.order_by("pk"))
    assert [a.occurrence_count for a in alerts] == [1, 5]
    assert Delivery.objects.count() == 2  # one per alert row, none per folded occurrence
    assert deliver_all() == ["delivered", "delivered"]
    counts = [g["body"]["data"]["alert"]["occurrence_count"] for g in inbox.received("ops")]
    assert counts == [1, 5]


# --- routing, Slack, e-mail, resolve -------------------------------------------------------------------


@pytest.mark.django_db
def test_routing_rules_pick_destinations_by_type_severity_category_and_platform(inbox: Inbox) -> None:
    critical_only = webhook(inbox, "critical", min_severity="CRITICAL")
    fraud = webhook(inbox, "fraud", categories=["FRAUD"])
    missing = webhook(inbox, "missing", alert_types=["MISSING_DATA"])
    tiktok = webhook(inbox, "tiktok")
    tiktok.platforms.set([factories.platform("tiktok")])
    Destination.objects.create(name="off", kind="WEBHOOK", url=inbox.url("off"), is_active=False)
    alert = raise_overclaim(severity="HIGH")  # a reddit post's over-claim: FRAUD, HIGH
    assert set(Delivery.objects.filter(alert=alert).values_list("destination__name", flat=True)) == {fraud.name}
    assert critical_only and missing


@pytest.mark.django_db
def test_slack_gets_blocks_with_colour_numbers_and_the_admin_link(inbox: Inbox) -> None:
    webhook(inbox, "slack", kind=Destination.Kind.SLACK)
    alert = raise_overclaim(severity="CRITICAL")
    assert deliver_all() == ["delivered"]
    (got,) = inbox.received("slack")
    body = got["body"]
    attachment = body["attachments"][0]
    assert attachment["color"] == "#c62828" and body["text"].startswith("[CRITICAL] Over-claim")
    text = json.dumps(attachment["blocks"])
    assert "*Affiliate*" in text and "*Platform*\\nreddit" in text and "1,300" in text and "1,000" in text
    assert f"/admin/alerts/alert/{alert.pk}/change/" in text


@pytest.mark.django_db
def test_email_destinations_send_through_the_mail_backend(inbox: Inbox) -> None:
    Destination.objects.create(name="mail", kind=Destination.Kind.EMAIL, recipients="ops@example.com, lead@example.com")
    alert = raise_overclaim()
    assert deliver_all() == ["delivered"]
    (message,) = mail.outbox
    assert message.to == ["ops@example.com", "lead@example.com"]
    assert alert.title in message.subject and "views: claimed 1,300, reported 1,000" in message.body


@pytest.mark.django_db
def test_resolving_an_alert_notifies_destinations_that_route_resolutions(inbox: Inbox) -> None:
    webhook(inbox, "both", events=["alert.created", "alert.resolved"])
    webhook(inbox, "created")
    user = factories_user()
    alert = raise_overclaim()
    alert_resolve(alert=alert, user=user, note="checked with the affiliate")
    rows = Delivery.objects.order_by("pk")
    assert [(str(d.destination), d.event_type) for d in rows] == [
        ("both (HTTPS webhook (JSON, signed))", "alert.created"),
        ("created (HTTPS webhook (JSON, signed))", "alert.created"),
        ("both (HTTPS webhook (JSON, signed))", "alert.resolved"),
    ]
    deliver_all()
    resolved = [g for g in inbox.received("both") if g["event_type"] == "alert.resolved"][0]["body"]["data"]["alert"]
    assert resolved["status"] == "RESOLVED" and resolved["resolution_notes"] == "checked with the affiliate"


def factories_user() -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username="analyst-n", password="x-unused-pass")


# --- redelivery, metrics ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_redelivery_is_a_new_row_of_the_same_event_and_the_original_stays(inbox: Inbox) -> None:
    webhook(inbox)
    raise_overclaim()
    (original,) = Delivery.objects.all()
    with notification_settings(allow_private_addresses=False):
        assert services.deliver(original.pk) == "failed"
    (again,) = services.redeliver([original], requested_by="ops")
    assert services.deliver(again.pk) == "delivered"
    original.refresh_from_db()
    again.refresh_from_db()
    assert original.status == "FAILED" and again.status == "DELIVERED"
    assert (again.event_id, again.redelivery_of_id, again.requested_by) == (original.event_id, original.pk, "ops")
    assert [g["event_id"] for g in inbox.received("ops")] == [str(original.event_id)]


def _metric(name: str, **labels: str) -> float:
    response = Client().get("/metrics")
    assert response.status_code == 200
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


@pytest.mark.django_db
def test_metrics_count_deliveries_by_destination_kind_and_outcome(inbox: Inbox) -> None:
    webhook(inbox, "slack", kind=Destination.Kind.SLACK)
    destination = webhook(inbox, "hook")
    inbox.script("hook", status=500, times=1, secret=destination.secret)
    before = {
        key: _metric("notification_deliveries_total", kind=key[0], outcome=key[1])
        for key in [("slack", "delivered"), ("webhook", "retrying")]
    }
    raise_overclaim()
    deliver_all()
    assert (
        _metric("notification_deliveries_total", kind="slack", outcome="delivered")
        == before[("slack", "delivered")] + 1
    )
    assert (
        _metric("notification_deliveries_total", kind="webhook", outcome="retrying")
        == before[("webhook", "retrying")] + 1
    )


# --- the README's verification example -----------------------------------------------------------------


def test_the_readme_verification_example_accepts_our_signature_and_rejects_replays() -> None:
    """Runs the exact code block of the README's "Verifying a signature" section."""
    import re
    import time
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("<!-- webhook-verification-example -->", 2)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    assert len(code.group(1).strip().splitlines()) <= 12
    namespace: dict[str, Any] = {}
    exec(code.group(1), namespace)  # noqa: S102 - the README's own example, checked as documented
    verify = namespace["verify"]
    body = b'{"id":"e1","type":"alert.created"}'
    now = int(time.time())
    assert verify("whsec_s", body, signing.sign("whsec_s", body, now))
    assert not verify("whsec_other", body, signing.sign("whsec_s", body, now))
    assert not verify("whsec_s", body + b" ", signing.sign("whsec_s", body, now))
    assert not verify("whsec_s", body, signing.sign("whsec_s", body, now - 301))  # a replay
    assert not verify("whsec_s", body, "garbage")


def test_https_to_the_checked_address_still_verifies_the_hosts_certificate() -> None:
    """The request goes to the checked IP; SNI and the certificate check use the URL's host name."""
    import requests

    adapter = http._PinnedAdapter("hooks.example.com")
    request = requests.Request("POST", "https://93.184.215.14:443/hook").prepare()
    host_params, pool_kwargs = adapter.build_connection_pool_key_attributes(request, True)
    assert host_params == {"scheme": "https", "host": "93.184.215.14", "port": 443}
    assert pool_kwargs["server_hostname"] == pool_kwargs["assert_hostname"] == "hooks.example.com"
    assert pool_kwargs["cert_reqs"] == "CERT_REQUIRED"


@pytest.mark.django_db
def test_a_host_that_does_not_resolve_is_a_failed_try_that_is_retried() -> None:
    Destination.objects.create(name="nx", kind="WEBHOOK", url="https://receiver.invalid/hook")
    raise_overclaim()
    (delivery,) = Delivery.objects.all()
    assert services.deliver(delivery.pk) == "retrying"
    delivery.refresh_from_db()
    assert delivery.status == "PENDING" and "receiver.invalid does not resolve" in delivery.last_error
    assert DeliveryAttempt.objects.get(delivery=delivery).outcome == "NETWORK_ERROR"

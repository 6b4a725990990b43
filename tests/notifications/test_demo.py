"""``seed_demo`` points notifications at the sandbox's inbox, and ``demo`` prints what its alerts caused."""

from __future__ import annotations

import time
from io import StringIO

import pytest
import requests
from django.core.management import call_command
from django.test import override_settings

from alerts.models import Alert
from alerts.services import alert_raise
from notifications import services
from notifications.models import Delivery, Destination, WebhookSubscription
from reconcile_project.config import AlertingSettings
from reconciliation.management.commands.demo import Command as Demo
from tests import factories
from tests.notifications.conftest import Inbox


@pytest.mark.django_db
def test_the_demo_prints_the_notifications_its_alerts_caused(inbox: Inbox, tmp_path) -> None:
    sandbox = inbox.server.url
    with override_settings(SANDBOX_URL=sandbox, VAR_DIR=tmp_path):
        call_command("seed_demo", stdout=StringIO())
    assert set(Destination.objects.values_list("name", flat=True)) == {"sandbox-ops", "sandbox-slack", "ops-mail"}
    (subscription,) = WebhookSubscription.objects.filter(description="sandbox-acme")
    demo = Demo(stdout=StringIO())
    demo._inbox_secrets(requests.Session(), sandbox)

    campaign = subscription.client.campaigns.first()
    report = factories.report(post=factories.post(campaign=campaign))
    alert = alert_raise(
        alert_type="OVERCLAIM",
        severity="CRITICAL",
        title=f"Over-claim on report {report.pk}: 100% above the platform",
        affiliate_id=report.post.affiliate_id,
        platform_id=report.post.platform_id,
        report_id=report.pk,
        settings=AlertingSettings.model_validate({}),
    ).alert
    for pk in Delivery.objects.order_by("pk").values_list("pk", flat=True):
        assert services.deliver(pk) == "delivered"

    out = StringIO()
    demo = Demo(stdout=out)
    demo._print_notifications(sandbox, Alert.objects.filter(pk=alert.pk), [report.pk], time.monotonic())
    text = out.getvalue()
    assert "Notifications received by the sandbox" in text
    lines = [" ".join(line.split()) for line in text.splitlines()]
    assert f"sandbox-ops alert.created signed ok alert {alert.pk} [CRITICAL] OVERCLAIM x1" in lines
    assert f"sandbox-acme alert.created signed ok alert {alert.pk} [CRITICAL] OVERCLAIM x1" in lines
    assert "sandbox-slack" in text and "[CRITICAL] Over-claim" in text
    assert "+ 1 e-mail notification(s)" in text

"""Events from the engine: ``report.reconciled`` on a first verdict and on a re-check that changes it,
``alert.created`` to the client whose campaign it concerns; delivered to the sandbox's inbox."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from notifications import services
from notifications.models import Delivery, WebhookSubscription
from platforms.adapters.base import PlatformMetrics
from platforms.fetcher import FetchOutcome
from reconciliation.models import ReconciliationLog
from reconciliation.services.attempts import AttemptResult, attempt_run
from tests import factories
from tests.notifications.conftest import Inbox


def fetch(views: int, clicks: int, conversions: int) -> Any:
    def fetcher(_claimed: Any) -> FetchOutcome:
        metrics = PlatformMetrics(views, clicks, conversions, raw={"test": True})
        return FetchOutcome(metrics=metrics, missing_fields=metrics.missing_fields(), attempts=1, duration_seconds=0.01)

    return fetcher


def due(log: ReconciliationLog) -> dt.datetime:
    assert log.next_attempt_at is not None
    return log.next_attempt_at


@pytest.mark.django_db
def test_report_reconciled_on_the_first_verdict_and_on_a_recheck_that_changes_it(inbox: Inbox) -> None:
    client = factories.client()
    subscription = WebhookSubscription.objects.create(
        client=client, url=inbox.url("erp"), events=["report.reconciled", "alert.created"]
    )
    inbox.script("erp", secret=subscription.secret)
    report = factories.report(
        post=factories.post(campaign=factories.campaign(client=client)),
        claimed_views=1000,
        claimed_clicks=50,
        claimed_conversions=5,
    )
    result = attempt_run(
        report_id=report.pk, worker="test", fetcher=fetch(1000, 50, 5), clock=lambda: report.submitted_at
    )
    assert isinstance(result, AttemptResult) and result.status == "MATCHED"
    assert list(Delivery.objects.values_list("event_type", flat=True)) == ["report.reconciled"]

    # A re-check that finds the same numbers confirms the verdict: no event.
    log = ReconciliationLog.objects.get(report=report)
    result = attempt_run(report_id=report.pk, worker="test", fetcher=fetch(1000, 50, 5), clock=lambda: due(log))
    assert isinstance(result, AttemptResult) and result.status == "MATCHED"
    assert Delivery.objects.count() == 1

    # A re-check that finds the platform lower turns it into an over-claim: a verdict event and the alert.
    log.refresh_from_db()
    result = attempt_run(report_id=report.pk, worker="test", fetcher=fetch(500, 50, 5), clock=lambda: due(log))
    assert isinstance(result, AttemptResult) and result.status == "AFFILIATE_OVERCLAIMED"
    assert sorted(Delivery.objects.values_list("event_type", flat=True)) == [
        "alert.created",
        "report.reconciled",
        "report.reconciled",
    ]
    for pk in Delivery.objects.order_by("pk").values_list("pk", flat=True):
        assert services.deliver(pk) == "delivered"
    got = inbox.received("erp")
    assert all(g["verified"] for g in got)
    verdicts = [g["body"]["data"]["report"] for g in got if g["event_type"] == "report.reconciled"]
    assert [(v["previous_status"], v["status"], v["is_recheck"]) for v in verdicts] == [
        ("PENDING", "MATCHED", False),
        ("MATCHED", "AFFILIATE_OVERCLAIMED", True),
    ]
    assert verdicts[1]["claimed"] == {"views": 1000, "clicks": 50, "conversions": 5}
    assert verdicts[1]["verified"] == {"views": 500, "clicks": 50, "conversions": 5}
    (alert,) = [g["body"]["data"]["alert"] for g in got if g["event_type"] == "alert.created"]
    assert alert["type"] == "OVERCLAIM" and alert["campaign_id"] == report.post.campaign_id
    assert "admin_url" not in alert  # clients get no staff links


@pytest.mark.django_db
def test_other_clients_hear_nothing_of_a_campaign_not_theirs(inbox: Inbox) -> None:
    mine, theirs = factories.client(), factories.client()
    WebhookSubscription.objects.create(client=theirs, url=inbox.url("theirs"), events=["report.reconciled"])
    report = factories.report(post=factories.post(campaign=factories.campaign(client=mine)))
    attempt_run(report_id=report.pk, worker="test", fetcher=fetch(1000, 50, 5), clock=lambda: report.submitted_at)
    assert Delivery.objects.count() == 0

"""POST /api/v1/reconciliation/run: staff make reports due again (one now, a selection by a maintenance task)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any
from unittest import mock

import pytest
import redis
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from reconciliation.models import ReconciliationLog
from reconciliation.services import attempts, dispatch
from reconciliation.services.submissions import reports_reopen_matching
from reconciliation.tasks import reopen_reports_task
from tests import factories
from tests.api.conftest import World, bearer

pytestmark = pytest.mark.django_db

URL = "/api/v1/reconciliation/run"


def run(api: APIClient, world: World, body: Any) -> Any:
    return api.post(URL, body, format="json", **bearer(world.staff_key))


def finished_report(campaign, status: str = "MISSING_PLATFORM_DATA", **log: Any):
    report = factories.report(post=factories.post(campaign=campaign))
    ReconciliationLog.objects.filter(report=report).update(
        status=status, terminal=True, next_attempt_at=None, dispatched_at=timezone.now(), **log
    )
    return report


@pytest.fixture
def maintenance_queue() -> Any:
    """The test broker's maintenance queue (emptied before and after)."""
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("maintenance")
    yield broker
    broker.delete("maintenance")


def queued_reopens(broker: redis.Redis) -> list[dict[str, Any]]:
    """The reopen tasks waiting on the maintenance queue: their kwargs, decoded from the kombu messages."""
    found = []
    for raw in broker.lrange("maintenance", 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] == "reconciliation.tasks.reopen_reports":
            body = json.loads(base64.b64decode(message["body"]))
            found.append(body[1])
    return found


def test_a_campaign_run_answers_with_the_count_and_queues_a_maintenance_task(
    api: APIClient, world: World, django_capture_on_commit_callbacks: Any, maintenance_queue: redis.Redis
) -> None:
    mine = [finished_report(world.campaign), finished_report(world.campaign, status="MATCHED")]
    elsewhere = finished_report(world.other_campaign)

    with django_capture_on_commit_callbacks(execute=True):
        response = run(api, world, {"campaign_id": world.campaign.pk})

    assert response.status_code == 202
    assert response.json() == {
        "queued": 2,
        "dispatched": 0,
        "background": True,
        "filter": {"campaign_id": world.campaign.pk},
    }
    # Nothing reopened inside the request: the maintenance task does it.
    assert all(ReconciliationLog.objects.get(report=r).terminal for r in mine)
    [kwargs] = queued_reopens(maintenance_queue)
    assert kwargs == {"campaign_id": world.campaign.pk, "status": None, "up_to_report_id": max(r.pk for r in mine)}

    before = timezone.now()
    assert reopen_reports_task(**kwargs) == 2  # what the maintenance worker runs
    for report in mine:
        log = ReconciliationLog.objects.get(report=report)
        assert log.next_attempt_at is not None and not log.terminal and log.dispatched_at is None
        assert before <= log.next_attempt_at <= timezone.now()
    assert ReconciliationLog.objects.get(report=elsewhere).terminal


def test_run_by_status_is_queued_and_by_report_is_synchronous(
    api: APIClient, world: World, django_capture_on_commit_callbacks: Any, maintenance_queue: redis.Redis
) -> None:
    missing = finished_report(world.campaign)
    finished_report(world.campaign, status="MATCHED")
    with django_capture_on_commit_callbacks(execute=True):
        by_status = run(api, world, {"status": "MISSING_PLATFORM_DATA"}).json()
    assert by_status == {
        "queued": 1,
        "dispatched": 0,
        "background": True,
        "filter": {"status": "MISSING_PLATFORM_DATA"},
    }
    assert [k["status"] for k in queued_reopens(maintenance_queue)] == ["MISSING_PLATFORM_DATA"]

    with mock.patch.object(dispatch, "send_reconcile", return_value=True) as send:
        with django_capture_on_commit_callbacks(execute=True):
            by_report = run(api, world, {"report_id": missing.pk}).json()
    assert by_report == {"queued": 1, "dispatched": 1, "background": False, "filter": {"report_id": missing.pk}}
    assert [call.args[0] for call in send.call_args_list] == [missing.pk]
    assert not ReconciliationLog.objects.get(report=missing).terminal


def test_a_report_with_an_attempt_running_is_skipped(
    api: APIClient, world: World, django_capture_on_commit_callbacks: Any, maintenance_queue: redis.Redis
) -> None:
    leased = finished_report(world.campaign, lease_until=timezone.now() + dt.timedelta(minutes=1))
    with django_capture_on_commit_callbacks(execute=True):
        body = run(api, world, {"campaign_id": world.campaign.pk}).json()
    assert (body["queued"], body["dispatched"]) == (0, 0)
    assert queued_reopens(maintenance_queue) == []  # nothing to do: no task
    assert run(api, world, {"report_id": leased.pk}).json()["queued"] == 0


def test_the_maintenance_task_reopens_in_batches_and_stops_at_the_counted_reports(world: World) -> None:
    reports = [finished_report(world.campaign) for _ in range(5)]
    leased = finished_report(world.campaign, lease_until=timezone.now() + dt.timedelta(minutes=1))
    up_to = max(r.pk for r in [*reports, leased])
    later = finished_report(world.campaign)  # created after the request counted the selection

    with mock.patch.object(attempts, "reports_reopen", wraps=attempts.reports_reopen) as reopen:
        reopened = reports_reopen_matching(status="MISSING_PLATFORM_DATA", up_to_report_id=up_to, batch=2)

    assert reopened == 5
    assert [len(call.kwargs["report_ids"]) for call in reopen.call_args_list] == [2, 2, 2]  # one transaction each
    assert not ReconciliationLog.objects.filter(report__in=reports, terminal=True).exists()
    assert ReconciliationLog.objects.get(report=leased).terminal
    assert ReconciliationLog.objects.get(report=later).terminal


def test_the_reopen_task_is_routed_to_the_maintenance_queue() -> None:
    from reconcile_project.celery import app

    assert reopen_reports_task.queue == "maintenance"
    assert app.tasks["reconciliation.tasks.reopen_reports"].acks_late


@pytest.mark.parametrize(
    "body",
    [{}, {"campaign_id": 1, "status": "MATCHED"}, {"status": "NOPE"}, {"report_id": "1"}, {"campaign_id": -1}, []],
)
def test_exactly_one_valid_selector_or_400(api: APIClient, world: World, body: Any) -> None:
    response = run(api, world, body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize("body", [{"campaign_id": 987654}, {"report_id": 987654}])
def test_unknown_target_is_404(api: APIClient, world: World, body: dict) -> None:
    response = run(api, world, body)
    assert response.status_code == 404
    assert "987654" in response.json()["error"]["message"]

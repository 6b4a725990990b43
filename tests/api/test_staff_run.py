"""POST /api/v1/reconciliation/run: staff make reports due again and queue them (202)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from unittest import mock

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from reconciliation.models import ReconciliationLog
from reconciliation.services import dispatch
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


def test_campaign_run_makes_its_reports_due_and_sends_them_after_commit(
    api: APIClient, world: World, django_capture_on_commit_callbacks: Any
) -> None:
    mine = [finished_report(world.campaign), finished_report(world.campaign, status="MATCHED")]
    elsewhere = finished_report(world.other_campaign)
    before = timezone.now()

    with mock.patch.object(dispatch, "send_reconcile", return_value=True) as send:
        with django_capture_on_commit_callbacks(execute=True):
            response = run(api, world, {"campaign_id": world.campaign.pk})

    assert response.status_code == 202
    assert response.json() == {"queued": 2, "dispatched": 2}
    assert sorted(call.args[0] for call in send.call_args_list) == sorted(r.pk for r in mine)
    for report in mine:
        log = ReconciliationLog.objects.get(report=report)
        assert log.next_attempt_at is not None and not log.terminal
        assert before <= log.next_attempt_at <= timezone.now()
    assert ReconciliationLog.objects.get(report=elsewhere).terminal


def test_run_by_status_and_by_report(api: APIClient, world: World) -> None:
    missing = finished_report(world.campaign)
    finished_report(world.campaign, status="MATCHED")
    assert run(api, world, {"status": "MISSING_PLATFORM_DATA"}).json()["queued"] == 1
    assert run(api, world, {"report_id": missing.pk}).json()["queued"] == 1


def test_a_report_with_an_attempt_running_is_skipped(api: APIClient, world: World) -> None:
    finished_report(world.campaign, lease_until=timezone.now() + dt.timedelta(minutes=1))
    assert run(api, world, {"campaign_id": world.campaign.pk}).json() == {"queued": 0, "dispatched": 0}


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

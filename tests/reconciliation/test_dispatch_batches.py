"""Fresh claims fill batches under load; the sweeper groups due reports per platform into batches."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest
from django.db import transaction

from reconcile_project.redis import get_redis
from reconciliation.models import ReconciliationLog
from reconciliation.services import dispatch, sweeper
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def batching(settings: Any) -> Any:
    settings.RECONCILE_BATCH = settings.RECONCILE_BATCH.model_copy(update={"size": 3, "fill_wait_seconds": 30.0})
    get_redis().delete(dispatch.FILL_GATE_KEY)
    yield settings.RECONCILE_BATCH
    get_redis().delete(dispatch.FILL_GATE_KEY)


def test_a_lone_fresh_claim_is_sent_at_once_and_the_ones_right_after_it_wait_for_the_sweeper(
    batching: Any, django_capture_on_commit_callbacks: Any
) -> None:
    reports = [factories.report() for _ in range(3)]
    with mock.patch.object(dispatch, "send_reconcile", return_value=True) as sent:
        for report in reports:
            with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
                dispatch.dispatch_on_commit([report.pk])
    sent.assert_called_once_with(reports[0].pk, priority=False, request_id=None)
    marked = dict(ReconciliationLog.objects.values_list("report_id", "dispatched_at"))
    assert marked[reports[0].pk] is not None
    assert marked[reports[1].pk] is None and marked[reports[2].pk] is None
    due = set(sweeper.due_logs(dispatch.timezone.now()).values_list("report_id", flat=True))
    assert due == {reports[1].pk, reports[2].pk}


def test_the_claim_that_opens_a_window_schedules_one_sweep_at_its_end_for_the_claims_left_to_fill_it(
    batching: Any, django_capture_on_commit_callbacks: Any
) -> None:
    reports = [factories.report() for _ in range(4)]
    with (
        mock.patch.object(dispatch, "send_reconcile", return_value=True),
        mock.patch.object(dispatch, "send_sweep", return_value=True) as sweep,
    ):
        for report in reports:
            with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
                dispatch.dispatch_on_commit([report.pk])
    # The first goes at once and schedules the window's sweep; the three after it wait for that sweep.
    sweep.assert_called_once_with(countdown=batching.fill_wait_seconds)


def test_a_scheduled_sweep_reaches_the_maintenance_queue_with_its_countdown(batching: Any) -> None:
    from reconcile_project.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.client.delete(dispatch.QUEUE_MAINTENANCE)
        assert dispatch.send_sweep(countdown=0.25)
        raw = conn.default_channel.client.lpop(dispatch.QUEUE_MAINTENANCE)
    message = json.loads(raw)
    assert message["headers"]["task"] == dispatch.SWEEP_TASK
    assert message["headers"]["eta"] is not None


def test_a_priority_claim_never_waits_for_a_batch(batching: Any, django_capture_on_commit_callbacks: Any) -> None:
    first, urgent = factories.report(), factories.report()
    with mock.patch.object(dispatch, "send_reconcile", return_value=True) as sent:
        for report, priority in ((first, False), (urgent, True)):
            with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
                dispatch.dispatch_on_commit([report.pk], priority=priority)
    assert [c.args[0] for c in sent.call_args_list] == [first.pk, urgent.pk]


def test_the_sweeper_sends_due_reports_in_batches_of_one_platform(batching: Any) -> None:
    youtube = factories.platform("youtube")
    reddit = factories.platform("reddit")
    on_youtube = [factories.report(post=factories.post(platform=youtube)).pk for _ in range(4)]
    on_reddit = [factories.report(post=factories.post(platform=reddit)).pk for _ in range(2)]
    with (
        mock.patch.object(sweeper, "send_reconcile_batch", return_value=True) as batches,
        mock.patch.object(sweeper, "send_reconcile", return_value=True) as singles,
    ):
        result = sweeper.sweep_due()
    assert (result.selected, result.sent, result.failed) == (6, 6, 0)
    sent_batches = [sorted(c.args[0]) for c in batches.call_args_list]
    (single,) = [c.args[0] for c in singles.call_args_list]
    # Four YouTube reports in batches of three: one batch and one report alone; the two Reddit ones together.
    assert sorted(len(b) for b in sent_batches) == [2, 3]
    assert sorted(on_reddit) in sent_batches
    (youtube_batch,) = [b for b in sent_batches if b != sorted(on_reddit)]
    assert sorted([*youtube_batch, single]) == sorted(on_youtube)
    assert not ReconciliationLog.objects.filter(dispatched_at__isnull=True).exists()

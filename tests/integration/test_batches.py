"""Batches end to end: real Celery workers, Redis, PostgreSQL and the sandbox over HTTP."""

from __future__ import annotations

import pytest

from reconciliation.models import ReconciliationAttempt, ReconciliationLog, TrustEvent
from reconciliation.services.dispatch import send_reconcile_batch
from tests import factories
from tests.integration.conftest import wait_until
from tests.integration.test_pipeline import BASE, settled, submit

pytestmark = [pytest.mark.integration]


def finished_batches(processes, *workers: str) -> int:
    return sum(
        1
        for name in workers
        for line in processes.output(name).splitlines()
        if "reconciliation.tasks.reconcile_batch[" in line and "] succeeded in " in line
    )


def batch_of(campaign, sandbox_client, prefix: str, n: int) -> list[int]:
    ids = []
    for index in range(n):
        post_id = f"{prefix}{index:05d}"
        sandbox_client.set_post("youtube", post_id, **BASE)
        ids.append(submit(campaign, factories.affiliate(), post_id, BASE, dispatch=False).pk)
    return ids


def test_the_same_batch_delivered_twenty_times_gives_each_report_one_verdict(processes, sandbox_client) -> None:
    processes.worker("w1", concurrency=8)
    processes.worker("w2", concurrency=8)
    campaign = factories.campaign(platforms=("youtube",))
    ids = batch_of(campaign, sandbox_client, "batchdup", 10)
    for _ in range(20):
        assert send_reconcile_batch(ids)
    wait_until(lambda: settled(ids), timeout=45, what="the batch to be reconciled")
    wait_until(lambda: finished_batches(processes, "w1", "w2") >= 20, timeout=45, what="every copy to be consumed")
    for report_id in ids:
        assert ReconciliationAttempt.objects.filter(report_id=report_id).count() == 1
        assert TrustEvent.objects.filter(report_id=report_id).count() == 1
    assert set(ReconciliationLog.objects.filter(report_id__in=ids).values_list("status", flat=True)) == {"MATCHED"}
    # One platform request served the batch: the sandbox saw far fewer calls than reports x deliveries.
    assert sandbox_client.stats()["platforms"]["youtube"]["total"] < len(ids)


def test_a_worker_killed_mid_batch_leaves_every_report_to_be_reconciled_once_after_the_lease(
    processes, sandbox_client, settings
) -> None:
    lease = 6
    settings.RETRY_POLICY = settings.RETRY_POLICY.model_copy(update={"lease_seconds": lease})
    campaign = factories.campaign(platforms=("youtube",), rule_overrides={"RETRY_POLICY": {"lease_seconds": lease}})
    ids = batch_of(campaign, sandbox_client, "batchkill", 5)
    sandbox_client.set_fault("youtube", latency_ms=5000)
    processes.worker("doomed", concurrency=1)
    assert send_reconcile_batch(ids)
    wait_until(
        lambda: ReconciliationAttempt.objects.filter(report_id__in=ids, outcome="RUNNING").count() == len(ids),
        timeout=20,
        what="the batch's attempts to start fetching",
    )
    processes.kill("doomed")  # SIGKILL mid-fetch: no chance to clean up
    sandbox_client.clear_fault("youtube")
    processes.worker("survivor", concurrency=2)
    processes.beat(RETRY_POLICY__LEASE_SECONDS=str(lease))
    wait_until(lambda: settled(ids), timeout=60, what="the survivor to reconcile the batch after the lease")
    for report_id in ids:
        attempts = list(
            ReconciliationAttempt.objects.filter(report_id=report_id)
            .order_by("number")
            .values_list("number", "outcome")
        )
        assert attempts == [(1, "DISCARDED"), (2, "SUCCESS")], report_id
        assert TrustEvent.objects.filter(report_id=report_id).count() == 1
    assert set(ReconciliationLog.objects.filter(report_id__in=ids).values_list("status", flat=True)) == {"MATCHED"}

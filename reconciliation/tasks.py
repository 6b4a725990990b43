"""Celery tasks: thin edges. Each takes ids, calls one service, and holds only its retry policy.

``reconcile_report`` is idempotent by state (the attempt protocol), which is what makes ``acks_late``
and at-least-once delivery safe. Only database connection errors are retried by Celery — they "might be
okay on the next try"; everything else is recorded and left to the sweeper's schedule.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from reconciliation.services.attempts import attempts_run, worker_name
from reconciliation.services.idempotency import idempotency_purge
from reconciliation.services.outages import outages_check
from reconciliation.services.submissions import reports_reopen_matching
from reconciliation.services.sweeper import sweep_due

logger = logging.getLogger("reconciliation.worker")


_RECONCILE_OPTIONS: dict = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "autoretry_for": (OperationalError, InterfaceError),
    "max_retries": 3,
    "retry_backoff": 1,
    "retry_backoff_max": 10,
    "retry_jitter": True,
}


@shared_task(name="reconciliation.tasks.reconcile_report", **_RECONCILE_OPTIONS)
def reconcile_report(self, report_id: int) -> str:
    """One report (a fresh claim, sent at once: a batch of one)."""
    results = _run(self, [int(report_id)])
    if not results:
        return "skipped"
    result = results[0]
    return result if isinstance(result, str) else result.status


@shared_task(name="reconciliation.tasks.reconcile_batch", **_RECONCILE_OPTIONS)
def reconcile_batch(self, report_ids: list[int]) -> int:
    """Up to ``RECONCILE_BATCH__SIZE`` due reports of one platform, grouped by the sweeper: one platform
    request and one apply transaction for all of them. Returns how many were reconciled."""
    return sum(1 for result in _run(self, [int(i) for i in report_ids]) if not isinstance(result, str))


def _run(task, report_ids: list[int]) -> list:
    try:
        return attempts_run(report_ids=report_ids, worker=f"{task.request.hostname or worker_name()}")
    except (OperationalError, InterfaceError):
        raise
    except Exception as exc:
        # attempts_run records any error of an attempt itself as an internal_error outcome; what reaches
        # here could not even be recorded (the database is gone). The task_failure signal keeps it in the
        # shared list of recent worker exceptions (/debug/...), and the expired leases bring the reports back.
        logger.exception("Reconciliation job failed", extra={"report_ids": report_ids, "error": str(exc)})
        raise


@shared_task(name="reconciliation.tasks.sweep_due", ignore_result=True, expires=10)
def sweep_due_task() -> int:
    return sweep_due().sent


@shared_task(name="reconciliation.tasks.purge_idempotency_keys", ignore_result=True, expires=3600)
def purge_idempotency_keys_task() -> int:
    return idempotency_purge(now=timezone.now())


@shared_task(name="reconciliation.tasks.check_outages", ignore_result=True, expires=60)
def check_outages_task() -> list[str]:
    return outages_check()


# Reopening is idempotent by state (it only makes reports due now), so a redelivery is harmless.
@shared_task(
    name="reconciliation.tasks.reopen_reports",
    queue="maintenance",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=(OperationalError, InterfaceError),
    max_retries=3,
    retry_backoff=1,
    retry_jitter=True,
)
def reopen_reports_task(*, campaign_id: int | None = None, status: str | None = None, up_to_report_id: int) -> int:
    return reports_reopen_matching(campaign_id=campaign_id, status=status, up_to_report_id=int(up_to_report_id))

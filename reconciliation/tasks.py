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

from reconciliation.services.attempts import attempt_run, worker_name
from reconciliation.services.idempotency import idempotency_purge
from reconciliation.services.outages import outages_check
from reconciliation.services.submissions import reports_reopen_matching
from reconciliation.services.sweeper import sweep_due

logger = logging.getLogger("reconciliation.worker")


@shared_task(
    name="reconciliation.tasks.reconcile_report",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=(OperationalError, InterfaceError),
    max_retries=3,
    retry_backoff=1,
    retry_backoff_max=10,
    retry_jitter=True,
)
def reconcile_report(self, report_id: int) -> str:
    try:
        result = attempt_run(report_id=int(report_id), worker=f"{self.request.hostname or worker_name()}")
    except (OperationalError, InterfaceError):
        raise
    except Exception as exc:
        # attempt_run records any error of the attempt itself as an internal_error outcome; what reaches
        # here could not even be recorded (the database is gone). The task_failure signal keeps it in the
        # shared list of recent worker exceptions (/debug/...), and the expired lease brings the report back.
        logger.exception("Reconciliation job failed", extra={"report_id": report_id, "error": str(exc)})
        raise
    return result if isinstance(result, str) else result.status


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

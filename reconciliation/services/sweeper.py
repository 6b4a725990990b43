"""The sweeper: finds every report that is due and not leased and sends it to the workers.

It is what makes "the row is the outbox" true: a broker that was down, a message lost with a worker, an
expired lease, a retry or a re-check whose time has come — all end up here. Safe to run in several beat
processes at once: rows are taken with ``SELECT … FOR UPDATE SKIP LOCKED`` and marked dispatched in the
same transaction, so two sweepers never send the same report in one round.

Due reports are grouped by platform and by queue (priority or not) into batches of at most
``RECONCILE_BATCH.size``: one ``reconcile_batch`` message per batch, so one platform request and one apply
transaction serve them all. A batch of one is sent as ``reconcile_report``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from reconciliation.models import ReconciliationLog
from reconciliation.services.dispatch import needs_priority, send_reconcile, send_reconcile_batch

logger = logging.getLogger("reconciliation.sweeper")

DEFAULT_BATCH = 500


@dataclass(frozen=True)
class SweepResult:
    selected: int
    sent: int
    failed: int


def due_logs(now: dt.datetime):
    """Logs whose attempt is due, not leased (or the lease expired), and not sent recently."""
    resend_before = now - dt.timedelta(seconds=settings.RETRY_POLICY.lease_seconds)
    return ReconciliationLog.objects.filter(
        Q(terminal=False),
        Q(next_attempt_at__lte=now),
        Q(lease_until__isnull=True) | Q(lease_until__lte=now),
        # A message sent a moment ago is probably still queued; resend only after a lease's length.
        Q(dispatched_at__isnull=True) | Q(dispatched_at__lte=resend_before),
    )


def sweep_due(
    *, now: dt.datetime | None = None, batch: int = DEFAULT_BATCH, batch_size: int | None = None
) -> SweepResult:
    """Send every due report (at most ``batch`` per round), grouped per platform into batches of ``batch_size``."""
    now = now or timezone.now()
    size = batch_size or settings.RECONCILE_BATCH.size
    with transaction.atomic():
        rows = list(
            due_logs(now)
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("next_attempt_at")
            .values_list(
                "report_id",
                "report__post__platform_id",
                "report__post__affiliate__trust_score",
                "report__suspicion_flags",
            )[:batch]
        )
        if not rows:
            return SweepResult(0, 0, 0)
        ReconciliationLog.objects.filter(report_id__in=[r[0] for r in rows]).update(dispatched_at=now)
    groups: dict[tuple[int, bool], list[int]] = {}
    for report_id, platform_id, score, flags in rows:
        groups.setdefault((platform_id, needs_priority(trust_score=score, flags=flags)), []).append(report_id)
    unsent: list[int] = []
    for (_platform, priority), ids in groups.items():
        for start in range(0, len(ids), size):
            chunk = ids[start : start + size]
            sent = (
                send_reconcile(chunk[0], priority=priority)
                if len(chunk) == 1
                else send_reconcile_batch(chunk, priority=priority)
            )
            if not sent:
                unsent += chunk
    if unsent:
        # Put the unsent ones back so the next round retries them at once.
        ReconciliationLog.objects.filter(report_id__in=unsent, dispatched_at=now).update(dispatched_at=None)
        logger.warning("Sweeper could not reach the broker", extra={"selected": len(rows), "failed": len(unsent)})
    else:
        logger.info("Sweeper dispatched due reports", extra={"sent": len(rows)})
    return SweepResult(len(rows), len(rows) - len(unsent), len(unsent))

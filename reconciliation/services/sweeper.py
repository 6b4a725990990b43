"""The sweeper: finds every report that is due and not leased and sends it to the workers.

It is what makes "the row is the outbox" true: a broker that was down, a message lost with a worker, an
expired lease, a retry or a re-check whose time has come — all end up here. Safe to run in several beat
processes at once: rows are taken with ``SELECT … FOR UPDATE SKIP LOCKED`` and marked dispatched in the
same transaction, so two sweepers never send the same report in one round.
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
from reconciliation.services.dispatch import needs_priority, send_reconcile

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


def sweep_due(*, now: dt.datetime | None = None, batch: int = DEFAULT_BATCH) -> SweepResult:
    now = now or timezone.now()
    with transaction.atomic():
        rows = list(
            due_logs(now)
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("next_attempt_at")
            .values_list("report_id", "report__post__affiliate__trust_score", "report__suspicion_flags")[:batch]
        )
        if not rows:
            return SweepResult(0, 0, 0)
        ReconciliationLog.objects.filter(report_id__in=[r[0] for r in rows]).update(dispatched_at=now)
    unsent = [
        report_id
        for report_id, score, flags in rows
        if not send_reconcile(report_id, priority=needs_priority(trust_score=score, flags=flags))
    ]
    if unsent:
        # Put the unsent ones back so the next round retries them at once.
        ReconciliationLog.objects.filter(report_id__in=unsent, dispatched_at=now).update(dispatched_at=None)
        logger.warning("Sweeper could not reach the broker", extra={"selected": len(rows), "failed": len(unsent)})
    else:
        logger.info("Sweeper dispatched due reports", extra={"sent": len(rows)})
    return SweepResult(len(rows), len(rows) - len(unsent), len(unsent))

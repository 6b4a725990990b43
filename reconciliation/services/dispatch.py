"""Handing reports to the workers.

The ReconciliationLog row is the outbox: a report is saved with ``next_attempt_at = now`` before any
message is sent, so a broker that is down, slow or loses a message only delays the work — the sweeper
finds every due report and sends it again. Sending is therefore best effort and never raises.

Fresh claims fill batches under load: a claim with no other sent within ``RECONCILE_BATCH.fill_wait_seconds``
is sent at once (a batch of one: low-load latency does not grow); the claims that follow it within that
window are left due and unsent: the claim that opened the window also scheduled one sweep at its end, which
sends them grouped per platform (one platform request and one apply transaction per batch). Beat's periodic
sweep (``SWEEP_INTERVAL_SECONDS``) stays the safety net, so an idle system polls nothing more often. Low-trust
and flagged claims (the priority queue) are always sent at once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from django.db import transaction
from django.utils import timezone

logger = logging.getLogger("reconciliation.dispatch")

#: Redis key held for a fill wait after a fresh claim is sent at once (``SET NX PX``).
FILL_GATE_KEY = "reconcile:fill-gate"
SWEEP_TASK = "reconciliation.tasks.sweep_due"

RECONCILE_TASK = "reconciliation.tasks.reconcile_report"
RECONCILE_BATCH_TASK = "reconciliation.tasks.reconcile_batch"
QUEUE_DEFAULT = "reconcile"
QUEUE_PRIORITY = "reconcile_priority"
QUEUE_MAINTENANCE = "maintenance"


def needs_priority(*, trust_score: Any, flags: Iterable[Any]) -> bool:
    """Low-trust or critical affiliates' reports and HIGH suspicion flags go to the priority queue."""
    from django.conf import settings

    from reconciliation import rules

    if rules.has_high(list(flags or [])):
        return True
    return rules.bucket(trust_score, settings.TRUST_SCORING) in (
        rules.TrustBucket.LOW_TRUST,
        rules.TrustBucket.CRITICAL,
    )


def _publish(task: str, args: list[Any], *, priority: bool, headers: dict[str, str] | None = None) -> None:
    """Publish through a producer of Celery's pool (its connection and channel are kept between publishes),
    whose channel then publishes with one kept Redis client (:func:`_keep_publish_client`). Raises when the
    broker cannot take the message."""
    from reconcile_project.celery import app

    with app.producer_or_acquire() as producer:
        app.send_task(
            task,
            args=args,
            queue=QUEUE_PRIORITY if priority else QUEUE_DEFAULT,
            headers=headers,
            producer=producer,
            # Short publish retry: the request must not hang on a dead broker; the sweeper retries.
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
        )
        # After the publish, so the channel exists (made inside the publish's retry, not here).
        _keep_publish_client(producer.channel)


def _deferred(exc: Exception, **extra: Any) -> bool:
    logger.warning(
        "Dispatch deferred to the sweeper: %s: %s",
        type(exc).__name__,
        exc,
        extra={**extra, "error": f"{type(exc).__name__}: {exc}"},
    )
    return False


def send_reconcile(report_id: int, *, priority: bool = False, request_id: str | None = None) -> bool:
    """Publish one reconcile message now; False (logged) when the broker cannot take it."""
    try:
        _publish(
            RECONCILE_TASK, [report_id], priority=priority, headers={"request_id": request_id} if request_id else None
        )
    except Exception as exc:  # broker down: the outbox row stays due and the sweeper sends it later
        return _deferred(exc, report_id=report_id)
    return True


def send_reconcile_batch(report_ids: list[int], *, priority: bool = False) -> bool:
    """Publish one ``reconcile_batch`` message for these reports (one platform's, grouped by the sweeper)."""
    try:
        _publish(RECONCILE_BATCH_TASK, [list(report_ids)], priority=priority)
    except Exception as exc:  # broker down: the rows stay due and the next sweep sends them
        return _deferred(exc, report_ids=list(report_ids))
    return True


def _sent_alone() -> bool:
    """True when no fresh claim was sent within the fill wait: this one goes now and opens a window, and one
    sweep is scheduled at the window's end for the claims that arrive within it (they are left due)."""
    from django.conf import settings

    from reconcile_project.redis import get_redis

    batch = settings.RECONCILE_BATCH
    if batch.size <= 1 or batch.fill_wait_seconds <= 0:
        return True
    try:
        window_ms = max(1, round(batch.fill_wait_seconds * 1000))
        opened = bool(get_redis().set(FILL_GATE_KEY, "1", nx=True, px=window_ms))
    except Exception:  # noqa: BLE001 - Redis down: send at once, as without batching
        return True
    if opened:
        transaction.on_commit(lambda: send_sweep(countdown=batch.fill_wait_seconds))
    return opened


def send_sweep(*, countdown: float) -> bool:
    """Publish one sweep to the maintenance queue, to run ``countdown`` seconds from now."""
    from reconcile_project.celery import app

    try:
        app.send_task(
            SWEEP_TASK,
            queue=QUEUE_MAINTENANCE,
            countdown=countdown,
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
        )
    except Exception as exc:  # broker down: beat's sweep sends the due claims
        return _deferred(exc)
    return True


def _keep_publish_client(channel: Any) -> None:
    """Make a kombu Redis channel publish through one kept client instead of a new one per message.

    kombu's Redis channel builds a ``redis.Redis`` object for every message it puts (``conn_or_acquire``:
    the TCP connection comes from the channel's pool, but the client object, with its ~170 response
    callbacks, is new each time): measured on the 2-core machine, 23 % of a publish's CPU. A client over
    a connection pool is safe to share, so the channel keeps the first one. A channel kombu replaces after
    a connection error is a new object and gets its own on its first publish.
    """
    if getattr(channel, "_kept_publish_client", None) is not None or not hasattr(channel, "_create_client"):
        return
    client = channel._create_client()

    @contextlib.contextmanager
    def conn_or_acquire(client_: Any = None) -> Iterator[Any]:
        yield client_ or client

    channel._kept_publish_client = client
    channel.conn_or_acquire = conn_or_acquire


def dispatch_on_commit(report_ids: Iterable[int], *, priority: bool = False, request_id: str | None = None) -> None:
    """Send after the surrounding transaction commits (a worker must never see a row that is not there).

    The rows are marked dispatched inside the transaction, before anything is sent: marked only after the
    publish, a sweep between the commit and the mark found them due and unsent and sent them a second
    time. A publish that fails un-marks its rows, so the sweeper sends them at its next round.
    """
    from reconciliation.models import ReconciliationLog

    ids = list(report_ids)
    if not ids or not (priority or _sent_alone()):
        return  # due and unsent: the sweep at the end of the window sends it in a batch
    marked_at = timezone.now()
    ReconciliationLog.objects.filter(report_id__in=ids).update(dispatched_at=marked_at)

    def _send() -> None:
        unsent = [rid for rid in ids if not send_reconcile(rid, priority=priority, request_id=request_id)]
        if unsent:
            ReconciliationLog.objects.filter(report_id__in=unsent, dispatched_at=marked_at).update(dispatched_at=None)

    transaction.on_commit(_send)

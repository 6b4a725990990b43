"""Notifications: the outbox written with the event, publishing, the sweeper, and sending.

**Hooks.** :func:`notify_alert_created`, :func:`notify_alert_resolved` and :func:`notify_report_reconciled`
are called inside the transaction that writes the event. They write one :class:`Delivery` row per
destination or subscription that wants it and, once that transaction commits, publish one message per
row to the ``notifications`` queue. Publishing is best effort: a broker that is down only delays delivery,
because the sweeper (a beat task) re-publishes every due row that was not sent recently.

**Sending** (:func:`deliver`). A sender *claims* a row in a short transaction (``SELECT … FOR UPDATE`` of a
PENDING, due, unleased row; it takes a lease and counts the try), sends outside any transaction, then
records the try and its outcome if the lease is still its own. Two messages for one row (the on-commit
publish and a sweep) never send it twice at once: the second waits for the first's claim to commit, then
finds the row leased (or delivered) and does nothing. Rows are written already marked as dispatched, so a
successful publish costs no second write; a failed one clears the mark for the sweeper.
A sender that dies mid-send leaves a lease that expires, and the row is sent again (at-least-once: the
payload ``id`` lets receivers deduplicate).

**Failures** are retried with exponential backoff and jitter up to ``NOTIFICATIONS.max_attempts`` tries,
then the row is FAILED (admin filter, redeliver action). Each destination has its own circuit breaker
(the platform breaker, keyed per destination): while it is open, the destination's rows are deferred
without spending a try, so a dead endpoint costs the workers nothing and does not slow the others.

**Storm folding.** An alert folded into an earlier one (occurrence count) adds no delivery: the earlier
alert's payload is fixed at its first try, so folds before then are sent with their count, once.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import requests
from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from alerts.models import Alert
from notifications import http, payloads, signing
from notifications.models import (
    DESTINATION_EVENTS,
    Delivery,
    DeliveryAttempt,
    Destination,
    Event,
    WebhookSubscription,
)
from platforms.breaker import CircuitBreaker
from reconcile_project.config import CircuitBreakerSettings, NotificationSettings
from reconcile_project.metrics import NOTIFICATION_DELIVERIES_TOTAL, NOTIFICATION_DELIVERY_DURATION
from reconciliation import rules

logger = logging.getLogger("notifications")

DELIVER_TASK = "notifications.tasks.deliver"
QUEUE = "notifications"
Attempt = DeliveryAttempt.Outcome


def config() -> NotificationSettings:
    value = settings.NOTIFICATIONS
    return value if isinstance(value, NotificationSettings) else NotificationSettings.model_validate(value)


# --- hooks (inside the event's transaction) ----------------------------------------------------------


def notify_alert_created(alert: Alert) -> list[Delivery]:
    return _enqueue_alert(alert, Event.ALERT_CREATED)


def notify_alert_resolved(alert: Alert) -> list[Delivery]:
    return _enqueue_alert(alert, Event.ALERT_RESOLVED)


@dataclass(frozen=True)
class ReportVerdict:
    """A verdict written for one report (the first one, or a re-check's)."""

    report_id: int
    changed: bool
    previous_status: str
    status: str
    level: str | None
    is_recheck: bool
    now: dt.datetime


def notify_report_reconciled(
    *,
    report_id: int,
    changed: bool,
    previous_status: str,
    status: str,
    level: str | None,
    is_recheck: bool,
    now: dt.datetime,
) -> list[Delivery]:
    """A verdict was written: the first one, or a re-check's. Only a first verdict and a re-check that
    changes it (``changed``) are ``report.reconciled`` events."""
    return notify_reports_reconciled(
        [ReportVerdict(report_id, changed, previous_status, status, level, is_recheck, now)]
    )


@functools.lru_cache(maxsize=64)
def _subscriptions_of_reports_sql(count: int) -> str:
    """(subscription id, its events, report id) for the active subscriptions of the reports' clients: once
    per batch of verdicts, so written once as SQL (compiling the four-table ORM join per batch cost more
    than running it)."""
    from reconciliation.models import AffiliateReport, Campaign, Post

    subscription, campaign = WebhookSubscription._meta.db_table, Campaign._meta.db_table
    post, report = Post._meta.db_table, AffiliateReport._meta.db_table
    return (
        f"SELECT s.id, s.events, r.id FROM {subscription} s"
        f" JOIN {campaign} c ON c.client_id = s.client_id"
        f" JOIN {post} p ON p.campaign_id = c.id"
        f" JOIN {report} r ON r.post_id = p.id"
        f" WHERE s.is_active AND r.id IN ({', '.join(['%s'] * count)})"
    )


def notify_reports_reconciled(verdicts: Iterable[ReportVerdict]) -> list[Delivery]:
    """:func:`notify_report_reconciled` for the verdicts of a batch: one query finds the subscriptions of
    every report whose verdict is an event."""
    events = {v.report_id: v for v in verdicts if v.changed and v.status in rules.CONCLUSIVE_STATUSES}
    if not events:
        return []
    with connection.cursor() as cursor:
        cursor.execute(_subscriptions_of_reports_sql(len(events)), list(events))
        pairs = cursor.fetchall()
    rows = []
    for subscription_id, subscribed, report_id in pairs:
        if isinstance(subscribed, str):  # SQLite returns the JSON column's text
            subscribed = json.loads(subscribed)
        if Event.REPORT_RECONCILED not in subscribed:
            continue
        v = events[report_id]
        context = {
            "previous_status": v.previous_status,
            "status": v.status,
            "discrepancy_level": v.level,
            "is_recheck": v.is_recheck,
            "at": v.now.isoformat(),
        }
        rows.append(
            Delivery(
                event_type=Event.REPORT_RECONCILED,
                subscription_id=subscription_id,
                report_id=report_id,
                context=context,
            )
        )
    return _enqueue(rows, timezone.now())


def _enqueue_alert(alert: Alert, event: str) -> list[Delivery]:
    destinations = [
        d
        for d in Destination.objects.filter(is_active=True).prefetch_related("platforms")
        if d.matches(alert, event, {p.pk for p in d.platforms.all()})
    ]
    subscriptions: list[WebhookSubscription] = []
    if alert.report_id is not None:
        subscriptions = [
            s
            for s in WebhookSubscription.objects.filter(
                is_active=True, client__campaigns__posts__reports__pk=alert.report_id
            )
            if event in s.events
        ]
    rows = [Delivery(event_type=event, destination=d, alert=alert) for d in destinations]
    rows += [Delivery(event_type=event, subscription=s, alert=alert) for s in subscriptions]
    return _enqueue(rows, timezone.now())


def _enqueue(rows: list[Delivery], now: dt.datetime) -> list[Delivery]:
    if not rows:
        return []
    for row in rows:
        row.next_attempt_at = now
        row.dispatched_at = now  # cleared if the publish after commit fails
    created = Delivery.objects.bulk_create(rows)
    publish_on_commit([d.pk for d in created])
    return created


# --- publishing ----------------------------------------------------------------------------------------


def publish(delivery_ids: Iterable[int]) -> list[int]:
    """Publish one deliver message per id; returns those the broker took. The others are marked
    undispatched, so the next sweep publishes them at once."""
    from reconcile_project.celery import app

    ids = list(delivery_ids)
    sent: list[int] = []
    for delivery_id in ids:
        try:
            app.send_task(
                DELIVER_TASK,
                args=[delivery_id],
                queue=QUEUE,
                retry=True,
                retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
            )
        except Exception as exc:  # broker down: the row stays due and the sweeper publishes it later
            logger.warning(
                "Notification publish deferred to the sweeper: %s",
                type(exc).__name__,
                extra={"delivery_id": delivery_id, "error": f"{type(exc).__name__}: {exc}"},
            )
            break
        sent.append(delivery_id)
    unsent = ids[len(sent) :]
    if unsent:
        Delivery.objects.filter(pk__in=unsent, status=Delivery.Status.PENDING, lease_until__isnull=True).update(
            dispatched_at=None
        )
    return sent


def publish_on_commit(delivery_ids: list[int]) -> None:
    transaction.on_commit(lambda: publish(delivery_ids))


@dataclass(frozen=True)
class SweepResult:
    selected: int
    sent: int


def due_deliveries(now: dt.datetime):
    resend_before = now - dt.timedelta(seconds=config().lease_seconds)
    return Delivery.objects.filter(
        Q(status=Delivery.Status.PENDING),
        Q(next_attempt_at__lte=now),
        Q(lease_until__isnull=True) | Q(lease_until__lte=now),
        # A message published a moment ago is probably still queued: publish again only after a lease.
        Q(dispatched_at__isnull=True) | Q(dispatched_at__lte=resend_before),
    )


def sweep_deliveries(*, now: dt.datetime | None = None, batch: int | None = None) -> SweepResult:
    """Publish every due delivery (broker outages, retries whose time has come, lost messages)."""
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(
            due_deliveries(now)
            .select_for_update(skip_locked=True)
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[: batch or config().sweep_batch]
        )
        if not ids:
            return SweepResult(0, 0)
        Delivery.objects.filter(pk__in=ids).update(dispatched_at=now)
    sent = publish(ids)
    unsent = sorted(set(ids) - set(sent))
    if unsent:
        Delivery.objects.filter(pk__in=unsent, dispatched_at=now).update(dispatched_at=None)
        logger.warning(
            "Notification sweeper could not reach the broker", extra={"selected": len(ids), "failed": len(unsent)}
        )
    else:
        logger.info("Notification sweeper published due deliveries", extra={"sent": len(ids)})
    return SweepResult(len(ids), len(sent))


# --- sending -------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _breaker(conf: NotificationSettings) -> CircuitBreaker:
    from reconcile_project.redis import get_redis

    return CircuitBreaker(
        get_redis,
        CircuitBreakerSettings(
            failure_threshold=conf.breaker_failure_threshold,
            open_cooldown_seconds=conf.breaker_cooldown_seconds,
            half_open_probe_count=1,
            max_in_flight=CircuitBreakerSettings.model_fields["max_in_flight"].default,
            in_flight_lease_seconds=conf.lease_seconds,
            slow_call_seconds=conf.connect_timeout_seconds + conf.read_timeout_seconds,
        ),
        key_prefix="cb:notify:",
    )


def breaker() -> CircuitBreaker:
    """The destinations' breakers (``cb:notify:<destination|subscription>:<id>`` in Redis)."""
    return _breaker(config())


@dataclass(frozen=True)
class Claim:
    delivery_id: int
    number: int
    lease_until: dt.datetime
    kind: str
    destination_kind: str  # SLACK, WEBHOOK, EMAIL, or SUBSCRIPTION
    url: str
    recipients: tuple[str, ...]
    secret: str
    breaker_key: str
    event: dict[str, Any]
    created_at: dt.datetime


@dataclass(frozen=True)
class SendResult:
    outcome: str  # a DeliveryAttempt.Outcome
    response_code: int | None = None
    latency_ms: float | None = None
    error: str = ""
    excerpt: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == Attempt.DELIVERED


def deliver(delivery_id: int, *, now: dt.datetime | None = None, rng: random.Random | None = None) -> str:
    """Claim, send and record one delivery. Returns what happened (``skipped`` when it was not ours)."""
    now = now or timezone.now()
    claim = _claim(delivery_id, now)
    if claim is None:
        return "skipped"
    brk = breaker()
    admission = brk.before_call(claim.breaker_key)
    if not admission.admitted:
        return _defer(claim, now, admission.retry_after_seconds or config().breaker_cooldown_seconds, rng)
    result = _send(claim)
    if result.outcome == Attempt.REFUSED:
        brk.release(claim.breaker_key, admission)
    elif result.ok:
        brk.record_success(claim.breaker_key, admission)
    else:
        brk.record_failure(claim.breaker_key, admission)
    return _record(claim, result, now, rng)


def _claim(delivery_id: int, now: dt.datetime) -> Claim | None:
    conf = config()
    with transaction.atomic():
        d = (
            Delivery.objects.select_for_update(of=("self",))
            .select_related("destination", "subscription")
            .filter(pk=delivery_id, status=Delivery.Status.PENDING, next_attempt_at__lte=now)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
            .first()
        )
        if d is None:
            return None
        target: Any = d.target
        if not target.is_active:
            d.status, d.failed_at, d.lease_until = Delivery.Status.FAILED, now, None
            d.last_error = f"{'destination' if d.destination_id else 'subscription'} deactivated before delivery"
            d.save(update_fields=["status", "failed_at", "lease_until", "last_error", "updated_at"])
            NOTIFICATION_DELIVERIES_TOTAL.labels(kind=d.kind, outcome="failed").inc()
            return None
        if d.payload is None:
            d.payload = payloads.envelope(d, conf)
        d.attempts += 1
        d.lease_until = now + dt.timedelta(seconds=conf.lease_seconds)
        d.save(update_fields=["payload", "attempts", "lease_until", "updated_at"])
    destination = d.destination
    return Claim(
        delivery_id=d.pk,
        number=d.attempts,
        lease_until=d.lease_until,
        kind=d.kind,
        destination_kind=destination.kind if destination is not None else "SUBSCRIPTION",
        url=target.url,
        recipients=tuple(_recipients(destination.recipients)) if destination is not None else (),
        secret=target.secret,
        breaker_key=target.breaker_key,
        event=d.payload,
        created_at=d.created_at,
    )


def _recipients(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


def body_of(claim: Claim) -> bytes:
    content = payloads.slack_body(claim.event) if claim.destination_kind == Destination.Kind.SLACK else claim.event
    return json.dumps(content, separators=(",", ":"), sort_keys=True).encode()


def _send(claim: Claim) -> SendResult:
    if claim.destination_kind == Destination.Kind.EMAIL:
        subject, text = payloads.email_message(claim.event)
        started = time.perf_counter()
        try:
            send_mail(subject, text, None, list(claim.recipients), fail_silently=False)
        except Exception as exc:
            return SendResult(Attempt.NETWORK_ERROR, error=f"{type(exc).__name__}: {exc}"[:2000])
        return SendResult(Attempt.DELIVERED, latency_ms=round((time.perf_counter() - started) * 1000, 3))
    body = body_of(claim)
    headers = {
        signing.SIGNATURE_HEADER: signing.sign(claim.secret, body, int(time.time())),
        signing.EVENT_HEADER: str(claim.event["type"]),
        signing.DELIVERY_HEADER: str(claim.delivery_id),
    }
    try:
        response = http.post(claim.url, body, headers, config())
    except http.Unresolvable as exc:  # DNS may come back: an ordinary failed try
        return SendResult(Attempt.NETWORK_ERROR, error=str(exc)[:2000])
    except http.Refused as exc:
        return SendResult(Attempt.REFUSED, error=f"refused: {exc}"[:2000])
    except requests.RequestException as exc:
        # The exception's text names the URL (which may carry a token in its path): keep its kind only.
        return SendResult(Attempt.NETWORK_ERROR, error=_network_error(exc))
    NOTIFICATION_DELIVERY_DURATION.labels(kind=claim.kind).observe(response.latency_ms / 1000)
    code = response.status_code
    if 200 <= code < 300:
        outcome, error = Attempt.DELIVERED, ""
    elif 300 <= code < 400:
        outcome, error = Attempt.REDIRECT, f"HTTP {code}: redirect not followed"
    else:
        outcome, error = Attempt.HTTP_ERROR, f"HTTP {code}"
    return SendResult(outcome, code, response.latency_ms, error, response.excerpt)


def _network_error(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, requests.ReadTimeout):
        return "read timeout"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed (refused, reset or unreachable)"
    return f"request failed ({type(exc).__name__})"


def retry_delay(tries: int, conf: NotificationSettings, rng: random.Random | None = None) -> float:
    """Seconds to wait after try number ``tries`` failed: exponential, capped, ±jitter."""
    base = min(conf.initial_delay_seconds * conf.backoff_multiplier ** (tries - 1), conf.max_delay_seconds)
    return base * (1 + (rng or random).uniform(-conf.jitter_pct, conf.jitter_pct))


def _record(claim: Claim, result: SendResult, now: dt.datetime, rng: random.Random | None) -> str:
    conf = config()
    finished = now
    with transaction.atomic():
        d = Delivery.objects.select_for_update().get(pk=claim.delivery_id)
        DeliveryAttempt.objects.create(
            delivery=d,
            number=claim.number,
            started_at=now,
            outcome=result.outcome,
            response_code=result.response_code,
            latency_ms=result.latency_ms,
            error=result.error,
            response_excerpt=result.excerpt,
        )
        if d.status != Delivery.Status.PENDING or d.lease_until != claim.lease_until or d.attempts != claim.number:
            # Our lease ran out and another sender took the row: the try is recorded, the row is theirs.
            return "lease_lost"
        d.response_code = result.response_code
        d.latency_ms = result.latency_ms
        d.last_error = result.error
        d.lease_until = None
        d.dispatched_at = None
        if result.ok:
            d.status, d.delivered_at, outcome = Delivery.Status.DELIVERED, finished, "delivered"
        elif result.outcome == Attempt.REFUSED or d.attempts >= conf.max_attempts:
            d.status, d.failed_at, outcome = Delivery.Status.FAILED, finished, "failed"
        else:
            d.next_attempt_at = finished + dt.timedelta(seconds=retry_delay(d.attempts, conf, rng))
            outcome = "retrying"
        d.save()
    NOTIFICATION_DELIVERIES_TOTAL.labels(kind=claim.kind, outcome=outcome).inc()
    log = logger.info if outcome == "delivered" else logger.warning
    log(
        f"Notification {outcome}",
        extra={
            "delivery_id": claim.delivery_id,
            "event_type": claim.event.get("type"),
            "destination": claim.breaker_key,
            "attempt": claim.number,
            "response_code": result.response_code,
            "error": result.error,
        },
    )
    return outcome


def _defer(claim: Claim, now: dt.datetime, wait_seconds: float, rng: random.Random | None) -> str:
    """The destination's breaker is open: hand the try back and come back after its cooldown."""
    conf = config()
    give_up = claim.created_at + dt.timedelta(seconds=_schedule_span(conf))
    wait = wait_seconds * (1 + (rng or random).uniform(0, 0.25))
    with transaction.atomic():
        updated = Delivery.objects.filter(
            pk=claim.delivery_id, status=Delivery.Status.PENDING, lease_until=claim.lease_until, attempts=claim.number
        )
        if now >= give_up:
            updated.update(
                status=Delivery.Status.FAILED,
                failed_at=now,
                lease_until=None,
                attempts=claim.number - 1,
                last_error="destination unreachable: its circuit breaker stayed open past the retry schedule",
                updated_at=now,
            )
            outcome = "failed"
        else:
            updated.update(
                attempts=claim.number - 1,
                lease_until=None,
                dispatched_at=None,
                next_attempt_at=now + dt.timedelta(seconds=wait),
                last_error="deferred: the destination's circuit breaker is open",
                updated_at=now,
            )
            outcome = "deferred"
    NOTIFICATION_DELIVERIES_TOTAL.labels(kind=claim.kind, outcome=outcome).inc()
    return outcome


def _schedule_span(conf: NotificationSettings) -> float:
    """Seconds from the first try to the last of the retry schedule (without jitter)."""
    return sum(
        min(conf.initial_delay_seconds * conf.backoff_multiplier**n, conf.max_delay_seconds)
        for n in range(conf.max_attempts - 1)
    )


# --- operator and client actions ----------------------------------------------------------------------


def redeliver(deliveries: Iterable[Delivery], *, requested_by: str) -> list[Delivery]:
    """Send these again as new rows (same event id and payload); the originals stay as they were."""
    now = timezone.now()
    with transaction.atomic():
        rows = [
            Delivery(
                event_id=d.event_id,
                event_type=d.event_type,
                destination_id=d.destination_id,
                subscription_id=d.subscription_id,
                alert_id=d.alert_id,
                report_id=d.report_id,
                context=d.context,
                payload=d.payload,
                redelivery_of=d,
                requested_by=requested_by,
            )
            for d in deliveries
        ]
        created = _enqueue(rows, now)
    logger.info("Notifications redelivered", extra={"count": len(created), "requested_by": requested_by})
    return created


def send_test(destination: Destination, *, requested_by: str) -> Delivery:
    """The admin's test-send: a ``destination.test`` event to this destination only."""
    with transaction.atomic():
        (row,) = _enqueue(
            [
                Delivery(
                    event_type=Event.DESTINATION_TEST,
                    destination=destination,
                    context={"message": f"Test notification requested by {requested_by}"},
                    requested_by=requested_by,
                )
            ],
            timezone.now(),
        )
    return row


class SubscriptionLimit(ValueError):
    pass


def subscription_create(*, client: Any, url: str, events: list[str], description: str = "") -> WebhookSubscription:
    """A new subscription for ``client``; the caller shows ``secret`` once. Raises http.Refused or
    SubscriptionLimit."""
    conf = config()
    http.check_url(url, conf)
    with transaction.atomic():
        active = WebhookSubscription.objects.select_for_update().filter(client=client, is_active=True)
        if len(active) >= conf.max_subscriptions_per_client:
            raise SubscriptionLimit(
                f"a client may have at most {conf.max_subscriptions_per_client} webhook subscriptions"
            )
        return WebhookSubscription.objects.create(
            client=client, url=url, events=sorted(set(events)), description=description
        )


def subscription_deactivate(subscription: WebhookSubscription) -> None:
    WebhookSubscription.objects.filter(pk=subscription.pk, is_active=True).update(
        is_active=False, deactivated_at=timezone.now()
    )


__all__ = [
    "DESTINATION_EVENTS",
    "deliver",
    "notify_alert_created",
    "notify_alert_resolved",
    "notify_report_reconciled",
    "notify_reports_reconciled",
    "publish",
    "redeliver",
    "send_test",
    "sweep_deliveries",
]

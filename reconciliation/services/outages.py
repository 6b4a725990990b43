"""The outage watcher: a breaker that stays away from CLOSED for too long raises one PLATFORM_OUTAGE.

The breaker re-opens after every failed probe, so its ``opened_at`` restarts each cooldown; the outage's
start is therefore kept here, in Redis (``outage:since:<platform>``), from the first round that sees the
breaker not CLOSED until a round sees it CLOSED again. One alert per outage: a ``SET NX`` marker keyed by
the outage start makes two watchers (two beat processes) agree.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import transaction

from alerts.models import Alert
from alerts.services import alert_raise
from platforms.models import Platform
from reconcile_project.redis import get_redis

logger = logging.getLogger("reconciliation.outages")


def outages_check(*, snapshot: dict | None = None, now_epoch: float | None = None) -> list[str]:
    """Returns the platforms for which an outage alert was raised in this round."""
    from platforms.breaker import get_breaker

    snapshot = snapshot if snapshot is not None else get_breaker().snapshot(list(settings.PLATFORM_SLUGS))
    now_epoch = now_epoch if now_epoch is not None else time.time()
    escalate_after = settings.ALERTING_SETTINGS.platform_down_escalation_minutes * 60
    client = get_redis()
    raised = []
    for slug, state in snapshot.items():
        key = f"outage:since:{slug}"
        if state.get("state") in ("CLOSED", "UNKNOWN", None):
            client.delete(key)
            continue
        client.set(key, state.get("opened_at") or now_epoch, nx=True)
        since = float(client.get(key) or now_epoch)
        if now_epoch - since < escalate_after:
            continue
        if not client.set(f"outage:alerted:{slug}:{since:.3f}", 1, nx=True, ex=int(escalate_after) + 7 * 86400):
            continue
        platform = Platform.objects.filter(slug=slug).first()
        minutes = (now_epoch - since) / 60
        with transaction.atomic():
            alert_raise(
                alert_type=Alert.Type.PLATFORM_OUTAGE,
                severity=Alert.Severity.HIGH,
                title=f"{slug} unreachable for {minutes:.0f} minutes (circuit breaker {state.get('state')})",
                threshold={
                    "outage_started_at": since,
                    "platform_down_escalation_minutes": settings.ALERTING_SETTINGS.platform_down_escalation_minutes,
                    "breaker": state,
                },
                platform_id=platform.pk if platform else None,
                settings=settings.ALERTING_SETTINGS,
            )
        raised.append(slug)
    return raised

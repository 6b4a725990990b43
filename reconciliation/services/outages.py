"""The outage watcher: a platform whose calls keep failing for too long raises one PLATFORM_OUTAGE.

An outage is judged by failed calls, not by a breaker nobody asked. While a platform is down and
reports want it, the breaker re-opens on every failed probe, so its ``opened_at`` (the time of the
last failure it counted) keeps moving, about once per cooldown. An OPEN or HALF_OPEN breaker whose
``opened_at`` is older than ``open_cooldown_seconds`` + ``platform_idle_grace_minutes`` has seen no
failing call since: the platform is *idle* (it may well be back), not down.

An outage is therefore an unbroken run of *live* rounds: it starts at the ``opened_at`` of the first
round that sees the breaker live (kept in Redis, ``outage:since:<platform>``, so every watcher agrees
on it) and ends at the first round that sees the breaker CLOSED or idle. Once an outage has lasted
``platform_down_escalation_minutes`` it raises its alert; later rounds of the same outage fold into
it (``last_occurred_at`` says when it was last seen down). After a recovery or an idle spell, a new
run of failures is a new outage with a new alert.

Every time here is Redis server time, the breaker's own clock (its Lua scripts read ``TIME``): worker
and beat clocks may drift from it. "One alert per outage" is a database constraint on (platform,
``outage_started_at``), and the alert is written in a transaction: two watchers (two beat processes)
cannot both create it, and a failed write leaves nothing behind, so the next round raises it again.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError, transaction

from alerts.models import Alert
from alerts.services import alert_raise
from platforms.models import Platform
from reconcile_project.redis import get_redis

logger = logging.getLogger("reconciliation.outages")

#: States in which a breaker may be holding calls back because of failures.
_NOT_CLOSED = ("OPEN", "HALF_OPEN")


def outage_live(state: dict[str, Any], *, now_epoch: float, cooldown_seconds: float, grace_seconds: float) -> bool:
    """Whether a breaker snapshot shows failures still arriving (pure: the clock is a parameter)."""
    if state.get("state") not in _NOT_CLOSED:
        return False
    last_failure = state.get("opened_at")
    if last_failure is None:
        return False
    return now_epoch - float(last_failure) <= cooldown_seconds + grace_seconds


def redis_now(client: redis.Redis) -> float:
    """Redis server time in epoch seconds: the clock the breaker stamps ``opened_at`` with."""
    seconds, microseconds = client.time()
    return seconds + microseconds / 1_000_000


def outages_check(*, snapshot: dict[str, dict[str, Any]] | None = None, now_epoch: float | None = None) -> list[str]:
    """One round of the watcher. Returns the platforms whose outage alert was created in this round."""
    from platforms.breaker import get_breaker

    breaker = get_breaker()
    client = get_redis()
    try:
        snapshot = snapshot if snapshot is not None else breaker.snapshot(list(settings.PLATFORM_SLUGS))
        now_epoch = now_epoch if now_epoch is not None else redis_now(client)
    except redis.RedisError as exc:
        # Without Redis there is neither a breaker to judge nor its clock; the next round tries again.
        logger.warning("outage_check_skipped", extra={"error": f"{type(exc).__name__}: {exc}"})
        return []
    alerting = settings.ALERTING_SETTINGS
    escalate_after = alerting.platform_down_escalation_minutes * 60
    grace = alerting.platform_idle_grace_minutes * 60
    cooldown = breaker.settings.open_cooldown_seconds
    raised = []
    for slug, state in snapshot.items():
        key = f"outage:since:{slug}"
        if state.get("state") not in (*_NOT_CLOSED, "CLOSED"):
            continue  # UNKNOWN: the breaker could not be read, so no verdict either way
        if not outage_live(state, now_epoch=now_epoch, cooldown_seconds=cooldown, grace_seconds=grace):
            # CLOSED (a probe succeeded) or idle (no failing call lately): the outage, if any, has ended.
            client.delete(key)
            continue
        client.set(key, repr(float(state["opened_at"])), nx=True)
        since = float(client.get(key) or state["opened_at"])
        if now_epoch - since < escalate_after:
            continue
        try:
            if _raise_outage(slug, state, since=since, now_epoch=now_epoch):
                raised.append(slug)
        except DatabaseError:
            # Nothing was written: the next round sees the same outage start and raises it again.
            logger.exception("outage_alert_failed", extra={"platform": slug})
    return raised


def _raise_outage(slug: str, state: dict[str, Any], *, since: float, now_epoch: float) -> bool:
    platform = Platform.objects.filter(slug=slug).first()
    if platform is None:
        # Calls are made only for posts of a known platform, so this breaker was not opened by us.
        logger.warning("outage_platform_unknown", extra={"platform": slug})
        return False
    minutes = (now_epoch - since) / 60
    with transaction.atomic():
        result = alert_raise(
            alert_type=Alert.Type.PLATFORM_OUTAGE,
            severity=Alert.Severity.HIGH,
            title=f"{slug} unreachable for {minutes:.0f} minutes (circuit breaker {state.get('state')})",
            threshold={
                "outage_started_at": since,
                "last_failure_at": state.get("opened_at"),
                "platform_down_escalation_minutes": settings.ALERTING_SETTINGS.platform_down_escalation_minutes,
                "breaker": state,
            },
            platform_id=platform.pk,
            outage_started_at=dt.datetime.fromtimestamp(since, tz=dt.UTC),
            settings=settings.ALERTING_SETTINGS,
        )
    return result.created

"""Raising alerts: one per (report, type), one per outage, repeat escalation, storm folding (DESIGN §4 "Alerts").

Called inside the caller's transaction (the reconciliation apply, the submission, the outage watcher);
metrics and the ``Created … alert`` log line are emitted only once that transaction commits.

Storm guard. An alert has up to two scopes: its affiliate and its platform. Beyond
``storm_threshold`` alerts of one type in ``storm_window_minutes`` for *either* scope, a new one folds
into that scope's latest unresolved alert (its occurrence count) instead of adding a row; the
affiliate scope is checked first, so one affiliate's wave folds into that affiliate's own alert and a
platform-wide wave (an adapter returning low numbers, a platform losing posts) folds into the
platform's. A new row is created only while both scopes are under the threshold (or every alert in
the tripped scope is resolved: a resolved alert is never re-opened by folding).

The count and the insert that follows are serialised per scope by a transaction-level PostgreSQL
advisory lock, held until the caller's transaction ends, so concurrent workers cannot all count
"under the threshold" and all insert. SQLite (``make run``) serialises write transactions anyway.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from alerts.models import Alert
from notifications.services import notify_alert_created, notify_alert_resolved
from reconcile_project.config import AlertingSettings
from reconcile_project.jsonsafe import json_safe
from reconcile_project.metrics import ALERT_CREATED_TOTAL

logger = logging.getLogger("alerts.services")
audit = logging.getLogger("app.audit")

CATEGORY = {
    Alert.Type.OVERCLAIM: Alert.Category.FRAUD,
    Alert.Type.SUSPICIOUS_CLAIM: Alert.Category.FRAUD,
    Alert.Type.LOW_TRUST: Alert.Category.FRAUD,
    Alert.Type.HIGH_DISCREPANCY: Alert.Category.DATA_QUALITY,
    Alert.Type.MISSING_DATA: Alert.Category.SYSTEM_HEALTH,
    Alert.Type.PLATFORM_OUTAGE: Alert.Category.SYSTEM_HEALTH,
}
#: Types whose repeat for the same affiliate within the window escalates to CRITICAL.
ESCALATING = {Alert.Type.OVERCLAIM, Alert.Type.HIGH_DISCREPANCY}


@dataclass(frozen=True)
class RaisedAlert:
    alert: Alert
    created: bool  # False: folded into an existing alert (same report, or storm guard)


def alert_raise(
    *,
    alert_type: str,
    severity: str,
    title: str,
    message: str = "",
    threshold: dict[str, Any] | None = None,
    affiliate_id: int | None = None,
    platform_id: int | None = None,
    report_id: int | None = None,
    outage_started_at: dt.datetime | None = None,
    settings: AlertingSettings,
    now: dt.datetime | None = None,
) -> RaisedAlert:
    """Raise an alert, or fold it into the one it repeats.

    ``outage_started_at`` (PLATFORM_OUTAGE only, with ``platform_id``) names the outage: the database
    keeps one alert per (platform, outage start), however many watchers raise it.
    """
    now = now or timezone.now()
    alert_type = Alert.Type(alert_type)
    if outage_started_at is not None and (alert_type != Alert.Type.PLATFORM_OUTAGE or platform_id is None):
        raise ValueError("outage_started_at names a PLATFORM_OUTAGE of a platform")
    scopes = _scopes(affiliate_id, platform_id)
    # Inside our own (possibly nested) transaction so that the advisory locks, which last until the
    # outermost transaction ends, never degrade to per-statement locks in autocommit mode.
    with transaction.atomic():
        _lock_scopes(alert_type, scopes)

        # At most one alert per (report, type) and one per outage: a repeat adds an occurrence.
        existing = _twin(alert_type, report_id=report_id, platform_id=platform_id, outage_started_at=outage_started_at)
        if existing is not None:
            return RaisedAlert(_fold(existing, now, severity=severity), created=False)

        # Storm guard (module docstring): beyond N of one type for the affiliate or the platform, fold.
        since = now - dt.timedelta(minutes=settings.storm_window_minutes)
        for scope in scopes:
            recent = Alert.objects.filter(alert_type=alert_type, created_at__gte=since, **scope)
            if recent.count() >= settings.storm_threshold:
                target = recent.exclude(status=Alert.Status.RESOLVED).order_by("-created_at", "-id").first()
                if target is not None:
                    return RaisedAlert(_fold(target, now, severity=severity), created=False)

        escalated_from = None
        if alert_type in ESCALATING and affiliate_id is not None:
            since = now - dt.timedelta(hours=settings.repeat_window_hours)
            escalated_from = (
                Alert.objects.filter(alert_type=alert_type, affiliate_id=affiliate_id, created_at__gte=since)
                .order_by("-created_at", "-id")
                .first()
            )
            if escalated_from is not None:
                severity = Alert.Severity.CRITICAL

        alert = Alert(
            alert_type=alert_type,
            category=CATEGORY[alert_type],
            severity=severity,
            title=title[:300],
            message=message,
            threshold_breached=json_safe(threshold or {}),
            affiliate_id=affiliate_id,
            platform_id=platform_id,
            report_id=report_id,
            outage_started_at=outage_started_at,
            escalated_from=escalated_from,
            last_occurred_at=now,
        )
        try:
            with transaction.atomic():  # savepoint: a concurrent twin must not abort the caller's transaction
                alert.save()
        except IntegrityError:
            existing = _twin(
                alert_type, report_id=report_id, platform_id=platform_id, outage_started_at=outage_started_at
            )
            if existing is None:
                raise
            return RaisedAlert(_fold(existing, now, severity=severity), created=False)
        # The notifications' outbox rows, in this transaction: they exist if and only if the alert does.
        notify_alert_created(alert)
        transaction.on_commit(lambda: _announce(alert))
        return RaisedAlert(alert, created=True)


def _twin(
    alert_type: str, *, report_id: int | None, platform_id: int | None, outage_started_at: dt.datetime | None
) -> Alert | None:
    """The alert this one repeats under the database's uniqueness rules, if any."""
    if report_id is not None:
        return Alert.objects.filter(report_id=report_id, alert_type=alert_type).first()
    if outage_started_at is not None and platform_id is not None:
        return Alert.objects.filter(
            alert_type=alert_type, platform_id=platform_id, outage_started_at=outage_started_at
        ).first()
    return None


def _scopes(affiliate_id: int | None, platform_id: int | None) -> list[dict[str, int]]:
    """The storm guard's scopes, most specific first."""
    scopes = []
    if affiliate_id is not None:
        scopes.append({"affiliate_id": affiliate_id})
    if platform_id is not None:
        scopes.append({"platform_id": platform_id})
    return scopes


def _lock_scopes(alert_type: str, scopes: list[dict[str, int]]) -> None:
    """Serialise count-then-insert per (type, scope) until the caller's transaction ends (PostgreSQL).

    Locks are taken in one global order (sorted keys), so two raises sharing a platform but not an
    affiliate cannot deadlock.
    """
    if connection.vendor != "postgresql" or not scopes:
        return
    keys = sorted(f"alerts.storm:{alert_type}:{name}:{value}" for scope in scopes for name, value in scope.items())
    with connection.cursor() as cursor:
        for key in keys:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [key])


_SEVERITY_ORDER = {s: i for i, s in enumerate(Alert.Severity.values)}


def _fold(alert: Alert, now: dt.datetime, *, severity: str) -> Alert:
    fields: dict[str, Any] = {"occurrence_count": F("occurrence_count") + 1, "last_occurred_at": now}
    if _SEVERITY_ORDER[severity] > _SEVERITY_ORDER[alert.severity]:
        fields["severity"] = severity
    Alert.objects.filter(pk=alert.pk).update(**fields)
    alert.refresh_from_db()
    return alert


def _announce(alert: Alert) -> None:
    context = {
        "alert_id": alert.pk,
        "alert_type": alert.alert_type,
        "severity": alert.severity,
        "report_id": alert.report_id,
        "affiliate_id": alert.affiliate_id,
        "platform_id": alert.platform_id,
    }
    logger.warning(f"Created {alert.alert_type.lower().replace('_', ' ')} alert", extra=context)
    audit.info("Business event: alert_created", extra={"event": "alert_created", **context})
    ALERT_CREATED_TOTAL.labels(type=alert.alert_type, severity=alert.severity).inc()


# --- decisions (admin actions and the alerts API) ----------------------------------------------------
#
# Each decision locks the alert's row (a worker may be folding an occurrence into it, another analyst
# deciding on it), saves it with ``save()`` so that django-simple-history records a row with who, when,
# before and after, and puts the decision and its note in that row's change reason. ``user`` is the
# person deciding; an API key is no user, so a key's decisions pass ``user=None`` and ``actor`` (its name).


class NoteRequired(ValueError):
    """A decision that must say why (resolving) was made without a note."""


def _actor_of(user: Any, actor: str | None) -> str:
    if actor:
        return actor
    if user is not None:
        return str(user.get_username())
    raise ValueError("a decision needs a user or an actor")


def _decide(
    alert: Alert,
    *,
    user: Any,
    actor: str | None,
    action: str,
    note: str,
    now: dt.datetime | None,
    change: Callable[[Alert, dt.datetime], bool],
    label: str | None = None,
    on_saved: Callable[[Alert], object] | None = None,
) -> Alert:
    """Lock ``alert``, apply ``change`` (False: nothing to do) and save it with its history row."""
    now = now or timezone.now()
    who = _actor_of(user, actor)
    with transaction.atomic():
        locked = Alert.objects.select_for_update().get(pk=alert.pk)
        if not change(locked, now):
            return locked
        locked.decision_note = note
        locked.decided_by = who
        locked.decided_at = now
        # simple-history reads these: the acting user (never the request's API key) and the reason.
        locked._history_user = user  # type: ignore[attr-defined]
        locked._change_reason = f"{label or action} by {who}" + (f": {note}" if note else "")  # type: ignore[attr-defined]
        locked._history_date = now  # type: ignore[attr-defined]
        locked.save()
        if on_saved is not None:
            on_saved(locked)
    audit.info(
        f"Business event: alert_{action}",
        extra={"event": f"alert_{action}", "alert_id": locked.pk, "status": locked.status, "actor": who},
    )
    return locked


def alert_acknowledge(
    *, alert: Alert, user: Any, actor: str | None = None, note: str = "", now: dt.datetime | None = None
) -> Alert:
    """OPEN → ACKNOWLEDGED (someone is on it). Any other status: unchanged."""

    def change(a: Alert, at: dt.datetime) -> bool:
        if a.status != Alert.Status.OPEN:
            return False
        a.status = Alert.Status.ACKNOWLEDGED
        a.acknowledged_by = user
        a.acknowledged_at = at
        return True

    return _decide(alert, user=user, actor=actor, action="acknowledged", note=note, now=now, change=change)


def alert_resolve(
    *, alert: Alert, user: Any, note: str, actor: str | None = None, now: dt.datetime | None = None
) -> Alert:
    """→ RESOLVED, saying why (``note`` is required: the decision must be defensible later)."""
    if not note.strip():
        raise NoteRequired("Resolving an alert needs a note saying why.")

    def change(a: Alert, at: dt.datetime) -> bool:
        if a.status == Alert.Status.RESOLVED:
            return False
        a.status = Alert.Status.RESOLVED
        a.resolved_by = user
        a.resolved_at = at
        a.resolution_notes = note
        return True

    return _decide(
        alert,
        user=user,
        actor=actor,
        action="resolved",
        note=note,
        now=now,
        change=change,
        on_saved=notify_alert_resolved,
    )


def alert_reopen(
    *, alert: Alert, user: Any, actor: str | None = None, note: str = "", now: dt.datetime | None = None
) -> Alert:
    """ACKNOWLEDGED or RESOLVED → OPEN; the earlier acknowledgement and resolution stay in the history."""

    def change(a: Alert, at: dt.datetime) -> bool:
        if a.status == Alert.Status.OPEN:
            return False
        a.status = Alert.Status.OPEN
        a.acknowledged_by = a.acknowledged_at = a.resolved_by = a.resolved_at = None
        a.resolution_notes = ""
        return True

    return _decide(alert, user=user, actor=actor, action="reopened", note=note, now=now, change=change)


def alert_assign(
    *,
    alert: Alert,
    assignee: Any,
    user: Any,
    actor: str | None = None,
    note: str = "",
    now: dt.datetime | None = None,
) -> Alert:
    """Give the alert to ``assignee`` (None: unassign). The status is not changed."""

    def change(a: Alert, at: dt.datetime) -> bool:
        if a.assigned_to_id == (assignee.pk if assignee is not None else None):
            return False
        a.assigned_to = assignee
        a.assigned_at = at if assignee is not None else None
        return True

    label = f"assigned to {assignee.get_username() if assignee is not None else 'nobody'}"
    return _decide(alert, user=user, actor=actor, action="assigned", label=label, note=note, now=now, change=change)

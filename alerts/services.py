"""Raising alerts: one per (report, type), repeat escalation, storm folding (DESIGN §4 "Alerts").

Called inside the caller's transaction (the reconciliation apply, the submission); metrics and the
``Created … alert`` log line are emitted only once that transaction commits.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from alerts.models import Alert
from reconcile_project.config import AlertingSettings
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
    settings: AlertingSettings,
    now: dt.datetime | None = None,
) -> RaisedAlert:
    now = now or timezone.now()
    alert_type = Alert.Type(alert_type)

    # At most one alert per (report, type): a re-check that concludes the same again adds an occurrence.
    if report_id is not None:
        existing = Alert.objects.filter(report_id=report_id, alert_type=alert_type).first()
        if existing is not None:
            return RaisedAlert(_fold(existing, now, severity=severity), created=False)

    # Storm guard: beyond N of one type for one affiliate (or platform) in the window, fold into the open one.
    scope = _scope(alert_type, affiliate_id, platform_id)
    if scope:
        since = now - dt.timedelta(minutes=settings.storm_window_minutes)
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
        threshold_breached=threshold or {},
        affiliate_id=affiliate_id,
        platform_id=platform_id,
        report_id=report_id,
        escalated_from=escalated_from,
        last_occurred_at=now,
    )
    try:
        with transaction.atomic():  # savepoint: a concurrent twin must not abort the caller's transaction
            alert.save()
    except IntegrityError:
        existing = Alert.objects.get(report_id=report_id, alert_type=alert_type)
        return RaisedAlert(_fold(existing, now, severity=severity), created=False)
    transaction.on_commit(lambda: _announce(alert))
    return RaisedAlert(alert, created=True)


def _scope(alert_type: str, affiliate_id: int | None, platform_id: int | None) -> dict[str, int]:
    if alert_type == Alert.Type.PLATFORM_OUTAGE:
        return {"platform_id": platform_id} if platform_id else {}
    return {"affiliate_id": affiliate_id} if affiliate_id else {}


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


def alert_acknowledge(*, alert: Alert, user: Any, now: dt.datetime | None = None) -> Alert:
    if alert.status == Alert.Status.OPEN:
        alert.status = Alert.Status.ACKNOWLEDGED
        alert.acknowledged_by = user
        alert.acknowledged_at = now or timezone.now()
        alert.save(update_fields=["status", "acknowledged_by", "acknowledged_at"])
    return alert


def alert_resolve(*, alert: Alert, user: Any, notes: str = "", now: dt.datetime | None = None) -> Alert:
    if alert.status != Alert.Status.RESOLVED:
        alert.status = Alert.Status.RESOLVED
        alert.resolved_by = user
        alert.resolved_at = now or timezone.now()
        alert.resolution_notes = notes
        alert.save(update_fields=["status", "resolved_by", "resolved_at", "resolution_notes"])
    return alert

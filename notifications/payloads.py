"""What a notification says: the signed event envelope, Slack's blocks, the e-mail text.

Envelope (README "Payload schema")::

    {"id": "<event uuid>", "type": "alert.created", "created_at": "<ISO 8601>", "data": {...}}

``data`` is ``{"alert": {...}}`` for alert events and ``{"report": {...}}`` for ``report.reconciled``.
Clients see only their own campaigns' events, without staff-only details (the admin link).
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from alerts.models import Alert
from reconcile_project.config import NotificationSettings
from reconcile_project.jsonsafe import json_safe
from reconciliation.models import AffiliateReport, PlatformReport, ReconciliationLog

METRICS = ("views", "clicks", "conversions")
SEVERITY_COLOUR = {"LOW": "#9e9e9e", "MEDIUM": "#f9a825", "HIGH": "#ef6c00", "CRITICAL": "#c62828"}


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _numbers(report: AffiliateReport | None, threshold: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{metric: {"claimed", "reported"}}``: the alert's own evidence, else the report and latest fetch."""
    metrics = threshold.get("metrics") if isinstance(threshold, dict) else None
    if isinstance(metrics, dict) and metrics:
        return {
            m: {"claimed": v.get("claimed"), "reported": v.get("platform")}
            for m, v in metrics.items()
            if isinstance(v, dict)
        }
    if report is None:
        return {}
    latest = PlatformReport.objects.filter(post_id=report.post_id).order_by("-fetched_at", "-id").first()
    return {
        m: {"claimed": getattr(report, f"claimed_{m}"), "reported": getattr(latest, m) if latest else None}
        for m in METRICS
    }


def alert_data(alert: Alert, config: NotificationSettings, *, for_client: bool) -> dict[str, Any]:
    report = alert.report
    post = report.post if report is not None else None
    data: dict[str, Any] = {
        "id": alert.pk,
        "type": alert.alert_type,
        "category": alert.category,
        "severity": alert.severity,
        "status": alert.status,
        "title": alert.title,
        "message": alert.message,
        "occurrence_count": alert.occurrence_count,
        "affiliate": {"id": alert.affiliate.pk, "name": alert.affiliate.name} if alert.affiliate is not None else None,
        "platform": alert.platform.slug if alert.platform is not None else None,
        "report_id": alert.report_id,
        "campaign_id": post.campaign_id if post is not None else None,
        "post_url": post.url if post is not None else None,
        "numbers": _numbers(report, alert.threshold_breached),
        "created_at": _iso(alert.created_at),
        "last_occurred_at": _iso(alert.last_occurred_at),
        "resolved_at": _iso(alert.resolved_at),
    }
    if alert.status == Alert.Status.RESOLVED:
        data["resolution_notes"] = alert.resolution_notes
    if not for_client:
        data["admin_url"] = admin_url(alert, config)
    return data


def admin_url(alert: Alert, config: NotificationSettings) -> str:
    return config.public_base_url.rstrip("/") + reverse("admin:alerts_alert_change", args=[alert.pk])


def report_data(report: AffiliateReport, context: dict[str, Any]) -> dict[str, Any]:
    post = report.post
    log = ReconciliationLog.objects.filter(report_id=report.pk).first()
    latest = PlatformReport.objects.filter(post_id=post.pk).order_by("-fetched_at", "-id").first()
    return {
        "id": report.pk,
        "campaign_id": post.campaign_id,
        "post_id": post.pk,
        "post_url": post.url,
        "platform": post.platform.slug,
        "status": context.get("status") or (log.status if log else None),
        "discrepancy_level": context.get("discrepancy_level", log.discrepancy_level if log else None),
        "previous_status": context.get("previous_status"),
        "is_recheck": bool(context.get("is_recheck")),
        "claimed": {m: getattr(report, f"claimed_{m}") for m in METRICS},
        "verified": {m: getattr(latest, m) for m in METRICS} if latest is not None else None,
        "max_diff_pct": log.max_diff_pct if log else None,
        "submitted_at": _iso(report.submitted_at),
        "reconciled_at": context.get("at"),
    }


def envelope(delivery: Any, config: NotificationSettings) -> dict[str, Any]:
    """The event as the receiver gets it (fixed at the first try)."""
    for_client = delivery.subscription_id is not None
    if delivery.alert_id is not None:
        data: dict[str, Any] = {"alert": alert_data(delivery.alert, config, for_client=for_client)}
    elif delivery.report_id is not None:
        data = {"report": report_data(delivery.report, delivery.context)}
    else:
        data = {"message": delivery.context.get("message", "Test notification"), "destination": str(delivery.target)}
    return json_safe(
        {
            "id": str(delivery.event_id),
            "type": delivery.event_type,
            "created_at": _iso(delivery.created_at),
            "data": data,
        }
    )


def slack_body(event: dict[str, Any]) -> dict[str, Any]:
    """Slack incoming-webhook JSON: a coloured attachment with header, facts, numbers and the admin link."""
    alert = event["data"].get("alert")
    if alert is None:
        text = f"{event['data'].get('message', 'Test notification')} ({event['type']})"
        return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
    resolved = event["type"] == "alert.resolved"
    title = ("Resolved: " if resolved else "") + f"[{alert['severity']}] {alert['title']}"
    fields = [
        f"*Type*\n{alert['type']}",
        f"*Severity*\n{alert['severity']}",
        f"*Affiliate*\n{alert['affiliate']['name'] if alert['affiliate'] else '—'}",
        f"*Platform*\n{alert['platform'] or '—'}",
    ]
    if alert["occurrence_count"] > 1:
        fields.append(f"*Occurrences*\n{alert['occurrence_count']}")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    if alert["numbers"]:
        rows = [f"{'metric':<12}{'claimed':>12}{'reported':>12}"] + [
            f"{m:<12}{_num(v['claimed']):>12}{_num(v['reported']):>12}" for m, v in alert["numbers"].items()
        ]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "```" + "\n".join(rows) + "```"}})
    if alert.get("admin_url"):
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"<{alert['admin_url']}|Open alert #{alert['id']} in the admin>"}
                ],
            }
        )
    colour = "#2e7d32" if resolved else SEVERITY_COLOUR.get(alert["severity"], "#9e9e9e")
    return {"text": title, "attachments": [{"color": colour, "blocks": blocks}]}


def _num(value: Any) -> str:
    return "—" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def email_message(event: dict[str, Any]) -> tuple[str, str]:
    """(subject, plain-text body)."""
    alert = event["data"].get("alert")
    if alert is None:
        return "[reconcile] Test notification", f"{event['data'].get('message', 'Test notification')}\n"
    verb = "resolved" if event["type"] == "alert.resolved" else "raised"
    subject = f"[reconcile] [{alert['severity']}] {alert['title']} ({verb})"[:200]
    lines = [
        f"Alert #{alert['id']} {verb}: {alert['title']}",
        f"Type: {alert['type']} ({alert['category']}), severity {alert['severity']}, status {alert['status']}",
        f"Affiliate: {alert['affiliate']['name'] if alert['affiliate'] else '-'}",
        f"Platform: {alert['platform'] or '-'}",
        f"Occurrences: {alert['occurrence_count']}",
    ]
    for metric, v in alert["numbers"].items():
        lines.append(f"{metric}: claimed {_num(v['claimed'])}, reported {_num(v['reported'])}")
    if alert.get("admin_url"):
        lines.append(f"Open: {alert['admin_url']}")
    return subject, "\n".join(lines) + "\n"

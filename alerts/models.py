from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from reconcile_project.history import history_user


class Alert(models.Model):
    class Type(models.TextChoices):
        OVERCLAIM = "OVERCLAIM"
        HIGH_DISCREPANCY = "HIGH_DISCREPANCY"
        MISSING_DATA = "MISSING_DATA"
        PLATFORM_OUTAGE = "PLATFORM_OUTAGE"
        LOW_TRUST = "LOW_TRUST"
        SUSPICIOUS_CLAIM = "SUSPICIOUS_CLAIM"

    class Category(models.TextChoices):
        FRAUD = "FRAUD"
        DATA_QUALITY = "DATA_QUALITY"
        SYSTEM_HEALTH = "SYSTEM_HEALTH"

    class Severity(models.TextChoices):
        LOW = "LOW"
        MEDIUM = "MEDIUM"
        HIGH = "HIGH"
        CRITICAL = "CRITICAL"

    class Status(models.TextChoices):
        OPEN = "OPEN"
        ACKNOWLEDGED = "ACKNOWLEDGED"
        RESOLVED = "RESOLVED"

    alert_type = models.CharField(max_length=20, choices=Type.choices)
    category = models.CharField(max_length=20, choices=Category.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    status = models.CharField(max_length=15, choices=Status.choices, default=Status.OPEN)
    title = models.CharField(max_length=300)
    message = models.TextField(blank=True)
    threshold_breached = models.JSONField(default=dict, blank=True)
    affiliate = models.ForeignKey(
        "reconciliation.Affiliate", on_delete=models.PROTECT, related_name="alerts", null=True, blank=True
    )
    platform = models.ForeignKey(
        "platforms.Platform", on_delete=models.PROTECT, related_name="alerts", null=True, blank=True
    )
    report = models.ForeignKey(
        "reconciliation.AffiliateReport", on_delete=models.PROTECT, related_name="alerts", null=True, blank=True
    )
    escalated_from = models.ForeignKey(
        "self", on_delete=models.PROTECT, related_name="escalations", null=True, blank=True
    )
    #: PLATFORM_OUTAGE only: when the outage began (Redis time of the failure that opened it). With the
    #: platform, the key of "one alert per outage", enforced by the database.
    outage_started_at = models.DateTimeField(null=True, blank=True)
    occurrence_count = models.PositiveIntegerField(default=1)
    last_occurred_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution_notes = models.TextField(blank=True)
    #: The analyst working on it ("assigned to me"); None: nobody yet.
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="assigned_alerts", null=True, blank=True
    )
    assigned_at = models.DateTimeField(null=True, blank=True)
    #: The latest decision (acknowledge, resolve, re-open, assign): its note, who made it (a username or
    #: an API key's name: a key is no user) and when. Every earlier one is in the alert's history.
    decision_note = models.TextField(blank=True)
    decided_by = models.CharField(max_length=200, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    #: Every save (raise, decision) with who, when, before and after. Occurrence folds use update() and
    #: are not in it: they are the engine counting repeats, not a change anybody decided.
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["report", "alert_type"], condition=Q(report__isnull=False), name="alert_one_per_report_type"
            ),
            models.CheckConstraint(condition=Q(occurrence_count__gte=1), name="alert_occurrences_positive"),
            models.UniqueConstraint(
                fields=["platform", "outage_started_at"],
                condition=Q(alert_type="PLATFORM_OUTAGE", outage_started_at__isnull=False),
                name="alert_one_per_platform_outage",
            ),
            models.CheckConstraint(
                condition=Q(outage_started_at__isnull=True) | Q(alert_type="PLATFORM_OUTAGE", platform__isnull=False),
                name="alert_outage_start_only_on_platform_outages",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "-created_at"], name="alert_status_created_idx"),
            models.Index(fields=["alert_type", "affiliate", "-created_at"], name="alert_type_affiliate_idx"),
            models.Index(fields=["alert_type", "platform", "-created_at"], name="alert_type_platform_idx"),
        ]

    def __str__(self) -> str:
        return f"[{self.severity}] {self.alert_type}: {self.title}"

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from alerts.models import Alert


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "alert_type",
        "severity",
        "status",
        "title",
        "affiliate",
        "platform",
        "occurrence_count",
        "created_at",
    )
    list_filter = ("status", "severity", "alert_type", "category")
    search_fields = ("title", "message", "affiliate__email", "report__id")
    list_select_related = ("affiliate", "platform")
    raw_id_fields = ("affiliate", "report", "escalated_from")
    readonly_fields = (
        "alert_type",
        "category",
        "severity",
        "title",
        "message",
        "threshold_breached",
        "affiliate",
        "platform",
        "report",
        "escalated_from",
        "occurrence_count",
        "last_occurred_at",
        "acknowledged_by",
        "acknowledged_at",
        "resolved_by",
        "resolved_at",
        "created_at",
    )
    actions = ("acknowledge", "resolve")

    @admin.action(description="Acknowledge selected alerts")
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        n = queryset.filter(status=Alert.Status.OPEN).update(
            status=Alert.Status.ACKNOWLEDGED, acknowledged_by=request.user, acknowledged_at=timezone.now()
        )
        self.message_user(request, f"{n} alert(s) acknowledged.")

    @admin.action(description="Resolve selected alerts")
    def resolve(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        n = queryset.exclude(status=Alert.Status.RESOLVED).update(
            status=Alert.Status.RESOLVED, resolved_by=request.user, resolved_at=timezone.now()
        )
        self.message_user(request, f"{n} alert(s) resolved.")

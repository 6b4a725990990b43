"""Alerts in the admin: shown, never added, edited or deleted here (DESIGN §9).

An alert is evidence of what the engine concluded; its state changes only through ``alerts.services``
(the acknowledge and resolve actions below), so no field of it is editable on its page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from alerts import services
from alerts.models import Alert
from alerts.selectors import alert_decision


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
    actions = ("acknowledge", "resolve")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Alert | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Alert | None = None) -> bool:
        return False

    def has_decide_permission(self, request: HttpRequest) -> bool:
        """Acknowledging and resolving need the model's change permission (the page itself stays view-only)."""
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    def get_readonly_fields(self, request: HttpRequest, obj: Alert | None = None) -> list[str]:
        return [field.name for field in Alert._meta.fields]

    @admin.action(description="Acknowledge selected alerts", permissions=["decide"])
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        n = self._decide(
            queryset, Alert.Status.ACKNOWLEDGED, lambda a: services.alert_acknowledge(alert=a, user=request.user)
        )
        self.message_user(request, f"{n} alert(s) acknowledged.")

    @admin.action(description="Resolve selected alerts", permissions=["decide"])
    def resolve(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        n = self._decide(queryset, Alert.Status.RESOLVED, lambda a: services.alert_resolve(alert=a, user=request.user))
        self.message_user(request, f"{n} alert(s) resolved.")

    @staticmethod
    def _decide(queryset: QuerySet[Alert], to: str, decide: Callable[[Alert], Alert]) -> int:
        """Apply ``decide`` to each selected alert under a row lock; how many reached ``to`` by it.

        The lock keeps a decision from racing a worker folding a new occurrence into the alert, or another
        analyst's decision; the rows are re-read by id, as the changelist's query may join and be DISTINCT.
        """
        changed = 0
        with transaction.atomic():
            locked = Alert.objects.filter(pk__in=queryset.values("pk")).select_for_update().order_by("pk")
            for alert in locked:
                before = alert.status
                if decide(alert).status == to and before != to:
                    changed += 1
        return changed

    # --- The alert's page, made for a decision (alerts/templates/admin/alerts/alert/decision.html) ---------

    change_form_template = "admin/alerts/alert/decision.html"

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The stock read-only page, preceded by everything the decision needs (``alert_decision``)."""
        context = dict(extra_context or {})
        if str(object_id).isdigit():
            context["decision"] = alert_decision(alert_id=int(object_id))
        return super().change_view(request, object_id, form_url, extra_context=context)

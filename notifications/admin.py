"""Ops destinations (routing rules, test-send), the delivery log (failure filter, redeliver), subscriptions."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from alerts.models import Alert
from notifications import services
from notifications.models import DESTINATION_EVENTS, Delivery, DeliveryAttempt, Destination, WebhookSubscription
from reconciliation.admin import DecideByChangePermission, EvidenceAdminMixin


class DestinationForm(forms.ModelForm):
    events = forms.MultipleChoiceField(
        choices=[(str(e), str(e)) for e in DESTINATION_EVENTS],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: alert.created only.",
    )
    alert_types = forms.MultipleChoiceField(
        choices=Alert.Type.choices, required=False, widget=forms.CheckboxSelectMultiple, help_text="None: every type."
    )
    categories = forms.MultipleChoiceField(
        choices=Alert.Category.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None: every category.",
    )

    class Meta:
        model = Destination
        fields = [
            "name",
            "kind",
            "url",
            "recipients",
            "is_active",
            "events",
            "alert_types",
            "min_severity",
            "categories",
            "platforms",
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        if kind == Destination.Kind.EMAIL and not (data.get("recipients") or "").strip():
            self.add_error("recipients", "An e-mail destination needs at least one address.")
        if kind in (Destination.Kind.SLACK, Destination.Kind.WEBHOOK):
            url = data.get("url") or ""
            if not url:
                self.add_error("url", "A Slack or webhook destination needs a URL.")
            else:
                from notifications import http

                try:
                    http.check_url(url, services.config())
                except http.Refused as exc:
                    self.add_error("url", f"Refused: {exc}")
        return data


@admin.register(Destination)
class DestinationAdmin(admin.ModelAdmin):
    form = DestinationForm
    list_display = ("name", "kind", "is_active", "min_severity", "routing", "breaker_state")
    list_filter = ("kind", "is_active")
    search_fields = ("name", "url", "recipients")
    readonly_fields = ("secret", "breaker_state", "created_at")
    filter_horizontal = ("platforms",)
    actions = ["send_test"]

    @admin.display(description="routes")
    def routing(self, obj: Destination) -> str:
        parts = [", ".join(obj.routed_events())]
        if obj.alert_types:
            parts.append("types " + ", ".join(obj.alert_types))
        if obj.categories:
            parts.append("categories " + ", ".join(obj.categories))
        return "; ".join(parts)

    @admin.display(description="circuit breaker")
    def breaker_state(self, obj: Destination) -> str:
        if obj.pk is None:
            return "-"
        try:
            state = services.breaker().snapshot([obj.breaker_key]).get(obj.breaker_key, {})
        except Exception as exc:  # the page must render with Redis down
            return f"unknown ({type(exc).__name__})"
        return f"{state.get('state', 'UNKNOWN')} (failures {state.get('failures', 0)})"

    @admin.action(description="Send a test notification", permissions=["change"])
    def send_test(self, request: HttpRequest, queryset: QuerySet[Destination]) -> None:
        for destination in queryset:
            row = services.send_test(destination, requested_by=request.user.get_username())
            self.message_user(
                request,
                format_html(
                    'Test notification queued for {} (<a href="../delivery/{}/change/">delivery #{}</a>).',
                    destination.name,
                    row.pk,
                    row.pk,
                ),
                messages.SUCCESS,
            )


class DeliveryAttemptInline(EvidenceAdminMixin, admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False


class FailureFilter(admin.SimpleListFilter):
    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("failed", "Failed"),
            ("retrying", "Pending after a failed try"),
            ("pending", "Pending (not tried yet)"),
            ("delivered", "Delivered"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> QuerySet[Delivery]:
        value = self.value()
        if value == "failed":
            return queryset.filter(status=Delivery.Status.FAILED)
        if value == "retrying":
            return queryset.filter(status=Delivery.Status.PENDING, attempts__gt=0)
        if value == "pending":
            return queryset.filter(status=Delivery.Status.PENDING, attempts=0)
        if value == "delivered":
            return queryset.filter(status=Delivery.Status.DELIVERED)
        return queryset


@admin.register(Delivery)
class DeliveryAdmin(EvidenceAdminMixin, DecideByChangePermission, admin.ModelAdmin):
    list_display = (
        "id",
        "event_type",
        "target_name",
        "status",
        "attempts",
        "response_code",
        "latency_ms",
        "short_error",
        "next_attempt_at",
        "created_at",
    )
    list_filter = (FailureFilter, "event_type", "destination__kind", "destination")
    list_select_related = ("destination", "subscription__client")
    search_fields = ("=event_id", "last_error")
    inlines = [DeliveryAttemptInline]
    actions = ["redeliver"]
    show_full_result_count = False

    @admin.display(description="to")
    def target_name(self, obj: Delivery) -> str:
        return str(obj.destination or obj.subscription)

    @admin.display(description="last error")
    def short_error(self, obj: Delivery) -> str:
        return obj.last_error[:80]

    @admin.action(description="Redeliver (a new delivery of the same event)", permissions=["decide"])
    def redeliver(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        rows = services.redeliver(list(queryset), requested_by=request.user.get_username())
        self.message_user(request, f"{len(rows)} deliveries queued again.", messages.SUCCESS)


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(EvidenceAdminMixin, admin.ModelAdmin):
    list_display = ("id", "client", "url", "events", "is_active", "created_at", "deactivated_at")
    list_filter = ("is_active",)
    search_fields = ("url", "client__name")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # The signing secret is the client's: it is never shown here.
        return [f for f in super().get_readonly_fields(request, obj) if f != "secret"]

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["secret"]

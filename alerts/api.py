"""``/api/v1/alerts/``: the alert queue for tools and ops (staff API keys or a staff session).

The same decisions as the admin's actions, through the same services (``alerts.services``): each one is
recorded in the alert's history with who made it (the staff user, or the API key's name: a key is not a
user) and the note.
"""

from __future__ import annotations

import re
from typing import Any

import django_filters
from django.core.validators import RegexValidator
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotFound
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from alerts import services
from alerts.models import Alert
from reconciliation.api.authentication import APIKeyAuthentication, Principal
from reconciliation.api.filters import MAX_ID, IdFilter, PlatformFilter, StrictFilterSet, UTCDateTimeFilter
from reconciliation.api.pagination import NewestFirstPagination
from reconciliation.api.permissions import IsStaff
from reconciliation.api.schema import errors
from reconciliation.api.serializers import _check_text
from reconciliation.api.views import ApiView

NOTE_MAX_LENGTH = 2000
#: At least one character that is not ASCII whitespace, and no NUL (the database cannot store it).
#: Spelled out rather than ``\s``, which Python and JavaScript read differently.
NOTE_PATTERN = r"^[^\u0000]*[^\u0000\t\n\v\f\r ][^\u0000]*$"


# --- output ---------------------------------------------------------------------------------------


class AlertOutput(serializers.ModelSerializer):
    campaign_id = serializers.IntegerField(source="report.post.campaign_id", allow_null=True, default=None)
    acknowledged_by = serializers.CharField(source="acknowledged_by.username", allow_null=True, default=None)
    resolved_by = serializers.CharField(source="resolved_by.username", allow_null=True, default=None)
    assigned_to = serializers.CharField(
        source="assigned_to.username", allow_null=True, default=None, help_text="The assigned analyst's username."
    )
    threshold_breached = serializers.DictField(help_text="What tripped the rule (values as the rule saw them).")

    class Meta:
        model = Alert
        fields = [
            "id",
            "alert_type",
            "category",
            "severity",
            "status",
            "title",
            "message",
            "threshold_breached",
            "affiliate_id",
            "platform_id",
            "report_id",
            "campaign_id",
            "escalated_from_id",
            "occurrence_count",
            "last_occurred_at",
            "created_at",
            "acknowledged_by",
            "acknowledged_at",
            "resolved_by",
            "resolved_at",
            "resolution_notes",
            "assigned_to_id",
            "assigned_to",
            "assigned_at",
            "decision_note",
            "decided_by",
            "decided_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "affiliate_id": {"allow_null": True},
            "decided_by": {"help_text": "Who made the latest decision: a username, or `staff key '<name>'`."},
        }

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        for name in ("affiliate_id", "platform_id", "report_id", "escalated_from_id", "assigned_to_id"):
            fields[name] = serializers.IntegerField(read_only=True, allow_null=True)
        return fields


# --- input ----------------------------------------------------------------------------------------


class NoteField(serializers.CharField):
    """A note: free text (several lines allowed), not blank, no NUL or unpaired surrogates."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("max_length", NOTE_MAX_LENGTH)
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)
        self.validators.append(RegexValidator(NOTE_PATTERN, message="A note needs some text.", flags=re.DOTALL))

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        value = super().to_internal_value(data)
        _check_text(value, allow_newlines=True)
        return value


class NoteInput(serializers.Serializer):
    note = NoteField(required=False, help_text="Why (kept in the alert's history).")


class RequiredNoteInput(serializers.Serializer):
    note = NoteField(help_text="Why the alert is resolved (required; kept in the alert's history).")


# --- filters --------------------------------------------------------------------------------------


class AlertFilter(StrictFilterSet):
    type = django_filters.ChoiceFilter(field_name="alert_type", choices=Alert.Type.choices)
    category = django_filters.ChoiceFilter(choices=Alert.Category.choices)
    severity = django_filters.ChoiceFilter(choices=Alert.Severity.choices)
    status = django_filters.ChoiceFilter(choices=Alert.Status.choices)
    platform = PlatformFilter(field_name="platform__slug")
    affiliate_id = IdFilter(field_name="affiliate_id")
    campaign_id = IdFilter(field_name="report__post__campaign_id", help_text="Alerts about this campaign's claims.")
    assigned_to = IdFilter(field_name="assigned_to_id", help_text="The assigned analyst's user id.")
    created_after = UTCDateTimeFilter(field_name="created_at", lookup_expr="gte", help_text="At or after (ISO 8601).")
    created_before = UTCDateTimeFilter(field_name="created_at", lookup_expr="lt", help_text="Before (ISO 8601).")


# --- views ----------------------------------------------------------------------------------------


def _alerts() -> Any:
    return Alert.objects.select_related("report__post", "acknowledged_by", "resolved_by", "assigned_to")


class StaffView(ApiView):
    authentication_classes = [APIKeyAuthentication, SessionAuthentication]
    permission_classes = [IsStaff]
    throttle_scopes = {"GET": "query", "POST": "query"}

    def get_alert(self, alert_id: int) -> Alert:
        alert = _alerts().filter(pk=alert_id).first() if alert_id <= MAX_ID else None
        if alert is None:
            raise NotFound()
        return alert


class AlertListView(StaffView, GenericAPIView):
    """Staff: the alerts, newest first."""

    serializer_class = AlertOutput
    pagination_class = NewestFirstPagination
    filter_backends = [DjangoFilterBackend]
    filterset_class = AlertFilter

    def get_queryset(self) -> Any:
        return _alerts()

    @extend_schema(
        operation_id="alerts_list",
        summary="Staff: alerts, newest first, with filters",
        description="Cursor-paginated (stable while alerts are raised). Staff API key or admin session.",
        responses={200: AlertOutput(many=True), **errors(400)},
        tags=["staff"],
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class AlertDetailView(StaffView):
    """Staff: one alert."""

    @extend_schema(
        operation_id="alert_detail",
        summary="Staff: one alert",
        responses={200: AlertOutput, **errors(404)},
        tags=["staff"],
    )
    def get(self, request: Request, alert_id: int) -> Response:
        return Response(AlertOutput(self.get_alert(alert_id)).data)


class AlertDecisionView(StaffView):
    """A decision on one alert (subclasses: acknowledge, resolve, re-open)."""

    input_class: type[serializers.Serializer] = NoteInput

    def decide(self, alert: Alert, note: str, who: dict[str, Any]) -> Alert:
        raise NotImplementedError

    def post(self, request: Request, alert_id: int) -> Response:
        alert = self.get_alert(alert_id)
        data = self.input_class(data=request.data)
        data.is_valid(raise_exception=True)
        user = request.user
        # A staff key acts as itself (no user); a staff session as its user.
        who = (
            {"user": None, "actor": f"staff key '{user.key.name}'"}
            if isinstance(user, Principal)
            else {"user": user, "actor": None}
        )
        self.decide(alert, data.validated_data.get("note", ""), who)
        return Response(AlertOutput(_alerts().get(pk=alert.pk)).data)


def _decision_schema(operation_id: str, summary: str, description: str, body: type[serializers.Serializer]) -> Any:
    return extend_schema(
        operation_id=operation_id,
        summary=summary,
        description=description + " Staff API key or admin session (with CSRF).",
        request=body,
        responses={200: AlertOutput, **errors(400, 404)},
        examples=[OpenApiExample("a note", value={"note": "Checked the platform dashboard; numbers agree."})],
        tags=["staff"],
    )


class AlertAcknowledgeView(AlertDecisionView):
    @_decision_schema(
        "alert_acknowledge",
        "Staff: acknowledge an alert (someone is on it)",
        "OPEN becomes ACKNOWLEDGED; any other status is left as it is (200 with the alert).",
        NoteInput,
    )
    def post(self, request: Request, alert_id: int) -> Response:
        return super().post(request, alert_id)

    def decide(self, alert: Alert, note: str, who: dict[str, Any]) -> Alert:
        return services.alert_acknowledge(alert=alert, note=note, **who)


class AlertResolveView(AlertDecisionView):
    input_class = RequiredNoteInput

    @_decision_schema(
        "alert_resolve",
        "Staff: resolve an alert, saying why",
        "The note is required (400 without one). An alert already resolved is left as it is.",
        RequiredNoteInput,
    )
    def post(self, request: Request, alert_id: int) -> Response:
        return super().post(request, alert_id)

    def decide(self, alert: Alert, note: str, who: dict[str, Any]) -> Alert:
        return services.alert_resolve(alert=alert, note=note, **who)


class AlertReopenView(AlertDecisionView):
    @_decision_schema(
        "alert_reopen",
        "Staff: re-open an acknowledged or resolved alert",
        "The alert becomes OPEN again; its earlier decisions stay in its history. An open alert is left as it is.",
        NoteInput,
    )
    def post(self, request: Request, alert_id: int) -> Response:
        return super().post(request, alert_id)

    def decide(self, alert: Alert, note: str, who: dict[str, Any]) -> Alert:
        return services.alert_reopen(alert=alert, note=note, **who)

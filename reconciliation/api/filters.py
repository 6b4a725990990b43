"""Query filters (django-filter). Invalid values are a 400 with the field named, never ignored."""

from __future__ import annotations

import datetime as dt
from typing import Any

import django_filters
from django import forms
from django.conf import settings

from reconciliation.models import ReconciliationStatus

#: Ids are PostgreSQL bigints; a larger number cannot match and must not reach the database.
MAX_ID = 2**63 - 1


class IdFilter(django_filters.NumberFilter):
    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


class UTCDateTimeField(django_filters.fields.IsoDateTimeField):
    """ISO 8601, converted to UTC here: PostgreSQL refuses offsets beyond ±15:59 that ISO allows."""

    def to_python(self, value: Any) -> dt.datetime | None:
        parsed = super().to_python(value)
        if parsed is None or parsed.tzinfo is None:
            return parsed
        try:
            return parsed.astimezone(dt.UTC)
        except OverflowError:
            raise forms.ValidationError("Date and time out of range.", code="invalid") from None


class UTCDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UTCDateTimeField


def _platform_choices() -> list[tuple[str, str]]:
    return [(slug, slug) for slug in settings.PLATFORM_SLUGS]


class SubmissionFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(
        field_name="latest_status", choices=ReconciliationStatus.choices, help_text="Latest claim's status."
    )
    platform = django_filters.ChoiceFilter(field_name="platform__slug", choices=_platform_choices)
    campaign_id = IdFilter(field_name="campaign_id")
    submitted_after = UTCDateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text="First submitted at or after (ISO 8601)."
    )
    submitted_before = UTCDateTimeFilter(
        field_name="created_at", lookup_expr="lt", help_text="First submitted before (ISO 8601)."
    )


class CampaignReportFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(field_name="log__status", choices=ReconciliationStatus.choices)
    platform = django_filters.ChoiceFilter(field_name="post__platform__slug", choices=_platform_choices)
    affiliate_id = IdFilter(field_name="post__affiliate_id")
    submitted_after = UTCDateTimeFilter(
        field_name="submitted_at", lookup_expr="gte", help_text="Claimed at or after (ISO 8601)."
    )
    submitted_before = UTCDateTimeFilter(
        field_name="submitted_at", lookup_expr="lt", help_text="Claimed before (ISO 8601)."
    )

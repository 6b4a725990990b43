"""Query filters (django-filter). Invalid values are a 400 with the field named, never ignored."""

from __future__ import annotations

import datetime as dt
from typing import Any

import django_filters
from django import forms
from django.conf import settings
from drf_spectacular.utils import extend_schema_field

from platforms.links import PLATFORM_ALIASES, platform_slug
from reconciliation.models import ReconciliationStatus

#: Ids are PostgreSQL bigints; a larger number cannot match and must not reach the database.
MAX_ID = 2**63 - 1

#: The OpenAPI schema of an id filter: what IdFilter enforces (IdField documents its own bounds).
ID_SCHEMA = {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID}


# --- platform names: a slug or an alias, any letter case (the same rule for bodies and filters) ----


def _platform_names() -> list[str]:
    slugs = list(settings.PLATFORM_SLUGS)
    return slugs + [alias for alias, slug in PLATFORM_ALIASES.items() if slug in slugs]


def platform_of(value: object) -> str | None:
    """The active platform slug ``value`` names (see platforms.links.platform_slug), or None."""
    slug = platform_slug(value)
    return slug if slug in settings.PLATFORM_SLUGS else None


def unknown_platform_message() -> str:
    aliases = ", ".join(f"{alias} means {slug}" for alias, slug in PLATFORM_ALIASES.items())
    return f"Unknown platform. Accepted: {', '.join(settings.PLATFORM_SLUGS)} (any letter case; {aliases})."


def platform_schema() -> dict[str, Any]:
    """A string schema that says exactly what is accepted: each name in any letter case.

    JSON Schema patterns have no case-insensitive flag, so each letter is a class (``[Xx]``); the
    description lists the names for people.
    """
    names = _platform_names()
    alternatives = "|".join("".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in n) for n in names)
    return {
        "type": "string",
        "pattern": f"^(?:{alternatives})$",
        "description": f"One of {', '.join(names)}, in any letter case (an alias names its platform: "
        + ", ".join(f"{a} is {s}" for a, s in PLATFORM_ALIASES.items())
        + ").",
        "example": "reddit",
    }


class PlatformFormField(forms.CharField):
    def to_python(self, value: Any) -> str | None:
        text = super().to_python(value)
        if text in self.empty_values:
            return text
        slug = platform_of(text)
        if slug is None:
            raise forms.ValidationError(unknown_platform_message(), code="invalid_choice")
        return slug


@extend_schema_field(platform_schema())
class PlatformFilter(django_filters.CharFilter):
    field_class = PlatformFormField


@extend_schema_field(ID_SCHEMA)
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


class StrictFilterSet(django_filters.FilterSet):
    """An empty value (``?platform=``) is a 400 too: django-filter would read it as "no filter"."""

    def is_valid(self) -> bool:
        valid = super().is_valid()
        for name in self.filters:
            if name in self.data and self.data.get(name) == "":
                self.form.add_error(name, "May not be empty; leave the parameter out to not filter by it.")
                valid = False
        return valid


class SubmissionFilter(StrictFilterSet):
    status = django_filters.ChoiceFilter(
        field_name="latest_status", choices=ReconciliationStatus.choices, help_text="Latest claim's status."
    )
    platform = PlatformFilter(field_name="platform__slug")
    campaign_id = IdFilter(field_name="campaign_id")
    submitted_after = UTCDateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text="First submitted at or after (ISO 8601)."
    )
    submitted_before = UTCDateTimeFilter(
        field_name="created_at", lookup_expr="lt", help_text="First submitted before (ISO 8601)."
    )


class CampaignReportFilter(StrictFilterSet):
    status = django_filters.ChoiceFilter(field_name="log__status", choices=ReconciliationStatus.choices)
    platform = PlatformFilter(field_name="post__platform__slug")
    affiliate_id = IdFilter(field_name="post__affiliate_id")
    submitted_after = UTCDateTimeFilter(
        field_name="submitted_at", lookup_expr="gte", help_text="Claimed at or after (ISO 8601)."
    )
    submitted_before = UTCDateTimeFilter(
        field_name="submitted_at", lookup_expr="lt", help_text="Claimed before (ISO 8601)."
    )

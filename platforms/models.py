from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from simple_history.models import HistoricalRecords

from reconcile_project.history import history_user

#: The keys ``Platform.config`` may hold; anything else is a typo that would silently do nothing.
CONFIG_KEYS = frozenset({"quota_rps"})


class PlatformConfigError(ValueError):
    """A stored ``Platform.config`` value the engine cannot use (a row written around validation)."""


def quota_rps_of(config: Mapping[str, Any] | None) -> float | None:
    """The ``quota_rps`` of a platform's ``config`` (None: absent, the fetcher's default).

    Raises :class:`PlatformConfigError` for a value that is not a finite positive number. A bad stored value
    is not guessed around (treating 0 as "no quota" would send unthrottled calls to a platform someone
    meant to stop): the attempt that meets it fails, is recorded as ``internal_error`` and spends budget.
    """
    value = (config or {}).get("quota_rps")
    if value is None:
        return None
    # bool is an int in Python; JSON true is not a rate.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PlatformConfigError(f"quota_rps must be a number of requests per second, got {value!r}")
    rate = float(value)
    if not math.isfinite(rate) or rate <= 0:
        raise PlatformConfigError(f"quota_rps must be a finite number above 0, got {value!r}")
    return rate


def validate_platform_config(value: Any) -> None:
    """Model/admin validation of ``Platform.config``: an object with known keys and usable values."""
    if not isinstance(value, Mapping):
        raise ValidationError('Must be a JSON object, e.g. {"quota_rps": 50}.', code="not_an_object")
    unknown = sorted(str(key) for key in value if key not in CONFIG_KEYS)
    if unknown:
        raise ValidationError(
            f"Unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(CONFIG_KEYS))}.", code="unknown_key"
        )
    try:
        quota_rps_of(value)
    except PlatformConfigError as exc:
        raise ValidationError(str(exc), code="invalid_quota") from None


class Platform(models.Model):
    """A platform we verify claims against. ``slug`` is the adapter registry key."""

    slug = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=100)
    api_base_url = models.URLField(
        blank=True, help_text="Overrides the adapter's base URL from settings when set (e.g. a regional endpoint)."
    )
    is_active = models.BooleanField(default=True)
    #: Adapter options; ``quota_rps`` (a finite number > 0) caps calls per second across all workers.
    config = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_platform_config],
        help_text='Options as a JSON object. Known key: "quota_rps" (requests per second across all workers, '
        "a number above 0; absent: the global default).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords(get_user=history_user)  # audit trail: config, base URL, active flag

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name or self.slug

    @property
    def quota_rps(self) -> float | None:
        return quota_rps_of(self.config)

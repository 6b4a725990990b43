from __future__ import annotations

from django.db import models


class Platform(models.Model):
    """A platform we verify claims against. ``slug`` is the adapter registry key."""

    slug = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=100)
    api_base_url = models.URLField(
        blank=True, help_text="Overrides the adapter's base URL from settings when set (e.g. a regional endpoint)."
    )
    is_active = models.BooleanField(default=True)
    #: Free-form adapter options; ``quota_rps`` (float) caps calls per second across all workers.
    config = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name or self.slug

    @property
    def quota_rps(self) -> float | None:
        return quota_rps_of(self.config)


def quota_rps_of(config: dict | None) -> float | None:
    """The ``quota_rps`` of a platform's ``config`` (None: the fetcher's default)."""
    value = (config or {}).get("quota_rps")
    return float(value) if value is not None else None

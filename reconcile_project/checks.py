"""Start-up checks: inconsistent rule settings, platforms without a real API in production and a
missing metrics token refuse to start, naming the setting."""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.core.checks import Error, register
from django.core.exceptions import ImproperlyConfigured

from reconcile_project import platform_settings
from reconcile_project.config import GROUPS
from reconciliation.api.throttling import parse_rate


@register()
def check_rule_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    errors: list[Error] = []
    for name, (_, cls) in GROUPS.items():
        group = getattr(settings, name, None)
        if not isinstance(group, cls):
            errors.append(Error(f"{name} must be a {cls.__name__}", id="reconcile.E001"))
            continue
        for field, message in group.consistency_errors():
            errors.append(
                Error(
                    f"{name}.{field}: {message}",
                    hint=f"Set {name}__{field.upper()} to a consistent value.",
                    id="reconcile.E002",
                )
            )
    return errors


@register()
def check_in_flight_lease_covers_a_call(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """An in-flight slot whose lease ran out while its call is still on the wire lets one more call out:
    the lease must outlast at least one adapter HTTP call (connect + read timeout)."""
    breaker, backoff = getattr(settings, "CIRCUIT_BREAKER", None), getattr(settings, "BACKOFF_POLICY", None)
    lease = getattr(breaker, "in_flight_lease_seconds", None)
    timeouts = getattr(backoff, "connect_timeout_seconds", None), getattr(backoff, "read_timeout_seconds", None)
    if lease is None or None in timeouts:
        return []  # a wrong group type is reported by check_rule_settings
    longest_call = sum(t for t in timeouts if t is not None)
    if lease < longest_call:
        return [
            Error(
                f"CIRCUIT_BREAKER.in_flight_lease_seconds ({lease}) is shorter than one adapter call "
                f"(BACKOFF_POLICY connect + read timeout = {longest_call})",
                hint="Set CIRCUIT_BREAKER__IN_FLIGHT_LEASE_SECONDS to at least the connect + read timeout.",
                id="reconcile.E020",
            )
        ]
    return []


@register()
def check_platforms_are_real(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Without PLATFORMS_USE_SANDBOX (the production default) every platform needs its real API.

    Otherwise an unset PLATFORM_<SLUG>_BASE_URL used to fall back to the sandbox, and production verified
    claims against the sandbox's made-up numbers without anyone noticing.
    """
    if settings.PLATFORMS_USE_SANDBOX:
        return []
    errors = []
    for slug in settings.PLATFORM_SLUGS:
        entry = settings.PLATFORM_API.get(slug) or {}
        names = platform_settings.not_real(slug, entry, sandbox_url=settings.SANDBOX_URL)
        if names:
            errors.append(
                Error(
                    f"platform {slug!r} has no real API configured: {', '.join(names)} "
                    f"{'is' if len(names) == 1 else 'are'} unset or point at the sandbox",
                    hint=(
                        "Set the platform's base URL and credentials to the real API, or set "
                        "PLATFORMS_USE_SANDBOX=true to run against the sandbox on purpose (a demo)."
                    ),
                    id="reconcile.E010",
                )
            )
    return errors


@register()
def check_ops_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    errors = []
    if settings.PRODUCTION and not settings.METRICS_TOKEN:
        errors.append(
            Error(
                "METRICS_TOKEN: required when DJANGO_ENV=production (/metrics and /health/detailed need it)",
                hint="Set METRICS_TOKEN to a long random string and give it to Prometheus as its bearer token.",
                id="reconcile.E011",
            )
        )
    try:
        parse_rate(settings.AUTH_FAILURE_RATE, "AUTH_FAILURE_RATE")
    except ImproperlyConfigured as exc:
        errors.append(Error(str(exc), id="reconcile.E012"))
    cache_seconds = settings.HEALTH_WORKER_PING_CACHE_SECONDS
    if not (math.isfinite(cache_seconds) and cache_seconds >= 0):
        errors.append(
            Error(
                f"HEALTH_WORKER_PING_CACHE_SECONDS: expected a finite number >= 0, got {cache_seconds!r}",
                id="reconcile.E013",
            )
        )
    return errors

"""Start-up checks: inconsistent rule settings refuse to start, naming the setting."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from reconcile_project.config import GROUPS


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

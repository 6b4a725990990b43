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

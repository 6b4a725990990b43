from __future__ import annotations

from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from platforms.models import Platform


@admin.register(Platform)
class PlatformAdmin(SimpleHistoryAdmin):  # History: who changed the config, when
    list_display = ("slug", "name", "is_active", "api_base_url", "breaker_state")
    list_filter = ("is_active",)
    search_fields = ("slug", "name")
    readonly_fields = ("breaker_state", "created_at")

    @admin.display(description="circuit breaker")
    def breaker_state(self, obj: Platform) -> str:
        try:
            from platforms.breaker import get_breaker

            state = get_breaker().snapshot([obj.slug]).get(obj.slug, {})
        except Exception as exc:  # the admin page must render even when Redis is down
            return f"unknown ({type(exc).__name__})"
        return f"{state.get('state', 'UNKNOWN')} (failures {state.get('failures', 0)})"

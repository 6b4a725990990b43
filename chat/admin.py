"""Chat identities in the admin: link a chat account to an affiliate by hand, or unlink it."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone

from chat.models import ChatIdentity, ChatLinkCode


@admin.register(ChatIdentity)
class ChatIdentityAdmin(admin.ModelAdmin):
    list_display = ("provider", "team_id", "external_user_id", "affiliate", "linked_via", "linked_at")
    list_filter = ("provider", "linked_via")
    search_fields = ("external_user_id", "team_id", "affiliate__name", "affiliate__email")
    autocomplete_fields = ("affiliate",)
    readonly_fields = ("linked_via", "linked_at")

    def save_model(self, request: HttpRequest, obj: ChatIdentity, form: object, change: bool) -> None:
        if not change:
            obj.linked_via = ChatIdentity.LinkedVia.ADMIN
            obj.linked_at = timezone.now()
        super().save_model(request, obj, form, change)


@admin.register(ChatLinkCode)
class ChatLinkCodeAdmin(admin.ModelAdmin):
    """Read-only: codes are issued through the API and spent in chat; the hash is never shown."""

    list_display = ("affiliate", "created_at", "expires_at", "used_at", "used_by")
    search_fields = ("affiliate__name", "affiliate__email")
    fields = ("affiliate", "created_at", "expires_at", "used_at", "used_by")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

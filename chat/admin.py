"""Chat identities in the admin: link a chat account to an affiliate by hand, or unlink it.

Link codes are not shown: they are issued through the API and spent in chat, and an identity records
how it was linked (``linked_via``) and when.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone

from chat.models import ChatIdentity


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

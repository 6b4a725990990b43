"""Start-up checks of the chat settings: a malformed key refuses to start, naming the variable."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from chat.signatures import discord_public_key


@register()
def check_chat_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    problems = []
    if settings.DISCORD_PUBLIC_KEY:
        try:
            discord_public_key(settings.DISCORD_PUBLIC_KEY)
        except ValueError as exc:
            problems.append(
                Error(
                    f"DISCORD_PUBLIC_KEY: expected the application's public key from the Discord developer "
                    f"portal (64 hex characters): {exc}",
                    id="chat.E001",
                )
            )
    if settings.DISCORD_APPLICATION_ID and not settings.DISCORD_APPLICATION_ID.isdigit():
        problems.append(Error("DISCORD_APPLICATION_ID: expected the application's numeric id", id="chat.E002"))
    return problems

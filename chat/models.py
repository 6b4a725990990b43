"""Who is who in chat: a chat account linked to an affiliate, and the one-time codes that link them."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from reconciliation.models import Affiliate


class Provider(models.TextChoices):
    DISCORD = "discord", "Discord"
    SLACK = "slack", "Slack"


class ChatIdentity(models.Model):
    """A chat account that may submit claims as an affiliate.

    A Discord user id is global; a Slack user id is only unique inside its workspace, so the key is
    (provider, team, user) with an empty team for Discord. ``Affiliate.chat_user_id`` (one id, no
    platform) predates this model: its Discord ids were copied here by migration 0002.
    """

    class LinkedVia(models.TextChoices):
        ADMIN = "admin"
        LINK_CODE = "link_code"

    provider = models.CharField(max_length=10, choices=Provider.choices)
    team_id = models.CharField(max_length=64, blank=True, help_text="Slack workspace (team) id; empty for Discord.")
    external_user_id = models.CharField(max_length=64, help_text="The user's id on the chat platform.")
    affiliate = models.ForeignKey(Affiliate, on_delete=models.PROTECT, related_name="chat_identities")
    linked_via = models.CharField(max_length=10, choices=LinkedVia.choices, default=LinkedVia.ADMIN)
    linked_at = models.DateTimeField()

    class Meta:
        verbose_name = "chat identity"
        verbose_name_plural = "chat identities"
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "team_id", "external_user_id"], name="chatidentity_unique_per_platform_user"
            ),
            # Discord ids are global: a team there would make one user two identities.
            models.CheckConstraint(
                condition=~Q(provider="discord") | Q(team_id=""), name="chatidentity_discord_has_no_team"
            ),
        ]

    def __str__(self) -> str:
        where = f"{self.provider}:{self.team_id}/" if self.team_id else f"{self.provider}:"
        return f"{where}{self.external_user_id} → affiliate {self.affiliate_id}"


class ChatLinkCode(models.Model):
    """A one-time code an affiliate gets from the API and types in chat (``/link CODE``).

    Only a keyed hash of the code is stored (HMAC with SECRET_KEY): the table alone does not give the
    codes away. Single use (``used_at``), valid until ``expires_at``; issuing a new code ends the
    affiliate's earlier unused ones.
    """

    affiliate = models.ForeignKey(Affiliate, on_delete=models.CASCADE, related_name="chat_link_codes")
    code_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    used_by = models.ForeignKey(
        ChatIdentity, on_delete=models.SET_NULL, null=True, blank=True, related_name="link_codes"
    )

    class Meta:
        verbose_name = "chat link code"
        indexes = [models.Index(fields=["affiliate", "expires_at"], name="chatlinkcode_affiliate_idx")]

    def __str__(self) -> str:
        return f"link code of affiliate {self.affiliate_id} (until {self.expires_at:%Y-%m-%d %H:%M})"

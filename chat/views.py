"""The chat platforms' HTTP endpoints: Discord's interactions endpoint and Slack's slash commands.

Plain Django views (not DRF): the signature is over the raw body, which must be read untouched, and
the answers are the platforms' own shapes, not the API's envelope. No session, no CSRF token: the
signature is the authentication. A request that fails it is a 401 (Discord tests exactly that when the
endpoint URL is saved); a verified command always gets a 200 reply saying what happened, because the
chat platform shows anything else to the user as a bare failure.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse, QueryDict
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from chat import commands, parsing
from chat.models import Provider
from chat.signatures import SignatureRejected, verify_discord, verify_slack
from reconciliation.api.exceptions import request_id_of
from reconciliation.api.serializers import report_url

logger = logging.getLogger("chat.views")

# Discord: interaction and response types, and the message flag that shows a reply to its author only.
PING, APPLICATION_COMMAND = 1, 2
PONG, CHANNEL_MESSAGE_WITH_SOURCE = 1, 4
EPHEMERAL = 1 << 6
DISCORD_CONTENT_LIMIT = 2000


def _refused(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def _raw_body(request: HttpRequest) -> bytes | None:
    try:
        return request.body
    except RequestDataTooBig:
        return None


def _context(request: HttpRequest, actor: commands.Actor, delivery_key: str, now: Any) -> commands.Context:
    return commands.Context(
        actor=actor,
        delivery_key=delivery_key,
        request_id=request_id_of(request),
        now=now,
        status_url=lambda report_id: report_url(request, report_id),
        link_code_url=request.build_absolute_uri(reverse("api:affiliate-chat-link-code")),
    )


def _signature_refused(provider: str, exc: SignatureRejected) -> JsonResponse:
    # The reason only: never the signature, the body or the key.
    logger.warning("Chat request refused", extra={"provider": provider, "reason": str(exc)})
    return _refused(401, "invalid_signature", f"Invalid request signature: {exc}.")


def _verified_body(
    request: HttpRequest, *, provider: str, setting: str, verify: Callable[[bytes], None]
) -> bytes | JsonResponse:
    """The raw body once the endpoint is set up, the body is within its cap and its signature holds; else
    the refusal to send (503 not set up, 413 too large, 401 bad signature)."""
    if not getattr(settings, setting):
        return _refused(503, "chat_not_configured", f"{provider} is not set up here: {setting} is unset.")
    body = _raw_body(request)
    if body is None:
        return _refused(413, "payload_too_large", "The request body is too large.")
    try:
        verify(body)
    except SignatureRejected as exc:
        return _signature_refused(provider.lower(), exc)
    return body


@csrf_exempt
@require_POST
def discord_interactions(request: HttpRequest) -> JsonResponse:
    """A Discord application's Interactions Endpoint URL: PING → PONG, slash commands → an ephemeral reply."""
    now = timezone.now()
    body = _verified_body(
        request,
        provider="Discord",
        setting="DISCORD_PUBLIC_KEY",
        verify=lambda body: verify_discord(
            public_key=settings.DISCORD_PUBLIC_KEY,
            signature=request.headers.get("X-Signature-Ed25519", ""),
            timestamp=request.headers.get("X-Signature-Timestamp", ""),
            body=body,
            now=now.timestamp(),
        ),
    )
    if isinstance(body, JsonResponse):
        return body
    try:
        interaction = json.loads(body)
    except ValueError:
        interaction = None
    if not isinstance(interaction, dict):
        return _refused(400, "invalid_interaction", "The body is not an interaction (a JSON object).")
    application_id = settings.DISCORD_APPLICATION_ID
    if application_id and str(interaction.get("application_id", "")) != application_id:
        return _refused(400, "wrong_application", "The interaction is for another application.")
    kind = interaction.get("type")
    if kind == PING:
        return JsonResponse({"type": PONG})
    if kind != APPLICATION_COMMAND:
        return _refused(400, "unsupported_interaction", f"Interaction type {kind!r} is not handled here.")
    text = _discord_command(request, interaction, now)
    return JsonResponse(
        {
            "type": CHANNEL_MESSAGE_WITH_SOURCE,
            "data": {
                "content": text[:DISCORD_CONTENT_LIMIT],
                "flags": EPHEMERAL,
                # The reply may quote what the user typed: never let it mention anyone.
                "allowed_mentions": {"parse": []},
            },
        }
    )


def _discord_command(request: HttpRequest, interaction: dict[str, Any], now: Any) -> str:
    data = _object(interaction.get("data"))
    # In a server the user is inside "member"; in a direct message it is "user".
    user = _object(_object(interaction.get("member")).get("user")) or _object(interaction.get("user"))
    user_id = str(user.get("id") or "")
    if not user_id:
        return "Cannot tell who sent this command; nothing was recorded."
    raw_options = data.get("options")
    options = {
        str(option["name"]): str(option.get("value", ""))
        for option in (raw_options if isinstance(raw_options, list) else [])
        if isinstance(option, dict) and "name" in option
    }
    actor = commands.Actor(provider=Provider.DISCORD, team_id="", user_id=user_id)
    interaction_id = str(interaction.get("id") or "")
    ctx = _context(request, actor, delivery_key=f"discord:{interaction_id}" if interaction_id else "", now=now)
    return commands.handle(str(data.get("name", "")), options, ctx)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@csrf_exempt
@require_POST
def slack_commands(request: HttpRequest) -> JsonResponse:
    """A Slack app's slash command Request URL: every command gets an ephemeral reply."""
    now = timezone.now()
    body = _verified_body(
        request,
        provider="Slack",
        setting="SLACK_SIGNING_SECRET",
        verify=lambda body: verify_slack(
            secret=settings.SLACK_SIGNING_SECRET,
            signature=request.headers.get("X-Slack-Signature", ""),
            timestamp=request.headers.get("X-Slack-Request-Timestamp", ""),
            body=body,
            now=now.timestamp(),
        ),
    )
    if isinstance(body, JsonResponse):
        return body
    try:
        form = QueryDict(body.decode("utf-8"))
    except UnicodeDecodeError:
        return _refused(400, "invalid_command", "The body is not a form-encoded slash command.")
    if form.get("ssl_check"):
        # Slack's certificate check: answered, nothing to do.
        return JsonResponse({})
    user_id, team_id = form.get("user_id", ""), form.get("team_id", "")
    if not user_id or not team_id:
        return _slack_reply("Cannot tell who sent this command; nothing was recorded.")
    command = parsing.split_command(form.get("command", ""), form.get("text", ""))
    actor = commands.Actor(provider=Provider.SLACK, team_id=team_id, user_id=user_id)
    trigger_id = form.get("trigger_id", "")
    ctx = _context(request, actor, delivery_key=f"slack:{trigger_id}" if trigger_id else "", now=now)
    try:
        options = parsing.word_options(command)
    except parsing.CommandRejected as exc:
        return _slack_reply(f"Nothing was recorded: {exc}")
    return _slack_reply(commands.handle(command.name, options, ctx))


def _slack_reply(text: str) -> JsonResponse:
    # Slack reads &, < and > as markup (<@U123> mentions someone): the reply quotes user input, so escape.
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return JsonResponse({"response_type": "ephemeral", "text": escaped})

"""Signed requests as Discord and Slack send them, and affiliates linked to chat accounts."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.test import Client
from django.utils import timezone

from chat.models import ChatIdentity
from chat.signatures import slack_signature
from reconciliation.models import Affiliate
from tests import factories
from tests.api.conftest import api, staff_user, world  # noqa: F401  (the API's standing actors, reused)

DISCORD_URL = "/chat/discord/interactions"
SLACK_URL = "/chat/slack/commands"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
DISCORD_USER = "80351110224678912"
SLACK_TEAM, SLACK_USER = "T0001", "U2147483697"


def public_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


@pytest.fixture(autouse=True)
def no_claim_allowance_carried_over() -> None:
    """Chat accounts are rate-limited per identity id, and ids repeat across runs: start each test afresh."""
    from reconcile_project.redis import get_redis
    from reconciliation.api.throttling import KEY_PREFIX

    client = get_redis()
    keys = list(client.scan_iter(match=f"{KEY_PREFIX}:submission:*", count=500))
    if keys:
        client.delete(*keys)


@pytest.fixture
def discord_key(settings: Any) -> Ed25519PrivateKey:
    """The application's key pair; the server is configured with its public half."""
    key = Ed25519PrivateKey.generate()
    settings.DISCORD_PUBLIC_KEY = public_hex(key)
    settings.DISCORD_APPLICATION_ID = ""
    return key


@pytest.fixture
def slack_secret(settings: Any) -> str:
    settings.SLACK_SIGNING_SECRET = SLACK_SECRET
    return SLACK_SECRET


def discord_post(
    client: Client,
    key: Ed25519PrivateKey,
    payload: dict[str, Any] | bytes,
    *,
    timestamp: int | None = None,
    signature: str | None = None,
) -> Any:
    """POST ``payload`` signed as Discord signs it: Ed25519 over the timestamp followed by the raw body."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    sig = key.sign(stamp.encode() + body).hex() if signature is None else signature
    return client.post(
        DISCORD_URL,
        data=body,
        content_type="application/json",
        HTTP_X_SIGNATURE_ED25519=sig,
        HTTP_X_SIGNATURE_TIMESTAMP=stamp,
    )


def interaction(
    name: str, options: dict[str, Any] | None = None, *, user_id: str = DISCORD_USER, id: str = "", dm: bool = False
) -> dict[str, Any]:
    """An APPLICATION_COMMAND interaction with its options by name (string options, as registered)."""
    user = {"id": user_id, "username": "creator", "discriminator": "0"}
    payload: dict[str, Any] = {
        "id": id or f"11{time.time_ns()}",
        "application_id": "1000000000000000001",
        "type": 2,
        "token": "interaction-token",
        "version": 1,
        "data": {
            "id": "2000000000000000002",
            "name": name,
            "type": 1,
            "options": [{"name": k, "type": 3, "value": v} for k, v in (options or {}).items()],
        },
    }
    if dm:
        payload["user"] = user
    else:
        payload["guild_id"] = "3000000000000000003"
        payload["member"] = {"user": user, "roles": []}
    return payload


def content_of(response: Any) -> str:
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["type"] == 4
    assert body["data"]["flags"] == 64
    return str(body["data"]["content"])


def slack_post(
    client: Client,
    secret: str,
    command: str,
    text: str,
    *,
    user_id: str = SLACK_USER,
    team_id: str = SLACK_TEAM,
    timestamp: int | None = None,
    signature: str | None = None,
    trigger_id: str = "",
) -> Any:
    """POST a slash command form-encoded and signed as Slack signs it (v0 HMAC-SHA256)."""
    body = urlencode(
        {
            "token": "deprecated-verification-token",
            "team_id": team_id,
            "team_domain": "example",
            "channel_id": "C2147483705",
            "user_id": user_id,
            "user_name": "creator",
            "command": command,
            "text": text,
            "response_url": "https://hooks.slack.com/commands/1234/5678",
            "trigger_id": trigger_id or f"13345224609.{time.time_ns()}",
        }
    ).encode()
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    sig = slack_signature(secret=secret, timestamp=stamp, body=body) if signature is None else signature
    return client.post(
        SLACK_URL,
        data=body,
        content_type="application/x-www-form-urlencoded",
        HTTP_X_SLACK_SIGNATURE=sig,
        HTTP_X_SLACK_REQUEST_TIMESTAMP=stamp,
    )


def slack_text(response: Any) -> str:
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["response_type"] == "ephemeral"
    return str(body["text"])


@dataclass
class Linked:
    affiliate: Affiliate
    discord: ChatIdentity
    slack: ChatIdentity


def link(affiliate: Affiliate, provider: str, user_id: str, team_id: str = "") -> ChatIdentity:
    return ChatIdentity.objects.create(
        provider=provider, team_id=team_id, external_user_id=user_id, affiliate=affiliate, linked_at=timezone.now()
    )


@pytest.fixture
def linked(db: None) -> Linked:
    """An affiliate whose Discord and Slack accounts are linked; every platform exists."""
    for slug in factories.PLATFORM_NAMES:
        factories.platform(slug)
    affiliate = factories.affiliate()
    return Linked(
        affiliate=affiliate,
        discord=link(affiliate, "discord", DISCORD_USER),
        slack=link(affiliate, "slack", SLACK_USER, SLACK_TEAM),
    )

"""Linking a chat account: a one-time code from the API, typed in chat as /link; and links made in the admin."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from chat import services
from chat.models import ChatIdentity, ChatLinkCode
from reconciliation.models import AffiliateReport
from tests import factories
from tests.api.conftest import World, bearer
from tests.chat.conftest import (
    DISCORD_USER,
    SLACK_TEAM,
    SLACK_USER,
    content_of,
    discord_post,
    interaction,
    link,
    slack_post,
    slack_text,
)

pytestmark = pytest.mark.django_db

CODE_URL = "/api/v1/affiliates/me/chat-link-code"


def issue(api: APIClient, key: str) -> str:
    response = api.post(CODE_URL, **bearer(key))
    assert response.status_code == 201, response.content
    return str(response.json()["code"])


def test_an_affiliate_gets_a_code_valid_fifteen_minutes_stored_hashed(api: APIClient, world: World) -> None:
    before = timezone.now()
    response = api.post(CODE_URL, **bearer(world.owner_key))

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"code", "expires_at", "instructions"}
    code = body["code"]
    assert len(code) == 9 and code[4] == "-"
    assert body["instructions"] == f"Send /link {code} to the app in Discord or Slack within 15 minutes."
    row = ChatLinkCode.objects.get()
    assert row.affiliate == world.owner
    assert before + dt.timedelta(minutes=15) <= row.expires_at <= timezone.now() + dt.timedelta(minutes=15)
    # Only a keyed hash is kept: neither the code nor its plain hash is in the table.
    assert code.replace("-", "") not in row.code_hash and row.code_hash != code


def test_the_slash_spelling_answers_too(api: APIClient, world: World) -> None:
    assert api.post(CODE_URL + "/", **bearer(world.owner_key)).status_code == 201


@pytest.mark.parametrize("who", ["client_key", "staff_key"])
def test_only_an_affiliate_key_gets_a_code(api: APIClient, world: World, who: str) -> None:
    assert api.post(CODE_URL, **bearer(getattr(world, who))).status_code == 403
    assert api.post(CODE_URL).status_code == 401
    assert not ChatLinkCode.objects.exists()


def test_link_in_discord_then_claim(
    api: APIClient, client: Client, world: World, discord_key: Ed25519PrivateKey
) -> None:
    code = issue(api, world.owner_key)

    content = content_of(discord_post(client, discord_key, interaction("link", {"code": code.lower()})))

    assert content.startswith(f"Linked: this Discord account now submits as {world.owner.name}.")
    identity = ChatIdentity.objects.get()
    assert (identity.provider, identity.team_id, identity.external_user_id, identity.affiliate) == (
        "discord",
        "",
        DISCORD_USER,
        world.owner,
    )
    assert identity.linked_via == "link_code"
    row = ChatLinkCode.objects.get()
    assert row.used_at is not None and row.used_by == identity
    claim = {
        "url": "https://redd.it/linked1",
        "views": "1k",
        "clicks": "10",
        "conversions": "1",
        "campaign": str(world.campaign.pk),
    }
    content_of(discord_post(client, discord_key, interaction("claim", claim)))
    assert AffiliateReport.objects.get().post.affiliate == world.owner


def test_link_in_slack_with_the_code_in_two_words(
    api: APIClient, client: Client, world: World, slack_secret: str
) -> None:
    code = issue(api, world.owner_key)
    text = slack_text(slack_post(client, slack_secret, "/link", code.replace("-", " ")))
    assert text.startswith("Linked: this Slack account")
    identity = ChatIdentity.objects.get()
    assert (identity.provider, identity.team_id, identity.external_user_id) == ("slack", SLACK_TEAM, SLACK_USER)


def test_a_code_works_once(api: APIClient, client: Client, world: World, slack_secret: str) -> None:
    code = issue(api, world.owner_key)
    slack_text(slack_post(client, slack_secret, "/link", code))
    text = slack_text(slack_post(client, slack_secret, "/link", code, user_id="U0SECOND"))
    assert text == "Not linked: this link code has already been used; get a new one."
    assert ChatIdentity.objects.count() == 1


def test_an_expired_code_is_refused(world: World) -> None:
    issued = services.link_code_issue(affiliate=world.owner, now=timezone.now() - dt.timedelta(minutes=16))
    with pytest.raises(services.LinkRefused, match="this link code expired at"):
        services.identity_link(provider="slack", team_id="T1", user_id="U1", code=issued.code, now=timezone.now())
    assert not ChatIdentity.objects.exists()


def test_a_code_is_valid_until_its_fifteenth_minute(world: World) -> None:
    now = timezone.now()
    issued = services.link_code_issue(affiliate=world.owner, now=now)
    later = now + dt.timedelta(minutes=15) - dt.timedelta(seconds=1)
    identity = services.identity_link(provider="slack", team_id="T1", user_id="U1", code=issued.code, now=later)
    assert identity.affiliate == world.owner


def test_expiry_through_the_chat_endpoint(client: Client, world: World, slack_secret: str) -> None:
    issued = services.link_code_issue(affiliate=world.owner, now=timezone.now() - dt.timedelta(minutes=15))
    text = slack_text(slack_post(client, slack_secret, "/link", issued.code))
    assert text.startswith("Not linked: this link code expired at ")
    assert not ChatIdentity.objects.exists()


def test_a_new_code_ends_the_earlier_one(api: APIClient, client: Client, world: World, slack_secret: str) -> None:
    first = issue(api, world.owner_key)
    second = issue(api, world.owner_key)
    assert slack_text(slack_post(client, slack_secret, "/link", first)).startswith("Not linked: this link code expired")
    assert slack_text(slack_post(client, slack_secret, "/link", second)).startswith("Linked")


def test_an_unknown_code_is_refused(client: Client, world: World, slack_secret: str) -> None:
    text = slack_text(slack_post(client, slack_secret, "/link", "ABCD-EFGH"))
    assert text == "Not linked: 'ABCD-EFGH' is not a link code we issued; check it, or get a new one."
    assert (
        slack_text(slack_post(client, slack_secret, "/link", ""))
        == "Not linked: the link code is missing. Usage: /link &lt;code&gt;."
    )


def test_an_account_linked_to_another_affiliate_is_not_moved(
    api: APIClient, client: Client, world: World, slack_secret: str
) -> None:
    link(world.other, "slack", SLACK_USER, SLACK_TEAM)
    code = issue(api, world.owner_key)
    text = slack_text(slack_post(client, slack_secret, "/link", code))
    assert text == (
        "Not linked: this chat account is already linked to another affiliate; ask an administrator to unlink it."
    )
    assert ChatIdentity.objects.get().affiliate == world.other
    assert ChatLinkCode.objects.get().used_at is None


def test_linking_again_to_the_same_affiliate_is_fine(
    api: APIClient, client: Client, world: World, slack_secret: str
) -> None:
    link(world.owner, "slack", SLACK_USER, SLACK_TEAM)
    text = slack_text(slack_post(client, slack_secret, "/link", issue(api, world.owner_key)))
    assert text.startswith("Linked")
    assert ChatIdentity.objects.count() == 1


def test_an_identity_linked_in_the_admin_can_claim(
    client: Client, world: World, staff_user: Any, discord_key: Ed25519PrivateKey
) -> None:
    client.force_login(staff_user)
    staff_user.is_superuser = True
    staff_user.save()
    response = client.post(
        "/admin/chat/chatidentity/add/",
        {"provider": "discord", "team_id": "", "external_user_id": DISCORD_USER, "affiliate": world.owner.pk},
    )
    assert response.status_code == 302, response.content
    identity = ChatIdentity.objects.get()
    assert (identity.affiliate, identity.linked_via) == (world.owner, "admin")
    claim = {
        "url": "https://redd.it/adm1",
        "views": "5",
        "clicks": "1",
        "conversions": "0",
        "campaign": str(world.campaign.pk),
    }
    content_of(discord_post(client, discord_key, interaction("claim", claim)))
    assert AffiliateReport.objects.get().post.affiliate == world.owner


def test_a_discord_identity_cannot_have_a_team(world: World) -> None:
    from django.db import IntegrityError

    with pytest.raises(IntegrityError):
        ChatIdentity.objects.create(
            provider="discord", team_id="T1", external_user_id="1", affiliate=world.owner, linked_at=timezone.now()
        )


def test_another_affiliates_campaign_listing_is_never_offered(world: World) -> None:
    # Without a campaign, candidates come only from campaigns this affiliate has posted to.
    factories.post(affiliate=world.other, campaign=world.campaign, platform_post_id="theirs")
    identity = link(world.owner, "slack", "U9", "T9")
    from chat.parsing import ClaimArgs
    from reconciliation.services.submissions import SubmissionRejected

    args = ClaimArgs(post_url="https://redd.it/zz1", views=1, clicks=0, conversions=0, campaign_id=None)
    with pytest.raises(SubmissionRejected, match="no open campaign on reddit"):
        services.chat_claim(identity=identity, args=args, delivery_key="", now=timezone.now())


def test_the_api_document_describes_the_code_endpoint(client: Client) -> None:
    document = client.get("/api/schema/?format=json").json()
    operation = document["paths"]["/api/v1/affiliates/me/chat-link-code"]["post"]
    assert operation["operationId"] == "affiliate_chat_link_code"
    assert "201" in operation["responses"]


def test_the_predecessors_discord_ids_become_discord_identities(world: World) -> None:
    import importlib

    from django.apps import apps

    from reconciliation.models import Affiliate

    Affiliate.objects.filter(pk=world.owner.pk).update(chat_user_id="80351110224678912")
    Affiliate.objects.filter(pk=world.other.pk).update(chat_user_id="creator#1234")
    migration = importlib.import_module("chat.migrations.0002_discord_ids_from_affiliates")
    migration.copy_discord_ids(apps, None)
    identity = ChatIdentity.objects.get()
    assert (identity.provider, identity.team_id, identity.external_user_id, identity.affiliate) == (
        "discord",
        "",
        "80351110224678912",
        world.owner,
    )

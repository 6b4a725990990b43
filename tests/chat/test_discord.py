"""POST /chat/discord/interactions: Discord's signature, PING, and the /claim, /status and /link commands."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.db.models import F
from django.test import Client
from django.utils import timezone

from chat.models import ChatIdentity
from reconciliation.models import Affiliate, AffiliateReport, Campaign, Post, ReconciliationLog
from tests import factories
from tests.chat.conftest import DISCORD_URL, Linked, content_of, discord_post, interaction

pytestmark = pytest.mark.django_db

URL = "https://www.reddit.com/r/python/comments/abc12/my_post/?utm_source=share"


def claim(url: str = URL, views: str = "12.5k", clicks: str = "1,200", conversions: str = "30", **extra: str) -> dict:
    return {"url": url, "views": views, "clicks": clicks, "conversions": conversions, **extra}


# --- the signature --------------------------------------------------------------------------------


def test_ping_is_answered_with_pong(client: Client, discord_key: Ed25519PrivateKey) -> None:
    response = discord_post(client, discord_key, {"type": 1, "id": "1", "application_id": "2"})
    assert response.status_code == 200
    assert response.json() == {"type": 1}


def test_a_request_without_a_signature_is_refused(client: Client, discord_key: Ed25519PrivateKey) -> None:
    response = client.post(DISCORD_URL, data=b'{"type":1}', content_type="application/json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"


def test_a_request_signed_with_another_key_is_refused(
    client: Client, discord_key: Ed25519PrivateKey, linked: Linked
) -> None:
    campaign = factories.campaign()
    response = discord_post(
        client, Ed25519PrivateKey.generate(), interaction("claim", claim(campaign=str(campaign.pk)))
    )
    assert response.status_code == 401
    assert not AffiliateReport.objects.exists()


def test_a_tampered_body_is_refused(client: Client, discord_key: Ed25519PrivateKey, linked: Linked) -> None:
    campaign = factories.campaign()
    body = json.dumps(interaction("claim", claim(campaign=str(campaign.pk)))).encode()
    stamp = str(int(time.time()))
    signature = discord_key.sign(stamp.encode() + body).hex()
    tampered = body.replace(b"12.5k", b"99.5k")
    response = discord_post(client, discord_key, tampered, timestamp=int(stamp), signature=signature)
    assert response.status_code == 401
    assert not AffiliateReport.objects.exists()


def test_a_stale_timestamp_is_refused_even_when_signed(
    client: Client, discord_key: Ed25519PrivateKey, linked: Linked
) -> None:
    campaign = factories.campaign()
    stale = int(time.time()) - 301
    response = discord_post(
        client, discord_key, interaction("claim", claim(campaign=str(campaign.pk))), timestamp=stale
    )
    assert response.status_code == 401
    assert "more than 300 seconds" in response.json()["error"]["message"]
    assert not AffiliateReport.objects.exists()


def test_without_a_public_key_the_endpoint_says_it_is_not_set_up(client: Client, settings: Any) -> None:
    settings.DISCORD_PUBLIC_KEY = ""
    response = client.post(DISCORD_URL, data=b'{"type":1}', content_type="application/json")
    assert response.status_code == 503
    assert response.json()["error"]["message"] == "Discord is not set up here: DISCORD_PUBLIC_KEY is unset."


def test_only_post_is_allowed(client: Client, discord_key: Ed25519PrivateKey) -> None:
    assert client.get(DISCORD_URL).status_code == 405


def test_an_interaction_for_another_application_is_refused(
    client: Client, discord_key: Ed25519PrivateKey, settings: Any
) -> None:
    settings.DISCORD_APPLICATION_ID = "999"
    response = discord_post(client, discord_key, {"type": 1, "id": "1", "application_id": "2"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "wrong_application"
    settings.DISCORD_APPLICATION_ID = "2"
    assert discord_post(client, discord_key, {"type": 1, "id": "1", "application_id": "2"}).json() == {"type": 1}


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"ping"'])
def test_a_signed_body_that_is_not_an_interaction_is_a_400(
    client: Client, discord_key: Ed25519PrivateKey, body: bytes
) -> None:
    assert discord_post(client, discord_key, body).status_code == 400


# --- /claim ---------------------------------------------------------------------------------------


def test_a_signed_claim_is_recorded_as_a_chat_claim(
    client: Client, discord_key: Ed25519PrivateKey, linked: Linked
) -> None:
    campaign = factories.campaign(name="Summer launch")
    response = discord_post(client, discord_key, interaction("claim", claim(campaign=str(campaign.pk))))

    content = content_of(response)
    assert response.json()["data"]["allowed_mentions"] == {"parse": []}
    report = AffiliateReport.objects.get()
    assert report.submission_method == AffiliateReport.Method.CHAT
    assert (report.claimed_views, report.claimed_clicks, report.claimed_conversions) == (12500, 1200, 30)
    assert report.idempotency_key.startswith("discord:")
    assert (report.post.affiliate, report.post.campaign, report.post.url) == (
        linked.affiliate,
        campaign,
        "https://reddit.com/comments/abc12",
    )
    assert ReconciliationLog.objects.get(report=report).status == "PENDING"
    assert Affiliate.objects.get(pk=linked.affiliate.pk).total_submissions == 1
    assert f"New post: report {report.pk} for reddit post abc12 in campaign {campaign.pk} (Summer launch)." in content
    assert "Recorded 12,500 views, 1,200 clicks, 30 conversions. Status: PENDING." in content
    assert f"http://testserver/api/v1/reports/{report.pk}" in content


def test_a_claim_in_a_direct_message_is_recorded(
    client: Client, discord_key: Ed25519PrivateKey, linked: Linked
) -> None:
    campaign = factories.campaign()
    content = content_of(
        discord_post(client, discord_key, interaction("claim", claim(campaign=str(campaign.pk)), dm=True))
    )
    assert AffiliateReport.objects.get().post.affiliate == linked.affiliate
    assert "New post" in content


def test_a_redelivered_interaction_records_nothing_new(
    client: Client, discord_key: Ed25519PrivateKey, linked: Linked
) -> None:
    campaign = factories.campaign()
    payload = interaction("claim", claim(campaign=str(campaign.pk)), id="123456789")
    first = content_of(discord_post(client, discord_key, payload))
    again = content_of(discord_post(client, discord_key, payload))
    report = AffiliateReport.objects.get()
    assert f"report {report.pk}" in first and f"Already recorded: report {report.pk}" in again


def test_a_claim_on_a_post_already_submitted_adds_to_its_history(
    client: Client, discord_key: Ed25519PrivateKey, linked: Linked
) -> None:
    campaign = factories.campaign()
    content_of(discord_post(client, discord_key, interaction("claim", claim(campaign=str(campaign.pk)))))
    content = content_of(
        discord_post(client, discord_key, interaction("claim", claim(views="13k", campaign=str(campaign.pk))))
    )
    post = Post.objects.get()
    assert sorted(post.reports.values_list("claimed_views", flat=True)) == [12500, 13000]
    assert set(post.reports.values_list("submission_method", flat=True)) == {"CHAT"}
    assert "New claim on your post" in content


def test_without_a_campaign_the_only_open_campaign_on_the_platform_is_used(
    client: Client, discord_key: Ed25519PrivateKey, linked: Linked
) -> None:
    campaign = factories.campaign(platforms=("reddit",))
    factories.campaign(platforms=("youtube",))  # another platform: not a candidate
    factories.post(affiliate=linked.affiliate, campaign=campaign, platform_post_id="earlier")
    content_of(discord_post(client, discord_key, interaction("claim", claim())))
    assert AffiliateReport.objects.get().post.campaign == campaign


def test_without_a_campaign_and_several_open_the_reply_lists_them(
    client: Client, discord_key: Ed25519PrivateKey, linked: Linked
) -> None:
    first = factories.campaign(name="Spring")
    second = factories.campaign(name="Summer")
    ended = factories.campaign(name="Winter", status=Campaign.Status.ENDED)
    for n, campaign in enumerate((first, second, ended)):
        factories.post(affiliate=linked.affiliate, campaign=campaign, platform_post_id=f"e{n}")
    content = content_of(discord_post(client, discord_key, interaction("claim", claim())))
    assert content == (
        f"Nothing was recorded: campaign: you have several open campaigns on reddit: {first.pk} (Spring), "
        f"{second.pk} (Summer); add the campaign id."
    )
    assert not AffiliateReport.objects.exists()


def test_without_a_campaign_and_none_open_the_reply_asks_for_one(
    client: Client, discord_key: Ed25519PrivateKey, linked: Linked
) -> None:
    factories.campaign()  # open, but this affiliate never posted to it
    content = content_of(discord_post(client, discord_key, interaction("claim", claim())))
    assert content == (
        "Nothing was recorded: campaign: you have no open campaign on reddit yet: add the campaign id after "
        "the numbers."
    )


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            {"views": "12.5.5k"},
            "Nothing was recorded: views: '12.5.5k' is not a number (write it like 12500, 12,500 or 12.5k). "
            "Usage: /claim <post url> <views> <clicks> <conversions> [campaign id]",
        ),
        ({"clicks": "1.5"}, "clicks: '1.5' is 1.5, not a whole number"),
        ({"conversions": "-3"}, "conversions: '-3' is negative"),
        ({"views": "2000b"}, "views: '2000b' is more than 1,000,000,000,000"),
        ({"url": "https://example.com/some/page"}, "Nothing was recorded: url: "),
        ({"campaign": "999999"}, "Nothing was recorded: campaign: no campaign with id 999999."),
        ({"campaign": "spring"}, "campaign: 'spring' is not a campaign id"),
    ],
)
def test_bad_input_gets_a_reply_saying_exactly_what_is_wrong(
    client: Client, discord_key: Ed25519PrivateKey, linked: Linked, options: dict, expected: str
) -> None:
    campaign = factories.campaign()
    args = {**claim(campaign=str(campaign.pk)), **options}
    content = content_of(discord_post(client, discord_key, interaction("claim", args)))
    assert expected in content
    assert not AffiliateReport.objects.exists()


def test_a_campaign_not_running_on_the_posts_platform_is_named(
    client: Client, discord_key: Ed25519PrivateKey, linked: Linked
) -> None:
    campaign = factories.campaign(platforms=("youtube",))
    content = content_of(discord_post(client, discord_key, interaction("claim", claim(campaign=str(campaign.pk)))))
    assert content == f"Nothing was recorded: platform: campaign {campaign.pk} does not run on reddit."


def test_a_missing_option_is_named(client: Client, discord_key: Ed25519PrivateKey, linked: Linked) -> None:
    content = content_of(discord_post(client, discord_key, interaction("claim", {"url": URL, "views": "10"})))
    assert "clicks is missing; conversions is missing" in content


def test_an_unlinked_user_is_told_how_to_link(client: Client, discord_key: Ed25519PrivateKey, linked: Linked) -> None:
    campaign = factories.campaign()
    payload = interaction("claim", claim(campaign=str(campaign.pk)), user_id="999999999999999999")
    content = content_of(discord_post(client, discord_key, payload))
    assert content == (
        "This Discord account is not linked to an affiliate yet. Get a link code with your affiliate API key "
        "(`POST http://testserver/api/v1/affiliates/me/chat-link-code`, valid 15 minutes), then send "
        "`/link <code>` here."
    )
    assert not AffiliateReport.objects.exists()


def test_an_inactive_affiliate_cannot_claim(client: Client, discord_key: Ed25519PrivateKey, linked: Linked) -> None:
    Affiliate.objects.filter(pk=linked.affiliate.pk).update(is_active=False)
    campaign = factories.campaign()
    content = content_of(discord_post(client, discord_key, interaction("claim", claim(campaign=str(campaign.pk)))))
    assert "inactive" in content
    assert not AffiliateReport.objects.exists()


def test_a_slack_identity_does_not_make_a_discord_user(
    client: Client, discord_key: Ed25519PrivateKey, linked: Linked
) -> None:
    ChatIdentity.objects.filter(provider="discord").delete()
    content = content_of(discord_post(client, discord_key, interaction("status", {"report": "1"})))
    assert content.startswith("This Discord account is not linked")


def test_an_unknown_command_gets_the_help(client: Client, discord_key: Ed25519PrivateKey, linked: Linked) -> None:
    content = content_of(discord_post(client, discord_key, interaction("dance")))
    assert content.startswith("Commands:") and "/claim <post url>" in content


# --- /status --------------------------------------------------------------------------------------


def test_status_answers_the_current_verdict_with_the_platforms_numbers(
    client: Client, discord_key: Ed25519PrivateKey, linked: Linked
) -> None:
    campaign = factories.campaign()
    content_of(discord_post(client, discord_key, interaction("claim", claim(campaign=str(campaign.pk)))))
    report = AffiliateReport.objects.get()
    attempt = factories.attempt(report, outcome="SUCCESS", status="DISCREPANCY_LOW")
    factories.snapshot(attempt, views=12000, clicks=1150, conversions=None, fetched_at=timezone.now())
    ReconciliationLog.objects.filter(report=report).update(
        status="DISCREPANCY_LOW",
        discrepancy_level="LOW",
        next_attempt_at=None,
        terminal=True,
        attempt_count=F("attempt_count") + 1,
    )

    content = content_of(discord_post(client, discord_key, interaction("status", {"report": str(report.pk)})))
    lines = content.splitlines()
    assert lines[0] == f"Report {report.pk} (reddit post abc12, campaign {campaign.pk}): DISCREPANCY_LOW (LOW)"
    assert lines[1] == "State: final"
    assert lines[2] == "Claimed 12,500 views, 1,200 clicks, 30 conversions."
    assert lines[3].startswith("Platform reported 12,000 views, 1,150 clicks, no figure for conversions at ")
    assert lines[-1] == f"http://testserver/api/v1/reports/{report.pk}"


def test_status_of_a_pending_claim(client: Client, discord_key: Ed25519PrivateKey, linked: Linked) -> None:
    campaign = factories.campaign()
    content_of(discord_post(client, discord_key, interaction("claim", claim(campaign=str(campaign.pk)))))
    report = AffiliateReport.objects.get()
    content = content_of(discord_post(client, discord_key, interaction("status", {"report": f"#{report.pk}"})))
    assert f"campaign {campaign.pk}): PENDING" in content
    assert "State: pending, next check " in content
    assert "Platform reported" not in content


def test_status_of_another_affiliates_report_is_not_found(
    client: Client, discord_key: Ed25519PrivateKey, linked: Linked
) -> None:
    theirs = factories.report()
    content = content_of(discord_post(client, discord_key, interaction("status", {"report": str(theirs.pk)})))
    assert content == f"No report {theirs.pk} among yours."


def test_status_with_a_bad_id_says_so(client: Client, discord_key: Ed25519PrivateKey, linked: Linked) -> None:
    content = content_of(discord_post(client, discord_key, interaction("status", {"report": "latest"})))
    assert content == "No status: 'latest' is not a report id (a number like 1234). Usage: /status <report id>"


def test_the_registered_commands_file_matches_what_the_endpoint_reads(
    client: Client, discord_key: Ed25519PrivateKey, linked: Linked
) -> None:
    """chat/discord_commands.json (README "Chat submissions") names the options the endpoint reads."""
    from pathlib import Path

    from chat.parsing import CLAIM_WORDS

    commands = {
        c["name"]: c for c in json.loads((Path(__file__).parents[2] / "chat/discord_commands.json").read_text())
    }
    assert set(commands) == {"claim", "status", "link"}
    assert [o["name"] for o in commands["claim"]["options"]] == list(CLAIM_WORDS)
    assert [o["name"] for o in commands["status"]["options"]] == ["report"]
    assert [o["name"] for o in commands["link"]["options"]] == ["code"]
    # Counts are strings, so "12.5k" can be typed; Discord sends an integer option as a JSON number.
    assert {o["type"] for o in commands["claim"]["options"][1:4]} == {3}
    campaign = factories.campaign()
    options = [
        {"name": "url", "type": 3, "value": URL},
        {"name": "views", "type": 3, "value": "1k"},
        {"name": "clicks", "type": 3, "value": "10"},
        {"name": "conversions", "type": 3, "value": "0"},
        {"name": "campaign", "type": 4, "value": campaign.pk},
    ]
    payload = interaction("claim")
    payload["data"]["options"] = options
    content_of(discord_post(client, discord_key, payload))
    assert AffiliateReport.objects.get().post.campaign == campaign


def test_a_body_over_the_size_cap_is_a_413(client: Client, discord_key: Ed25519PrivateKey, settings: Any) -> None:
    payload = {"type": 1, "id": "1", "application_id": "2", "padding": "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE}
    response = discord_post(client, discord_key, payload)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"

"""POST /chat/slack/commands: Slack's signing secret, and the commands typed as words."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import Client

from reconciliation.models import AffiliateReport
from tests import factories
from tests.chat.conftest import SLACK_TEAM, SLACK_URL, Linked, slack_post, slack_text

pytestmark = pytest.mark.django_db

URL = "https://youtu.be/dQw4w9WgXcQ?si=tracking"


def test_a_signed_claim_is_recorded_as_a_chat_claim(client: Client, slack_secret: str, linked: Linked) -> None:
    campaign = factories.campaign(platforms=("youtube",), name="Launch")
    response = slack_post(client, slack_secret, "/claim", f"{URL} 3M 1,200 30 {campaign.pk}", trigger_id="t.1")

    text = slack_text(response)
    report = AffiliateReport.objects.get()
    assert report.submission_method == "CHAT"
    assert (report.claimed_views, report.claimed_clicks, report.claimed_conversions) == (3_000_000, 1200, 30)
    assert report.idempotency_key == "slack:t.1"
    assert report.post.affiliate == linked.affiliate
    assert report.post.platform_post_id == "dQw4w9WgXcQ"
    assert f"New post: report {report.pk} for youtube post dQw4w9WgXcQ in campaign {campaign.pk} (Launch)." in text
    assert "Recorded 3,000,000 views, 1,200 clicks, 30 conversions. Status: PENDING." in text


def test_a_link_escaped_by_slack_is_understood(client: Client, slack_secret: str, linked: Linked) -> None:
    campaign = factories.campaign(platforms=("youtube",))
    text = f"<{URL}|youtu.be/dQw4w9WgXcQ> 12.5k 300 3 {campaign.pk}"
    slack_text(slack_post(client, slack_secret, "/claim", text))
    assert AffiliateReport.objects.get().claimed_views == 12500


def test_a_bad_signature_is_refused(client: Client, slack_secret: str, linked: Linked) -> None:
    campaign = factories.campaign(platforms=("youtube",))
    response = slack_post(client, slack_secret, "/claim", f"{URL} 1 1 1 {campaign.pk}", signature="v0=" + "0" * 64)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
    assert not AffiliateReport.objects.exists()


def test_a_request_signed_with_another_secret_is_refused(client: Client, slack_secret: str, linked: Linked) -> None:
    campaign = factories.campaign(platforms=("youtube",))
    response = slack_post(client, "another-apps-secret", "/claim", f"{URL} 1 1 1 {campaign.pk}")
    assert response.status_code == 401
    assert not AffiliateReport.objects.exists()


def test_a_request_without_signature_headers_is_refused(client: Client, slack_secret: str) -> None:
    response = client.post(
        SLACK_URL, data=b"command=%2Fstatus&text=1", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 401


def test_a_stale_timestamp_is_refused_even_when_signed(client: Client, slack_secret: str, linked: Linked) -> None:
    campaign = factories.campaign(platforms=("youtube",))
    stale = int(time.time()) - 301
    response = slack_post(client, slack_secret, "/claim", f"{URL} 1 1 1 {campaign.pk}", timestamp=stale)
    assert response.status_code == 401
    assert not AffiliateReport.objects.exists()


def test_without_a_signing_secret_the_endpoint_says_it_is_not_set_up(client: Client, settings: Any) -> None:
    settings.SLACK_SIGNING_SECRET = ""
    response = client.post(SLACK_URL, data=b"command=%2Fstatus", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 503
    assert response.json()["error"]["message"] == "Slack is not set up here: SLACK_SIGNING_SECRET is unset."


def test_an_umbrella_command_works_like_the_named_one(client: Client, slack_secret: str, linked: Linked) -> None:
    campaign = factories.campaign(platforms=("youtube",))
    slack_text(slack_post(client, slack_secret, "/affiliates", f"claim {URL} 1k 10 1 {campaign.pk}"))
    assert AffiliateReport.objects.get().claimed_views == 1000


def test_bad_numbers_are_named_in_the_reply(client: Client, slack_secret: str, linked: Linked) -> None:
    campaign = factories.campaign(platforms=("youtube",))
    text = slack_text(slack_post(client, slack_secret, "/claim", f"{URL} 12.5.5k 1.2345k 3 {campaign.pk}"))
    assert text.startswith(
        "Nothing was recorded: views: '12.5.5k' is not a number (write it like 12500, 12,500 or 12.5k); "
        "clicks: '1.2345k' is 1234.5, not a whole number. Usage: /claim &lt;post url&gt;"
    )
    assert not AffiliateReport.objects.exists()


def test_too_many_words_are_refused(client: Client, slack_secret: str, linked: Linked) -> None:
    text = slack_text(slack_post(client, slack_secret, "/claim", f"{URL} 1 2 3 4 five"))
    assert text.startswith("Nothing was recorded: too many words ('five' is extra).")


def test_an_unlinked_user_is_told_how_to_link(client: Client, slack_secret: str, linked: Linked) -> None:
    text = slack_text(slack_post(client, slack_secret, "/status", "1", user_id="U0OTHER"))
    assert text.startswith("This Slack account is not linked to an affiliate yet.")
    assert "`POST http://testserver/api/v1/affiliates/me/chat-link-code`" in text


def test_the_same_user_id_in_another_workspace_is_another_account(
    client: Client, slack_secret: str, linked: Linked
) -> None:
    text = slack_text(slack_post(client, slack_secret, "/status", "1", team_id=SLACK_TEAM + "X"))
    assert text.startswith("This Slack account is not linked")


def test_status_answers_the_verdict(client: Client, slack_secret: str, linked: Linked) -> None:
    campaign = factories.campaign(platforms=("youtube",))
    slack_text(slack_post(client, slack_secret, "/claim", f"{URL} 1k 10 1 {campaign.pk}"))
    report = AffiliateReport.objects.get()
    report.log.status = "MATCHED"
    report.log.save()
    text = slack_text(slack_post(client, slack_secret, "/status", str(report.pk)))
    assert text.startswith(f"Report {report.pk} (youtube post dQw4w9WgXcQ, campaign {campaign.pk}): MATCHED")
    assert "State: rechecking" in text


def test_the_reply_escapes_what_slack_reads_as_markup(client: Client, slack_secret: str, linked: Linked) -> None:
    text = slack_text(slack_post(client, slack_secret, "/status", "<!channel>"))
    assert text.startswith("No status: '&lt;!channel&gt;' is not a report id")


def test_help_for_an_empty_umbrella_command(client: Client, slack_secret: str, linked: Linked) -> None:
    assert slack_text(slack_post(client, slack_secret, "/affiliates", "")).startswith("Commands:")


def test_claims_share_the_submission_rate_limit_per_chat_account(
    client: Client, slack_secret: str, linked: Linked, settings: Any
) -> None:
    from reconcile_project.config import RateLimitSettings

    settings.RATE_LIMIT_SETTINGS = RateLimitSettings.model_validate({"submission": "2/hour"})
    campaign = factories.campaign(platforms=("youtube",))
    for views in ("1k", "2k"):
        slack_text(slack_post(client, slack_secret, "/claim", f"{URL} {views} 10 1 {campaign.pk}"))
    text = slack_text(slack_post(client, slack_secret, "/claim", f"{URL} 3k 10 1 {campaign.pk}"))
    assert text == "Nothing was recorded: too many claims (at most 2/hour); try again in 60 minutes."
    assert AffiliateReport.objects.count() == 2
    # Another chat account has its own allowance; /status is not a claim.
    other = factories.affiliate()
    from tests.chat.conftest import link

    link(other, "slack", "U0OTHER", SLACK_TEAM)
    slack_text(slack_post(client, slack_secret, "/claim", f"{URL} 3k 10 1 {campaign.pk}", user_id="U0OTHER"))
    assert AffiliateReport.objects.count() == 3
    report = AffiliateReport.objects.order_by("pk").first()
    assert report is not None
    assert slack_text(slack_post(client, slack_secret, "/status", str(report.pk))).startswith("Report")

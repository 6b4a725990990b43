from __future__ import annotations

import io
from typing import cast

import pytest
from django.core.management import CommandError, call_command

from platforms.models import Platform
from reconciliation.models import Affiliate, AffiliateAPIKey, Campaign, Client, ClientAPIKey

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_seed_demo_is_idempotent(settings, tmp_path) -> None:
    settings.VAR_DIR = tmp_path
    first = run("seed_demo")
    second = run("seed_demo")
    assert Platform.objects.count() == 6
    assert Client.objects.count() == 1
    assert Campaign.objects.count() == 2
    assert Affiliate.objects.count() == 3
    # The saved keys are reused: the second run prints the same keys and creates none.
    assert AffiliateAPIKey.objects.count() == 3
    assert ClientAPIKey.objects.count() == 2
    keys = [line for line in first.splitlines() if "API key" in line]
    assert keys == [line for line in second.splitlines() if "API key" in line]
    assert "admin login: admin" in first


def test_create_affiliate_prints_a_key_that_is_stored_only_hashed() -> None:
    out = run("create_affiliate", "Dana", "--email", "dana@example.com")
    key = out.split("store it now): ")[1].strip()
    stored = AffiliateAPIKey.objects.get(affiliate__email="dana@example.com")
    assert key not in stored.hashed_key and stored.prefix == key.split(".")[0]
    assert AffiliateAPIKey.objects.is_valid(key)
    assert cast(AffiliateAPIKey, AffiliateAPIKey.objects.get_from_key(key)).affiliate.email == "dana@example.com"


def test_create_affiliate_refuses_a_duplicate_email() -> None:
    run("create_affiliate", "Dana", "--email", "dana@example.com")
    with pytest.raises(CommandError, match="already exists"):
        run("create_affiliate", "Dana 2", "--email", "DANA@example.com")


def test_create_client_and_campaign() -> None:
    for slug in ("reddit", "youtube"):
        Platform.objects.create(slug=slug, name=slug)
    out = run("create_client", "Globex")
    assert "Created client" in out and "API key" in out
    out = run("create_campaign", "Summer", "--client", "Globex", "--platforms", "reddit,youtube")
    campaign = Campaign.objects.get(name="Summer")
    assert sorted(campaign.platforms.values_list("slug", flat=True)) == ["reddit", "youtube"]
    assert "Created campaign" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--client", "Nobody", "--platforms", "reddit"], "no client"),
        (["--client", "Globex", "--platforms", "myspace"], "unknown platform"),
        (["--client", "Globex", "--platforms", "reddit", "--start", "2026-13-01"], "not a date"),
        (["--client", "Globex", "--platforms", "reddit", "--rule-overrides", "{bad"], "not JSON"),
        (
            [
                "--client",
                "Globex",
                "--platforms",
                "reddit",
                "--rule-overrides",
                '{"RETRY_POLICY": {"max_attempts": 0}}',
            ],
            "RETRY_POLICY.max_attempts",
        ),
    ],
)
def test_create_campaign_errors_are_clear(args: list[str], message: str) -> None:
    Platform.objects.create(slug="reddit", name="Reddit")
    run("create_client", "Globex")
    with pytest.raises(CommandError, match=message):
        run("create_campaign", "Summer", *args)


def test_the_key_create_affiliate_prints_authenticates_against_the_api() -> None:
    from rest_framework.test import APIClient

    out = run("create_affiliate", "Erin", "--email", "erin@example.com")
    key = out.split("store it now): ")[1].strip()
    client = APIClient()
    assert client.get("/api/v1/affiliates/me").status_code == 401
    response = client.get("/api/v1/affiliates/me", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200, response.content
    assert response.json()["email"] == "erin@example.com"

"""The standing actors of the API tests: an owner affiliate, another affiliate, a client (the campaign's
advertiser), another client, and staff (a staff API key and an admin user)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.test import APIClient

from reconciliation.models import Affiliate, AffiliateAPIKey, Campaign, Client, ClientAPIKey
from tests import factories


@dataclass
class World:
    owner: Affiliate
    owner_key: str
    other: Affiliate
    other_key: str
    client: Client
    client_key: str
    other_client: Client
    other_client_key: str
    staff_key: str
    campaign: Campaign
    other_campaign: Campaign


def bearer(key: str) -> dict[str, Any]:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def affiliate_with_key(**fields: Any) -> tuple[Affiliate, str]:
    affiliate = factories.affiliate(**fields)
    _, key = AffiliateAPIKey.objects.create_key(name="test", affiliate=affiliate)
    return affiliate, key


def client_with_key(**fields: Any) -> tuple[Client, str]:
    client = factories.client(**fields)
    _, key = ClientAPIKey.objects.create_key(name="test", client=client)
    return client, key


def make_world() -> World:
    owner, owner_key = affiliate_with_key()
    other, other_key = affiliate_with_key()
    client, client_key = client_with_key()
    other_client, other_client_key = client_with_key()
    _, staff_key = ClientAPIKey.objects.create_key(name="staff", client=None, is_staff=True)
    campaign = factories.campaign(platforms=("reddit", "youtube"), client=client)
    other_campaign = factories.campaign(platforms=("reddit",), client=other_client)
    for slug in factories.PLATFORM_NAMES:
        factories.platform(slug)
    return World(
        owner=owner,
        owner_key=owner_key,
        other=other,
        other_key=other_key,
        client=client,
        client_key=client_key,
        other_client=other_client,
        other_client_key=other_client_key,
        staff_key=staff_key,
        campaign=campaign,
        other_campaign=other_campaign,
    )


@pytest.fixture
def world(db: None) -> World:
    return make_world()


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def staff_user(db: None) -> Any:
    return get_user_model().objects.create_user("analyst", "analyst@example.com", "pw-analyst-1", is_staff=True)


def submission(campaign: Campaign, n: int | str = 1, **overrides: Any) -> dict[str, Any]:
    body = {
        "campaign_id": campaign.pk,
        "platform": "reddit",
        "post_url": f"https://www.reddit.com/r/python/comments/p{n}/title/?utm_source=share",
        "claimed_views": 1000,
        "claimed_clicks": 50,
        "claimed_conversions": 5,
    }
    body.update(overrides)
    return body


def yesterday() -> dt.date:
    return timezone.localdate() - dt.timedelta(days=1)

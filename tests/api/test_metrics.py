"""PUT/GET /api/v1/submissions/{post_id}/metrics: a post's claims history."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from reconciliation.models import Affiliate, AffiliateReport, Campaign, PlatformReport, ReconciliationLog
from tests.api.conftest import World, bearer, submission

pytestmark = pytest.mark.django_db

CLAIMS = {"claimed_views": 1500, "claimed_clicks": 70, "claimed_conversions": 7}


@pytest.fixture
def post_id(api: APIClient, world: World) -> int:
    response = api.post("/api/v1/submissions/", submission(world.campaign), format="json", **bearer(world.owner_key))
    return response.json()["post_id"]


def put(api: APIClient, world: World, post_id: int, body: Any, key: str | None = None) -> Any:
    return api.put(f"/api/v1/submissions/{post_id}/metrics", body, format="json", **bearer(key or world.owner_key))


def test_new_metrics_create_a_new_pending_report(api: APIClient, world: World, post_id: int) -> None:
    response = put(api, world, post_id, {**CLAIMS, "evidence": {"note": "day 2"}})

    assert response.status_code == 201
    body = response.json()
    assert body["post_id"] == post_id and body["status"] == "PENDING"
    assert AffiliateReport.objects.filter(post_id=post_id).count() == 2
    report = AffiliateReport.objects.get(pk=body["report_id"])
    assert (report.claimed_views, report.evidence) == (1500, {"note": "day 2"})
    next_at = ReconciliationLog.objects.get(report=report).next_attempt_at
    assert next_at is not None and next_at <= timezone.now()
    assert Affiliate.objects.get(pk=world.owner.pk).total_submissions == 2


def test_growth_spike_against_the_previous_claim_is_flagged(api: APIClient, world: World, post_id: int) -> None:
    response = put(api, world, post_id, {"claimed_views": 7000, "claimed_clicks": 60, "claimed_conversions": 6})
    assert "GROWTH_SPIKE" in [f["code"] for f in response.json()["suspicion_flags"]]


def test_a_falling_cumulative_count_is_flagged(api: APIClient, world: World, post_id: int) -> None:
    response = put(api, world, post_id, {"claimed_views": 900, "claimed_clicks": 50, "claimed_conversions": 5})
    assert [f["code"] for f in response.json()["suspicion_flags"]] == ["METRIC_DECREASE"]


def test_another_affiliates_post_is_404_and_unchanged(api: APIClient, world: World, post_id: int) -> None:
    assert put(api, world, post_id, CLAIMS, key=world.other_key).status_code == 404
    assert AffiliateReport.objects.filter(post_id=post_id).count() == 1


def test_unknown_and_out_of_range_post_ids_are_404(api: APIClient, world: World) -> None:
    assert put(api, world, 10**9, CLAIMS).status_code == 404
    assert put(api, world, 10**19 - 1, CLAIMS).status_code == 404
    assert api.get(f"/api/v1/submissions/{10**19 - 1}/metrics", **bearer(world.owner_key)).status_code == 404
    assert api.get(f"/api/v1/submissions/{10**20}/metrics", **bearer(world.owner_key)).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {},
        {**CLAIMS, "claimed_views": -5},
        {**CLAIMS, "claimed_clicks": 3.5},
        {**CLAIMS, "evidence": ["x"]},
    ],
)
def test_invalid_metrics_are_400(api: APIClient, world: World, post_id: int, body: dict) -> None:
    response = put(api, world, post_id, body)
    assert response.status_code == 400
    assert response.json()["error"]["fields"]


def test_metrics_for_a_post_of_an_ended_campaign_are_400(api: APIClient, world: World, post_id: int) -> None:
    Campaign.objects.filter(pk=world.campaign.pk).update(status=Campaign.Status.ENDED)
    response = put(api, world, post_id, CLAIMS)
    assert response.status_code == 400
    assert "campaign" in response.json()["error"]["fields"]


def test_history_lists_claims_and_platform_snapshots_oldest_first(api: APIClient, world: World, post_id: int) -> None:
    put(api, world, post_id, CLAIMS)
    now = timezone.now()
    for hours, views in ((2, 900), (1, 1400)):
        PlatformReport.objects.create(
            post_id=post_id,
            platform=world.campaign.platforms.get(slug="reddit"),
            views=views,
            clicks=None,
            conversions=3,
            fetched_at=now - dt.timedelta(hours=hours),
        )

    response = api.get(f"/api/v1/submissions/{post_id}/metrics", **bearer(world.owner_key))

    assert response.status_code == 200
    body = response.json()
    assert body["post"]["post_id"] == post_id and body["post"]["platform"] == "reddit"
    assert [c["claimed_views"] for c in body["claims"]] == [1000, 1500]
    assert all(c["status"] == "PENDING" for c in body["claims"])
    assert [(s["views"], s["clicks"]) for s in body["platform_snapshots"]] == [(900, None), (1400, None)]


def test_history_of_another_affiliates_post_is_404(api: APIClient, world: World, post_id: int) -> None:
    response = api.get(f"/api/v1/submissions/{post_id}/metrics", **bearer(world.other_key))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"

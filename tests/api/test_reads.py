"""Reads: the affiliate's list (filters, cursor pagination), report detail, profile; the client's campaigns."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from reconciliation.models import (
    Affiliate,
    PlatformReport,
    Post,
    ReconciliationAttempt,
    ReconciliationLog,
)
from tests.api.conftest import World, bearer, submission

pytestmark = pytest.mark.django_db

LIST = "/api/v1/submissions/"


def submit(api: APIClient, world: World, n: Any, key: str | None = None, **overrides: Any) -> dict:
    response = api.post(
        LIST, submission(world.campaign, n, **overrides), format="json", **bearer(key or world.owner_key)
    )
    assert response.status_code == 201, response.content
    return response.json()


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["post_id"] for row in response.json()["results"]]


# --- GET /submissions/ ----------------------------------------------------------------------------


def test_list_shows_each_post_with_its_latest_claim_and_status(api: APIClient, world: World) -> None:
    first = submit(api, world, 1)
    api.put(
        f"/api/v1/submissions/{first['post_id']}/metrics",
        {"claimed_views": 1100, "claimed_clicks": 55, "claimed_conversions": 5},
        format="json",
        **bearer(world.owner_key),
    )
    response = api.get(LIST, **bearer(world.owner_key))
    row = response.json()["results"][0]
    assert row["post_id"] == first["post_id"]
    assert row["platform"] == "reddit" and row["post_url"] == "https://reddit.com/comments/p1"
    assert row["latest_report"]["claimed_views"] == 1100
    assert row["latest_report"]["status"] == "PENDING"
    assert row["latest_report"]["status_url"].endswith(f"/api/v1/reports/{row['latest_report']['report_id']}")


def test_filters(api: APIClient, world: World) -> None:
    a = submit(api, world, "a")
    b = submit(api, world, "b", platform="youtube", post_url="https://youtu.be/dQw4w9WgXcQ")
    ReconciliationLog.objects.filter(report_id=a["report_id"]).update(status="MATCHED")
    key = bearer(world.owner_key)

    assert ids(api.get(LIST, {"status": "MATCHED"}, **key)) == [a["post_id"]]
    assert ids(api.get(LIST, {"status": "PENDING"}, **key)) == [b["post_id"]]
    assert ids(api.get(LIST, {"platform": "youtube"}, **key)) == [b["post_id"]]
    assert ids(api.get(LIST, {"campaign_id": world.campaign.pk}, **key)) == [b["post_id"], a["post_id"]]
    assert ids(api.get(LIST, {"campaign_id": world.other_campaign.pk}, **key)) == []
    Post.objects.filter(pk=a["post_id"]).update(created_at=timezone.now() - dt.timedelta(days=3))
    since = (timezone.now() - dt.timedelta(days=1)).isoformat()
    assert ids(api.get(LIST, {"submitted_after": since}, **key)) == [b["post_id"]]
    assert ids(api.get(LIST, {"submitted_before": since}, **key)) == [a["post_id"]]


@pytest.mark.parametrize(
    "params",
    [
        {"status": "NOPE"},
        {"platform": "myspace"},
        {"campaign_id": "abc"},
        {"campaign_id": str(10**30)},
        {"submitted_after": "yesterday"},
        {"submitted_after": "9999-12-31T23:59:59-15:00"},
        {"cursor": "garbage"},
    ],
)
def test_invalid_filter_or_cursor_is_400_naming_it(api: APIClient, world: World, params: dict) -> None:
    response = api.get(LIST, params, **bearer(world.owner_key))
    assert response.status_code == 400, response.content
    assert set(response.json()["error"]["fields"]) == set(params)


def test_extreme_but_valid_offsets_are_accepted(api: APIClient, world: World) -> None:
    response = api.get(LIST, {"submitted_after": "2030-01-01T00:00:00-17:45"}, **bearer(world.owner_key))
    assert response.status_code == 200


def test_cursor_pages_are_stable_while_new_posts_arrive(api: APIClient, world: World) -> None:
    for n in range(5):
        submit(api, world, f"c{n}")
    key = bearer(world.owner_key)
    first = api.get(LIST, {"limit": 2}, **key).json()
    seen = [row["post_id"] for row in first["results"]]
    next_url = first["next"]
    # New submissions arrive between pages: they must not shift the pages already being read.
    submit(api, world, "late1")
    submit(api, world, "late2")
    while next_url:
        cursor = parse_qs(urlsplit(next_url).query)["cursor"][0]
        page = api.get(LIST, {"limit": 2, "cursor": cursor}, **key).json()
        seen += [row["post_id"] for row in page["results"]]
        next_url = page["next"]
    original = sorted(
        Post.objects.filter(affiliate=world.owner)
        .exclude(platform_post_id__startswith="plate")
        .values_list("pk", flat=True),
        reverse=True,
    )
    assert seen == original  # every original post once, in order, none of the late ones


def test_page_size_is_capped(api: APIClient, world: World) -> None:
    submit(api, world, 1)
    assert api.get(LIST, {"limit": 10_000}, **bearer(world.owner_key)).status_code == 200


# --- GET /reports/{id} ----------------------------------------------------------------------------


def test_report_detail_has_status_diffs_attempts_and_trust_delta(api: APIClient, world: World) -> None:
    created = submit(api, world, 1)
    now = timezone.now()
    ReconciliationLog.objects.filter(report_id=created["report_id"]).update(
        status="DISCREPANCY_LOW",
        discrepancy_level="LOW",
        views_diff=80,
        views_diff_pct=0.087,
        clicks_diff=0,
        clicks_diff_pct=0.0,
        max_diff_pct=0.087,
        confidence_ratio=2 / 3,
        missing_fields=["conversions"],
        attempt_count=2,
        last_attempt_at=now,
        next_attempt_at=now + dt.timedelta(hours=6),
        trust_delta=Decimal("-0.0100"),
    )
    for number, outcome in ((1, "MISSING"), (2, "PARTIAL")):
        ReconciliationAttempt.objects.create(
            report_id=created["report_id"],
            number=number,
            started_at=now,
            finished_at=now,
            outcome=outcome,
            status="DISCREPANCY_LOW" if number == 2 else "MISSING_PLATFORM_DATA",
            missing_reason="timeout" if number == 1 else "",
        )

    body = api.get(f"/api/v1/reports/{created['report_id']}", **bearer(world.owner_key)).json()

    assert body["status"] == "DISCREPANCY_LOW" and body["discrepancy_level"] == "LOW"
    assert body["metrics"]["views"] == {"claimed": 1000, "diff": 80, "diff_pct": 0.087}
    assert body["metrics"]["conversions"] == {"claimed": 5, "diff": None, "diff_pct": None}
    assert body["confidence_ratio"] == pytest.approx(0.6667, abs=1e-4)
    assert body["missing_fields"] == ["conversions"]
    assert [(a["number"], a["outcome"], a["missing_reason"]) for a in body["attempts"]] == [
        (1, "MISSING", "timeout"),
        (2, "PARTIAL", ""),
    ]
    assert body["trust_delta"] == -0.01
    assert body["next_attempt_at"] is not None and body["terminal"] is False


def test_report_of_another_affiliate_is_404(api: APIClient, world: World) -> None:
    created = submit(api, world, 1)
    response = api.get(f"/api/v1/reports/{created['report_id']}", **bearer(world.other_key))
    assert response.status_code == 404
    # Indistinguishable from a report that does not exist.
    missing = api.get("/api/v1/reports/999999999", **bearer(world.other_key))
    assert response.json()["error"] == missing.json()["error"]


# --- GET /affiliates/me ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "bucket"),
    [("0.8000", "high_trust"), ("0.5000", "normal"), ("0.2500", "low_trust"), ("0.1000", "critical")],
)
def test_me_has_trust_score_bucket_and_counters(api: APIClient, world: World, score: str, bucket: str) -> None:
    Affiliate.objects.filter(pk=world.owner.pk).update(trust_score=score)
    submit(api, world, 1)
    submit(api, world, 2)
    body = api.get("/api/v1/affiliates/me", **bearer(world.owner_key)).json()
    assert body["id"] == world.owner.pk and body["email"] == world.owner.email
    assert body["trust_score"] == float(score) and body["trust_bucket"] == bucket
    assert body["total_submissions"] == 2 and body["posts"] == 2
    assert body["reports_by_status"] == {"PENDING": 2}


# --- campaigns ------------------------------------------------------------------------------------


def test_campaign_detail_has_claimed_vs_verified_totals(api: APIClient, world: World) -> None:
    a = submit(api, world, "a")
    submit(api, world, "b", key=world.other_key, claimed_views=500, claimed_clicks=20, claimed_conversions=2)
    ReconciliationLog.objects.filter(report_id=a["report_id"]).update(status="MATCHED")
    PlatformReport.objects.create(
        post_id=a["post_id"],
        platform=world.campaign.platforms.get(slug="reddit"),
        views=990,
        clicks=50,
        conversions=None,
        fetched_at=timezone.now(),
    )

    body = api.get(f"/api/v1/campaigns/{world.campaign.pk}", **bearer(world.client_key)).json()

    assert body["id"] == world.campaign.pk and body["platforms"] == ["reddit", "youtube"]
    total = body["totals"]["total"]
    assert total["posts"] == 2 and total["posts_verified"] == 1
    assert total["claimed"] == {"views": 1500, "clicks": 70, "conversions": 7}
    assert total["verified"] == {"views": 990, "clicks": 50, "conversions": 0}
    assert total["statuses"] == {"MATCHED": 1, "PENDING": 1}
    assert [p["platform"] for p in body["totals"]["by_platform"]] == ["reddit"]
    by_affiliate = {row["affiliate_id"]: row for row in body["totals"]["by_affiliate"]}
    assert by_affiliate[world.owner.pk]["verified"]["views"] == 990
    assert by_affiliate[world.other.pk]["claimed"]["views"] == 500


def test_campaign_reports_lists_every_claim_with_filters(api: APIClient, world: World) -> None:
    a = submit(api, world, "a")
    b = submit(api, world, "b", key=world.other_key)
    ReconciliationLog.objects.filter(report_id=a["report_id"]).update(status="AFFILIATE_OVERCLAIMED")
    url = f"/api/v1/campaigns/{world.campaign.pk}/reports/"
    key = bearer(world.client_key)

    rows = api.get(url, **key).json()["results"]
    assert [r["report_id"] for r in rows] == [b["report_id"], a["report_id"]]
    assert rows[1]["affiliate_id"] == world.owner.pk and rows[1]["status"] == "AFFILIATE_OVERCLAIMED"
    only = api.get(url, {"status": "AFFILIATE_OVERCLAIMED"}, **key).json()["results"]
    assert [r["report_id"] for r in only] == [a["report_id"]]
    mine = api.get(url, {"affiliate_id": world.other.pk}, **key).json()["results"]
    assert [r["report_id"] for r in mine] == [b["report_id"]]
    assert api.get(url, {"platform": "youtube"}, **key).json()["results"] == []
    assert api.get(url, {"status": "nope"}, **key).status_code == 400


def test_another_clients_campaign_is_404_everywhere(api: APIClient, world: World) -> None:
    key = bearer(world.other_client_key)
    assert api.get(f"/api/v1/campaigns/{world.campaign.pk}", **key).status_code == 404
    assert api.get(f"/api/v1/campaigns/{world.campaign.pk}/reports/", **key).status_code == 404
    assert api.get("/api/v1/campaigns/999999", **bearer(world.client_key)).status_code == 404


# --- state: a report being retried is told apart from a final "could not verify" ----------------------


@pytest.mark.parametrize(
    ("log", "state"),
    [
        ({}, "pending"),
        ({"status": "MISSING_PLATFORM_DATA", "missing_reason": "timeout", "terminal": False}, "retrying"),
        ({"status": "INCOMPLETE_PLATFORM_DATA", "terminal": False}, "retrying"),
        ({"status": "AFFILIATE_OVERCLAIMED", "discrepancy_level": "HIGH", "terminal": False}, "rechecking"),
        ({"status": "MATCHED", "terminal": False}, "rechecking"),
        ({"status": "MISSING_PLATFORM_DATA", "terminal": True, "next_attempt_at": None}, "final"),
        ({"status": "MATCHED", "terminal": True, "next_attempt_at": None}, "final"),
    ],
)
def test_every_report_representation_says_its_state(
    api: APIClient, world: World, log: dict[str, Any], state: str
) -> None:
    created = submit(api, world, 1)
    assert created["state"] == "pending"
    report_id = created["report_id"]
    ReconciliationLog.objects.filter(report_id=report_id).update(**log)

    detail = api.get(f"/api/v1/reports/{report_id}", **bearer(world.owner_key)).json()
    assert detail["state"] == state
    assert (detail["deferral_count"], detail["last_deferred_at"]) == (0, None)
    listed = api.get(LIST, **bearer(world.owner_key)).json()["results"][0]["latest_report"]
    assert listed["state"] == state
    history = api.get(f"/api/v1/submissions/{created['post_id']}/metrics", **bearer(world.owner_key)).json()
    assert history["claims"][-1]["state"] == state
    campaign = api.get(f"/api/v1/campaigns/{world.campaign.pk}/reports/", **bearer(world.client_key)).json()
    assert campaign["results"][0]["state"] == state


def test_the_openapi_document_describes_each_state() -> None:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    for name in ("ReportDetailOutput", "LatestReportOutput", "CampaignReportOutput", "SubmissionCreatedOutput"):
        field = schema["components"]["schemas"][name]["properties"]["state"]
        text = str(field)
        for state in ("pending", "retrying", "rechecking", "final"):
            assert state in text, (name, state)
        assert "provisional" in text, name

"""POST /api/v1/submissions/: what is saved, what is refused (400/409/413) and what is dispatched."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from alerts.models import Alert
from reconciliation.models import Affiliate, AffiliateReport, Campaign, Post, ReconciliationLog
from reconciliation.services import dispatch, submissions
from tests.api.conftest import World, bearer, submission

pytestmark = pytest.mark.django_db

URL = "/api/v1/submissions/"


def post(api: APIClient, world: World, body: Any, key: str | None = None, **extra: Any) -> Any:
    return api.post(URL, body, format="json", **bearer(key or world.owner_key), **extra)


def fields_of(response: Any) -> dict[str, list[str]]:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    return error["fields"]


# --- 201 ------------------------------------------------------------------------------------------


def test_created_submission_is_saved_pending_and_due_now(api: APIClient, world: World) -> None:
    before = timezone.now()
    response = post(api, world, submission(world.campaign, title="My post", evidence={"note": "dashboard"}))

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"report_id", "post_id", "status", "state", "status_url", "suspicion_flags"}
    assert body["state"] == "pending"
    assert body["status"] == "PENDING"
    assert body["status_url"] == f"http://testserver/api/v1/reports/{body['report_id']}"
    post_row = Post.objects.get(pk=body["post_id"])
    assert (post_row.affiliate, post_row.campaign, post_row.platform.slug) == (world.owner, world.campaign, "reddit")
    # Normalised: no subreddit, no slug, no tracking parameters.
    assert post_row.url == "https://reddit.com/comments/p1"
    assert post_row.platform_post_id == "p1"
    assert post_row.title == "My post"
    report = AffiliateReport.objects.get(pk=body["report_id"])
    assert (report.claimed_views, report.claimed_clicks, report.claimed_conversions) == (1000, 50, 5)
    assert report.evidence == {"note": "dashboard"}
    assert report.submission_method == "API"
    assert report.request_id == response["X-Request-ID"]
    log = ReconciliationLog.objects.get(report=report)
    assert log.status == "PENDING"
    assert log.next_attempt_at is not None and before <= log.next_attempt_at <= timezone.now()
    assert log.dispatched_at is not None  # marked in the submission's own transaction; the message goes on commit
    assert Affiliate.objects.get(pk=world.owner.pk).total_submissions == 1


def test_the_list_and_the_report_give_one_time_for_a_first_claim(api: APIClient, world: World) -> None:
    created = post(api, world, submission(world.campaign)).json()

    listed = api.get(URL, **bearer(world.owner_key)).json()["results"]
    report = api.get(f"/api/v1/reports/{created['report_id']}", **bearer(world.owner_key)).json()
    [item] = [row for row in listed if row["post_id"] == created["post_id"]]
    assert item["submitted_at"] == item["latest_report"]["submitted_at"] == report["submitted_at"]


@pytest.mark.parametrize(
    ("platform", "url", "post_id"),
    [
        ("reddit", "https://redd.it/abc12", "abc12"),
        ("youtube", "https://youtu.be/dQw4w9WgXcQ?si=tracking", "dQw4w9WgXcQ"),
        ("youtube", "https://www.youtube.com/shorts/dQw4w9WgXcQ", "dQw4w9WgXcQ"),
    ],
)
def test_platform_and_post_id_come_from_the_url(
    api: APIClient, world: World, platform: str, url: str, post_id: str
) -> None:
    response = post(api, world, submission(world.campaign, platform=platform, post_url=url))
    assert response.status_code == 201, response.content
    assert Post.objects.get(pk=response.json()["post_id"]).platform_post_id == post_id


#: Statements one submission may send, the after-commit one included: the key with its affiliate; the
#: campaign, its platform and the post's claimants; the transaction (begin, one statement writing the post,
#: the claim, its outbox row and the affiliate's counter, commit); the outbox row's dispatched_at once sent.
SUBMISSION_STATEMENTS_MAX = 6


def test_a_submission_sends_at_most_six_statements(
    api: APIClient, world: World, django_capture_on_commit_callbacks: Any
) -> None:
    post(api, world, submission(world.campaign, 0))  # the first request of a process builds what it keeps
    with mock.patch.object(dispatch, "send_reconcile", return_value=True):
        with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=True):
            response = post(api, world, submission(world.campaign, 1))

    assert response.status_code == 201
    statements = [q["sql"][:100] for q in queries.captured_queries]
    assert len(statements) <= SUBMISSION_STATEMENTS_MAX, "\n".join(statements)
    assert ReconciliationLog.objects.get(report_id=response.json()["report_id"]).dispatched_at is not None


def test_zero_and_maximum_claims_are_accepted(api: APIClient, world: World) -> None:
    body = submission(world.campaign, claimed_views=10**12, claimed_clicks=0, claimed_conversions=0)
    assert post(api, world, body).status_code == 201


def test_dispatch_happens_after_commit_on_the_default_queue(
    api: APIClient, world: World, django_capture_on_commit_callbacks: Any
) -> None:
    with mock.patch.object(dispatch, "send_reconcile", return_value=True) as send:
        with django_capture_on_commit_callbacks(execute=True):
            response = post(api, world, submission(world.campaign))
    report_id = response.json()["report_id"]
    send.assert_called_once_with(report_id, priority=False, request_id=response["X-Request-ID"])
    assert ReconciliationLog.objects.get(report_id=report_id).dispatched_at is not None


def test_low_trust_affiliate_goes_to_the_priority_queue(
    api: APIClient, world: World, django_capture_on_commit_callbacks: Any
) -> None:
    Affiliate.objects.filter(pk=world.owner.pk).update(trust_score="0.3000")
    with mock.patch.object(dispatch, "send_reconcile", return_value=True) as send:
        with django_capture_on_commit_callbacks(execute=True):
            post(api, world, submission(world.campaign))
    assert send.call_args.kwargs["priority"] is True


def test_broker_refusal_leaves_the_report_due_for_the_sweeper(
    api: APIClient, world: World, django_capture_on_commit_callbacks: Any
) -> None:
    with mock.patch.object(dispatch, "send_reconcile", return_value=False):
        with django_capture_on_commit_callbacks(execute=True):
            response = post(api, world, submission(world.campaign))
    assert response.status_code == 201
    log = ReconciliationLog.objects.get(report_id=response.json()["report_id"])
    assert log.next_attempt_at is not None and log.next_attempt_at <= timezone.now()
    assert log.dispatched_at is None and not log.terminal


# --- suspicion flags ------------------------------------------------------------------------------


def test_flags_are_returned_and_stored(api: APIClient, world: World) -> None:
    body = submission(world.campaign, claimed_views=60000, claimed_clicks=600, claimed_conversions=6)
    response = post(api, world, body)
    flags = response.json()["suspicion_flags"]
    assert [f["code"] for f in flags] == ["MISSING_EVIDENCE"]
    assert flags[0]["severity"] == "LOW"
    assert AffiliateReport.objects.get(pk=response.json()["report_id"]).suspicion_flags == flags
    assert not Alert.objects.exists()  # LOW flags raise no alert


def test_same_post_claimed_by_another_affiliate_is_a_duplicate_claim_with_an_alert(
    api: APIClient, world: World, django_capture_on_commit_callbacks: Any
) -> None:
    assert post(api, world, submission(world.campaign, "shared")).status_code == 201
    with mock.patch.object(dispatch, "send_reconcile", return_value=True) as send:
        with django_capture_on_commit_callbacks(execute=True):
            response = post(api, world, submission(world.campaign, "shared"), key=world.other_key)

    assert response.status_code == 201
    assert [f["code"] for f in response.json()["suspicion_flags"]] == ["DUPLICATE_CLAIM"]
    alert = Alert.objects.get(report_id=response.json()["report_id"])
    assert (alert.alert_type, alert.category, alert.severity) == ("SUSPICIOUS_CLAIM", "FRAUD", "HIGH")
    assert alert.affiliate_id == world.other.pk and alert.platform is not None and alert.platform.slug == "reddit"
    assert alert.threshold_breached["flags"][0]["code"] == "DUPLICATE_CLAIM"
    assert send.call_args.kwargs["priority"] is True  # a HIGH flag goes to the priority queue


def test_funnel_inversion_is_high(api: APIClient, world: World) -> None:
    response = post(api, world, submission(world.campaign, claimed_views=10, claimed_clicks=50))
    assert "FUNNEL_INVERSION" in [f["code"] for f in response.json()["suspicion_flags"]]
    assert Alert.objects.filter(alert_type="SUSPICIOUS_CLAIM").count() == 1


# --- 409 ------------------------------------------------------------------------------------------


def test_same_post_again_is_409_naming_the_post_and_the_update_endpoint(api: APIClient, world: World) -> None:
    first = post(api, world, submission(world.campaign, "again"))
    # Another spelling of the same post: normalisation makes it the same.
    response = post(api, world, submission(world.campaign, post_url="redd.it/pagain"))

    assert response.status_code == 409
    error = response.json()["error"]
    post_id = first.json()["post_id"]
    assert error["code"] == "duplicate_post"
    assert error["existing_post_id"] == post_id
    assert error["update_url"] == f"http://testserver/api/v1/submissions/{post_id}/metrics"
    assert f"PUT {error['update_url']}" in error["message"]
    assert AffiliateReport.objects.count() == 1
    assert Affiliate.objects.get(pk=world.owner.pk).total_submissions == 1


def test_a_twin_that_wins_the_race_makes_the_loser_a_409(api: APIClient, world: World) -> None:
    first = post(api, world, submission(world.campaign, "race"))
    # The loser's read happened before the winner's insert: it saw no claimant, then hit the constraint.
    with mock.patch.object(submissions, "_claimants", return_value=[]):
        response = post(api, world, submission(world.campaign, "race"))
    assert response.status_code == 409
    assert response.json()["error"]["existing_post_id"] == first.json()["post_id"]
    assert AffiliateReport.objects.count() == 1
    assert Affiliate.objects.get(pk=world.owner.pk).total_submissions == 1


def test_same_post_in_another_campaign_is_a_new_post(api: APIClient, world: World) -> None:
    second = Campaign.objects.create(client=world.client, name="second", start_date=world.campaign.start_date)
    second.platforms.set(world.campaign.platforms.all())
    assert post(api, world, submission(world.campaign, "x1")).status_code == 201
    assert post(api, world, submission(second, "x1")).status_code == 201


# --- 400 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"post_url": "https://example.com/r/x/comments/abc/"}, "post_url"),
        ({"post_url": "https://www.reddit.com/r/python/"}, "post_url"),
        ({"post_url": "ftp://reddit.com/comments/abc"}, "post_url"),
        ({"post_url": "javascript:alert(1)"}, "post_url"),
        ({"post_url": "https://reddit.com/comments/abc\u0000"}, "post_url"),
        ({"post_url": "https://reddit.com/comments/" + "a" * 2100}, "post_url"),
        ({"post_url": 12}, "post_url"),
        ({"platform": "youtube"}, "platform"),  # a reddit URL
        ({"platform": "myspace"}, "platform"),
        ({"platform": "tiktok", "post_url": "https://www.tiktok.com/@me/video/123"}, "platform"),  # not in campaign
        ({"campaign_id": 10**9}, "campaign_id"),
        ({"campaign_id": "1"}, "campaign_id"),
        ({"campaign_id": 0}, "campaign_id"),
        ({"claimed_views": -1}, "claimed_views"),
        ({"claimed_clicks": 1.5}, "claimed_clicks"),
        ({"claimed_clicks": 2.5e-1}, "claimed_clicks"),
        ({"claimed_conversions": True}, "claimed_conversions"),
        ({"claimed_views": "100"}, "claimed_views"),
        ({"claimed_views": None}, "claimed_views"),
        ({"claimed_views": 10**12 + 1}, "claimed_views"),
        ({"claimed_views": 10**30}, "claimed_views"),
        ({"title": "t" * 301}, "title"),
        ({"title": "a\u0000b"}, "title"),
        ({"title": "line\nbreak"}, "title"),
        ({"evidence": []}, "evidence"),
        ({"evidence": "screenshot"}, "evidence"),
        ({"evidence": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}}, "evidence"),
        ({"evidence": {"blob": "x" * 3000}}, "evidence"),
        ({"evidence": {f"k{i}": "y" * 2000 for i in range(10)}}, "evidence"),
        ({"evidence": {"screenshot_url": "javascript:alert(1)"}}, "evidence"),
        ({"evidence": {"url": "ftp://files.example.com/x.png"}}, "evidence"),
        ({"evidence": {"note": "nul \u0000 byte"}}, "evidence"),
        ({"evidence": {"k\u0000": 1}}, "evidence"),
    ],
)
def test_invalid_field_is_400_naming_the_field(api: APIClient, world: World, overrides: dict, field: str) -> None:
    response = post(api, world, submission(world.campaign, **overrides))
    assert field in fields_of(response), response.json()
    assert not AffiliateReport.objects.exists()


@pytest.mark.parametrize(
    ("field", "raw"),
    [("title", '"\\ud800"'), ("evidence", '{"note": "\\udfff"}'), ("evidence", '{"n": "\\u0000"}')],
)
def test_unpaired_surrogates_and_nul_escapes_are_400_not_500(
    api: APIClient, world: World, field: str, raw: str
) -> None:
    body = json.dumps(submission(world.campaign))[:-1] + f', "{field}": {raw}}}'
    response = api.generic("POST", URL, body, content_type="application/json", **bearer(world.owner_key))
    assert field in fields_of(response)


@pytest.mark.parametrize("missing", ["campaign_id", "platform", "post_url", "claimed_views", "claimed_clicks"])
def test_missing_required_field_is_400(api: APIClient, world: World, missing: str) -> None:
    body = submission(world.campaign)
    del body[missing]
    assert missing in fields_of(post(api, world, body))


@pytest.mark.parametrize(
    ("status", "start", "end"),
    [
        (Campaign.Status.PAUSED, -1, None),
        (Campaign.Status.ENDED, -1, None),
        (Campaign.Status.ACTIVE, 1, None),  # not started yet
        (Campaign.Status.ACTIVE, -10, -1),  # ended yesterday
    ],
)
def test_campaign_not_open_today_is_400(api: APIClient, world: World, status: str, start: int, end: int | None) -> None:
    today = timezone.localdate()
    Campaign.objects.filter(pk=world.campaign.pk).update(
        status=status,
        start_date=today + dt.timedelta(days=start),
        end_date=today + dt.timedelta(days=end) if end is not None else None,
    )
    assert "campaign_id" in fields_of(post(api, world, submission(world.campaign)))


def test_campaign_ending_today_is_still_open(api: APIClient, world: World) -> None:
    Campaign.objects.filter(pk=world.campaign.pk).update(end_date=timezone.localdate())
    assert post(api, world, submission(world.campaign)).status_code == 201


def test_inactive_platform_is_400(api: APIClient, world: World) -> None:
    world.campaign.platforms.filter(slug="reddit").update(is_active=False)
    assert "platform" in fields_of(post(api, world, submission(world.campaign)))


@pytest.mark.parametrize(
    ("content_type", "data", "code"),
    [
        ("application/x-www-form-urlencoded", "campaign_id=1&platform=reddit", "not_json"),
        ("text/plain", "hello", "not_json"),
        ("multipart/form-data; boundary=x", "--x--", "not_json"),
        ("application/json", "{not json", "parse_error"),
        ("application/json", "[1, 2]", "validation_error"),
        ("application/json", '{"claimed_views": NaN}', "parse_error"),
        ("application/json", "[" * 50_000 + "]" * 50_000, "payload_too_large"),
        ("application/json", "[" * 30_000 + "]" * 30_000, "parse_error"),
        ("application/json; charset=bz2_codec", "{}", "parse_error"),
        ("application/json", b"\xff\xfe\x00", "parse_error"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_rejected(
    api: APIClient, world: World, content_type: str, data: Any, code: str
) -> None:
    response = api.generic("POST", URL, data, content_type=content_type, **bearer(world.owner_key))
    assert response.status_code == (413 if code == "payload_too_large" else 400), response.content
    assert response.json()["error"]["code"] == code
    assert response["Content-Type"] == "application/json"


def test_body_over_64_kb_is_413(api: APIClient, world: World) -> None:
    body = submission(world.campaign, title="t", evidence={"pad": "p" * 70_000})
    response = api.generic("POST", URL, json.dumps(body), content_type="application/json", **bearer(world.owner_key))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_declared_length_over_the_cap_is_refused_before_reading(api: APIClient, world: World) -> None:
    response = api.generic(
        "POST", URL, "{}", content_type="application/json", CONTENT_LENGTH=str(10**9), **bearer(world.owner_key)
    )
    assert response.status_code == 413


def test_html_in_evidence_and_title_is_stored_as_data_and_answered_as_json(api: APIClient, world: World) -> None:
    script = "<script>alert(1)</script>"
    response = post(api, world, submission(world.campaign, title=script, evidence={"note": script}))
    detail = api.get(response.json()["status_url"], **bearer(world.owner_key))
    assert detail["Content-Type"] == "application/json"
    assert detail.json()["evidence"] == {"note": script}


def test_accept_html_still_answers_json(api: APIClient, world: World) -> None:
    response = api.get(URL, HTTP_ACCEPT="text/html", **bearer(world.owner_key))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"

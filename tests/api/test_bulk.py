"""POST /api/v1/submissions/bulk: CSV and JSON-lines imports, row errors by line, idempotency, limits, access."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, cast
from unittest import mock

import pytest
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from alerts.models import Alert
from reconciliation.models import AffiliateReport, Post, ReconciliationLog, ReconciliationStatus
from reconciliation.services import dispatch
from tests import factories
from tests.api.conftest import World, bearer

pytestmark = pytest.mark.django_db

URL = "/api/v1/submissions/bulk"
EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
HEADER = "campaign_id,platform,post_url,claimed_views,claimed_clicks,claimed_conversions"


def send(api: APIClient, key: str, body: str | bytes, content_type: str = "text/csv", query: str = "") -> Any:
    data = body.encode() if isinstance(body, str) else body
    # The test client sends bytes as they are (its stub says str): some of these bodies are not UTF-8.
    return api.generic("POST", URL + query, cast(str, data), content_type=content_type, **bearer(key))


def reddit(n: int | str) -> str:
    return f"https://www.reddit.com/r/python/comments/b{n}/title/"


def csv_file(world: World, rows: list[str]) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


def bulk_reports(affiliate: Any) -> Any:
    return AffiliateReport.objects.filter(post__affiliate=affiliate)


def test_good_and_bad_rows_each_bad_line_reported_and_exactly_the_good_claims_created(
    api: APIClient, world: World
) -> None:
    c = world.campaign.pk
    body = csv_file(
        world,
        [
            f"{c},reddit,{reddit(1)},1000,50,5",  # line 2: good
            f"{c},reddit,{reddit(2)},-1,50,5",  # line 3: negative views
            f"{c},reddit,https://example.com/not-a-post,1000,50,5",  # line 4: not a post URL
            f"{c},x,https://x.com/someone/status/1234567890,1000,50,5",  # line 5: campaign not on x
            f"{c},youtube,https://www.youtube.com/watch?v=dQw4w9WgXcQ,2000,60,6",  # line 6: good
            f"{c},reddit,{reddit(3)},lots,50,5",  # line 7: not an integer
            f"999999,reddit,{reddit(4)},1000,50,5",  # line 8: no such campaign
        ],
    )
    before = timezone.now()
    response = send(api, world.owner_key, body)
    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["rows"] == 7 and answer["created"] == 2 and answer["rejected_count"] == 5
    rejected = {row["line"]: set(row["fields"]) for row in answer["rejected"]}
    assert rejected == {
        3: {"claimed_views"},
        4: {"post_url"},
        5: {"platform"},
        7: {"claimed_views"},
        8: {"campaign_id"},
    }
    reports = list(bulk_reports(world.owner).select_related("post__platform", "log"))
    assert sorted(r.post.platform_post_id for r in reports) == ["b1", "dQw4w9WgXcQ"]
    assert sorted(r.pk for r in reports) == sorted(answer["report_ids"])
    for report in reports:
        assert report.submission_method == AffiliateReport.Method.BULK
        assert report.log.status == ReconciliationStatus.PENDING
        assert before <= report.log.next_attempt_at <= timezone.now()  # due now: the outbox
    world.owner.refresh_from_db()
    assert world.owner.total_submissions == 2


def test_small_import_is_dispatched_after_commit(
    api: APIClient, world: World, django_capture_on_commit_callbacks: Any
) -> None:
    c = world.campaign.pk
    body = csv_file(world, [f"{c},reddit,{reddit(1)},1000,50,5", f"{c},reddit,{reddit(2)},1000,50,5"])
    with mock.patch.object(dispatch, "send_reconcile", return_value=True) as sent:
        with django_capture_on_commit_callbacks(execute=True):
            response = send(api, world.owner_key, body)
    assert response.json()["dispatched"] is True
    assert sorted(call.args[0] for call in sent.call_args_list) == sorted(response.json()["report_ids"])
    assert (
        ReconciliationLog.objects.filter(report__post__affiliate=world.owner, dispatched_at__isnull=False).count() == 2
    )


def test_importing_the_same_file_twice_creates_nothing_new(api: APIClient, world: World) -> None:
    c = world.campaign.pk
    body = csv_file(world, [f"{c},reddit,{reddit(1)},1000,50,5", f"{c},reddit,{reddit(2)},3000,90,9"])
    first = send(api, world.owner_key, body).json()
    counts = (Post.objects.count(), AffiliateReport.objects.count(), ReconciliationLog.objects.count())
    second = send(api, world.owner_key, body).json()
    assert first["created"] == 2
    assert second["created"] == 0 and second["already_imported"] == 2 and second["rejected"] == []
    assert (Post.objects.count(), AffiliateReport.objects.count(), ReconciliationLog.objects.count()) == counts


def test_new_numbers_for_a_known_post_are_a_new_claim_on_it(api: APIClient, world: World) -> None:
    c = world.campaign.pk
    send(api, world.owner_key, csv_file(world, [f"{c},reddit,{reddit(1)},1000,50,5"]))
    answer = send(api, world.owner_key, csv_file(world, [f"{c},reddit,{reddit(1)},1500,60,6"])).json()
    assert answer["created"] == 1
    assert Post.objects.filter(affiliate=world.owner).count() == 1
    assert bulk_reports(world.owner).count() == 2


def test_the_example_files_import_alike_as_csv_and_json_lines(api: APIClient, world: World) -> None:
    campaign_id = world.campaign.pk
    rows = list(csv.DictReader(io.StringIO((EXAMPLES / "claims.csv").read_text())))
    for row in rows:
        row["campaign_id"] = str(campaign_id)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    answer = send(api, world.owner_key, out.getvalue()).json()
    assert answer["rejected"] == [] and answer["created"] == len(rows) == 3

    lines = [json.loads(line) for line in (EXAMPLES / "claims.jsonl").read_text().splitlines() if line.strip()]
    body = "\n".join(json.dumps({**line, "campaign_id": campaign_id}) for line in lines)
    again = send(api, world.owner_key, body, content_type="application/x-ndjson").json()
    # The same claims written the other way: recognised, nothing new.
    assert again["rejected"] == [] and again["created"] == 0 and again["already_imported"] == 3
    evidence = bulk_reports(world.owner).get(post__platform_post_id="abc123").evidence
    assert evidence == {"screenshot_url": "https://img.example.com/s/1.png"}


def test_json_lines_rows_are_checked_like_single_submissions(api: APIClient, world: World) -> None:
    c = world.campaign.pk
    body = "\n".join(
        [
            json.dumps(
                {
                    "campaign_id": c,
                    "post_url": reddit(1),
                    "claimed_views": 10,
                    "claimed_clicks": 1,
                    "claimed_conversions": 0,
                }
            ),
            json.dumps(
                {
                    "campaign_id": c,
                    "post_url": reddit(2),
                    "claimed_views": "10",
                    "claimed_clicks": 1,
                    "claimed_conversions": 0,
                }
            ),
            "{not json",
            "",
            json.dumps(
                {
                    "campaign_id": c,
                    "post_url": reddit(3),
                    "claimed_views": 1,
                    "claimed_clicks": 1,
                    "claimed_conversions": 1,
                    "colour": "red",
                }
            ),
        ]
    )
    answer = send(api, world.owner_key, body, content_type="application/jsonl").json()
    assert answer["created"] == 1
    assert {row["line"]: set(row["fields"]) for row in answer["rejected"]} == {
        2: {"claimed_views"},
        3: {"non_field_errors"},
        5: {"colour"},
    }


def test_json_lines_are_numbered_as_an_editor_numbers_them(api: APIClient, world: World) -> None:
    c = world.campaign.pk
    good = {"campaign_id": c, "post_url": reddit(1), "claimed_views": 10, "claimed_clicks": 1, "claimed_conversions": 0}
    # U+2028 is allowed raw inside a JSON string; CRLF line ends are fine too.
    first = json.dumps({**good, "title": "a\u2028b"}, ensure_ascii=False)
    body = first + "\r\n" + json.dumps({**good, "claimed_views": -1}) + "\r\n"
    answer = send(api, world.owner_key, body, content_type="application/x-ndjson").json()
    assert answer["created"] == 1
    assert [(r["line"], list(r["fields"])) for r in answer["rejected"]] == [(2, ["claimed_views"])]


def test_dry_run_answers_and_writes_nothing(api: APIClient, world: World) -> None:
    c = world.campaign.pk
    body = csv_file(world, [f"{c},reddit,{reddit(1)},1000,50,5", f"{c},reddit,{reddit(2)},-5,50,5"])
    counts = (Post.objects.count(), AffiliateReport.objects.count(), ReconciliationLog.objects.count())
    answer = send(api, world.owner_key, body, query="?dry_run=true").json()
    assert answer["dry_run"] is True and answer["created"] == 1 and [r["line"] for r in answer["rejected"]] == [3]
    assert (Post.objects.count(), AffiliateReport.objects.count(), ReconciliationLog.objects.count()) == counts


def test_a_file_over_the_byte_limit_is_a_413(api: APIClient, world: World) -> None:
    body = csv_file(world, [f"{world.campaign.pk},reddit,{reddit(n)},1000,50,5" for n in range(20)])
    with override_settings(BULK_IMPORT_MAX_BYTES=200):
        response = send(api, world.owner_key, body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert "BULK_IMPORT_MAX_BYTES" in response.json()["error"]["message"]
    assert not bulk_reports(world.owner).exists()


def test_a_file_over_the_row_limit_is_a_400_naming_the_limit(api: APIClient, world: World) -> None:
    body = csv_file(world, [f"{world.campaign.pk},reddit,{reddit(n)},1000,50,5" for n in range(4)])
    with override_settings(BULK_IMPORT_MAX_ROWS=3):
        response = send(api, world.owner_key, body)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "The file has 4 rows; at most 3 rows may be imported at once."
    assert not bulk_reports(world.owner).exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b"campaign_id,post_url\n1,x\n",
            "Missing columns: claimed_views, claimed_clicks, claimed_conversions.",
        ),
        (f"{HEADER},colour\n".encode(), "Unknown columns: colour."),
        (f'{HEADER}\n1,reddit,"unclosed,1,2,3\n'.encode(), "Malformed CSV"),
        (HEADER.encode("utf-16"), "not UTF-8"),
        (f"{HEADER}\n1,reddit,caf\xe9,1,2,3\n".encode("latin-1"), "not UTF-8"),
        (b"", "empty"),
    ],
)
def test_an_unreadable_file_is_a_clear_400(api: APIClient, world: World, body: bytes, message: str) -> None:
    response = send(api, world.owner_key, body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_file"
    assert message in response.json()["error"]["message"]


def test_another_content_type_is_a_415(api: APIClient, world: World) -> None:
    response = send(api, world.owner_key, "{}", content_type="application/json")
    assert response.status_code == 415
    assert "text/csv" in response.json()["error"]["message"]


def test_staff_import_on_behalf_of_an_affiliate_by_parameter_or_column(api: APIClient, world: World) -> None:
    c = world.campaign.pk
    by_parameter = send(
        api,
        world.staff_key,
        csv_file(world, [f"{c},reddit,{reddit(1)},1000,50,5"]),
        query=f"?affiliate_id={world.owner.pk}",
    )
    assert by_parameter.json()["created"] == 1
    body = (
        f"{HEADER},affiliate_id\n{c},reddit,{reddit(2)},1000,50,5,{world.other.pk}\n{c},reddit,{reddit(3)},1000,50,5,\n"
    )
    by_column = send(api, world.staff_key, body).json()
    assert by_column["created"] == 1
    assert by_column["rejected"] == [{"line": 3, "fields": {"affiliate_id": [mock.ANY]}}]
    assert bulk_reports(world.owner).count() == 1 and bulk_reports(world.other).count() == 1
    unknown = send(api, world.staff_key, csv_file(world, []), query="?affiliate_id=987654321")
    assert unknown.status_code == 404
    malformed = send(api, world.staff_key, csv_file(world, []), query="?affiliate_id=x1")
    assert malformed.status_code == 400 and "affiliate_id" in malformed.json()["error"]["fields"]


def test_an_affiliate_cannot_import_for_another(api: APIClient, world: World) -> None:
    c = world.campaign.pk
    body = f"{HEADER},affiliate_id\n{c},reddit,{reddit(2)},1000,50,5,{world.other.pk}\n"
    answer = send(api, world.owner_key, body).json()
    assert answer["created"] == 0 and [r["line"] for r in answer["rejected"]] == [2]
    by_parameter = send(api, world.owner_key, csv_file(world, []), query=f"?affiliate_id={world.other.pk}")
    assert by_parameter.status_code == 403
    assert not bulk_reports(world.other).exists() and not bulk_reports(world.owner).exists()


def test_a_row_claiming_another_affiliates_post_is_flagged_and_alerted(api: APIClient, world: World) -> None:
    c = world.campaign.pk
    send(api, world.other_key, csv_file(world, [f"{c},reddit,{reddit(1)},1000,50,5"]))
    send(api, world.owner_key, csv_file(world, [f"{c},reddit,{reddit(1)},1000,50,5"]))
    report = bulk_reports(world.owner).get()
    assert "DUPLICATE_CLAIM" in {flag["code"] for flag in report.suspicion_flags}
    assert Alert.objects.filter(report_id=report.pk, alert_type=Alert.Type.SUSPICIOUS_CLAIM).count() == 1


@pytest.mark.parametrize(
    ("actor", "expected"),
    [("owner", 200), ("other", 200), ("client", 403), ("other_client", 403), ("staff", 200), ("anonymous", 401)],
)
def test_access_matrix(api: APIClient, world: World, actor: str, expected: int) -> None:
    keys = {
        "owner": world.owner_key,
        "other": world.other_key,
        "client": world.client_key,
        "other_client": world.other_client_key,
        "staff": world.staff_key,
    }
    query = f"?affiliate_id={world.owner.pk}" if actor == "staff" else ""
    body = csv_file(world, [f"{world.campaign.pk},reddit,{reddit(actor)},1000,50,5"]).encode()
    headers = bearer(keys[actor]) if actor in keys else {}
    response = api.generic("POST", URL + query, cast(str, body), content_type="text/csv", **headers)
    assert response.status_code == expected
    if expected == 200:
        assert response.json()["created"] == 1


def test_a_closed_campaign_refuses_its_rows(api: APIClient, world: World) -> None:
    paused = factories.campaign(platforms=("reddit",), status="PAUSED")
    body = csv_file(world, [f"{paused.pk},reddit,{reddit(1)},1000,50,5"])
    answer = send(api, world.owner_key, body).json()
    assert answer["rejected"] == [
        {"line": 2, "fields": {"campaign_id": [f"campaign {paused.pk} is PAUSED, not ACTIVE"]}}
    ]

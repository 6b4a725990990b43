"""GET /api/v1/campaigns/{id}/statement: JSON and streamed CSV, access, period bounds, formula escaping."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from typing import Any, cast

import pytest
from django.http import StreamingHttpResponse
from django.utils import timezone

from reconciliation.api.statements import CLAIM_COLUMNS, MAX_PERIOD_DAYS, SUMMARY_COLUMNS
from tests import factories
from tests.api.conftest import World, bearer
from tests.reconciliation.test_statements import EXPECTED_ROWS, EXPECTED_TOTAL, build

pytestmark = pytest.mark.django_db


def url(campaign_id: int) -> str:
    return f"/api/v1/campaigns/{campaign_id}/statement"


def read_csv(response: Any) -> list[list[str]]:
    assert isinstance(response, StreamingHttpResponse)
    body = b"".join(cast(Iterator[bytes], response.streaming_content)).decode("utf-8")
    assert body.endswith("\r\n")
    return list(csv.reader(io.StringIO(body, newline="")))


def test_json_statement_equals_the_hand_computation(world: World, api: Any) -> None:
    fx = build(client=world.client)
    query = {"from": fx.day1.isoformat(), "to": timezone.localdate().isoformat()}
    response = api.get(url(fx.campaign.pk), query, **bearer(world.client_key))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["campaign_id"] == fx.campaign.pk
    assert body["period"]["start"].startswith(fx.day1.isoformat())
    names = {fx.alpha.pk: "alpha", fx.bravo.pk: "bravo"}
    rows = [
        {
            "affiliate": names[r["affiliate_id"]],
            **{k: r[k] for k in ("platform", "claims", "verified_claims", "claimed", "verified", "statuses")},
            "open_alerts": r["open_alerts"],
        }
        for r in body["rows"]
    ]
    assert rows == EXPECTED_ROWS
    assert [r["verification_rate"] for r in body["rows"]] == [0.6667, 0.0, 1.0]
    assert body["total"] == EXPECTED_TOTAL
    fx.alpha.refresh_from_db()
    assert body["rows"][0]["trust_at_period_end"] == float(fx.alpha.trust_score)
    assert [(d["date"], d["claims"]) for d in body["daily"]] == [(fx.day1.isoformat(), 3), (fx.day2.isoformat(), 2)]


def test_csv_summary_has_the_same_rows(world: World, api: Any) -> None:
    fx = build(client=world.client)
    response = api.get(url(fx.campaign.pk), {"format": "csv", "from": fx.day1.isoformat()}, **bearer(world.client_key))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="campaign-')
    header, *lines = read_csv(response)
    assert tuple(header) == SUMMARY_COLUMNS
    got = [dict(zip(header, line, strict=True)) for line in lines]
    assert [(g["affiliate_name"], g["platform"], g["claims"]) for g in got] == [
        ("Alpha", "reddit", "3"),
        ("Alpha", "youtube", "1"),
        ("Bravo", "reddit", "1"),
    ]
    assert [g["verified_views"] for g in got] == ["2100", "0", "1000"]
    assert got[0]["status_AFFILIATE_OVERCLAIMED"] == "1" and got[0]["open_alerts"] == "1"
    assert got[1]["verification_rate"] == "0.0"


FORMULAS = ['=HYPERLINK("http://evil.example/","click")', "+1", "-x", "@x", "\tTab", "\rCR"]


@pytest.mark.parametrize("detail", ["summary", "claims"])
def test_csv_escapes_formula_cells_and_round_trips(world: World, api: Any, detail: str) -> None:
    campaign = factories.campaign(client=world.client)
    names = [*FORMULAS, 'plain, "quoted"\nname', "Zoë"]
    for n, name in enumerate(names):
        affiliate = factories.affiliate(name=name)
        factories.report(post=factories.post(campaign=campaign, affiliate=affiliate), claimed_views=1000 + n)
    response = api.get(url(campaign.pk), {"format": "csv", "detail": detail}, **bearer(world.client_key))
    header, *lines = read_csv(response)
    assert tuple(header) == (CLAIM_COLUMNS if detail == "claims" else SUMMARY_COLUMNS)
    column = header.index("affiliate_name")
    written = sorted(line[column] for line in lines)
    expected = sorted([*("'" + f for f in FORMULAS), 'plain, "quoted"\nname', "Zoë"])
    assert written == expected
    # Numbers stay numbers (not prefixed), and no cell of any line starts a formula.
    views = header.index("claimed_views")
    assert sorted(int(line[views]) for line in lines) == [1000 + n for n in range(len(names))]
    for line in lines:
        for value in line:
            assert not value.startswith(("=", "+", "@", "\t", "\r")), line
            assert not value.startswith("-") or value.lstrip("-").replace(".", "").isdigit(), line


def test_csv_claim_lines(world: World, api: Any) -> None:
    fx = build(client=world.client)
    response = api.get(
        url(fx.campaign.pk),
        {"format": "csv", "detail": "claims", "from": fx.day1.isoformat()},
        **bearer(world.client_key),
    )
    header, *lines = read_csv(response)
    rows = {int(line[0]): dict(zip(header, line, strict=True)) for line in lines}
    assert len(rows) == 5
    recheck = rows[fx.reports["a_recheck"].pk]
    assert dt.datetime.fromisoformat(recheck["submitted_at"]) == fx.reports["a_recheck"].submitted_at
    assert (recheck["status"], recheck["verified"], recheck["claimed_views"], recheck["verified_views"]) == (
        "AFFILIATE_OVERCLAIMED",
        "true",
        "1000",
        "500",
    )
    missing = rows[fx.reports["a_missing"].pk]
    assert (missing["verified"], missing["verified_views"]) == ("false", "")
    assert missing["post_url"] == fx.reports["a_missing"].post.url


def test_csv_is_streamed(world: World, api: Any) -> None:
    campaign = factories.campaign(client=world.client)
    for _ in range(3):
        factories.report(post=factories.post(campaign=campaign))
    response = api.get(url(campaign.pk), {"format": "csv", "detail": "claims"}, **bearer(world.client_key))
    assert response.status_code == 200 and response.streaming
    assert isinstance(response, StreamingHttpResponse)
    assert len(read_csv(response)) == 4


def test_accept_text_csv_selects_the_csv_form(world: World, api: Any) -> None:
    response = api.get(url(world.campaign.pk), HTTP_ACCEPT="text/csv", **bearer(world.client_key))
    assert response.status_code == 200 and response.streaming
    assert read_csv(response) == [list(SUMMARY_COLUMNS)]


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_access_matrix(world: World, api: Any, fmt: str) -> None:
    def get(campaign_id: int, key: str | None) -> Any:
        return api.get(url(campaign_id), {"format": fmt}, **(bearer(key) if key else {}))

    assert get(world.campaign.pk, world.client_key).status_code == 200
    assert get(world.other_campaign.pk, world.staff_key).status_code == 200
    for response, status, code in [
        (get(world.other_campaign.pk, world.client_key), 404, "not_found"),  # another client's campaign
        (get(world.campaign.pk, world.owner_key), 403, "wrong_key_kind"),  # an affiliate key
        (get(world.campaign.pk, None), 401, "not_authenticated"),
        (get(999_999_999, world.staff_key), 404, "not_found"),
    ]:
        assert response.status_code == status
        # Errors are the JSON envelope, also when the CSV form was asked for.
        assert response["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] == code


def test_staff_session_reads_any_statement(world: World, api: Any, staff_user: Any) -> None:
    api.force_login(staff_user)
    assert api.get(url(world.other_campaign.pk)).status_code == 200


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"from": "2026-02-01", "to": "2026-01-31"}, "to"),
        ({"from": "2026-01-31T12:00:00Z", "to": "2026-01-31T11:59:59Z"}, "to"),
        ({"from": "2024-01-01", "to": "2025-12-31"}, "to"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-02-30"}, "to"),
        ({"from": "0001-01-01T00:00:00+05:00", "to": "0001-01-02"}, "from"),
        ({"format": "xml"}, "format"),
        ({"detail": "everything", "format": "csv"}, "detail"),
    ],
)
def test_bad_periods_and_options_are_400s_naming_the_field(world: World, api: Any, query: dict, field: str) -> None:
    response = api.get(url(world.campaign.pk), query, **bearer(world.client_key))
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error" and field in error["fields"], error


def test_default_period_longer_than_the_bound_is_a_400(world: World, api: Any) -> None:
    campaign = factories.campaign(
        client=world.client, start_date=timezone.localdate() - dt.timedelta(days=MAX_PERIOD_DAYS + 5)
    )
    response = api.get(url(campaign.pk), **bearer(world.client_key))
    assert response.status_code == 400
    assert "from" in response.json()["error"]["fields"]


def test_to_date_includes_its_whole_day_and_a_date_time_is_inclusive(world: World, api: Any) -> None:
    campaign = factories.campaign(client=world.client)
    day = timezone.localdate() - dt.timedelta(days=1)
    late = timezone.make_aware(dt.datetime.combine(day, dt.time(23, 59, 59, 999999)))
    factories.report(post=factories.post(campaign=campaign), submitted_at=late)

    def claims(**query: str) -> int:
        response = api.get(url(campaign.pk), query, **bearer(world.client_key))
        assert response.status_code == 200, response.content
        return response.json()["total"]["claims"]

    assert claims(**{"from": day.isoformat(), "to": day.isoformat()}) == 1
    assert claims(**{"from": day.isoformat(), "to": late.isoformat()}) == 1
    assert claims(**{"from": day.isoformat(), "to": (late - dt.timedelta(microseconds=1)).isoformat()}) == 0
    assert claims(**{"from": (late + dt.timedelta(microseconds=1)).isoformat()}) == 0


def test_statement_is_in_the_openapi_document_in_both_forms(client: Any) -> None:
    document = client.get("/api/schema/?format=json").json()
    operation = document["paths"]["/api/v1/campaigns/{campaign_id}/statement"]["get"]
    assert set(operation["responses"]["200"]["content"]) == {"application/json", "text/csv"}
    assert {p["name"] for p in operation["parameters"]} >= {"from", "to", "format", "detail"}
    assert set(operation["responses"]["400"]["content"]) == {"application/json"}

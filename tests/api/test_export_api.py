"""``GET /api/v1/affiliates/{id}/export``: staff only, a ZIP attachment, audited, in the OpenAPI document."""

from __future__ import annotations

import io
import json
import logging
import zipfile
from typing import Any

import pytest
from rest_framework.test import APIClient

from reconciliation.models import AffiliateAPIKey
from reconciliation.services import exports
from tests.api.conftest import World, bearer, submission

pytestmark = pytest.mark.django_db


def url(affiliate_id: int) -> str:
    return f"/api/v1/affiliates/{affiliate_id}/export"


def submit_as_owner(api: APIClient, world: World) -> dict[str, Any]:
    response = api.post(
        "/api/v1/submissions/",
        submission(world.campaign, "exp1"),
        format="json",
        HTTP_IDEMPOTENCY_KEY="owner-export-1",
        **bearer(world.owner_key),
    )
    assert response.status_code == 201, response.content
    return response.json()


def archive_of(response: Any) -> zipfile.ZipFile:
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive.testzip() is None
    return archive


def test_staff_key_downloads_the_archive(api: APIClient, world: World, caplog: pytest.LogCaptureFixture) -> None:
    created = submit_as_owner(api, world)
    api.post("/api/v1/submissions/", submission(world.campaign, "exp2"), format="json", **bearer(world.other_key))
    with caplog.at_level(logging.INFO, logger="app.audit"):
        response = api.get(url(world.owner.pk), **bearer(world.staff_key))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith(f'attachment; filename="affiliate-{world.owner.pk}-')
    assert response["Cache-Control"] == "no-store"
    archive = archive_of(response)
    manifest = json.loads(archive.read(exports.MANIFEST))
    assert manifest["affiliate_id"] == world.owner.pk
    claims = json.loads(archive.read("claims.json"))
    assert [c["id"] for c in claims] == [created["report_id"]]  # the other affiliate's claim is not there
    # The Idempotency-Key the owner sent is exported under its API key's prefix, never the key's id.
    (owner_key,) = AffiliateAPIKey.objects.filter(affiliate=world.owner)
    (idem,) = json.loads(archive.read("idempotency_keys.json"))
    assert (idem["key"], idem["api_key_prefix"]) == ("owner-export-1", owner_key.prefix)
    blob = b"".join(archive.read(name) for name in archive.namelist())
    for secret in (world.owner_key, owner_key.hashed_key, owner_key.pk):
        assert secret.encode() not in blob
    (record,) = [r for r in caplog.records if r.getMessage() == "Business event: affiliate_data_exported"]
    staff_prefix = world.staff_key.split(".")[0]
    assert record.actor == f"staff:{staff_prefix}" and record.affiliate_id == world.owner.pk  # type: ignore[attr-defined]
    assert record.counts["claims"] == 1  # type: ignore[attr-defined]


def test_the_zip_is_not_gzipped_again_and_keeps_its_length(api: APIClient, world: World) -> None:
    response: Any = api.get(url(world.owner.pk), HTTP_ACCEPT_ENCODING="gzip, deflate", **bearer(world.staff_key))
    assert response.status_code == 200 and not response.has_header("Content-Encoding")
    body = b"".join(response.streaming_content)
    assert int(response["Content-Length"]) == len(body)
    assert zipfile.ZipFile(io.BytesIO(body)).testzip() is None
    # JSON answers are still compressed.
    listed = api.get("/api/v1/campaigns/", HTTP_ACCEPT_ENCODING="gzip", **bearer(world.staff_key))
    assert listed["Content-Encoding"] == "gzip"


def test_an_admin_session_of_a_staff_user_may_export(api: APIClient, world: World, staff_user: Any) -> None:
    api.force_login(staff_user)
    response = api.get(url(world.owner.pk))
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert json.loads(archive_of(response).read("profile.json"))[0]["email"] == world.owner.email


@pytest.mark.parametrize("actor", ["owner", "other", "client", "other_client"])
def test_affiliate_and_client_keys_are_refused(api: APIClient, world: World, actor: str) -> None:
    key = {
        "owner": world.owner_key,
        "other": world.other_key,
        "client": world.client_key,
        "other_client": world.other_client_key,
    }[actor]
    response = api.get(url(world.owner.pk), **bearer(key))
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "staff_only"


def test_no_key_is_401(api: APIClient, world: World) -> None:
    assert api.get(url(world.owner.pk)).status_code == 401


@pytest.mark.parametrize("affiliate_id", [987654321, 9223372036854775807, 9999999999999999999])
def test_an_unknown_affiliate_is_404(api: APIClient, world: World, affiliate_id: int) -> None:
    response = api.get(url(affiliate_id), **bearer(world.staff_key))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_the_openapi_document_describes_a_zip(api: APIClient, db: None) -> None:
    document = json.loads(api.get("/api/schema/?format=json").content)
    operation = document["paths"]["/api/v1/affiliates/{affiliate_id}/export"]["get"]
    assert operation["operationId"] == "affiliate_export"
    assert operation["responses"]["200"]["content"] == {
        "application/zip": {"schema": {"type": "string", "format": "binary"}}
    }
    assert {"401", "403", "404", "429"} <= set(operation["responses"])

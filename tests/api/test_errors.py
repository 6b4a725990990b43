"""The error envelope everywhere under /api/, including paths that never reach a DRF view."""

from __future__ import annotations

import json

import pytest
from django.test import RequestFactory
from rest_framework.test import APIClient

from reconciliation.api import exceptions
from tests.api.conftest import World, bearer

pytestmark = pytest.mark.django_db


def test_unknown_api_path_is_a_json_404(api: APIClient) -> None:
    response = api.get("/api/v1/nothing/here")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "error": {"code": "not_found", "message": "Not found."},
        "request_id": response["X-Request-ID"],
    }


def test_client_supplied_request_id_is_echoed_in_the_envelope(api: APIClient) -> None:
    response = api.get("/api/v1/affiliates/me", HTTP_X_REQUEST_ID="trace-abc-123")
    assert response.status_code == 401
    assert response.json()["request_id"] == "trace-abc-123" == response["X-Request-ID"]


def test_method_not_allowed_is_enveloped(api: APIClient, world: World) -> None:
    response = api.delete("/api/v1/affiliates/me", **bearer(world.owner_key))
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_non_api_404_keeps_djangos_page(api: APIClient) -> None:
    response = api.get("/not-the-api/")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


def test_handler500_answers_the_envelope_for_api_paths() -> None:
    response = exceptions.handler500(RequestFactory().get("/api/v1/affiliates/me"))
    assert response.status_code == 500
    body = json.loads(response.content)
    assert body["error"]["code"] == "internal_error" and body["request_id"]


def test_handler400_for_an_oversized_body_is_413() -> None:
    from django.core.exceptions import RequestDataTooBig

    response = exceptions.handler400(RequestFactory().post("/api/v1/submissions/"), RequestDataTooBig())
    assert response.status_code == 413


def test_an_unexpected_error_is_a_500_envelope_and_is_logged(world: World, caplog) -> None:
    from unittest import mock

    api = APIClient(raise_request_exception=False)
    with mock.patch("reconciliation.selectors.affiliate_counters", side_effect=RuntimeError("boom")):
        response = api.get("/api/v1/affiliates/me", **bearer(world.owner_key))
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "boom" not in response.content.decode()
    assert any(r.levelname == "ERROR" and r.exc_info for r in caplog.records)

"""Every response carries the request id, timing and security headers; requests are logged and counted."""

from __future__ import annotations

import gzip
import json
import re
import uuid

import pytest
from django.test import Client

from reconcile_project.middleware import route_of  # noqa: F401 - the public helper exists

pytestmark = [pytest.mark.urls("tests.ops.urls")]

SECURITY = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-XSS-Protection": "1; mode=block",
}
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def assert_ops_headers(response) -> None:
    for header, value in SECURITY.items():
        assert response[header] == value, header
    assert response["X-Request-ID"]
    assert re.fullmatch(r"\d+\.\d{2}", response["X-Process-Time"]), response["X-Process-Time"]


def test_headers_on_a_successful_response() -> None:
    response = Client().get("/health")
    assert response.status_code == 200
    assert_ops_headers(response)


def test_headers_on_a_404() -> None:
    response = Client().get("/no/such/page")
    assert response.status_code == 404
    assert_ops_headers(response)


def test_headers_on_a_500_from_a_view_that_raises() -> None:
    response = Client(raise_request_exception=False).get("/ops-test/boom")
    assert response.status_code == 500
    assert_ops_headers(response)


def test_headers_on_a_405() -> None:
    response = Client().post("/health")
    assert response.status_code == 405
    assert_ops_headers(response)


def test_a_given_request_id_is_returned_and_visible_to_the_view() -> None:
    response = Client().get("/ops-test/items/7", HTTP_X_REQUEST_ID="req-123.abc_DEF")
    assert response["X-Request-ID"] == "req-123.abc_DEF"
    assert response.json() == {"id": 7, "request_id": "req-123.abc_DEF"}


def test_a_missing_request_id_is_generated_as_a_uuid4() -> None:
    response = Client().get("/ops-test/items/7")
    assert UUID4.match(response["X-Request-ID"])
    assert response.json()["request_id"] == response["X-Request-ID"]


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "semi;colon", "new\\nline", "ünïcode"])
def test_an_unsafe_request_id_is_replaced(bad: str) -> None:
    response = Client().get("/ops-test/items/1", HTTP_X_REQUEST_ID=bad)
    assert UUID4.match(response["X-Request-ID"])


def test_the_request_id_does_not_leak_into_the_next_request() -> None:
    client = Client()
    client.get("/ops-test/items/1", HTTP_X_REQUEST_ID="first-request")
    second = client.get("/ops-test/items/1")
    assert second.json()["request_id"] != "first-request"


def test_json_over_1kb_is_gzipped_when_accepted() -> None:
    response = Client().get("/ops-test/big", HTTP_ACCEPT_ENCODING="gzip")
    assert response["Content-Encoding"] == "gzip"
    body = gzip.decompress(response.content)
    assert len(body) > 1024
    assert len(json.loads(body)["items"]) == 200
    assert_ops_headers(response)


def test_small_json_and_clients_without_gzip_get_plain_bodies() -> None:
    assert "Content-Encoding" not in Client().get("/ops-test/small", HTTP_ACCEPT_ENCODING="gzip")
    assert "Content-Encoding" not in Client().get("/ops-test/big")


def test_request_started_and_completed_are_logged_with_their_fields(json_logs) -> None:
    Client().get("/ops-test/items/5", HTTP_X_REQUEST_ID="log-me-1", HTTP_USER_AGENT="ops-test/1.0")
    started = json_logs.find("Request started", request_id="log-me-1")
    completed = json_logs.find("Request completed", request_id="log-me-1")
    assert len(started) == 1 and len(completed) == 1
    assert started[0]["logger"] == "app.api.requests"
    line = completed[0]
    assert line["logger"] == "app.api.requests"
    assert (line["method"], line["url"], line["status_code"]) == ("GET", "/ops-test/items/5", 200)
    assert line["user_agent"] == "ops-test/1.0"
    assert line["remote_ip"] == "127.0.0.1"
    assert isinstance(line["process_time_ms"], float)


def test_a_500_is_logged_at_error_with_the_request_id(json_logs) -> None:
    Client(raise_request_exception=False).get("/ops-test/boom", HTTP_X_REQUEST_ID="boom-1")
    completed = json_logs.find("Request completed", request_id="boom-1")
    assert completed[0]["level"] == "ERROR" and completed[0]["status_code"] == 500
    # Django's own error line (with the traceback) carries the same request id.
    django_lines = [r for r in json_logs.records if r["logger"] == "django.request" and r.get("request_id") == "boom-1"]
    assert django_lines and "RuntimeError: boom from a test view" in django_lines[0]["exception"]


def test_probes_are_not_logged_when_they_succeed(json_logs) -> None:
    Client().get("/health")
    assert not [r for r in json_logs.records if r["logger"] == "app.api.requests"]


def test_http_metrics_are_labelled_by_route_not_raw_path() -> None:
    from reconcile_project.metrics import HTTP_REQUESTS_TOTAL

    marker = uuid.uuid4().int % 10_000_000
    before = HTTP_REQUESTS_TOTAL.labels("GET", "ops-test/items/<int:pk>", "200")._value.get()
    Client().get(f"/ops-test/items/{marker}")
    after = HTTP_REQUESTS_TOTAL.labels("GET", "ops-test/items/<int:pk>", "200")._value.get()
    assert after == before + 1
    unmatched = HTTP_REQUESTS_TOTAL.labels("GET", "<unmatched>", "404")._value.get()
    Client().get(f"/nothing/{marker}")
    assert HTTP_REQUESTS_TOTAL.labels("GET", "<unmatched>", "404")._value.get() == unmatched + 1

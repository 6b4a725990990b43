"""Debug endpoints are staff-only; the worker exception list is shared, capped and never raises."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from django.utils import timezone

from reconcile_project.worker_exceptions import MAX_EXCEPTIONS, recent_worker_exceptions, record_worker_exception
from reconciliation.models import ClientAPIKey
from reconciliation.services.accounts import client_key_create
from tests import factories
from tests.processes import RedisServer, free_port

ENDPOINTS = ("/debug/circuit-breakers", "/debug/worker-exceptions")

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def staff_client() -> Client:
    user = get_user_model().objects.create_user("ops-staff", password="pw-ops-staff-1", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("path", ENDPOINTS)
def test_anonymous_gets_the_api_401_envelope(path: str, ops_redis: RedisServer) -> None:
    response = Client().get(path)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    body = response.json()
    assert body["request_id"] == response["X-Request-ID"]
    assert body["error"]["code"] == "not_authenticated"


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_logged_in_non_staff_user_gets_403(path: str, ops_redis: RedisServer) -> None:
    client = Client()
    client.force_login(get_user_model().objects.create_user("ops-analyst", password="pw-analyst-1"))
    response = client.get(path)
    assert response.status_code == 403 and response.json()["error"]["code"] == "staff_only"


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_non_staff_client_key_gets_403_and_a_bad_key_401(path: str, ops_redis: RedisServer) -> None:
    _, key = client_key_create(client=factories.client(), name="reader")
    assert Client().get(path, HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 403
    assert Client().get(path, HTTP_AUTHORIZATION="Bearer nope.nope").status_code == 401


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_revoked_or_expired_staff_key_is_refused_like_on_the_api(path: str, ops_redis: RedisServer) -> None:
    revoked, revoked_key = client_key_create(client=None, name="old ops", is_staff=True)
    ClientAPIKey.objects.filter(pk=revoked.pk).update(revoked=True)
    expired, expired_key = client_key_create(client=None, name="temp ops", is_staff=True)
    ClientAPIKey.objects.filter(pk=expired.pk).update(expiry_date=timezone.now() - dt.timedelta(seconds=1))
    revoked_response = Client().get(path, HTTP_AUTHORIZATION=f"Bearer {revoked_key}")
    expired_response = Client().get(path, HTTP_AUTHORIZATION=f"Bearer {expired_key}")
    assert (revoked_response.status_code, revoked_response.json()["error"]["code"]) == (403, "api_key_revoked")
    assert (expired_response.status_code, expired_response.json()["error"]["code"]) == (403, "api_key_expired")


def test_bad_keys_on_debug_endpoints_count_towards_the_failed_authentication_limit(ops_redis: RedisServer) -> None:
    _, staff_key = client_key_create(client=None, name="ops", is_staff=True)
    guesser: dict[str, Any] = {"REMOTE_ADDR": "198.51.100.23"}
    with override_settings(AUTH_FAILURE_RATE="3/minute"):
        for n in range(3):
            response = Client().get(ENDPOINTS[n % 2], HTTP_AUTHORIZATION=f"Bearer guess{n}.secret", **guesser)
            assert response.status_code == 401
        blocked = Client().get(ENDPOINTS[0], HTTP_AUTHORIZATION=f"Bearer {staff_key}", **guesser)
        other_address = Client().get(ENDPOINTS[0], HTTP_AUTHORIZATION=f"Bearer {staff_key}")
    assert blocked.status_code == 429 and int(blocked["Retry-After"]) >= 1
    assert other_address.status_code == 200


def test_staff_session_sees_every_platform_breaker(staff_client: Client, ops_redis: RedisServer) -> None:
    response = staff_client.get("/debug/circuit-breakers")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == set(settings.PLATFORM_SLUGS)
    assert body["reddit"] == {
        "failures": 0,
        "state": "CLOSED",
        "opened_at": None,
        "half_open_probes": 0,
        "in_flight": 0,
    }


def test_a_staff_client_key_as_bearer_token_is_accepted(ops_redis: RedisServer) -> None:
    _, key = client_key_create(client=None, name="ops", is_staff=True)
    from platforms.breaker import get_breaker

    breaker = get_breaker()
    for _ in range(settings.CIRCUIT_BREAKER.failure_threshold):
        breaker.record_failure("meta", breaker.before_call("meta"))
    response = Client().get("/debug/circuit-breakers", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200
    assert response.json()["meta"]["state"] == "OPEN"


def test_worker_exceptions_newest_first_capped_at_50(staff_client: Client, ops_redis: RedisServer) -> None:
    for n in range(MAX_EXCEPTIONS + 5):
        record_worker_exception(report_id=n, exc=ValueError(f"failure {n}"))
    response = staff_client.get("/debug/worker-exceptions")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == MAX_EXCEPTIONS == len(body["exceptions"])
    newest = body["exceptions"][0]
    assert (newest["report_id"], newest["type"], newest["message"]) == (54, "ValueError", "failure 54")
    assert newest["time"].endswith("Z") and newest["worker"]
    assert body["exceptions"][-1]["report_id"] == 5


def test_an_exception_is_recorded_once_however_many_paths_see_it(ops_redis: RedisServer) -> None:
    from reconcile_project.worker_exceptions import _on_task_failure

    exc = RuntimeError("engine crash")
    record_worker_exception(report_id=7, exc=exc)  # the engine's except block
    task = type("Task", (), {"name": "reconciliation.tasks.reconcile_report"})()
    _on_task_failure(sender=task, exception=exc, args=[7], kwargs={})  # Celery's task_failure afterwards
    _on_task_failure(sender=task, exception=KeyError("other"), args=["8"], kwargs={})
    entries = recent_worker_exceptions()
    assert [(e["report_id"], e["type"]) for e in entries] == [(8, "KeyError"), (7, "RuntimeError")]


def test_recording_never_raises_when_redis_is_down() -> None:
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"):
        record_worker_exception(report_id=1, exc=ValueError("x"))  # no exception


def test_worker_exceptions_endpoint_says_503_when_redis_is_down(staff_client: Client) -> None:
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"):
        response = staff_client.get("/debug/worker-exceptions")
    assert response.status_code == 503

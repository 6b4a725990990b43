"""/health answers anyone without I/O; /health/detailed (monitoring and staff only) checks every
dependency, says which one failed without the exception's text, shares one worker ping between callers
and says whether the platforms are the real APIs or the sandbox."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.utils import ConnectionHandler
from django.test import Client, override_settings

from reconcile_project import health
from reconciliation.services.accounts import client_key_create
from tests import factories
from tests.ops.conftest import LogCapture
from tests.processes import RedisServer, free_port

CHECKS = {"database", "redis", "broker", "workers", "queues", "breakers"}
TOKEN = "test-metrics-token-0123456789"
#: A caller that is not on the loopback interface (the Django test client's default is 127.0.0.1).
REMOTE: dict[str, Any] = {"REMOTE_ADDR": "203.0.113.7"}


@pytest.fixture(autouse=True)
def metrics_token() -> Iterator[None]:
    with override_settings(METRICS_TOKEN=TOKEN):
        yield


class Monitor(Client):
    """What a monitoring system sends: the metrics token, from another host."""

    def get(self, path: str, *args: Any, **extra: Any) -> Any:  # type: ignore[override]
        return super().get(path, *args, **{"HTTP_AUTHORIZATION": f"Bearer {TOKEN}", **REMOTE, **extra})


def detailed() -> Any:
    return Monitor().get("/health/detailed")


def assert_base_shape(body: dict, status: str) -> None:
    assert body["status"] == status
    assert body["service"] == "affiliate-reconciliation-platform"
    assert body["version"] == settings.VERSION
    assert isinstance(body["timestamp"], float)


def test_health_is_the_runbook_shape_and_does_no_io() -> None:
    # No django_db mark: any query would raise. Redis and the broker point at a closed port.
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with override_settings(REDIS_URL=dead, CELERY_BROKER_URL=dead):
        response = Client().get("/health")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "service", "version", "timestamp"}
    assert_base_shape(body, "healthy")


@pytest.mark.django_db
def test_detailed_with_every_dependency_up_but_no_worker_is_degraded(ops_redis: RedisServer) -> None:
    response = detailed()
    assert response.status_code == 200
    body = response.json()
    assert_base_shape(body, "degraded")
    checks = body["checks"]
    assert set(checks) == CHECKS
    assert (checks["database"], checks["redis"], checks["broker"]) == ("healthy", "healthy", "healthy")
    assert {k: v for k, v in checks["workers"].items() if k != "checked_at"} == {
        "status": "no workers",
        "count": 0,
        "names": [],
    }
    assert checks["queues"]["status"] == "healthy"
    assert {"reconcile", "reconcile_priority", "maintenance"} <= set(checks["queues"]["depth"])
    assert checks["breakers"]["status"] == "healthy"
    assert checks["breakers"]["states"] == {slug: "CLOSED" for slug in settings.PLATFORM_SLUGS}
    assert body["failing"] == [] and body["degraded"] == ["workers"]


@pytest.mark.django_db
def test_detailed_reports_queue_depth_including_priority_sublists(ops_redis: RedisServer) -> None:
    broker = ops_redis.client(1)
    broker.rpush("reconcile", "m1", "m2")
    broker.rpush("reconcile\x06\x163", "m3")
    broker.rpush("maintenance", "m4")
    depth = detailed().json()["checks"]["queues"]["depth"]
    assert (depth["reconcile"], depth["maintenance"], depth["reconcile_priority"]) == (3, 1, 0)


@pytest.mark.django_db
def test_an_open_breaker_makes_detailed_degraded(ops_redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "check_workers", lambda: {"status": "healthy", "count": 1, "names": ["w@h"]})
    from platforms.breaker import get_breaker

    breaker = get_breaker()
    for _ in range(settings.CIRCUIT_BREAKER.failure_threshold):
        breaker.record_failure("reddit", breaker.before_call("reddit"))
    response = detailed()
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded" and body["degraded"] == ["breakers"]
    assert body["checks"]["breakers"]["states"]["reddit"] == "OPEN"
    assert body["checks"]["breakers"]["status"] == "degraded: reddit"


@pytest.mark.django_db
def test_all_healthy_when_a_worker_answers_and_breakers_are_closed(
    ops_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "check_workers", lambda: {"status": "healthy", "count": 1, "names": ["w@h"]})
    response = detailed()
    assert (response.status_code, response.json()["status"]) == (200, "healthy")


@pytest.mark.django_db
def test_503_naming_the_broker_when_the_private_redis_is_stopped() -> None:
    server = RedisServer()
    try:
        with override_settings(REDIS_URL=server.url(0), CELERY_BROKER_URL=server.url(1)):
            assert detailed().status_code == 200
            server.stop()
            response = detailed()
    finally:
        server.stop()
    assert response.status_code == 503
    body = response.json()
    assert_base_shape(body, "unhealthy")
    assert body["failing"] == ["broker"]
    assert body["checks"]["broker"] == body["checks"]["redis"] == "unhealthy: ConnectionError"
    assert body["checks"]["database"] == "healthy"
    assert body["checks"]["workers"]["status"].startswith("skipped")
    assert "redis" in body["degraded"]
    # The liveness probe does not depend on Redis.
    with override_settings(REDIS_URL=server.url(0), CELERY_BROKER_URL=server.url(1)):
        assert Client().get("/health").status_code == 200


@pytest.mark.django_db
def test_503_naming_the_database_when_it_is_unreachable(
    ops_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import connection

    unreachable = {**connection.settings_dict, "HOST": "127.0.0.1", "PORT": str(free_port()), "CONN_MAX_AGE": 0}
    unreachable["OPTIONS"] = {**unreachable.get("OPTIONS", {}), "connect_timeout": 2}
    monkeypatch.setattr(health, "connections", ConnectionHandler({"default": unreachable}))
    monkeypatch.setattr(health, "check_workers", lambda: {"status": "healthy", "count": 1, "names": ["w@h"]})
    response = detailed()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy" and body["failing"] == ["database"]
    assert body["checks"]["database"] == "unhealthy: OperationalError"


# --- who may read it -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_detailed_refuses_anonymous_callers_with_the_api_envelope(ops_redis: RedisServer) -> None:
    response = Client().get("/health/detailed", **REMOTE)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    body = response.json()
    assert body["request_id"] == response["X-Request-ID"]
    assert body["error"]["code"] == "not_authenticated"
    assert "Authorization: Bearer <key>" in body["error"]["message"]
    assert "checks" not in body


@pytest.mark.django_db
def test_a_wrong_metrics_token_is_refused(ops_redis: RedisServer) -> None:
    response = Client().get("/health/detailed", HTTP_AUTHORIZATION="Bearer not-the-token", **REMOTE)
    assert response.status_code == 401


@pytest.mark.django_db
def test_detailed_answers_the_metrics_token_a_staff_key_and_a_staff_session(ops_redis: RedisServer) -> None:
    _, staff_key = client_key_create(client=None, name="ops", is_staff=True)
    staff = Client()
    staff.force_login(get_user_model().objects.create_user("ops-staff", password="pw-ops-staff-1", is_staff=True))
    assert detailed().status_code == 200
    assert Client().get("/health/detailed", HTTP_AUTHORIZATION=f"Bearer {staff_key}", **REMOTE).status_code == 200
    assert staff.get("/health/detailed", **REMOTE).status_code == 200


@pytest.mark.django_db
def test_a_client_key_or_a_non_staff_session_is_403(ops_redis: RedisServer) -> None:
    _, client_key = client_key_create(client=factories.client(), name="reader")
    response = Client().get("/health/detailed", HTTP_AUTHORIZATION=f"Bearer {client_key}", **REMOTE)
    assert response.status_code == 403 and response.json()["error"]["code"] == "monitoring_only"
    user = Client()
    user.force_login(get_user_model().objects.create_user("ops-analyst", password="pw-analyst-1"))
    assert user.get("/health/detailed", **REMOTE).status_code == 403


@pytest.mark.django_db
def test_without_a_token_only_loopback_callers_get_in_and_never_in_production(ops_redis: RedisServer) -> None:
    with override_settings(METRICS_TOKEN=""):
        assert Client().get("/health/detailed", REMOTE_ADDR="127.0.0.1").status_code == 200
        assert Client().get("/health/detailed", REMOTE_ADDR="::1").status_code == 200
        assert Client().get("/health/detailed", **REMOTE).status_code == 401
        with override_settings(PRODUCTION=True):
            assert Client().get("/health/detailed", REMOTE_ADDR="127.0.0.1").status_code == 401
    # A token, once set, is needed from loopback too.
    assert Client().get("/health/detailed", REMOTE_ADDR="127.0.0.1").status_code == 401


# --- no exception text -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_failed_check_names_the_exception_class_only_and_logs_the_text(
    ops_redis: RedisServer, monkeypatch: pytest.MonkeyPatch, json_logs: LogCapture
) -> None:
    from django.db import connection

    port = str(free_port())
    unreachable = {**connection.settings_dict, "HOST": "127.0.0.1", "PORT": port, "CONN_MAX_AGE": 0}
    unreachable["OPTIONS"] = {**unreachable.get("OPTIONS", {}), "connect_timeout": 2}
    monkeypatch.setattr(health, "connections", ConnectionHandler({"default": unreachable}))
    response = detailed()
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"] == "unhealthy: OperationalError"
    assert port not in response.content.decode()  # the driver's text names the host and port
    assert body["request_id"] == response["X-Request-ID"]
    logged = json_logs.find("Health check failed", check="database", request_id=body["request_id"])
    assert logged and port in logged[0]["error"]


# --- the worker ping is shared ----------------------------------------------------------------------


class CountingPing:
    """A worker ping that counts its calls and, when asked to, waits until released."""

    def __init__(self, *, hold: bool = False) -> None:
        self.calls = 0
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self._lock = threading.Lock()

    def __call__(self) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
        self.started.set()
        assert self.release.wait(30), "the test never released the ping"
        return {"status": "healthy", "count": 1, "names": ["worker@host"]}


@pytest.mark.django_db
def test_repeated_calls_within_the_cache_period_share_one_ping(ops_redis: RedisServer) -> None:
    ping = CountingPing()
    now = [1000.0]
    with override_settings(HEALTH_WORKER_PING_CACHE_SECONDS=5):
        first = health.check_workers(ping=ping, clock=lambda: now[0])
        now[0] += 4.9
        assert health.check_workers(ping=ping, clock=lambda: now[0]) == first
        assert ping.calls == 1
        now[0] += 0.2  # past the period: the next call pings again
        assert health.check_workers(ping=ping, clock=lambda: now[0])["checked_at"] == now[0]
    assert ping.calls == 2 and first["checked_at"] == 1000.0 and first["names"] == ["worker@host"]


@pytest.mark.django_db
def test_concurrent_calls_do_one_ping(ops_redis: RedisServer) -> None:
    ping = CountingPing(hold=True)
    results: list[dict[str, Any]] = []

    def call() -> None:
        results.append(health.check_workers(ping=ping))

    threads = [threading.Thread(target=call) for _ in range(12)]
    with override_settings(HEALTH_WORKER_PING_CACHE_SECONDS=5):
        threads[0].start()
        assert ping.started.wait(30)  # the first caller holds the refresh lock and is pinging
        for thread in threads[1:]:
            thread.start()
        ping.release.set()
        for thread in threads:
            thread.join(30)
    assert ping.calls == 1
    assert len(results) == 12 and all(r["names"] == ["worker@host"] for r in results)


@pytest.mark.django_db
def test_while_a_refresh_runs_others_answer_with_the_stale_result(ops_redis: RedisServer) -> None:
    now = [1000.0]
    with override_settings(HEALTH_WORKER_PING_CACHE_SECONDS=5):
        health.check_workers(ping=CountingPing(), clock=lambda: now[0])
        now[0] += 10
        slow = CountingPing(hold=True)
        refresher = threading.Thread(target=health.check_workers, kwargs={"ping": slow, "clock": lambda: now[0]})
        refresher.start()
        assert slow.started.wait(30)
        other = CountingPing()
        stale = health.check_workers(ping=other, clock=lambda: now[0])
        slow.release.set()
        refresher.join(30)
    assert other.calls == 0 and stale["checked_at"] == 1000.0


# --- platforms: live or sandbox ---------------------------------------------------------------------


@pytest.mark.django_db
def test_detailed_says_the_platforms_run_against_the_sandbox(ops_redis: RedisServer) -> None:
    platforms = detailed().json()["platforms"]
    assert platforms["mode"] == "sandbox" and platforms["use_sandbox"] is True
    assert platforms["sandbox"] == list(settings.PLATFORM_SLUGS)
    assert platforms["sandbox_url"] == settings.SANDBOX_URL


@pytest.mark.django_db
def test_detailed_says_live_when_every_platform_has_a_real_api(ops_redis: RedisServer) -> None:
    real = {
        slug: {"base_url": f"https://api.{slug}.example", "credentials": {"access_token": "real-token-1"}}
        for slug in settings.PLATFORM_SLUGS
    }
    with override_settings(PLATFORM_API=real, PLATFORMS_USE_SANDBOX=False):
        platforms = detailed().json()["platforms"]
    assert platforms == {"mode": "live", "use_sandbox": False, "sandbox": []}

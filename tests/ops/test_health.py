"""/health answers without I/O; /health/detailed checks every dependency and says which one failed."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db.utils import ConnectionHandler
from django.test import Client, override_settings

from reconcile_project import health
from tests.processes import RedisServer, free_port

CHECKS = {"database", "redis", "broker", "workers", "queues", "breakers"}


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
    response = Client().get("/health/detailed")
    assert response.status_code == 200
    body = response.json()
    assert_base_shape(body, "degraded")
    checks = body["checks"]
    assert set(checks) == CHECKS
    assert (checks["database"], checks["redis"], checks["broker"]) == ("healthy", "healthy", "healthy")
    assert checks["workers"] == {"status": "no workers", "count": 0, "names": []}
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
    depth = Client().get("/health/detailed").json()["checks"]["queues"]["depth"]
    assert (depth["reconcile"], depth["maintenance"], depth["reconcile_priority"]) == (3, 1, 0)


@pytest.mark.django_db
def test_an_open_breaker_makes_detailed_degraded(ops_redis: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "check_workers", lambda: {"status": "healthy", "count": 1, "names": ["w@h"]})
    from platforms.breaker import get_breaker

    breaker = get_breaker()
    for _ in range(settings.CIRCUIT_BREAKER.failure_threshold):
        breaker.record_failure("reddit", breaker.before_call("reddit"))
    response = Client().get("/health/detailed")
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
    response = Client().get("/health/detailed")
    assert (response.status_code, response.json()["status"]) == (200, "healthy")


@pytest.mark.django_db
def test_503_naming_the_broker_when_the_private_redis_is_stopped() -> None:
    server = RedisServer()
    try:
        with override_settings(REDIS_URL=server.url(0), CELERY_BROKER_URL=server.url(1)):
            assert Client().get("/health/detailed").status_code == 200
            server.stop()
            response = Client().get("/health/detailed")
    finally:
        server.stop()
    assert response.status_code == 503
    body = response.json()
    assert_base_shape(body, "unhealthy")
    assert body["failing"] == ["broker"]
    assert body["checks"]["broker"].startswith("unhealthy: ")
    assert body["checks"]["redis"].startswith("unhealthy: ")
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
    response = Client().get("/health/detailed")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy" and body["failing"] == ["database"]
    assert body["checks"]["database"].startswith("unhealthy: OperationalError")

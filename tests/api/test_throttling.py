"""Rate limits per API key from RATE_LIMIT_SETTINGS, counted in Redis; 429 with Retry-After."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from rest_framework.test import APIClient

from reconcile_project.config import RateLimitSettings
from reconciliation.api import throttling
from reconciliation.models import AffiliateAPIKey
from tests.api.conftest import World, bearer, submission
from tests.processes import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def limits(settings: Any) -> None:
    settings.RATE_LIMIT_SETTINGS = RateLimitSettings.model_validate(
        {"submission": "2/hour", "query": "3/minute", "staff_run": "1/minute"}
    )


def test_fourth_query_in_a_minute_is_429_with_retry_after(api: APIClient, world: World, limits: None) -> None:
    for _ in range(3):
        assert api.get("/api/v1/affiliates/me", **bearer(world.owner_key)).status_code == 200
    response = api.get("/api/v1/affiliates/me", **bearer(world.owner_key))

    assert response.status_code == 429
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= 60
    error = response.json()["error"]
    assert error["code"] == "throttled" and error["retry_after"] == retry_after


def test_limits_are_per_api_key(api: APIClient, world: World, limits: None) -> None:
    for _ in range(4):
        api.get("/api/v1/affiliates/me", **bearer(world.owner_key))
    assert api.get("/api/v1/affiliates/me", **bearer(world.other_key)).status_code == 200


def test_submission_and_query_scopes_are_counted_separately(api: APIClient, world: World, limits: None) -> None:
    key = bearer(world.owner_key)
    assert api.post("/api/v1/submissions/", submission(world.campaign, 1), format="json", **key).status_code == 201
    assert api.post("/api/v1/submissions/", submission(world.campaign, 2), format="json", **key).status_code == 201
    third = api.post("/api/v1/submissions/", submission(world.campaign, 3), format="json", **key)
    assert third.status_code == 429
    assert 3000 < int(third["Retry-After"]) <= 3600
    assert api.get("/api/v1/submissions/", **key).status_code == 200


def test_refused_requests_do_not_count(api: APIClient, world: World, limits: None) -> None:
    key = bearer(world.owner_key)
    for _ in range(10):
        api.get("/api/v1/affiliates/me", **key)
    client = throttling.get_redis()
    counted = [client.zcard(k) for k in client.scan_iter(f"{throttling.KEY_PREFIX}:query:*")]
    assert 3 in counted


def test_staff_run_is_rate_limited(api: APIClient, world: World, limits: None) -> None:
    run = {"campaign_id": world.campaign.pk}
    assert api.post("/api/v1/reconciliation/run", run, format="json", **bearer(world.staff_key)).status_code == 202
    assert api.post("/api/v1/reconciliation/run", run, format="json", **bearer(world.staff_key)).status_code == 429


def test_redis_down_lets_requests_through(api: APIClient, world: World, limits: None) -> None:
    # A client of a Redis that is not there: every command fails to connect.
    broken = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    with mock.patch.object(throttling, "get_redis", return_value=broken):
        for _ in range(5):
            assert api.get("/api/v1/affiliates/me", **bearer(world.owner_key)).status_code == 200


def test_parse_rate() -> None:
    assert throttling.parse_rate("100/hour") == (100, 3600)
    assert throttling.parse_rate("5/s") == (5, 1)
    assert throttling.parse_rate("10/day") == (10, 86400)
    for bad in ("", "abc", "10/fortnight", "0/minute", "x/minute"):
        with pytest.raises(Exception, match="RATE_LIMIT_SETTINGS"):
            throttling.parse_rate(bad)


# --- failed authentications, per client address ------------------------------------------------------


@pytest.fixture
def three_failures_a_minute(settings: Any) -> None:
    settings.AUTH_FAILURE_RATE = "3/minute"


def test_after_n_failed_keys_an_address_gets_429_with_retry_after(
    api: APIClient, world: World, three_failures_a_minute: None
) -> None:
    for n in range(3):
        assert api.get("/api/v1/affiliates/me", **bearer(f"guess{n}.wrongsecret")).status_code == 401
    response = api.get("/api/v1/affiliates/me", **bearer("guess3.wrongsecret"))
    assert response.status_code == 429
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= 60
    error = response.json()["error"]
    assert error["code"] == "too_many_auth_failures" and error["retry_after"] == retry_after
    # The right key from that address waits too (or the guesser would learn which guess was right), and so
    # do a real key of the wrong kind (a 403 would say it is real) and a revoked one ...
    assert api.get("/api/v1/affiliates/me", **bearer(world.owner_key)).status_code == 429
    assert api.get("/api/v1/affiliates/me", **bearer(world.client_key)).status_code == 429
    AffiliateAPIKey.objects.filter(affiliate=world.owner).update(revoked=True)
    assert api.get("/api/v1/affiliates/me", **bearer(world.owner_key)).status_code == 429
    AffiliateAPIKey.objects.filter(affiliate=world.owner).update(revoked=False)
    # ... while another address is not affected.
    assert api.get("/api/v1/affiliates/me", REMOTE_ADDR="192.0.2.10", **bearer(world.owner_key)).status_code == 200


def test_an_authenticated_request_costs_one_redis_round_trip(api: APIClient, world: World, limits: None) -> None:
    # The rate limit of the key and the failed-authentication check of the address share one script call.
    sent: list[Any] = []
    original = redis.connection.Connection.send_packed_command

    def counting(self: redis.connection.Connection, command: Any, check_health: bool = True) -> None:
        sent.append(command)
        original(self, command, check_health)

    assert api.get("/api/v1/affiliates/me", **bearer(world.owner_key)).status_code == 200  # connection made
    with mock.patch.object(redis.connection.Connection, "send_packed_command", counting):
        assert api.get("/api/v1/affiliates/me", **bearer(world.owner_key)).status_code == 200
    assert len(sent) == 1


def test_good_keys_and_missing_credentials_do_not_count(
    api: APIClient, world: World, three_failures_a_minute: None
) -> None:
    for _ in range(5):
        assert api.get("/api/v1/affiliates/me", **bearer(world.owner_key)).status_code == 200
        assert api.get("/api/v1/affiliates/me").status_code == 401
        assert api.get("/api/v1/affiliates/me", HTTP_AUTHORIZATION="Token abc.def").status_code == 401
        assert api.get("/api/v1/affiliates/me", HTTP_AUTHORIZATION="Bearer").status_code == 401
    assert api.get("/api/v1/affiliates/me", **bearer("guess.wrongsecret")).status_code == 401


def test_a_forged_x_forwarded_for_does_not_reset_the_count(
    api: APIClient, world: World, three_failures_a_minute: None
) -> None:
    for n in range(3):
        api.get("/api/v1/affiliates/me", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}", **bearer(f"g{n}.wrongsecret"))
    response = api.get("/api/v1/affiliates/me", HTTP_X_FORWARDED_FOR="10.0.0.99", **bearer("g.wrongsecret"))
    assert response.status_code == 429


def test_behind_a_proxy_the_address_it_saw_is_counted(api: APIClient, world: World, settings: Any) -> None:
    settings.AUTH_FAILURE_RATE = "2/minute"
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    for n in range(2):
        api.get("/api/v1/affiliates/me", HTTP_X_FORWARDED_FOR="198.51.100.1", **bearer(f"g{n}.wrongsecret"))
    blocked = api.get("/api/v1/affiliates/me", HTTP_X_FORWARDED_FOR="198.51.100.1", **bearer(world.owner_key))
    other = api.get("/api/v1/affiliates/me", HTTP_X_FORWARDED_FOR="198.51.100.2", **bearer(world.owner_key))
    assert (blocked.status_code, other.status_code) == (429, 200)


def test_failures_leave_the_window_after_the_period(world: World, three_failures_a_minute: None) -> None:
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory

    request = Request(APIRequestFactory().get("/api/v1/affiliates/me", REMOTE_ADDR="192.0.2.77"))
    limiter = throttling.FailedAuthThrottle()
    for offset in (0.0, 10.0, 20.0):
        limiter.record_failure(request, now=1_000_000.0 + offset)
    assert limiter.blocked_for(request, now=1_000_030.0) == 30  # until the first failure is a minute old
    assert limiter.blocked_for(request, now=1_000_060.5) is None


def test_failed_authentications_are_allowed_when_redis_is_down(
    api: APIClient, world: World, three_failures_a_minute: None
) -> None:
    with mock.patch.object(throttling, "get_redis", side_effect=RedisConnectionError("down")):
        for n in range(5):
            assert api.get("/api/v1/affiliates/me", **bearer(f"g{n}.wrongsecret")).status_code == 401


def test_a_request_without_a_client_address_is_counted_not_crashed(
    api: APIClient, world: World, three_failures_a_minute: None
) -> None:
    for n in range(3):
        assert api.get("/api/v1/affiliates/me", REMOTE_ADDR=None, **bearer(f"g{n}.wrongsecret")).status_code == 401
    assert api.get("/api/v1/affiliates/me", REMOTE_ADDR=None, **bearer("g.wrongsecret")).status_code == 429

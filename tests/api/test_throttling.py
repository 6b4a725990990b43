"""Rate limits per API key from RATE_LIMIT_SETTINGS, counted in Redis; 429 with Retry-After."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from rest_framework.test import APIClient

from reconcile_project.config import RateLimitSettings
from reconciliation.api import throttling
from tests.api.conftest import World, bearer, submission

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
    broken = mock.Mock()
    broken.pipeline.side_effect = RedisConnectionError("down")
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

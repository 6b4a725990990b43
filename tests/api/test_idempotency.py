"""Idempotency-Key: replay, different body (422), in flight (409), per-key scope, 24 h window.

The concurrent case (50 simultaneous POSTs with one key against gunicorn) is in test_concurrency.py.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pytest
from django.db import connection
from rest_framework.test import APIClient

from reconciliation.models import Affiliate, AffiliateReport, IdempotencyKey
from reconciliation.services.idempotency import _lock_id, idempotency_purge
from tests.api.conftest import World, bearer, submission

pytestmark = pytest.mark.django_db

URL = "/api/v1/submissions/"


def post(api: APIClient, world: World, body: Any, key: str, api_key: str | None = None) -> Any:
    return api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY=key, **bearer(api_key or world.owner_key))


def test_replay_returns_the_original_response_and_creates_nothing(api: APIClient, world: World) -> None:
    body = submission(world.campaign)
    first = post(api, world, body, "key-1")
    again = post(api, world, dict(reversed(list(body.items()))), "key-1")  # key order does not matter

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert AffiliateReport.objects.count() == 1
    assert Affiliate.objects.get(pk=world.owner.pk).total_submissions == 1
    assert AffiliateReport.objects.get().idempotency_key == "key-1"


def test_same_key_with_another_body_is_422(api: APIClient, world: World) -> None:
    post(api, world, submission(world.campaign), "key-2")
    response = post(api, world, submission(world.campaign, claimed_views=999), "key-2")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert AffiliateReport.objects.count() == 1


def test_same_key_on_another_endpoint_is_422(api: APIClient, world: World) -> None:
    created = post(api, world, submission(world.campaign), "key-3").json()
    response = api.put(
        f"/api/v1/submissions/{created['post_id']}/metrics",
        {"claimed_views": 1, "claimed_clicks": 1, "claimed_conversions": 1},
        format="json",
        HTTP_IDEMPOTENCY_KEY="key-3",
        **bearer(world.owner_key),
    )
    assert response.status_code == 422


def test_a_request_still_in_flight_with_the_key_is_409(api: APIClient, world: World) -> None:
    owner_id = str(world.owner.api_keys.get().pk)
    # Another session holds the key's lock, as a concurrent request being processed would.
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"], autocommit=True
    ) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [_lock_id("affiliate_key", owner_id, "busy")])
        response = post(api, world, submission(world.campaign), "busy")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_in_flight"
    assert not AffiliateReport.objects.exists()
    # Once the first request is done, the key works.
    assert post(api, world, submission(world.campaign), "busy").status_code == 201


def test_keys_are_scoped_per_api_key(api: APIClient, world: World) -> None:
    a = post(api, world, submission(world.campaign, "mine"), "shared")
    b = post(api, world, submission(world.campaign, "theirs"), "shared", api_key=world.other_key)
    assert a.status_code == b.status_code == 201
    assert a.json()["report_id"] != b.json()["report_id"]


def test_client_errors_are_replayed_too(api: APIClient, world: World) -> None:
    post(api, world, submission(world.campaign, "dup"), "first")
    conflict = post(api, world, submission(world.campaign, "dup"), "second")
    assert conflict.status_code == 409
    replay = post(api, world, submission(world.campaign, "dup"), "second")
    assert replay.status_code == 409 and replay["Idempotent-Replayed"] == "true"
    assert replay.json() == conflict.json()


def test_a_key_older_than_24_hours_starts_over(api: APIClient, world: World) -> None:
    first = post(api, world, submission(world.campaign, "old"), "day-old")
    IdempotencyKey.objects.update(created_at=IdempotencyKey.objects.get().created_at - dt.timedelta(hours=24))
    second = post(api, world, submission(world.campaign, "other"), "day-old")
    assert second.status_code == 201 and second.json()["report_id"] != first.json()["report_id"]
    assert "Idempotent-Replayed" not in second


def test_purge_deletes_expired_keys_only(api: APIClient, world: World) -> None:
    post(api, world, submission(world.campaign, 1), "k1")
    post(api, world, submission(world.campaign, 2), "k2")
    row = IdempotencyKey.objects.get(key="k1")
    assert idempotency_purge(now=row.created_at + dt.timedelta(hours=24, seconds=1)) == 2
    assert idempotency_purge(now=row.created_at) == 0


@pytest.mark.parametrize("key", ["", " ", "x" * 256, "tab\there", "caf\u00e9"])
def test_malformed_key_is_400(api: APIClient, world: World, key: str) -> None:
    response = post(api, world, submission(world.campaign), key)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]["fields"]
    assert not AffiliateReport.objects.exists()


def test_staff_run_accepts_a_key(api: APIClient, world: World) -> None:
    run = {"campaign_id": world.campaign.pk}
    first = api.post(
        "/api/v1/reconciliation/run", run, format="json", HTTP_IDEMPOTENCY_KEY="r", **bearer(world.staff_key)
    )
    again = api.post(
        "/api/v1/reconciliation/run", run, format="json", HTTP_IDEMPOTENCY_KEY="r", **bearer(world.staff_key)
    )
    assert first.status_code == again.status_code == 202
    assert again["Idempotent-Replayed"] == "true"

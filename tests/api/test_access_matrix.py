"""Who may call what: every endpoint × every standing actor.

The owner affiliate owns post P / report R in campaign C of client "client". Another affiliate gets 404
for P and R (never 403: the API does not confirm they exist); a client key on an affiliate endpoint, or
an affiliate key on a client endpoint, is the wrong kind (403); another client's campaign is 404; no
key is 401.
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.api.conftest import World, bearer, submission

pytestmark = pytest.mark.django_db

ACTORS = ("owner", "other", "client", "other_client", "staff", "anonymous")

# endpoint name → expected status per actor, in ACTORS order.
MATRIX: dict[str, tuple[int, ...]] = {
    "list submissions": (200, 200, 403, 403, 403, 401),
    "submit": (201, 201, 403, 403, 403, 401),
    "metrics history": (200, 404, 403, 403, 403, 401),
    "metrics update": (201, 404, 403, 403, 403, 401),
    "report detail": (200, 404, 403, 403, 403, 401),
    "me": (200, 200, 403, 403, 403, 401),
    "list campaigns": (403, 403, 200, 200, 200, 401),
    "campaign detail": (403, 403, 200, 404, 200, 401),
    "campaign reports": (403, 403, 200, 404, 200, 401),
    "staff run": (403, 403, 403, 403, 202, 401),
    "rule simulation": (403, 403, 403, 403, 200, 401),
    "affiliate export": (403, 403, 403, 403, 200, 401),
}


def _key(world: World, actor: str) -> dict[str, Any]:
    keys = {
        "owner": world.owner_key,
        "other": world.other_key,
        "client": world.client_key,
        "other_client": world.other_client_key,
        "staff": world.staff_key,
    }
    return bearer(keys[actor]) if actor in keys else {}


def _call(api: APIClient, world: World, endpoint: str, actor: str, post_id: int, report_id: int) -> Any:
    c = world.campaign.pk
    claims = {"claimed_views": 2000, "claimed_clicks": 60, "claimed_conversions": 6}
    headers = _key(world, actor)
    calls = {
        "list submissions": lambda: api.get("/api/v1/submissions/", **headers),
        "submit": lambda: api.post(
            "/api/v1/submissions/", submission(world.campaign, f"m{actor[:5]}"), format="json", **headers
        ),
        "metrics history": lambda: api.get(f"/api/v1/submissions/{post_id}/metrics", **headers),
        "metrics update": lambda: api.put(f"/api/v1/submissions/{post_id}/metrics", claims, format="json", **headers),
        "report detail": lambda: api.get(f"/api/v1/reports/{report_id}", **headers),
        "me": lambda: api.get("/api/v1/affiliates/me", **headers),
        "list campaigns": lambda: api.get("/api/v1/campaigns/", **headers),
        "campaign detail": lambda: api.get(f"/api/v1/campaigns/{c}", **headers),
        "campaign reports": lambda: api.get(f"/api/v1/campaigns/{c}/reports/", **headers),
        "staff run": lambda: api.post("/api/v1/reconciliation/run", {"campaign_id": c}, format="json", **headers),
        "affiliate export": lambda: api.get(f"/api/v1/affiliates/{world.owner.pk}/export", **headers),
        "rule simulation": lambda: api.post("/api/v1/rules/simulate", {"campaign_id": c}, format="json", **headers),
    }
    return calls[endpoint]()


@pytest.mark.parametrize(
    ("endpoint", "actor", "expected"),
    [(endpoint, actor, statuses[i]) for endpoint, statuses in MATRIX.items() for i, actor in enumerate(ACTORS)],
)
def test_access(api: APIClient, world: World, endpoint: str, actor: str, expected: int) -> None:
    created = api.post(
        "/api/v1/submissions/", submission(world.campaign, "owned"), format="json", **bearer(world.owner_key)
    )
    assert created.status_code == 201
    post_id, report_id = created.json()["post_id"], created.json()["report_id"]

    response = _call(api, world, endpoint, actor, post_id, report_id)

    assert response.status_code == expected, response.content
    if expected >= 400:
        body = response.json()
        assert set(body) == {"error", "request_id"}
        assert body["request_id"] == response["X-Request-ID"]
    if expected == 401:
        assert response["WWW-Authenticate"].startswith("Bearer")
    if expected == 403:
        assert response.json()["error"]["code"] in {"wrong_key_kind", "staff_only"}


def test_other_affiliate_list_never_shows_the_owners_posts(api: APIClient, world: World) -> None:
    api.post("/api/v1/submissions/", submission(world.campaign, "mine"), format="json", **bearer(world.owner_key))
    response = api.get("/api/v1/submissions/", **bearer(world.other_key))
    assert response.status_code == 200
    assert response.json()["results"] == []


def test_client_sees_only_its_own_campaigns(api: APIClient, world: World) -> None:
    response = api.get("/api/v1/campaigns/", **bearer(world.client_key))
    assert [c["id"] for c in response.json()["results"]] == [world.campaign.pk]


def test_staff_key_sees_every_campaign(api: APIClient, world: World) -> None:
    response = api.get("/api/v1/campaigns/", **bearer(world.staff_key))
    assert {c["id"] for c in response.json()["results"]} == {world.campaign.pk, world.other_campaign.pk}

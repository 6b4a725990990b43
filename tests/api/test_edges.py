"""The API's edges: no lost claims on a missing or extra slash, platform names as people write them,
Swagger UI from our own static files, and an OpenAPI document that states the bounds the API enforces.

The live tests run gunicorn (tests/api/live.py) with static files collected as the Dockerfile does and
talk to it with ``requests``, which, like browsers and most clients, follows a 301 with a GET.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.db import connection
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from platforms.links import platform_slug
from reconciliation.models import Post
from tests import factories
from tests.api.conftest import World, affiliate_with_key, bearer, submission
from tests.api.live import ROOT, Gunicorn
from tests.processes import RedisServer

METHODS = ("get", "post", "put", "patch", "delete", "options", "head")


def _envelope_404(response: Any) -> None:
    assert response.status_code == 404, (response.status_code, response.get("Location"))
    assert response["Content-Type"] == "application/json"
    if response.content:  # HEAD has none
        assert response.json()["error"]["code"] == "not_found"


# --- 13a: every route with and without its trailing slash; nothing under /api/ redirects -------------


@pytest.mark.django_db
def test_post_without_the_trailing_slash_creates_the_claim(api: APIClient, world: World) -> None:
    response = api.post(
        "/api/v1/submissions", submission(world.campaign, "noslash"), format="json", **bearer(world.owner_key)
    )
    assert response.status_code == 201, response.content
    assert Post.objects.filter(pk=response.json()["post_id"], affiliate=world.owner).exists()


@pytest.mark.django_db
def test_every_route_answers_the_same_with_and_without_its_slash(api: APIClient, world: World) -> None:
    created = api.post("/api/v1/submissions/", submission(world.campaign, 1), format="json", **bearer(world.owner_key))
    assert created.status_code == 201
    post_id, report_id, campaign_id = created.json()["post_id"], created.json()["report_id"], world.campaign.pk
    claims = {"claimed_views": 2000, "claimed_clicks": 60, "claimed_conversions": 6}
    calls = [
        ("get", "/api/v1/submissions/", world.owner_key, None, 200),
        ("post", "/api/v1/submissions/", world.owner_key, "new", 201),
        ("get", f"/api/v1/submissions/{post_id}/metrics", world.owner_key, None, 200),
        ("put", f"/api/v1/submissions/{post_id}/metrics", world.owner_key, claims, 201),
        ("get", f"/api/v1/reports/{report_id}", world.owner_key, None, 200),
        ("get", "/api/v1/affiliates/me", world.owner_key, None, 200),
        ("get", "/api/v1/campaigns/", world.client_key, None, 200),
        ("get", f"/api/v1/campaigns/{campaign_id}", world.client_key, None, 200),
        ("get", f"/api/v1/campaigns/{campaign_id}/reports/", world.client_key, None, 200),
        ("post", "/api/v1/reconciliation/run", world.staff_key, {"report_id": report_id}, 202),
        ("post", "/api/v1/rules/simulate", world.staff_key, {"campaign_id": campaign_id}, 200),
    ]
    n = 0
    for method, path, key, body, expected in calls:
        other = path.removesuffix("/") if path.endswith("/") else path + "/"
        for spelling in (path, other):
            n += 1
            data = submission(world.campaign, f"both{n}") if body == "new" else body
            response = getattr(api, method)(spelling, data, format="json", **bearer(key))
            assert response.status_code == expected, (method, spelling, response.status_code, response.content)


@pytest.mark.django_db
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "path",
    [
        "/api",
        "/api/v1",
        "/api/v1/",
        "/api/v2/submissions",
        "/api/v1/submission",
        "/api/v1/reports/abc",
        "/api/v1/reports/1/extra/",
        "/api/v1/reports/99999999999999999999",
    ],
)
def test_unknown_api_paths_are_a_json_404_for_every_method(
    api: APIClient, world: World, method: str, path: str
) -> None:
    # With a valid key, and a body: a POST without CSRF token must not become Django's HTML 403 either.
    response = getattr(api, method)(path, {"claimed_views": 1}, format="json", **bearer(world.owner_key))
    _envelope_404(response)


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/schema/", "/api/schema", "/api/docs/", "/api/docs"])
def test_the_document_and_its_page_answer_get_with_either_slash_and_refuse_other_methods_as_json(
    api: APIClient, path: str
) -> None:
    assert api.get(path).status_code == 200
    for method in ("post", "put", "delete", "options"):
        response = getattr(api, method)(path, {}, format="json")
        assert response.status_code == 405, (method, path, response.status_code)
        assert response.json()["error"]["code"] == "method_not_allowed"
        assert response["Allow"] == "GET, HEAD"


@pytest.mark.django_db
def test_the_document_lists_each_route_once(client: Any) -> None:
    document = json.loads(client.get("/api/schema/?format=json").content)
    paths = list(document["paths"])
    assert len({p.rstrip("/") for p in paths}) == len(paths) == 20, paths
    assert sum(len(item) for item in document["paths"].values()) == 23


# --- 13b: platform names as people write them -----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "slug"),
    [("reddit", "reddit"), ("YouTube", "youtube"), ("TIKTOK", "tiktok"), ("twitter", "x"), ("Twitter", "x"),
     ("X", "x"), ("Facebook", "meta"), ("META", "meta")],
)  # fmt: skip
def test_platform_names_in_any_letter_case_and_aliases_name_their_slug(name: str, slug: str) -> None:
    assert platform_slug(name) == slug


@pytest.mark.parametrize(
    "name", ["myspace", "", " reddit", "reddit ", "twitter.com", "Ｙｏｕｔｕｂｅ", "x\u0307", None, 1]
)
def test_anything_else_names_no_platform(name: object) -> None:
    assert platform_slug(name) is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("platform", "url", "slug"),
    [
        ("twitter", "https://twitter.com/someone/status/1234567890", "x"),
        ("YouTube", "https://www.youtube.com/watch?v=dQw4w9WgXcQ", "youtube"),
        ("TIKTOK", "https://www.tiktok.com/@someone/video/7234567890123456789", "tiktok"),
    ],
)
def test_a_submission_accepts_aliases_and_any_letter_case(
    api: APIClient, world: World, platform: str, url: str, slug: str
) -> None:
    campaign = factories.campaign(platforms=("x", "youtube", "tiktok"), client=world.client)
    body = submission(campaign, platform=platform, post_url=url)
    response = api.post("/api/v1/submissions/", body, format="json", **bearer(world.owner_key))
    assert response.status_code == 201, response.content
    assert Post.objects.get(pk=response.json()["post_id"]).platform.slug == slug
    listed = api.get("/api/v1/submissions/", {"platform": platform}, **bearer(world.owner_key))
    assert [p["post_id"] for p in listed.json()["results"]] == [response.json()["post_id"]]


@pytest.mark.django_db
@pytest.mark.parametrize("where", ["body", "filter"])
def test_an_unknown_platform_lists_the_accepted_names(api: APIClient, world: World, where: str) -> None:
    if where == "body":
        body = submission(world.campaign, platform="myspace")
        response = api.post("/api/v1/submissions/", body, format="json", **bearer(world.owner_key))
    else:
        response = api.get("/api/v1/submissions/", {"platform": "myspace"}, **bearer(world.owner_key))
    assert response.status_code == 400
    (message,) = response.json()["error"]["fields"]["platform"]
    assert "reddit, instagram, tiktok, youtube, x, meta" in message
    assert "any letter case" in message and "twitter means x" in message
    assert "myspace" not in message  # the input is never echoed back


# --- 13d: the document states what the API enforces -----------------------------------------------


def _parameters(document: dict[str, Any], path: str, method: str = "get") -> dict[str, dict[str, Any]]:
    return {p["name"]: p["schema"] for p in document["paths"][path][method].get("parameters", [])}


@pytest.mark.django_db
def test_the_document_declares_the_bounds_of_ids_pages_platforms_and_bodies(client: Any) -> None:
    document = json.loads(client.get("/api/schema/?format=json").content)
    # OpenAPI 3.1 (full JSON Schema: patternProperties for evidence keys), valid against its meta-schema.
    assert document["openapi"] == "3.1.0"
    validate_schema(document)
    listing = _parameters(document, "/api/v1/submissions/")
    assert listing["campaign_id"]["minimum"] == 1 and listing["campaign_id"]["maximum"] == 2**63 - 1
    assert listing["limit"] == {"type": "integer", "minimum": 1}
    assert re.fullmatch(listing["platform"]["pattern"], "TwItTeR")
    assert not re.fullmatch(listing["platform"]["pattern"], "myspace")
    assert _parameters(document, "/api/v1/campaigns/{campaign_id}/reports/")["affiliate_id"]["minimum"] == 1
    schemas = document["components"]["schemas"]
    create = schemas["SubmissionCreateInputRequest"]["properties"]
    assert create["campaign_id"]["minimum"] == 1
    assert create["claimed_views"]["minimum"] == 0 and create["claimed_views"]["maximum"] == 10**12
    assert create["post_url"]["maxLength"] == 2048 and create["post_url"]["minLength"] == 1
    run = schemas["ReconciliationRunInputRequest"]
    assert (run["minProperties"], run["maxProperties"], run["additionalProperties"]) == (1, 1, False)
    for item in document["paths"].values():
        for operation in item.values():
            if "requestBody" in operation:
                assert operation["requestBody"]["required"] is True


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params",
    [
        {"campaign_id": "0"},
        {"limit": "0"},
        {"limit": "-1"},
        {"limit": "ten"},
        {"limit": ""},
        {"platform": ""},
        {"status": ""},
        {"cursor": ""},
        # A well-formed cursor whose position is not a timestamp reached the database: a 500.
        {"cursor": base64.b64encode(b"p=not-a-time").decode()},
        {"cursor": base64.b64encode(b"p=2026-01-01 00:00:00+99:00").decode()},
    ],
)
def test_values_outside_the_documented_bounds_are_a_400_naming_the_parameter(
    api: APIClient, world: World, params: dict[str, str]
) -> None:
    response = api.get("/api/v1/submissions/", params, **bearer(world.owner_key))
    assert response.status_code == 400, response.content
    assert set(response.json()["error"]["fields"]) == set(params)


@pytest.mark.django_db
def test_a_limit_above_the_maximum_gives_the_maximum(api: APIClient, world: World) -> None:
    assert api.get("/api/v1/submissions/", {"limit": "1000"}, **bearer(world.owner_key)).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("evidence", "accepted"),
    [
        ({"Screenshot_URL": "HTTPS://img.example.com/1.png"}, True),
        ({"links_url": ["https://a.example/1", "http://b.example/2?x=1#y"]}, True),
        ({"note": "line one\nline two"}, True),
        ({"url": "https://exa mple.com/"}, False),
        ({"url": "https:///path-only"}, False),
        ({"url": "https://user@example.com/"}, False),
        ({"url": "https://example.com/\n"}, False),
    ],
)
def test_evidence_urls_follow_the_documented_pattern(
    api: APIClient, world: World, evidence: dict[str, Any], accepted: bool
) -> None:
    body = submission(world.campaign, f"ev{abs(hash(json.dumps(evidence))) % 10**8}", evidence=evidence)
    response = api.post("/api/v1/submissions/", body, format="json", **bearer(world.owner_key))
    assert response.status_code == (201 if accepted else 400), response.content


# --- 13c: Swagger UI from our static files ----------------------------------------------------------


def _asset_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)


@pytest.mark.django_db
def test_the_docs_page_loads_only_local_static_files(client: Any) -> None:
    html = client.get("/api/docs/").content.decode()
    assets = _asset_urls(html)
    assert any(url.endswith("swagger-ui-bundle.js") for url in assets), assets
    for url in assets:
        assert url.startswith("/" + settings.STATIC_URL.lstrip("/")), url
    assert not re.search(r"https?://|//cdn", html.replace("http://testserver", "")), "a remote URL in the page"


# --- live: gunicorn, requests -----------------------------------------------------------------------


def _database_url() -> str:
    db = connection.settings_dict
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


@pytest.fixture(scope="module")
def live(django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    broker = RedisServer()  # private: nothing here reaches a queue a worker elsewhere might consume
    var_dir: Path = tmp_path_factory.mktemp("var")
    env = {"VAR_DIR": str(var_dir), "CELERY_BROKER_URL": broker.url(), "REDIS_URL": settings.REDIS_URL}
    # As the Dockerfile and `make run` do: whitenoise serves what collectstatic gathered.
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT, env={**os.environ, "DJANGO_SETTINGS_MODULE": "reconcile_project.settings", **env},
        check=True, timeout=120,
    )  # fmt: skip
    with django_db_blocker.unblock():
        database_url = _database_url()
    app = Gunicorn(var_dir, database_url=database_url, env=env, workers=1, threads=2)
    app.start()
    yield app
    app.stop()
    broker.stop()
    time.sleep(0.2)  # let the worker's connections go before the test database is flushed or dropped


@pytest.mark.integration
def test_live_post_without_slash_creates_the_claim(transactional_db: None, live: Gunicorn) -> None:
    world_campaign = factories.campaign(platforms=("reddit",))
    affiliate, key = affiliate_with_key()
    base = f"http://127.0.0.1:{live.port}"
    body = submission(world_campaign, "livenoslash")
    response = requests.post(
        f"{base}/api/v1/submissions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert response.history == [], [r.status_code for r in response.history]  # no redirect was followed
    assert response.status_code == 201, (response.status_code, response.text[:500], live.output()[-2000:])
    assert Post.objects.filter(pk=response.json()["post_id"], affiliate=affiliate).exists()
    unknown = requests.post(f"{base}/api/v1/nothing", json=body, timeout=30)
    assert (unknown.status_code, unknown.history, unknown.json()["error"]["code"]) == (404, [], "not_found")


@pytest.mark.integration
def test_live_docs_page_and_its_static_files_are_served_by_the_app(live: Gunicorn) -> None:
    base = f"http://127.0.0.1:{live.port}"
    page = requests.get(f"{base}/api/docs/", timeout=30)
    assert page.status_code == 200
    assets = _asset_urls(page.text)
    assert len(assets) >= 3, assets
    for url in assets:
        assert url.startswith("/static/"), url
        served = requests.get(base + url, timeout=30)
        assert served.status_code == 200 and served.content, (url, served.status_code)


@pytest.mark.django_db
@pytest.mark.parametrize(("value", "accepted"), [(3.0, True), (1e3, True), (3.5, False), ("3", False), (True, False)])
def test_a_count_is_any_json_number_without_a_fraction_as_openapi_3_1_reads_integer(
    api: APIClient, world: World, value: Any, accepted: bool
) -> None:
    body = submission(world.campaign, f"int{str(value).replace('.', 'x')}", claimed_clicks=value)
    response = api.post("/api/v1/submissions/", body, format="json", **bearer(world.owner_key))
    assert response.status_code == (201 if accepted else 400), response.content


@pytest.mark.django_db
def test_paging_forward_and_back_with_the_checked_cursors_sees_every_post_once(api: APIClient, world: World) -> None:
    key = bearer(world.owner_key)
    for n in range(4):
        assert (
            api.post("/api/v1/submissions/", submission(world.campaign, f"pg{n}"), format="json", **key).status_code
            == 201
        )
    forward: list[int] = []
    page = api.get("/api/v1/submissions/", {"limit": 1}, **key).json()
    forward += [p["post_id"] for p in page["results"]]
    while page["next"]:
        page = api.get(page["next"], **key).json()
        forward += [p["post_id"] for p in page["results"]]
    backward = [p["post_id"] for p in page["results"]]
    while page["previous"]:
        page = api.get(page["previous"], **key).json()
        backward += [p["post_id"] for p in page["results"]]
    assert len(forward) == 4 and forward == sorted(forward, reverse=True)
    assert backward == forward[::-1]

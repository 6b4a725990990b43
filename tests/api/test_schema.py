"""The OpenAPI document, the Swagger UI page, and a schemathesis run against the document.

The run loads ``/api/schema/`` from the Django WSGI app in-process and, for every operation, sends
hypothesis-generated requests (schema-valid and schema-violating ones, bounded) with a valid key of the
right kind, against a world with real ids. It fails on any 5xx, on any response the document does
not describe (status, content type, body schema, headers), on a schema-valid request the API refuses
(positive data acceptance: the document must declare every bound the API enforces) and on a
schema-violating request it accepts (negative data rejection).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from notifications.models import WebhookSubscription
from platforms.links import platform_slug
from reconcile_project.config import RateLimitSettings
from tests import factories
from tests.api.conftest import World, bearer, make_world, submission

pytestmark = pytest.mark.django_db

EXAMPLES_PER_OPERATION = {GenerationMode.POSITIVE: 30, GenerationMode.NEGATIVE: 20}
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    positive_data_acceptance,
    negative_data_rejection,
]
#: Stricter than schemathesis' defaults: no redirect (a 301 drops a POST's body), and a 5xx is never an
#: acceptable answer to anything (not_a_server_error reports those on their own).
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "404", "409", "429"]},
            "negative_data_rejection": {
                "expected-statuses": ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "429"]
            },
        }
    }
)


@contextmanager
def in_process_wsgi() -> Iterator[WSGIHandler]:
    # Django closes "old" connections at each request's start and end; in-process, inside the test's
    # transaction, that would close the test's own connection (Django's test Client does the same, and
    # reconnects them after each of its requests: so no test Client call inside this block).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield WSGIHandler()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def generous_limits(settings: Any) -> None:
    settings.RATE_LIMIT_SETTINGS = RateLimitSettings.model_validate(
        {"submission": "100000/hour", "query": "100000/hour", "staff_run": "100000/hour"}
    )
    settings.NOTIFICATIONS = settings.NOTIFICATIONS.model_copy(update={"max_subscriptions_per_client": 100000})


def test_schema_document_is_served_and_valid(client: Any) -> None:
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    document = json.loads(response.content)
    assert document["openapi"].startswith("3.")
    paths = set(document["paths"])
    assert {
        "/api/v1/submissions/",
        "/api/v1/submissions/{post_id}/metrics",
        "/api/v1/reports/{report_id}",
        "/api/v1/affiliates/me",
        "/api/v1/campaigns/",
        "/api/v1/campaigns/{campaign_id}",
        "/api/v1/campaigns/{campaign_id}/reports/",
        "/api/v1/campaigns/{campaign_id}/statement",
        "/api/v1/reconciliation/run",
        "/api/v1/rules/simulate",
        "/api/v1/alerts/",
        "/api/v1/alerts/{alert_id}",
        "/api/v1/alerts/{alert_id}/acknowledge",
        "/api/v1/alerts/{alert_id}/resolve",
        "/api/v1/alerts/{alert_id}/reopen",
        "/api/v1/webhooks/",
        "/api/v1/webhooks/{webhook_id}",
    } <= paths
    assert document["components"]["securitySchemes"]["BearerApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "<prefix>.<secret>",
        "description": document["components"]["securitySchemes"]["BearerApiKey"]["description"],
    }
    for path, item in document["paths"].items():
        for method, operation in item.items():
            documented = set(operation["responses"])
            assert {"401", "403", "429", "500"} <= documented, (method, path)
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert response["content"]["application/json"]["examples"], (method, path, status)


def test_schema_is_public_even_with_a_bad_key(client: Any) -> None:
    assert client.get("/api/schema/", HTTP_AUTHORIZATION="Bearer nope.nope").status_code == 200


def test_swagger_ui_page_renders(client: Any) -> None:
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
    assert b"/api/schema/" in response.content


def _key_for(path: str, world: World) -> str:
    if path.startswith(("/api/v1/campaigns", "/api/v1/webhooks")):
        return world.client_key
    if path.startswith(("/api/v1/reconciliation", "/api/v1/rules", "/api/v1/alerts")) or path.endswith("/export"):
        return world.staff_key
    return world.owner_key


def test_schemathesis_finds_no_server_error_and_no_schema_violation(generous_limits: None, api: Any) -> None:
    world = make_world()
    factories.campaign(platforms=("reddit",), client=world.client)  # two campaigns: a second page
    created = [
        api.post("/api/v1/submissions/", submission(world.campaign, n), format="json", **bearer(world.owner_key))
        for n in ("st1", "st2")
    ]
    assert [r.status_code for r in created] == [201, 201]
    alerts = [factories.alert(report_id=r.json()["report_id"], affiliate=world.owner) for r in created]
    real_ids = {
        "post_id": created[0].json()["post_id"],
        "report_id": created[0].json()["report_id"],
        "campaign_id": world.campaign.pk,
        "affiliate_id": world.owner.pk,
        "alert_id": alerts[0].pk,
        "webhook_id": WebhookSubscription.objects.create(client=world.client, url="https://example.com/h").pk,
    }
    # A cursor is a reference the API issued, like an id: positive cases page with real ones.
    cursors = {
        path: _next_cursor(api, path.format(**real_ids), _key_for(path, world))
        for path in (
            "/api/v1/submissions/",
            "/api/v1/campaigns/",
            "/api/v1/campaigns/{campaign_id}/reports/",
            "/api/v1/alerts/",
        )
    }

    with in_process_wsgi() as wsgi_app:
        schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", wsgi_app, config=CONFIG)
        seen = _fuzz(schema, world, real_ids, cursors)

    # Every operation was reached and succeeded at least once (not only 4xx).
    assert len(seen) == 23, sorted(seen)
    for label, statuses in seen.items():
        assert statuses & {200, 201, 202, 204}, (label, statuses)


def _next_cursor(api: Any, path: str, key: str) -> str:
    response = api.get(path, {"limit": 1}, **bearer(key))
    assert response.status_code == 200 and response.json()["next"], (path, response.content)
    return parse_qs(urlsplit(response.json()["next"]).query)["cursor"][0]


def _steered(operation: Any, world: World, counter: Iterator[int]) -> Callable[[Any], Any] | None:
    """Bodies that name objects get objects that exist, so the success responses are checked too.

    What the document cannot say (which campaign ids exist, that a post URL names a post of ``platform``)
    is all that is replaced; every other generated field is sent as generated.
    """
    if operation.label == "POST /api/v1/submissions/":

        def submission_body(case: Any) -> Any:
            n = next(counter)
            body = dict(case.body)
            if platform_slug(body.get("platform")) == "youtube":
                body["post_url"] = f"https://youtu.be/fuzz{n:07d}"
            else:
                body["platform"] = body["platform"] if platform_slug(body.get("platform")) == "reddit" else "reddit"
                body["post_url"] = f"https://www.reddit.com/r/fuzz/comments/f{n}/"
            case.body = {**body, "campaign_id": world.campaign.pk}
            return case

        return submission_body
    if operation.label == "POST /api/v1/submissions/bulk":

        def bulk_body(case: Any) -> Any:
            # The document says "a CSV or JSON-lines file"; it cannot say which text is one.
            url = f"https://www.reddit.com/r/fuzz/comments/b{next(counter)}/"
            row = {"campaign_id": world.campaign.pk, "post_url": url, "claimed_views": 10, "claimed_clicks": 1}
            row["claimed_conversions"] = 0
            if "csv" in (case.media_type or ""):
                case.body = ",".join(row) + "\n" + ",".join(str(v) for v in row.values()) + "\n"
            else:
                case.body = json.dumps(row) + "\n"
            return case

        return bulk_body
    if operation.label == "POST /api/v1/webhooks/":

        def webhook_body(case: Any) -> Any:
            # The document says "a URL"; it cannot say which hosts resolve (the API checks the address).
            case.body = {**case.body, "url": f"http://127.0.0.1:9/hooks/{next(counter)}"}
            return case

        return webhook_body
    if operation.label == "POST /api/v1/reconciliation/run":

        def run_body(case: Any) -> Any:
            case.body = {"campaign_id": world.campaign.pk}
            return case

        return run_body
    if operation.label == "POST /api/v1/rules/simulate":

        def simulate_body(case: Any) -> Any:
            # A real campaign; which settings exist and what values they take the document cannot say.
            body = {k: v for k, v in (case.body or {}).items() if k not in ("set", "overrides")}
            case.body = {**body, "campaign_id": world.campaign.pk}
            return case

        return simulate_body
    return None


def _fresh_references(cursors: dict[str, str], counter: Iterator[int]) -> Callable[[Any], Any]:
    """A positive case's cursor is one the API issued, and its Idempotency-Key is not reused.

    A key is single-use by contract (the same key with another body is a documented 422); hypothesis
    repeats short values, so each case gets its own.
    """

    def fresh(case: Any) -> Any:
        if case.query and case.operation.path.endswith("/statement") and {"from", "to"} & set(case.query):
            # from <= to and at most a year apart: a rule across two parameters the document states in
            # words only. A generated pair is replaced by a valid one (the bounds have their own tests).
            case.query = {**case.query, "from": "2026-01-01", "to": "2026-01-31T12:00:00+01:00"}
        if case.query and "cursor" in case.query:
            case.query = {**case.query, "cursor": cursors[case.operation.path]}
        if case.headers and "Idempotency-Key" in case.headers:
            case.headers = {**case.headers, "Idempotency-Key": f"fuzz-{next(counter)}"}
        return case

    return fresh


def _fuzz(schema: Any, world: World, real_ids: dict[str, int], cursors: dict[str, str]) -> dict[str, set[int]]:
    seen: dict[str, set[int]] = {}
    counter = itertools.count(1)
    fresh = _fresh_references(cursors, counter)
    for result in schema.get_all_operations():
        operation = result.ok()
        # identity: the in-process WSGI client does not gunzip (GZipMiddleware compresses larger bodies).
        headers = {"Authorization": f"Bearer {_key_for(operation.path, world)}", "Accept-Encoding": "identity"}
        path_params = {name: value for name, value in real_ids.items() if "{" + name + "}" in operation.path}
        steer = _steered(operation, world, counter)
        positive = operation.as_strategy(headers=headers).map(fresh)
        strategies = [
            # A body naming objects is always steered to real ones (a random campaign_id or post URL is
            # refused for reasons no schema can state); any other positive case is sent as generated.
            (GenerationMode.POSITIVE, positive.map(steer) if steer is not None else positive),
            (GenerationMode.NEGATIVE, operation.as_strategy(generation_mode=GenerationMode.NEGATIVE, headers=headers)),
        ]
        if path_params:
            # Real ids: the positive cases reach existing objects (200/201, not only 404).
            strategies.append(
                (
                    GenerationMode.POSITIVE,
                    operation.as_strategy(headers=headers, path_parameters=path_params).map(fresh),
                )
            )

        for mode, strategy in strategies:

            @given(case=strategy)
            @hypothesis_settings(
                max_examples=EXAMPLES_PER_OPERATION[mode],
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def run(case: schemathesis.Case) -> None:
                response = case.call()
                seen.setdefault(case.operation.label, set()).add(response.status_code)
                case.validate_response(response, checks=CHECKS)

            try:
                run()
            except Unsatisfiable:
                # Negative mode on an operation with nothing to negate (no parameters, no body).
                assert mode is GenerationMode.NEGATIVE, operation.label
    return seen

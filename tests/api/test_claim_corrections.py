"""A claim is never edited or deleted through the API: a correction is a new claim on the same post."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from reconciliation.api import urls
from reconciliation.models import AffiliateReport
from tests.api.conftest import World, bearer, submission

pytestmark = pytest.mark.django_db


def test_no_api_route_edits_or_deletes_and_the_only_put_adds_a_claim() -> None:
    writers = {
        pattern.name: sorted(m for m in ("put", "patch", "delete") if hasattr(pattern.callback.view_class, m))
        for pattern in urls.urlpatterns
        # Unnamed patterns are the other slash spelling of a named one (the same view).
        if hasattr(pattern.callback, "view_class") and pattern.name
    }
    # Ending a webhook subscription deactivates it: the row and its deliveries are kept.
    assert {name: methods for name, methods in writers.items() if methods} == {
        "submission-metrics": ["put"],
        "webhook-detail": ["delete"],
    }


def test_a_correction_is_a_new_claim_and_the_first_one_is_kept(api: APIClient, world: World) -> None:
    created = api.post("/api/v1/submissions/", submission(world.campaign), format="json", **bearer(world.owner_key))
    assert created.status_code == 201, created.content
    first_id, post_id = created.json()["report_id"], created.json()["post_id"]

    for method in (api.put, api.patch, api.delete):
        response = method(f"/api/v1/reports/{first_id}", {"claimed_views": 1}, format="json", **bearer(world.owner_key))
        assert response.status_code == 405
    assert api.delete(f"/api/v1/submissions/{post_id}/metrics", **bearer(world.owner_key)).status_code == 405

    corrected = {"claimed_views": 1200, "claimed_clicks": 55, "claimed_conversions": 6}
    response = api.put(f"/api/v1/submissions/{post_id}/metrics", corrected, format="json", **bearer(world.owner_key))
    assert response.status_code == 201, response.content
    assert response.json()["report_id"] != first_id

    first = AffiliateReport.objects.get(pk=first_id)
    assert (first.claimed_views, first.claimed_clicks, first.claimed_conversions) == (1000, 50, 5)
    assert AffiliateReport.objects.filter(post_id=post_id).count() == 2

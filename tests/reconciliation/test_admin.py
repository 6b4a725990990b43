"""The admin: every page answers (never a 500), and evidence is shown but never added, edited or deleted."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import models
from django.test import Client as WebClient
from django.urls import reverse
from django.utils import timezone
from rest_framework_api_key.models import APIKey

from alerts.models import Alert
from chat.models import ChatIdentity
from notifications.models import Delivery, DeliveryAttempt, Destination, WebhookSubscription
from reconciliation.models import (
    Affiliate,
    AffiliateAPIKey,
    AffiliateReport,
    AffiliateRiskAction,
    ClientAPIKey,
    PlatformReport,
    Post,
    ReconciliationAttempt,
    ReconciliationLog,
    ShadowVerdict,
    TrustEvent,
)
from reconciliation.services.affiliates import affiliate_throttle
from tests import factories

pytestmark = pytest.mark.django_db

#: What the engine and the submission service write: the admin has no add, edit or delete for them.
#: Recorded decisions about affiliates (who, when, why) are evidence too.
EVIDENCE: tuple[type[models.Model], ...] = (
    Post,
    AffiliateReport,
    ReconciliationLog,
    ReconciliationAttempt,
    PlatformReport,
    TrustEvent,
    Alert,
    AffiliateRiskAction,
    ShadowVerdict,
    Delivery,
    WebhookSubscription,
)
REGISTERED = sorted(admin.site._registry, key=lambda m: m._meta.label)


@pytest.fixture
def superuser() -> Any:
    return get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-1")


@pytest.fixture
def web(superuser: Any) -> WebClient:
    client = WebClient()
    client.force_login(superuser)
    return client


@pytest.fixture
def trail(superuser: Any) -> dict[str, Any]:
    """At least one row of every model the admin shows, linked as the engine links them."""
    report = factories.report()
    attempt = factories.attempt(report)
    client = report.post.campaign.client
    ClientAPIKey.objects.create_key(name="client key", client=client)
    AffiliateAPIKey.objects.create_key(name="affiliate key", affiliate=report.post.affiliate)
    APIKey.objects.create_key(name="plain key")
    Group.objects.create(name="analysts")
    ChatIdentity.objects.create(
        provider="discord",
        external_user_id="80351110224678912",
        affiliate=report.post.affiliate,
        linked_at=timezone.now(),
    )
    affiliate_throttle(affiliate=report.post.affiliate, user=superuser, rate="1/hour", reason="trail")
    ShadowVerdict.objects.create(
        attempt=attempt,
        report=report,
        campaign=report.post.campaign,
        live_status="MATCHED",
        live_fingerprint="a" * 64,
        status="DISCREPANCY_LOW",
        level="LOW",
        fingerprint="b" * 64,
        agrees=False,
        created_at=timezone.now(),
    )
    alert = factories.alert(report=report, affiliate=report.post.affiliate, platform=report.post.platform)
    destination = Destination.objects.create(name="ops hook", kind="WEBHOOK", url="https://hooks.example.com/x")
    WebhookSubscription.objects.create(client=client, url="https://erp.example.com/hook", events=["alert.created"])
    delivery = Delivery.objects.create(
        event_type="alert.created", destination=destination, alert=alert, next_attempt_at=timezone.now()
    )
    DeliveryAttempt.objects.create(delivery=delivery, number=1, started_at=timezone.now(), outcome="HTTP_ERROR")
    return {
        "report": report,
        "affiliate": report.post.affiliate,
        "snapshot": factories.snapshot(attempt, views=900, clicks=40, conversions=4),
        "trust_event": factories.trust_event(attempt),
        "alert": alert,
    }


def url(model: type[models.Model], page: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{page}", args=args)


@pytest.mark.parametrize("model", REGISTERED, ids=lambda m: m._meta.label)
def test_every_admin_page_answers_and_evidence_pages_refuse_add_and_delete(
    web: WebClient, trail: dict[str, Any], model: type[models.Model]
) -> None:
    obj = model._default_manager.order_by("pk").first()
    assert obj is not None, f"the trail fixture builds no {model._meta.label}: add one so its pages are walked"
    evidence = model in EVIDENCE
    model_admin = admin.site._registry[model]

    pages = {
        "changelist": (url(model, "changelist"), 200),
        "add": (url(model, "add"), 403 if evidence else 200),
        "change": (url(model, "change", obj.pk), 200),
        "delete": (url(model, "delete", obj.pk), 403 if evidence else 200),
        "history": (url(model, "history", obj.pk), 200),
    }
    if model_admin.search_fields:
        pages["search"] = (url(model, "changelist") + "?q=1", 200)
    answers = {name: web.get(path).status_code for name, (path, _) in pages.items()}
    assert answers == {name: expected for name, (_, expected) in pages.items()}


@pytest.mark.parametrize("model", EVIDENCE, ids=lambda m: m._meta.label)
def test_evidence_change_page_is_view_only_and_has_no_bulk_delete(
    web: WebClient, trail: dict[str, Any], model: type[models.Model]
) -> None:
    obj = model._default_manager.order_by("pk").first()
    assert obj is not None
    page = web.get(url(model, "change", obj.pk))
    assert page.status_code == 200
    assert not page.context["has_change_permission"] and page.context["adminform"].form.fields == {}
    action_form = web.get(url(model, "changelist")).context["action_form"]
    actions = dict(action_form.fields["action"].choices) if action_form else {}
    assert "delete_selected" not in actions


def test_claimed_numbers_cannot_be_edited(web: WebClient, trail: dict[str, Any]) -> None:
    report = trail["report"]
    response = web.post(
        url(AffiliateReport, "change", report.pk),
        {"post": report.post_id, "claimed_views": 1, "claimed_clicks": 1, "claimed_conversions": 1},
    )
    assert response.status_code == 403
    report.refresh_from_db()
    assert (report.claimed_views, report.claimed_clicks, report.claimed_conversions) == (1000, 50, 5)


def test_a_posts_url_affiliate_and_campaign_cannot_be_edited(web: WebClient, trail: dict[str, Any]) -> None:
    post = trail["report"].post
    other = factories.post()
    response = web.post(
        url(Post, "change", post.pk),
        {
            "campaign": other.campaign_id,
            "affiliate": other.affiliate_id,
            "platform": post.platform_id,
            "url": "https://reddit.com/comments/elsewhere",
            "platform_post_id": post.platform_post_id,
        },
    )
    assert response.status_code == 403
    before = (post.url, post.affiliate_id, post.campaign_id)
    post.refresh_from_db()
    assert (post.url, post.affiliate_id, post.campaign_id) == before


def test_an_alert_cannot_be_added_or_its_status_edited(web: WebClient, trail: dict[str, Any]) -> None:
    alert = trail["alert"]
    assert web.post(url(Alert, "add"), {"alert_type": "OVERCLAIM", "title": "made up"}).status_code == 403
    response = web.post(url(Alert, "change", alert.pk), {"status": Alert.Status.RESOLVED, "resolution_notes": "x"})
    assert response.status_code == 403
    alert.refresh_from_db()
    assert alert.status == Alert.Status.OPEN and alert.resolution_notes == ""
    assert Alert.objects.count() == 1


def test_deleting_a_report_is_refused_one_by_one_and_in_bulk(web: WebClient, trail: dict[str, Any]) -> None:
    report = trail["report"]
    assert web.post(url(AffiliateReport, "delete", report.pk), {"post": "yes"}).status_code == 403
    web.post(
        url(AffiliateReport, "changelist"),
        {"action": "delete_selected", "_selected_action": [report.pk], "post": "yes"},
    )
    assert AffiliateReport.objects.filter(pk=report.pk).exists()
    assert TrustEvent.objects.filter(report=report).exists() and Alert.objects.filter(report=report).exists()


def test_deleting_an_affiliate_with_evidence_is_refused_and_names_what_protects_it(
    web: WebClient, trail: dict[str, Any]
) -> None:
    affiliate = trail["affiliate"]
    response = web.post(url(Affiliate, "delete", affiliate.pk), {"post": "yes"})
    assert response.status_code == 200
    assert response.context["protected"]  # Django's "Cannot delete …" page lists the evidence
    assert Affiliate.objects.filter(pk=affiliate.pk).exists()
    assert (
        TrustEvent.objects.filter(affiliate=affiliate).exists() and Alert.objects.filter(affiliate=affiliate).exists()
    )


def test_an_affiliate_without_evidence_can_still_be_deleted(web: WebClient, trail: dict[str, Any]) -> None:
    affiliate = factories.affiliate()
    AffiliateAPIKey.objects.create_key(name="k", affiliate=affiliate)
    response = web.post(url(Affiliate, "delete", affiliate.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Affiliate.objects.filter(pk=affiliate.pk).exists()


def act(web: WebClient, action: str, *alerts: models.Model) -> Any:
    return web.post(url(Alert, "changelist"), {"action": action, "_selected_action": [a.pk for a in alerts]})


def test_acknowledge_and_resolve_actions_move_the_alert_through_its_lifecycle(
    web: WebClient, trail: dict[str, Any], superuser: Any
) -> None:
    alert = trail["alert"]
    assert act(web, "acknowledge", alert).status_code == 302
    alert.refresh_from_db()
    assert alert.status == Alert.Status.ACKNOWLEDGED and alert.acknowledged_by == superuser
    assert alert.acknowledged_at is not None

    act(web, "acknowledge", alert)  # a second acknowledgement changes nothing
    # The queue lists open alerts unless told otherwise: an acknowledged one is acted on from "all".
    queue = url(Alert, "changelist") + "?status=all"
    asked = web.post(queue, {"action": "resolve", "_selected_action": [alert.pk]})
    assert asked.status_code == 200 and b"<textarea" in asked.content  # resolving first asks for a note
    alert.refresh_from_db()
    assert alert.status == Alert.Status.ACKNOWLEDGED
    web.post(
        queue,
        {"action": "resolve", "_selected_action": [alert.pk], "apply": "yes", "note": "Checked: a real over-claim."},
    )
    alert.refresh_from_db()
    assert alert.status == Alert.Status.RESOLVED and alert.resolved_by == superuser
    assert alert.resolution_notes == "Checked: a real over-claim."
    assert alert.resolved_at is not None


def test_a_view_only_analyst_sees_alerts_but_cannot_decide_them(trail: dict[str, Any]) -> None:
    analyst = get_user_model().objects.create_user("viewer", "viewer@example.com", "pw-viewer-1", is_staff=True)
    analyst.user_permissions.add(Permission.objects.get(codename="view_alert"))
    web = WebClient()
    web.force_login(analyst)
    alert = trail["alert"]
    changelist = web.get(url(Alert, "changelist"))
    assert changelist.status_code == 200 and changelist.context["action_form"] is None
    act(web, "acknowledge", alert)
    alert.refresh_from_db()
    assert alert.status == Alert.Status.OPEN

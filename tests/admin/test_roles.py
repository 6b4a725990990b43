"""The risk_analyst and ops roles, proven through the admin's own views (not only permission flags)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from alerts.models import Alert
from reconciliation.models import AffiliateReport, PlatformReport, ReconciliationAttempt, TrustEvent
from tests import factories

pytestmark = pytest.mark.django_db


def evidence() -> dict[str, Any]:
    """One of each kind of evidence of a verdict, keyed by admin model name."""
    report = factories.report()
    attempt = factories.attempt(report)
    return {
        "affiliatereport": report,
        "post": report.post,
        "reconciliationlog": report.log,
        "reconciliationattempt": attempt,
        "platformreport": factories.snapshot(attempt),
        "trustevent": factories.trust_event(attempt),
    }


def test_setup_roles_is_idempotent_and_gives_no_delete_permission() -> None:
    call_command("setup_roles", stdout=io.StringIO())
    first = {g.name: set(g.permissions.values_list("codename", flat=True)) for g in Group.objects.all()}
    call_command("setup_roles", stdout=io.StringIO())
    second = {g.name: set(g.permissions.values_list("codename", flat=True)) for g in Group.objects.all()}
    assert first == second and set(first) == {"risk_analyst", "ops"}
    assert not [c for perms in first.values() for c in perms if c.startswith(("delete_", "add_"))]
    assert {"view_alert", "change_alert", "view_trustevent", "view_platformreport"} <= first["risk_analyst"]
    assert {"view_platform", "change_platform", "view_reconciliationattempt"} <= first["ops"]
    assert "view_affiliate" not in first["ops"]


def test_the_analyst_opens_the_alert_queue_and_every_evidence_page(analyst_client: Client) -> None:
    rows = evidence()
    factories.alert()
    assert analyst_client.get(reverse("admin:alerts_alert_changelist")).status_code == 200
    for name, obj in rows.items():
        app = "reconciliation"
        assert analyst_client.get(reverse(f"admin:{app}_{name}_changelist")).status_code == 200, name
        page = analyst_client.get(reverse(f"admin:{app}_{name}_change", args=[obj.pk]))
        assert page.status_code == 200, name
        assert b'name="_save"' not in page.content, name  # a view page, no save button


def test_the_analyst_can_neither_edit_nor_delete_evidence(analyst_client: Client) -> None:
    rows = evidence()
    alert = factories.alert(report=rows["affiliatereport"])
    targets = {**{f"reconciliation_{name}": obj for name, obj in rows.items()}, "alerts_alert": alert}
    for prefix, obj in targets.items():
        change = analyst_client.post(reverse(f"admin:{prefix}_change", args=[obj.pk]), {"claimed_views": 1})
        delete = analyst_client.post(reverse(f"admin:{prefix}_delete", args=[obj.pk]), {"post": "yes"})
        add = analyst_client.post(reverse(f"admin:{prefix}_add"), {})
        assert (change.status_code, delete.status_code, add.status_code) == (403, 403, 403), prefix
    # Nor through a changelist's bulk delete action.
    for prefix, obj in targets.items():
        analyst_client.post(
            reverse(f"admin:{prefix}_changelist") + "?status=all",
            {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"},
        )
    report = AffiliateReport.objects.get(pk=rows["affiliatereport"].pk)
    assert report.claimed_views == 1000
    assert Alert.objects.filter(pk=alert.pk).exists()
    assert ReconciliationAttempt.objects.count() == 1
    assert PlatformReport.objects.count() == 1 and TrustEvent.objects.count() == 1


def test_the_analyst_cannot_add_or_delete_alerts_but_can_triage_them(analyst_client: Client, analyst: Any) -> None:
    alert = factories.alert()
    changelist = reverse("admin:alerts_alert_changelist")
    page = analyst_client.get(changelist)
    actions = {value for value, _ in page.context["action_form"].fields["action"].choices if value}
    assert actions == {"acknowledge", "resolve", "reopen", "assign_to_me", "assign_to_analyst"}
    assert analyst_client.get(reverse("admin:alerts_alert_add")).status_code == 403
    response = analyst_client.post(changelist, {"action": "acknowledge", "_selected_action": [alert.pk]})
    assert response.status_code == 302
    alert.refresh_from_db()
    assert (alert.status, alert.acknowledged_by) == ("ACKNOWLEDGED", analyst)


def test_ops_changes_a_platform_config_but_not_affiliates_or_alerts(ops_client: Client) -> None:
    platform = factories.platform("reddit")
    assert ops_client.get(reverse("admin:reconciliation_affiliate_changelist")).status_code == 403
    assert ops_client.get(reverse("admin:reconciliation_reconciliationattempt_changelist")).status_code == 200
    response = ops_client.post(
        reverse("admin:platforms_platform_change", args=[platform.pk]),
        {"slug": "reddit", "name": "Reddit", "api_base_url": "", "is_active": "on", "config": '{"quota_rps": 7}'},
    )
    assert response.status_code == 302, response.content[:2000]
    platform.refresh_from_db()
    assert platform.config == {"quota_rps": 7}
    # The audit trail: who, before and after.
    latest = platform.history.first()
    assert latest.history_user is not None and latest.history_user.username == "ops"
    before = latest.prev_record.config if latest.prev_record else None
    changes = [(c.field, c.new) for c in latest.diff_against(latest.prev_record).changes]
    assert (before, changes) == (platform.history.last().config, [("config", {"quota_rps": 7})])
    # A triage action needs alerts.change_alert, which ops does not have.
    alert = factories.alert()
    ops_client.post(reverse("admin:alerts_alert_changelist"), {"action": "acknowledge", "_selected_action": [alert.pk]})
    alert.refresh_from_db()
    assert alert.status == "OPEN"


def test_seed_demo_creates_analyst_and_ops_logins_that_are_not_superusers(settings: Any, tmp_path: Any) -> None:
    settings.VAR_DIR = tmp_path
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    call_command("seed_demo", stdout=io.StringIO())  # idempotent
    users = get_user_model().objects
    analyst, ops = users.get(username="analyst"), users.get(username="ops")
    assert analyst.is_staff and not analyst.is_superuser and analyst.check_password("demo-analyst-pass")
    assert list(analyst.groups.values_list("name", flat=True)) == ["risk_analyst"]
    assert ops.is_staff and not ops.is_superuser and list(ops.groups.values_list("name", flat=True)) == ["ops"]
    assert "analyst login: analyst / demo-analyst-pass" in out.getvalue()
    assert json.loads((tmp_path / "demo_keys.json").read_text())


def test_the_analyst_cannot_edit_an_affiliates_profile_only_decide_about_it(analyst_client: Client) -> None:
    affiliate = factories.affiliate(name="Careful Creator", email="careful@example.com")
    page = reverse("admin:reconciliation_affiliate_change", args=[affiliate.pk])
    assert analyst_client.get(page).status_code == 200
    analyst_client.post(page, {"name": "Renamed", "email": "other@example.com", "is_active": ""})
    affiliate.refresh_from_db()
    assert (affiliate.name, affiliate.email, affiliate.is_active) == ("Careful Creator", "careful@example.com", True)
    # The recorded decision is the way to change the active flag.
    decide = reverse("admin:reconciliation_affiliate_decide", args=[affiliate.pk, "suspend"])
    assert analyst_client.post(decide, {"confirm": "1", "reason": "fake views"}).status_code == 302
    affiliate.refresh_from_db()
    assert affiliate.is_active is False

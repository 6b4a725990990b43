"""The admin's roles as groups: ``risk_analyst`` and ``ops`` (README "Roles"). Safe to run again.

Each group gets exactly the permissions listed here (a permission added by hand is removed on the next
run, so the README's table stays true). What a permission lets a user do is also limited by each admin:
evidence (claims, posts, logs, attempts, snapshots, the trust ledger, alerts) has no add, change or
delete page for anybody; ``alerts.change_alert`` only enables the triage actions, which go through
``alerts.services``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from reconciliation.roles import ANALYST_GROUP, OPS_GROUP

ANALYST_VIEWS = [
    "alerts.view_alert",
    "reconciliation.view_affiliate",
    "reconciliation.view_client",
    "reconciliation.view_campaign",
    "reconciliation.view_post",
    "reconciliation.view_affiliatereport",
    "reconciliation.view_reconciliationlog",
    "reconciliation.view_reconciliationattempt",
    "reconciliation.view_platformreport",
    "reconciliation.view_trustevent",
    "reconciliation.view_affiliateriskaction",
    "reconciliation.view_shadowverdict",
    "chat.view_chatidentity",
    "platforms.view_platform",
]
ROLES: dict[str, list[str]] = {
    ANALYST_GROUP: [
        *ANALYST_VIEWS,
        # The triage actions (acknowledge, resolve, re-open, assign) and the affiliate actions (suspend,
        # throttle): never a direct edit of an alert, and no delete permission of anything.
        "alerts.change_alert",
        "reconciliation.change_affiliate",
        # Only enables "re-run reconciliation for the selected reports": logs have no change page.
        "reconciliation.change_reconciliationlog",
    ],
    OPS_GROUP: [
        "platforms.view_platform",
        "platforms.change_platform",
        "reconciliation.view_affiliatereport",
        "reconciliation.view_reconciliationlog",
        "reconciliation.view_reconciliationattempt",
        "reconciliation.change_reconciliationlog",  # re-runs (see above)
        "reconciliation.view_campaign",
        # Rule overrides and canaries: saved only after their simulation was shown (CampaignForm).
        "reconciliation.change_campaign",
        "reconciliation.view_shadowverdict",
        "alerts.view_alert",
    ],
}


def setup_roles() -> dict[str, int]:
    """Create or update the groups; how many permissions each holds."""
    counts = {}
    with transaction.atomic():
        for name, codenames in ROLES.items():
            group, _ = Group.objects.get_or_create(name=name)
            perms = []
            for dotted in codenames:
                app_label, codename = dotted.split(".")
                try:
                    perms.append(Permission.objects.get(content_type__app_label=app_label, codename=codename))
                except Permission.DoesNotExist:
                    raise CommandError(f"No permission {dotted}: run migrate first") from None
            group.permissions.set(perms)
            counts[name] = len(perms)
    return counts


class Command(BaseCommand):
    help = "Create or update the risk_analyst and ops groups (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        for name, n in setup_roles().items():
            self.stdout.write(f"  group {name}: {n} permissions")

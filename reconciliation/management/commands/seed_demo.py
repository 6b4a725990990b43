"""Idempotent demo data: the six platforms, a client, two campaigns, three affiliates, the roles and three
logins (``admin``, a superuser; ``analyst`` in risk_analyst; ``ops`` in ops), and notification destinations
and a client webhook subscription that deliver to the platform sandbox's webhook inbox.

Plaintext API keys exist only at creation. So that `make run` and `manage.py demo` can use them on every
start, the demo keys are written to ``var/demo_keys.json`` (mode 0600) — development only; the command
refuses to run with ``DJANGO_ENV=production``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from notifications.models import Destination, WebhookSubscription
from platforms.models import Platform
from reconciliation.management.commands.setup_roles import setup_roles
from reconciliation.models import Affiliate, AffiliateAPIKey, Campaign, Client, ClientAPIKey

PLATFORMS = [
    ("reddit", "Reddit", {"quota_rps": 50}),
    ("instagram", "Instagram", {"quota_rps": 50}),
    ("tiktok", "TikTok", {"quota_rps": 50}),
    ("youtube", "YouTube", {"quota_rps": 50}),
    ("x", "X", {"quota_rps": 50}),
    ("meta", "Meta", {"quota_rps": 50}),
]
CLIENT = "Acme Outdoor"
CAMPAIGNS = [
    ("Spring Launch", ["reddit", "instagram", "tiktok", "youtube", "x", "meta"]),
    ("Creator Reviews", ["youtube", "tiktok"]),
]
AFFILIATES = [
    ("Alice Creator", "alice@example.com"),
    ("Bob Reviews", "bob@example.com"),
    ("Carol Clips", "carol@example.com"),
]
NOTIFY_EVENTS = ["alert.created", "alert.resolved"]
ADMIN_USERNAME = "admin"
#: Staff logins that are not superusers: (username, group, password variable, default password).
ROLE_LOGINS = [
    ("analyst", "risk_analyst", "DEMO_ANALYST_PASSWORD", "demo-analyst-pass"),
    ("ops", "ops", "DEMO_OPS_PASSWORD", "demo-ops-pass"),
]


def keys_path() -> Path:
    return Path(settings.VAR_DIR) / "demo_keys.json"


class Command(BaseCommand):
    help = "Create (or top up) the demo data set and print its API keys and logins. Safe to run again."

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError("seed_demo is for development; refusing with DJANGO_ENV=production")
        password = os.environ.get("DEMO_ADMIN_PASSWORD", "demo-admin-pass")
        path = keys_path()
        stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        keys: dict[str, str] = {}
        with transaction.atomic():
            for slug, name, config in PLATFORMS:
                Platform.objects.get_or_create(slug=slug, defaults={"name": name, "config": config})
            client, _ = Client.objects.get_or_create(name=CLIENT, defaults={"contact_email": "ads@acme.example"})
            for name, slugs in CAMPAIGNS:
                campaign, created = Campaign.objects.get_or_create(
                    client=client, name=name, defaults={"start_date": timezone.localdate() - dt.timedelta(days=30)}
                )
                if created:
                    campaign.platforms.set(Platform.objects.filter(slug__in=slugs))
            for name, email in AFFILIATES:
                affiliate, _ = Affiliate.objects.get_or_create(email=email, defaults={"name": name})
                keys[email] = self._key(stored.get(email), AffiliateAPIKey, affiliate=affiliate, name=f"{email} demo")
            self._notifications(client)
            keys["client"] = self._key(stored.get("client"), ClientAPIKey, client=client, name=f"{CLIENT} demo")
            keys["staff"] = self._key(stored.get("staff"), ClientAPIKey, client=None, is_staff=True, name="staff demo")
            user_model = get_user_model()
            user, created = user_model.objects.get_or_create(
                username=ADMIN_USERNAME, defaults={"is_staff": True, "is_superuser": True, "email": "admin@example.com"}
            )
            if created:
                user.set_password(password)
                user.save()
            setup_roles()
            logins = [(ADMIN_USERNAME, password if created else None)]
            for username, group, variable, default in ROLE_LOGINS:
                login, login_created = user_model.objects.get_or_create(
                    username=username, defaults={"is_staff": True, "email": f"{username}@example.com"}
                )
                if login_created:
                    login.set_password(os.environ.get(variable, default))
                    login.save()
                login.groups.add(Group.objects.get(name=group))
                logins.append((username, os.environ.get(variable, default) if login_created else None))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(keys, indent=2))
        path.chmod(0o600)

        self.stdout.write(self.style.SUCCESS("Demo data ready."))
        self.stdout.write(f"  platforms: {', '.join(s for s, _, _ in PLATFORMS)}")
        for campaign in Campaign.objects.filter(client=client).order_by("id"):
            on = ",".join(campaign.platforms.order_by("slug").values_list("slug", flat=True))
            self.stdout.write(f"  campaign {campaign.pk}: {campaign.name} [{on}]")
        for email, key in keys.items():
            self.stdout.write(f"  API key {email}: {key}")
        for username, pw in logins:
            self.stdout.write(f"  {username} login: {username} / {pw or '(unchanged since it was created)'}")
        self.stdout.write(f"  keys saved to {path}")

    @staticmethod
    def _notifications(client: Client) -> None:
        """Where the demo's notifications go: the sandbox's inbox (``GET <sandbox>/_control/webhooks``)."""
        inbox = f"{settings.SANDBOX_URL}/_webhooks"
        Destination.objects.get_or_create(
            name="sandbox-ops",
            defaults={"kind": Destination.Kind.WEBHOOK, "url": f"{inbox}/sandbox-ops", "events": NOTIFY_EVENTS},
        )
        Destination.objects.get_or_create(
            name="sandbox-slack",
            defaults={"kind": Destination.Kind.SLACK, "url": f"{inbox}/sandbox-slack", "min_severity": "HIGH"},
        )
        Destination.objects.get_or_create(
            name="ops-mail", defaults={"kind": Destination.Kind.EMAIL, "recipients": "ops@example.com"}
        )
        if not WebhookSubscription.objects.filter(client=client, description="sandbox-acme").exists():
            WebhookSubscription.objects.create(
                client=client,
                url=f"{inbox}/sandbox-acme",
                events=["alert.created", "alert.resolved", "report.reconciled"],
                description="sandbox-acme",
            )

    @staticmethod
    def _key(stored: str | None, model: Any, **fields: Any) -> str:
        # Reuse the stored plaintext if it still authenticates; otherwise issue a new key.
        if stored and model.objects.is_valid(stored):
            return stored
        _, key = model.objects.create_key(**fields)
        return key

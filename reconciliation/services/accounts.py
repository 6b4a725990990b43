"""Services that create the parties of the product: clients, affiliates, campaigns and their API keys."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import cast

from django.db import transaction

from platforms.models import Platform
from reconciliation.models import Affiliate, AffiliateAPIKey, Campaign, Client, ClientAPIKey


class AccountError(ValueError):
    """Bad input to an account service; the message is fit to show to an operator."""


def client_create(*, name: str, contact_email: str = "") -> Client:
    name = name.strip()
    if not name:
        raise AccountError("a client needs a name")
    if Client.objects.filter(name=name).exists():
        raise AccountError(f"a client named {name!r} already exists")
    return Client.objects.create(name=name, contact_email=contact_email)


def client_resolve(ref: str) -> Client:
    """A client by id or by exact name."""
    qs = Client.objects.all()
    client = qs.filter(pk=int(ref)).first() if ref.isdigit() else None
    client = client or qs.filter(name=ref).first()
    if client is None:
        raise AccountError(f"no client with id or name {ref!r}")
    return client


def client_key_create(*, client: Client | None, name: str, is_staff: bool = False) -> tuple[ClientAPIKey, str]:
    """A new hashed key; the plaintext is returned once and never stored.

    A client's key (``client`` set) or a staff key (``is_staff``, no client), never both: the database
    refuses the mix (``clientkey_staff_xor_client``); this says so in words first.
    """
    if is_staff and client is not None:
        raise AccountError("a staff key belongs to no client; create it without one")
    if not is_staff and client is None:
        raise AccountError("a client key needs its client")
    obj, key = ClientAPIKey.objects.create_key(name=name, client=client, is_staff=is_staff)
    return cast(ClientAPIKey, obj), key


@transaction.atomic
def affiliate_create(*, name: str, email: str, chat_user_id: str | None = None) -> tuple[Affiliate, str]:
    """A new affiliate and its first API key (plaintext returned once)."""
    name, email = name.strip(), email.strip().lower()
    if not name:
        raise AccountError("an affiliate needs a name")
    if "@" not in email:
        raise AccountError(f"not an email address: {email!r}")
    if Affiliate.objects.filter(email=email).exists():
        raise AccountError(f"an affiliate with email {email!r} already exists")
    affiliate = Affiliate.objects.create(name=name, email=email, chat_user_id=chat_user_id or None)
    _, key = AffiliateAPIKey.objects.create_key(name=f"{email} default", affiliate=affiliate)
    return affiliate, key


def campaign_create(
    *,
    client: Client,
    name: str,
    platform_slugs: Iterable[str],
    start_date: dt.date,
    end_date: dt.date | None = None,
    rule_overrides: dict | None = None,
    recheck_interval_hours: float | None = None,
    recheck_window_days: float | None = None,
) -> Campaign:
    slugs = sorted({s.strip().lower() for s in platform_slugs if s.strip()})
    if not slugs:
        raise AccountError("a campaign needs at least one platform")
    platforms = list(Platform.objects.filter(slug__in=slugs))
    unknown = set(slugs) - {p.slug for p in platforms}
    if unknown:
        known = ", ".join(Platform.objects.values_list("slug", flat=True)) or "none (run seed_demo?)"
        raise AccountError(f"unknown platform(s) {', '.join(sorted(unknown))}; known: {known}")
    if end_date is not None and end_date < start_date:
        raise AccountError("end date is before start date")
    if Campaign.objects.filter(client=client, name=name).exists():
        raise AccountError(f"client {client} already has a campaign named {name!r}")
    campaign = Campaign(
        client=client,
        name=name,
        start_date=start_date,
        end_date=end_date,
        rule_overrides=rule_overrides or {},
        recheck_interval_hours=recheck_interval_hours,
        recheck_window_days=recheck_window_days,
    )
    campaign.full_clean(exclude=["platforms"])
    with transaction.atomic():
        campaign.save()
        campaign.platforms.set(platforms)
    return campaign

"""An analyst's decisions about an affiliate: suspend, reinstate, throttle, re-run its open claims.

Each write records who, when and why in :class:`~reconciliation.models.AffiliateRiskAction` in the same
transaction as the change, under a row lock on the affiliate, so two analysts' decisions serialise and the
record always matches the state. The admin's actions call these; nothing else writes ``is_active`` or
``submission_rate``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from reconciliation.api.throttling import parse_rate
from reconciliation.models import Affiliate, AffiliateAPIKey, AffiliateRiskAction
from reconciliation.services.attempts import reports_reopen
from reconciliation.services.dispatch import dispatch_on_commit


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "A reason is required."})
    return reason


def _record(affiliate: Affiliate, action: str, *, reason: str, user: Any, now: dt.datetime, rate: str = "") -> None:
    AffiliateRiskAction.objects.create(
        affiliate=affiliate,
        action=action,
        reason=reason,
        submission_rate=rate,
        user=user if getattr(user, "pk", None) else None,
        created_at=now,
    )


def affiliate_suspend(*, affiliate: Affiliate, user: Any, reason: str, now: dt.datetime | None = None) -> Affiliate:
    """Make the affiliate inactive: its API keys answer 403 from the next request (the key check reads the row)."""
    reason = _reason(reason)
    now = now or timezone.now()
    with transaction.atomic():
        locked = Affiliate.objects.select_for_update().get(pk=affiliate.pk)
        if locked.is_active:
            locked.is_active = False
            locked.save(update_fields=["is_active"])
            _record(locked, AffiliateRiskAction.Action.SUSPEND, reason=reason, user=user, now=now)
    return locked


def affiliate_reinstate(*, affiliate: Affiliate, user: Any, reason: str, now: dt.datetime | None = None) -> Affiliate:
    reason = _reason(reason)
    now = now or timezone.now()
    with transaction.atomic():
        locked = Affiliate.objects.select_for_update().get(pk=affiliate.pk)
        if not locked.is_active:
            locked.is_active = True
            locked.save(update_fields=["is_active"])
            _record(locked, AffiliateRiskAction.Action.REINSTATE, reason=reason, user=user, now=now)
    return locked


def validate_submission_rate(rate: str) -> str:
    """``rate`` normalised ("" = the default); ValidationError unless it is a rate below the default."""
    rate = (rate or "").strip()
    if not rate:
        return ""
    try:
        count, period = parse_rate(rate, "submission_rate")
        default_count, default_period = parse_rate(settings.RATE_LIMIT_SETTINGS.submission)
    except ImproperlyConfigured as exc:
        raise ValidationError({"submission_rate": str(exc)}) from None
    # Compared per second: "10/minute" is not below "100/hour".
    if count * default_period >= default_count * period:
        raise ValidationError(
            {"submission_rate": f"{rate} is not below the default {settings.RATE_LIMIT_SETTINGS.submission}."}
        )
    return rate


def affiliate_throttle(
    *, affiliate: Affiliate, user: Any, rate: str, reason: str, now: dt.datetime | None = None
) -> Affiliate:
    """Set (or with ``rate=""`` lift) the affiliate's own submission limit, below the default."""
    reason = _reason(reason)
    rate = validate_submission_rate(rate)
    now = now or timezone.now()
    with transaction.atomic():
        locked = Affiliate.objects.select_for_update().get(pk=affiliate.pk)
        locked.submission_rate = rate
        locked.save(update_fields=["submission_rate"])
        _record(locked, AffiliateRiskAction.Action.THROTTLE, reason=reason, user=user, now=now, rate=rate)
    return locked


def affiliate_rerun_open_claims(*, affiliate: Affiliate, now: dt.datetime | None = None) -> list[int]:
    """Reopen the affiliate's non-terminal reports (due now) and queue them; the ids reopened."""
    now = now or timezone.now()
    with transaction.atomic():
        ids = reports_reopen(filters=Q(report__post__affiliate=affiliate, terminal=False), now=now)
        dispatch_on_commit(ids)
    return ids


def reports_rerun(*, report_ids: list[int], now: dt.datetime | None = None) -> list[int]:
    """Reopen the given reports (due now, terminal or not) and queue them; leased ones are left to their worker."""
    now = now or timezone.now()
    with transaction.atomic():
        ids = reports_reopen(report_ids=report_ids, now=now)
        dispatch_on_commit(ids)
    return ids


def affiliate_key_revoke(*, key: AffiliateAPIKey) -> AffiliateAPIKey:
    """Revoke one of the affiliate's API keys (the library's flag: the key then answers 403, for good)."""
    AffiliateAPIKey.objects.filter(pk=key.pk).update(revoked=True)
    key.refresh_from_db()
    return key

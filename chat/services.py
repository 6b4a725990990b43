"""Linking chat accounts to affiliates, and claims from chat through the submission service.

``chat_claim`` calls :func:`reconciliation.services.submissions.report_submit` (or ``report_resubmit``
for a post already claimed): the same checks, data-quality flags, alerts, outbox row and dispatch as
the API, with ``submission_method = CHAT``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from chat.models import ChatIdentity, ChatLinkCode
from chat.parsing import ClaimArgs
from reconciliation import rules
from reconciliation.models import Affiliate, AffiliateReport, Campaign
from reconciliation.services import submissions
from reconciliation.services.submissions import SubmissionRejected, SubmissionResult, check_post_url

LINK_CODE_TTL = dt.timedelta(minutes=15)
#: No 0/O, 1/I/L: a code is read off one screen and typed into another.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8
#: Campaigns listed when a claim names none and several could be meant.
CAMPAIGNS_LISTED = 5


class LinkRefused(Exception):
    """The link code cannot link this chat account; the message says why and what to do."""


class AffiliateInactive(Exception):
    """The linked affiliate's account is switched off."""


@dataclass(frozen=True)
class IssuedCode:
    code: str
    expires_at: dt.datetime


@dataclass(frozen=True)
class ClaimOutcome:
    result: SubmissionResult
    campaign: Campaign
    #: False: a new claim on a post the affiliate had already submitted to this campaign.
    new_post: bool
    #: True: this delivery was handled before (a redelivered interaction); nothing new was written.
    replayed: bool


# --- link codes -----------------------------------------------------------------------------------


def normalise_code(text: str) -> str:
    """``abcd-efgh`` and ``ABCD EFGH`` are ``ABCDEFGH``."""
    return "".join(ch for ch in text.upper() if ch.isalnum())


def _code_hash(code: str) -> str:
    # Keyed: the codes are short, so a plain hash of a leaked table could be reversed by trying them all.
    return hmac.new(settings.SECRET_KEY.encode(), b"chat-link-code:" + code.encode(), hashlib.sha256).hexdigest()


def link_code_issue(*, affiliate: Affiliate, now: dt.datetime) -> IssuedCode:
    """A new one-time code (shown once, stored hashed); the affiliate's earlier unused codes end now."""
    code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    with transaction.atomic():
        ChatLinkCode.objects.filter(affiliate=affiliate, used_at__isnull=True, expires_at__gt=now).update(
            expires_at=now
        )
        row = ChatLinkCode.objects.create(
            affiliate=affiliate, code_hash=_code_hash(code), created_at=now, expires_at=now + LINK_CODE_TTL
        )
    return IssuedCode(code=f"{code[:4]}-{code[4:]}", expires_at=row.expires_at)


def identity_link(*, provider: str, team_id: str, user_id: str, code: str, now: dt.datetime) -> ChatIdentity:
    """Link this chat account to the affiliate whose code it typed; the code is spent.

    Raises LinkRefused: no such code, already used, expired, the affiliate inactive, or this chat
    account already linked to another affiliate (an administrator unlinks it; a code never moves an
    account between affiliates silently).
    """
    normalised = normalise_code(code)
    if not normalised:
        raise LinkRefused("the link code is missing. Usage: /link <code>")
    with transaction.atomic():
        row = (
            ChatLinkCode.objects.select_for_update()
            .select_related("affiliate")
            .filter(code_hash=_code_hash(normalised))
            .first()
        )
        if row is None:
            raise LinkRefused(f"'{code.strip()[:20]}' is not a link code we issued; check it, or get a new one")
        if row.used_at is not None:
            raise LinkRefused("this link code has already been used; get a new one")
        if row.expires_at <= now:
            raise LinkRefused(f"this link code expired at {row.expires_at:%H:%M} UTC; get a new one")
        if not row.affiliate.is_active:
            raise LinkRefused("this affiliate account is inactive")
        identity = (
            ChatIdentity.objects.select_for_update()
            .filter(provider=provider, team_id=team_id, external_user_id=user_id)
            .first()
        )
        if identity is not None and identity.affiliate_id != row.affiliate_id:
            raise LinkRefused(
                "this chat account is already linked to another affiliate; ask an administrator to unlink it"
            )
        if identity is None:
            try:
                with transaction.atomic():
                    identity = ChatIdentity.objects.create(
                        provider=provider,
                        team_id=team_id,
                        external_user_id=user_id,
                        affiliate=row.affiliate,
                        linked_via=ChatIdentity.LinkedVia.LINK_CODE,
                        linked_at=now,
                    )
            except IntegrityError:
                # The same account linked by a concurrent /link: the code stays unused, the user retries.
                raise LinkRefused("this chat account was being linked at the same moment; try again") from None
        row.used_at = now
        row.used_by = identity
        row.save(update_fields=["used_at", "used_by"])
    return identity


# --- claims ---------------------------------------------------------------------------------------


def chat_claim(
    *,
    identity: ChatIdentity,
    args: ClaimArgs,
    delivery_key: str,
    request_id: str = "",
    now: dt.datetime,
) -> ClaimOutcome:
    """Submit a claim typed in chat as the identity's affiliate.

    With no campaign given: the affiliate's one open campaign running on the post's platform, among
    the campaigns it has posted to (SubmissionRejected otherwise, listing them). A post already
    submitted to that campaign gets a new claim in its history, as the API's metrics update does.
    ``delivery_key`` (the chat platform's id of this command) makes a redelivery answer the first
    claim instead of recording a second one.
    """
    affiliate = identity.affiliate
    if not affiliate.is_active:
        raise AffiliateInactive(affiliate.pk)
    link = check_post_url(post_url=args.post_url, platform=None)
    campaign_id = args.campaign_id
    if campaign_id is None:
        campaign_id = _only_open_campaign(affiliate=affiliate, platform=link.platform, now=now)
    claims = rules.Claim(views=args.views, clicks=args.clicks, conversions=args.conversions)
    with transaction.atomic():
        # One command of this chat account at a time: a redelivered command sees the first one's claim.
        ChatIdentity.objects.select_for_update().filter(pk=identity.pk).values_list("pk").first()
        if delivery_key:
            done = (
                AffiliateReport.objects.select_related("post__campaign", "post__platform", "log")
                .filter(post__affiliate=affiliate, idempotency_key=delivery_key)
                .first()
            )
            if done is not None:
                result = SubmissionResult(report=done, post=done.post, flags=done.suspicion_flags, priority=False)
                return ClaimOutcome(result=result, campaign=done.post.campaign, new_post=False, replayed=True)
        try:
            result = submissions.report_submit(
                affiliate=affiliate,
                campaign_id=campaign_id,
                platform=link.platform,
                post_url=args.post_url,
                claims=claims,
                method=AffiliateReport.Method.CHAT,
                idempotency_key=delivery_key,
                request_id=request_id,
                now=now,
            )
            new_post = True
        except submissions.DuplicatePost as duplicate:
            result = submissions.report_resubmit(
                affiliate=affiliate,
                post_id=duplicate.post_id,
                claims=claims,
                method=AffiliateReport.Method.CHAT,
                idempotency_key=delivery_key,
                request_id=request_id,
                now=now,
            )
            new_post = False
    return ClaimOutcome(result=result, campaign=result.post.campaign, new_post=new_post, replayed=False)


def _only_open_campaign(*, affiliate: Affiliate, platform: str, now: dt.datetime) -> int:
    today = timezone.localdate(now)
    candidates = list(
        Campaign.objects.filter(
            posts__affiliate=affiliate,
            platforms__slug=platform,
            status=Campaign.Status.ACTIVE,
            start_date__lte=today,
        )
        .filter(Q(end_date__isnull=True) | Q(end_date__gte=today))
        .distinct()
        .order_by("id")
        .values_list("id", "name")[: CAMPAIGNS_LISTED + 1]
    )
    if len(candidates) == 1:
        return int(candidates[0][0])
    if not candidates:
        raise SubmissionRejected(
            {"campaign": f"you have no open campaign on {platform} yet: add the campaign id after the numbers"}
        )
    listed = ", ".join(f"{pk} ({name})" for pk, name in candidates[:CAMPAIGNS_LISTED])
    more = " and more" if len(candidates) > CAMPAIGNS_LISTED else ""
    raise SubmissionRejected(
        {"campaign": f"you have several open campaigns on {platform}: {listed}{more}; add the campaign id"}
    )

"""The chat commands, the same on every chat platform: arguments in, one reply text out.

The edges (views.py) turn Discord's options or Slack's words into the mapping this module reads and
render the text in their platform's reply shape. Everything a person can get wrong becomes a reply
saying exactly what (never an HTTP error: the chat platform would show the user a generic failure).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import cast

from django.conf import settings
from rest_framework.request import Request

from chat import parsing, selectors, services
from chat.models import ChatIdentity, Provider
from reconciliation import rules
from reconciliation.api.throttling import KeyedRateThrottle
from reconciliation.services.submissions import MAX_CLAIM, SubmissionRejected

logger = logging.getLogger("chat.commands")

#: Field names of the submission service, as the chat user knows them.
FIELD_NAMES = {
    "post_url": "url",
    "campaign_id": "campaign",
    "claimed_views": "views",
    "claimed_clicks": "clicks",
    "claimed_conversions": "conversions",
}


@dataclass(frozen=True)
class Actor:
    """Who typed the command, as the chat platform (whose signature was verified) says."""

    provider: Provider
    team_id: str
    user_id: str


@dataclass(frozen=True)
class Context:
    actor: Actor
    #: The chat platform's id of this command (Discord's interaction id, Slack's trigger id).
    delivery_key: str
    request_id: str
    now: dt.datetime
    #: The status URL of a report (absolute, from the request).
    status_url: Callable[[int], str]
    #: Where an affiliate gets a link code (absolute, from the request).
    link_code_url: str


def handle(name: str, options: Mapping[str, str], ctx: Context) -> str:
    """The reply to command ``name`` with ``options`` (claim: url, views, clicks, conversions, campaign;
    status: report; link: code)."""
    if name == "link":
        return _link(options.get("code", ""), ctx)
    if name not in ("claim", "status"):
        return help_text(ctx)
    identity = selectors.identity_get(provider=ctx.actor.provider, team_id=ctx.actor.team_id, user_id=ctx.actor.user_id)
    if identity is None:
        return not_linked_text(ctx)
    if not identity.affiliate.is_active:
        return "Your affiliate account is inactive: claims are not accepted. Contact support."
    if name == "claim":
        try:
            return _claim(identity, options, ctx)
        except parsing.CommandRejected as exc:
            return f"Nothing was recorded: {exc}"
    try:
        return _status(identity, options.get("report", ""), ctx)
    except parsing.CommandRejected as exc:
        return f"No status: {exc}"


def help_text(ctx: Context) -> str:
    return (
        "Commands:\n"
        f"`{parsing.CLAIM_USAGE}` records what a post achieved (numbers like 12500, 12,500 or 12.5k; "
        "the campaign may be left out when you have one open campaign on that platform).\n"
        f"`{parsing.STATUS_USAGE}` shows where a claim stands.\n"
        f"`{parsing.LINK_USAGE}` links this chat account to your affiliate account "
        f"(get a code with your API key: `POST {ctx.link_code_url}`)."
    )


def not_linked_text(ctx: Context) -> str:
    return (
        f"This {ctx.actor.provider.label} account is not linked to an affiliate yet. Get a link code with your "
        f"affiliate API key (`POST {ctx.link_code_url}`, valid {int(services.LINK_CODE_TTL.total_seconds() // 60)} "
        f"minutes), then send `{parsing.LINK_USAGE}` here."
    )


def _link(code: str, ctx: Context) -> str:
    try:
        identity = services.identity_link(
            provider=ctx.actor.provider,
            team_id=ctx.actor.team_id,
            user_id=ctx.actor.user_id,
            code=code,
            now=ctx.now,
        )
    except services.LinkRefused as exc:
        return f"Not linked: {exc}."
    logger.info(
        "Chat account linked",
        extra={"provider": ctx.actor.provider, "affiliate_id": identity.affiliate_id, "identity_id": identity.pk},
    )
    return (
        f"Linked: this {ctx.actor.provider.label} account now submits as {identity.affiliate.name}. "
        f"Try `{parsing.CLAIM_USAGE}`."
    )


@dataclass(frozen=True)
class _ChatCaller:
    """The chat account as the API's rate limiter sees a caller: its own allowance, like an API key."""

    identity_id: int
    is_authenticated = True

    @property
    def pk(self) -> str:
        return f"chat-identity:{self.identity_id}"


def _claims_wait(identity: ChatIdentity) -> float | None:
    """Seconds until this chat account may claim again (RATE_LIMIT_SETTINGS.submission), or None."""
    throttle = KeyedRateThrottle("submission")
    caller = cast(Request, SimpleNamespace(user=_ChatCaller(identity.pk)))
    return None if throttle.allow_request(caller, None) else throttle.wait()


def _claim(identity: ChatIdentity, options: Mapping[str, str], ctx: Context) -> str:
    wait = _claims_wait(identity)
    if wait is not None:
        return (
            f"Nothing was recorded: too many claims (at most {settings.RATE_LIMIT_SETTINGS.submission}); "
            f"try again in {math.ceil(wait / 60)} minutes."
        )
    args = parsing.claim_args(
        url=options.get("url"),
        views=options.get("views"),
        clicks=options.get("clicks"),
        conversions=options.get("conversions"),
        campaign=options.get("campaign"),
        maximum=MAX_CLAIM,
    )
    try:
        outcome = services.chat_claim(
            identity=identity, args=args, delivery_key=ctx.delivery_key, request_id=ctx.request_id, now=ctx.now
        )
    except SubmissionRejected as exc:
        problems = "; ".join(
            f"{FIELD_NAMES.get(field, field)}: {' '.join(messages)}" for field, messages in exc.fields.items()
        )
        return f"Nothing was recorded: {problems}."
    report, post = outcome.result.report, outcome.result.post
    what = "New post" if outcome.new_post else "New claim on your post"
    if outcome.replayed:
        what = "Already recorded"
    lines = [
        f"{what}: report {report.pk} for {post.platform.slug} post {post.platform_post_id} in campaign "
        f"{outcome.campaign.pk} ({outcome.campaign.name}).",
        f"Recorded {report.claimed_views:,} views, {report.claimed_clicks:,} clicks, "
        f"{report.claimed_conversions:,} conversions. Status: {report.log.status}.",
    ]
    if outcome.result.flags:
        lines.append("Flagged for review: " + "; ".join(flag["message"] for flag in outcome.result.flags) + ".")
    lines.append(f"Follow it with `/status {report.pk}` or {ctx.status_url(report.pk)}")
    return "\n".join(lines)


def _status(identity: ChatIdentity, text: str, ctx: Context) -> str:
    report_id = parsing.report_id_of(text)
    found = selectors.report_status(affiliate=identity.affiliate, report_id=report_id)
    if found is None:
        return f"No report {report_id} among yours."
    report, log = found.report, found.report.log
    state = rules.report_state(status=log.status, terminal=log.terminal)
    lines = [
        f"Report {report.pk} ({report.post.platform.slug} post {report.post.platform_post_id}, campaign "
        f"{report.post.campaign_id}): {log.status}" + (f" ({log.discrepancy_level})" if log.discrepancy_level else ""),
        f"State: {state}" + (f", next check {log.next_attempt_at:%Y-%m-%d %H:%M} UTC" if log.next_attempt_at else ""),
        f"Claimed {report.claimed_views:,} views, {report.claimed_clicks:,} clicks, "
        f"{report.claimed_conversions:,} conversions.",
    ]
    if found.snapshot is not None:
        snap = found.snapshot
        seen = ", ".join(f"{_count(getattr(snap, metric))} {metric}" for metric in rules.METRICS)
        lines.append(f"Platform reported {seen} at {snap.fetched_at:%Y-%m-%d %H:%M} UTC.")
    if log.missing_reason:
        lines.append(f"Missing data: {log.missing_reason}.")
    lines.append(ctx.status_url(report.pk))
    return "\n".join(lines)


def _count(value: int | None) -> str:
    return "no figure for" if value is None else f"{value:,}"

"""Submitting claims (DESIGN §3): validate, persist Post + AffiliateReport + its outbox row, dispatch.

``check_*`` functions validate and raise :class:`SubmissionRejected` with per-field messages; the
``report_*`` functions change state in one transaction and send the work to the queue only after commit.
The ReconciliationLog row (``next_attempt_at = now``) is the outbox: the broker being down never fails a
submission, the sweeper sends it later.

Counters are incremented with ``F()`` in SQL. Reading the affiliate, adding one in Python and saving lost
922 of 2,000 concurrent increments in the predecessor of this product.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, F, Max, Q
from django.utils import timezone

from alerts.models import Alert
from alerts.services import alert_raise
from platforms.links import InvalidPostURL, ParsedLink, parse_post_url
from platforms.models import Platform
from reconcile_project.observability import log_business_event, log_performance
from reconciliation import rules
from reconciliation.models import (
    Affiliate,
    AffiliateReport,
    Campaign,
    Post,
    ReconciliationLog,
    ReconciliationStatus,
)
from reconciliation.services.dispatch import dispatch_on_commit, needs_priority

#: Largest count a claim may carry (well inside BIGINT; no real post has a trillion views).
MAX_CLAIM = 10**12


logger = logging.getLogger("reconciliation.submissions")


class SubmissionRejected(ValueError):
    """The submission is well-formed but not acceptable; ``fields`` maps a field to its messages."""

    def __init__(self, fields: Mapping[str, str | list[str]]):
        self.fields = {name: [msg] if isinstance(msg, str) else list(msg) for name, msg in fields.items()}
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in self.fields.items()))


class DuplicatePost(Exception):
    """This affiliate already submitted this post to this campaign (claims go to the update endpoint)."""

    def __init__(self, post_id: int):
        super().__init__(f"post {post_id} already submitted")
        self.post_id = post_id


class PostNotFound(LookupError):
    """No such post among the affiliate's own posts (another affiliate's post is "not found" too)."""


class RunTargetNotFound(LookupError):
    """A staff re-run named a report or campaign that does not exist."""


@dataclass(frozen=True)
class SubmissionResult:
    report: AffiliateReport
    post: Post
    flags: list[dict[str, Any]]
    priority: bool


# --- checks ---------------------------------------------------------------------------------------


def check_claims(claims: rules.Claim) -> None:
    errors = {}
    for metric in rules.METRICS:
        value = claims.get(metric)
        if value < 0 or value > MAX_CLAIM:
            errors[f"claimed_{metric}"] = f"must be between 0 and {MAX_CLAIM}"
    if errors:
        raise SubmissionRejected(errors)


def check_post_url(*, post_url: str, platform: str) -> ParsedLink:
    """The normalised link; its platform must be the one the affiliate named."""
    try:
        link = parse_post_url(post_url)
    except InvalidPostURL as exc:
        raise SubmissionRejected({"post_url": str(exc)}) from None
    if link.platform != platform:
        raise SubmissionRejected(
            {"platform": f"the post URL is a {link.platform} post, not {platform}; send platform={link.platform!r}"}
        )
    return link


def check_campaign_open(*, campaign: Campaign, now: dt.datetime, field: str = "campaign_id") -> None:
    today = timezone.localdate(now)
    if campaign.status != Campaign.Status.ACTIVE:
        raise SubmissionRejected({field: f"campaign {campaign.pk} is {campaign.status}, not ACTIVE"})
    if campaign.start_date > today:
        raise SubmissionRejected({field: f"campaign {campaign.pk} starts on {campaign.start_date.isoformat()}"})
    if campaign.end_date is not None and campaign.end_date < today:
        raise SubmissionRejected({field: f"campaign {campaign.pk} ended on {campaign.end_date.isoformat()}"})


def check_campaign(*, campaign_id: int, platform: str, now: dt.datetime) -> tuple[Campaign, Platform]:
    """The campaign, open for submissions today, and the platform row it runs on.

    One query on the happy path (the campaign–platform link, joined to both); the error paths spend a
    second one to say precisely what is wrong.
    """
    runs_on = (
        Campaign.platforms.through.objects.select_related("campaign", "platform")
        .filter(campaign_id=campaign_id, platform__slug=platform)
        .first()
    )
    if runs_on is None:
        campaign = Campaign.objects.filter(pk=campaign_id).first()
        if campaign is None:
            raise SubmissionRejected({"campaign_id": f"no campaign with id {campaign_id}"})
        check_campaign_open(campaign=campaign, now=now)
        raise SubmissionRejected({"platform": f"campaign {campaign.pk} does not run on {platform}"})
    campaign, platform_row = runs_on.campaign, runs_on.platform
    check_campaign_open(campaign=campaign, now=now)
    if not platform_row.is_active:
        raise SubmissionRejected({"platform": f"{platform} is not accepting submissions at the moment"})
    return campaign, platform_row


# --- services -------------------------------------------------------------------------------------


def report_submit(
    *,
    affiliate: Affiliate,
    campaign_id: int,
    platform: str,
    post_url: str,
    claims: rules.Claim,
    evidence: dict[str, Any] | None = None,
    title: str = "",
    method: str = AffiliateReport.Method.API,
    idempotency_key: str = "",
    request_id: str = "",
    now: dt.datetime,
) -> SubmissionResult:
    """A new post with its first claim. Raises SubmissionRejected, or DuplicatePost (409)."""
    started = time.perf_counter()
    check_claims(claims)
    link = check_post_url(post_url=post_url, platform=platform)
    campaign, platform_row = check_campaign(campaign_id=campaign_id, platform=platform, now=now)

    try:
        with transaction.atomic():
            # One read answers both "did I submit this already?" and "did someone else claim this post?".
            claimants = _claimants(platform_id=platform_row.pk, platform_post_id=link.post_id)
            for post_id, affiliate_id, post_campaign_id in claimants:
                if affiliate_id == affiliate.pk and post_campaign_id == campaign.pk:
                    raise DuplicatePost(post_id)
            duplicate = any(affiliate_id != affiliate.pk for _, affiliate_id, _ in claimants)
            post = Post.objects.create(
                campaign=campaign,
                affiliate=affiliate,
                platform=platform_row,
                url=link.normalized_url,
                platform_post_id=link.post_id,
                title=title,
            )
            result = _record_claim(
                post=post,
                campaign=campaign,
                affiliate=affiliate,
                claims=claims,
                previous=None,
                duplicate=duplicate,
                evidence=evidence or {},
                method=method,
                idempotency_key=idempotency_key,
                request_id=request_id,
                now=now,
            )
    except IntegrityError:
        # A concurrent twin won the unique constraint between our read and our insert. The post is the
        # first write of the block, so rolling the block back (no extra savepoint) loses nothing else.
        existing = (
            Post.objects.filter(
                campaign=campaign, affiliate=affiliate, platform=platform_row, platform_post_id=link.post_id
            )
            .values_list("pk", flat=True)
            .first()
        )
        if existing is None:
            raise
        raise DuplicatePost(existing) from None
    _announce(result, campaign=campaign, started=started, operation="submit_new_post")
    return result


def _claimants(*, platform_id: int, platform_post_id: str) -> list[tuple[int, int, int]]:
    """(post id, affiliate id, campaign id) of every post of this platform post, whoever submitted it."""
    return list(
        Post.objects.filter(platform_id=platform_id, platform_post_id=platform_post_id).values_list(
            "id", "affiliate_id", "campaign_id"
        )
    )


def report_resubmit(
    *,
    affiliate: Affiliate,
    post_id: int,
    claims: rules.Claim,
    evidence: dict[str, Any] | None = None,
    method: str = AffiliateReport.Method.API,
    idempotency_key: str = "",
    request_id: str = "",
    now: dt.datetime,
) -> SubmissionResult:
    """A new claim on one of the affiliate's posts (the post's claims history grows by one report)."""
    started = time.perf_counter()
    check_claims(claims)
    with transaction.atomic():
        # Locking the post serialises two updates of one post, so each sees the other as "previous".
        post = (
            Post.objects.select_for_update(of=("self",))
            .select_related("campaign", "platform")
            .filter(pk=post_id, affiliate=affiliate)
            .first()
        )
        if post is None:
            raise PostNotFound(post_id)
        check_campaign_open(campaign=post.campaign, now=now, field="campaign")
        last = (
            AffiliateReport.objects.filter(post=post)
            .order_by("-submitted_at", "-id")
            .values_list("claimed_views", "claimed_clicks", "claimed_conversions")
            .first()
        )
        previous = rules.Claim(views=last[0], clicks=last[1], conversions=last[2]) if last else None
        duplicate = (
            Post.objects.filter(platform_id=post.platform_id, platform_post_id=post.platform_post_id)
            .exclude(affiliate=affiliate)
            .exists()
        )
        result = _record_claim(
            post=post,
            campaign=post.campaign,
            affiliate=affiliate,
            claims=claims,
            previous=previous,
            duplicate=duplicate,
            evidence=evidence or {},
            method=method,
            idempotency_key=idempotency_key,
            request_id=request_id,
            now=now,
        )
    _announce(result, campaign=post.campaign, started=started, operation="submit_metrics_update")
    return result


def _record_claim(
    *,
    post: Post,
    campaign: Campaign,
    affiliate: Affiliate,
    claims: rules.Claim,
    previous: rules.Claim | None,
    duplicate: bool,
    evidence: dict[str, Any],
    method: str,
    idempotency_key: str,
    request_id: str,
    now: dt.datetime,
) -> SubmissionResult:
    ruleset = campaign.ruleset()
    flags = rules.suspicion_flags(
        claim=claims,
        previous=previous,
        evidence_present=bool(evidence),
        duplicate_of_other_affiliate=duplicate,
        settings=ruleset.data_quality,
    )
    flag_dicts = [flag.as_dict() for flag in flags]
    report = AffiliateReport.objects.create(
        post=post,
        claimed_views=claims.views,
        claimed_clicks=claims.clicks,
        claimed_conversions=claims.conversions,
        evidence=evidence,
        suspicion_flags=flag_dicts,
        submission_method=method,
        idempotency_key=idempotency_key,
        request_id=request_id or "",
        submitted_at=now,
    )
    ReconciliationLog.objects.create(report=report, status=ReconciliationStatus.PENDING, next_attempt_at=now)
    Affiliate.objects.filter(pk=affiliate.pk).update(total_submissions=F("total_submissions") + 1)
    high = rules.has_high(flags)
    if high:
        high_flags = [f for f in flag_dicts if f["severity"] == rules.Severity.HIGH]
        alert_raise(
            alert_type=Alert.Type.SUSPICIOUS_CLAIM,
            severity=Alert.Severity.HIGH,
            title=f"Suspicious claim on {post.platform.slug} post {post.platform_post_id}: "
            + ", ".join(f["code"] for f in high_flags),
            message="; ".join(f["message"] for f in high_flags),
            threshold={"flags": flag_dicts},
            affiliate_id=affiliate.pk,
            platform_id=post.platform_id,
            report_id=report.pk,
            settings=ruleset.alerting,
            now=now,
        )
    priority = needs_priority(trust_score=affiliate.trust_score, flags=flag_dicts)
    dispatch_on_commit([report.pk], priority=priority, request_id=request_id or None)
    return SubmissionResult(report=report, post=post, flags=flag_dicts, priority=priority)


def _announce(result: SubmissionResult, *, campaign: Campaign, started: float, operation: str) -> None:
    log_business_event(
        "affiliate_submission",
        affiliate_id=result.post.affiliate_id,
        campaign_id=campaign.pk,
        platform=result.post.platform.slug,
        post_id=result.post.pk,
        report_id=result.report.pk,
        method=result.report.submission_method,
        flags=[f["code"] for f in result.flags],
        priority=result.priority,
    )
    log_performance(operation, (time.perf_counter() - started) * 1000, report_id=result.report.pk)


@dataclass(frozen=True)
class RunAccepted:
    """What a staff re-run answers: how many reports it will reopen, and how."""

    #: Reports matching the selection and not leased when the request was made (reopened or to be).
    queued: int
    #: Sent to the workers right after commit (a single report); 0 when a background task reopens them.
    dispatched: int
    #: True when a maintenance task reopens the selection in batches after the request.
    background: bool
    #: The selection, as given.
    filter: dict[str, Any]


def _run_selection(*, report_id: int | None, campaign_id: int | None, status: str | None):
    logs = ReconciliationLog.objects.all()
    if report_id is not None:
        if not AffiliateReport.objects.filter(pk=report_id).exists():
            raise RunTargetNotFound(f"no report with id {report_id}")
        return logs.filter(report_id=report_id)
    if campaign_id is not None:
        if not Campaign.objects.filter(pk=campaign_id).exists():
            raise RunTargetNotFound(f"no campaign with id {campaign_id}")
        return logs.filter(report__post__campaign_id=campaign_id)
    return logs.filter(status=status)


def reconciliation_run(
    *,
    report_id: int | None = None,
    campaign_id: int | None = None,
    status: str | None = None,
    now: dt.datetime,
    request_id: str = "",
) -> RunAccepted:
    """Staff re-run: make the selected reports due now and queue them.

    Exactly one selector. A report or campaign that does not exist raises :class:`RunTargetNotFound`.
    Reports with an attempt running (unexpired lease) are left alone.

    One report is reopened here and sent after commit. A campaign or a status may select any number of
    reports: reopening them inside the request (and inside its idempotency transaction) would hold
    thousands of row locks for as long as that takes, so the request only counts them and queues
    :func:`reports_reopen_matching` on the maintenance queue, after commit; that task reopens them in
    batches of :data:`RUN_BATCH` (one short transaction each), and the sweeper sends them as they come due.
    Reports matching the selection after the request (a newer report, up to the highest id seen now) are
    not included: the task stops at the highest report id the request counted.
    """
    from reconciliation.services.attempts import reports_reopen

    given = {"report_id": report_id, "campaign_id": campaign_id, "status": status}
    selection = {key: value for key, value in given.items() if value is not None}
    if len(selection) != 1:
        raise SubmissionRejected({"non_field_errors": "give exactly one of report_id, campaign_id or status"})
    logs = _run_selection(report_id=report_id, campaign_id=campaign_id, status=status)
    if report_id is not None:
        ids = reports_reopen(report_ids=[report_id], now=now)
        if ids:
            dispatch_on_commit(ids, priority=False, request_id=request_id or None)
        accepted = RunAccepted(queued=len(ids), dispatched=len(ids), background=False, filter=selection)
    else:
        free = logs.filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
        counted = free.aggregate(n=Count("id"), up_to=Max("report_id"))
        if counted["n"]:
            up_to = int(counted["up_to"])
            transaction.on_commit(
                lambda: _queue_reopen(
                    campaign_id=campaign_id, status=status, up_to_report_id=up_to, request_id=request_id
                )
            )
        accepted = RunAccepted(queued=counted["n"], dispatched=0, background=True, filter=selection)
    log_business_event(
        "reconciliation_rerun_requested",
        report_id=report_id,
        campaign_id=campaign_id,
        status=status,
        reopened=accepted.queued,
        dispatched=accepted.dispatched,
        background=accepted.background,
    )
    return accepted


def _queue_reopen(*, campaign_id: int | None, status: str | None, up_to_report_id: int, request_id: str) -> None:
    from reconciliation.tasks import reopen_reports_task

    try:
        reopen_reports_task.apply_async(
            kwargs={"campaign_id": campaign_id, "status": status, "up_to_report_id": up_to_report_id},
            headers={"request_id": request_id} if request_id else None,
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
        )
    except Exception as exc:  # the request has answered; say so loudly, staff can run it again
        logger.error(
            "Staff re-run could not be queued",
            extra={"campaign_id": campaign_id, "status": status, "error": f"{type(exc).__name__}: {exc}"},
        )


RUN_BATCH = 500


def reports_reopen_matching(
    *,
    campaign_id: int | None = None,
    status: str | None = None,
    up_to_report_id: int,
    batch: int = RUN_BATCH,
    clock: Any = timezone.now,
) -> int:
    """Reopen every report of a campaign or in a status (up to a report id), ``batch`` per transaction.

    The maintenance task behind a staff re-run. Each batch is a short transaction of
    :func:`~reconciliation.services.attempts.reports_reopen` (``SELECT … FOR UPDATE SKIP LOCKED``; a
    report being attempted right now is skipped, as in the request). Ids are walked in order, so a
    status filter still finds the next batch after the previous one was reopened. Returns how many.
    """
    from reconciliation.services.attempts import reports_reopen

    logs = _run_selection(report_id=None, campaign_id=campaign_id, status=status)
    cursor, reopened = 0, 0
    while True:
        candidates = list(
            logs.filter(report_id__gt=cursor, report_id__lte=up_to_report_id)
            .order_by("report_id")
            .values_list("report_id", flat=True)[:batch]
        )
        if not candidates:
            break
        reopened += len(reports_reopen(report_ids=candidates, now=clock()))
        cursor = candidates[-1]
    logger.info(
        "Staff re-run reopened reports",
        extra={"campaign_id": campaign_id, "status": status, "reopened": reopened},
    )
    return reopened

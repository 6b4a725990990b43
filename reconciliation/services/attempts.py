"""The attempt protocol (DESIGN §5): claim → fetch → apply. What makes many workers safe.

Celery delivers at least once; the database makes the effect happen once:

1. :func:`attempt_claim` — a short transaction: lock the log row; if the report is not due, is terminal
   or holds an unexpired lease, do nothing. Otherwise take the next attempt number and a lease.
2. The fetch runs outside any transaction (no row lock is held during network I/O).
3. :func:`attempt_apply` — one transaction: re-lock; if the lease is no longer ours, discard. Otherwise
   write the attempt outcome, the platform snapshot, the log, the trust ledger row and the affiliate's
   score (row-locked), alerts and the next check time, and clear the lease.

A worker killed between 1 and 3 leaves an expired lease; the sweeper re-dispatches the report and the
next claim takes a new attempt number. A duplicated message finds the lease (or a finished attempt and a
``next_attempt_at`` in the future) and does nothing.

Nothing may retry forever. An exception anywhere between the claim and the end of the apply (a bug, a bad
``Platform.config``, a write PostgreSQL rejects) is turned by :func:`attempt_run` into a recorded outcome,
``MISSING``/``internal_error``, written by :func:`attempt_fail` in a fresh transaction: it spends budget
like any real failure, so the report ends terminal with its MISSING_DATA alert. And a claim that finds
the previous attempt abandoned (its lease expired: the worker died, or could not even record its failure)
counts that attempt against the budget and closes the report when the budget or the window is gone.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from alerts.models import Alert
from alerts.services import alert_raise
from notifications.services import notify_report_reconciled
from platforms.fetcher import FetchOutcome
from platforms.models import quota_rps_of
from reconcile_project.config import RuleOverrideError, RuleSet
from reconcile_project.jsonsafe import json_safe
from reconcile_project.metrics import (
    RECONCILIATION_ATTEMPT_DURATION,
    RECONCILIATION_STATUS_TOTAL,
    TRUST_SCORE_BUCKET_TOTAL,
)
from reconcile_project.worker_exceptions import record_worker_exception
from reconciliation import rules
from reconciliation.models import (
    Affiliate,
    ReconciliationAttempt,
    ReconciliationLog,
    ReconciliationStatus,
    campaign_recheck,
    campaign_ruleset,
)
from reconciliation.models import PlatformReport as PlatformSnapshot
from reconciliation.models import TrustEvent as TrustLedgerRow
from reconciliation.services import locked_reads

logger = logging.getLogger("reconciliation.worker")
performance = logging.getLogger("app.performance")
audit = logging.getLogger("app.audit")

Outcome = ReconciliationAttempt.Outcome
_rng = random.SystemRandom()


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"


@dataclass(frozen=True)
class ClaimedAttempt:
    """Everything the fetch and the apply need, read once under the claim's lock."""

    attempt_id: int
    report_id: int
    post_id: int
    number: int
    lease_until: dt.datetime
    platform_id: int
    platform_slug: str
    platform_post_id: str
    #: As stored; read through :attr:`quota_rps` by the fetch, so a bad value fails the attempt (recorded),
    #: not the claim (which would roll back and leave nothing to count).
    platform_config: dict[str, Any]
    affiliate_id: int
    claim: rules.Claim
    submitted_at: dt.datetime
    ruleset: RuleSet
    recheck: tuple[float, float]
    previous_status: str
    is_recheck: bool
    #: Set when the campaign's stored ``rule_overrides`` do not validate: the claim went ahead on the global
    #: rules so that the attempt can fail *recorded* (raised before the fetch) instead of looping.
    setup_error: Exception | None = None

    @property
    def quota_rps(self) -> float | None:
        """The platform's quota; raises ``PlatformConfigError`` for a stored value that is not usable."""
        return quota_rps_of(self.platform_config)


@dataclass(frozen=True)
class AttemptResult:
    report_id: int
    attempt_number: int
    status: str
    level: str | None
    missing_reason: str
    trust_delta: Decimal | None
    next_attempt_at: dt.datetime | None
    terminal: bool
    alerts: tuple[str, ...]


class SkipReason:
    NOT_FOUND = "not_found"
    TERMINAL = "terminal"
    NOT_DUE = "not_due"
    LEASED = "leased"
    LEASE_LOST = "lease_lost"
    #: The previous attempt was abandoned and it was the last the budget or window allowed: closed MISSING.
    EXHAUSTED = "exhausted"


def attempt_claim(*, report_id: int, now: dt.datetime, worker: str = "") -> ClaimedAttempt | str:
    """Claim the next attempt of a report, or return a :class:`SkipReason` saying why not."""
    with transaction.atomic():
        row = locked_reads.CLAIM.fetch(report_id)
        if row is None:
            return SkipReason.NOT_FOUND
        if row["terminal"]:
            return SkipReason.TERMINAL
        if row["next_attempt_at"] is None or row["next_attempt_at"] > now:
            return SkipReason.NOT_DUE
        if row["lease_until"] is not None and row["lease_until"] > now:
            return SkipReason.LEASED
        setup_error: Exception | None = None
        try:
            ruleset = campaign_ruleset(row["rule_overrides"])
        except RuleOverrideError as exc:  # a row written around Campaign.clean(): fail recorded, not in a loop
            ruleset, setup_error = campaign_ruleset(None), exc
        number = row["attempt_count"] + 1
        lease_until = now + dt.timedelta(seconds=ruleset.retry.lease_seconds)
        is_recheck = row["status"] in rules.CONCLUSIVE_STATUSES
        if row["lease_until"] is not None:
            # An attempt whose worker died (its lease expired) never finishes: close it so the history is true.
            ReconciliationAttempt.objects.filter(report_id=report_id, outcome=Outcome.RUNNING).update(
                outcome=Outcome.DISCARDED, finished_at=now
            )
            if not is_recheck and _abandoned_attempt_ends_it(row, report_id=report_id, ruleset=ruleset, now=now):
                return SkipReason.EXHAUSTED
        attempt = ReconciliationAttempt.objects.create(
            report_id=report_id,
            number=number,
            started_at=now,
            worker=worker[:200],
            is_recheck=is_recheck,
        )
        ReconciliationLog.objects.filter(pk=row["log_id"]).update(attempt_count=number, lease_until=lease_until)
        return ClaimedAttempt(
            attempt_id=attempt.pk,
            report_id=report_id,
            post_id=row["post_id"],
            number=number,
            lease_until=lease_until,
            platform_id=row["platform_id"],
            platform_slug=row["platform_slug"],
            platform_post_id=row["platform_post_id"],
            platform_config=dict(row["platform_config"] or {}),
            affiliate_id=row["affiliate_id"],
            claim=rules.Claim(row["claimed_views"], row["claimed_clicks"], row["claimed_conversions"]),
            submitted_at=row["submitted_at"],
            ruleset=ruleset,
            recheck=campaign_recheck(row["recheck_interval_hours"], row["recheck_window_days"]),
            previous_status=row["status"],
            is_recheck=is_recheck,
            setup_error=setup_error,
        )


def _abandoned_attempt_ends_it(row: dict[str, Any], *, report_id: int, ruleset: RuleSet, now: dt.datetime) -> bool:
    """Count an abandoned attempt (its lease expired) against the budget; close the report if that was the last.

    Defence in depth against the retry loop: an attempt that dies without recording anything (a worker
    killed by the OOM killer on the same report every time, a database gone while recording a failure)
    would otherwise be re-sent every lease period forever, since only a recorded outcome spends budget.
    A staff re-run of a closed report is not affected: it leaves no lease behind. Re-checks are bounded by
    their own window and keep the verdict, so only the initial check is closed here.
    """
    budget = row["budget_attempts"] + 1
    window_end = rules.retry_window_end(row["submitted_at"], ruleset.retry)
    exhausted = budget >= ruleset.retry.max_attempts or (window_end is not None and now > window_end)
    fields: dict[str, Any] = {"budget_attempts": budget}
    if exhausted:
        reason = rules.MissingReason.INTERNAL_ERROR
        fields.update(
            terminal=True,
            next_attempt_at=None,
            lease_until=None,
            dispatched_at=None,
            status=ReconciliationStatus.MISSING_PLATFORM_DATA,
            discrepancy_level=None,
            missing_reason=reason,
            error_code=reason,
            error_message="the last attempt the budget or window allowed never finished (worker lost or crashed)",
        )
        retry_reason = (
            rules.RetryReason.BUDGET_EXHAUSTED
            if budget >= ruleset.retry.max_attempts
            else rules.RetryReason.WINDOW_EXPIRED
        )
        _raise_missing_data(
            report_id=report_id,
            affiliate_id=row["affiliate_id"],
            platform_id=row["platform_id"],
            ruleset=ruleset,
            missing_reason=reason,
            retry_reason=retry_reason,
            now=now,
        )
        logger.warning(
            "Reconciliation closed: abandoned attempt was the last allowed",
            extra={"report_id": report_id, "budget_attempts": budget, "reason": str(retry_reason)},
        )
    ReconciliationLog.objects.filter(pk=row["log_id"]).update(**fields)
    return exhausted


def _observed(outcome: FetchOutcome) -> rules.Observed | None:
    if outcome.metrics is None:
        return None
    m = outcome.metrics
    return rules.Observed(m.views, m.clicks, m.conversions)


def _missing_reason(outcome: FetchOutcome, classification: rules.Classification) -> str:
    if classification.status != rules.Status.MISSING_PLATFORM_DATA:
        return ""
    return outcome.error_code or rules.MissingReason.NO_METRICS


def attempt_apply(
    *, claimed: ClaimedAttempt, outcome: FetchOutcome, now: dt.datetime, rng: rules.UniformRandom | None = None
) -> AttemptResult | str:
    """Write the outcome of a claimed attempt in one transaction, or return SkipReason.LEASE_LOST."""
    rng = rng or _rng
    hours = max((now - claimed.submitted_at).total_seconds() / 3600.0, 0.0)
    classification = rules.classify(
        claimed=claimed.claim,
        platform=_observed(outcome),
        hours_since_claim=hours,
        settings=claimed.ruleset.reconciliation,
    )
    status = classification.status
    missing_reason = _missing_reason(outcome, classification)
    conclusive = status in rules.CONCLUSIVE_STATUSES
    had_conclusive = claimed.previous_status in rules.CONCLUSIVE_STATUSES
    raised: list[str] = []

    with transaction.atomic():
        log = locked_reads.APPLY.fetch(claimed.report_id)
        if log is None or log["attempt_count"] != claimed.number or log["lease_until"] != claimed.lease_until:
            ReconciliationAttempt.objects.filter(pk=claimed.attempt_id, outcome=Outcome.RUNNING).update(
                outcome=Outcome.DISCARDED, finished_at=now
            )
            return SkipReason.LEASE_LOST

        deferred = status == rules.Status.MISSING_PLATFORM_DATA and missing_reason in rules.DEFERRAL_REASONS
        budget_used = log["budget_attempts"] + (0 if deferred else 1)
        incomplete_attempts = 0
        if status == rules.Status.INCOMPLETE_PLATFORM_DATA:
            incomplete_attempts = (
                1
                + ReconciliationAttempt.objects.filter(
                    report_id=claimed.report_id, status=ReconciliationStatus.INCOMPLETE_PLATFORM_DATA
                ).count()
            )
        interval, window = claimed.recheck
        decision = rules.next_attempt(
            status=status,
            missing_reason=missing_reason or None,
            attempts_used=max(budget_used, 1),
            claimed_at=claimed.submitted_at,
            now=now,
            retry_after_seconds=outcome.retry_after_seconds,
            incomplete_attempts=incomplete_attempts,
            policy=claimed.ruleset.retry,
            rng=rng,
            recheck_interval_hours=interval,
            recheck_window_days=window,
            has_conclusive_status=had_conclusive,
        )

        attempt_outcome = (
            Outcome.DEFERRED
            if deferred
            else Outcome.MISSING
            if status == rules.Status.MISSING_PLATFORM_DATA
            else Outcome.PARTIAL
            if status == rules.Status.INCOMPLETE_PLATFORM_DATA
            else Outcome.SUCCESS
        )
        fields: dict = {}
        if deferred and not decision.terminal:
            # The platform was never asked (breaker open, rate limited), so the RUNNING row the claim wrote
            # is not evidence of anything: delete it and give its number back, and count the deferral on
            # the log instead. A day-long outage with a 60 s cooldown would otherwise write ~1,440 rows per
            # report. Deleting (rather than keeping the row for the next claim to reuse) keeps the claim
            # simple and the numbers dense: the next claim takes this same number again, which is free
            # once the row is gone (unique (report, number) holds), and a stale worker's apply for it is
            # still refused, because the lease it compares (lease_until) is gone. A deferral that ends
            # the report (window expired) keeps its row: it is the last word on the report.
            ReconciliationAttempt.objects.filter(pk=claimed.attempt_id).delete()
            fields.update(
                attempt_count=claimed.number - 1,
                deferral_count=F("deferral_count") + 1,
                last_deferred_at=now,
            )
        else:
            ReconciliationAttempt.objects.filter(pk=claimed.attempt_id).update(
                finished_at=now,
                outcome=attempt_outcome,
                status=status,
                missing_reason=missing_reason,
                duration_ms=round(outcome.duration_seconds * 1000, 3),
            )
        if outcome.metrics is not None and classification.confidence_ratio > 0:
            PlatformSnapshot.objects.create(
                post_id=claimed.post_id,
                attempt_id=claimed.attempt_id,
                platform_id=claimed.platform_id,
                views=outcome.metrics.views,
                clicks=outcome.metrics.clicks,
                conversions=outcome.metrics.conversions,
                # A platform's payload may carry NaN (Python's json reads it): not storable as JSON.
                raw=json_safe(dict(outcome.raw or outcome.metrics.raw or {})),
                fetched_at=now,
            )

        ledger_sum = None
        if conclusive:
            ledger_sum = _apply_trust(claimed, classification, log, now, raised)

        fields |= {
            "lease_until": None,
            "dispatched_at": None,
            "last_attempt_at": now,
            "budget_attempts": budget_used,
            "next_attempt_at": decision.next_attempt_at,
            "terminal": decision.terminal,
            "error_code": outcome.error_code or "",
            "error_message": (outcome.error_message or "")[:2000],
        }
        # During re-checks a failed or partial fetch must not erase the conclusive result already known.
        if conclusive or not had_conclusive:
            fields.update(_log_result_fields(classification, missing_reason))
        if ledger_sum is not None:
            fields["trust_delta"] = ledger_sum
        ReconciliationLog.objects.filter(pk=log["log_id"]).update(**fields)

        # A verdict raises its alert when it is reached, not again each time a re-check confirms it.
        verdict_changed = conclusive and (log["status"], log["discrepancy_level"]) != (
            str(status),
            str(classification.level) if classification.level else None,
        )
        _raise_outcome_alerts(claimed, classification, decision, missing_reason, now, raised, verdict_changed)
        notify_report_reconciled(
            report_id=claimed.report_id,
            changed=verdict_changed,
            previous_status=log["status"],
            status=str(status),
            level=str(classification.level) if classification.level else None,
            is_recheck=claimed.is_recheck,
            now=now,
        )

    result = AttemptResult(
        report_id=claimed.report_id,
        attempt_number=claimed.number,
        status=str(status),
        level=str(classification.level) if classification.level else None,
        missing_reason=missing_reason,
        trust_delta=ledger_sum,
        next_attempt_at=decision.next_attempt_at,
        terminal=decision.terminal,
        alerts=tuple(raised),
    )
    return result


def _log_result_fields(classification: rules.Classification, missing_reason: str) -> dict:
    diffs = {d.metric: d for d in classification.metrics}
    fields: dict = {
        "status": str(classification.status),
        "discrepancy_level": str(classification.level) if classification.level else None,
        "max_diff_pct": classification.max_abs_diff if classification.confidence_ratio > 0 else None,
        "confidence_ratio": classification.confidence_ratio,
        "missing_fields": list(classification.missing_fields),
        "missing_reason": missing_reason,
    }
    for metric in rules.METRICS:
        d = diffs.get(metric)
        observed = d.observed if d is not None else None
        fields[f"{metric}_diff"] = d.claimed - observed if d is not None and observed is not None else None
        fields[f"{metric}_diff_pct"] = d.diff if observed is not None and d is not None else None
    return fields


def _apply_trust(
    claimed: ClaimedAttempt,
    classification: rules.Classification,
    log: dict[str, Any],
    now: dt.datetime,
    raised: list[str],
) -> Decimal:
    """Move the ledger so it sums to this conclusive status's delta; returns the ledger sum after."""
    trust_settings = claimed.ruleset.trust
    # The log keeps the ledger's sum (written in the same transaction as every ledger row), so no SUM query.
    ledger_sum = log["trust_delta"] if log["trust_delta"] is not None else Decimal(0)
    nominal = rules.correction_delta(
        ledger_sum=ledger_sum, new_status_event=classification.trust_event, settings=trust_settings
    )
    was_accurate = log["status"] == ReconciliationStatus.MATCHED
    is_accurate = classification.status == rules.Status.MATCHED
    accurate_change = int(is_accurate) - int(was_accurate)
    if nominal == 0 and accurate_change == 0:
        return ledger_sum
    affiliate = locked_reads.AFFILIATE.fetch(claimed.affiliate_id)
    if affiliate is None:
        raise Affiliate.DoesNotExist(f"affiliate {claimed.affiliate_id}")
    updates: dict = {}
    if accurate_change:
        updates["accurate_submissions"] = F("accurate_submissions") + accurate_change
    if nominal != 0:
        # The stored score is the truth even at exactly 0.0000: never substitute a default for a falsy score.
        before = affiliate["trust_score"]
        change = rules.apply_trust(score=before, nominal=nominal)
        TrustLedgerRow.objects.create(
            affiliate_id=claimed.affiliate_id,
            report_id=claimed.report_id,
            attempt_id=claimed.attempt_id,
            event=str(classification.trust_event),
            delta=change.nominal,
            effective_delta=change.effective,
            score_after=change.score_after,
        )
        updates["trust_score"] = change.score_after
        bucket_after = rules.bucket(change.score_after, trust_settings)
        transaction.on_commit(lambda: _count_bucket(str(bucket_after)))
        if rules.crossed_into_critical(before, change.score_after, trust_settings):
            alert_raise(
                alert_type=Alert.Type.LOW_TRUST,
                severity=Alert.Severity.HIGH,
                title=f"Affiliate {affiliate['name']} fell into the critical trust bucket ({change.score_after})",
                threshold={"score": str(change.score_after), "low_trust_min": trust_settings.low_trust_min},
                affiliate_id=claimed.affiliate_id,
                settings=claimed.ruleset.alerting,
                now=now,
            )
            raised.append(Alert.Type.LOW_TRUST)
        ledger_sum = ledger_sum + change.nominal
    Affiliate.objects.filter(pk=claimed.affiliate_id).update(**updates)
    return ledger_sum


def _raise_outcome_alerts(
    claimed: ClaimedAttempt,
    classification: rules.Classification,
    decision: rules.RetryDecision,
    missing_reason: str,
    now: dt.datetime,
    raised: list[str],
    verdict_changed: bool,
) -> None:
    status = classification.status
    raise_alert = functools.partial(
        alert_raise,
        affiliate_id=claimed.affiliate_id,
        platform_id=claimed.platform_id,
        report_id=claimed.report_id,
        settings=claimed.ruleset.alerting,
        now=now,
    )
    diffs = {
        d.metric: {"claimed": d.claimed, "platform": d.observed, "diff": d.diff}
        for d in classification.metrics
        if d.observed is not None
    }
    if status == rules.Status.AFFILIATE_OVERCLAIMED and verdict_changed:
        level = str(classification.level)
        raise_alert(
            alert_type=Alert.Type.OVERCLAIM,
            severity=Alert.Severity.CRITICAL if level == "CRITICAL" else Alert.Severity.HIGH,
            title=(
                f"Over-claim on report {claimed.report_id}: {classification.max_positive_diff:.0%} above the platform"
            ),
            threshold={
                "max_positive_diff": classification.max_positive_diff,
                "overclaim_threshold_pct": claimed.ruleset.reconciliation.overclaim_threshold_pct,
                "overclaim_critical_pct": claimed.ruleset.reconciliation.overclaim_critical_pct,
                "metrics": diffs,
            },
        )
        raised.append(Alert.Type.OVERCLAIM)
    elif status == rules.Status.DISCREPANCY_HIGH and verdict_changed:
        raise_alert(
            alert_type=Alert.Type.HIGH_DISCREPANCY,
            severity=Alert.Severity.HIGH,
            title=f"High discrepancy on report {claimed.report_id}: {classification.max_abs_diff:.0%}",
            threshold={
                "max_abs_diff": classification.max_abs_diff,
                "medium_max": claimed.ruleset.reconciliation.medium_max,
                "metrics": diffs,
            },
        )
        raised.append(Alert.Type.HIGH_DISCREPANCY)
    elif status == rules.Status.MISSING_PLATFORM_DATA and decision.raise_missing_alert:
        _raise_missing_data(
            report_id=claimed.report_id,
            affiliate_id=claimed.affiliate_id,
            platform_id=claimed.platform_id,
            ruleset=claimed.ruleset,
            missing_reason=missing_reason,
            retry_reason=decision.reason,
            now=now,
        )
        raised.append(Alert.Type.MISSING_DATA)


def _raise_missing_data(
    *,
    report_id: int,
    affiliate_id: int,
    platform_id: int,
    ruleset: RuleSet,
    missing_reason: str,
    retry_reason: str,
    now: dt.datetime,
) -> None:
    alert_raise(
        alert_type=Alert.Type.MISSING_DATA,
        severity=Alert.Severity.MEDIUM,
        title=f"No platform data for report {report_id} ({missing_reason}); giving up",
        threshold={"missing_reason": missing_reason, "reason": str(retry_reason)},
        affiliate_id=affiliate_id,
        platform_id=platform_id,
        report_id=report_id,
        settings=ruleset.alerting,
        now=now,
    )


def _count_bucket(bucket: str) -> None:
    TRUST_SCORE_BUCKET_TOTAL.labels(bucket=bucket).inc()


def _count_status(status: str, duration_seconds: float) -> None:
    RECONCILIATION_STATUS_TOTAL.labels(status=status).inc()
    RECONCILIATION_ATTEMPT_DURATION.observe(duration_seconds)


def default_fetch(claimed: ClaimedAttempt) -> FetchOutcome:
    from platforms.fetcher import fetch

    return fetch(platform=claimed.platform_slug, post_id=claimed.platform_post_id, quota_rps=claimed.quota_rps)


def attempt_fail(*, claimed: ClaimedAttempt, error: BaseException, now: dt.datetime) -> AttemptResult | str:
    """Record an attempt that raised as MISSING/``internal_error``, in a fresh transaction; or LEASE_LOST.

    The apply's own transaction may be what failed (an alert's JSON refused, a constraint), so this writes
    only values that cannot fail the same way: the outcome, plain strings and the schedule. It spends
    budget like any real failure (``internal_error`` is not a deferral), so a bug or a bad configuration
    ends in a terminal MISSING with its MISSING_DATA alert instead of a retry every lease period. During
    re-checks the verdict stands, as for any failed re-check.
    """
    reason = rules.MissingReason.INTERNAL_ERROR
    message = f"{type(error).__name__}: {error}"[:2000]
    with transaction.atomic():
        log = locked_reads.APPLY.fetch(claimed.report_id)
        if log is None or log["attempt_count"] != claimed.number or log["lease_until"] != claimed.lease_until:
            ReconciliationAttempt.objects.filter(pk=claimed.attempt_id, outcome=Outcome.RUNNING).update(
                outcome=Outcome.DISCARDED, finished_at=now
            )
            return SkipReason.LEASE_LOST
        had_conclusive = log["status"] in rules.CONCLUSIVE_STATUSES
        budget_used = log["budget_attempts"] + 1
        interval, window = claimed.recheck
        decision = rules.next_attempt(
            status=rules.Status.MISSING_PLATFORM_DATA,
            missing_reason=reason,
            attempts_used=budget_used,
            claimed_at=claimed.submitted_at,
            now=now,
            retry_after_seconds=None,
            incomplete_attempts=0,
            policy=claimed.ruleset.retry,
            rng=_rng,
            recheck_interval_hours=interval,
            recheck_window_days=window,
            has_conclusive_status=had_conclusive,
        )
        ReconciliationAttempt.objects.filter(pk=claimed.attempt_id).update(
            finished_at=now,
            outcome=Outcome.ERROR,
            status=ReconciliationStatus.MISSING_PLATFORM_DATA,
            missing_reason=reason,
        )
        fields: dict[str, Any] = {
            "lease_until": None,
            "dispatched_at": None,
            "last_attempt_at": now,
            "budget_attempts": budget_used,
            "next_attempt_at": decision.next_attempt_at,
            "terminal": decision.terminal,
            "error_code": reason,
            "error_message": message,
        }
        if not had_conclusive:
            fields.update(
                status=ReconciliationStatus.MISSING_PLATFORM_DATA,
                discrepancy_level=None,
                missing_reason=reason,
                max_diff_pct=None,
                confidence_ratio=0.0,
                missing_fields=list(rules.METRICS),
                **{f"{metric}_diff": None for metric in rules.METRICS},
                **{f"{metric}_diff_pct": None for metric in rules.METRICS},
            )
        ReconciliationLog.objects.filter(pk=log["log_id"]).update(**fields)
        raised: list[str] = []
        if decision.raise_missing_alert:
            _raise_missing_data(
                report_id=claimed.report_id,
                affiliate_id=claimed.affiliate_id,
                platform_id=claimed.platform_id,
                ruleset=claimed.ruleset,
                missing_reason=reason,
                retry_reason=decision.reason,
                now=now,
            )
            raised.append(Alert.Type.MISSING_DATA)
    return AttemptResult(
        report_id=claimed.report_id,
        attempt_number=claimed.number,
        status=str(rules.Status.MISSING_PLATFORM_DATA),
        level=None,
        missing_reason=reason,
        trust_delta=log["trust_delta"],
        next_attempt_at=decision.next_attempt_at,
        terminal=decision.terminal,
        alerts=tuple(raised),
    )


def attempt_run(
    *,
    report_id: int,
    worker: str | None = None,
    fetcher: Callable[[ClaimedAttempt], FetchOutcome] = default_fetch,
    clock: Callable[[], dt.datetime] = timezone.now,
) -> AttemptResult | str:
    """One whole attempt: claim, fetch outside any transaction, apply. Returns the result or why it skipped.

    Whatever raises after the claim (the fetch, the apply) ends as a recorded ``internal_error`` outcome
    (:func:`attempt_fail`) and in the shared list of worker exceptions; only if even that cannot be written
    (the database is gone) does the exception propagate, and the expired lease brings the report back.
    """
    started = time.monotonic()
    logger.info("Processing reconciliation job", extra={"report_id": report_id})
    claimed = attempt_claim(report_id=report_id, now=clock(), worker=worker or worker_name())
    if isinstance(claimed, str):
        logger.info("Reconciliation skipped", extra={"report_id": report_id, "reason": claimed})
        return claimed
    try:
        if claimed.setup_error is not None:
            raise claimed.setup_error
        outcome = fetcher(claimed)
        result = attempt_apply(claimed=claimed, outcome=outcome, now=clock())
    except Exception as exc:
        logger.exception(
            "Reconciliation job failed",
            extra={"report_id": report_id, "attempt": claimed.number, "error": f"{type(exc).__name__}: {exc}"},
        )
        record_worker_exception(report_id=report_id, exc=exc)
        result = attempt_fail(claimed=claimed, error=exc, now=clock())
    duration = time.monotonic() - started
    if isinstance(result, str):
        logger.warning("Reconciliation discarded", extra={"report_id": report_id, "reason": result})
        return result
    _count_status(result.status, duration)
    context = {
        "report_id": report_id,
        "attempt": result.attempt_number,
        "status": result.status,
        "discrepancy_level": result.level,
        "missing_reason": result.missing_reason or None,
        "trust_delta": str(result.trust_delta) if result.trust_delta is not None else None,
        "next_attempt_at": result.next_attempt_at.isoformat() if result.next_attempt_at else None,
        "terminal": result.terminal,
    }
    logger.info("Reconciliation completed", extra=context)
    audit.info("Business event: reconciliation_completed", extra={"event": "reconciliation_completed", **context})
    performance.info(
        "Performance: reconciliation_attempt",
        extra={"operation": "reconciliation_attempt", "duration_ms": round(duration * 1000, 2), "report_id": report_id},
    )
    return result


def reports_reopen(*, report_ids: list[int] | None = None, filters: Q | None = None, now: dt.datetime) -> list[int]:
    """Make reports due now again (staff run, ``rereconcile``); returns the ids reopened. Leased ones are left."""
    qs = ReconciliationLog.objects.filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
    if report_ids is not None:
        qs = qs.filter(report_id__in=report_ids)
    if filters is not None:
        qs = qs.filter(filters)
    with transaction.atomic():
        ids = list(qs.select_for_update(skip_locked=True).values_list("report_id", flat=True))
        ReconciliationLog.objects.filter(report_id__in=ids).update(
            next_attempt_at=now, terminal=False, dispatched_at=None
        )
    return ids

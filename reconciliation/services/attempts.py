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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import F, Field, Model, Q
from django.utils import timezone

from alerts.models import Alert
from alerts.services import alert_raise
from notifications.services import ReportVerdict, notify_reports_reconciled
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
from reconciliation.services import canary, locked_reads

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
    campaign_id: int | None = None
    #: The campaign's canary (``Campaign.shadow_rule_overrides``) as read with the claim; empty: no canary.
    shadow_rule_overrides: dict[str, Any] | None = None

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
        return _claimed(row, attempt.pk, number, lease_until, ruleset, setup_error, is_recheck)


def attempts_claim(*, report_ids: Sequence[int], now: dt.datetime, worker: str = "") -> list[ClaimedAttempt]:
    """Claim the next attempt of each of these reports that is claimable now; the others are left alone.

    One short transaction for the whole batch: the log rows are locked with ``SKIP LOCKED`` (a row another
    worker holds is being claimed or applied there: not ours), each row is checked exactly as
    :func:`attempt_claim` checks it, and every claimed report gets its own attempt row and lease. Three
    statements for any number of reports (lock, insert the attempts, set the leases), plus a few for a
    report whose previous attempt was abandoned.
    """
    if not report_ids:
        return []
    from django.db import connection

    worker = worker[:200]
    with transaction.atomic():
        rows = locked_reads.CLAIM.fetch_many(list(dict.fromkeys(report_ids)), skip_locked=True)
        chosen: list[tuple[dict[str, Any], RuleSet, Exception | None, int, dt.datetime, bool]] = []
        for row in rows:
            if row["terminal"] or row["next_attempt_at"] is None or row["next_attempt_at"] > now:
                continue
            if row["lease_until"] is not None and row["lease_until"] > now:
                continue
            setup_error: Exception | None = None
            try:
                ruleset = campaign_ruleset(row["rule_overrides"])
            except RuleOverrideError as exc:  # fail recorded, not in a loop (as attempt_claim)
                ruleset, setup_error = campaign_ruleset(None), exc
            is_recheck = row["status"] in rules.CONCLUSIVE_STATUSES
            if row["lease_until"] is not None:
                ReconciliationAttempt.objects.filter(report_id=row["report_id"], outcome=Outcome.RUNNING).update(
                    outcome=Outcome.DISCARDED, finished_at=now
                )
                if not is_recheck and _abandoned_attempt_ends_it(
                    row, report_id=row["report_id"], ruleset=ruleset, now=now
                ):
                    continue
            lease_until = now + dt.timedelta(seconds=ruleset.retry.lease_seconds)
            chosen.append((row, ruleset, setup_error, row["attempt_count"] + 1, lease_until, is_recheck))
        if not chosen:
            return []
        lease_field = _column(ReconciliationLog, "lease_until")
        leases = [
            (_SET_LEASE_SQL, [number, lease_field.get_db_prep_save(lease, connection), row["log_id"]])
            for row, _ruleset, _error, number, lease, _recheck in chosen
        ]
        new_attempts = [
            ReconciliationAttempt(
                report_id=row["report_id"], number=number, started_at=now, worker=worker, is_recheck=is_recheck
            )
            for row, _ruleset, _error, number, _lease, is_recheck in chosen
        ]
        if connection.vendor == "postgresql":
            # The attempt rows and the leases in one round trip; the INSERT's RETURNING is the first result.
            insert = _insert_sql(ReconciliationAttempt, new_attempts, _ATTEMPT_COLUMNS, returning="id, report_id")
            with connection.cursor() as cursor:
                _execute_together(cursor, [insert, *leases])
                attempt_ids = {report_id: attempt_id for attempt_id, report_id in cursor.fetchall()}
        else:
            created = ReconciliationAttempt.objects.bulk_create(new_attempts)
            attempt_ids = {a.report_id: a.pk for a in created}
            with connection.cursor() as cursor:
                for sql, params in leases:
                    cursor.execute(sql, params)
    return [
        _claimed(row, attempt_ids[row["report_id"]], number, lease_until, ruleset, setup_error, is_recheck)
        for row, ruleset, setup_error, number, lease_until, is_recheck in chosen
    ]


def _claimed(
    row: dict[str, Any],
    attempt_id: int,
    number: int,
    lease_until: dt.datetime,
    ruleset: RuleSet,
    setup_error: Exception | None,
    is_recheck: bool,
) -> ClaimedAttempt:
    """The claim of one report from its ``locked_reads.CLAIM`` row and the attempt just written for it."""
    return ClaimedAttempt(
        attempt_id=attempt_id,
        report_id=row["report_id"],
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
        campaign_id=row["campaign_id"],
        shadow_rule_overrides=row["shadow_rule_overrides"],
    )


_LOG_TABLE = ReconciliationLog._meta.db_table
_ATTEMPT_TABLE = ReconciliationAttempt._meta.db_table
#: Plain SQL with the models' table names: one prepared statement sent for many rows (``executemany``)
#: costs a fraction of compiling an ORM ``update()`` per row, and the worker's CPU is what limits it.
_SET_LEASE_SQL = f"UPDATE {_LOG_TABLE} SET attempt_count = %s, lease_until = %s WHERE id = %s"
_ATTEMPT_COLUMNS = (
    "report",
    "number",
    "started_at",
    "finished_at",
    "outcome",
    "status",
    "missing_reason",
    "duration_ms",
    "worker",
    "is_recheck",
    "ruleset_fingerprint",
)


def _insert_sql(
    model: type[Model], objs: Sequence[Model], names: Sequence[str], *, returning: str = ""
) -> tuple[str, list[Any]]:
    """``INSERT INTO <table> (<columns>) VALUES (...), (...)`` for these objects, values as the ORM prepares
    them (JSON, decimals, datetimes); model defaults apply, since the objects were built by the ORM."""
    from django.db import connection

    fields = [_column(model, name) for name in names]
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    params = [f.get_db_prep_save(getattr(obj, f.attname), connection) for obj in objs for f in fields]
    sql = f"INSERT INTO {model._meta.db_table} ({columns}) VALUES {', '.join([row] * len(objs))}"
    return (f"{sql} RETURNING {returning}" if returning else sql), params


def _execute_together(cursor: Any, statements: Sequence[tuple[str, list[Any]]]) -> None:
    """Several statements in one round trip (PostgreSQL; the parameters are bound on the client)."""
    sql = "; ".join(statement for statement, _params in statements)
    cursor.execute(sql, [param for _statement, params in statements for param in params])


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


@dataclass
class _Writes:
    """The rows a batch's apply writes, sent once per batch (bulk inserts, one prepared update for many rows).

    The per-report decision (:func:`_apply_one`) only describes its writes here; the trust score and alerts
    are written at once, in order, because the next report of the same affiliate builds on them.
    """

    finished: list[tuple[Any, ...]] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)
    discarded: list[int] = field(default_factory=list)
    snapshots: list[PlatformSnapshot] = field(default_factory=list)
    ledger: list[TrustLedgerRow] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    buckets: list[str] = field(default_factory=list)
    #: ``report.reconciled`` events (a first verdict, or a re-check that changed it) for the outbox.
    verdicts: list[ReportVerdict] = field(default_factory=list)

    def flush(self, now: dt.datetime) -> None:
        from django.db import connection

        if self.discarded:
            ReconciliationAttempt.objects.filter(pk__in=self.discarded, outcome=Outcome.RUNNING).update(
                outcome=Outcome.DISCARDED, finished_at=now
            )
        if self.deleted:
            ReconciliationAttempt.objects.filter(pk__in=self.deleted).delete()
        statements = [(_FINISH_ATTEMPT_SQL, _prep(_FINISH_ATTEMPT_FIELDS, row)) for row in self.finished]
        statements += [(_LOG_RESULT_SQL, _log_params(fields)) for fields in self.logs]
        if self.snapshots:
            statements.append(_insert_sql(PlatformSnapshot, self.snapshots, _SNAPSHOT_COLUMNS))
        if self.ledger:
            written_at = timezone.now()  # created_at is the time of writing (auto_now_add), not the apply's clock
            for row in self.ledger:
                row.created_at = written_at
            statements.append(_insert_sql(TrustLedgerRow, self.ledger, _LEDGER_COLUMNS))
        if statements:
            with connection.cursor() as cursor:
                if connection.vendor == "postgresql":
                    # Every write of the batch in one round trip: at batch size 1 the round trips are most of
                    # the apply's CPU.
                    _execute_together(cursor, statements)
                else:
                    for sql, params in statements:
                        cursor.execute(sql, params)
        if self.verdicts:
            notify_reports_reconciled(self.verdicts)
        if self.buckets:
            buckets = list(self.buckets)

            def count() -> None:
                for bucket in buckets:
                    _count_bucket(bucket)

            transaction.on_commit(count)


_FINISH_ATTEMPT_FIELDS = (
    "finished_at",
    "outcome",
    "status",
    "missing_reason",
    "duration_ms",
    "ruleset_fingerprint",
    "id",
)
_SNAPSHOT_COLUMNS = ("post", "attempt", "platform", "views", "clicks", "conversions", "raw", "fetched_at")
_LEDGER_COLUMNS = (
    "affiliate",
    "report",
    "attempt",
    "event",
    "delta",
    "effective_delta",
    "score_after",
    "created_at",
)
_FINISH_ATTEMPT_SQL = (
    f"UPDATE {_ATTEMPT_TABLE} SET finished_at = %s, outcome = %s, status = %s, missing_reason = %s,"
    " duration_ms = %s, ruleset_fingerprint = %s WHERE id = %s"
)
#: Every apply writes the schedule; the result columns only when ``write_result`` (a failed re-check keeps
#: the verdict already known) and the ledger sum only when ``write_trust``.
_LOG_SCHEDULE = (
    "lease_until",
    "dispatched_at",
    "last_attempt_at",
    "budget_attempts",
    "next_attempt_at",
    "terminal",
    "error_code",
    "error_message",
    "attempt_count",
)
_LOG_RESULT = (
    "status",
    "discrepancy_level",
    "max_diff_pct",
    "confidence_ratio",
    "missing_fields",
    "missing_reason",
    "ruleset_fingerprint",
    *(f"{metric}_diff" for metric in rules.METRICS),
    *(f"{metric}_diff_pct" for metric in rules.METRICS),
)
_LOG_RESULT_SQL = (
    f"UPDATE {_LOG_TABLE} SET "
    + ", ".join(f"{name} = %s" for name in _LOG_SCHEDULE)
    + ", deferral_count = deferral_count + %s, last_deferred_at = COALESCE(%s, last_deferred_at), "
    + ", ".join(f"{name} = CASE WHEN %s THEN %s ELSE {name} END" for name in _LOG_RESULT)
    + ", trust_delta = CASE WHEN %s THEN %s ELSE trust_delta END"
    + " WHERE id = %s"
)


def _column(model: type[Model], name: str) -> Field:
    found = model._meta.get_field(name)
    assert isinstance(found, Field)
    return found


def _prep(names: Sequence[str], values: Sequence[Any]) -> list[Any]:
    from django.db import connection

    return [
        _column(ReconciliationAttempt, name).get_db_prep_save(value, connection)
        for name, value in zip(names, values, strict=True)
    ]


def _log_params(fields: dict[str, Any]) -> list[Any]:
    from django.db import connection

    def prep(name: str, value: Any) -> Any:
        return _column(ReconciliationLog, name).get_db_prep_save(value, connection)

    params = [prep(name, fields[name]) for name in _LOG_SCHEDULE]
    params += [fields["deferrals"], prep("last_deferred_at", fields.get("last_deferred_at"))]
    write_result = "status" in fields
    for name in _LOG_RESULT:
        params += [write_result, prep(name, fields.get(name)) if write_result else None]
    write_trust = "trust_delta" in fields
    params += [write_trust, prep("trust_delta", fields.get("trust_delta")) if write_trust else None]
    params.append(fields["log_id"])
    return params


def attempt_apply(
    *, claimed: ClaimedAttempt, outcome: FetchOutcome, now: dt.datetime, rng: rules.UniformRandom | None = None
) -> AttemptResult | str:
    """Write the outcome of a claimed attempt in one transaction, or return SkipReason.LEASE_LOST."""
    return attempts_apply(items=[(claimed, outcome)], now=now, rng=rng)[0]


def attempts_apply(
    *,
    items: Sequence[tuple[ClaimedAttempt, FetchOutcome]],
    now: dt.datetime,
    rng: rules.UniformRandom | None = None,
) -> list[AttemptResult | str]:
    """Write the outcomes of a batch of claimed attempts in one transaction; each report is guarded on its own.

    A report whose lease is no longer ours is skipped (``SkipReason.LEASE_LOST``), the others apply. The
    log rows are locked in one statement, in primary-key order; the reports are then applied in affiliate
    order, so two batches that move the same affiliates' scores take those row locks in the same order.
    Results come back in the order of ``items``.
    """
    rng = rng or _rng
    with transaction.atomic():
        locked = {row["report_id"]: row for row in locked_reads.APPLY.fetch_many([c.report_id for c, _ in items])}
        writes = _Writes()
        results: dict[int, AttemptResult | str] = {}
        order = sorted(range(len(items)), key=lambda i: (items[i][0].affiliate_id, items[i][0].report_id))
        for index in order:
            claimed, outcome = items[index]
            results[index] = _apply_one(
                claimed=claimed, outcome=outcome, log=locked.get(claimed.report_id), now=now, rng=rng, writes=writes
            )
        writes.flush(now)
    return [results[index] for index in range(len(items))]


def _apply_one(
    *,
    claimed: ClaimedAttempt,
    outcome: FetchOutcome,
    log: dict[str, Any] | None,
    now: dt.datetime,
    rng: rules.UniformRandom,
    writes: _Writes,
) -> AttemptResult | str:
    """One report's apply, inside the batch's transaction with its log row locked: the attempt protocol's
    step 3 for this report. Everything an outcome causes for one report is decided (and, for trust and
    alerts, written) here."""
    if log is None or log["attempt_count"] != claimed.number or log["lease_until"] != claimed.lease_until:
        writes.discarded.append(claimed.attempt_id)
        return SkipReason.LEASE_LOST

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
    fields: dict[str, Any] = {"log_id": log["log_id"], "attempt_count": claimed.number, "deferrals": 0}
    if deferred and not decision.terminal:
        # The platform was never asked (breaker open, rate limited), so the RUNNING row the claim wrote
        # is not evidence of anything: delete it and give its number back, and count the deferral on
        # the log instead. A day-long outage with a 60 s cooldown would otherwise write ~1,440 rows per
        # report. Deleting (rather than keeping the row for the next claim to reuse) keeps the claim
        # simple and the numbers dense: the next claim takes this same number again, which is free
        # once the row is gone (unique (report, number) holds), and a stale worker's apply for it is
        # still refused, because the lease it compares (lease_until) is gone. A deferral that ends
        # the report (window expired) keeps its row: it is the last word on the report.
        writes.deleted.append(claimed.attempt_id)
        fields.update(attempt_count=claimed.number - 1, deferrals=1, last_deferred_at=now)
    else:
        writes.finished.append(
            (
                now,
                attempt_outcome,
                str(status),
                missing_reason,
                round(outcome.duration_seconds * 1000, 3),
                claimed.ruleset.fingerprint,
                claimed.attempt_id,
            )
        )
    if outcome.metrics is not None and classification.confidence_ratio > 0:
        writes.snapshots.append(
            PlatformSnapshot(
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
        )

    ledger_sum = None
    if conclusive:
        ledger_sum = _apply_trust(claimed, classification, log, now, raised, writes)

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
        fields["ruleset_fingerprint"] = claimed.ruleset.fingerprint
    if ledger_sum is not None:
        fields["trust_delta"] = ledger_sum
    writes.logs.append(fields)
    if claimed.shadow_rule_overrides:
        canary.shadow_verdict_record(
            claimed=claimed, platform=_observed(outcome), hours=hours, live=classification, now=now
        )

    # A verdict raises its alert when it is reached, not again each time a re-check confirms it.
    verdict_changed = conclusive and (log["status"], log["discrepancy_level"]) != (
        str(status),
        str(classification.level) if classification.level else None,
    )
    _raise_outcome_alerts(claimed, classification, decision, missing_reason, now, raised, verdict_changed)
    if verdict_changed:
        writes.verdicts.append(
            ReportVerdict(
                report_id=claimed.report_id,
                changed=True,
                previous_status=log["status"],
                status=str(status),
                level=str(classification.level) if classification.level else None,
                is_recheck=claimed.is_recheck,
                now=now,
            )
        )

    return AttemptResult(
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
    writes: _Writes,
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
    moved = _move_score(claimed.affiliate_id, nominal=rules.to_score(nominal), accurate_change=accurate_change)
    if moved is None:
        raise Affiliate.DoesNotExist(f"affiliate {claimed.affiliate_id}")
    before, after, name = moved
    if nominal != 0:
        # The stored score is the truth even at exactly 0.0000: never substitute a default for a falsy score.
        change = rules.apply_trust(score=before, nominal=nominal)
        if change.score_after != after:  # the database's clamp and the rules' clamp are one rule
            raise AssertionError(f"trust score {after} after the update, the rules say {change.score_after}")
        writes.ledger.append(
            TrustLedgerRow(
                affiliate_id=claimed.affiliate_id,
                report_id=claimed.report_id,
                attempt_id=claimed.attempt_id,
                event=str(classification.trust_event),
                delta=change.nominal,
                effective_delta=change.effective,
                score_after=change.score_after,
            )
        )
        writes.buckets.append(str(rules.bucket(change.score_after, trust_settings)))
        if rules.crossed_into_critical(before, change.score_after, trust_settings):
            alert_raise(
                alert_type=Alert.Type.LOW_TRUST,
                severity=Alert.Severity.HIGH,
                title=f"Affiliate {name} fell into the critical trust bucket ({change.score_after})",
                threshold={"score": str(change.score_after), "low_trust_min": trust_settings.low_trust_min},
                affiliate_id=claimed.affiliate_id,
                settings=claimed.ruleset.alerting,
                now=now,
            )
            raised.append(Alert.Type.LOW_TRUST)
        ledger_sum = ledger_sum + change.nominal
    return ledger_sum


_AFFILIATE_TABLE = Affiliate._meta.db_table
#: One statement locks the affiliate, moves its score (clamped to [0, 1], as ``rules.apply_trust``) and
#: returns the score before and after: the locked read and the update it replaces were two.
_MOVE_SCORE_SQL = (
    f"UPDATE {_AFFILIATE_TABLE} a SET trust_score = LEAST(1, GREATEST(0, a.trust_score + %s)),"
    " accurate_submissions = a.accurate_submissions + %s"
    f" FROM (SELECT id, trust_score FROM {_AFFILIATE_TABLE} WHERE id = %s FOR UPDATE) old"
    " WHERE a.id = old.id RETURNING old.trust_score, a.trust_score, a.name"
)


def _move_score(affiliate_id: int, *, nominal: Decimal, accurate_change: int) -> tuple[Decimal, Decimal, str] | None:
    """(score before, score after, name) of the affiliate after moving its score by ``nominal``; None if absent."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(_MOVE_SCORE_SQL, [nominal, accurate_change, affiliate_id])
            row = cursor.fetchone()
        return None if row is None else (Decimal(row[0]), Decimal(row[1]), row[2])
    # Elsewhere (the embedded SQLite of `make run`) the transaction already holds the write lock.
    affiliate = locked_reads.AFFILIATE.fetch(affiliate_id)
    if affiliate is None:
        return None
    after = rules.apply_trust(score=affiliate["trust_score"], nominal=nominal).score_after
    Affiliate.objects.filter(pk=affiliate_id).update(
        trust_score=after, accurate_submissions=F("accurate_submissions") + accurate_change
    )
    return affiliate["trust_score"], after, affiliate["name"]


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


#: Fetches a batch of claimed attempts of one platform; the outcome of each, by attempt id.
BatchFetcher = Callable[[list[ClaimedAttempt]], dict[int, FetchOutcome]]


def default_fetch_batch(claimed: list[ClaimedAttempt]) -> dict[int, FetchOutcome]:
    from platforms.fetcher import fetch_batch

    by_post = fetch_batch(
        platform=claimed[0].platform_slug,
        post_ids=[c.platform_post_id for c in claimed],
        quota_rps=claimed[0].quota_rps,
    )
    return {c.attempt_id: by_post[c.platform_post_id] for c in claimed}


def attempts_run(
    *,
    report_ids: Sequence[int],
    worker: str | None = None,
    fetcher: BatchFetcher = default_fetch_batch,
    clock: Callable[[], dt.datetime] = timezone.now,
) -> list[AttemptResult | str]:
    """A batch of attempts: claim every claimable report, one platform request per platform, one apply.

    The protocol holds per report: each claimed report has its own attempt row and lease, the fetch runs
    outside any transaction, and the apply skips a report whose lease was lost while applying the others.
    What raises ends recorded as for :func:`attempt_run`: a failed fetch fails every report it was for;
    an apply that fails as a whole is retried report by report, so one bad report cannot sink the others.
    Reports that are not claimable (leased, done, not due, locked by another worker) are left out of the
    results: a duplicate delivery of the same batch does nothing.
    """
    started = time.monotonic()
    claimed = attempts_claim(report_ids=report_ids, now=clock(), worker=worker or worker_name())
    if len(claimed) < len(report_ids):
        logger.info(
            "Reconciliation skipped",
            extra={"report_ids": sorted(set(report_ids) - {c.report_id for c in claimed}), "reason": "not_claimable"},
        )
    if not claimed:
        return []
    logger.info("Processing reconciliation job", extra={"report_ids": [c.report_id for c in claimed]})
    results: list[AttemptResult | str] = []
    by_platform: dict[str, list[ClaimedAttempt]] = {}
    for c in claimed:
        by_platform.setdefault(c.platform_slug, []).append(c)
    for group in by_platform.values():
        ready = [c for c in group if c.setup_error is None]
        results += [_fail(c, c.setup_error, clock) for c in group if c.setup_error is not None]
        if not ready:
            continue
        try:
            outcomes = fetcher(ready)
        except Exception as exc:
            results += [_fail(c, exc, clock) for c in ready]
            continue
        try:
            results += attempts_apply(items=[(c, outcomes[c.attempt_id]) for c in ready], now=clock())
        except Exception:
            # Which report broke the batch's transaction is not known: apply each on its own.
            for c in ready:
                try:
                    results.append(attempt_apply(claimed=c, outcome=outcomes[c.attempt_id], now=clock()))
                except Exception as exc:
                    results.append(_fail(c, exc, clock))
    _report_batch(claimed, results, time.monotonic() - started)
    return results


def _fail(claimed: ClaimedAttempt, exc: BaseException, clock: Callable[[], dt.datetime]) -> AttemptResult | str:
    logger.error(
        "Reconciliation job failed",
        exc_info=exc,
        extra={"report_id": claimed.report_id, "attempt": claimed.number, "error": f"{type(exc).__name__}: {exc}"},
    )
    record_worker_exception(report_id=claimed.report_id, exc=exc)
    return attempt_fail(claimed=claimed, error=exc, now=clock())


def _report_batch(claimed: list[ClaimedAttempt], results: list[AttemptResult | str], duration: float) -> None:
    """Metrics and log lines of a batch: one ``Reconciliation completed`` line per report (the runbook's
    evidence line), one performance line and one histogram observation per batch."""
    for result in results:
        if isinstance(result, str):
            logger.warning("Reconciliation discarded", extra={"reason": result})
            continue
        RECONCILIATION_STATUS_TOTAL.labels(status=result.status).inc()
        logger.info(
            "Reconciliation completed",
            extra={
                "report_id": result.report_id,
                "attempt": result.attempt_number,
                "status": result.status,
                "discrepancy_level": result.level,
                "missing_reason": result.missing_reason or None,
                "trust_delta": str(result.trust_delta) if result.trust_delta is not None else None,
                "next_attempt_at": result.next_attempt_at.isoformat() if result.next_attempt_at else None,
                "terminal": result.terminal,
            },
        )
        audit.info(
            "Business event: reconciliation_completed",
            extra={"event": "reconciliation_completed", "report_id": result.report_id, "status": result.status},
        )
    RECONCILIATION_ATTEMPT_DURATION.observe(duration)
    performance.info(
        "Performance: reconciliation_attempt",
        extra={
            "operation": "reconciliation_attempt",
            "duration_ms": round(duration * 1000, 2),
            "reports": len(claimed),
            "platform": claimed[0].platform_slug,
        },
    )


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

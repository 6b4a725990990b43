"""Batches of attempts: the protocol holds per report when K reports share one claim, fetch and apply."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from platforms.adapters.base import PlatformMetrics
from platforms.fetcher import FetchOutcome
from reconciliation.models import Affiliate, ReconciliationAttempt, ReconciliationLog, TrustEvent
from reconciliation.services.attempts import (
    AttemptResult,
    ClaimedAttempt,
    SkipReason,
    attempts_apply,
    attempts_claim,
    attempts_run,
)
from tests import factories

CLAIM: dict[str, Any] = {"claimed_views": 1000, "claimed_clicks": 100, "claimed_conversions": 10}


def ok() -> FetchOutcome:
    metrics = PlatformMetrics(1000, 100, 10, raw={"sandbox": True})
    return FetchOutcome(metrics=metrics, missing_fields=[], attempts=1, duration_seconds=0.01)


def not_found() -> FetchOutcome:
    return FetchOutcome(metrics=None, error_code="not_found", error_message="no row", attempts=1)


def answer_all(claimed: list[ClaimedAttempt]) -> dict[int, FetchOutcome]:
    return {c.attempt_id: ok() for c in claimed}


def reports(n: int, *, affiliates: int = 3) -> list[int]:
    people = [factories.affiliate() for _ in range(affiliates)]
    platform = factories.platform("youtube")
    return [
        factories.report(post=factories.post(affiliate=people[i % affiliates], platform=platform), **CLAIM).pk
        for i in range(n)
    ]


@pytest.mark.django_db
def test_a_batch_answer_missing_some_ids_makes_only_those_not_found() -> None:
    ids = reports(6)
    missing = set(ids[::2])

    def partial(claimed: list[ClaimedAttempt]) -> dict[int, FetchOutcome]:
        return {c.attempt_id: not_found() if c.report_id in missing else ok() for c in claimed}

    results = attempts_run(report_ids=ids, worker="test", fetcher=partial)
    assert len(results) == 6
    logs = {log.report_id: log for log in ReconciliationLog.objects.filter(report_id__in=ids)}
    for report_id in ids:
        log = logs[report_id]
        if report_id in missing:
            assert (log.status, log.missing_reason, log.terminal) == ("MISSING_PLATFORM_DATA", "not_found", False)
            assert log.next_attempt_at is not None and log.lease_until is None
        else:
            assert (log.status, log.trust_delta) == ("MATCHED", Decimal("0.0100"))
    assert TrustEvent.objects.filter(report_id__in=ids).count() == 3


@pytest.mark.django_db
def test_a_report_whose_lease_expired_mid_batch_is_skipped_and_the_others_apply() -> None:
    ids = reports(4)
    start = dt.datetime.now(dt.UTC)
    first = attempts_claim(report_ids=ids, now=start, worker="slow")
    assert [c.report_id for c in first] == ids
    # The slow worker's lease on one report runs out; another worker claims that report again and finishes.
    later = start + dt.timedelta(seconds=first[0].ruleset.retry.lease_seconds + 1)
    (second,) = attempts_claim(report_ids=[ids[1]], now=later, worker="fast")
    assert second.number == 2
    assert attempts_apply(items=[(second, ok())], now=later)[0] != SkipReason.LEASE_LOST

    results = attempts_apply(items=[(c, ok()) for c in first], now=later)
    assert results[1] == SkipReason.LEASE_LOST
    assert all(isinstance(r, AttemptResult) for i, r in enumerate(results) if i != 1)
    for report_id in ids:
        assert TrustEvent.objects.filter(report_id=report_id).count() == 1
        assert ReconciliationLog.objects.get(report_id=report_id).status == "MATCHED"
    outcomes = list(
        ReconciliationAttempt.objects.filter(report_id=ids[1]).order_by("number").values_list("number", "outcome")
    )
    assert outcomes == [(1, "DISCARDED"), (2, "SUCCESS")]


@pytest.mark.django_db(transaction=True)
def test_the_same_batch_run_twenty_times_at_once_gives_each_report_one_verdict() -> None:
    ids = reports(10)
    barrier = threading.Barrier(20)
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            barrier.wait()
            attempts_run(report_ids=ids, worker=threading.current_thread().name, fetcher=answer_all)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    for report_id in ids:
        assert ReconciliationAttempt.objects.filter(report_id=report_id).count() == 1
        assert TrustEvent.objects.filter(report_id=report_id).count() == 1
        assert ReconciliationLog.objects.get(report_id=report_id).status == "MATCHED"
    affiliates = {a.pk: a.trust_score for a in Affiliate.objects.all()}
    for affiliate_id, score in affiliates.items():
        events = TrustEvent.objects.filter(affiliate_id=affiliate_id).count()
        assert score == Decimal("0.5000") + Decimal("0.0100") * events


#: (statements, round trips) per report of a batch, claim and apply together, for the common outcome
#: (MATCHED, a trust event, a first verdict). Statements: lock, insert the attempts, one lease update per
#: report; lock, one score update, attempt update and log update per report, the webhook subscriptions of
#: the batch's new verdicts (the notifications' outbox), insert the snapshots, insert the ledger rows.
#: Batch of one: 10 statements in 6 round trips (the attempt insert travels with the lease, and the apply's
#: writes after the score together). Batch of 20: 4 statements per report and 6 for the batch (4.3), in
#: 25 round trips (1.25 per report). BEGIN/COMMIT are not counted.
BOUNDS = {1: (10.0, 6.0), 20: (4.3, 1.25)}


@pytest.mark.django_db
@pytest.mark.parametrize("size", sorted(BOUNDS))
def test_statements_and_round_trips_per_reconciled_report_are_bounded(size: int) -> None:
    ids = reports(size, affiliates=size)
    with CaptureQueriesContext(connection) as queries:
        results = attempts_run(report_ids=ids, worker="test", fetcher=answer_all)
    assert all(isinstance(r, AttemptResult) and r.status == "MATCHED" for r in results)
    # The test runs inside a transaction, so the claim's and the apply's BEGIN/COMMIT show as savepoints.
    transaction_control = ("SAVEPOINT", "RELEASE SAVEPOINT", "BEGIN", "COMMIT")
    trips = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(transaction_control)]
    statements = sum(sql.count("; ") + 1 for sql in trips)
    max_statements, max_trips = BOUNDS[size]
    assert statements / size <= max_statements, trips
    assert len(trips) / size <= max_trips, trips

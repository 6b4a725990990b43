"""End to end with real Celery worker processes, Redis, PostgreSQL and the platform sandbox over HTTP.

One submission per row of DESIGN §4's table: the sandbox's truth puts it in that row, and it must end
with that status, level, trust delta, alert (or none) and next check time.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from alerts.models import Alert
from reconciliation.models import (
    AffiliateReport,
    ReconciliationAttempt,
    ReconciliationLog,
    TrustEvent,
)
from reconciliation.services.dispatch import send_reconcile
from tests import factories
from tests.integration.conftest import wait_until

pytestmark = [pytest.mark.integration]

BASE = {"views": 1000, "clicks": 100, "conversions": 10}


def submit(campaign, affiliate, post_id: str, claim: dict, *, platform: str = "youtube", dispatch: bool = True):
    post = factories.post(
        campaign=campaign, affiliate=affiliate, platform=factories.platform(platform), platform_post_id=post_id
    )
    report = factories.report(
        post=post,
        claimed_views=claim["views"],
        claimed_clicks=claim["clicks"],
        claimed_conversions=claim["conversions"],
    )
    if dispatch:
        send_reconcile(report.pk)
    return report


def settled(report_ids: list[int]) -> bool:
    return not ReconciliationLog.objects.filter(report_id__in=report_ids, status="PENDING").exists() and not (
        ReconciliationLog.objects.filter(report_id__in=report_ids, lease_until__isnull=False).exists()
    )


def finished_deliveries(processes, *workers: str) -> int:
    """``reconcile_report`` deliveries that ran to the end in these workers (Celery's own success lines)."""
    return sum(
        1
        for name in workers
        for line in processes.output(name).splitlines()
        if "reconciliation.tasks.reconcile_report[" in line and "] succeeded in " in line
    )


def close_to(actual: dt.datetime | None, expected: dt.datetime, tolerance: dt.timedelta) -> bool:
    return actual is not None and abs(actual - expected) <= tolerance


# (name, platform truth, claim, status, level, trust delta, alert type and severity, next check)
ROWS: list[tuple[Any, ...]] = [
    ("missing", {"exists": False}, BASE, "MISSING_PLATFORM_DATA", None, None, None, "retry_30m"),
    (
        "overclaim_critical",
        {**BASE, "views": 600},
        BASE,
        "AFFILIATE_OVERCLAIMED",
        "CRITICAL",
        "-0.1000",
        ("OVERCLAIM", "CRITICAL"),
        "recheck",
    ),
    (
        "overclaim_high",
        {**BASE, "views": 800},
        BASE,
        "AFFILIATE_OVERCLAIMED",
        "HIGH",
        "-0.1000",
        ("OVERCLAIM", "HIGH"),
        "recheck",
    ),
    ("incomplete", {**BASE, "conversions": None}, BASE, "INCOMPLETE_PLATFORM_DATA", None, None, None, "retry_15m"),
    ("matched", BASE, BASE, "MATCHED", None, "0.0100", None, "recheck"),
    ("low", {**BASE, "views": 1080}, BASE, "DISCREPANCY_LOW", "LOW", "-0.0100", None, "recheck"),
    ("medium", {**BASE, "views": 1150}, BASE, "DISCREPANCY_MEDIUM", "MEDIUM", "-0.0300", None, "recheck"),
    (
        "high",
        {**BASE, "views": 1400},
        BASE,
        "DISCREPANCY_HIGH",
        "HIGH",
        "-0.0500",
        ("HIGH_DISCREPANCY", "HIGH"),
        "recheck",
    ),
]


def test_each_row_of_the_rules_table_end_to_end(processes, sandbox_client) -> None:
    processes.worker("w1")
    processes.worker("w2")
    campaign = factories.campaign(platforms=("youtube",))
    cases = {}
    for index, (name, truth, claim, *expected) in enumerate(ROWS):
        affiliate = factories.affiliate()  # one per row: the trust movement of each row stands alone
        post_id = f"row{index:02d}{name}"[:11].ljust(11, "x")
        sandbox_client.set_post("youtube", post_id, **truth)
        cases[name] = (submit(campaign, affiliate, post_id, claim), affiliate, expected)
    ids = [report.pk for report, _, _ in cases.values()]
    wait_until(lambda: settled(ids), timeout=60, what="every report to be reconciled")

    for name, (report, affiliate, (status, level, delta, alert, next_check)) in cases.items():
        log = ReconciliationLog.objects.get(report=report)
        assert (log.status, log.discrepancy_level) == (status, level), name
        affiliate.refresh_from_db()
        ledger = list(TrustEvent.objects.filter(report=report).values_list("delta", flat=True))
        if delta is None:
            assert ledger == [] and affiliate.trust_score == Decimal("0.5"), name
            assert log.trust_delta is None, name
        else:
            assert ledger == [Decimal(delta)], name
            assert affiliate.trust_score == Decimal("0.5") + Decimal(delta), name
            assert log.trust_delta == Decimal(delta), name
        alerts = list(Alert.objects.filter(report=report).values_list("alert_type", "severity"))
        assert alerts == ([alert] if alert else []), name
        last = log.last_attempt_at
        assert last is not None, name
        submitted = report.submitted_at
        if next_check == "retry_30m":
            assert log.missing_reason == "not_found"
            assert close_to(log.next_attempt_at, last + dt.timedelta(minutes=30), dt.timedelta(minutes=3.1)), name
            assert not log.terminal
        elif next_check == "retry_15m":
            assert log.missing_fields == ["conversions"]
            assert close_to(log.next_attempt_at, last + dt.timedelta(minutes=15), dt.timedelta(seconds=5)), name
        else:
            assert log.next_attempt_at == submitted + dt.timedelta(hours=6), name
            assert not log.terminal
        assert ReconciliationAttempt.objects.filter(report=report).count() == 1, name


def test_duplicate_deliveries_make_one_attempt_and_one_ledger_row(processes, sandbox_client) -> None:
    processes.worker("w1", concurrency=8)
    processes.worker("w2", concurrency=8)
    campaign = factories.campaign(platforms=("youtube",))
    sandbox_client.set_post("youtube", "dupdupdup01", **BASE)
    report = submit(campaign, factories.affiliate(), "dupdupdup01", BASE, dispatch=False)
    # 20 copies of the same message at once, to two worker processes with 8 threads each.
    for _ in range(20):
        assert send_reconcile(report.pk)
    wait_until(lambda: settled([report.pk]), timeout=30, what="the report to be reconciled")
    # Count only once every copy has finished. An empty queue says nothing: under acks_late a copy leaves
    # the list when a worker takes it and may still be running. Celery writes "Task …[id] succeeded" only
    # after the task body returned, so 20 such lines cannot appear before the 20th copy is done.
    wait_until(lambda: finished_deliveries(processes, "w1", "w2") >= 20, timeout=30, what="every copy to be consumed")
    assert finished_deliveries(processes, "w1", "w2") == 20
    assert ReconciliationAttempt.objects.filter(report=report).count() == 1
    assert TrustEvent.objects.filter(report=report).count() == 1
    assert ReconciliationLog.objects.get(report=report).status == "MATCHED"


def _other_backends() -> set[int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
        )
        return {pid for (pid,) in cursor.fetchall()}


def test_a_worker_keeps_its_database_connections_from_task_to_task(processes, sandbox_client) -> None:
    """Celery's Django fixup would close them around every task: a new PostgreSQL backend per task.

    A kept connection that the server drops in between (restart, failover, idle timeout) is found by the
    health check before the next task uses it: that task still reconciles its report.
    """
    from django.db import connection

    processes.worker("w1", concurrency=2)
    campaign = factories.campaign(platforms=("youtube",))

    def run_batch(batch: int) -> list[int]:
        ids = []
        for index in range(6):
            post_id = f"reuse{batch}{index:05d}"
            sandbox_client.set_post("youtube", post_id, **BASE)
            ids.append(submit(campaign, factories.affiliate(), post_id, BASE).pk)
        wait_until(lambda: settled(ids), timeout=30, what=f"batch {batch} to be reconciled")
        return ids

    run_batch(0)
    first = _other_backends()
    run_batch(1)
    second = _other_backends()
    assert first, "the worker's connections were closed after its tasks"
    assert first & second, (first, second)

    with connection.cursor() as cursor:
        for pid in second:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    ids = run_batch(2)
    assert set(ReconciliationLog.objects.filter(report_id__in=ids).values_list("status", flat=True)) == {"MATCHED"}
    assert not ReconciliationAttempt.objects.filter(report_id__in=ids).exclude(outcome="SUCCESS").exists()
    assert not (_other_backends() & second)


def test_a_report_never_dispatched_is_found_by_beat_and_reconciled(processes, sandbox_client) -> None:
    """The row is the outbox: a report whose message never reached the broker is still reconciled."""
    processes.worker("w1")
    processes.beat()
    campaign = factories.campaign(platforms=("youtube",))
    sandbox_client.set_post("youtube", "outboxoutbx", **BASE)
    report = submit(campaign, factories.affiliate(), "outboxoutbx", BASE, dispatch=False)
    wait_until(lambda: settled([report.pk]), timeout=30, what="beat's sweeper to dispatch the report")
    assert ReconciliationLog.objects.get(report=report).status == "MATCHED"


def test_worker_killed_during_fetch_is_recovered_by_another_after_the_lease(
    processes, sandbox_client, settings
) -> None:
    lease = 6
    settings.RETRY_POLICY = settings.RETRY_POLICY.model_copy(update={"lease_seconds": lease})
    campaign = factories.campaign(platforms=("youtube",), rule_overrides={"RETRY_POLICY": {"lease_seconds": lease}})
    sandbox_client.set_post("youtube", "crashcrash1", **BASE)
    sandbox_client.set_fault("youtube", latency_ms=5000)
    processes.worker("doomed", concurrency=1)
    report = submit(campaign, factories.affiliate(), "crashcrash1", BASE)
    wait_until(
        lambda: ReconciliationAttempt.objects.filter(report=report, outcome="RUNNING").exists(),
        timeout=20,
        what="the first attempt to start fetching",
    )
    processes.kill("doomed")  # SIGKILL mid-fetch: no chance to clean up
    sandbox_client.clear_fault("youtube")
    processes.worker("survivor", concurrency=2)
    processes.beat(RETRY_POLICY__LEASE_SECONDS=str(lease))
    wait_until(
        lambda: ReconciliationLog.objects.get(report=report).status != "PENDING",
        timeout=45,
        what="the survivor to reconcile the report after the lease expired",
    )
    attempts = list(
        ReconciliationAttempt.objects.filter(report=report).order_by("number").values_list("number", "outcome")
    )
    assert attempts == [(1, "DISCARDED"), (2, "SUCCESS")]
    assert TrustEvent.objects.filter(report=report).count() == 1
    assert ReconciliationLog.objects.get(report=report).status == "MATCHED"
    assert "survivor" in ReconciliationAttempt.objects.get(report=report, number=2).worker


def test_outage_gives_missing_with_reasons_no_trust_change_and_finally_a_missing_data_alert(
    processes, sandbox_client
) -> None:
    # A short retry schedule so the whole budget plays out in seconds.
    campaign = factories.campaign(
        platforms=("youtube",),
        rule_overrides={"RETRY_POLICY": {"initial_delay_minutes": 0.01, "max_attempts": 3, "jitter_pct": 0}},
    )
    sandbox_client.set_fault("youtube", outage=True)
    processes.worker("w1", BACKOFF_POLICY__MAX_RETRIES="0", CIRCUIT_BREAKER__OPEN_COOLDOWN_SECONDS="1")
    affiliate = factories.affiliate()
    reports = [submit(campaign, affiliate, f"outage{i:05d}", BASE) for i in range(8)]
    processes.beat()
    ids = [r.pk for r in reports]
    wait_until(
        lambda: ReconciliationLog.objects.filter(report_id__in=ids, terminal=True).count() == len(ids),
        timeout=60,
        what="every report to exhaust its budget",
    )
    reasons = set(ReconciliationAttempt.objects.filter(report_id__in=ids).values_list("missing_reason", flat=True))
    assert "fetch_error" in reasons
    # Deferrals because the breaker was open wrote no attempt row and spent no budget: they are counted on
    # the log, and each report made exactly 3 real attempts.
    assert sum(ReconciliationLog.objects.filter(report_id__in=ids).values_list("deferral_count", flat=True)) > 0
    for report_id in ids:
        real = ReconciliationAttempt.objects.filter(report_id=report_id).exclude(outcome="DEFERRED").count()
        assert real == 3
        log = ReconciliationLog.objects.get(report_id=report_id)
        assert log.status == "MISSING_PLATFORM_DATA" and log.missing_reason in {"fetch_error", "circuit_open"}
        assert log.next_attempt_at is None
    assert not TrustEvent.objects.filter(report_id__in=ids).exists()
    affiliate.refresh_from_db()
    assert affiliate.trust_score == Decimal("0.5")
    assert Alert.objects.filter(report_id__in=ids, alert_type="MISSING_DATA", severity="MEDIUM").count() == len(ids)
    assert AffiliateReport.objects.filter(pk__in=ids).count() == len(ids)

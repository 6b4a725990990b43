"""Alert rules (alerts.services): one per (report, type), escalation, the storm guard, LOW_TRUST, safe JSON.

Time is a parameter: ``created_at`` is the real clock, so a raise "seven hours later" passes
``now = real now + 7 h`` and the window arithmetic does the rest; nothing sleeps.
"""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from typing import Any

import pytest
from django.db import connections, transaction
from django.utils import timezone

from alerts.models import Alert
from alerts.services import RaisedAlert, alert_raise, alert_resolve
from platforms.adapters.base import PlatformMetrics
from platforms.fetcher import FetchOutcome
from reconcile_project.config import AlertingSettings
from reconciliation.models import Affiliate
from reconciliation.services.attempts import AttemptResult, attempt_run
from tests import factories


def alerting(**fields: Any) -> AlertingSettings:
    # model_validate: the test's values only, never an ALERTING_SETTINGS__* variable from the environment.
    return AlertingSettings.model_validate(
        {"repeat_window_hours": 6, "storm_threshold": 20, "storm_window_minutes": 60, **fields}
    )


def raise_alert(alert_type: str = "OVERCLAIM", severity: str = "HIGH", **fields: Any) -> RaisedAlert:
    fields.setdefault("settings", alerting())
    return alert_raise(alert_type=alert_type, severity=severity, title=f"{alert_type} test", **fields)


# --- one per (report, type) -----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_repeat_for_the_same_report_folds_and_severity_only_rises() -> None:
    report = factories.report()
    first = raise_alert("OVERCLAIM", "HIGH", report_id=report.pk, affiliate_id=report.post.affiliate_id)
    higher = raise_alert("OVERCLAIM", "CRITICAL", report_id=report.pk, affiliate_id=report.post.affiliate_id)
    lower = raise_alert("OVERCLAIM", "HIGH", report_id=report.pk, affiliate_id=report.post.affiliate_id)
    assert first.created and not higher.created and not lower.created
    alert = Alert.objects.get(report=report, alert_type="OVERCLAIM")
    assert (alert.occurrence_count, alert.severity) == (3, "CRITICAL")
    # Another type for the same report is its own alert.
    assert raise_alert("HIGH_DISCREPANCY", report_id=report.pk).created
    assert Alert.objects.filter(report=report).count() == 2


# --- escalation -----------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("alert_type", ["OVERCLAIM", "HIGH_DISCREPANCY"])
def test_a_repeat_within_the_window_escalates_to_critical_and_links_the_first(alert_type: str) -> None:
    affiliate = factories.affiliate()
    first = raise_alert(alert_type, "HIGH", affiliate_id=affiliate.pk, report_id=factories.report().pk)
    repeat = raise_alert(
        alert_type,
        "HIGH",
        affiliate_id=affiliate.pk,
        report_id=factories.report().pk,
        now=timezone.now() + dt.timedelta(hours=5),
    )
    assert repeat.created
    assert repeat.alert.severity == "CRITICAL" and repeat.alert.escalated_from_id == first.alert.pk
    assert first.alert.severity == "HIGH"


@pytest.mark.django_db
def test_a_repeat_outside_the_window_does_not_escalate() -> None:
    affiliate = factories.affiliate()
    raise_alert("OVERCLAIM", "HIGH", affiliate_id=affiliate.pk)
    later = raise_alert("OVERCLAIM", "HIGH", affiliate_id=affiliate.pk, now=timezone.now() + dt.timedelta(hours=7))
    assert later.created and later.alert.severity == "HIGH" and later.alert.escalated_from_id is None


@pytest.mark.django_db
def test_a_repeat_of_another_affiliate_or_a_non_escalating_type_does_not_escalate() -> None:
    affiliate = factories.affiliate()
    raise_alert("OVERCLAIM", "HIGH", affiliate_id=affiliate.pk)
    other = raise_alert("OVERCLAIM", "HIGH", affiliate_id=factories.affiliate().pk)
    raise_alert("MISSING_DATA", "MEDIUM", affiliate_id=affiliate.pk)
    missing_again = raise_alert("MISSING_DATA", "MEDIUM", affiliate_id=affiliate.pk)
    assert other.alert.severity == "HIGH" and other.alert.escalated_from_id is None
    assert missing_again.alert.severity == "MEDIUM" and missing_again.alert.escalated_from_id is None


# --- storm guard ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_storm_guard_folds_one_affiliates_wave_into_its_open_alert() -> None:
    affiliate = factories.affiliate()
    settings = alerting(storm_threshold=3)
    results = [
        raise_alert(
            "MISSING_DATA", "MEDIUM", affiliate_id=affiliate.pk, report_id=factories.report().pk, settings=settings
        )
        for _ in range(5)
    ]
    assert [r.created for r in results] == [True, True, True, False, False]
    assert Alert.objects.filter(alert_type="MISSING_DATA", affiliate=affiliate).count() == 3
    assert results[-1].alert.pk == results[2].alert.pk and results[-1].alert.occurrence_count == 3


@pytest.mark.django_db
@pytest.mark.parametrize("alert_type", ["MISSING_DATA", "HIGH_DISCREPANCY"])
def test_storm_guard_folds_a_platform_wide_wave_across_affiliates(alert_type: str) -> None:
    """Every affiliate on one platform at once (an adapter gone wrong): folded per (type, platform)."""
    platform = factories.platform("youtube")
    settings = alerting(storm_threshold=3)
    results = [
        raise_alert(
            alert_type,
            "HIGH",
            affiliate_id=factories.affiliate().pk,
            platform_id=platform.pk,
            report_id=factories.report().pk,
            settings=settings,
        )
        for _ in range(6)
    ]
    assert [r.created for r in results] == [True, True, True, False, False, False]
    assert Alert.objects.filter(alert_type=alert_type, platform=platform).count() == 3
    assert Alert.objects.get(pk=results[2].alert.pk).occurrence_count == 4
    # Another platform, or another type, is not part of the wave.
    assert raise_alert(alert_type, platform_id=factories.platform("x").pk, settings=settings).created
    assert raise_alert("OVERCLAIM", platform_id=platform.pk, settings=settings).created


@pytest.mark.django_db
def test_storm_guard_never_folds_into_a_resolved_alert() -> None:
    affiliate = factories.affiliate()
    settings = alerting(storm_threshold=2)
    for _ in range(2):
        raise_alert("MISSING_DATA", "MEDIUM", affiliate_id=affiliate.pk, settings=settings)
    for alert in Alert.objects.filter(affiliate=affiliate):
        alert_resolve(alert=alert, user=None, actor="test", note="handled")
    reopened = raise_alert("MISSING_DATA", "MEDIUM", affiliate_id=affiliate.pk, settings=settings)
    assert reopened.created and reopened.alert.status == "OPEN"
    folded = raise_alert("MISSING_DATA", "MEDIUM", affiliate_id=affiliate.pk, settings=settings)
    assert not folded.created and folded.alert.pk == reopened.alert.pk
    assert set(
        Alert.objects.filter(affiliate=affiliate, status="RESOLVED").values_list("occurrence_count", flat=True)
    ) == {1}


@pytest.mark.django_db
def test_storm_guard_counts_only_the_window() -> None:
    affiliate = factories.affiliate()
    settings = alerting(storm_threshold=2, storm_window_minutes=60)
    for _ in range(2):
        raise_alert("MISSING_DATA", "MEDIUM", affiliate_id=affiliate.pk, settings=settings)
    later = raise_alert(
        "MISSING_DATA",
        "MEDIUM",
        affiliate_id=affiliate.pk,
        settings=settings,
        now=timezone.now() + dt.timedelta(hours=2),
    )
    assert later.created


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("scope", ["affiliate", "platform"])
def test_concurrent_raises_never_create_more_rows_than_the_storm_threshold(scope: str) -> None:
    """Workers raising at once, each in its own transaction and PostgreSQL connection.

    Each raiser keeps its transaction open after raising until every other raiser has raised too (or
    a short wait runs out): without a lock they would all count "under the threshold" before any
    commits. With it, each waits for the previous one's commit and then sees its row.
    """
    threshold, raisers = 2, 5
    settings = alerting(storm_threshold=threshold)
    platform = factories.platform("tiktok")
    shared_affiliate = factories.affiliate()
    affiliates = [shared_affiliate.pk if scope == "affiliate" else factories.affiliate().pk for _ in range(raisers)]
    start = threading.Barrier(raisers)
    done = threading.Condition()
    raised: list[int] = []
    errors: list[BaseException] = []

    def raiser(affiliate_id: int) -> None:
        try:
            start.wait(10)
            with transaction.atomic():
                raise_alert(
                    "HIGH_DISCREPANCY",
                    affiliate_id=affiliate_id,
                    platform_id=platform.pk if scope == "platform" else None,
                    settings=settings,
                )
                # Hold the transaction open while the others raise (bounded: with the lock they cannot).
                with done:
                    raised.append(affiliate_id)
                    done.notify_all()
                    done.wait_for(lambda: len(raised) == raisers, timeout=0.5)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=raiser, args=(a,)) for a in affiliates]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    alerts = Alert.objects.filter(alert_type="HIGH_DISCREPANCY")
    assert alerts.count() == threshold
    assert sum(alerts.values_list("occurrence_count", flat=True)) == raisers


# --- LOW_TRUST through the engine's trust path ----------------------------------------------------


def _overclaim_fetch(_claimed: Any) -> FetchOutcome:
    metrics = PlatformMetrics(100, 100, 10, raw={"test": True})  # claimed 1000 views: a 900 % over-claim
    return FetchOutcome(metrics=metrics, missing_fields=metrics.missing_fields(), attempts=1, duration_seconds=0.01)


@pytest.mark.django_db
def test_crossing_into_critical_trust_raises_low_trust_and_going_lower_does_not() -> None:
    affiliate = factories.affiliate(trust_score=Decimal("0.30"))  # low_trust; an over-claim is −0.10
    first = factories.report(post=factories.post(affiliate=affiliate), claimed_views=1000, claimed_clicks=100)
    result = attempt_run(report_id=first.pk, worker="test", fetcher=_overclaim_fetch, clock=lambda: first.submitted_at)
    assert isinstance(result, AttemptResult) and "LOW_TRUST" in result.alerts
    low = Alert.objects.get(alert_type="LOW_TRUST", affiliate=affiliate)
    assert (low.category, low.severity, low.report_id) == ("FRAUD", "HIGH", None)
    assert Affiliate.objects.get(pk=affiliate.pk).trust_score == Decimal("0.20")

    # Already critical: a further over-claim lowers the score but is no new crossing.
    second = factories.report(post=factories.post(affiliate=affiliate), claimed_views=1000, claimed_clicks=100)
    result = attempt_run(
        report_id=second.pk, worker="test", fetcher=_overclaim_fetch, clock=lambda: second.submitted_at
    )
    assert isinstance(result, AttemptResult) and "LOW_TRUST" not in result.alerts
    assert Alert.objects.filter(alert_type="LOW_TRUST", affiliate=affiliate).count() == 1
    assert Affiliate.objects.get(pk=affiliate.pk).trust_score == Decimal("0.10")


# --- the stored JSON ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_non_finite_numbers_in_the_threshold_are_stored_as_strings() -> None:
    """Python writes inf as a bare ``Infinity``, which PostgreSQL's jsonb refuses (the whole apply fails)."""
    report = factories.report()
    threshold = {
        "max_positive_diff": float("inf"),
        "metrics": {"views": {"claimed": 10, "platform": 0, "diff": float("inf")}, "clicks": {"diff": float("nan")}},
        "bounds": [float("-inf"), 0.5],
    }
    raised = raise_alert("OVERCLAIM", "CRITICAL", report_id=report.pk, threshold=threshold)
    stored = Alert.objects.get(pk=raised.alert.pk).threshold_breached
    assert stored == {
        "max_positive_diff": "Infinity",
        "metrics": {"views": {"claimed": 10, "platform": 0, "diff": "Infinity"}, "clicks": {"diff": "NaN"}},
        "bounds": ["-Infinity", 0.5],
    }


@pytest.mark.django_db(transaction=True)
def test_without_the_lock_the_database_still_keeps_one_alert_per_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite has no advisory locks: the unique (platform, outage start) constraint decides on its own.

    The first raiser holds its transaction open; the second one's insert waits on the unique index,
    fails when the first commits, and folds into the committed alert instead.
    """
    import alerts.services

    monkeypatch.setattr(alerts.services, "_lock_scopes", lambda *_args: None)
    platform = factories.platform("meta")
    started = timezone.now() - dt.timedelta(hours=3)
    first_raised = threading.Event()
    results: list[RaisedAlert] = []
    errors: list[BaseException] = []

    def raiser(hold: bool) -> None:
        try:
            with transaction.atomic():
                results.append(raise_alert("PLATFORM_OUTAGE", platform_id=platform.pk, outage_started_at=started))
                if hold:
                    first_raised.set()
                    threading.Event().wait(0.3)  # let the second insert reach the unique index
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    first = threading.Thread(target=raiser, args=(True,))
    first.start()
    assert first_raised.wait(10)
    second = threading.Thread(target=raiser, args=(False,))
    second.start()
    first.join(30)
    second.join(30)
    assert not errors
    assert [r.created for r in results] == [True, False]
    alert = Alert.objects.get(alert_type="PLATFORM_OUTAGE", platform=platform)
    assert alert.occurrence_count == 2 and alert.outage_started_at == started

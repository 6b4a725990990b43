"""The outage watcher (reconciliation.services.outages): one PLATFORM_OUTAGE per outage, judged by failed calls.

Rounds are driven with breaker snapshots and ``now_epoch`` (Redis time), never by sleeping; the tests
that leave the clock to the watcher open a real breaker in the test Redis and skew the local clock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connections, transaction

from alerts.models import Alert
from platforms.breaker import Admission, get_breaker
from reconcile_project.redis import get_redis
from reconciliation.services import outages
from reconciliation.services.outages import outages_check, redis_now
from tests import factories

ESCALATE = settings.ALERTING_SETTINGS.platform_down_escalation_minutes * 60
COOLDOWN = get_breaker().settings.open_cooldown_seconds
GRACE = settings.ALERTING_SETTINGS.platform_idle_grace_minutes * 60
T0 = 1_800_000_000.0  # an outage's first failure, in Redis time


def _clean(client: redis.Redis) -> None:
    keys = [*client.scan_iter(match="outage:*"), *client.scan_iter(match=f"{get_breaker().key_prefix}*")]
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def clean_redis() -> Iterator[redis.Redis]:
    """The test Redis without outage or breaker keys; a missing Redis is a failure, not a skip."""
    client = get_redis()
    client.ping()
    _clean(client)
    yield client
    _clean(client)


@pytest.fixture
def reddit(db: None) -> Any:
    return factories.platform("reddit")


def down(last_failure: float, state: str = "OPEN") -> dict[str, dict[str, Any]]:
    """A snapshot of reddit's breaker whose last counted failure (``opened_at``) was at ``last_failure``."""
    return {"reddit": {"failures": 5, "state": state, "opened_at": last_failure, "half_open_probes": 0}}


def closed() -> dict[str, dict[str, Any]]:
    return {"reddit": {"failures": 0, "state": "CLOSED", "opened_at": None, "half_open_probes": 0}}


def run_outage(start: float, end: float, step: float = 60.0) -> list[list[str]]:
    """Watcher rounds every ``step`` s from ``start`` to ``end`` while probes keep failing once per cooldown."""
    rounds = []
    now = start
    while now <= end:
        last_failure = start + ((now - start) // COOLDOWN) * COOLDOWN
        rounds.append(outages_check(snapshot=down(last_failure), now_epoch=now))
        now += step
    return rounds


def outage_alerts() -> list[Alert]:
    return list(Alert.objects.filter(alert_type="PLATFORM_OUTAGE").order_by("id"))


@pytest.mark.django_db
def test_an_outage_with_failures_arriving_raises_one_alert_after_the_escalation_time(reddit) -> None:
    rounds = run_outage(T0, T0 + ESCALATE + 600)
    raised_at = [i for i, r in enumerate(rounds) if r]
    assert len(raised_at) == 1 and rounds[raised_at[0]] == ["reddit"]
    assert T0 + raised_at[0] * 60 >= T0 + ESCALATE  # not before the escalation time
    (alert,) = outage_alerts()
    assert alert.platform == reddit and alert.severity == "HIGH" and alert.category == "SYSTEM_HEALTH"
    assert alert.outage_started_at == dt.datetime.fromtimestamp(T0, tz=dt.UTC)
    assert alert.threshold_breached["outage_started_at"] == T0
    assert alert.occurrence_count == len(rounds) - raised_at[0]  # later rounds of the outage fold into it


@pytest.mark.django_db
def test_an_idle_open_breaker_is_not_an_outage(reddit) -> None:
    """Opened three hours ago and nobody has called the platform since: no failures, no outage."""
    now = T0 + 3 * 3600
    assert outages_check(snapshot=down(T0), now_epoch=now) == []
    assert outages_check(snapshot=down(T0, state="HALF_OPEN"), now_epoch=now + 60) == []
    assert outage_alerts() == []


@pytest.mark.django_db
def test_an_idle_spell_ends_the_outage(reddit) -> None:
    """Failures for a while, then no calls beyond cooldown + grace: the clock starts again with new failures."""
    run_outage(T0, T0 + ESCALATE / 2)
    last_failure = T0 + ESCALATE / 2
    assert outages_check(snapshot=down(last_failure), now_epoch=last_failure + COOLDOWN + GRACE + 1) == []
    resumed = T0 + ESCALATE * 2
    rounds = run_outage(resumed, resumed + ESCALATE - 120)
    assert not any(rounds) and outage_alerts() == []  # a fresh outage, not yet long enough
    assert any(run_outage(resumed, resumed + ESCALATE + 60))


@pytest.mark.django_db
def test_a_new_outage_after_recovery_gets_its_own_alert(reddit) -> None:
    assert any(run_outage(T0, T0 + ESCALATE + 60))
    assert outages_check(snapshot=closed(), now_epoch=T0 + ESCALATE + 120) == []
    second = T0 + ESCALATE + 600
    assert any(run_outage(second, second + ESCALATE + 60))
    first_alert, second_alert = outage_alerts()
    assert first_alert.outage_started_at == dt.datetime.fromtimestamp(T0, tz=dt.UTC)
    assert second_alert.outage_started_at == dt.datetime.fromtimestamp(second, tz=dt.UTC)


@pytest.mark.django_db
def test_a_failed_alert_write_is_raised_again_next_round(reddit, monkeypatch: pytest.MonkeyPatch) -> None:
    run_outage(T0, T0 + ESCALATE - 60)
    real_raise = outages.alert_raise

    def failing_raise(**kwargs: Any) -> Any:
        raise DatabaseError("database went away mid-write")

    monkeypatch.setattr(outages, "alert_raise", failing_raise)
    last_failure = T0 + (ESCALATE // COOLDOWN) * COOLDOWN
    with contextlib.suppress(DatabaseError):
        assert outages_check(snapshot=down(last_failure), now_epoch=T0 + ESCALATE) == []
    assert outage_alerts() == []
    monkeypatch.setattr(outages, "alert_raise", real_raise)
    assert outages_check(snapshot=down(last_failure), now_epoch=T0 + ESCALATE + 60) == ["reddit"]
    assert len(outage_alerts()) == 1


@pytest.mark.django_db
def test_the_database_refuses_a_second_alert_for_the_same_outage(reddit) -> None:
    started = dt.datetime.fromtimestamp(T0, tz=dt.UTC)
    fields = {"category": "SYSTEM_HEALTH", "severity": "HIGH", "title": "down", "platform": reddit}
    Alert.objects.create(alert_type="PLATFORM_OUTAGE", outage_started_at=started, **fields)
    with pytest.raises(IntegrityError), transaction.atomic():
        Alert.objects.create(alert_type="PLATFORM_OUTAGE", outage_started_at=started, **fields)
    Alert.objects.create(alert_type="PLATFORM_OUTAGE", outage_started_at=started + dt.timedelta(hours=3), **fields)


@pytest.mark.django_db(transaction=True)
def test_two_watchers_at_once_raise_one_alert() -> None:
    factories.platform("reddit")
    run_outage(T0, T0 + ESCALATE - 60)  # both watchers share the outage start kept in Redis
    last_failure = T0 + (ESCALATE // COOLDOWN) * COOLDOWN
    start = threading.Barrier(2)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def watcher() -> None:
        try:
            start.wait(10)
            results.append(outages_check(snapshot=down(last_failure), now_epoch=T0 + ESCALATE))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=watcher) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert sorted(results) == [[], ["reddit"]]
    (alert,) = outage_alerts()
    assert alert.occurrence_count == 2


def _open_breaker(platform: str = "reddit") -> None:
    breaker = get_breaker()
    for _ in range(breaker.settings.failure_threshold):
        breaker.record_failure(platform, Admission(admitted=True, state="CLOSED"))
    assert breaker.state(platform) == "OPEN"


@pytest.mark.django_db
def test_a_local_clock_ahead_of_redis_does_not_make_a_fresh_outage_old(reddit, monkeypatch) -> None:
    _open_breaker()  # opened_at: Redis time, now
    local = time.time
    monkeypatch.setattr(time, "time", lambda: local() + ESCALATE + 3600)
    assert outages_check() == []
    assert outage_alerts() == []


@pytest.mark.django_db
def test_a_local_clock_behind_redis_does_not_hide_a_long_outage(reddit, clean_redis: redis.Redis, monkeypatch) -> None:
    _open_breaker()  # the latest failure: now
    started = redis_now(clean_redis) - ESCALATE - 600
    clean_redis.set("outage:since:reddit", repr(started))  # failures have kept arriving since then
    local = time.time
    monkeypatch.setattr(time, "time", lambda: local() - ESCALATE - 3600)
    assert outages_check() == ["reddit"]
    (alert,) = outage_alerts()
    assert alert.outage_started_at is not None and abs(alert.outage_started_at.timestamp() - started) < 1e-3

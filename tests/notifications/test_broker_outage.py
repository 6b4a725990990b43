"""The outbox survives the broker being down: alerts raised while Redis is stopped are delivered, each
exactly once (counted at the receiver), after it starts again.

Real processes: a private redis-server (app Redis and broker), a Celery worker consuming the
``notifications`` queue and Celery beat (whose sweeper re-publishes due deliveries), as ``make run`` runs
them; the test database; the sandbox's webhook inbox as the receiver.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

from alerts.services import alert_raise
from notifications.models import Delivery
from reconcile_project.config import AlertingSettings
from tests import factories
from tests.notifications.conftest import Inbox, webhook
from tests.ops.conftest import celery_broker
from tests.ops.test_worker_stack import test_database_url, wait_until
from tests.processes import RedisServer, stop_groups

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


def start(args: list[str], env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [CELERY, "-A", "reconcile_project", *args],
        cwd=ROOT,
        env=env,
        stdout=out.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def raise_alerts(n: int) -> None:
    settings = AlertingSettings.model_validate({"storm_threshold": 1000})
    for _ in range(n):
        report = factories.report()
        alert_raise(
            alert_type="OVERCLAIM",
            severity="HIGH",
            title=f"Over-claim on report {report.pk}",
            affiliate_id=report.post.affiliate_id,
            platform_id=report.post.platform_id,
            report_id=report.pk,
            settings=settings,
        )


def test_alerts_raised_while_the_broker_is_down_are_delivered_exactly_once_after_it_returns(
    transactional_db: None, redis_server: RedisServer, inbox: Inbox, tmp_path: Path
) -> None:
    import os

    webhook(inbox, "ops")
    log_file = tmp_path / "app.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "reconcile_project.settings",
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": redis_server.url(0),
        "CELERY_BROKER_URL": redis_server.url(1),
        "LOG_FILE": str(log_file),
        "LOG_FORMAT": "json",
        "NOTIFICATIONS__SWEEP_INTERVAL_SECONDS": "1",
        "NOTIFICATIONS__LEASE_SECONDS": "10",
        "PYTHONUNBUFFERED": "1",
    }
    procs: list[subprocess.Popen[bytes]] = []
    with (
        override_settings(REDIS_URL=redis_server.url(0), CELERY_BROKER_URL=redis_server.url(1)),
        celery_broker(redis_server.url(1)),
    ):
        try:
            procs.append(
                start(
                    [
                        "worker",
                        "-Q",
                        "notifications,maintenance",
                        "--pool",
                        "threads",
                        "-c",
                        "4",
                        "-n",
                        "notify@%h",
                        "--without-gossip",
                        "--without-mingle",
                    ],
                    env,
                    tmp_path / "worker.out",
                )
            )
            procs.append(start(["beat", "--schedule", str(tmp_path / "beat-schedule")], env, tmp_path / "beat.out"))
            wait_until(
                lambda: log_file.exists() and "Reconciliation worker started" in log_file.read_text(),
                timeout=60,
                what="the notifications worker to start",
            )

            raise_alerts(3)  # broker up: published on commit
            wait_until(lambda: len(inbox.received("ops")) == 3, timeout=60, what="3 deliveries with the broker up")

            redis_server.stop()
            raise_alerts(10)  # broker down: each alert commits with its outbox row; the publish fails
            pending = Delivery.objects.filter(status="PENDING")
            assert pending.count() == 10 and not pending.filter(dispatched_at__isnull=False).exists()
            assert len(inbox.received("ops")) == 3

            redis_server.start()  # empty: whatever was queued before is gone too
            wait_until(
                lambda: not Delivery.objects.exclude(status="DELIVERED").exists(),
                timeout=120,
                what="every delivery to be DELIVERED after the broker returned",
            )
            # Longer than a lease plus sweeps: a duplicate send, if any, would have arrived by now.
            time.sleep(12)
        finally:
            stop_groups(procs)

    received = inbox.received("ops")
    counts = Counter(r["event_id"] for r in received)
    assert len(counts) == Delivery.objects.count() == 13
    assert set(counts.values()) == {1}, [c for c in counts.items() if c[1] > 1]
    assert set(counts) == {str(e) for e in Delivery.objects.values_list("event_id", flat=True)}
    assert all(r["verified"] for r in received)

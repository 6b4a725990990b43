"""manage.py queue_status: depth per queue, retries due within the hour, oldest pending report."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from reconciliation.models import ReconciliationLog
from tests import factories
from tests.processes import RedisServer, free_port

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def backlog(ops_redis: RedisServer) -> dict[str, int]:
    now = timezone.now()
    oldest = factories.report(submitted_at=now - dt.timedelta(hours=2))  # PENDING, due 2 h ago
    soon = factories.report()
    ReconciliationLog.objects.filter(report=soon).update(
        next_attempt_at=now + dt.timedelta(minutes=30), status="MISSING_PLATFORM_DATA", attempt_count=1
    )
    later = factories.report()
    ReconciliationLog.objects.filter(report=later).update(next_attempt_at=now + dt.timedelta(hours=3))
    done = factories.report()
    ReconciliationLog.objects.filter(report=done).update(
        next_attempt_at=now + dt.timedelta(minutes=10), terminal=True, status="MISSING_PLATFORM_DATA"
    )
    broker = ops_redis.client(1)
    broker.rpush("reconcile", *["m"] * 4)
    broker.rpush("reconcile\x06\x169", "p")
    broker.rpush("maintenance", "s")
    return {"oldest": oldest.pk}


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("queue_status", *args, stdout=out)
    return out.getvalue()


def test_json_output(backlog: dict[str, int]) -> None:
    status = json.loads(run("--json"))
    assert status["queues"]["reconcile"] == 5
    assert status["queues"]["maintenance"] == 1
    assert status["queues"]["reconcile_priority"] == 0
    assert status["retries_due_next_hour"] == 1
    assert status["due_now"] == 1
    assert status["pending_reports"] == 2
    assert status["oldest_pending"]["report_id"] == backlog["oldest"]
    assert 7100 < status["oldest_pending"]["age_seconds"] < 7300
    assert status["broker_error"] is None


def test_text_output(backlog: dict[str, int]) -> None:
    text = run()
    assert "Queue depth (broker):" in text
    assert any(line.split() == ["reconcile", "5"] for line in text.splitlines())
    assert "Retries due in the next hour:" in text and text.count("\n") >= 7
    assert f"(report {backlog['oldest']}," in text and "2h 0m" in text


def test_empty_backlog(ops_redis: RedisServer) -> None:
    status = json.loads(run("--json"))
    assert status["oldest_pending"] is None and status["retries_due_next_hour"] == 0
    assert "Oldest pending report:            none" in run()


def test_exit_status_1_when_the_broker_is_down() -> None:
    with override_settings(CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/1"):
        with pytest.raises(SystemExit) as exit_info:
            run("--json")
    assert exit_info.value.code == 1

from __future__ import annotations

from typing import Any

from django.conf import settings

import notifications.tasks  # noqa: F401  (registers the tasks)
import reconciliation.tasks  # noqa: F401
from reconcile_project.celery import app


def test_every_beat_job_is_a_registered_task_on_the_maintenance_queue() -> None:
    assert settings.CELERY_BEAT_SCHEDULE
    schedule: dict[str, dict[str, Any]] = settings.CELERY_BEAT_SCHEDULE
    for name, entry in schedule.items():
        task: str = entry["task"]
        assert task in app.tasks, name
        assert entry["options"]["queue"] == "maintenance", name
        assert settings.CELERY_TASK_ROUTES[task] == {"queue": "maintenance"}, name


def test_reconcile_task_is_safe_for_at_least_once_delivery() -> None:
    task = app.tasks["reconciliation.tasks.reconcile_report"]
    assert task.acks_late and task.reject_on_worker_lost and task.ignore_result
    assert settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1
    assert settings.CELERY_BROKER_URL != settings.REDIS_URL  # a cache clear never flushes the queue

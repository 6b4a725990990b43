"""Celery tasks of the ``notifications`` queue: thin edges over notifications.services."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from notifications import services


@shared_task(
    name="notifications.tasks.deliver",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=(OperationalError, InterfaceError),
    max_retries=3,
    retry_backoff=1,
    retry_backoff_max=10,
    retry_jitter=True,
)
def deliver(delivery_id: int) -> str:
    return services.deliver(int(delivery_id))


@shared_task(name="notifications.tasks.sweep_deliveries", ignore_result=True)
def sweep_deliveries() -> int:
    return services.sweep_deliveries().sent

"""The Celery application. Task options that make delivery safe live here (DESIGN §5)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reconcile_project.settings")

app = Celery("reconcile_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Logging, request-id propagation, metrics and worker-exception tracking (reconcile_project/observability.py).
from reconcile_project.observability import install_celery_hooks  # noqa: E402

install_celery_hooks(app)


# Tracing (reconcile_project/tracing.py), when the OTEL_* variables switch it on: in the worker's process
# (thread and solo pools), in each prefork child and in beat.
from celery import signals  # noqa: E402

from reconcile_project.tracing import configure_tracing  # noqa: E402


def _configure_tracing(**kwargs: object) -> None:
    configure_tracing()


for _signal in (signals.worker_init, signals.worker_process_init, signals.beat_init):
    _signal.connect(_configure_tracing, weak=False)

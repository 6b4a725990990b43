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

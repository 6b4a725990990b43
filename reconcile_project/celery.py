"""The Celery application. Task options that make delivery safe live here (DESIGN §5)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reconcile_project.settings")

app = Celery("reconcile_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

"""``manage.py queue_status [--json]``: is work piling up, and where?

Three views of the backlog: messages waiting in each Celery queue (the broker), outbox rows that are
due now or due within the next hour (the database: ``ReconciliationLog.next_attempt_at``), and the age
of the oldest report still PENDING. Exit status 1 when the broker cannot be read.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from reconciliation.models import ReconciliationLog, ReconciliationStatus


def queue_status(*, now: dt.datetime) -> dict[str, Any]:
    from reconcile_project.metrics import queue_depths

    result: dict[str, Any] = {"time": now.isoformat()}
    try:
        result["queues"] = queue_depths()
        result["broker_error"] = None
    except Exception as exc:
        result["queues"] = {}
        result["broker_error"] = f"{type(exc).__name__}: {exc}"

    open_logs = ReconciliationLog.objects.filter(terminal=False, next_attempt_at__isnull=False)
    result["due_now"] = open_logs.filter(next_attempt_at__lte=now).count()
    result["retries_due_next_hour"] = open_logs.filter(
        next_attempt_at__gt=now, next_attempt_at__lte=now + dt.timedelta(hours=1)
    ).count()

    oldest = (
        ReconciliationLog.objects.filter(status=ReconciliationStatus.PENDING, terminal=False)
        .select_related("report")
        .order_by("report__submitted_at")
        .first()
    )
    result["pending_reports"] = ReconciliationLog.objects.filter(
        status=ReconciliationStatus.PENDING, terminal=False
    ).count()
    if oldest is None:
        result["oldest_pending"] = None
    else:
        result["oldest_pending"] = {
            "report_id": oldest.report_id,
            "submitted_at": oldest.report.submitted_at.isoformat(),
            "age_seconds": round((now - oldest.report.submitted_at).total_seconds(), 1),
            "attempt_count": oldest.attempt_count,
            "next_attempt_at": oldest.next_attempt_at.isoformat() if oldest.next_attempt_at else None,
        }
    return result


def _age(seconds: float) -> str:
    seconds = int(max(0, seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s"


class Command(BaseCommand):
    help = "Queue depth per Celery queue, retries due in the next hour, oldest pending report age."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, json: bool = False, **options: Any) -> None:
        status = queue_status(now=timezone.now())
        if json:
            self.stdout.write(_dumps(status))
        else:
            self._print(status)
        if status["broker_error"]:
            raise SystemExit(1)

    def _print(self, status: dict[str, Any]) -> None:
        out = self.stdout
        out.write("Queue depth (broker):")
        if status["broker_error"]:
            out.write(self.style.ERROR(f"  unavailable: {status['broker_error']}"))
        for queue, depth in status["queues"].items():
            out.write(f"  {queue:<24} {depth:>8}")
        out.write(f"Due now (not yet reconciled):     {status['due_now']:>8}")
        out.write(f"Retries due in the next hour:     {status['retries_due_next_hour']:>8}")
        out.write(f"Pending reports:                  {status['pending_reports']:>8}")
        oldest = status["oldest_pending"]
        if oldest is None:
            out.write("Oldest pending report:            none")
        else:
            out.write(
                f"Oldest pending report:            {_age(oldest['age_seconds'])} "
                f"(report {oldest['report_id']}, submitted {oldest['submitted_at']}, "
                f"{oldest['attempt_count']} attempts)"
            )


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)

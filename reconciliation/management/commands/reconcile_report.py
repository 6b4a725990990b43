from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from reconciliation.models import ReconciliationLog
from reconciliation.services.attempts import AttemptResult, attempt_run, reports_reopen


class Command(BaseCommand):
    help = (
        "Run one reconciliation attempt for a report now, in the foreground, and print the outcome. "
        "The report is made due first (unless a worker holds its lease), so this also re-runs a finished one."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("report_id", type=int)

    def handle(self, *args: Any, report_id: int, **options: Any) -> None:
        if not ReconciliationLog.objects.filter(report_id=report_id).exists():
            raise CommandError(f"no report {report_id}")
        if not reports_reopen(report_ids=[report_id], now=timezone.now()):
            raise CommandError(f"report {report_id} is leased by a running attempt; try again after its lease")
        result = attempt_run(report_id=report_id)
        if not isinstance(result, AttemptResult):
            raise CommandError(f"report {report_id}: no attempt ran ({result})")
        log = ReconciliationLog.objects.get(report_id=report_id)
        rows = [
            ("report", report_id),
            ("attempt", result.attempt_number),
            ("status", result.status),
            ("level", result.level or "-"),
            ("missing_reason", result.missing_reason or "-"),
            (
                "diffs (views/clicks/conversions)",
                f"{log.views_diff_pct} / {log.clicks_diff_pct} / {log.conversions_diff_pct}",
            ),
            ("confidence", log.confidence_ratio),
            ("trust delta (ledger)", result.trust_delta if result.trust_delta is not None else "-"),
            ("alerts", ", ".join(result.alerts) or "-"),
            ("next attempt", result.next_attempt_at.isoformat() if result.next_attempt_at else "-"),
            ("terminal", result.terminal),
        ]
        width = max(len(k) for k, _ in rows)
        for key, value in rows:
            self.stdout.write(f"{key:<{width}}  {value}")

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from reconciliation.services.sweeper import DEFAULT_BATCH, sweep_due


class Command(BaseCommand):
    help = "Send every due, unleased report to the workers now (what the sweeper does every few seconds)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="reports per round")
        parser.add_argument("--max-rounds", type=int, default=1000, help="stop after this many rounds")

    def handle(self, *args: Any, batch: int, max_rounds: int, **options: Any) -> None:
        sent = failed = rounds = 0
        while rounds < max_rounds:
            result = sweep_due(batch=batch)
            rounds += 1
            sent += result.sent
            failed += result.failed
            if result.selected < batch or result.failed:
                break
        self.stdout.write(f"dispatched {sent} report(s) in {rounds} round(s); {failed} could not be sent")
        if failed:
            self.stderr.write("the broker did not take every message: check CELERY_BROKER_URL / Redis")

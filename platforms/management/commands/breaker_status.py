from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from platforms.breaker import get_breaker


class Command(BaseCommand):
    help = "Show the shared circuit breaker of every platform (state, failures, opened at, probes, calls in flight)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", dest="as_json", help="print the snapshot as JSON")

    def handle(self, *args: Any, as_json: bool = False, **options: Any) -> None:
        snapshot = get_breaker().snapshot(list(settings.PLATFORM_SLUGS))
        if as_json:
            self.stdout.write(json.dumps(snapshot, indent=2))
            return
        self.stdout.write(
            f"{'platform':<10} {'state':<10} {'failures':>8}  {'opened at (UTC)':<20} {'probes':>6} {'in flight':>9}"
        )
        for slug, s in snapshot.items():
            opened = (
                dt.datetime.fromtimestamp(s["opened_at"], dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
                if s["opened_at"]
                else "-"
            )
            self.stdout.write(
                f"{slug:<10} {s['state']:<10} {s['failures']:>8}  {opened:<20} {s['half_open_probes']:>6}"
                f" {s.get('in_flight', 0):>9}"
            )

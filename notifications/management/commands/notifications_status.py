"""Deliveries by status and destination, and the latest failures with their errors (docs/RUNBOOK.md §16)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Count

from notifications.models import Delivery
from notifications.services import breaker


class Command(BaseCommand):
    help = "Show notification deliveries by status and destination, breaker states and the latest failures."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--failed", type=int, default=10, help="how many of the latest failures to list")
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        by_target: dict[str, dict[str, int]] = {}
        rows = Delivery.objects.values("destination__name", "subscription_id", "status").annotate(n=Count("id"))
        for row in rows:
            name = row["destination__name"] or f"subscription {row['subscription_id']}"
            by_target.setdefault(name, {})[row["status"]] = row["n"]
        retrying = Delivery.objects.filter(status=Delivery.Status.PENDING, attempts__gt=0).count()
        failures = [
            {
                "id": d.pk,
                "event_type": d.event_type,
                "to": str(d.destination or d.subscription),
                "attempts": d.attempts,
                "response_code": d.response_code,
                "last_error": d.last_error,
                "failed_at": d.failed_at.isoformat() if d.failed_at else None,
            }
            for d in Delivery.objects.filter(status=Delivery.Status.FAILED)
            .select_related("destination", "subscription__client")
            .order_by("-failed_at", "-id")[: options["failed"]]
        ]
        breakers = {k: v["state"] for k, v in breaker().snapshot().items()}
        if options["json"]:
            summary = {"by_destination": by_target, "retrying": retrying, "breakers": breakers, "failed": failures}
            self.stdout.write(json.dumps(summary, indent=2))
            return
        self.stdout.write("Deliveries by destination:")
        for name, counts in sorted(by_target.items()):
            self.stdout.write(f"  {name:<32} " + "  ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        if not by_target:
            self.stdout.write("  none yet")
        self.stdout.write(f"Pending after a failed try: {retrying}")
        opened = {k: v for k, v in breakers.items() if v != "CLOSED"}
        self.stdout.write(f"Breakers not CLOSED: {opened or 'none'}")
        self.stdout.write("Latest failures:")
        for f in failures:
            self.stdout.write(
                f"  #{f['id']} {f['event_type']} to {f['to']}: {f['attempts']} tries, last {f['last_error']}"
            )
        if not failures:
            self.stdout.write("  none")

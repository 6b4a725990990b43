"""Send failed deliveries again as new deliveries of the same events (docs/RUNBOOK.md §16)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from notifications.models import Delivery
from notifications.services import redeliver


class Command(BaseCommand):
    help = (
        "Redeliver deliveries by id, or every FAILED one not redelivered yet (--failed, optionally --destination). "
        "Each becomes a new delivery with the same event id and payload; the original is kept as it was."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ids", nargs="*", type=int, help="delivery ids")
        parser.add_argument("--failed", action="store_true", help="every FAILED delivery without a redelivery")
        parser.add_argument("--destination", help="with --failed: only this destination (its name)")
        parser.add_argument("--dry-run", action="store_true", help="count, send nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        if bool(options["ids"]) == bool(options["failed"]):
            raise CommandError("give delivery ids or --failed (not both)")
        if options["ids"]:
            rows = list(Delivery.objects.filter(pk__in=options["ids"]))
            missing = sorted(set(options["ids"]) - {d.pk for d in rows})
            if missing:
                raise CommandError(f"no delivery with id {', '.join(map(str, missing))}")
        else:
            query = Delivery.objects.filter(status=Delivery.Status.FAILED, redeliveries__isnull=True)
            if options["destination"]:
                query = query.filter(destination__name=options["destination"])
            rows = list(query.order_by("id"))
        if options["dry_run"]:
            self.stdout.write(f"dry run: {len(rows)} deliveries would be sent again")
            return
        created = redeliver(rows, requested_by="manage.py redeliver_notifications")
        self.stdout.write(f"redelivered {len(created)} deliveries: " + (", ".join(str(d.pk) for d in created) or "-"))

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from tqdm import tqdm

from reconciliation.models import ReconciliationLog, ReconciliationStatus
from reconciliation.services.attempts import reports_reopen
from reconciliation.services.dispatch import send_reconcile

CHUNK = 500


def _since(value: str) -> dt.datetime:
    parsed = parse_datetime(value)
    if parsed is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"--since: not a date or datetime: {value!r}")
        parsed = dt.datetime.combine(day, dt.time())
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, dt.UTC)


class Command(BaseCommand):
    help = (
        "Bulk re-reconciliation: make the selected reports due now and send them to the workers. "
        "Select by --campaign, --since (submitted at or after) and/or --status; --dry-run only counts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--campaign", type=int, help="campaign id")
        parser.add_argument("--since", help="submitted at or after (YYYY-MM-DD or ISO datetime)")
        parser.add_argument("--status", action="append", choices=ReconciliationStatus.values, help="repeatable")
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **o: Any) -> None:
        if not (o["campaign"] or o["since"] or o["status"]):
            raise CommandError("select something: --campaign, --since and/or --status")
        filters = Q()
        if o["campaign"]:
            filters &= Q(report__post__campaign_id=o["campaign"])
        if o["since"]:
            filters &= Q(report__submitted_at__gte=_since(o["since"]))
        if o["status"]:
            filters &= Q(status__in=o["status"])
        ids = list(ReconciliationLog.objects.filter(filters).order_by("report_id").values_list("report_id", flat=True))
        if o["dry_run"]:
            self.stdout.write(f"dry run: {len(ids)} report(s) would be re-reconciled")
            return
        reopened = queued = 0
        bar = tqdm(total=len(ids), unit="report", disable=o["no_progress"], file=self.stderr)
        for start in range(0, len(ids), CHUNK):
            chunk = reports_reopen(report_ids=ids[start : start + CHUNK], now=timezone.now())
            reopened += len(chunk)
            queued += sum(send_reconcile(rid) for rid in chunk)
            bar.update(min(CHUNK, len(ids) - start))
        bar.close()
        leased = len(ids) - reopened
        self.stdout.write(
            f"re-reconciling {reopened} report(s): {queued} queued now, {reopened - queued} left to the sweeper"
            + (f"; {leased} skipped (an attempt is running)" if leased else "")
        )

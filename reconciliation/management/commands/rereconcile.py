from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q
from django.utils import timezone
from tqdm import tqdm

from reconciliation.management.commands.simulate_rules import parse_when, render, run_simulation
from reconciliation.models import ReconciliationLog, ReconciliationStatus
from reconciliation.services.attempts import reports_reopen
from reconciliation.services.dispatch import send_reconcile
from reconciliation.services.simulation import CURRENT, Selection, selected_report_ids

CHUNK = 500


class Command(BaseCommand):
    help = (
        "Bulk re-reconciliation: make the selected reports due now and send them to the workers, in batches of "
        f"{CHUNK}. Select by --campaign, --since (submitted at or after), --status and/or --ruleset-other-than "
        "(CURRENT: verdicts not decided under their campaign's current rule set; or a fingerprint). --dry-run "
        "only counts; with --ruleset-other-than it is the simulation of re-deciding them under the current rules."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--campaign", type=int, help="campaign id")
        parser.add_argument("--since", help="submitted at or after (YYYY-MM-DD or ISO datetime)")
        parser.add_argument("--status", action="append", choices=ReconciliationStatus.values, help="repeatable")
        parser.add_argument(
            "--ruleset-other-than",
            metavar="CURRENT|FINGERPRINT",
            help="only verdicts decided under another rule set than CURRENT (each campaign's own) or the given "
            "fingerprint (or its first digits, as the admin shows it)",
        )
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument("--json", action="store_true", help="with --dry-run --ruleset-other-than: JSON report")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **o: Any) -> None:
        other_than = o["ruleset_other_than"]
        if not (o["campaign"] or o["since"] or o["status"] or other_than):
            raise CommandError("select something: --campaign, --since, --status and/or --ruleset-other-than")
        if other_than is not None:
            other_than = CURRENT if other_than.upper() == CURRENT else other_than.lower()
            if other_than != CURRENT and not (other_than and all(ch in "0123456789abcdef" for ch in other_than)):
                raise CommandError("--ruleset-other-than: CURRENT or a (hex) fingerprint")
            if o["dry_run"]:
                if o["json"]:
                    o["no_progress"] = True
                result = run_simulation(self, o, ruleset_other_than=other_than)
                if o["json"]:
                    self.stdout.write(json.dumps(result, indent=2))
                else:
                    self.stdout.write(render(result))
                    self.stdout.write(f"dry run: {result['claims']} report(s) would be re-reconciled")
                return
            selection = Selection(
                campaign_id=o["campaign"],
                since=parse_when("--since", o["since"]),
                statuses=tuple(o["status"] or ()),
                ruleset_other_than=other_than,
            )
            ids = selected_report_ids(selection)
        else:
            filters = Q()
            if o["campaign"]:
                filters &= Q(report__post__campaign_id=o["campaign"])
            if o["since"]:
                filters &= Q(report__submitted_at__gte=parse_when("--since", o["since"]))
            if o["status"]:
                filters &= Q(status__in=o["status"])
            ids = list(
                ReconciliationLog.objects.filter(filters).order_by("report_id").values_list("report_id", flat=True)
            )
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

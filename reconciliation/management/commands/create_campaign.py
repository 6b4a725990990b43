from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from reconciliation.services.accounts import AccountError, campaign_create, client_resolve


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"not a date (YYYY-MM-DD): {value!r}") from None


class Command(BaseCommand):
    help = "Create a campaign for a client on one or more platforms."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--client", required=True, help="client id or exact name")
        parser.add_argument("--platforms", required=True, help="comma-separated slugs, e.g. reddit,youtube")
        parser.add_argument("--start", default=None, help="start date YYYY-MM-DD (default today)")
        parser.add_argument("--end", default=None, help="end date YYYY-MM-DD (default open-ended)")
        parser.add_argument("--rule-overrides", default=None, help='JSON, e.g. {"RETRY_POLICY": {"max_attempts": 3}}')
        parser.add_argument("--recheck-interval-hours", type=float, default=None)
        parser.add_argument("--recheck-window-days", type=float, default=None)

    def handle(self, *args: Any, **o: Any) -> None:
        overrides = None
        if o["rule_overrides"]:
            try:
                overrides = json.loads(o["rule_overrides"])
            except json.JSONDecodeError as exc:
                raise CommandError(f"--rule-overrides is not JSON: {exc}") from None
        try:
            campaign = campaign_create(
                client=client_resolve(o["client"]),
                name=o["name"],
                platform_slugs=o["platforms"].split(","),
                start_date=_date(o["start"]) if o["start"] else timezone.localdate(),
                end_date=_date(o["end"]) if o["end"] else None,
                rule_overrides=overrides,
                recheck_interval_hours=o["recheck_interval_hours"],
                recheck_window_days=o["recheck_window_days"],
            )
        except AccountError as exc:
            raise CommandError(str(exc)) from None
        except Exception as exc:  # django ValidationError from full_clean: show the field messages
            messages = getattr(exc, "message_dict", None)
            if messages is None:
                raise
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in messages.items())) from None
        slugs = ", ".join(campaign.platforms.values_list("slug", flat=True))
        self.stdout.write(self.style.SUCCESS(f"Created campaign {campaign.pk}: {campaign.name} on {slugs}"))

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from reconciliation.services.accounts import client_key_create


class Command(BaseCommand):
    help = (
        "Create a staff API key (re-runs, every campaign, /debug/*, /health/detailed, /metrics) and print it once. "
        "A staff key belongs to no client."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="who or what uses the key, e.g. 'ops on-call'")

    def handle(self, *args: Any, name: str, **options: Any) -> None:
        api_key, key = client_key_create(client=None, name=name, is_staff=True)
        self.stdout.write(self.style.SUCCESS(f"Created staff key {api_key.prefix}: {name}"))
        self.stdout.write(f"API key (shown once, store it now): {key}")

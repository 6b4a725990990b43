from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from reconciliation.services.accounts import AccountError, client_create, client_key_create


class Command(BaseCommand):
    help = "Create an advertiser (client) and print its read-only API key once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--email", default="", help="contact email")
        parser.add_argument("--no-key", action="store_true", help="do not create an API key")

    def handle(self, *args: Any, name: str, email: str, no_key: bool, **options: Any) -> None:
        try:
            client = client_create(name=name, contact_email=email)
        except AccountError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"Created client {client.pk}: {client.name}"))
        if not no_key:
            _, key = client_key_create(client=client, name=f"{client.name} default")
            self.stdout.write(f"API key (shown once, store it now): {key}")

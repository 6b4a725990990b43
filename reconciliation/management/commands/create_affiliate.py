from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from reconciliation.services.accounts import AccountError, affiliate_create


class Command(BaseCommand):
    help = "Create an affiliate and print its API key once (only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--email", required=True)
        parser.add_argument("--chat-user-id", default=None)

    def handle(self, *args: Any, name: str, email: str, chat_user_id: str | None, **options: Any) -> None:
        try:
            affiliate, key = affiliate_create(name=name, email=email, chat_user_id=chat_user_id)
        except AccountError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"Created affiliate {affiliate.pk}: {affiliate}"))
        self.stdout.write(f"API key (shown once, store it now): {key}")

"""``python manage.py run_platform_sandbox [--host 127.0.0.1] [--port 8100]``: the sandbox, in the foreground."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from platforms.sandbox.server import serve


class Command(BaseCommand):
    help = (
        "Run the platform API sandbox (every platform's reporting API under /<slug>, control API under "
        "/_control) until Ctrl-C or SIGTERM."
    )
    # The sandbox touches neither the database nor the models: starting it must not wait on checks.
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Interface to bind (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8100, help="Port to bind (default 8100; 0 = any free).")

    def handle(self, *args: Any, **options: Any) -> None:
        def announce(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()  # under honcho/docker stdout is a pipe: say we are up now, not at exit

        serve(options["host"], options["port"], announce=announce)

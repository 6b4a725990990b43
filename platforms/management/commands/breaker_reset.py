from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from platforms.breaker import get_breaker
from reconcile_project.metrics import install_breaker_hook


class Command(BaseCommand):
    help = "Close a platform's circuit breaker now (after the platform is confirmed healthy). 'all' resets every one."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("platform", help=f"one of {', '.join(settings.PLATFORM_SLUGS)}, or 'all'")

    def handle(self, *args: Any, platform: str, **options: Any) -> None:
        slugs = list(settings.PLATFORM_SLUGS) if platform == "all" else [platform]
        unknown = [s for s in slugs if s not in settings.PLATFORM_SLUGS]
        if unknown:
            raise CommandError(
                f"unknown platform {unknown[0]!r}; choose from {', '.join(settings.PLATFORM_SLUGS)}, all"
            )
        install_breaker_hook()  # count the manual transition in breaker_transitions_total like any other
        breaker = get_breaker()
        for slug in slugs:
            breaker.reset(slug)
            self.stdout.write(f"{slug}: {breaker.state(slug)}")

"""Notifications tests: a real webhook receiver (the platform sandbox's inbox over HTTP) and clean breakers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.test import override_settings

from notifications.models import Destination
from notifications.services import config
from platforms.sandbox.server import SandboxServer


class Inbox:
    """The sandbox's webhook inbox, through its HTTP control API."""

    def __init__(self, server: SandboxServer) -> None:
        self.server = server

    def url(self, name: str) -> str:
        return f"{self.server.url}/_webhooks/{name}"

    def script(self, name: str, **options: Any) -> None:
        response = requests.put(f"{self.server.url}/_control/webhooks/{name}", json=options, timeout=5)
        response.raise_for_status()

    def received(self, name: str | None = None) -> list[dict[str, Any]]:
        path = f"/_control/webhooks/{name}" if name else "/_control/webhooks"
        response = requests.get(f"{self.server.url}{path}", timeout=10)
        response.raise_for_status()
        return list(response.json()["received"])


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    server = SandboxServer(port=0).start()
    yield server
    server.stop()


@pytest.fixture
def inbox(sandbox_server: SandboxServer) -> Iterator[Inbox]:
    requests.delete(f"{sandbox_server.url}/_control/webhooks", timeout=5).raise_for_status()
    yield Inbox(sandbox_server)


@pytest.fixture(autouse=True)
def clean_breakers() -> Iterator[None]:
    from reconcile_project.redis import get_redis

    def clear() -> None:
        client = get_redis()
        keys = list(client.scan_iter(match="cb:notify:*", count=500))
        if keys:
            client.delete(*keys)

    clear()
    yield
    clear()


def notification_settings(**fields: Any) -> Any:
    """``override_settings`` for NOTIFICATIONS with ``fields`` changed."""
    return override_settings(NOTIFICATIONS=config().model_copy(update=fields))


def webhook(inbox: Inbox, name: str = "ops", **fields: Any) -> Destination:
    destination = Destination.objects.create(
        name=fields.pop("label", name), kind=fields.pop("kind", Destination.Kind.WEBHOOK), url=inbox.url(name), **fields
    )
    inbox.script(name, secret=destination.secret)
    return destination

"""Fixtures for the operations tests: a private Redis per session, log capture, a live worker stack.

Every test here that touches Redis uses a redis-server of its own (started on a free port), never the
shared test databases: other suites running at the same time start workers of their own there, and a
health check or queue depth that depends on which workers happen to be listening would be flaky.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from reconcile_project import observability
from tests.conftest import reset_celery_pools
from tests.processes import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def ops_redis(redis_server: RedisServer) -> Iterator[RedisServer]:
    """The app Redis (db 0) and the broker (db 1) on the private server, empty."""
    redis_server.flush()
    with override_settings(REDIS_URL=redis_server.url(0), CELERY_BROKER_URL=redis_server.url(1)):
        yield redis_server
    redis_server.flush()


class LogCapture:
    """Root-logger handler with the production JSON formatter: ``records`` are the parsed lines."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(observability._formatter("json"))
        self.handler.setLevel(logging.DEBUG)

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    @property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]

    def find(self, message: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            r for r in self.records if r.get("message") == message and all(r.get(k) == v for k, v in fields.items())
        ]


@pytest.fixture
def json_logs() -> Iterator[LogCapture]:
    capture = LogCapture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture.handler)
    root.setLevel(logging.INFO)
    try:
        yield capture
    finally:
        root.removeHandler(capture.handler)
        root.setLevel(old_level)


@contextlib.contextmanager
def celery_broker(url: str) -> Iterator[None]:
    """Point the process's Celery app (publishing side) at ``url`` for the duration."""
    from reconcile_project.celery import app

    # app.conf reads Django settings live: remember only our own override, never a value that an
    # enclosing override_settings() may be showing, or the session would keep that broker for good.
    changes = app.conf.changes
    had_own = "broker_url" in changes
    old = changes.get("broker_url")
    reset_celery_pools()
    app.conf.broker_url = url
    try:
        yield
    finally:
        reset_celery_pools()
        if had_own:
            changes["broker_url"] = old
        else:
            changes.pop("broker_url", None)

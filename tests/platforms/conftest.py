"""Fixtures for tests that talk to the platform sandbox over real HTTP (no Django settings needed).

One :class:`SandboxServer` per test session on a free port; ``sandbox`` resets it before each test that
asks for it, so tests never see each other's posts, faults or stats.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
import redis

from platforms.adapters.base import AdapterConfig, PlatformAdapter
from platforms.registry import build_adapter
from platforms.sandbox import SandboxClient, SandboxServer, sandbox_credentials
from tests.platforms.breaker_helpers import redis_client

AdapterFactory = Callable[..., PlatformAdapter]


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    with SandboxServer(host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> SandboxServer:
    """The session's sandbox, reset: no pinned posts, no faults, zeroed stats."""
    sandbox_server.state.reset()
    return sandbox_server


@pytest.fixture
def sandbox_client(sandbox: SandboxServer) -> Iterator[SandboxClient]:
    client = SandboxClient(sandbox.url)
    yield client
    client.close()


@pytest.fixture
def make_adapter(sandbox: SandboxServer) -> AdapterFactory:
    """``make_adapter(slug, token="sandbox-token", read_timeout=2.0, base_url=None)``."""

    def factory(
        slug: str,
        *,
        token: str = "sandbox-token",
        connect_timeout: float = 1.0,
        read_timeout: float = 2.0,
        base_url: str | None = None,
    ) -> PlatformAdapter:
        config = AdapterConfig(
            base_url=base_url or sandbox.base_url(slug),
            credentials=sandbox_credentials(slug, token),
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        return build_adapter(slug, config)

    return factory


@pytest.fixture
def refused_url() -> str:
    """An address where nothing listens: bind a port, then release it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def client() -> redis.Redis:
    """The shared test Redis; a missing Redis is a failure (make test checks it first), not a skip."""
    c = redis_client()
    c.ping()
    return c

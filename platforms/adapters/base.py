"""The one shape every platform adapter has (STYLE principle 7).

An adapter is constructed from an :class:`AdapterConfig` (base URL, credentials, timeouts), keeps one
pooled ``requests.Session`` per process, calls its platform's reporting API in that platform's own
request/response shape, and returns :class:`PlatformMetrics` or raises a ``platforms.errors`` error.
It never retries, sleeps or consults the breaker: the fetcher does that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

METRICS = ("views", "clicks", "conversions")


@dataclass(frozen=True)
class AdapterConfig:
    base_url: str
    credentials: Mapping[str, str] = field(default_factory=dict)
    connect_timeout: float = 3.05
    read_timeout: float = 10.0


@dataclass(frozen=True)
class PlatformMetrics:
    """What the platform reports for one post; None where the platform gave no value."""

    views: int | None
    clicks: int | None
    conversions: int | None
    raw: Mapping[str, Any] = field(default_factory=dict)

    def missing_fields(self) -> list[str]:
        return [m for m in METRICS if getattr(self, m) is None]


class PlatformAdapter:
    """Base class; subclasses set ``slug`` and implement :meth:`fetch_metrics`."""

    slug: ClassVar[str]

    def __init__(self, config: AdapterConfig):
        self.config = config

    def fetch_metrics(self, post_id: str) -> PlatformMetrics:
        raise NotImplementedError

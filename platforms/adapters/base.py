"""The one shape every platform adapter has (STYLE principle 7).

An adapter is constructed from an :class:`AdapterConfig` (base URL, credentials, timeouts), keeps one
pooled ``requests.Session`` per process, calls its platform's reporting API in that platform's own
request/response shape, and returns :class:`PlatformMetrics` or raises a ``platforms.errors`` error.
It never retries, sleeps or consults the breaker: the fetcher does that.

Every reporting API we call is batch-shaped, so an adapter also answers for several posts in one request
(:meth:`PlatformAdapter.fetch_batch`, at most :attr:`~PlatformAdapter.max_batch` ids): a request-wide
failure raises as for one post; a post the answer leaves out is that post's ``NotFound`` only.
:attr:`~PlatformAdapter.bills_per_item` says how the platform counts a batch against its quota (one
request, or one per id), and so how many of our rate limiter's tokens the fetcher takes for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from platforms.errors import NotFound, PlatformError

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
    """Base class; subclasses set ``slug`` and implement :meth:`fetch_batch` (and so :meth:`fetch_metrics`)."""

    slug: ClassVar[str]
    #: The most post ids one request of the platform's batch form takes.
    max_batch: ClassVar[int] = 1
    #: True when the platform counts every id of a batch request against its quota (Meta's ``ids=``).
    bills_per_item: ClassVar[bool] = False

    def __init__(self, config: AdapterConfig):
        self.config = config

    def fetch_batch(self, post_ids: list[str]) -> dict[str, PlatformMetrics | PlatformError]:
        """One request for up to :attr:`max_batch` posts: each id maps to its metrics or its own error.

        Raises a ``platforms.errors`` error when the whole request failed (throttle, auth, outage).
        """
        raise NotImplementedError

    def fetch_metrics(self, post_id: str) -> PlatformMetrics:
        """One post: the batch form with one id; the post's own error is raised."""
        answer = self.fetch_batch([post_id]).get(post_id)
        if isinstance(answer, PlatformMetrics):
            return answer
        raise answer if answer is not None else NotFound(f"{self.slug}: no row for {post_id!r}")

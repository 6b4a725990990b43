"""The sandbox's mutable state: per-post overrides, per-platform faults, request stats.

Everything is behind one lock; the HTTP threads only hold it to read a consistent snapshot or to
record a request, never while sleeping or writing to a socket.
"""

from __future__ import annotations

import hashlib
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

METRIC_NAMES = ("views", "clicks", "conversions")
#: Held connections (the ``timeout`` fault with ``true``) last this long unless released earlier.
DEFAULT_HOLD_SECONDS = 30.0
#: Generated metrics grow by this fraction per whole hour since the sandbox first saw the post...
GROWTH_PER_HOUR = 0.01
#: ...for at most this many hours (a month), like a post whose audience has moved on.
MAX_GROWTH_HOURS = 24 * 30


@dataclass(frozen=True)
class Metrics:
    """What the sandbox's platform knows about a post; None = the platform omits the field."""

    views: int | None
    clicks: int | None
    conversions: int | None

    def without(self, *names: str) -> Metrics:
        return Metrics(**{m: None if m in names else getattr(self, m) for m in METRIC_NAMES})


def seeded_metrics(platform: str, post_id: str, age_hours: int = 0) -> Metrics:
    """Deterministic per (platform, post id): the same post gives the same numbers on any machine."""
    digest = hashlib.sha256(f"{platform}:{post_id}".encode()).digest()
    a, b, c = (int.from_bytes(digest[i : i + 4], "big") for i in (0, 4, 8))
    base_views = 1_000 + a % 99_000
    ctr = 0.005 + (b % 4_500) / 100_000  # 0.5 % .. 5 %
    cvr = 0.01 + (c % 900) / 10_000  # 1 % .. 10 %
    views = int(base_views * (1 + GROWTH_PER_HOUR * min(age_hours, MAX_GROWTH_HOURS)))
    clicks = int(views * ctr)
    return Metrics(views=views, clicks=clicks, conversions=int(clicks * cvr))


@dataclass(frozen=True)
class Fault:
    """Per-platform fault injection, as set by ``PUT /_control/faults/<platform>``."""

    error_rate: float = 0.0
    latency_ms: float = 0.0
    status: int | None = None
    rate_limit_retry_after: float | None = None
    outage: bool = False
    #: Seconds to hold a connection without answering (0: off).
    timeout: float = 0.0
    malformed: bool = False
    partial: bool = False
    #: Seconds an asynchronous report job (X's analytics jobs) stays PROCESSING before it succeeds.
    job_seconds: float = 0.0

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        if not isinstance(data, Mapping):
            raise ValueError("body must be a JSON object")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault keys: {', '.join(sorted(unknown))}")
        error_rate = _number(data, "error_rate", 0.0)
        if not 0 <= error_rate <= 1:
            raise ValueError("error_rate must be between 0 and 1")
        status = data.get("status")
        if status is not None and (not _is_int(status) or not 100 <= status <= 599):
            raise ValueError("status must be an HTTP status code or null")
        retry_after = data.get("rate_limit_retry_after")
        if retry_after is not None:
            retry_after = _number(data, "rate_limit_retry_after", 0.0)
        timeout = data.get("timeout", False)
        if isinstance(timeout, bool):
            hold = DEFAULT_HOLD_SECONDS if timeout else 0.0
        else:
            hold = _number(data, "timeout", 0.0)
        return cls(
            error_rate=error_rate,
            latency_ms=_number(data, "latency_ms", 0.0),
            status=status,
            rate_limit_retry_after=retry_after,
            outage=_flag(data, "outage"),
            timeout=hold,
            malformed=_flag(data, "malformed"),
            partial=_flag(data, "partial"),
            job_seconds=_number(data, "job_seconds", 0.0),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PostOverride:
    fields: dict[str, int | None] = field(default_factory=dict)
    exists: bool = True
    #: The platform knows the post but its report has no rows yet (reporting lag, no delivery yet).
    empty: bool = False
    #: When the post started collecting metrics (epoch seconds); None: when the sandbox first saw it.
    created_at: float | None = None


@dataclass(frozen=True)
class PostState:
    exists: bool
    metrics: Metrics
    overridden: tuple[str, ...]
    #: The metrics above are lifetime totals accrued evenly from ``created_at`` to ``now``.
    created_at: float = 0.0
    now: float = 0.0
    empty: bool = False
    #: ``created_at`` was set through the control API (else it is when the sandbox first saw the post).
    dated: bool = False

    def between(self, start: float, end: float) -> Metrics:
        """What a report over ``[start, end)`` shows: the share of the lifetime that window covers.

        A window that covers the whole lifetime gives the lifetime totals; a window that starts after
        the post was created (a 7-day or a 365-day look-back on an older post) gives less, which is what
        made too-short look-backs read as over-claims.
        """
        # Cumulative shares, so that consecutive windows add up exactly to the lifetime totals.
        low, high = self._accrued(start), self._accrued(end)
        if low <= 0.0 and high >= 1.0:
            return self.metrics
        return Metrics(
            **{
                m: None if (v := getattr(self.metrics, m)) is None else math.floor(v * high) - math.floor(v * low)
                for m in METRIC_NAMES
            }
        )

    def _accrued(self, moment: float) -> float:
        """The fraction of the lifetime totals accrued by ``moment``."""
        lifetime = self.now - self.created_at
        if lifetime <= 0:
            return 1.0 if moment >= self.created_at else 0.0
        return min(1.0, max(0.0, (moment - self.created_at) / lifetime))

    def to_json(self, platform: str, post_id: str) -> dict[str, Any]:
        return {
            "platform": platform,
            "post_id": post_id,
            "exists": self.exists,
            "empty": self.empty,
            "created_at": self.created_at if self.dated else None,
            **asdict(self.metrics),
            "overridden": list(self.overridden),
        }


@dataclass(frozen=True)
class Job:
    """An asynchronous report job (X's analytics jobs): created, then SUCCESS after ``job_seconds``."""

    id: int
    platform: str
    post_id: str
    params: Mapping[str, Any]
    created: float


class SandboxState:
    def __init__(self, platforms: tuple[str, ...], *, clock: Callable[[], float] = time.time, seed: int = 0):
        self.platforms = platforms
        self._clock = clock
        self._seed = seed
        self._lock = threading.Lock()
        self._posts: dict[tuple[str, str], PostOverride] = {}
        self._first_seen: dict[tuple[str, str], float] = {}
        self._faults: dict[str, Fault] = {}
        self._stats: dict[str, Counter[str]] = {}
        self._jobs: dict[int, Job] = {}
        self._next_job_id = 1_100_000_000_000_000_000
        self._rng = random.Random(seed)
        # Connections held by the ``timeout`` fault wait on this; reset/stop set it so they let go.
        self._release = threading.Event()

    # --- posts ---------------------------------------------------------------------------------

    def set_post(self, platform: str, post_id: str, data: Any) -> PostState:
        if not isinstance(data, Mapping):
            raise ValueError("body must be a JSON object")
        unknown = set(data) - {*METRIC_NAMES, "exists", "empty", "age_days"}
        if unknown:
            raise ValueError(f"unknown post keys: {', '.join(sorted(unknown))}")
        updates: dict[str, int | None] = {}
        for name in METRIC_NAMES:
            if name in data:
                value = data[name]
                if value is not None and (not _is_int(value) or value < 0):
                    raise ValueError(f"{name} must be a non-negative integer or null")
                updates[name] = value
        exists = data.get("exists", True)
        if not isinstance(exists, bool):
            raise ValueError("exists must be a boolean")
        empty = _flag(data, "empty")
        age_days = _number(data, "age_days", 0.0) if "age_days" in data else None
        with self._lock:
            override = self._posts.setdefault((platform, post_id), PostOverride())
            override.fields.update(updates)
            if "exists" in data:
                override.exists = exists
            if "empty" in data:
                override.empty = empty
            if age_days is not None:
                override.created_at = self._clock() - age_days * 86_400
            return self._post_state(platform, post_id, touch=False)

    def post(self, platform: str, post_id: str, *, touch: bool = True) -> PostState:
        """The post as the platform sees it now; ``touch`` starts its age clock (a real API call)."""
        with self._lock:
            return self._post_state(platform, post_id, touch=touch)

    def _post_state(self, platform: str, post_id: str, *, touch: bool) -> PostState:
        key = (platform, post_id)
        now = self._clock()
        first_seen = self._first_seen.setdefault(key, now) if touch else self._first_seen.get(key, now)
        age_hours = max(0, math.floor((now - first_seen) / 3600))
        generated = seeded_metrics(platform, post_id, age_hours)
        override = self._posts.get(key, PostOverride())
        values = {m: override.fields.get(m, getattr(generated, m)) for m in METRIC_NAMES}
        return PostState(
            exists=override.exists,
            metrics=Metrics(**values),
            overridden=tuple(override.fields),
            created_at=override.created_at if override.created_at is not None else first_seen,
            now=now,
            empty=override.empty,
            dated=override.created_at is not None,
        )

    # --- faults --------------------------------------------------------------------------------

    def set_fault(self, platform: str, data: Any) -> Fault:
        fault = Fault.from_json(data)
        with self._lock:
            self._faults[platform] = fault
        return fault

    def clear_fault(self, platform: str) -> None:
        with self._lock:
            self._faults.pop(platform, None)
        self._release_held()

    def fault(self, platform: str) -> Fault:
        with self._lock:
            return self._faults.get(platform, Fault())

    def faults(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {p: f.to_json() for p, f in self._faults.items()}

    def roll(self, probability: float) -> bool:
        """One seeded draw: a run with the same seed and call order injects the same errors."""
        if probability <= 0:
            return False
        with self._lock:
            return self._rng.random() < probability

    # --- asynchronous report jobs ------------------------------------------------------------------

    def create_job(self, platform: str, post_id: str, params: Mapping[str, Any]) -> Job:
        with self._lock:
            self._next_job_id += 1
            job = Job(
                id=self._next_job_id, platform=platform, post_id=post_id, params=dict(params), created=self._clock()
            )
            self._jobs[job.id] = job
            return job

    def jobs(self, platform: str, ids: set[int] | None = None) -> list[Job]:
        with self._lock:
            return [j for j in self._jobs.values() if j.platform == platform and (ids is None or j.id in ids)]

    def job_done(self, job: Job) -> bool:
        """Done once the platform's current ``job_seconds`` have passed since the job was created."""
        return self._clock() - job.created >= self.fault(job.platform).job_seconds

    # --- stats ---------------------------------------------------------------------------------

    def record(self, platform: str, outcome: str) -> None:
        with self._lock:
            self._stats.setdefault(platform, Counter())[outcome] += 1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            platforms = {
                p: {"total": sum(counts.values()), "by_status": dict(sorted(counts.items()))}
                for p, counts in sorted(self._stats.items())
            }
        return {"total": sum(p["total"] for p in platforms.values()), "platforms": platforms}

    # --- lifecycle -----------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self._posts.clear()
            self._first_seen.clear()
            self._faults.clear()
            self._stats.clear()
            self._jobs.clear()
            self._rng = random.Random(self._seed)
        self._release_held()

    def hold(self, seconds: float) -> None:
        """Sleep ``seconds`` unless released (reset, fault cleared, server stopped)."""
        if seconds > 0:
            with self._lock:
                event = self._release
            event.wait(seconds)

    def _release_held(self) -> None:
        with self._lock:
            released, self._release = self._release, threading.Event()
        released.set()

    def release_all(self) -> None:
        self._release_held()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(data: Mapping[str, Any], key: str, default: float) -> float:
    value = data.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{key} must be a non-negative number")
    return float(value)


def _flag(data: Mapping[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be a boolean")
    return value

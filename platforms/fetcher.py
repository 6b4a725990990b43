"""Fetch one post's metrics through the shared circuit breaker and rate limiter, with bounded retries.

This is the only place that calls adapters. Adapters never retry, sleep or consult the breaker; the
fetcher does all three and always returns a :class:`FetchOutcome` (it never raises a platform error),
so the engine can classify and schedule the next attempt from one value.

Per adapter call: ask the breaker (rejected → ``circuit_open``, no call), which also takes one of the
platform's in-flight slots (all taken → wait for one within the budget, else ``rate_limited``, no call:
our own limit on the platform's load held the call back, like the quota, and the breaker is not open),
take a token from the platform's bucket (none within the budget → ``rate_limited``, no call), call, tell
the breaker how it went and how long it took (a slow success counts as a failure).
Transient errors are retried with exponential backoff and jitter, at most ``max_retries`` times and
never sleeping past the attempt budget; each retry asks the breaker again, so a probe admission covers
exactly one call and a failed probe ends the fetch (the breaker is open again).
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Protocol, TypeVar

from platforms.adapters.base import METRICS, PlatformMetrics
from platforms.breaker import IN_FLIGHT_FULL, Admission
from platforms.errors import FetchError, NotFound, PlatformError, RateLimited
from platforms.ratelimit import TokenSource, wait_for_token
from reconcile_project.config import BackoffPolicy, RateLimitSettings

logger = logging.getLogger("platforms.fetcher")
performance_logger = logging.getLogger("app.performance")

#: Pause between two tries for an in-flight slot (jittered ±50 %): a slot frees when a call returns.
SLOT_POLL_SECONDS = 0.05

#: Bucket capacity as seconds of quota: a fifth of a second lets a worker pool start without waiting
#: while keeping any one-second window within 1.2 × the platform's quota.
BURST_SECONDS = 0.2

# Jitter needs no reproducibility outside tests (which pass their own); one generator avoids seeding
# a new one from the OS on every fetch.
_rng = random.Random()


T = TypeVar("T")


class Adapter(Protocol):
    def fetch_metrics(self, post_id: str) -> PlatformMetrics: ...


class BatchAdapter(Protocol):
    @property
    def max_batch(self) -> int: ...
    @property
    def bills_per_item(self) -> bool: ...

    def fetch_batch(self, post_ids: list[str]) -> dict[str, PlatformMetrics | PlatformError]: ...


class Breaker(Protocol):
    def before_call(self, platform: str) -> Admission: ...
    def record_success(self, platform: str, admission: Admission, *, duration_seconds: float | None = None) -> None: ...
    def record_failure(self, platform: str, admission: Admission) -> None: ...
    def release(self, platform: str, admission: Admission) -> None: ...


@dataclass(frozen=True)
class FetchOutcome:
    """Everything the engine needs from one fetch; ``error_code`` is the attempt's ``missing_reason``."""

    metrics: PlatformMetrics | None
    #: Metrics the platform did not give: the absent ones on success, all three on failure.
    missing_fields: list[str] = field(default_factory=list)
    #: None | not_found | fetch_error | timeout | auth_error | circuit_open | rate_limited
    error_code: str | None = None
    error_message: str | None = None
    #: True when the platform (429) or our own quota stopped the call.
    rate_limited: bool = False
    #: When known: seconds until the platform or the breaker will accept a call again.
    retry_after_seconds: float | None = None
    #: Adapter calls made (0 when the breaker or the rate limiter refused).
    attempts: int = 0
    duration_seconds: float = 0.0
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error_code is None

    @property
    def reached_platform(self) -> bool:
        """False for ``circuit_open`` and our own ``rate_limited``: such a miss must not use up an attempt."""
        return self.attempts > 0


def fetch(
    *,
    platform: str,
    post_id: str,
    adapter: Adapter | None = None,
    breaker: Breaker | None = None,
    limiter: TokenSource | None = None,
    backoff: BackoffPolicy | None = None,
    quota_rps: float | None = None,
    budget_seconds: float | None = None,
    rng: random.Random | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> FetchOutcome:
    """Fetch ``post_id``'s metrics from ``platform``; arguments left as None come from Django settings.

    ``quota_rps`` is the platform's quota across all workers (``Platform.quota_rps`` or the default);
    ``budget_seconds`` (default ``backoff.attempt_budget_seconds``) bounds waiting and sleeping.
    """
    started = clock()
    adapter, breaker, limiter, backoff, quota_rps = _defaults(platform, adapter, breaker, limiter, backoff, quota_rps)
    rng = rng or _rng
    deadline = started + (budget_seconds if budget_seconds is not None else backoff.attempt_budget_seconds)

    def call() -> PlatformMetrics:
        return adapter.fetch_metrics(post_id)

    guarded = _guarded_call(
        platform,
        call,
        breaker=breaker,
        limiter=limiter,
        backoff=backoff,
        quota_rps=quota_rps,
        deadline=deadline,
        rng=rng,
        sleep=sleep,
        clock=clock,
        context={"post_id": post_id},
    )
    if guarded.value is not None:
        metrics = guarded.value
        outcome = FetchOutcome(metrics=metrics, missing_fields=metrics.missing_fields(), raw=dict(metrics.raw))
    else:
        outcome = guarded.failure()
    outcome = replace(outcome, attempts=guarded.attempts, duration_seconds=clock() - started)
    _observe(platform, outcome)
    _log_fetch(platform, outcome, guarded.attempts, items=1)
    return outcome


def fetch_batch(
    *,
    platform: str,
    post_ids: list[str],
    adapter: BatchAdapter | None = None,
    breaker: Breaker | None = None,
    limiter: TokenSource | None = None,
    backoff: BackoffPolicy | None = None,
    quota_rps: float | None = None,
    budget_seconds: float | None = None,
    rng: random.Random | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, FetchOutcome]:
    """Several posts of one platform: one request per ``adapter.max_batch`` ids, each guarded as :func:`fetch`.

    A request-wide failure (refused by the breaker or the limiter, throttled, timed out) is every one of
    its posts' outcome; otherwise each post gets its own metrics or its own error (an id the answer left
    out is that post's ``not_found`` only). The limiter gives one token per request, or one per id when
    the platform bills a batch per item (``adapter.bills_per_item``). All requests share one budget.
    """
    started = clock()
    adapter, breaker, limiter, backoff, quota_rps = _defaults(platform, adapter, breaker, limiter, backoff, quota_rps)
    rng = rng or _rng
    deadline = started + (budget_seconds if budget_seconds is not None else backoff.attempt_budget_seconds)
    unique = list(dict.fromkeys(post_ids))
    size = max(1, int(adapter.max_batch))
    outcomes: dict[str, FetchOutcome] = {}
    for index in range(0, len(unique), size):
        chunk = unique[index : index + size]
        chunk_started = clock()
        guarded = _guarded_call(
            platform,
            functools.partial(adapter.fetch_batch, chunk),
            breaker=breaker,
            limiter=limiter,
            backoff=backoff,
            quota_rps=quota_rps,
            deadline=deadline,
            rng=rng,
            sleep=sleep,
            clock=clock,
            context={"items": len(chunk)},
            cost=len(chunk) if adapter.bills_per_item else 1,
        )
        duration = clock() - chunk_started
        if guarded.value is None:
            failed = replace(guarded.failure(), attempts=guarded.attempts, duration_seconds=duration)
            _observe(platform, failed)
            outcomes.update(dict.fromkeys(chunk, failed))
        else:
            answers = guarded.value
            for post_id in chunk:
                answer = answers.get(post_id)
                if answer is None:
                    answer = NotFound(f"{platform}: the batch answer has no row for {post_id!r}")
                if isinstance(answer, PlatformMetrics):
                    item = FetchOutcome(metrics=answer, missing_fields=answer.missing_fields(), raw=dict(answer.raw))
                else:
                    item = _error_outcome(answer)
                outcomes[post_id] = replace(item, attempts=guarded.attempts, duration_seconds=duration)
            _observe(platform, outcomes[chunk[0]])
        _log_fetch(platform, outcomes[chunk[0]], guarded.attempts, items=len(chunk))
    return outcomes


def _defaults(
    platform: str,
    adapter: Any,
    breaker: Breaker | None,
    limiter: TokenSource | None,
    backoff: BackoffPolicy | None,
    quota_rps: float | None,
) -> tuple[Any, Breaker, TokenSource, BackoffPolicy, float]:
    if adapter is None:
        from platforms.registry import get_adapter

        adapter = get_adapter(platform)
    if breaker is None:
        from platforms.breaker import get_breaker

        breaker = get_breaker()
    if limiter is None:
        from platforms.ratelimit import get_limiter

        limiter = get_limiter()
    if backoff is None or quota_rps is None:
        from django.conf import settings

        if backoff is None:
            policy = settings.BACKOFF_POLICY
            backoff = policy if isinstance(policy, BackoffPolicy) else BackoffPolicy.model_validate(policy)
        if quota_rps is None:
            limits = settings.RATE_LIMIT_SETTINGS
            if not isinstance(limits, RateLimitSettings):
                limits = RateLimitSettings.model_validate(limits)
            quota_rps = limits.platform_default_rps
    return adapter, breaker, limiter, backoff, quota_rps


@dataclass
class _Guarded(Generic[T]):
    """What one guarded platform request gave: its value, or the error / refusal that stopped it."""

    value: T | None = None
    error: PlatformError | None = None
    refused: FetchOutcome | None = None
    attempts: int = 0

    def failure(self) -> FetchOutcome:
        if self.refused is not None:
            return self.refused
        assert self.error is not None
        return _error_outcome(self.error)


def _guarded_call(
    platform: str,
    call: Callable[[], T],
    *,
    breaker: Breaker,
    limiter: TokenSource,
    backoff: BackoffPolicy,
    quota_rps: float,
    deadline: float,
    rng: random.Random,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    context: dict[str, Any],
    cost: int = 1,
) -> _Guarded[T]:
    """One platform request through the breaker and the limiter, with bounded retries of transient errors."""
    burst = max(1.0, quota_rps * BURST_SECONDS)
    result: _Guarded[T] = _Guarded()
    while True:
        admission = _admit(breaker, platform, deadline, sleep=sleep, clock=clock, rng=rng)
        if not admission.admitted:
            # On a retry the last platform error is the better answer: we did reach the platform.
            if result.error is None:
                result.refused = _refused(platform, admission)
            break
        token = wait_for_token(
            limiter, platform, quota_rps, burst, deadline, sleep=sleep, clock=clock, rng=rng, cost=cost
        )
        if not token.taken:
            breaker.release(platform, admission)
            if result.error is None:
                result.refused = FetchOutcome(
                    metrics=None,
                    missing_fields=list(METRICS),
                    error_code="rate_limited",
                    error_message=f"no {platform} quota token within the attempt budget",
                    rate_limited=True,
                    retry_after_seconds=token.retry_after,
                )
            break
        if token.waited and not admission.probe:
            # The admission is as old as the wait: the breaker may have opened meanwhile (a whole
            # pool of workers queued on the quota would otherwise all hit a platform that just
            # went down). A probe is ours to use; asking again would take a second probe slot.
            # The old admission's in-flight slot goes back first, so one call never holds two.
            breaker.release(platform, admission)
            admission = _admit(breaker, platform, deadline, sleep=sleep, clock=clock, rng=rng)
            if not admission.admitted:
                if result.error is None:
                    result.refused = _refused(platform, admission)
                break

        result.attempts += 1
        call_started = clock()
        try:
            value = call()
        except PlatformError as exc:
            result.error = exc
        except Exception as exc:
            # The adapter contract is "typed errors only"; anything else is an adapter bug. Count it
            # as a platform failure (so a broken adapter still trips the breaker) but do not retry.
            logger.exception("adapter_unexpected_error", extra={"platform": platform, **context})
            result.error = FetchError(f"{type(exc).__name__}: {exc}")
            result.error.transient = False
        else:
            breaker.record_success(platform, admission, duration_seconds=clock() - call_started)
            result.value, result.error, result.refused = value, None, None
            break

        error = result.error
        if error.counts_as_failure:
            breaker.record_failure(platform, admission)
        else:
            breaker.release(platform, admission)
        if not error.transient or result.attempts > backoff.max_retries:
            break
        delay = _backoff_delay(backoff, result.attempts - 1, rng)
        if isinstance(error, RateLimited) and error.retry_after is not None:
            delay = max(delay, error.retry_after)
        if clock() + delay > deadline:
            break
        sleep(delay)
    return result


def _log_fetch(platform: str, outcome: FetchOutcome, attempts: int, *, items: int) -> None:
    performance_logger.info(
        "Performance: platform_fetch",
        extra={
            "operation": "platform_fetch",
            "duration_ms": round(outcome.duration_seconds * 1000, 2),
            "platform": platform,
            "outcome": outcome.error_code or "ok",
            "attempts": attempts,
            "items": items,
        },
    )


def _observe(platform: str, outcome: FetchOutcome) -> None:
    # Imported here: the fetcher also runs outside Django (tests, benches) where metrics are not configured.
    try:
        from reconcile_project.metrics import PLATFORM_FETCH_DURATION
    except Exception:  # noqa: BLE001 - metrics must never break a fetch
        return
    PLATFORM_FETCH_DURATION.labels(platform=platform, outcome=outcome.error_code or "ok").observe(
        outcome.duration_seconds
    )


def _backoff_delay(policy: BackoffPolicy, retry_index: int, rng: random.Random) -> float:
    delay = min(policy.max_delay_seconds, policy.base_delay_seconds * 2**retry_index)
    return max(0.0, delay * (1 + policy.jitter_pct * (2 * rng.random() - 1)))


def _admit(
    breaker: Breaker,
    platform: str,
    deadline: float,
    *,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    rng: random.Random,
) -> Admission:
    """The breaker's admission; while it is refused only because every in-flight slot is taken, keep
    asking (a slot frees when a call returns) as long as the budget lasts."""
    while True:
        admission = breaker.before_call(platform)
        if admission.admitted or admission.reason != IN_FLIGHT_FULL:
            return admission
        pause = SLOT_POLL_SECONDS * (0.5 + rng.random())
        if clock() + pause > deadline:
            return admission
        sleep(pause)


def _refused(platform: str, admission: Admission) -> FetchOutcome:
    if admission.reason == IN_FLIGHT_FULL:
        # Not circuit_open: the breaker is not open, the platform is just busy with our calls. Like a
        # quota refusal the call never left, so it spends no attempt budget and is deferred.
        return FetchOutcome(
            metrics=None,
            missing_fields=list(METRICS),
            error_code="rate_limited",
            error_message=f"every in-flight slot for {platform} stayed taken for the attempt budget",
            rate_limited=True,
            retry_after_seconds=admission.retry_after_seconds,
        )
    return _circuit_open(platform, admission)


def _circuit_open(platform: str, admission: Admission) -> FetchOutcome:
    return FetchOutcome(
        metrics=None,
        missing_fields=list(METRICS),
        error_code="circuit_open",
        error_message=f"circuit breaker for {platform} is {admission.state}",
        retry_after_seconds=admission.retry_after_seconds,
    )


def _error_outcome(error: PlatformError) -> FetchOutcome:
    return FetchOutcome(
        metrics=None,
        missing_fields=list(METRICS),
        error_code=error.code,
        error_message=str(error),
        rate_limited=isinstance(error, RateLimited),
        retry_after_seconds=error.retry_after if isinstance(error, RateLimited) else None,
        raw={"error": type(error).__name__, "status": error.status},
    )

"""The Redis token bucket: burst, refill, a shared quota across concurrent callers, Redis going away."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from platforms.fetcher import BURST_SECONDS
from platforms.ratelimit import RateLimiter, wait_for_token
from platforms.sandbox import SandboxClient, SandboxServer
from tests.platforms.breaker_helpers import (
    REDIS_URL,
    WorkerProcesses,
    WorkerSpec,
    delete_prefix,
    redis_client,
    unique_prefix,
)
from tests.processes import free_port

P = "reddit"


@pytest.fixture
def limiter(client: redis.Redis) -> Iterator[RateLimiter]:
    prefix = unique_prefix("rl")
    yield RateLimiter(client, key_prefix=prefix)
    delete_prefix(client, prefix)


def test_a_full_bucket_grants_the_burst_then_asks_to_wait(limiter: RateLimiter) -> None:
    assert [limiter.acquire(P, 10, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.acquire(P, 10, 3)
    assert 0.05 < wait <= 0.1


def test_a_refused_caller_takes_nothing(limiter: RateLimiter) -> None:
    limiter.acquire(P, 5, 1)
    first = limiter.acquire(P, 5, 1)
    second = limiter.acquire(P, 5, 1)
    # Had the first refusal reserved a token, the second would be told to wait a whole period longer.
    assert 0 < second <= first <= 0.2


def test_tokens_refill_at_the_rate(limiter: RateLimiter) -> None:
    limiter.acquire(P, 20, 1)
    assert limiter.acquire(P, 20, 1) > 0
    time.sleep(0.06)
    assert limiter.acquire(P, 20, 1) == 0.0


def test_platforms_have_separate_buckets(limiter: RateLimiter) -> None:
    limiter.acquire("reddit", 1, 1)
    assert limiter.acquire("reddit", 1, 1) > 0
    assert limiter.acquire("youtube", 1, 1) == 0.0


def test_wait_blocks_until_a_token_is_free(limiter: RateLimiter) -> None:
    limiter.acquire(P, 10, 1)
    started = time.monotonic()
    assert limiter.wait(P, 10, 1, deadline=started + 1)
    assert 0.05 < time.monotonic() - started < 0.5


def test_wait_gives_up_without_sleeping_past_the_deadline(limiter: RateLimiter) -> None:
    limiter.acquire(P, 1, 1)
    slept: list[float] = []
    started = time.monotonic()
    assert not limiter.wait(P, 1, 1, deadline=started + 0.2, sleep=slept.append)
    assert slept == []


def test_wait_for_token_reports_the_wait_it_was_refused(limiter: RateLimiter) -> None:
    limiter.acquire(P, 2, 1)
    result = wait_for_token(limiter, P, 2, 1, deadline=time.monotonic() + 0.1)
    assert not result.taken and result.waited == 0
    assert result.retry_after is not None and 0.4 < result.retry_after <= 0.5


def test_wait_for_token_reports_how_long_it_waited(limiter: RateLimiter) -> None:
    assert wait_for_token(limiter, P, 10, 1, deadline=time.monotonic() + 1).waited == 0
    result = wait_for_token(limiter, P, 10, 1, deadline=time.monotonic() + 1)
    assert result.taken and 0.05 < result.waited < 0.2


def test_invalid_rate_or_burst_is_refused(limiter: RateLimiter) -> None:
    with pytest.raises(ValueError):
        limiter.acquire(P, 0, 1)
    with pytest.raises(ValueError):
        limiter.acquire(P, 10, 0.5)


def test_four_concurrent_callers_stay_within_the_quota(client: redis.Redis) -> None:
    """4 callers, each with its own limiter (as separate workers would have), at 20/s for 5 s."""
    prefix = unique_prefix("rl")
    rate, burst, window = 20.0, 4.0, 5.0
    granted: list[float] = []
    lock = threading.Lock()
    start = time.monotonic()
    end = start + window

    def caller() -> None:
        limiter = RateLimiter(redis_client(), key_prefix=prefix)
        while limiter.wait(P, rate, burst, deadline=end):
            with lock:
                granted.append(time.monotonic())

    threads = [threading.Thread(target=caller) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        delete_prefix(client, prefix)
    assert len(granted) <= rate * window + burst
    # ... and the limiter does not starve them either: close to the quota is granted.
    assert len(granted) >= 0.8 * rate * window
    # No one-second window holds more than a second's quota plus the burst.
    for t0 in granted:
        assert sum(1 for t in granted if t0 <= t < t0 + 1) <= rate + burst


def test_four_worker_processes_fetching_stay_within_the_quota_at_the_sandbox(
    sandbox: SandboxServer, sandbox_client: SandboxClient
) -> None:
    """The same through the whole fetch path, counted where it matters: requests served by the sandbox."""
    prefix = unique_prefix("rlmp")
    rate, window = 20.0, 5.0
    burst = max(1.0, rate * BURST_SECONDS)
    spec = WorkerSpec(
        redis_url=REDIS_URL,
        key_prefix=prefix,
        sandbox_url=sandbox.url,
        platform=P,
        post_id="t3_quota",
        threads=1,
        quota_rps=rate,
    )
    try:
        with WorkerProcesses(spec, processes=4) as workers:
            sandbox_client.reset()  # forget the warm-up requests
            started = workers.go()
            time.sleep(window)
            count = sandbox_client.requests_served(P)
            elapsed = time.monotonic() - started
            results = workers.stop()
    finally:
        delete_prefix(redis_client(), prefix)
    assert count <= rate * elapsed + burst
    assert count <= rate * window + burst + 1  # the +1: the stats call itself takes a moment
    assert count >= 0.75 * rate * window  # and does not starve them (loose: CI machines are busy)
    assert all(r["outcomes"].get("ok", 0) > 0 for r in results)  # every worker got its share


def test_redis_down_allows_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    dead = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.1)
    limiter = RateLimiter(dead)
    with caplog.at_level(logging.WARNING, logger="platforms.ratelimit"):
        assert [limiter.acquire(P, 1, 1) for _ in range(5)] == [0.0] * 5
    warnings = [r for r in caplog.records if "rate_limiter_redis_unavailable" in r.getMessage()]
    assert len(warnings) == 1

"""Acceptance: two worker processes, many threads each, share one breaker against the sandbox over HTTP.

Counts are taken at the sandbox (``/_control/stats``, which counts a request when it arrives, before
any injected latency) and cross-checked against what the workers saw. In-fetch retries are 0 so that
one fetch is one request.

What "exactly ``failure_threshold``" can mean with concurrency: the breaker opens on exactly the
threshold-th *recorded* failure, but calls already admitted and in flight at that instant still reach
the platform (no breaker can recall a request on the wire). With the calls paced by the shared quota,
as in production, normally nothing else is in flight and exactly ``failure_threshold`` failing requests
reach the sandbox; unpaced, the surplus is bounded by the number of threads. Pacing alone is a timing
argument, though: on a loaded host a worker can be descheduled for longer than the gap between two
quota tokens, and then the next call is admitted before the previous failure is recorded. So the paced
test does not assume it: the workers time every call (:class:`~tests.platforms.breaker_helpers.Verdict`)
and the test allows beyond ``failure_threshold`` only calls that were provably in flight when the breaker
opened (none, unless the host stalled a worker, so normally exactly ``failure_threshold``), and demands
that no call was admitted after it opened or went out on an admission older than its wait for quota.

The breaker and limiter state lives in a redis-server of this module's own (``private_redis``), not in
the shared test Redis: other test runs on the same host (``tests/integration``'s ``clean_redis``)
``FLUSHDB`` that database between their tests. A flush in the middle of this test wipes the OPEN
breaker, the paced workers call the platform again, and it re-opens after another ``failure_threshold``
failures, which shows up as "more failing requests than the threshold" rather than as interference.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from platforms.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from platforms.sandbox import SandboxClient, SandboxServer
from tests.platforms.breaker_helpers import (
    REDIS_URL,
    WorkerProcesses,
    WorkerSpec,
    advance,
    breaker_settings,
    delete_prefix,
    most_at_once,
    private_redis,
    redis_client,
    total,
    unique_prefix,
)

pytestmark = pytest.mark.integration

P = "reddit"
POST = "t3_multiproc"
PROCESSES = 2
THREADS = 12


SENTINEL = "sentinel"


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A Redis no other test run can flush: a private redis-server, or the shared one if there is none."""
    if shutil.which("redis-server") is not None:
        with private_redis() as (_proc, url):
            yield url
        return
    try:
        redis_client(REDIS_URL).ping()
    except redis.ConnectionError as exc:
        # A missing Redis is a broken test environment, not a reason to pass quietly (see conftest).
        pytest.fail(f"neither redis-server on PATH nor a Redis at TEST_REDIS_URL/REDIS_URL: {exc}", pytrace=False)
    yield REDIS_URL


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    client = redis_client(redis_url)
    p = unique_prefix("cbmp")
    client.set(p + SENTINEL, 1)
    yield p
    delete_prefix(client, p)


def assert_not_flushed(redis_url: str, prefix: str) -> None:
    """Fail with the real cause if something outside the test deleted its keys (FLUSHDB on a shared Redis)."""
    assert redis_client(redis_url).exists(prefix + SENTINEL), "the test's Redis keys were deleted by someone else"


def served(client: SandboxClient, status: str | None = None) -> int:
    platform = client.stats()["platforms"].get(P, {})
    if status is None:
        return int(platform.get("total", 0))
    return int(platform.get("by_status", {}).get(status, 0))


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def settled(client: SandboxClient, quiet: float = 0.3, timeout: float = 5.0) -> int:
    """The platform's request count once it has not moved for ``quiet`` seconds.

    Right after the breaker opens, calls admitted before it may still be on their way (a worker the
    host has descheduled sends its request late); a fixed sleep would count some of them as calls
    made while OPEN. A worker that really kept calling never lets the count settle.
    """
    deadline = time.monotonic() + timeout
    count, since = served(client), time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() > deadline:
            raise AssertionError(f"the platform kept receiving requests while the breaker was open ({count} so far)")
        time.sleep(0.02)
        latest = served(client)
        if latest != count:
            count, since = latest, time.monotonic()
    return count


def spec(sandbox: SandboxServer, redis_url: str, prefix: str, **kw: Any) -> WorkerSpec:
    return WorkerSpec(
        redis_url=redis_url, key_prefix=prefix, sandbox_url=sandbox.url, platform=P, post_id=POST, threads=THREADS, **kw
    )


def test_paced_workers_open_after_exactly_threshold_failing_requests_then_fail_fast(
    sandbox: SandboxServer, sandbox_client: SandboxClient, redis_url: str, prefix: str
) -> None:
    threshold = 5
    observer = CircuitBreaker(redis_client(redis_url), breaker_settings(threshold, 60, 3), key_prefix=prefix)
    # 10/s with a burst of 2 (< threshold): requests reach the platform one at a time, as under a real quota.
    worker_spec = spec(sandbox, redis_url, prefix, threshold=threshold, cooldown=60, quota_rps=10)
    with WorkerProcesses(worker_spec, PROCESSES) as workers:
        sandbox_client.reset()  # forget the workers' warm-up requests
        sandbox_client.set_fault(P, outage=True)
        workers.go()
        wait_for(lambda: observer.state(P) == OPEN, 10, "the breaker to open")
        at_open = settled(sandbox_client)
        time.sleep(0.7)
        after_open = served(sandbox_client)
        results = workers.stop()

    assert_not_flushed(redis_url, prefix)
    failing = served(sandbox_client, "503")
    assert after_open == at_open == failing, "a worker called the platform while the breaker was open"
    # It opened once, on the threshold-th failure it counted, whichever process recorded each one.
    assert total(results, "transitions", OPEN) == 1
    assert observer.snapshot([P])[P]["failures"] == threshold
    # Every request the sandbox saw is a call the workers made, and each ended in one recorded failure.
    failures = [v for r in results for v in r["verdicts"] if v.kind == "failure"]
    assert len(failures) == failing == total(results, "outcomes", "fetch_error") == total(results, "adapter_calls")
    [opening] = [v for v in failures if v.transitioned_to == OPEN]
    # Each call's admission was asked for before the opening failure was acknowledged (one asked for
    # later would have been refused), and none went out on an admission older than its wait for quota
    # (the workers queued on the quota when it opened must ask again, and be turned away).
    assert all(v.asked_at < opening.done_at for v in failures), "a call was admitted after the breaker opened"
    assert not any(v.stale for v in failures), "a call waited for quota and went out without asking again"
    # So the only calls that may go beyond the threshold are those still unrecorded when the opening
    # failure was sent: in flight when the breaker opened. Paced, there are none unless the host stalled
    # a worker for longer than the gap between two tokens, and exactly `threshold` requests reach it.
    in_flight = [v for v in failures if v is not opening and v.done_at > opening.sent_at]
    assert threshold <= failing <= threshold + len(in_flight), f"{len(in_flight)} calls were in flight at the open"
    # Both processes were turned away without calling the platform.
    assert all(r["outcomes"].get("circuit_open", 0) > 0 for r in results)


def test_unpaced_workers_share_one_breaker_through_open_half_open_and_closed(
    sandbox: SandboxServer, sandbox_client: SandboxClient, redis_url: str, prefix: str
) -> None:
    # A long cooldown that the test ends itself (advance): sleeping through a short one races the host's load.
    threshold, cooldown, probes = 5, 60.0, 3
    observer = CircuitBreaker(redis_client(redis_url), breaker_settings(threshold, cooldown, probes), key_prefix=prefix)
    worker_spec = spec(sandbox, redis_url, prefix, threshold=threshold, cooldown=cooldown, probes=probes)
    with WorkerProcesses(worker_spec, PROCESSES) as w:
        sandbox_client.reset()  # forget the workers' warm-up requests
        sandbox_client.set_post(P, POST, views=1000, clicks=40, conversions=4)
        sandbox_client.set_fault(P, outage=True)
        w.go()
        wait_for(lambda: observer.state(P) == OPEN, 10, "the breaker to open")
        at_open = settled(sandbox_client)  # let the calls that were already on the wire land
        time.sleep(0.3)
        during_open = served(sandbox_client)
        # Before the cooldown ends the platform recovers, but slowly: a probe stays in flight for 1 s,
        # long enough to see that nobody but the probes reaches the platform while HALF_OPEN.
        sandbox_client.set_fault(P, latency_ms=1000)
        assert observer.state(P) == OPEN
        advance(redis_client(redis_url), observer, P, cooldown)  # the cooldown ends now
        wait_for(lambda: observer.state(P) != OPEN, 5, "a worker to notice the end of the cooldown")
        time.sleep(0.3)
        probe_requests = served(sandbox_client) - during_open
        half_open_state = observer.state(P)  # still HALF_OPEN: the count above saw probes only
        wait_for(lambda: observer.state(P) == CLOSED, 5, "a probe to close the breaker")
        time.sleep(0.3)
        results = w.stop()

    assert_not_flushed(redis_url, prefix)
    failing = served(sandbox_client, "503")
    assert threshold <= failing <= threshold + PROCESSES * THREADS - 1
    assert at_open == failing and during_open == at_open, "a worker called the platform while the breaker was open"
    assert half_open_state == HALF_OPEN
    assert 1 <= probe_requests <= probes
    assert total(results, "probes") == total(results, "admitted", HALF_OPEN) <= probes
    assert total(results, "transitions", OPEN) == 1
    assert total(results, "transitions", HALF_OPEN) == 1
    assert total(results, "transitions", CLOSED) == 1
    assert all(r["outcomes"].get("circuit_open", 0) > 0 for r in results)
    # Every request the sandbox saw is one the workers made, and traffic flows again once closed.
    assert total(results, "adapter_calls") == served(sandbox_client)
    assert total(results, "outcomes", "ok") == served(sandbox_client, "200") > total(results, "probes")


def test_a_timing_out_platform_gets_at_most_max_in_flight_calls_at_once(
    sandbox: SandboxServer, sandbox_client: SandboxClient, redis_url: str, prefix: str
) -> None:
    """The drill for slow failures: every call outlasts the read timeout, so the breaker hears of a
    failure only a read timeout after the call went out. Without a cap every worker thread (24) sends a
    call in that time; with ``max_in_flight`` at most that many are out at once, across both processes,
    and the breaker opens after ``failure_threshold`` timeouts, so at most ``threshold + cap - 1`` calls
    reach the platform: the ``threshold - 1`` that failed before the opening one, plus up to ``cap``
    out when it was counted."""
    threshold, cap, read_timeout = 5, 4, 0.5
    observer = CircuitBreaker(redis_client(redis_url), breaker_settings(threshold, 60, 3), key_prefix=prefix)
    worker_spec = spec(
        sandbox, redis_url, prefix, threshold=threshold, cooldown=60, max_in_flight=cap, read_timeout=read_timeout
    )
    with WorkerProcesses(worker_spec, PROCESSES) as workers:
        sandbox_client.reset()  # forget the warm-up requests
        sandbox_client.set_fault(P, latency_ms=read_timeout * 1000 * 4)  # every call times out
        started = workers.go()
        wait_for(lambda: observer.state(P) == OPEN, 30, "the breaker to open")
        reached = settled(sandbox_client)
        results = workers.stop()

    assert_not_flushed(redis_url, prefix)
    calls = [span for r in results for span in r["calls"] if span[0] >= started]
    assert most_at_once(calls) <= cap, "more calls were in flight at once than max_in_flight"
    assert reached == len(calls) == total(results, "outcomes", "timeout")
    assert threshold <= reached <= threshold + cap - 1
    assert total(results, "transitions", OPEN) == 1
    # The threads that found every slot taken waited for one and then met the open breaker: no call.
    assert total(results, "outcomes", "circuit_open") > 0

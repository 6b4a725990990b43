"""Shared helpers for the breaker, rate-limiter and fetcher tests (no Django needed).

Also the entry point of the worker processes in ``test_breaker_multiprocess.py``: a spawned process
imports this module and runs :func:`run_worker`, so it must stay importable without Django settings.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis

from platforms.breaker import Admission, CircuitBreaker
from platforms.ratelimit import TokenSource
from reconcile_project.config import BackoffPolicy, CircuitBreakerSettings
from tests.processes import RedisServer

REDIS_URL = os.environ.get("TEST_REDIS_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


def redis_client(url: str = REDIS_URL) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)


def unique_prefix(kind: str) -> str:
    return f"test:{kind}:{uuid.uuid4().hex}:"


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}*", count=500))
    if keys:
        client.delete(*keys)


def breaker_settings(
    threshold: int = 3,
    cooldown: float = 30.0,
    probes: int = 2,
    *,
    max_in_flight: int = 1_000,
    slow_call_seconds: float = 1_000.0,
    lease: float = 60.0,
) -> CircuitBreakerSettings:
    """Test settings. The in-flight cap and the slow-call threshold are out of the way unless a test is
    about them; cooldowns are long, and tests end them with :func:`advance` instead of sleeping."""
    # model_validate: the test's values only, never a CIRCUIT_BREAKER__* variable from the environment.
    return CircuitBreakerSettings.model_validate(
        {
            "failure_threshold": threshold,
            "open_cooldown_seconds": cooldown,
            "half_open_probe_count": probes,
            "max_in_flight": max_in_flight,
            "slow_call_seconds": slow_call_seconds,
            "in_flight_lease_seconds": lease,
        }
    )


def advance(client: redis.Redis, breaker: CircuitBreaker, platform: str, seconds: float) -> None:
    """Drive the breaker's clock instead of sleeping against it: move the times it stored for
    ``platform`` (``opened_at``, ``half_open_at``, in-flight lease expiries) ``seconds`` into the past,
    as if they had passed.
    A test that sleeps through a short cooldown races the machine's load; this cannot."""
    # One script, so that it is atomic: workers of a live test keep calling the breaker, and a transition
    # between reading and writing (a fresh half_open_at) must not be moved back too.
    client.eval(_ADVANCE, 2, f"{breaker.key_prefix}{platform}", f"{breaker.key_prefix}{platform}:inflight", seconds)


_ADVANCE = """
local seconds = tonumber(ARGV[1])
for _, field in ipairs({'opened_at', 'half_open_at'}) do
  local value = redis.call('HGET', KEYS[1], field)
  if value then redis.call('HSET', KEYS[1], field, string.format('%.6f', tonumber(value) - seconds)) end
end
local leases = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = 1, #leases, 2 do
  redis.call('ZADD', KEYS[2], string.format('%.6f', tonumber(leases[i + 1]) - seconds), leases[i])
end
return 1
"""


def no_retries(budget: float = 5.0) -> BackoffPolicy:
    return BackoffPolicy.model_validate({"max_retries": 0, "attempt_budget_seconds": budget})


@contextlib.contextmanager
def private_redis(port: int | None = None) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A throw-away redis-server on a free port (or ``port``): a Redis the test may kill."""
    server = RedisServer(port)
    try:
        assert server.proc is not None
        yield server.proc, server.url(0)
    finally:
        server.stop()


class Verdict(NamedTuple):
    """One ``record_failure``/``record_success`` as the worker saw it, on ``time.monotonic()``.

    On Linux that clock is CLOCK_MONOTONIC, one clock for every process on the host, so verdicts from
    different workers can be ordered against each other.
    """

    kind: str
    #: When the worker asked for the admission this call ran on (the last ``before_call`` before it).
    asked_at: float
    #: When the verdict was sent to the breaker, and when the breaker had acknowledged it.
    sent_at: float
    done_at: float
    #: The state this verdict moved the breaker to, if it made the transition (``None`` otherwise).
    transitioned_to: str | None
    #: True when the call was told to wait for a quota token after its admission and went out without
    #: asking the breaker again: an admission as old as that wait, which may predate an opening.
    stale: bool


class RecordingBreaker:
    """Wraps a breaker and counts, per admission kind, the adapter calls it let through.

    It also keeps a :class:`Verdict` per call that ended in a verdict, so a test can tell a call that
    was already admitted (in flight) when the breaker opened from one admitted after it opened. Pass
    the rate limiter through :meth:`watch` so that the verdicts know which admissions waited for quota.
    """

    def __init__(self, inner: CircuitBreaker):
        self.inner = inner
        self._lock = threading.Lock()
        self._local = threading.local()
        self.admitted: dict[str, int] = {}
        self.rejected = 0
        self.probes = 0
        self.verdicts: list[Verdict] = []
        # Hooks run synchronously in the thread whose script made the transition.
        inner.transition_hooks.append(lambda _p, _f, to: setattr(self._local, "transitioned_to", to))

    def before_call(self, platform: str) -> Admission:
        asked_at = time.monotonic()
        admission = self.inner.before_call(platform)
        with self._lock:
            if admission.admitted:
                self.admitted[admission.state] = self.admitted.get(admission.state, 0) + 1
                self.probes += admission.probe
            else:
                self.rejected += 1
        if admission.admitted:
            # A re-check after waiting for a quota token replaces the earlier admission.
            self._local.asked_at = asked_at
            self._local.stale = False
        return admission

    def watch(self, limiter: TokenSource) -> TokenSource:
        """``limiter``, reporting to this breaker when an admitted call is told to wait for a token."""
        return _WatchedLimiter(limiter, self._local)

    def record_success(self, platform: str, admission: Admission, *, duration_seconds: float | None = None) -> None:
        self._verdict(
            "success", lambda: self.inner.record_success(platform, admission, duration_seconds=duration_seconds)
        )

    def record_failure(self, platform: str, admission: Admission) -> None:
        self._verdict("failure", lambda: self.inner.record_failure(platform, admission))

    def release(self, platform: str, admission: Admission) -> None:
        self.inner.release(platform, admission)

    def _verdict(self, kind: str, send: Callable[[], None]) -> None:
        self._local.transitioned_to = None
        sent_at = time.monotonic()
        send()
        local = self._local
        verdict = Verdict(kind, local.asked_at, sent_at, time.monotonic(), local.transitioned_to, local.stale)
        with self._lock:
            self.verdicts.append(verdict)


class TimedAdapter:
    """Wraps an adapter and keeps ``(start, end)`` of every call on ``time.monotonic()`` (one clock for
    every process on the host), so a test can count the calls in flight at any moment across workers."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.spans: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    def fetch_metrics(self, post_id: str) -> Any:
        start = time.monotonic()
        try:
            return self.inner.fetch_metrics(post_id)
        finally:
            end = time.monotonic()
            with self._lock:
                self.spans.append((start, end))


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The largest number of ``(start, end)`` spans open at one moment."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    current = peak = 0
    for _, step in events:  # at equal times an end (-1) sorts before a start: touching spans do not overlap
        current += step
        peak = max(peak, current)
    return peak


class _WatchedLimiter:
    def __init__(self, inner: TokenSource, local: threading.local):
        self.inner = inner
        self._local = local

    def acquire(self, platform: str, rate_per_sec: float, burst: float) -> float:
        wait = self.inner.acquire(platform, rate_per_sec, burst)
        if wait > 0:
            self._local.stale = True
        return wait


@dataclass(frozen=True)
class WorkerSpec:
    """What each worker process does: ``threads`` threads fetching one post in a loop until told to stop."""

    redis_url: str
    key_prefix: str
    sandbox_url: str
    platform: str
    post_id: str
    threads: int
    threshold: int = 5
    cooldown: float = 60.0
    probes: int = 3
    #: The platform's quota across all workers; the default is far above anything reached.
    quota_rps: float = 1_000_000.0
    #: Pause between a thread's calls while the breaker rejects, so idle threads do not spin on Redis.
    rejected_pause: float = 0.005
    #: Calls in flight at once across all workers (the default keeps the cap out of the way).
    max_in_flight: int = 1_000
    read_timeout: float = 5.0


def run_worker(spec: WorkerSpec, ready: Any, go: Any, stop: Any, results: Any) -> None:
    """A worker process: the real fetcher, a Redis breaker and limiter, the adapter over HTTP."""
    from platforms.adapters.base import AdapterConfig
    from platforms.errors import PlatformError
    from platforms.fetcher import fetch
    from platforms.ratelimit import RateLimiter
    from platforms.registry import build_adapter
    from platforms.sandbox import sandbox_credentials

    client = redis.Redis.from_url(spec.redis_url, socket_connect_timeout=0.5, socket_timeout=0.5)
    inner = CircuitBreaker(
        client,
        breaker_settings(spec.threshold, spec.cooldown, spec.probes, max_in_flight=spec.max_in_flight),
        key_prefix=spec.key_prefix,
    )
    transitions: dict[str, int] = {}
    inner.transition_hooks.append(lambda _p, _f, to: transitions.__setitem__(to, transitions.get(to, 0) + 1))
    breaker = RecordingBreaker(inner)
    limiter = breaker.watch(RateLimiter(client, key_prefix=spec.key_prefix + "rl:"))
    config = AdapterConfig(
        base_url=f"{spec.sandbox_url}/{spec.platform}",
        credentials=sandbox_credentials(spec.platform),
        read_timeout=spec.read_timeout,
    )
    adapter = TimedAdapter(build_adapter(spec.platform, config))
    outcomes: dict[str, int] = {}
    adapter_calls = 0
    lock = threading.Lock()

    errors: list[str] = []
    warm = threading.Barrier(spec.threads + 1, timeout=30)

    def warm_up() -> None:
        # One request per thread before the test starts counting, so that every thread holds an open
        # keep-alive connection: a burst of fresh connects can overflow the sandbox's small listen
        # backlog, and a SYN retried a second later would land in a later phase of the test.
        for _ in range(20):
            try:
                adapter.fetch_metrics("warm-up")
                return
            except PlatformError:
                time.sleep(0.05)

    def loop() -> None:
        nonlocal adapter_calls
        try:
            warm_up()
        finally:
            warm.wait()
        go.wait()
        while not stop.is_set():
            outcome = fetch(
                platform=spec.platform,
                post_id=spec.post_id,
                adapter=adapter,
                breaker=breaker,
                limiter=limiter,
                backoff=no_retries(),
                quota_rps=spec.quota_rps,
                budget_seconds=5.0,
            )
            code = outcome.error_code or "ok"
            with lock:
                outcomes[code] = outcomes.get(code, 0) + 1
                adapter_calls += outcome.attempts
            if code == "circuit_open":
                time.sleep(spec.rejected_pause)

    def guarded() -> None:
        try:
            loop()
        except BaseException as exc:  # reported to the test rather than lost on a worker's stderr
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=guarded) for _ in range(spec.threads)]
    for t in threads:
        t.start()
    try:
        warm.wait()
    except threading.BrokenBarrierError:
        errors.append("warm-up did not finish")
    ready.put(os.getpid())
    for t in threads:
        t.join()
    results.put(
        {
            "pid": os.getpid(),
            "outcomes": outcomes,
            "adapter_calls": adapter_calls,
            "admitted": breaker.admitted,
            "probes": breaker.probes,
            "rejected": breaker.rejected,
            "transitions": transitions,
            "verdicts": breaker.verdicts,
            "calls": adapter.spans,
            "errors": errors,
        }
    )


class WorkerProcesses:
    """``processes`` spawned workers running :func:`run_worker`; ``go()`` starts them all at once."""

    def __init__(self, spec: WorkerSpec, processes: int):
        ctx = multiprocessing.get_context("spawn")
        self._ready, self._results = ctx.Queue(), ctx.Queue()
        self._go, self._stop = ctx.Event(), ctx.Event()
        self._procs = [
            ctx.Process(target=run_worker, args=(spec, self._ready, self._go, self._stop, self._results))
            for _ in range(processes)
        ]

    def __enter__(self) -> WorkerProcesses:
        for proc in self._procs:
            proc.daemon = True  # never outlive the test run, even if it dies between here and __exit__
            proc.start()
        try:
            for _ in self._procs:
                self._ready.get(timeout=60)  # spawn imports everything afresh: give it time, once
        except BaseException:
            self.__exit__()
            raise
        return self

    def go(self) -> float:
        # The clock is read before the signal: a worker may start its first call before this process is
        # scheduled again, and that call must not look older than the start.
        started = time.monotonic()
        self._go.set()
        return started

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        results = [self._results.get(timeout=30) for _ in self._procs]
        for proc in self._procs:
            proc.join(timeout=10)
        errors = [e for r in results for e in r["errors"]]
        assert not errors, f"worker threads failed: {errors}"
        return results

    def __exit__(self, *exc: object) -> None:
        self._go.set()
        self._stop.set()
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)


def total(results: list[dict[str, Any]], *path: str) -> int:
    """Sum a (nested) counter over the workers' results; a missing key counts 0."""
    value = 0
    for result in results:
        node: Any = result
        for key in path:
            node = node.get(key, 0) if isinstance(node, dict) else 0
        value += int(node)
    return value

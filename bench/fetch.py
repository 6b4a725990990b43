"""Benchmark of the full fetch path (breaker + rate limiter + adapter over HTTP) against the sandbox.

Run: ``cd /work/main && .venv/bin/python bench/fetch.py``. Prints one JSON document on stdout (progress
goes to stderr). Talks only to 127.0.0.1: the local Redis (``BENCH_REDIS_URL``, default
redis://127.0.0.1:6379/0, under a throw-away key prefix, deleted afterwards) and a sandbox it starts.

The sandbox runs in a **subprocess**: in-process, its HTTP threads would compete with the fetching
threads for the GIL and the figure would measure the benchmark harness as much as the fetcher.

Measured (each figure is the median of 3 runs):
- fetches/s through ``platforms.fetcher.fetch`` with 1, 8 and 32 threads, at 0 ms and 50 ms sandbox
  latency, each run bounded to ``RUN_SECONDS``; the quota is set far above what is reached so the
  limiter is exercised (one Redis script call per fetch) without ever making a thread wait;
- the breaker's own cost per call: ``before_call`` + ``record_success`` on a CLOSED breaker, p50/p99 in
  ms over ``BREAKER_CALLS`` calls against the local Redis;
- for reference, the floor of two Redis round trips (two ``PING``s) p50/p99, and the adapter called
  directly (no breaker, no limiter, no fetcher) at 1 thread and 0 ms: what the fetch path adds on top;
- a timeout outage drill: ``DRILL_THREADS`` threads fetch from a platform whose every answer comes after
  the read timeout, for ``DRILL_SECONDS``; the calls that reached the platform (counted by the sandbox)
  and the most that were in flight at once, with the default breaker (``max_in_flight``) and, for
  reference, with the cap out of the way (what the breaker did before it had one). The throughput
  figures above use the default settings too, so they include the in-flight cap.
"""

from __future__ import annotations

import json
import os
import platform as host_platform
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from platforms.adapters.base import AdapterConfig  # noqa: E402
from platforms.breaker import CircuitBreaker  # noqa: E402
from platforms.errors import PlatformError  # noqa: E402
from platforms.fetcher import fetch  # noqa: E402
from platforms.ratelimit import RateLimiter  # noqa: E402
from platforms.registry import build_adapter  # noqa: E402
from reconcile_project.config import BackoffPolicy, CircuitBreakerSettings  # noqa: E402

PLATFORM = "reddit"
POST_ID = "bench1"
REPEATS = 3
RUN_SECONDS = 1.5
THREADS = (1, 8, 32)
LATENCIES_MS = (0, 50)
BREAKER_CALLS = 2_000
#: Far above anything reached, so the limiter costs its Redis call but never a wait.
QUOTA_RPS = 1_000_000.0
DRILL_THREADS = 24
DRILL_SECONDS = 3.0
DRILL_READ_TIMEOUT = 0.5
#: Not REDIS_URL: a bench run must never touch a Redis the environment happens to point at.
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def serve_sandbox() -> None:
    """Child mode: start the sandbox, print its URL, serve until stdin closes (the parent exits)."""
    from platforms.sandbox.server import SandboxServer

    server = SandboxServer("127.0.0.1", port=0)
    server.start()
    print(server.url, flush=True)
    sys.stdin.read()
    server.stop()


def start_sandbox() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-sandbox"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1"):
        proc.kill()
        raise RuntimeError(f"sandbox did not start (got {url!r})")
    return proc, url


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def throughput_run(
    threads: int, breaker: CircuitBreaker, limiter: RateLimiter, adapter: Any, *, bare: bool = False
) -> dict[str, Any]:
    """Fetches/s over RUN_SECONDS; ``bare`` calls the adapter directly (the baseline without the fetcher)."""
    backoff = BackoffPolicy.model_validate({"max_retries": 0})
    counts = [0] * threads
    errors: dict[str, int] = {}
    lock = threading.Lock()
    start_barrier = threading.Barrier(threads + 1)
    stop_at = 0.0

    def one() -> str | None:
        if bare:
            adapter.fetch_metrics(POST_ID)
            return None
        outcome = fetch(
            platform=PLATFORM,
            post_id=POST_ID,
            adapter=adapter,
            breaker=breaker,
            limiter=limiter,
            backoff=backoff,
            quota_rps=QUOTA_RPS,
            budget_seconds=10.0,
        )
        return None if outcome.ok else f"{outcome.error_code}: {outcome.error_message}"[:120]

    def worker(i: int) -> None:
        # Untimed: open this thread's keep-alive connection first. A burst of 32 fresh connects can
        # overflow the sandbox's listen backlog, and steady-state throughput is what is measured.
        for _ in range(10):
            try:
                adapter.fetch_metrics(POST_ID)
                break
            except PlatformError:
                time.sleep(0.05)
        start_barrier.wait()
        while time.monotonic() < stop_at:
            error = one()
            counts[i] += 1
            if error is not None:
                with lock:
                    errors[error] = errors.get(error, 0) + 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    started = time.monotonic()
    stop_at = started + RUN_SECONDS
    start_barrier.wait()
    for t in pool:
        t.join()
    elapsed = time.monotonic() - started
    return {"fetches_per_s": sum(counts) / elapsed, "fetches": sum(counts), "errors": errors}


def breaker_overhead(breaker: CircuitBreaker, client: redis.Redis) -> dict[str, float]:
    call_ms: list[float] = []
    for _ in range(BREAKER_CALLS):
        t0 = time.perf_counter()
        admission = breaker.before_call("bench-overhead")
        breaker.record_success("bench-overhead", admission)
        call_ms.append((time.perf_counter() - t0) * 1000)
    ping_ms: list[float] = []
    for _ in range(BREAKER_CALLS):
        t0 = time.perf_counter()
        client.ping()
        client.ping()
        ping_ms.append((time.perf_counter() - t0) * 1000)
    return {
        "p50_ms": percentile(call_ms, 50),
        "p99_ms": percentile(call_ms, 99),
        "two_pings_p50_ms": percentile(ping_ms, 50),
        "two_pings_p99_ms": percentile(ping_ms, 99),
    }


def timeout_outage_drill(
    client: redis.Redis, url: str, prefix: str, settings: CircuitBreakerSettings
) -> dict[str, Any]:
    """Calls reaching a platform that times out, in the first ``DRILL_SECONDS``, and the most in flight."""
    from platforms.sandbox import SandboxClient, sandbox_credentials

    sandbox = SandboxClient(url)
    sandbox.reset()
    breaker = CircuitBreaker(client, settings, key_prefix=prefix)
    limiter = RateLimiter(client, key_prefix=prefix + "rl:")
    config = AdapterConfig(
        base_url=f"{url}/{PLATFORM}", credentials=sandbox_credentials(PLATFORM), read_timeout=DRILL_READ_TIMEOUT
    )
    adapter = build_adapter(PLATFORM, config)
    backoff = BackoffPolicy.model_validate({"max_retries": 0})
    spans: list[tuple[float, float]] = []
    outcomes: dict[str, int] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(DRILL_THREADS + 1)
    stop_at = 0.0

    class Timed:
        def fetch_metrics(self, post_id: str) -> Any:
            start = time.monotonic()
            try:
                return adapter.fetch_metrics(post_id)
            finally:
                with lock:
                    spans.append((start, time.monotonic()))

    def worker() -> None:
        barrier.wait()
        while time.monotonic() < stop_at:
            outcome = fetch(
                platform=PLATFORM,
                post_id=POST_ID,
                adapter=Timed(),
                breaker=breaker,
                limiter=limiter,
                backoff=backoff,
                quota_rps=QUOTA_RPS,
                budget_seconds=max(0.1, stop_at - time.monotonic()),
            )
            with lock:
                key = outcome.error_code or "ok"
                outcomes[key] = outcomes.get(key, 0) + 1
            if outcome.error_code == "circuit_open":
                time.sleep(0.01)

    # Every answer comes four read timeouts late: each call ends in a timeout.
    sandbox.set_fault(PLATFORM, latency_ms=DRILL_READ_TIMEOUT * 4000)
    pool = [threading.Thread(target=worker) for _ in range(DRILL_THREADS)]
    for t in pool:
        t.start()
    stop_at = time.monotonic() + DRILL_SECONDS
    barrier.wait()
    for t in pool:
        t.join()
    reached = sandbox.requests_served(PLATFORM)
    sandbox.reset()  # lets go of the held requests
    sandbox.close()
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    current = most = 0
    for _, step in events:
        current += step
        most = max(most, current)
    return {
        "max_in_flight_setting": settings.max_in_flight,
        "failure_threshold": settings.failure_threshold,
        "bound_threshold_plus_cap_minus_1": settings.failure_threshold + settings.max_in_flight - 1,
        "calls_reaching_platform": reached,
        "most_in_flight_at_once": most,
        "outcomes": outcomes,
    }


def merge_counts(counters: Iterable[dict[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for counter in counters:
        for key, n in counter.items():
            merged[key] = merged.get(key, 0) + n
    return merged


def median(runs: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 3)


def main() -> None:
    from platforms.sandbox import SandboxClient, sandbox_credentials

    bench_started = time.monotonic()
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5, socket_timeout=2)
    client.ping()
    prefix = f"bench:{uuid.uuid4().hex}:"
    breaker = CircuitBreaker(client, CircuitBreakerSettings.model_validate({}), key_prefix=prefix + "cb:")
    limiter = RateLimiter(client, key_prefix=prefix + "rl:")
    proc, url = start_sandbox()
    try:
        sandbox = SandboxClient(url)
        sandbox.reset()
        sandbox.set_post(PLATFORM, POST_ID, views=1000, clicks=50, conversions=5)
        config = AdapterConfig(base_url=f"{url}/{PLATFORM}", credentials=sandbox_credentials(PLATFORM))
        adapter = build_adapter(PLATFORM, config)
        cells = []
        for latency in LATENCIES_MS:
            if latency:
                sandbox.set_fault(PLATFORM, latency_ms=latency)
            else:
                sandbox.clear_fault(PLATFORM)
            for threads in THREADS:
                runs = [throughput_run(threads, breaker, limiter, adapter) for _ in range(REPEATS)]
                cell = {
                    "latency_ms": latency,
                    "threads": threads,
                    "fetches_per_s": median(runs, "fetches_per_s"),
                    "runs_fetches_per_s": [round(r["fetches_per_s"], 1) for r in runs],
                    "errors": merge_counts(r["errors"] for r in runs),
                }
                log(f"latency={latency}ms threads={threads}: {cell['fetches_per_s']} fetches/s")
                cells.append(cell)
        sandbox.clear_fault(PLATFORM)
        bare_runs = [throughput_run(1, breaker, limiter, adapter, bare=True) for _ in range(REPEATS)]
        baseline = {"latency_ms": 0, "threads": 1, "fetches_per_s": median(bare_runs, "fetches_per_s")}
        log(f"adapter alone, latency=0ms threads=1: {baseline['fetches_per_s']} calls/s")
        overhead_runs = [breaker_overhead(breaker, client) for _ in range(REPEATS)]
        overhead = {key: median(overhead_runs, key) for key in overhead_runs[0]}
        overhead["calls_per_run"] = BREAKER_CALLS
        log(f"breaker overhead: {overhead}")
        defaults = CircuitBreakerSettings.model_validate({})
        drill = {
            "threads": DRILL_THREADS,
            "seconds": DRILL_SECONDS,
            "read_timeout_seconds": DRILL_READ_TIMEOUT,
            "sandbox_latency_ms": DRILL_READ_TIMEOUT * 4000,
            "with_cap": timeout_outage_drill(client, url, prefix + "drill:", defaults),
            "without_cap_reference": timeout_outage_drill(
                client, url, prefix + "drill-uncapped:", defaults.model_copy(update={"max_in_flight": 1_000_000})
            ),
        }
        log(f"timeout outage drill: {drill}")
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)

    result = {
        "benchmark": "platform_fetch",
        "sandbox": "subprocess (HTTP on 127.0.0.1)",
        "redis": REDIS_URL,
        "platform": PLATFORM,
        "repeats": REPEATS,
        "statistic": "median of repeats",
        "run_seconds_per_cell": RUN_SECONDS,
        "throughput": cells,
        "adapter_only_baseline": baseline,
        "breaker_overhead_per_call": overhead,
        "timeout_outage_drill": drill,
        "host": {"python": host_platform.python_version(), "cpus": os.cpu_count()},
        "total_seconds": round(time.monotonic() - bench_started, 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve-sandbox"]:
        serve_sandbox()
    else:
        main()

"""The fetcher's flow with fake adapters: breaker and limiter gates, retries, budget, outcome shape.

Time is faked (a clock that ``sleep`` advances) except in the tests that use the real Redis breaker.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator

import pytest
import redis

from platforms.adapters.base import PlatformMetrics
from platforms.breaker import CLOSED, HALF_OPEN, IN_FLIGHT_FULL, OPEN, Admission, CircuitBreaker
from platforms.errors import AuthError, FetchError, NotFound, PlatformError, RateLimited, Timeout
from platforms.fetcher import FetchOutcome, fetch
from reconcile_project.config import BackoffPolicy
from tests.platforms.breaker_helpers import (
    REDIS_URL,
    advance,
    breaker_settings,
    delete_prefix,
    redis_client,
    unique_prefix,
)

P = "reddit"
METRICS = PlatformMetrics(views=1000, clicks=50, conversions=5, raw={"view_count": 1000})


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class ScriptedAdapter:
    """Answers with the next item of ``script``: an error to raise or metrics to return."""

    def __init__(self, *script: PlatformMetrics | Exception, clock: FakeClock | None = None, latency: float = 0.0):
        self.script = list(script)
        self.calls = 0
        self.clock = clock
        self.latency = latency

    def fetch_metrics(self, post_id: str) -> PlatformMetrics:
        self.calls += 1
        if self.clock is not None:
            self.clock.now += self.latency
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, Exception):
            raise item
        return item


class FakeBreaker:
    def __init__(self, *admissions: Admission):
        self.admissions = list(admissions) or [Admission(admitted=True, state=CLOSED)]
        self.events: list[tuple[str, bool]] = []
        self.durations: list[float | None] = []

    def before_call(self, platform: str) -> Admission:
        return self.admissions.pop(0) if len(self.admissions) > 1 else self.admissions[0]

    def record_success(self, platform: str, admission: Admission, *, duration_seconds: float | None = None) -> None:
        self.events.append(("success", admission.probe))
        self.durations.append(duration_seconds)

    def record_failure(self, platform: str, admission: Admission) -> None:
        self.events.append(("failure", admission.probe))

    def release(self, platform: str, admission: Admission) -> None:
        self.events.append(("release", admission.probe))


class FakeLimiter:
    def __init__(self, *waits: float):
        self.waits = list(waits) or [0.0]
        self.calls = 0

    def acquire(self, platform: str, rate_per_sec: float, burst: float) -> float:
        self.calls += 1
        return self.waits.pop(0) if len(self.waits) > 1 else self.waits[0]


def policy(**kw: float) -> BackoffPolicy:
    values = {"max_retries": 2, "base_delay_seconds": 0.2, "max_delay_seconds": 5.0, "jitter_pct": 0.0}
    values.update(kw)
    return BackoffPolicy.model_validate(values)


def run(adapter: ScriptedAdapter, clock: FakeClock, **kw: object) -> FetchOutcome:
    args: dict[str, object] = {
        "platform": P,
        "post_id": "abc",
        "adapter": adapter,
        "breaker": FakeBreaker(),
        "limiter": FakeLimiter(),
        "backoff": policy(),
        "quota_rps": 50.0,
        "budget_seconds": 30.0,
        "rng": random.Random(1),
        "sleep": clock.sleep,
        "clock": clock,
    }
    args.update(kw)
    return fetch(**args)  # type: ignore[arg-type]


def test_success_returns_metrics_and_records_success() -> None:
    clock, breaker = FakeClock(), FakeBreaker()
    adapter = ScriptedAdapter(METRICS, clock=clock, latency=0.25)
    outcome = run(adapter, clock, breaker=breaker)
    assert outcome == FetchOutcome(
        metrics=METRICS,
        missing_fields=[],
        error_code=None,
        error_message=None,
        rate_limited=False,
        retry_after_seconds=None,
        attempts=1,
        duration_seconds=0.25,
        raw={"view_count": 1000},
    )
    assert outcome.ok and outcome.reached_platform
    assert breaker.events == [("success", False)]


def test_partial_metrics_list_the_missing_fields() -> None:
    clock = FakeClock()
    outcome = run(ScriptedAdapter(PlatformMetrics(views=10, clicks=None, conversions=None)), clock)
    assert outcome.ok and outcome.missing_fields == ["clicks", "conversions"]


def test_open_circuit_fails_fast_without_calling_the_adapter() -> None:
    clock = FakeClock()
    adapter = ScriptedAdapter(METRICS)
    limiter = FakeLimiter()
    breaker = FakeBreaker(Admission(admitted=False, state=OPEN, retry_after_seconds=42.0))
    outcome = run(adapter, clock, breaker=breaker, limiter=limiter)
    assert outcome.error_code == "circuit_open"
    assert outcome.retry_after_seconds == 42.0
    assert outcome.metrics is None and outcome.missing_fields == ["views", "clicks", "conversions"]
    assert outcome.attempts == 0 and not outcome.reached_platform
    assert adapter.calls == 0 and limiter.calls == 0 and breaker.events == []


def test_no_token_within_the_budget_is_rate_limited_and_gives_the_probe_back() -> None:
    clock = FakeClock()
    adapter = ScriptedAdapter(METRICS)
    breaker = FakeBreaker(Admission(admitted=True, state=HALF_OPEN, probe=True))
    outcome = run(adapter, clock, breaker=breaker, limiter=FakeLimiter(40.0), budget_seconds=30.0)
    assert outcome.error_code == "rate_limited" and outcome.rate_limited
    assert outcome.retry_after_seconds == 40.0
    assert adapter.calls == 0 and clock.sleeps == []
    assert breaker.events == [("release", True)]


def test_the_limiter_wait_is_slept_when_it_fits_the_budget() -> None:
    clock = FakeClock()
    limiter = FakeLimiter(0.5, 0.0)
    outcome = run(ScriptedAdapter(METRICS), clock, limiter=limiter, rng=random.Random(0))
    assert outcome.ok and limiter.calls == 2
    assert len(clock.sleeps) == 1 and 0.5 <= clock.sleeps[0] <= 0.6


def test_after_waiting_for_a_token_the_breaker_is_asked_again() -> None:
    clock = FakeClock()
    adapter = ScriptedAdapter(METRICS)
    breaker = FakeBreaker(
        Admission(admitted=True, state=CLOSED),
        Admission(admitted=False, state=OPEN, retry_after_seconds=9.0),
    )
    outcome = run(adapter, clock, breaker=breaker, limiter=FakeLimiter(0.5, 0.0))
    assert outcome.error_code == "circuit_open" and outcome.retry_after_seconds == 9.0
    assert adapter.calls == 0


def test_a_probe_waiting_for_a_token_keeps_its_admission() -> None:
    clock = FakeClock()
    breaker = FakeBreaker(
        Admission(admitted=True, state=HALF_OPEN, probe=True),
        Admission(admitted=False, state=HALF_OPEN, retry_after_seconds=9.0),
    )
    outcome = run(ScriptedAdapter(METRICS), clock, breaker=breaker, limiter=FakeLimiter(0.5, 0.0))
    assert outcome.ok and breaker.events == [("success", True)]


def test_transient_errors_are_retried_with_exponential_backoff() -> None:
    clock, breaker = FakeClock(), FakeBreaker()
    adapter = ScriptedAdapter(FetchError("503", status=503), Timeout("read"), METRICS)
    outcome = run(adapter, clock, breaker=breaker, backoff=policy(max_retries=2, base_delay_seconds=0.2))
    assert outcome.ok and outcome.attempts == 3
    assert clock.sleeps == [0.2, 0.4]
    assert breaker.events == [("failure", False), ("failure", False), ("success", False)]


def test_retries_stop_after_max_retries_with_the_last_error() -> None:
    clock = FakeClock()
    adapter = ScriptedAdapter(FetchError("first"), Timeout("last"))
    outcome = run(adapter, clock, backoff=policy(max_retries=1))
    assert outcome.error_code == "timeout" and outcome.error_message == "last"
    assert outcome.attempts == 2 and adapter.calls == 2
    assert not outcome.rate_limited and outcome.retry_after_seconds is None


def test_backoff_is_capped_at_max_delay() -> None:
    clock = FakeClock()
    adapter = ScriptedAdapter(FetchError("down"))
    run(adapter, clock, backoff=policy(max_retries=4, base_delay_seconds=1.0, max_delay_seconds=3.0))
    assert clock.sleeps == [1.0, 2.0, 3.0, 3.0]


def test_jitter_stays_within_its_percentage() -> None:
    clock = FakeClock()
    adapter = ScriptedAdapter(FetchError("down"))
    run(adapter, clock, backoff=policy(max_retries=30, base_delay_seconds=1.0, max_delay_seconds=1.0, jitter_pct=0.25))
    assert len(clock.sleeps) == 30
    assert all(0.75 <= s <= 1.25 for s in clock.sleeps)
    assert len(set(clock.sleeps)) > 1


def test_no_sleep_that_would_pass_the_budget() -> None:
    clock = FakeClock()
    adapter = ScriptedAdapter(FetchError("down"), clock=clock, latency=1.0)
    outcome = run(adapter, clock, backoff=policy(max_retries=10, base_delay_seconds=1.0), budget_seconds=5.0)
    # call (t=1), sleep 1, call (t=3), next sleep 2 would end at 5.0 exactly: allowed; call (t=6) > budget.
    assert clock.sleeps == [1.0, 2.0]
    assert outcome.attempts == 3 and outcome.error_code == "fetch_error"
    assert outcome.duration_seconds == 6.0


def test_rate_limited_answers_honour_retry_after_and_are_not_failures() -> None:
    clock, breaker = FakeClock(), FakeBreaker()
    adapter = ScriptedAdapter(RateLimited("429", retry_after=2.5, status=429), METRICS)
    outcome = run(adapter, clock, breaker=breaker)
    assert outcome.ok and clock.sleeps == [2.5]
    assert breaker.events == [("release", False), ("success", False)]


def test_a_retry_after_beyond_the_budget_ends_rate_limited() -> None:
    clock = FakeClock()
    adapter = ScriptedAdapter(RateLimited("429", retry_after=60.0, status=429))
    outcome = run(adapter, clock, budget_seconds=10.0)
    assert outcome.error_code == "rate_limited" and outcome.rate_limited
    assert outcome.retry_after_seconds == 60.0 and outcome.attempts == 1
    assert clock.sleeps == []
    assert outcome.raw == {"error": "RateLimited", "status": 429}


@pytest.mark.parametrize(
    ("error", "code", "breaker_event"),
    [
        (NotFound("gone", status=404), "not_found", "release"),
        (AuthError("bad token", status=401), "auth_error", "failure"),
    ],
)
def test_permanent_errors_are_not_retried(error: PlatformError, code: str, breaker_event: str) -> None:
    clock, breaker = FakeClock(), FakeBreaker()
    adapter = ScriptedAdapter(error, METRICS)
    outcome = run(adapter, clock, breaker=breaker)
    assert outcome.error_code == code and outcome.attempts == 1 and clock.sleeps == []
    assert breaker.events == [(breaker_event, False)]


def test_an_unexpected_adapter_exception_is_a_fetch_error_and_a_failure() -> None:
    clock, breaker = FakeClock(), FakeBreaker()
    adapter = ScriptedAdapter(KeyError("views"), METRICS)
    outcome = run(adapter, clock, breaker=breaker)
    assert outcome.error_code == "fetch_error" and "KeyError" in (outcome.error_message or "")
    assert outcome.attempts == 1 and breaker.events == [("failure", False)]


def test_a_retry_rejected_by_the_breaker_stops_with_the_platform_error() -> None:
    clock = FakeClock()
    breaker = FakeBreaker(
        Admission(admitted=True, state=HALF_OPEN, probe=True),
        Admission(admitted=False, state=OPEN, retry_after_seconds=60.0),
    )
    adapter = ScriptedAdapter(FetchError("still down"), METRICS)
    outcome = run(adapter, clock, breaker=breaker)
    assert outcome.error_code == "fetch_error" and outcome.attempts == 1 and adapter.calls == 1
    assert breaker.events == [("failure", True)]


def test_a_call_refused_for_want_of_a_slot_waits_for_one() -> None:
    clock, adapter = FakeClock(), ScriptedAdapter(METRICS)
    full = Admission(admitted=False, state=CLOSED, retry_after_seconds=10.0, reason=IN_FLIGHT_FULL)
    breaker = FakeBreaker(full, full, Admission(admitted=True, state=CLOSED))

    outcome = run(adapter, clock, breaker=breaker)

    assert outcome.ok and adapter.calls == 1 and len(clock.sleeps) == 2
    assert all(0.025 <= s <= 0.075 for s in clock.sleeps)


def test_the_call_duration_is_reported_with_the_success() -> None:
    clock, breaker = FakeClock(), FakeBreaker()
    run(ScriptedAdapter(METRICS, clock=clock, latency=2.5), clock, breaker=breaker)
    assert breaker.durations == [2.5]


def test_after_a_token_wait_the_old_slot_goes_back_before_asking_again() -> None:
    clock, breaker = FakeClock(), FakeBreaker()
    outcome = run(ScriptedAdapter(METRICS), clock, breaker=breaker, limiter=FakeLimiter(0.5, 0.0))
    assert outcome.ok and breaker.events == [("release", False), ("success", False)]


def test_every_fetch_logs_its_performance(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    with caplog.at_level(logging.INFO, logger="app.performance"):
        run(ScriptedAdapter(METRICS, clock=clock, latency=0.125), clock)
        run(ScriptedAdapter(NotFound("gone")), clock)
    records = [r for r in caplog.records if r.name == "app.performance"]
    assert [r.getMessage() for r in records] == ["Performance: platform_fetch"] * 2
    first = records[0]
    assert (first.operation, first.duration_ms, first.platform, first.outcome) == (  # type: ignore[attr-defined]
        "platform_fetch",
        125.0,
        P,
        "ok",
    )
    assert records[1].outcome == "not_found"  # type: ignore[attr-defined]


# --- with the real Redis breaker ------------------------------------------------------------------


@pytest.fixture
def real_breaker() -> Iterator[CircuitBreaker]:
    client = redis_client()
    try:
        client.ping()
    except redis.ConnectionError as exc:
        # A missing Redis is a broken test environment, not a reason to pass quietly (see conftest).
        pytest.fail(f"these tests need Redis at TEST_REDIS_URL/REDIS_URL ({REDIS_URL}): {exc}", pytrace=False)
    prefix = unique_prefix("fetch")
    yield CircuitBreaker(
        client, breaker_settings(threshold=3, cooldown=30, probes=1, slow_call_seconds=5.0), key_prefix=prefix
    )
    delete_prefix(client, prefix)


def test_failing_fetches_open_the_real_breaker_and_then_fail_fast(real_breaker: CircuitBreaker) -> None:
    clock = FakeClock()
    adapter = ScriptedAdapter(FetchError("503", status=503))
    outcomes = [run(adapter, clock, breaker=real_breaker, backoff=policy(max_retries=0)) for _ in range(5)]
    assert [o.error_code for o in outcomes] == ["fetch_error"] * 3 + ["circuit_open"] * 2
    assert adapter.calls == 3
    assert outcomes[-1].retry_after_seconds is not None and 0 < outcomes[-1].retry_after_seconds <= 30


def test_a_probe_is_one_call_and_its_failure_ends_the_fetch(real_breaker: CircuitBreaker) -> None:
    clock = FakeClock()
    failing = ScriptedAdapter(FetchError("503", status=503))
    for _ in range(3):
        run(failing, clock, breaker=real_breaker, backoff=policy(max_retries=0))
    advance(redis_client(), real_breaker, P, 30)  # the cooldown passes
    probe_adapter = ScriptedAdapter(FetchError("still 503", status=503), METRICS)
    outcome = run(probe_adapter, clock, breaker=real_breaker, backoff=policy(max_retries=3))
    assert outcome.error_code == "fetch_error" and probe_adapter.calls == 1
    assert real_breaker.state(P) == OPEN
    advance(redis_client(), real_breaker, P, 30)
    outcome = run(ScriptedAdapter(METRICS), clock, breaker=real_breaker)
    assert outcome.ok and real_breaker.state(P) == CLOSED


def test_rate_limited_answers_do_not_open_the_real_breaker(real_breaker: CircuitBreaker) -> None:
    clock = FakeClock()
    adapter = ScriptedAdapter(RateLimited("429", retry_after=100.0, status=429))
    for _ in range(5):
        assert run(adapter, clock, breaker=real_breaker).error_code == "rate_limited"
    assert real_breaker.snapshot([P])[P]["failures"] == 0 and real_breaker.state(P) == CLOSED


def test_slow_successes_open_the_real_breaker_but_keep_their_data(real_breaker: CircuitBreaker) -> None:
    clock = FakeClock()
    slow = ScriptedAdapter(METRICS, clock=clock, latency=6.0)  # slower than slow_call_seconds (5)
    outcomes = [run(slow, clock, breaker=real_breaker) for _ in range(4)]
    assert [o.ok for o in outcomes] == [True, True, True, False]  # the data of a slow answer is still good
    assert outcomes[-1].error_code == "circuit_open" and slow.calls == 3


def test_a_full_set_of_in_flight_slots_defers_without_a_call(real_breaker: CircuitBreaker) -> None:
    # Eight calls out (the cap) and none coming back within the budget: the ninth never reaches the platform.
    capped = CircuitBreaker(
        redis_client(), breaker_settings(threshold=3, max_in_flight=8), key_prefix=real_breaker.key_prefix
    )
    held = [capped.before_call(P) for _ in range(8)]
    clock = FakeClock()
    adapter = ScriptedAdapter(METRICS)

    outcome = run(adapter, clock, breaker=capped, budget_seconds=1.0)

    assert all(a.admitted for a in held)
    assert outcome.error_code == "rate_limited" and outcome.rate_limited and not outcome.reached_platform
    assert adapter.calls == 0 and sum(clock.sleeps) <= 1.0 and len(clock.sleeps) > 1
    assert outcome.retry_after_seconds is not None and outcome.retry_after_seconds > 0
    capped.record_failure(P, held[0])
    assert run(adapter, clock, breaker=capped).ok  # a slot came back


def test_missing_collaborators_come_from_the_process_wide_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    import platforms.breaker
    import platforms.ratelimit
    import platforms.registry

    adapter, breaker, limiter = ScriptedAdapter(METRICS), FakeBreaker(), FakeLimiter()
    monkeypatch.setattr(platforms.registry, "get_adapter", lambda slug: adapter if slug == P else None)
    monkeypatch.setattr(platforms.breaker, "get_breaker", lambda: breaker)
    monkeypatch.setattr(platforms.ratelimit, "get_limiter", lambda: limiter)
    outcome = fetch(platform=P, post_id="abc", backoff=policy(), quota_rps=5.0)
    assert outcome.ok and adapter.calls == 1 and limiter.calls == 1 and breaker.events == [("success", False)]

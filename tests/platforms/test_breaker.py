"""The Redis circuit breaker: transitions, cross-thread atomicity, logging, and Redis going away.

Run without Django: ``.venv/bin/pytest -p no:django tests/platforms/test_breaker.py``. Each test uses
its own key prefix on the local Redis and deletes its keys afterwards.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from platforms.breaker import CLOSED, HALF_OPEN, IN_FLIGHT_FULL, OPEN, UNKNOWN, Admission, CircuitBreaker
from tests.platforms.breaker_helpers import (
    advance,
    breaker_settings,
    delete_prefix,
    private_redis,
    redis_client,
    unique_prefix,
)
from tests.processes import free_port

P = "reddit"


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    p = unique_prefix("cb")
    yield p
    delete_prefix(client, p)


COOLDOWN = 30.0


def make(
    client: redis.Redis, prefix: str, threshold: int = 3, cooldown: float = COOLDOWN, probes: int = 2, **kw: float
) -> CircuitBreaker:
    return CircuitBreaker(client, breaker_settings(threshold, cooldown, probes, **kw), key_prefix=prefix)  # type: ignore[arg-type]


def fail(breaker: CircuitBreaker, n: int, platform: str = P) -> None:
    for _ in range(n):
        breaker.record_failure(platform, breaker.before_call(platform))


def open_then_cool(breaker: CircuitBreaker) -> None:
    fail(breaker, breaker.settings.failure_threshold)
    cool(breaker)


def cool(breaker: CircuitBreaker, platform: str = P) -> None:
    """Let the cooldown (and the probe timeout) pass, by moving the breaker's stored times back."""
    advance(redis_client(), breaker, platform, breaker.settings.open_cooldown_seconds + 0.001)


def admission_of(a: Admission) -> tuple[bool, str, bool, float | None]:
    return a.admitted, a.state, a.probe, a.retry_after_seconds


def transition_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "platforms.breaker" and r.getMessage().startswith("circuit_")
    ]


def test_unknown_platform_starts_closed_and_admits(client: redis.Redis, prefix: str) -> None:
    breaker = make(client, prefix)
    assert breaker.state(P) == CLOSED
    assert admission_of(breaker.before_call(P)) == (True, CLOSED, False, None)


def test_one_failure_short_of_threshold_stays_closed(client: redis.Redis, prefix: str) -> None:
    breaker = make(client, prefix, threshold=3)
    fail(breaker, 2)
    assert breaker.state(P) == CLOSED
    assert breaker.snapshot([P])[P]["failures"] == 2
    assert breaker.before_call(P).admitted


def test_opens_at_exactly_the_threshold(client: redis.Redis, prefix: str) -> None:
    breaker = make(client, prefix, threshold=3)
    fail(breaker, 3)
    assert breaker.state(P) == OPEN
    admission = breaker.before_call(P)
    assert not admission.admitted and admission.state == OPEN


def test_success_in_closed_resets_the_consecutive_count(client: redis.Redis, prefix: str) -> None:
    breaker = make(client, prefix, threshold=3)
    fail(breaker, 2)
    breaker.record_success(P, breaker.before_call(P))
    fail(breaker, 2)
    assert breaker.state(P) == CLOSED
    assert breaker.snapshot([P])[P]["failures"] == 2


def test_open_rejects_with_the_remaining_cooldown(client: redis.Redis, prefix: str) -> None:
    breaker = make(client, prefix, threshold=1, cooldown=30)
    fail(breaker, 1)
    admission = breaker.before_call(P)
    assert not admission.admitted
    assert admission.retry_after_seconds is not None and 29 < admission.retry_after_seconds <= 30


def test_platforms_have_independent_breakers(client: redis.Redis, prefix: str) -> None:
    breaker = make(client, prefix, threshold=1)
    fail(breaker, 1, "reddit")
    assert breaker.state("reddit") == OPEN
    assert breaker.before_call("youtube").admitted


def test_after_cooldown_the_next_call_is_a_half_open_probe(client: redis.Redis, prefix: str) -> None:
    breaker = make(client, prefix, threshold=1)
    fail(breaker, 1)
    assert not breaker.before_call(P).admitted
    advance(client, breaker, P, COOLDOWN - 0.5)
    assert not breaker.before_call(P).admitted  # half a second of the cooldown left
    advance(client, breaker, P, 0.501)
    admission = breaker.before_call(P)
    assert admission_of(admission) == (True, HALF_OPEN, True, None)
    assert breaker.state(P) == HALF_OPEN


def test_half_open_admits_at_most_probe_count_across_threads(client: redis.Redis, prefix: str) -> None:
    breaker = make(client, prefix, threshold=1, probes=3)
    open_then_cool(breaker)
    start = threading.Barrier(40)
    results: list[Admission] = []
    lock = threading.Lock()

    def call() -> None:
        start.wait()
        for _ in range(5):
            admission = breaker.before_call(P)
            with lock:
                results.append(admission)

    threads = [threading.Thread(target=call) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(a.admitted for a in results) == 3
    assert all(a.probe for a in results if a.admitted)
    assert all(a.state == HALF_OPEN for a in results)
    assert breaker.snapshot([P])[P]["half_open_probes"] == 3


def test_a_probe_success_closes(client: redis.Redis, prefix: str) -> None:
    breaker = make(client, prefix, threshold=2, probes=2)
    open_then_cool(breaker)
    probe = breaker.before_call(P)
    breaker.record_success(P, probe)
    assert breaker.snapshot([P])[P] == {
        "failures": 0,
        "state": CLOSED,
        "opened_at": None,
        "half_open_probes": 0,
        "in_flight": 0,
    }
    assert admission_of(breaker.before_call(P)) == (True, CLOSED, False, None)


def test_a_probe_failure_reopens_with_a_new_opened_at(client: redis.Redis, prefix: str) -> None:
    breaker = make(client, prefix, threshold=1, probes=2)
    fail(breaker, 1)
    cool(breaker)
    cooled_opened = breaker.snapshot([P])[P]["opened_at"]
    probe = breaker.before_call(P)
    breaker.record_failure(P, probe)
    row = breaker.snapshot([P])[P]
    assert row["state"] == OPEN and row["half_open_probes"] == 0
    assert row["opened_at"] >= cooled_opened + COOLDOWN  # a new opening, on Redis's clock
    rejected = breaker.before_call(P)
    assert not rejected.admitted and rejected.retry_after_seconds is not None
    assert rejected.retry_after_seconds > COOLDOWN - 1  # a whole new cooldown


def test_a_late_non_probe_failure_does_not_reopen_half_open(client: redis.Redis, prefix: str) -> None:
    # A call admitted while CLOSED that fails after the breaker went HALF_OPEN says nothing about now.
    breaker = make(client, prefix, threshold=1)
    early = breaker.before_call(P)
    open_then_cool(breaker)
    breaker.before_call(P)
    breaker.record_failure(P, early)
    assert breaker.state(P) == HALF_OPEN


def test_failures_while_open_do_not_extend_the_cooldown(client: redis.Redis, prefix: str) -> None:
    breaker = make(client, prefix, threshold=1, cooldown=30)
    early = breaker.before_call(P)
    fail(breaker, 1)
    opened_at = breaker.snapshot([P])[P]["opened_at"]
    breaker.record_failure(P, early)
    assert breaker.snapshot([P])[P]["opened_at"] == opened_at


def test_a_released_probe_gives_its_slot_back(client: redis.Redis, prefix: str) -> None:
    breaker = make(client, prefix, threshold=1, probes=1)
    open_then_cool(breaker)
    probe = breaker.before_call(P)
    assert not breaker.before_call(P).admitted
    breaker.release(P, probe)
    assert breaker.before_call(P).probe


def test_probes_that_never_report_free_their_slots_after_the_probe_timeout(client: redis.Redis, prefix: str) -> None:
    breaker = CircuitBreaker(client, breaker_settings(threshold=1, probes=1), prefix, probe_timeout_seconds=COOLDOWN)
    open_then_cool(breaker)
    assert breaker.before_call(P).probe
    rejected = breaker.before_call(P)
    assert not rejected.admitted and rejected.retry_after_seconds is not None
    assert rejected.retry_after_seconds <= COOLDOWN
    cool(breaker)  # the probe timeout passes without a word from the probe
    assert breaker.before_call(P).probe


# --- calls in flight and slow calls ----------------------------------------------------------------------


def test_at_most_max_in_flight_calls_are_admitted_until_one_returns(client: redis.Redis, prefix: str) -> None:
    breaker = make(client, prefix, max_in_flight=2)
    first, second = breaker.before_call(P), breaker.before_call(P)

    refused = breaker.before_call(P)

    assert first.admitted and second.admitted and first.call_id != second.call_id
    assert not refused.admitted and refused.state == CLOSED and refused.reason == IN_FLIGHT_FULL
    assert refused.retry_after_seconds is not None and 0 < refused.retry_after_seconds <= 60  # the lease
    assert breaker.snapshot([P])[P]["in_flight"] == 2
    breaker.record_success(P, first)
    third = breaker.before_call(P)
    assert third.admitted
    breaker.record_failure(P, second)
    breaker.release(P, third)
    assert breaker.snapshot([P])[P]["in_flight"] == 0


def test_in_flight_slots_are_shared_by_every_breaker_on_the_prefix(client: redis.Redis, prefix: str) -> None:
    # Two breakers stand for two worker processes.
    one, other = make(client, prefix, max_in_flight=1), make(client, prefix, max_in_flight=1)
    held = one.before_call(P)

    assert held.admitted and not other.before_call(P).admitted
    assert other.before_call("youtube").admitted  # per platform


def test_a_killed_workers_slot_frees_itself_when_its_lease_runs_out(client: redis.Redis, prefix: str) -> None:
    breaker = make(client, prefix, max_in_flight=1, lease=60)
    assert breaker.before_call(P).admitted  # and its worker dies: no record_*, no release

    assert not breaker.before_call(P).admitted
    advance(client, breaker, P, 59)
    assert not breaker.before_call(P).admitted
    advance(client, breaker, P, 1.001)
    assert breaker.before_call(P).admitted


def test_half_open_probes_need_a_slot_too(client: redis.Redis, prefix: str) -> None:
    breaker = make(client, prefix, threshold=1, probes=2, max_in_flight=1)
    straggler = breaker.before_call(P)  # admitted while CLOSED, still out
    fail(breaker, 1)
    cool(breaker)

    refused = breaker.before_call(P)

    assert not refused.admitted and refused.reason == IN_FLIGHT_FULL and refused.state == HALF_OPEN
    assert breaker.snapshot([P])[P]["half_open_probes"] == 0  # the probe slot was not taken
    breaker.record_failure(P, straggler)  # late, from CLOSED: does not re-open
    assert breaker.before_call(P).probe


def test_a_slow_success_counts_as_a_failure(client: redis.Redis, prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    breaker = make(client, prefix, threshold=3, slow_call_seconds=2.0)
    breaker.record_success(P, breaker.before_call(P), duration_seconds=1.9)
    with caplog.at_level(logging.WARNING, logger="platforms.breaker"):
        for _ in range(3):
            breaker.record_success(P, breaker.before_call(P), duration_seconds=2.5)

    assert breaker.state(P) == OPEN
    assert breaker.snapshot([P])[P]["in_flight"] == 0
    assert [r.getMessage() for r in caplog.records].count("slow_call") == 3


def test_a_fast_success_still_resets_the_count_and_a_slow_probe_reopens(client: redis.Redis, prefix: str) -> None:
    breaker = make(client, prefix, threshold=2, slow_call_seconds=2.0)
    breaker.record_success(P, breaker.before_call(P), duration_seconds=3.0)
    breaker.record_success(P, breaker.before_call(P), duration_seconds=0.1)
    assert breaker.snapshot([P])[P]["failures"] == 0
    fail(breaker, 2)
    cool(breaker)

    breaker.record_success(P, breaker.before_call(P), duration_seconds=3.0)

    assert breaker.state(P) == OPEN


def test_snapshot_has_the_runbook_shape_for_every_platform_seen(client: redis.Redis, prefix: str) -> None:
    breaker = make(client, prefix, threshold=2)
    breaker.record_success("reddit", breaker.before_call("reddit"))
    fail(breaker, 1, "instagram")
    fail(breaker, 2, "youtube")
    snap = breaker.snapshot()
    assert set(snap) == {"reddit", "instagram", "youtube"}
    closed = {"state": "CLOSED", "opened_at": None, "half_open_probes": 0, "in_flight": 0}
    assert snap["reddit"] == {"failures": 0, **closed}
    assert snap["instagram"] == {"failures": 1, **closed}
    assert snap["youtube"]["state"] == "OPEN" and snap["youtube"]["failures"] == 2
    assert isinstance(snap["youtube"]["opened_at"], float)
    assert breaker.snapshot(["tiktok"]) == {"tiktok": {"failures": 0, **closed}}


def test_opened_at_is_redis_server_time_not_the_worker_clock(
    client: redis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "time", lambda: 0.0)
    breaker = make(client, prefix, threshold=1)
    fail(breaker, 1)
    seconds, micros = client.time()
    assert abs(breaker.snapshot([P])[P]["opened_at"] - (seconds + micros / 1e6)) < 2


def test_reset_closes_and_clears(client: redis.Redis, prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    breaker = make(client, prefix, threshold=1)
    fail(breaker, 1)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="platforms.breaker"):
        breaker.reset(P)
        breaker.reset(P)
    assert breaker.snapshot([P])[P] == {
        "failures": 0,
        "state": CLOSED,
        "opened_at": None,
        "half_open_probes": 0,
        "in_flight": 0,
    }
    assert transition_messages(caplog) == ["circuit_closed"]


def test_each_transition_is_logged_exactly_once_under_concurrency(
    client: redis.Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    breaker = make(client, prefix, threshold=3, probes=3)
    hooked: list[tuple[str, str, str]] = []
    breaker.transition_hooks.append(lambda *t: hooked.append(t))

    def together(fn: Callable[[], object], n: int = 20) -> None:
        barrier = threading.Barrier(n)

        def run() -> None:
            barrier.wait()
            fn()

        threads = [threading.Thread(target=run) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    with caplog.at_level(logging.INFO, logger="platforms.breaker"):
        admissions = [breaker.before_call(P) for _ in range(20)]
        together(lambda: breaker.record_failure(P, admissions.pop()))
        cool(breaker)
        probes: list[Admission] = []
        together(lambda: probes.append(breaker.before_call(P)))
        admitted = [a for a in probes if a.admitted]
        together(lambda: breaker.record_success(P, admitted.pop()), n=len(admitted))

    assert transition_messages(caplog) == ["circuit_opened", "circuit_half_open", "circuit_closed"]
    assert all(getattr(r, "platform", None) == P for r in caplog.records if r.getMessage().startswith("circuit_"))
    assert hooked == [(P, CLOSED, OPEN), (P, OPEN, HALF_OPEN), (P, HALF_OPEN, CLOSED)]


def test_probe_failure_logs_reopen_once(client: redis.Redis, prefix: str, caplog: pytest.LogCaptureFixture) -> None:
    breaker = make(client, prefix, threshold=1, probes=2)
    open_then_cool(breaker)
    probes = [breaker.before_call(P), breaker.before_call(P)]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="platforms.breaker"):
        for probe in probes:
            breaker.record_failure(P, probe)
    assert transition_messages(caplog) == ["circuit_opened"]
    assert caplog.records[0].from_state == HALF_OPEN  # type: ignore[attr-defined]


def test_a_failing_transition_hook_does_not_break_the_caller(client: redis.Redis, prefix: str) -> None:
    breaker = make(client, prefix, threshold=1)

    def boom(*_: str) -> None:
        raise RuntimeError("metrics backend down")

    breaker.transition_hooks.append(boom)
    fail(breaker, 1)
    assert breaker.state(P) == OPEN


def test_redis_down_admits_calls_and_warns_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    with private_redis() as (proc, url):
        client = redis.Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.2)
        breaker = CircuitBreaker(client, breaker_settings(threshold=1), key_prefix="cb:")
        fail(breaker, 1)
        assert not breaker.before_call(P).admitted
        proc.kill()
        proc.wait()
        with caplog.at_level(logging.WARNING, logger="platforms.breaker"):
            admissions = [breaker.before_call(P) for _ in range(20)]
            for a in admissions:
                breaker.record_failure(P, a)
                breaker.record_success(P, a)
            assert breaker.state(P) == UNKNOWN
            assert breaker.snapshot([P])[P]["state"] == UNKNOWN
            assert breaker.snapshot() == {}
            breaker.reset(P)
    assert all(a == Admission(admitted=True, state=UNKNOWN) for a in admissions)
    warnings = [r for r in caplog.records if "circuit_breaker_redis_unavailable" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING


def test_redis_unavailable_warning_repeats_after_the_interval(caplog: pytest.LogCaptureFixture) -> None:
    client = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.1)
    breaker = CircuitBreaker(client, breaker_settings(), warn_interval_seconds=0.2)
    with caplog.at_level(logging.WARNING, logger="platforms.breaker"):
        for _ in range(3):
            assert breaker.before_call(P).admitted
        time.sleep(0.25)
        assert breaker.before_call(P).admitted
    warnings = [r for r in caplog.records if "circuit_breaker_redis_unavailable" in r.getMessage()]
    assert [w.suppressed for w in warnings] == [0, 2]  # type: ignore[attr-defined]


def test_after_a_redis_failure_redis_is_skipped_briefly_then_used_again() -> None:
    port = free_port()
    with private_redis(port) as (proc, url):
        calls: list[int] = []
        client = redis.Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.2)

        def factory() -> redis.Redis:
            calls.append(1)
            return client

        breaker = CircuitBreaker(factory, breaker_settings(threshold=1), key_prefix="cb:", redis_retry_seconds=0.3)
        proc.kill()
        proc.wait()
        assert breaker.before_call(P).state == UNKNOWN
        assert [breaker.before_call(P).state for _ in range(10)] == [UNKNOWN] * 10
        assert len(calls) == 1  # a hung Redis would have cost a socket timeout on each of those calls
    with private_redis(port):
        time.sleep(0.35)
        fail(breaker, 1)
        assert breaker.state(P) == OPEN


def test_a_client_factory_is_called_per_operation(client: redis.Redis, prefix: str) -> None:
    calls: list[int] = []

    def factory() -> redis.Redis:
        calls.append(1)
        return client

    breaker = CircuitBreaker(factory, breaker_settings(), key_prefix=prefix)
    breaker.record_success(P, breaker.before_call(P))
    assert len(calls) == 2

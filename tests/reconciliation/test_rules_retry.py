"""Retry schedule and re-checks (DESIGN §4 "Retries", "Re-checks"): time and randomness are inputs."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reconcile_project.config import RetryPolicy
from reconciliation.rules import (
    DEFERRAL_REASONS,
    MissingReason,
    ReportState,
    RetryDecision,
    RetryReason,
    Status,
    next_attempt,
    next_recheck,
    report_state,
)

DEFAULTS: dict[str, Any] = {
    "initial_delay_minutes": 30,
    "max_attempts": 5,
    "window_hours": 24,
    "jitter_pct": 0.10,
    "incomplete_retry_minutes": 15,
    "lease_seconds": 120,
    "deferral_default_seconds": 60,
    "deferral_jitter_pct": 0.25,
}
POLICY = RetryPolicy(**DEFAULTS)
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
MISSING = Status.MISSING_PLATFORM_DATA
INCOMPLETE = Status.INCOMPLETE_PLATFORM_DATA


class FixedRandom:
    """Returns a fixed point of the requested interval (0 = low end, 1 = high end) and records calls."""

    def __init__(self, position: float = 0.5) -> None:
        self.position = position
        self.calls: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.calls.append((a, b))
        return a + (b - a) * self.position


NO_JITTER = FixedRandom(0.5)


def decide(
    status: Status | str = MISSING,
    *,
    reason: str | None = MissingReason.FETCH_ERROR,
    attempts_used: int = 1,
    now: datetime = T0,
    retry_after: float | None = None,
    incomplete_attempts: int = 0,
    rng: Any = NO_JITTER,
    policy: RetryPolicy = POLICY,
    interval: float | None = 6,
    window_days: float | None = 7,
    has_conclusive_status: bool = False,
) -> RetryDecision:
    return next_attempt(
        status=status,
        missing_reason=reason,
        attempts_used=attempts_used,
        claimed_at=T0,
        now=now,
        retry_after_seconds=retry_after,
        incomplete_attempts=incomplete_attempts,
        policy=policy,
        rng=rng,
        recheck_interval_hours=interval,
        recheck_window_days=window_days,
        has_conclusive_status=has_conclusive_status,
    )


# --- MISSING after a real failure: exponential backoff within budget and window ----------------------------


@pytest.mark.parametrize(("attempts_used", "minutes"), [(1, 30), (2, 60), (3, 120), (4, 240)])
def test_backoff_doubles_from_the_initial_delay(attempts_used: int, minutes: int) -> None:
    result = decide(attempts_used=attempts_used)
    assert result == RetryDecision(T0 + timedelta(minutes=minutes), False, True, RetryReason.BACKOFF, False)


@pytest.mark.parametrize(
    "reason",
    [MissingReason.NOT_FOUND, MissingReason.FETCH_ERROR, MissingReason.TIMEOUT, MissingReason.AUTH_ERROR, "no_metrics"],
)
def test_every_real_failure_spends_budget(reason: str) -> None:
    result = decide(reason=reason, attempts_used=2)
    assert (result.consumes_budget, result.reason) == (True, RetryReason.BACKOFF)


@pytest.mark.parametrize("reason", [None, "something_new"])
def test_an_unknown_reason_is_treated_as_a_real_failure_so_it_cannot_retry_forever(reason: str | None) -> None:
    assert decide(reason=reason).consumes_budget
    assert decide(reason=reason, attempts_used=5).terminal


@pytest.mark.parametrize(("position", "minutes"), [(0.0, 27), (1.0, 33), (0.75, 31.5)])
def test_jitter_is_plus_or_minus_ten_percent(position: float, minutes: float) -> None:
    rng = FixedRandom(position)
    result = decide(attempts_used=1, rng=rng)
    assert rng.calls == [(-0.10, 0.10)]
    assert result.next_attempt_at is not None
    assert (result.next_attempt_at - T0).total_seconds() == pytest.approx(minutes * 60, abs=1e-3)


@pytest.mark.parametrize("seed", range(50))
def test_seeded_jitter_stays_within_bounds_and_is_reproducible(seed: int) -> None:
    first = decide(attempts_used=3, rng=random.Random(seed))
    again = decide(attempts_used=3, rng=random.Random(seed))
    assert first == again
    assert first.next_attempt_at is not None
    delay = first.next_attempt_at - T0
    assert timedelta(minutes=108) <= delay <= timedelta(minutes=132)  # 120 min ± 10 %


def test_budget_exhausted_after_max_attempts_raises_missing_alert() -> None:
    assert not decide(attempts_used=4).terminal
    result = decide(attempts_used=5)
    assert result == RetryDecision(None, True, True, RetryReason.BUDGET_EXHAUSTED, True)
    assert decide(attempts_used=6).terminal


def test_budget_follows_the_policy() -> None:
    policy = RetryPolicy(**{**DEFAULTS, "max_attempts": 1})
    assert decide(attempts_used=1, policy=policy).reason is RetryReason.BUDGET_EXHAUSTED


def test_next_time_exactly_at_window_end_is_allowed() -> None:
    # attempt 2 from 23 h: +60 min lands exactly on claimed_at + 24 h.
    result = decide(attempts_used=2, now=T0 + timedelta(hours=23))
    assert result.next_attempt_at == T0 + timedelta(hours=24)
    assert not result.terminal


def test_next_time_beyond_window_is_terminal_with_alert() -> None:
    result = decide(attempts_used=2, now=T0 + timedelta(hours=23, seconds=1))
    assert result == RetryDecision(None, True, True, RetryReason.WINDOW_EXPIRED, True)


def test_jitter_can_push_the_last_retry_out_of_the_window() -> None:
    now = T0 + timedelta(hours=23, minutes=5)  # +60 min ± 6 min around the 24 h end
    assert decide(attempts_used=2, now=now, rng=FixedRandom(0.0)).next_attempt_at == now + timedelta(minutes=54)
    assert decide(attempts_used=2, now=now, rng=FixedRandom(1.0)).reason is RetryReason.WINDOW_EXPIRED


def test_huge_budget_does_not_overflow() -> None:
    # Beyond any datetime (settings refuse inf itself): the window end is not representable.
    policy = RetryPolicy(**{**DEFAULTS, "max_attempts": 100_000, "window_hours": 1e12})
    assert decide(attempts_used=50_000, policy=policy).terminal


def test_attempts_used_counts_this_attempt() -> None:
    with pytest.raises(ValueError):
        decide(attempts_used=0)


# --- MISSING before the platform was reached: deferral spends no budget ------------------------------------


NO_DEFERRAL_JITTER = FixedRandom(0.0)


@pytest.mark.parametrize("reason", [MissingReason.CIRCUIT_OPEN, MissingReason.RATE_LIMITED])
def test_deferral_waits_for_retry_after_and_spends_no_budget(reason: str) -> None:
    rng = FixedRandom(0.0)
    result = decide(reason=reason, attempts_used=4, retry_after=90, rng=rng)
    assert result == RetryDecision(T0 + timedelta(seconds=90), False, False, RetryReason.DEFERRED, False)
    assert rng.calls == [(0.0, 0.25)]  # only ever later than the server-given time


def test_deferral_ignores_an_exhausted_budget() -> None:
    # It was never a real attempt, so it cannot be the one that exhausts the budget.
    assert decide(reason=MissingReason.CIRCUIT_OPEN, attempts_used=5, retry_after=30).reason is RetryReason.DEFERRED


@pytest.mark.parametrize(("retry_after", "seconds"), [(None, 60), (float("nan"), 60), (-5, 0), (0, 0), (2.5, 2.5)])
def test_deferral_delay(retry_after: float | None, seconds: float) -> None:
    result = decide(reason=MissingReason.RATE_LIMITED, retry_after=retry_after, rng=NO_DEFERRAL_JITTER)
    assert result.next_attempt_at == T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(("position", "seconds"), [(0.0, 60), (0.5, 67.5), (1.0, 75)])
def test_deferral_jitter_spreads_over_zero_to_plus_jitter_pct(position: float, seconds: float) -> None:
    result = decide(reason=MissingReason.CIRCUIT_OPEN, retry_after=60, rng=FixedRandom(position))
    assert result.next_attempt_at == T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize("jitter_pct", [0.0, 0.1, 0.25, 1.0])
@pytest.mark.parametrize("seed", range(25))
def test_seeded_deferral_jitter_stays_within_bounds(jitter_pct: float, seed: int) -> None:
    policy = RetryPolicy(**{**DEFAULTS, "deferral_jitter_pct": jitter_pct})
    result = decide(reason=MissingReason.RATE_LIMITED, retry_after=60, rng=random.Random(seed), policy=policy)
    assert result.next_attempt_at is not None and not result.terminal
    delay = (result.next_attempt_at - T0).total_seconds()
    assert 60 <= delay <= 60 * (1 + jitter_pct)
    assert result == decide(reason=MissingReason.RATE_LIMITED, retry_after=60, rng=random.Random(seed), policy=policy)


def test_deferrals_of_one_outage_are_spread_not_synchronised() -> None:
    rng = random.Random(7)
    times = {decide(reason=MissingReason.CIRCUIT_OPEN, retry_after=60, rng=rng).next_attempt_at for _ in range(100)}
    assert len(times) == 100  # the same cooldown, a hundred different return times
    spread = (max(t for t in times if t) - min(t for t in times if t)).total_seconds()
    assert spread > 10  # over most of the 15 s (25 % of 60 s) span, not one instant


def test_deferral_jitter_never_pushes_a_fitting_deferral_out_of_the_window() -> None:
    now = T0 + timedelta(hours=23, minutes=59)
    # 60 s lands exactly on the window end; any jitter would pass it: capped at the end, not terminal.
    result = decide(reason=MissingReason.CIRCUIT_OPEN, now=now, retry_after=60, rng=FixedRandom(1.0))
    assert result == RetryDecision(T0 + timedelta(hours=24), False, False, RetryReason.DEFERRED, False)
    # 50 s fits; + 25 % (62.5 s) would not: capped at the end.
    result = decide(reason=MissingReason.CIRCUIT_OPEN, now=now, retry_after=50, rng=FixedRandom(1.0))
    assert result.next_attempt_at == T0 + timedelta(hours=24)
    # 40 s + 25 % = 50 s fits: jittered as usual.
    result = decide(reason=MissingReason.CIRCUIT_OPEN, now=now, retry_after=40, rng=FixedRandom(1.0))
    assert result.next_attempt_at == now + timedelta(seconds=50)


def test_deferral_is_bounded_by_the_window() -> None:
    now = T0 + timedelta(hours=23, minutes=59)
    at_end = decide(reason=MissingReason.CIRCUIT_OPEN, now=now, retry_after=60, rng=NO_DEFERRAL_JITTER)
    assert at_end.next_attempt_at == T0 + timedelta(hours=24)
    beyond = decide(reason=MissingReason.CIRCUIT_OPEN, now=now, retry_after=61)
    assert beyond == RetryDecision(None, True, False, RetryReason.WINDOW_EXPIRED, True)
    assert decide(reason=MissingReason.RATE_LIMITED, retry_after=float("inf")).terminal


# --- MISSING because our own code raised: a real failure ---------------------------------------------------


def test_internal_error_spends_budget_and_backs_off_like_a_real_failure() -> None:
    result = decide(reason=MissingReason.INTERNAL_ERROR, attempts_used=1)
    assert result == RetryDecision(T0 + timedelta(minutes=30), False, True, RetryReason.BACKOFF, False)
    assert MissingReason.INTERNAL_ERROR not in DEFERRAL_REASONS


def test_internal_error_exhausts_the_budget_with_a_missing_alert() -> None:
    result = decide(reason=MissingReason.INTERNAL_ERROR, attempts_used=5)
    assert result == RetryDecision(None, True, True, RetryReason.BUDGET_EXHAUSTED, True)


# --- INCOMPLETE: one extra attempt -------------------------------------------------------------------------


def test_incomplete_gets_exactly_one_more_attempt() -> None:
    first = decide(INCOMPLETE, reason=None, incomplete_attempts=1)
    assert first == RetryDecision(T0 + timedelta(minutes=15), False, True, RetryReason.INCOMPLETE_RETRY, False)
    second = decide(INCOMPLETE, reason=None, incomplete_attempts=2, now=T0 + timedelta(minutes=15))
    assert second == RetryDecision(None, True, True, RetryReason.INCOMPLETE_EXHAUSTED, False)


def test_incomplete_extra_attempt_is_not_jittered_or_budgeted() -> None:
    rng = FixedRandom()
    result = decide(INCOMPLETE, reason=None, attempts_used=5, incomplete_attempts=1, rng=rng)
    assert result.next_attempt_at == T0 + timedelta(minutes=15)
    assert rng.calls == []


# --- conclusive outcomes and re-checks ---------------------------------------------------------------------

CONCLUSIVE = [
    Status.MATCHED,
    Status.DISCREPANCY_LOW,
    Status.DISCREPANCY_MEDIUM,
    Status.DISCREPANCY_HIGH,
    Status.AFFILIATE_OVERCLAIMED,
]


@pytest.mark.parametrize("status", CONCLUSIVE)
def test_conclusive_outcome_schedules_the_next_recheck(status: Status) -> None:
    result = decide(status, reason=None, now=T0 + timedelta(hours=1))
    assert result == RetryDecision(T0 + timedelta(hours=6), False, True, RetryReason.RECHECK, False)


def test_conclusive_outcome_without_rechecks_is_terminal() -> None:
    for interval, window in [(None, 7), (6, None), (6, 0), (0, 7)]:
        result = decide(Status.MATCHED, reason=None, interval=interval, window_days=window)
        assert result == RetryDecision(None, True, True, RetryReason.RECHECKS_DONE, False)


def test_last_recheck_then_terminal() -> None:
    assert decide(Status.MATCHED, reason=None, now=T0 + timedelta(hours=167)).next_attempt_at == T0 + timedelta(
        hours=168
    )
    assert decide(Status.MATCHED, reason=None, now=T0 + timedelta(hours=168)).terminal


@pytest.mark.parametrize(
    ("reason", "budget"),
    [(MissingReason.FETCH_ERROR, True), (MissingReason.CIRCUIT_OPEN, False), (MissingReason.NOT_FOUND, True)],
)
def test_failed_recheck_keeps_the_verdict_and_waits_for_the_next_recheck(reason: str, budget: bool) -> None:
    # Far past the 24 h retry window and the attempt budget: a re-check is not the initial check.
    now = T0 + timedelta(hours=30, minutes=5)
    result = decide(MISSING, reason=reason, attempts_used=9, now=now, has_conclusive_status=True, retry_after=60)
    assert result == RetryDecision(T0 + timedelta(hours=36), False, budget, RetryReason.RECHECK, False)


def test_incomplete_recheck_waits_for_the_next_recheck() -> None:
    now = T0 + timedelta(hours=12)
    result = decide(INCOMPLETE, reason=None, incomplete_attempts=3, now=now, has_conclusive_status=True)
    assert result.next_attempt_at == T0 + timedelta(hours=18)


def test_failed_final_recheck_is_terminal_without_missing_alert() -> None:
    result = decide(MISSING, now=T0 + timedelta(hours=168), attempts_used=30, has_conclusive_status=True)
    assert result == RetryDecision(None, True, True, RetryReason.RECHECKS_DONE, False)


def test_pending_is_not_an_outcome() -> None:
    with pytest.raises(ValueError):
        decide(Status.PENDING)


def test_status_may_be_given_as_its_string() -> None:
    assert decide("MATCHED", reason=None).reason is RetryReason.RECHECK


RECHECKS = [
    # now (hours after claim), interval h, window days, next (hours after claim) or None
    (0, 6, 7, 6),
    (1, 6, 7, 6),
    (5.999, 6, 7, 6),
    (6, 6, 7, 12),  # strictly after now
    (6.001, 6, 7, 12),
    (161.5, 6, 7, 162),
    (162, 6, 7, 168),  # the window end is inclusive
    (168, 6, 7, None),
    (200, 6, 7, None),
    (-3, 6, 7, 6),  # clock skew: never before the first grid point
    (2, 1.5, 7, 3),
    (0, 6, 0.25, 6),  # window of exactly one interval
    (0, 7, 0.25, None),
    (0, 6, None, None),
    (0, None, 7, None),
    (0, 0, 7, None),
    (0, -6, 7, None),
]


@pytest.mark.parametrize(("now_h", "interval", "window", "expected_h"), RECHECKS)
def test_next_recheck(now_h: float, interval: float | None, window: float | None, expected_h: float | None) -> None:
    result = next_recheck(claimed_at=T0, now=T0 + timedelta(hours=now_h), interval_hours=interval, window_days=window)
    assert result == (None if expected_h is None else T0 + timedelta(hours=expected_h))


def test_recheck_grid_is_anchored_on_the_claim_not_on_the_verdict() -> None:
    times = []
    now = T0 + timedelta(hours=7, minutes=13)  # a late first verdict
    while (at := next_recheck(claimed_at=T0, now=now, interval_hours=6, window_days=7)) is not None:
        times.append(at)
        now = at
    assert times == [T0 + timedelta(hours=h) for h in range(12, 169, 6)]


# --- The report's state for API readers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "terminal", "state"),
    [
        (Status.PENDING, False, ReportState.PENDING),
        (Status.MISSING_PLATFORM_DATA, False, ReportState.RETRYING),
        (Status.INCOMPLETE_PLATFORM_DATA, False, ReportState.RETRYING),
        *[(s, False, ReportState.RECHECKING) for s in Status if s.is_conclusive],
        *[(s, True, ReportState.FINAL) for s in Status],
    ],
)
def test_report_state(status: Status, terminal: bool, state: ReportState) -> None:
    assert report_state(status=status, terminal=terminal) is state
    assert report_state(status=str(status), terminal=terminal) is state

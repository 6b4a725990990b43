"""When to look again (DESIGN §4 "Retries" and "Re-checks"). Pure: ``now`` and the random source are inputs.

The result is a persisted ``next_attempt_at`` (the sweeper dispatches it), never a Celery countdown.

Initial check (the report has no conclusive status yet):

* **MISSING, real failure** (``not_found``, ``fetch_error``, ``timeout``, ``auth_error``, ``no_metrics``, and
  any reason not listed below, so an unknown reason can never retry forever): the attempt counts against
  the budget. With ``n = attempts_used`` (real attempts so far, this one included): if ``n ≥ max_attempts``
  → terminal (BUDGET_EXHAUSTED); else the next attempt is at
  ``now + initial_delay_minutes × 2^(n−1) × (1 + rng.uniform(−jitter_pct, jitter_pct))``; a time after
  ``claimed_at + window_hours`` → terminal (WINDOW_EXPIRED; the window end itself is allowed).
* **MISSING, never reached the platform** (``circuit_open``, ``rate_limited``): the attempt spends no
  budget; next at ``now + d × (1 + rng.uniform(0, deferral_jitter_pct))`` where ``d`` is
  ``retry_after_seconds`` (the breaker's cooldown or the platform's Retry-After;
  ``policy.deferral_default_seconds`` when unknown). The jitter only ever adds (never earlier than the
  platform asked) and spreads the reports deferred by one outage, which all learn the same cooldown, over
  a span instead of one instant; it never pushes a deferral that fits in the window out of it (it is
  capped at the window end). ``d`` itself beyond the window → terminal (WINDOW_EXPIRED).
* **MISSING, internal error** (``internal_error``: our own code raised during the attempt): a real failure
  like ``fetch_error`` — it spends budget, so a bug or a bad configuration ends in a terminal MISSING with
  its alert instead of a retry loop.
* Every terminal MISSING sets ``raise_missing_alert`` (the caller raises MISSING_DATA).
* **INCOMPLETE**: ``incomplete_attempts`` counts INCOMPLETE outcomes, this one included. The first gets one
  more attempt after ``incomplete_retry_minutes`` (not jittered, not bounded by the window: it is a single,
  bounded extra look); the second is terminal, with no trust event and no alert.
* **Conclusive** statuses: the next re-check (:func:`next_recheck`), terminal when there is none.

Re-check phase (``has_conclusive_status=True``: the report already holds a conclusive status and this
attempt was a re-check): an outcome that cannot conclude (MISSING of any kind, INCOMPLETE) changes nothing
(the conclusive status and its trust stand) and waits for the next scheduled re-check; no MISSING_DATA alert,
because the report is not missing data, it has a verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from .classification import Status

if TYPE_CHECKING:
    from reconcile_project.config import RetryPolicy


class MissingReason(StrEnum):
    """Why an outcome is MISSING_PLATFORM_DATA; recorded with every MISSING outcome."""

    NOT_FOUND = "not_found"
    FETCH_ERROR = "fetch_error"
    TIMEOUT = "timeout"
    AUTH_ERROR = "auth_error"
    #: The platform answered but reported none of the metrics.
    NO_METRICS = "no_metrics"
    #: The call never left: our shared breaker is open.
    CIRCUIT_OPEN = "circuit_open"
    #: The call never left (our limiter) or the platform refused it with 429.
    RATE_LIMITED = "rate_limited"
    #: Our own code raised during the attempt (a bug, a bad platform configuration, a rejected write). A
    #: real failure, never a deferral: it spends budget, so a crash cannot retry forever.
    INTERNAL_ERROR = "internal_error"


#: Reasons where the platform was never actually asked: these spend no attempt budget.
DEFERRAL_REASONS: frozenset[str] = frozenset({MissingReason.CIRCUIT_OPEN, MissingReason.RATE_LIMITED})


class RetryReason(StrEnum):
    """Why the decision is what it is (for the log's reason and for ops)."""

    BACKOFF = "backoff"
    BUDGET_EXHAUSTED = "budget_exhausted"
    WINDOW_EXPIRED = "window_expired"
    DEFERRED = "deferred"
    INCOMPLETE_RETRY = "incomplete_retry"
    INCOMPLETE_EXHAUSTED = "incomplete_exhausted"
    RECHECK = "recheck"
    RECHECKS_DONE = "rechecks_done"


class ReportState(StrEnum):
    """Where a report stands in its life, for people reading the API (the status alone cannot say it).

    ``MISSING_PLATFORM_DATA`` reads the same whether the next attempt is in 30 minutes or there will be
    none; the state tells those apart.
    """

    #: No attempt has finished yet.
    PENDING = "pending"
    #: No verdict yet and another attempt is scheduled: the status (MISSING or INCOMPLETE) is provisional.
    RETRYING = "retrying"
    #: A verdict (a conclusive status) stands, and scheduled re-checks may still change it.
    RECHECKING = "rechecking"
    #: Nothing more is scheduled: the status is the final word (unless staff re-run the report).
    FINAL = "final"


def report_state(*, status: Status | str, terminal: bool) -> ReportState:
    """The :class:`ReportState` of a report from its log's ``status`` and ``terminal`` flag."""
    if terminal:
        return ReportState.FINAL
    status = Status(status)
    if status is Status.PENDING:
        return ReportState.PENDING
    if status.is_conclusive:
        return ReportState.RECHECKING
    return ReportState.RETRYING


class UniformRandom(Protocol):
    """The part of :class:`random.Random` the schedule needs (inject a seeded one in tests)."""

    def uniform(self, a: float, b: float) -> float: ...


@dataclass(frozen=True, slots=True)
class RetryDecision:
    #: When the sweeper should dispatch the next attempt; None exactly when terminal.
    next_attempt_at: datetime | None
    terminal: bool
    #: Whether this outcome's attempt counts against ``max_attempts`` (False for circuit_open/rate_limited).
    consumes_budget: bool
    reason: RetryReason
    #: The caller raises a MISSING_DATA alert (terminal MISSING in the initial check).
    raise_missing_alert: bool = False


def next_recheck(
    *, claimed_at: datetime, now: datetime, interval_hours: float | None, window_days: float | None
) -> datetime | None:
    """The first ``claimed_at + k × interval`` (k ≥ 1) strictly after ``now`` and within the window, else None.

    Re-checks sit on a fixed grid from the claim, so a late first verdict does not shift later re-checks.
    The window end is inclusive (every 6 h for 7 days includes the check at exactly 168 h). No interval, a
    non-positive interval or an empty window means no re-checks.
    """
    if interval_hours is None or window_days is None:
        return None
    if not interval_hours > 0 or not window_days > 0 or math.isinf(interval_hours):
        return None
    interval = timedelta(hours=interval_hours)
    if interval <= timedelta(0):  # below timedelta's microsecond resolution
        return None
    # timedelta // timedelta is exact integer arithmetic on microseconds: no float drift at grid points.
    k = max((now - claimed_at) // interval + 1, 1)
    if math.isinf(window_days):
        end = None
    else:
        try:
            end = claimed_at + timedelta(days=window_days)
        except OverflowError:
            end = None
    try:
        candidate = claimed_at + k * interval
    except OverflowError:
        return None
    if end is not None and candidate > end:
        return None
    return candidate


def retry_window_end(claimed_at: datetime, policy: RetryPolicy) -> datetime | None:
    """``claimed_at + window_hours``; None when that is beyond any datetime (no practical limit)."""
    if math.isinf(policy.window_hours):
        return None
    try:
        return claimed_at + timedelta(hours=policy.window_hours)
    except OverflowError:
        return None


def _schedule_within_window(now: datetime, delay_seconds: float, window_end: datetime | None) -> datetime | None:
    """``now + delay`` if that is inside the window (end inclusive), else None."""
    # A coarse check first, so a huge backoff is refused before it can overflow a datetime...
    if window_end is not None and delay_seconds > (window_end - now).total_seconds() + 1:
        return None
    try:
        at = now + timedelta(seconds=delay_seconds)
    except OverflowError:
        return None
    # ...then the exact one on the datetime actually scheduled (microsecond rounding included).
    if window_end is not None and at > window_end:
        return None
    return at


def _terminal(reason: RetryReason, *, consumes_budget: bool, raise_missing_alert: bool = False) -> RetryDecision:
    return RetryDecision(None, True, consumes_budget, reason, raise_missing_alert)


def next_attempt(
    *,
    status: Status | str,
    missing_reason: str | None,
    attempts_used: int,
    claimed_at: datetime,
    now: datetime,
    retry_after_seconds: float | None,
    incomplete_attempts: int,
    policy: RetryPolicy,
    rng: UniformRandom,
    recheck_interval_hours: float | None,
    recheck_window_days: float | None,
    has_conclusive_status: bool = False,
) -> RetryDecision:
    """Decide the next attempt after an outcome (rules in the module docstring).

    ``recheck_interval_hours``/``recheck_window_days`` are the campaign's re-check cadence (defaults in
    ``ReconciliationSettings``); None disables re-checks. Raises ValueError for PENDING (not an outcome) and
    for a real failure reported with ``attempts_used < 1``.
    """
    status = Status(status)
    if status is Status.PENDING:
        raise ValueError("PENDING is not an attempt outcome")
    deferred = status is Status.MISSING_PLATFORM_DATA and missing_reason in DEFERRAL_REASONS
    consumes_budget = not deferred

    if status.is_conclusive or has_conclusive_status:
        at = next_recheck(
            claimed_at=claimed_at, now=now, interval_hours=recheck_interval_hours, window_days=recheck_window_days
        )
        if at is None:
            return _terminal(RetryReason.RECHECKS_DONE, consumes_budget=consumes_budget)
        return RetryDecision(at, False, consumes_budget, RetryReason.RECHECK)

    if status is Status.INCOMPLETE_PLATFORM_DATA:
        if incomplete_attempts <= 1:
            at = now + timedelta(minutes=policy.incomplete_retry_minutes)
            return RetryDecision(at, False, True, RetryReason.INCOMPLETE_RETRY)
        return _terminal(RetryReason.INCOMPLETE_EXHAUSTED, consumes_budget=True)

    # MISSING_PLATFORM_DATA from here on.
    window_end = retry_window_end(claimed_at, policy)
    if deferred:
        delay = policy.deferral_default_seconds if retry_after_seconds is None else retry_after_seconds
        # A NaN or negative hint is a broken header, not an instruction: fall back / do not go back in time.
        if math.isnan(delay):
            delay = policy.deferral_default_seconds
        delay = max(float(delay), 0.0)
        at = _schedule_within_window(now, delay, window_end)
        if at is None:
            return _terminal(RetryReason.WINDOW_EXPIRED, consumes_budget=False, raise_missing_alert=True)
        # Every report deferred by one open breaker is told the same cooldown: without a spread they would
        # all come back in the same sweep and stampede the half-open breaker. Only ever later, never out of
        # the window the unjittered time fits in.
        spread = rng.uniform(0.0, policy.deferral_jitter_pct)
        jittered = _schedule_within_window(now, delay * (1 + spread), window_end)
        return RetryDecision(jittered or window_end or at, False, False, RetryReason.DEFERRED)

    if attempts_used < 1:
        raise ValueError(f"attempts_used counts this attempt and must be >= 1, got {attempts_used}")
    if attempts_used >= policy.max_attempts:
        return _terminal(RetryReason.BUDGET_EXHAUSTED, consumes_budget=True, raise_missing_alert=True)
    jitter = rng.uniform(-policy.jitter_pct, policy.jitter_pct)
    # The exponent is capped only to keep float ** from raising; such a delay is beyond any window anyway.
    delay_seconds = policy.initial_delay_minutes * 60 * 2.0 ** min(attempts_used - 1, 1000) * (1 + jitter)
    at = _schedule_within_window(now, delay_seconds, window_end)
    if at is None:
        return _terminal(RetryReason.WINDOW_EXPIRED, consumes_budget=True, raise_missing_alert=True)
    return RetryDecision(at, False, True, RetryReason.BACKOFF)

"""The pure core of reconciliation (DESIGN §4, STYLE principle 1).

Frozen dataclasses in, frozen dataclasses out: no Django, no ORM, no I/O, no clock (``now`` is a parameter)
and no global randomness (a ``random.Random``-like object is injected). Settings are the typed groups of
``reconcile_project.config``, used only through their attributes.
"""

from .classification import (
    CONCLUSIVE_STATUSES,
    METRICS,
    TRUST_EVENT_BY_STATUS,
    Claim,
    Classification,
    Level,
    MetricDiff,
    Observed,
    Side,
    Status,
    TrustEvent,
    classify,
    trust_event_for,
)
from .data_quality import SEVERITY, Flag, FlagCode, Severity, has_high, suspicion_flags
from .retry import (
    DEFERRAL_REASONS,
    MissingReason,
    ReportState,
    RetryDecision,
    RetryReason,
    UniformRandom,
    next_attempt,
    next_recheck,
    report_state,
    retry_window_end,
)
from .trust import (
    TrustBucket,
    TrustChange,
    apply_trust,
    bucket,
    correction_delta,
    crossed_into_critical,
    initial_score,
    to_score,
    trust_delta_for,
)

__all__ = [
    "CONCLUSIVE_STATUSES",
    "DEFERRAL_REASONS",
    "METRICS",
    "SEVERITY",
    "TRUST_EVENT_BY_STATUS",
    "Claim",
    "Classification",
    "Flag",
    "FlagCode",
    "Level",
    "MetricDiff",
    "MissingReason",
    "Observed",
    "ReportState",
    "RetryDecision",
    "RetryReason",
    "Severity",
    "Side",
    "Status",
    "TrustBucket",
    "TrustChange",
    "TrustEvent",
    "UniformRandom",
    "apply_trust",
    "bucket",
    "classify",
    "correction_delta",
    "crossed_into_critical",
    "has_high",
    "initial_score",
    "next_attempt",
    "next_recheck",
    "report_state",
    "retry_window_end",
    "suspicion_flags",
    "to_score",
    "trust_delta_for",
    "trust_event_for",
]

"""Classify a claim against what the platform reports (DESIGN §4). Pure: no ORM, no I/O, no clock.

Per metric, with ``C`` claimed, ``P`` the platform's value now and ``h`` the hours between claim and fetch:

* growth factor ``G = 1 + growth_per_hour_pct × min(max(h, 0), growth_cap_hours)``. A negative ``h`` (clock
  skew between claim and fetch) counts as 0: growth cannot have happened before the claim.
* **over side** (``C > P``): ``diff = (C − P) / max(P, 1)``, positive. Growth is deliberately *not* applied:
  the platform's value only grows after the claim, so a claim above today's value can never be excused by it.
* **under side** (``C < P / G``): ``diff = (C − P/G) / (P/G)``, negative and ≥ −1. ``P/G > C ≥ 0`` there,
  so the division is defined.
* otherwise (``P/G ≤ C ≤ P``) ``diff = 0``: the gap is explained by growth after the claim.

**Absolute floor** (``abs_tolerance_<metric>``): tiny counts must not produce huge percentages. The floor is
compared with the absolute count difference *of the side that applies*, inclusively:

* over side: ``C − P ≤ floor`` → diff 0 (P = 0, C = 10 views is 0; C = 11 is +11.0);
* under side: ``P/G − C ≤ floor`` → diff 0 (the growth-discounted gap, since that is the gap the diff
  measures; P = 10, C = 0 views is 0; P = 11, C = 0, h = 0 is −1.0).

P = 0 and C = 0 are well defined: P = C = 0 is 0; P = 0 < C is ``C / 1`` beyond the floor; C = 0 < P is −1
beyond the floor.

**Exactness**: diffs are :class:`~fractions.Fraction` and thresholds are the decimals the settings were
written as (see ``_exact``), so every boundary is decided exactly (C = 120, P = 100 is exactly 0.2 and an
over-claim). Diffs are converted to ``float`` only in the output; ``float`` rounding is monotonic, so the
stored floats never contradict the status.

Status, first matching row wins (DESIGN §4 table, inclusive bounds):

====================================================================  ======================  ========
condition                                                             status                  level
====================================================================  ======================  ========
fetch failed (``platform is None``) or no metric present              MISSING_PLATFORM_DATA   –
a present metric on the over side with diff ≥ overclaim_critical_pct  AFFILIATE_OVERCLAIMED   CRITICAL
a present metric on the over side with diff ≥ overclaim_threshold_pct AFFILIATE_OVERCLAIMED   HIGH
a metric absent                                                       INCOMPLETE_PLATFORM_DATA –
max abs diff ≤ base_tolerance_pct                                     MATCHED                 –
max abs diff ≤ low_max                                                DISCREPANCY_LOW         LOW
max abs diff ≤ medium_max                                             DISCREPANCY_MEDIUM      MEDIUM
otherwise                                                             DISCREPANCY_HIGH        HIGH
====================================================================  ======================  ========

An infinite over-claim threshold is never reached (switches that row off).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from ._exact import at_least, at_most, exact, to_float

if TYPE_CHECKING:
    # Only for annotations: importing reconcile_project at run time pulls in the Celery app, and the core
    # needs nothing from the settings model but its attributes.
    from reconcile_project.config import ReconciliationSettings

#: The metrics compared, in the order they are reported.
METRICS: tuple[str, ...] = ("views", "clicks", "conversions")


class Status(StrEnum):
    PENDING = "PENDING"
    MATCHED = "MATCHED"
    DISCREPANCY_LOW = "DISCREPANCY_LOW"
    DISCREPANCY_MEDIUM = "DISCREPANCY_MEDIUM"
    DISCREPANCY_HIGH = "DISCREPANCY_HIGH"
    AFFILIATE_OVERCLAIMED = "AFFILIATE_OVERCLAIMED"
    INCOMPLETE_PLATFORM_DATA = "INCOMPLETE_PLATFORM_DATA"
    MISSING_PLATFORM_DATA = "MISSING_PLATFORM_DATA"

    @property
    def is_conclusive(self) -> bool:
        """A conclusive status carries a trust event and may be corrected by a re-check."""
        return self in CONCLUSIVE_STATUSES


class Level(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


class TrustEvent(StrEnum):
    """Names match the TrustScoring fields (lower-cased), so ``TrustScoring.delta(event)`` works."""

    PERFECT_MATCH = "PERFECT_MATCH"
    MINOR_DISCREPANCY = "MINOR_DISCREPANCY"
    MEDIUM_DISCREPANCY = "MEDIUM_DISCREPANCY"
    HIGH_DISCREPANCY = "HIGH_DISCREPANCY"
    OVERCLAIM = "OVERCLAIM"


class Side(StrEnum):
    """Which branch of the per-metric formula applied."""

    OVER = "OVER"  # C > P beyond the floor: positive diff
    UNDER = "UNDER"  # C < P/G beyond the floor: negative diff
    WITHIN = "WITHIN"  # diff 0: within the growth band or the absolute floor


CONCLUSIVE_STATUSES: frozenset[Status] = frozenset(
    {
        Status.MATCHED,
        Status.DISCREPANCY_LOW,
        Status.DISCREPANCY_MEDIUM,
        Status.DISCREPANCY_HIGH,
        Status.AFFILIATE_OVERCLAIMED,
    }
)

#: The trust event each status produces (None: no trust change).
TRUST_EVENT_BY_STATUS: dict[Status, TrustEvent | None] = {
    Status.PENDING: None,
    Status.MATCHED: TrustEvent.PERFECT_MATCH,
    Status.DISCREPANCY_LOW: TrustEvent.MINOR_DISCREPANCY,
    Status.DISCREPANCY_MEDIUM: TrustEvent.MEDIUM_DISCREPANCY,
    Status.DISCREPANCY_HIGH: TrustEvent.HIGH_DISCREPANCY,
    Status.AFFILIATE_OVERCLAIMED: TrustEvent.OVERCLAIM,
    Status.INCOMPLETE_PLATFORM_DATA: None,
    Status.MISSING_PLATFORM_DATA: None,
}


def trust_event_for(status: Status | str) -> TrustEvent | None:
    """The trust event of a status; None for PENDING, INCOMPLETE and MISSING."""
    return TRUST_EVENT_BY_STATUS[Status(status)]


def _check_count(owner: str, metric: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    # bool is an int subclass; a True view count is a bug upstream, not a count of 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{owner}.{metric} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"{owner}.{metric} must not be negative, got {value}")


@dataclass(frozen=True, slots=True)
class Claim:
    """What the affiliate reported (cumulative counts)."""

    views: int
    clicks: int
    conversions: int

    def __post_init__(self) -> None:
        for metric in METRICS:
            _check_count("Claim", metric, getattr(self, metric), optional=False)

    def get(self, metric: str) -> int:
        return int(getattr(self, metric))


@dataclass(frozen=True, slots=True)
class Observed:
    """What the platform reported; ``None`` means the platform omitted that metric."""

    views: int | None
    clicks: int | None
    conversions: int | None

    def __post_init__(self) -> None:
        for metric in METRICS:
            _check_count("Observed", metric, getattr(self, metric), optional=True)

    def get(self, metric: str) -> int | None:
        value: int | None = getattr(self, metric)
        return value


@dataclass(frozen=True, slots=True)
class MetricDiff:
    """One metric's comparison. ``diff``/``abs_count_diff``/``side`` are None when the platform omitted it."""

    metric: str
    claimed: int
    observed: int | None
    #: Signed relative difference after growth and floor (see module docstring).
    diff: float | None
    #: |C − P| on the raw counts (evidence for analysts; the floor uses the side's own gap).
    abs_count_diff: int | None
    side: Side | None

    @property
    def present(self) -> bool:
        return self.observed is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "claimed": self.claimed,
            "observed": self.observed,
            "diff": self.diff,
            "abs_count_diff": self.abs_count_diff,
            "side": None if self.side is None else str(self.side),
        }


@dataclass(frozen=True, slots=True)
class Classification:
    status: Status
    level: Level | None
    trust_event: TrustEvent | None
    #: One entry per metric, in METRICS order.
    metrics: tuple[MetricDiff, ...]
    #: Largest over-side diff among present metrics (0.0 when none).
    max_positive_diff: float
    #: Largest |diff| among present metrics (0.0 when none).
    max_abs_diff: float
    #: Metrics present / 3.
    confidence_ratio: float
    #: Metrics the platform omitted (all three when the fetch failed), in METRICS order.
    missing_fields: tuple[str, ...]
    #: G as applied (evidence); ``inf`` when growth is unbounded by the settings.
    growth_factor: float

    @property
    def is_conclusive(self) -> bool:
        return self.status.is_conclusive

    @property
    def diffs(self) -> dict[str, float | None]:
        """Per-metric signed diff, None when absent."""
        return {m.metric: m.diff for m in self.metrics}

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, for the reconciliation log's evidence."""
        return {
            "status": str(self.status),
            "level": None if self.level is None else str(self.level),
            "trust_event": None if self.trust_event is None else str(self.trust_event),
            "metrics": [m.as_dict() for m in self.metrics],
            "max_positive_diff": self.max_positive_diff,
            "max_abs_diff": self.max_abs_diff,
            "confidence_ratio": self.confidence_ratio,
            "missing_fields": list(self.missing_fields),
            "growth_factor": self.growth_factor,
        }


def _growth_factor(hours_since_claim: float, settings: ReconciliationSettings) -> Fraction | None:
    """Exact G, or None when the settings make it unbounded (an infinite rate or cap with infinite hours)."""
    if math.isnan(hours_since_claim):
        raise ValueError("hours_since_claim must not be NaN")
    hours = min(max(hours_since_claim, 0.0), float(settings.growth_cap_hours))
    rate = float(settings.growth_per_hour_pct)
    # Checked before multiplying so that 0 × inf means "no growth", not NaN.
    if hours == 0 or rate == 0:
        return Fraction(1)
    if math.isinf(hours) or math.isinf(rate):
        return None
    return 1 + exact(rate) * exact(hours)


def _compare(claimed: int, observed: int, growth: Fraction | None, floor: int) -> tuple[Fraction, Side]:
    if claimed > observed:
        if claimed - observed <= floor:
            return Fraction(0), Side.WITHIN
        return Fraction(claimed - observed, max(observed, 1)), Side.OVER
    # Unbounded growth discounts P to nothing: no claim can be below it.
    if growth is None:
        return Fraction(0), Side.WITHIN
    discounted = observed / growth
    if claimed < discounted:
        if discounted - claimed <= floor:
            return Fraction(0), Side.WITHIN
        return (claimed - discounted) / discounted, Side.UNDER
    return Fraction(0), Side.WITHIN


def classify(
    *,
    claimed: Claim,
    platform: Observed | None,
    hours_since_claim: float,
    settings: ReconciliationSettings,
) -> Classification:
    """Compare a claim with the platform's counts; ``platform=None`` means the fetch failed.

    Raises ValueError only for a NaN ``hours_since_claim``; any other valid input gets a status.
    """
    growth = _growth_factor(hours_since_claim, settings)
    metrics: list[MetricDiff] = []
    exact_diffs: dict[str, tuple[Fraction, Side]] = {}
    for metric in METRICS:
        c = claimed.get(metric)
        p = None if platform is None else platform.get(metric)
        if p is None:
            metrics.append(MetricDiff(metric, c, None, None, None, None))
            continue
        diff, side = _compare(c, p, growth, settings.abs_tolerance(metric))
        exact_diffs[metric] = (diff, side)
        metrics.append(MetricDiff(metric, c, p, to_float(diff), abs(c - p), side))

    present = len(exact_diffs)
    missing_fields = tuple(m for m in METRICS if m not in exact_diffs)
    max_positive = max((d for d, side in exact_diffs.values() if side is Side.OVER), default=Fraction(0))
    max_abs = max((abs(d) for d, _ in exact_diffs.values()), default=Fraction(0))
    has_over = any(side is Side.OVER for _, side in exact_diffs.values())

    status: Status
    level: Level | None
    if platform is None or present == 0:
        status, level = Status.MISSING_PLATFORM_DATA, None
    elif has_over and at_least(max_positive, settings.overclaim_critical_pct):
        # Checked before partial data: one present metric over the line is conclusive evidence on its own.
        status, level = Status.AFFILIATE_OVERCLAIMED, Level.CRITICAL
    elif has_over and at_least(max_positive, settings.overclaim_threshold_pct):
        status, level = Status.AFFILIATE_OVERCLAIMED, Level.HIGH
    elif missing_fields:
        status, level = Status.INCOMPLETE_PLATFORM_DATA, None
    elif at_most(max_abs, settings.base_tolerance_pct):
        status, level = Status.MATCHED, None
    elif at_most(max_abs, settings.low_max):
        status, level = Status.DISCREPANCY_LOW, Level.LOW
    elif at_most(max_abs, settings.medium_max):
        status, level = Status.DISCREPANCY_MEDIUM, Level.MEDIUM
    else:
        status, level = Status.DISCREPANCY_HIGH, Level.HIGH

    return Classification(
        status=status,
        level=level,
        trust_event=TRUST_EVENT_BY_STATUS[status],
        metrics=tuple(metrics),
        max_positive_diff=to_float(max_positive),
        max_abs_diff=to_float(max_abs),
        confidence_ratio=present / len(METRICS),
        missing_fields=missing_fields,
        growth_factor=math.inf if growth is None else to_float(growth),
    )

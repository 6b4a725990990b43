"""Classification rules (DESIGN §4): every boundary, both sides, floors, growth, partial data, order.

Pure: runs without Django (``pytest -p no:django``).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from reconcile_project.config import ReconciliationSettings
from reconciliation.rules import (
    CONCLUSIVE_STATUSES,
    TRUST_EVENT_BY_STATUS,
    Claim,
    Classification,
    Level,
    Observed,
    Side,
    Status,
    TrustEvent,
    classify,
    trust_event_for,
)

# DESIGN §4 defaults, spelled out so an environment override cannot change what these tests mean.
DEFAULTS: dict[str, Any] = {
    "base_tolerance_pct": 0.05,
    "low_max": 0.10,
    "medium_max": 0.20,
    "overclaim_threshold_pct": 0.20,
    "overclaim_critical_pct": 0.50,
    "growth_per_hour_pct": 0.10,
    "growth_cap_hours": 24,
    "abs_tolerance_views": 10,
    "abs_tolerance_clicks": 2,
    "abs_tolerance_conversions": 1,
    "recheck_interval_hours": 6,
    "recheck_window_days": 7,
}


def make_settings(**overrides: Any) -> ReconciliationSettings:
    # Settings refuse inf/nan (config.py); the pure rules must still be total for them, so non-finite
    # values are set on a validated group without validation.
    finite = {k: v for k, v in overrides.items() if not (isinstance(v, float) and not math.isfinite(v))}
    settings = ReconciliationSettings(**{**DEFAULTS, **finite})
    return settings.model_copy(update={k: v for k, v in overrides.items() if k not in finite})


SETTINGS = make_settings()

# Clicks and conversions that always match, so a row varies one metric at a time.
CLICKS, CONVERSIONS = 100, 10


def views_only(c: int, p: int, h: float = 0.0, **overrides: Any) -> Classification:
    s = make_settings(**overrides) if overrides else SETTINGS
    return classify(
        claimed=Claim(c, CLICKS, CONVERSIONS),
        platform=Observed(p, CLICKS, CONVERSIONS),
        hours_since_claim=h,
        settings=s,
    )


# --- bands on the over side (C > P, P = 1000 views, no growth) -------------------------------------------

OVER_SIDE = [
    # claimed, expected diff, status, level
    (1000, 0.0, Status.MATCHED, None),
    (1050, 0.05, Status.MATCHED, None),  # exactly 5 % is MATCHED
    (1051, 0.051, Status.DISCREPANCY_LOW, Level.LOW),
    (1100, 0.10, Status.DISCREPANCY_LOW, Level.LOW),  # exactly 10 % is LOW
    (1101, 0.101, Status.DISCREPANCY_MEDIUM, Level.MEDIUM),
    (1199, 0.199, Status.DISCREPANCY_MEDIUM, Level.MEDIUM),
    (1200, 0.20, Status.AFFILIATE_OVERCLAIMED, Level.HIGH),  # exactly 20 % over is an over-claim
    (1201, 0.201, Status.AFFILIATE_OVERCLAIMED, Level.HIGH),
    (1499, 0.499, Status.AFFILIATE_OVERCLAIMED, Level.HIGH),
    (1500, 0.50, Status.AFFILIATE_OVERCLAIMED, Level.CRITICAL),  # exactly 50 % is CRITICAL
    (1501, 0.501, Status.AFFILIATE_OVERCLAIMED, Level.CRITICAL),
    (5000, 4.0, Status.AFFILIATE_OVERCLAIMED, Level.CRITICAL),
]


@pytest.mark.parametrize(("claimed", "diff", "status", "level"), OVER_SIDE)
def test_over_side_bands(claimed: int, diff: float, status: Status, level: Level | None) -> None:
    result = views_only(claimed, 1000)
    assert result.diffs["views"] == diff
    assert (result.status, result.level) == (status, level)


# --- bands on the under side (C < P/G, P = 1000 views, h = 0 so G = 1) ------------------------------------

UNDER_SIDE = [
    (950, -0.05, Status.MATCHED, None),  # exactly 5 % under is MATCHED
    (949, -0.051, Status.DISCREPANCY_LOW, Level.LOW),
    (900, -0.10, Status.DISCREPANCY_LOW, Level.LOW),
    (899, -0.101, Status.DISCREPANCY_MEDIUM, Level.MEDIUM),
    (800, -0.20, Status.DISCREPANCY_MEDIUM, Level.MEDIUM),  # exactly 20 % under is MEDIUM, not an over-claim
    (799, -0.201, Status.DISCREPANCY_HIGH, Level.HIGH),
    (500, -0.50, Status.DISCREPANCY_HIGH, Level.HIGH),  # 50 % under is a discrepancy, never an over-claim
    (499, -0.501, Status.DISCREPANCY_HIGH, Level.HIGH),
    (0, -1.0, Status.DISCREPANCY_HIGH, Level.HIGH),
]


@pytest.mark.parametrize(("claimed", "diff", "status", "level"), UNDER_SIDE)
def test_under_side_bands(claimed: int, diff: float, status: Status, level: Level | None) -> None:
    result = views_only(claimed, 1000)
    assert result.diffs["views"] == diff
    assert (result.status, result.level) == (status, level)
    assert result.max_positive_diff == 0.0


def test_120_over_100_is_exactly_point_two_and_an_overclaim() -> None:
    result = classify(
        claimed=Claim(1000, 120, 10), platform=Observed(1000, 100, 10), hours_since_claim=0, settings=SETTINGS
    )
    assert result.diffs["clicks"] == 0.2
    assert result.max_positive_diff == 0.2
    assert (result.status, result.level) == (Status.AFFILIATE_OVERCLAIMED, Level.HIGH)


def test_growth_boundary_is_exact_despite_binary_floats() -> None:
    # In floats 1 + 0.1 * 3 == 1.3000000000000003; exactly, P/G = 1300 / 1.3 = 1000 and 950 is exactly -5 %.
    result = views_only(950, 1300, h=3)
    assert result.diffs["views"] == -0.05
    assert result.status is Status.MATCHED
    assert result.growth_factor == 1.3


# --- absolute floors ---------------------------------------------------------------------------------------

FLOORS = [
    # claimed views/clicks/conversions, platform views/clicks/conversions, metric, diff, status
    # views floor 10, over side: the count gap C - P is compared
    ((110, 100, 10), (100, 100, 10), "views", 0.0, Status.MATCHED),  # +10 % but only 10 views: 0
    ((111, 100, 10), (100, 100, 10), "views", 0.11, Status.DISCREPANCY_MEDIUM),
    ((10, 100, 10), (0, 100, 10), "views", 0.0, Status.MATCHED),  # P = 0: within floor
    ((11, 100, 10), (0, 100, 10), "views", 11.0, Status.AFFILIATE_OVERCLAIMED),  # P = 0: C / 1
    # views floor 10, under side
    ((0, 100, 10), (10, 100, 10), "views", 0.0, Status.MATCHED),  # C = 0: within floor
    ((0, 100, 10), (11, 100, 10), "views", -1.0, Status.DISCREPANCY_HIGH),  # C = 0: -1
    ((90, 100, 10), (100, 100, 10), "views", 0.0, Status.MATCHED),
    ((89, 100, 10), (100, 100, 10), "views", -0.11, Status.DISCREPANCY_MEDIUM),
    # clicks floor 2
    ((1000, 2, 0), (1000, 0, 0), "clicks", 0.0, Status.MATCHED),
    ((1000, 3, 0), (1000, 0, 0), "clicks", 3.0, Status.AFFILIATE_OVERCLAIMED),
    ((1000, 0, 0), (1000, 2, 0), "clicks", 0.0, Status.MATCHED),
    ((1000, 0, 0), (1000, 3, 0), "clicks", -1.0, Status.DISCREPANCY_HIGH),
    ((1000, 12, 1), (1000, 10, 1), "clicks", 0.0, Status.MATCHED),  # +20 % but within 2 clicks
    ((1000, 13, 1), (1000, 10, 1), "clicks", 0.3, Status.AFFILIATE_OVERCLAIMED),
    # conversions floor 1
    ((1000, 100, 1), (1000, 100, 0), "conversions", 0.0, Status.MATCHED),
    ((1000, 100, 2), (1000, 100, 0), "conversions", 2.0, Status.AFFILIATE_OVERCLAIMED),
    ((1000, 100, 0), (1000, 100, 1), "conversions", 0.0, Status.MATCHED),
    ((1000, 100, 0), (1000, 100, 2), "conversions", -1.0, Status.DISCREPANCY_HIGH),
    # all zero on both sides
    ((0, 0, 0), (0, 0, 0), "views", 0.0, Status.MATCHED),
]


@pytest.mark.parametrize(("claimed", "observed", "metric", "diff", "status"), FLOORS)
def test_absolute_floors(
    claimed: tuple[int, int, int], observed: tuple[int, int, int], metric: str, diff: float, status: Status
) -> None:
    result = classify(claimed=Claim(*claimed), platform=Observed(*observed), hours_since_claim=0, settings=SETTINGS)
    assert result.diffs[metric] == diff
    assert result.status is status


def test_under_side_floor_compares_the_growth_discounted_gap() -> None:
    # h = 1: G = 1.1, P/G = 100. The raw gap 110 - 90 = 20 exceeds the floor; the discounted gap 10 does not.
    within = views_only(90, 110, h=1)
    assert within.diffs["views"] == 0.0
    assert within.metrics[0].abs_count_diff == 20
    beyond = views_only(89, 110, h=1)
    assert beyond.diffs["views"] == -0.11
    assert beyond.status is Status.DISCREPANCY_MEDIUM


def test_zero_floor_keeps_tiny_counts_strict() -> None:
    result = views_only(1, 0, abs_tolerance_views=0)
    assert result.diffs["views"] == 1.0
    assert result.status is Status.AFFILIATE_OVERCLAIMED


# --- growth allowance --------------------------------------------------------------------------------------

GROWTH = [
    # claimed, platform, hours, diff, status
    (1000, 3400, 24, 0.0, Status.MATCHED),  # G = 3.4 at the cap: P/G = 1000
    (900, 3400, 24, -0.10, Status.DISCREPANCY_LOW),
    (900, 3400, 48, -0.10, Status.DISCREPANCY_LOW),  # beyond the cap: same G as at 24 h
    (900, 3400, 1000, -0.10, Status.DISCREPANCY_LOW),
    (900, 3400, math.inf, -0.10, Status.DISCREPANCY_LOW),
    (900, 3400, 12, 900 * 2.2 / 3400 - 1, Status.DISCREPANCY_HIGH),  # G = 2.2 before the cap
    (3000, 3400, 24, 0.0, Status.MATCHED),  # between P/G and P: explained by growth
    (1000, 1100, 1, 0.0, Status.MATCHED),  # G = 1.1
    (1000, 1100, 0, 1000 / 1100 - 1, Status.DISCREPANCY_LOW),  # no time, no allowance
    (1000, 1100, -5, 1000 / 1100 - 1, Status.DISCREPANCY_LOW),  # clock skew counts as 0 h
]


@pytest.mark.parametrize(("claimed", "platform", "hours", "diff", "status"), GROWTH)
def test_growth_allowance_on_the_under_side(
    claimed: int, platform: int, hours: float, diff: float, status: Status
) -> None:
    result = views_only(claimed, platform, h=hours)
    assert result.diffs["views"] == pytest.approx(diff, abs=1e-12)
    assert result.status is status


@pytest.mark.parametrize("hours", [0, 1, 24, 48, 10_000])
def test_growth_never_excuses_an_overclaim(hours: float) -> None:
    # The predecessor inflated P by G both ways, forgiving over-claims more the later it checked.
    result = views_only(1200, 1000, h=hours)
    assert result.diffs["views"] == 0.2
    assert (result.status, result.level) == (Status.AFFILIATE_OVERCLAIMED, Level.HIGH)


def test_growth_factor_reported_capped() -> None:
    assert views_only(1000, 1000, h=48).growth_factor == pytest.approx(3.4)
    assert views_only(1000, 1000, h=-3).growth_factor == 1.0


def test_unbounded_growth_settings_never_raise() -> None:
    result = views_only(1, 10_000, h=math.inf, growth_cap_hours=math.inf)
    assert result.growth_factor == math.inf
    assert result.status is Status.MATCHED
    assert views_only(1, 10_000, h=0, growth_cap_hours=math.inf, growth_per_hour_pct=math.inf).growth_factor == 1.0


def test_nan_hours_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="NaN"):
        views_only(1000, 1000, h=math.nan)


# --- missing and partial data, order of conditions ---------------------------------------------------------

PARTIAL = [
    # claimed, observed (None = omitted), status, level
    ((100, 10, 1), (None, 10, 1), Status.INCOMPLETE_PLATFORM_DATA, None),
    ((100, 10, 1), (None, None, 1), Status.INCOMPLETE_PLATFORM_DATA, None),
    ((1000, 150, 1), (None, 100, 1), Status.AFFILIATE_OVERCLAIMED, Level.CRITICAL),  # present metric +50 %
    ((1000, 120, 1), (None, 100, 1), Status.AFFILIATE_OVERCLAIMED, Level.HIGH),  # present metric +20 %
    ((1000, 119, 1), (None, 100, 1), Status.INCOMPLETE_PLATFORM_DATA, None),  # below the line: not conclusive
    ((1000, 50, 1), (None, 100, 1), Status.INCOMPLETE_PLATFORM_DATA, None),  # under-claims do not conclude
    ((1000, 100, 1), (1000, 100, None), Status.INCOMPLETE_PLATFORM_DATA, None),
    ((2000, 100, 1), (1000, None, None), Status.AFFILIATE_OVERCLAIMED, Level.CRITICAL),
    ((100, 10, 1), (None, None, None), Status.MISSING_PLATFORM_DATA, None),
]


@pytest.mark.parametrize(("claimed", "observed", "status", "level"), PARTIAL)
def test_partial_data(
    claimed: tuple[int, int, int], observed: tuple[int | None, ...], status: Status, level: Level | None
) -> None:
    result = classify(claimed=Claim(*claimed), platform=Observed(*observed), hours_since_claim=0, settings=SETTINGS)
    assert (result.status, result.level) == (status, level)
    present = sum(v is not None for v in observed)
    assert result.confidence_ratio == present / 3
    assert result.missing_fields == tuple(
        m for m, v in zip(("views", "clicks", "conversions"), observed, strict=True) if v is None
    )


def test_fetch_failure_is_missing_with_no_diffs() -> None:
    result = classify(claimed=Claim(100, 10, 1), platform=None, hours_since_claim=2, settings=SETTINGS)
    assert result.status is Status.MISSING_PLATFORM_DATA
    assert (result.level, result.trust_event) == (None, None)
    assert result.confidence_ratio == 0
    assert result.missing_fields == ("views", "clicks", "conversions")
    assert result.diffs == {"views": None, "clicks": None, "conversions": None}
    assert (result.max_abs_diff, result.max_positive_diff) == (0.0, 0.0)
    assert not result.is_conclusive


def test_critical_wins_over_high_across_metrics() -> None:
    result = classify(
        claimed=Claim(1200, 150, 10), platform=Observed(1000, 100, 10), hours_since_claim=0, settings=SETTINGS
    )
    assert (result.status, result.level) == (Status.AFFILIATE_OVERCLAIMED, Level.CRITICAL)
    assert result.max_positive_diff == 0.5


def test_overclaim_wins_over_a_larger_under_claim() -> None:
    # views 60 % under, clicks 30 % over: the over side is checked first.
    result = classify(
        claimed=Claim(400, 130, 10), platform=Observed(1000, 100, 10), hours_since_claim=0, settings=SETTINGS
    )
    assert (result.status, result.level) == (Status.AFFILIATE_OVERCLAIMED, Level.HIGH)
    assert result.max_positive_diff == pytest.approx(0.3)
    assert result.max_abs_diff == 0.6


def test_discrepancy_band_uses_the_largest_absolute_diff() -> None:
    # views 30 % under, clicks 15 % over (below the over-claim line).
    result = classify(
        claimed=Claim(700, 115, 10), platform=Observed(1000, 100, 10), hours_since_claim=0, settings=SETTINGS
    )
    assert (result.status, result.level) == (Status.DISCREPANCY_HIGH, Level.HIGH)
    assert result.max_positive_diff == pytest.approx(0.15)
    assert result.max_abs_diff == pytest.approx(0.3)
    sides = {m.metric: m.side for m in result.metrics}
    assert sides == {"views": Side.UNDER, "clicks": Side.OVER, "conversions": Side.WITHIN}


def test_zero_overclaim_threshold_needs_an_over_side_metric() -> None:
    exact = views_only(1000, 1000, overclaim_threshold_pct=0, overclaim_critical_pct=0)
    assert exact.status is Status.MATCHED
    over = views_only(1011, 1000, overclaim_threshold_pct=0, overclaim_critical_pct=0)
    assert (over.status, over.level) == (Status.AFFILIATE_OVERCLAIMED, Level.CRITICAL)


def test_infinite_critical_threshold_switches_critical_off() -> None:
    result = views_only(10_000, 1000, overclaim_critical_pct=math.inf)
    assert (result.status, result.level) == (Status.AFFILIATE_OVERCLAIMED, Level.HIGH)


def test_overridden_bands_are_honoured_exactly() -> None:
    s = {"base_tolerance_pct": 0.0, "low_max": 0.07, "medium_max": 0.13}
    assert views_only(1000, 1000, **s).status is Status.MATCHED
    assert views_only(1070, 1000, **s).status is Status.DISCREPANCY_LOW
    assert views_only(1130, 1000, **s).status is Status.DISCREPANCY_MEDIUM
    assert views_only(1131, 1000, **s).status is Status.DISCREPANCY_HIGH


# --- trust events, serialisation, validation ---------------------------------------------------------------

TRUST_EVENTS = [
    (Status.MATCHED, TrustEvent.PERFECT_MATCH),
    (Status.DISCREPANCY_LOW, TrustEvent.MINOR_DISCREPANCY),
    (Status.DISCREPANCY_MEDIUM, TrustEvent.MEDIUM_DISCREPANCY),
    (Status.DISCREPANCY_HIGH, TrustEvent.HIGH_DISCREPANCY),
    (Status.AFFILIATE_OVERCLAIMED, TrustEvent.OVERCLAIM),
    (Status.INCOMPLETE_PLATFORM_DATA, None),
    (Status.MISSING_PLATFORM_DATA, None),
    (Status.PENDING, None),
]


@pytest.mark.parametrize(("status", "event"), TRUST_EVENTS)
def test_trust_event_of_each_status(status: Status, event: TrustEvent | None) -> None:
    assert trust_event_for(status) == event
    assert trust_event_for(str(status)) == event
    assert status.is_conclusive is (event is not None)


def test_trust_event_in_classification_follows_status() -> None:
    assert views_only(1000, 1000).trust_event is TrustEvent.PERFECT_MATCH
    assert views_only(1300, 1000).trust_event is TrustEvent.OVERCLAIM


def test_enum_values_are_the_stored_strings() -> None:
    assert [str(s) for s in Status] == [
        "PENDING",
        "MATCHED",
        "DISCREPANCY_LOW",
        "DISCREPANCY_MEDIUM",
        "DISCREPANCY_HIGH",
        "AFFILIATE_OVERCLAIMED",
        "INCOMPLETE_PLATFORM_DATA",
        "MISSING_PLATFORM_DATA",
    ]
    assert [str(level) for level in Level] == ["LOW", "MEDIUM", "HIGH", "CRITICAL"]


def test_as_dict_is_plain_json() -> None:
    import json

    result = classify(
        claimed=Claim(1200, 10, 1), platform=Observed(1000, None, 1), hours_since_claim=1, settings=SETTINGS
    )
    data = json.loads(json.dumps(result.as_dict()))
    assert data["status"] == "AFFILIATE_OVERCLAIMED"
    assert data["level"] == "HIGH"
    assert data["trust_event"] == "OVERCLAIM"
    assert data["missing_fields"] == ["clicks"]
    assert data["metrics"][0] == {
        "metric": "views",
        "claimed": 1200,
        "observed": 1000,
        "diff": 0.2,
        "abs_count_diff": 200,
        "side": "OVER",
    }
    assert data["metrics"][1]["diff"] is None


@pytest.mark.parametrize("bad", [-1, 1.5, True, None, "3"])
def test_claim_counts_must_be_non_negative_ints(bad: Any) -> None:
    with pytest.raises(ValueError):
        Claim(bad, 0, 0)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_observed_counts_must_be_non_negative_ints_or_none(bad: Any) -> None:
    with pytest.raises(ValueError):
        Observed(0, bad, 0)


# --- properties --------------------------------------------------------------------------------------------

counts = st.one_of(st.integers(0, 30), st.integers(0, 10**9))
observed_counts = st.one_of(st.none(), counts)


@st.composite
def reconciliation_settings(draw: st.DrawFn) -> ReconciliationSettings:
    unit = st.floats(0, 1, allow_nan=False)
    base, low, medium = sorted(draw(st.tuples(unit, unit, unit)))
    threshold, critical = sorted(draw(st.tuples(st.floats(0, 10), st.floats(0, 10))))
    return make_settings(
        base_tolerance_pct=base,
        low_max=low,
        medium_max=medium,
        overclaim_threshold_pct=threshold,
        overclaim_critical_pct=draw(st.one_of(st.just(critical), st.just(math.inf))),
        growth_per_hour_pct=draw(st.floats(0, 5)),
        growth_cap_hours=draw(st.one_of(st.floats(0, 1000), st.just(math.inf))),
        abs_tolerance_views=draw(st.integers(0, 50)),
        abs_tolerance_clicks=draw(st.integers(0, 10)),
        abs_tolerance_conversions=draw(st.integers(0, 5)),
    )


LEVELS_BY_STATUS: dict[Status, set[Level | None]] = {
    Status.MATCHED: {None},
    Status.DISCREPANCY_LOW: {Level.LOW},
    Status.DISCREPANCY_MEDIUM: {Level.MEDIUM},
    Status.DISCREPANCY_HIGH: {Level.HIGH},
    Status.AFFILIATE_OVERCLAIMED: {Level.HIGH, Level.CRITICAL},
    Status.INCOMPLETE_PLATFORM_DATA: {None},
    Status.MISSING_PLATFORM_DATA: {None},
}


@hyp_settings(max_examples=400, deadline=None, database=None)
@given(
    claimed=st.builds(Claim, counts, counts, counts),
    platform=st.one_of(st.none(), st.builds(Observed, observed_counts, observed_counts, observed_counts)),
    hours=st.floats(allow_nan=False),
    s=reconciliation_settings(),
)
def test_classification_is_total_and_consistent(
    claimed: Claim, platform: Observed | None, hours: float, s: ReconciliationSettings
) -> None:
    result = classify(claimed=claimed, platform=platform, hours_since_claim=hours, settings=s)

    present = [m for m in result.metrics if m.present]
    assert result.status is not Status.PENDING
    assert result.level in LEVELS_BY_STATUS[result.status]
    assert result.trust_event == TRUST_EVENT_BY_STATUS[result.status]
    assert result.is_conclusive is (result.status in CONCLUSIVE_STATUSES)
    assert result.confidence_ratio == len(present) / 3
    assert len(result.missing_fields) == 3 - len(present)
    assert (result.status is Status.MISSING_PLATFORM_DATA) is (not present)
    if result.status is Status.INCOMPLETE_PLATFORM_DATA:
        assert 0 < len(present) < 3
    if len(present) == 3:
        assert result.status is not Status.INCOMPLETE_PLATFORM_DATA

    for m in present:
        assert m.diff is not None and m.abs_count_diff == abs(m.claimed - (m.observed or 0))
        if m.side is Side.OVER:
            assert m.diff > 0 and m.claimed > (m.observed or 0)
        elif m.side is Side.UNDER:
            assert -1 <= m.diff < 0 and m.claimed < (m.observed or 0)
        else:
            assert m.diff == 0
    assert 0 <= result.max_positive_diff <= result.max_abs_diff

    # Float rounding is monotonic, so stored diffs never contradict the status's bounds.
    if result.status is Status.AFFILIATE_OVERCLAIMED:
        assert result.max_positive_diff >= s.overclaim_threshold_pct
        assert (result.level is Level.CRITICAL) is (result.max_positive_diff >= s.overclaim_critical_pct)
    elif result.status in CONCLUSIVE_STATUSES:
        assert not any(m.side is Side.OVER and (m.diff or 0) >= s.overclaim_threshold_pct for m in present)
        bands = {
            Status.MATCHED: (-math.inf, s.base_tolerance_pct),
            Status.DISCREPANCY_LOW: (s.base_tolerance_pct, s.low_max),
            Status.DISCREPANCY_MEDIUM: (s.low_max, s.medium_max),
            Status.DISCREPANCY_HIGH: (s.medium_max, math.inf),
        }
        lower, upper = bands[result.status]
        assert lower <= result.max_abs_diff <= upper

"""Submission-time suspicion flags (DESIGN §4 "Data-quality flags"): every flag at its boundary."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from reconcile_project.config import DataQualitySettings
from reconciliation.rules import SEVERITY, Claim, Flag, FlagCode, Severity, has_high, suspicion_flags

DEFAULTS: dict[str, Any] = {
    "max_ctr": 0.35,
    "min_views_for_ctr": 100,
    "max_cvr": 0.60,
    "min_clicks_for_cvr": 20,
    "max_growth_pct": 5.0,
    "max_decrease_pct": 0.01,
    "evidence_required_views": 50_000,
}
SETTINGS = DataQualitySettings(**DEFAULTS)


def codes(
    claim: Claim,
    previous: Claim | None = None,
    *,
    evidence: bool = False,
    duplicate: bool = False,
    settings: DataQualitySettings = SETTINGS,
) -> list[FlagCode]:
    flags = suspicion_flags(
        claim=claim,
        previous=previous,
        evidence_present=evidence,
        duplicate_of_other_affiliate=duplicate,
        settings=settings,
    )
    return [f.code for f in flags]


def test_a_plausible_claim_has_no_flags() -> None:
    assert codes(Claim(10_000, 300, 20), Claim(9_000, 280, 18)) == []


CTR = [
    # views, clicks, flagged
    (100, 35, False),  # exactly 35 %: not above
    (100, 36, True),
    (1000, 350, False),
    (1000, 351, True),
    (99, 50, False),  # below min_views_for_ctr: too few views to judge
    (0, 0, False),
]


@pytest.mark.parametrize(("views", "clicks", "flagged"), CTR)
def test_high_ctr(views: int, clicks: int, flagged: bool) -> None:
    assert (FlagCode.HIGH_CTR in codes(Claim(views, clicks, 0))) is flagged


CVR = [
    # clicks, conversions, flagged
    (20, 12, False),  # exactly 60 %
    (20, 13, True),
    (100, 60, False),
    (100, 61, True),
    (19, 19, False),  # below min_clicks_for_cvr
]


@pytest.mark.parametrize(("clicks", "conversions", "flagged"), CVR)
def test_high_cvr(clicks: int, conversions: int, flagged: bool) -> None:
    assert (FlagCode.HIGH_CVR in codes(Claim(100_000, clicks, conversions), evidence=True)) is flagged


def test_ratio_checks_with_zero_minimums_do_not_divide_by_zero() -> None:
    s = DataQualitySettings(**{**DEFAULTS, "min_views_for_ctr": 0, "min_clicks_for_cvr": 0})
    assert codes(Claim(0, 0, 0), settings=s) == []


FUNNEL = [
    ((10, 10, 10), False),  # equal is not inverted
    ((9, 10, 0), True),  # views < clicks
    ((10, 9, 10), True),  # clicks < conversions
    ((0, 1, 2), True),  # both
]


@pytest.mark.parametrize(("counts", "flagged"), FUNNEL)
def test_funnel_inversion(counts: tuple[int, int, int], flagged: bool) -> None:
    assert (FlagCode.FUNNEL_INVERSION in codes(Claim(*counts))) is flagged


def test_funnel_inversion_names_both_inversions_once() -> None:
    flags = suspicion_flags(
        claim=Claim(0, 1, 2),
        previous=None,
        evidence_present=False,
        duplicate_of_other_affiliate=False,
        settings=SETTINGS,
    )
    [flag] = [f for f in flags if f.code is FlagCode.FUNNEL_INVERSION]
    assert flag.value == "views 0 < clicks 1; clicks 1 < conversions 2"


GROWTH = [
    # previous, current, flagged
    ((100, 10, 1), (600, 10, 1), False),  # exactly +500 %
    ((100, 10, 1), (601, 10, 1), True),
    ((100, 10, 1), (100, 60, 1), False),
    ((100, 10, 1), (100, 61, 1), True),
    ((100, 10, 1), (100, 10, 6), False),
    ((100, 10, 1), (100, 10, 7), True),
    ((0, 0, 0), (5, 0, 0), False),  # from 0 the base is 1: +500 %
    ((0, 0, 0), (6, 0, 0), True),
]


@pytest.mark.parametrize(("previous", "current", "flagged"), GROWTH)
def test_growth_spike(previous: tuple[int, int, int], current: tuple[int, int, int], flagged: bool) -> None:
    assert (FlagCode.GROWTH_SPIKE in codes(Claim(*current), Claim(*previous))) is flagged


DECREASE = [
    ((100, 10, 1), (99, 10, 1), False),  # exactly -1 %
    ((100, 10, 1), (98, 10, 1), True),
    ((1000, 10, 1), (990, 10, 1), False),
    ((1000, 10, 1), (989, 10, 1), True),
    ((1000, 10, 1), (1000, 9, 1), True),  # -10 % clicks
    ((1000, 10, 1), (1000, 10, 0), True),
    ((1000, 10, 1), (1000, 10, 1), False),
]


@pytest.mark.parametrize(("previous", "current", "flagged"), DECREASE)
def test_metric_decrease(previous: tuple[int, int, int], current: tuple[int, int, int], flagged: bool) -> None:
    assert (FlagCode.METRIC_DECREASE in codes(Claim(*current), Claim(*previous))) is flagged


def test_no_previous_claim_means_no_history_flags() -> None:
    assert codes(Claim(1000, 10, 1), None) == []


def test_growth_flag_reports_the_worst_metric() -> None:
    flags = suspicion_flags(
        claim=Claim(700, 100, 1),
        previous=Claim(100, 10, 1),
        evidence_present=False,
        duplicate_of_other_affiliate=False,
        settings=SETTINGS,
    )
    [flag] = flags
    assert flag.code is FlagCode.GROWTH_SPIKE
    assert flag.value == 9.0  # clicks +900 % beats views +600 %
    assert "views" in flag.message and "clicks" in flag.message


EVIDENCE = [
    (49_999, False, False),
    (50_000, False, True),  # views ≥ 50 000 without evidence
    (50_000, True, False),
    (1_000_000, True, False),
]


@pytest.mark.parametrize(("views", "evidence", "flagged"), EVIDENCE)
def test_missing_evidence(views: int, evidence: bool, flagged: bool) -> None:
    assert (FlagCode.MISSING_EVIDENCE in codes(Claim(views, 0, 0), evidence=evidence)) is flagged


@pytest.mark.parametrize("duplicate", [True, False])
def test_duplicate_claim(duplicate: bool) -> None:
    assert (FlagCode.DUPLICATE_CLAIM in codes(Claim(10, 1, 0), duplicate=duplicate)) is duplicate


def test_flags_come_in_a_fixed_order_one_per_code() -> None:
    result = codes(Claim(60_000, 60_001, 60_002), Claim(10, 10, 10), duplicate=True)
    assert result == [
        FlagCode.HIGH_CTR,
        FlagCode.HIGH_CVR,
        FlagCode.FUNNEL_INVERSION,
        FlagCode.GROWTH_SPIKE,
        FlagCode.MISSING_EVIDENCE,
        FlagCode.DUPLICATE_CLAIM,
    ]


@pytest.mark.parametrize(
    ("code", "severity"),
    [
        (FlagCode.HIGH_CTR, Severity.HIGH),
        (FlagCode.HIGH_CVR, Severity.MEDIUM),
        (FlagCode.FUNNEL_INVERSION, Severity.HIGH),
        (FlagCode.GROWTH_SPIKE, Severity.HIGH),
        (FlagCode.METRIC_DECREASE, Severity.MEDIUM),
        (FlagCode.MISSING_EVIDENCE, Severity.LOW),
        (FlagCode.DUPLICATE_CLAIM, Severity.HIGH),
    ],
)
def test_severities(code: FlagCode, severity: Severity) -> None:
    assert SEVERITY[code] is severity


def test_as_dict_round_trips_through_json() -> None:
    flags = suspicion_flags(
        claim=Claim(100, 40, 0),
        previous=None,
        evidence_present=True,
        duplicate_of_other_affiliate=False,
        settings=SETTINGS,
    )
    [flag] = flags
    assert json.loads(json.dumps(flag.as_dict())) == {
        "code": "HIGH_CTR",
        "severity": "HIGH",
        "message": "click-through rate 40.0 % above 35.0 %",
        "value": 0.4,
    }


def test_has_high() -> None:
    low = Flag(FlagCode.MISSING_EVIDENCE, Severity.LOW, "m", 1)
    high = Flag(FlagCode.DUPLICATE_CLAIM, Severity.HIGH, "m", True)
    assert not has_high([])
    assert not has_high([low])
    assert has_high([low, high])
    assert has_high([high.as_dict()])  # the stored form works too
    assert not has_high([low.as_dict()])


@hyp_settings(deadline=None, database=None)
@given(
    claim=st.builds(Claim, st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**9)),
    previous=st.one_of(
        st.none(), st.builds(Claim, st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**9))
    ),
    evidence=st.booleans(),
    duplicate=st.booleans(),
)
def test_flags_are_total_unique_and_serialisable(
    claim: Claim, previous: Claim | None, evidence: bool, duplicate: bool
) -> None:
    flags = suspicion_flags(
        claim=claim,
        previous=previous,
        evidence_present=evidence,
        duplicate_of_other_affiliate=duplicate,
        settings=SETTINGS,
    )
    assert len({f.code for f in flags}) == len(flags)
    assert all(f.severity is SEVERITY[f.code] for f in flags)
    json.dumps([f.as_dict() for f in flags])
    if previous is None:
        assert not {FlagCode.GROWTH_SPIKE, FlagCode.METRIC_DECREASE} & {f.code for f in flags}

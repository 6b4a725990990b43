"""Trust arithmetic (DESIGN §4 "Trust"): deltas, clamping, the ledger invariant, buckets."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from reconcile_project.config import TrustScoring
from reconciliation.rules import (
    Status,
    TrustBucket,
    TrustEvent,
    apply_trust,
    bucket,
    correction_delta,
    crossed_into_critical,
    initial_score,
    to_score,
    trust_delta_for,
    trust_event_for,
)

DEFAULTS: dict[str, Any] = {
    "initial_score": 0.50,
    "perfect_match": 0.01,
    "minor_discrepancy": -0.01,
    "medium_discrepancy": -0.03,
    "high_discrepancy": -0.05,
    "overclaim": -0.10,
    "high_trust_min": 0.75,
    "normal_min": 0.50,
    "low_trust_min": 0.25,
}


def make_settings(**overrides: Any) -> TrustScoring:
    return TrustScoring(**{**DEFAULTS, **overrides})


SETTINGS = make_settings()
D = Decimal


@pytest.mark.parametrize(
    ("event", "delta"),
    [
        (TrustEvent.PERFECT_MATCH, D("0.0100")),
        (TrustEvent.MINOR_DISCREPANCY, D("-0.0100")),
        (TrustEvent.MEDIUM_DISCREPANCY, D("-0.0300")),
        (TrustEvent.HIGH_DISCREPANCY, D("-0.0500")),
        (TrustEvent.OVERCLAIM, D("-0.1000")),
        ("OVERCLAIM", D("-0.1000")),
        (None, D("0")),
    ],
)
def test_nominal_deltas(event: TrustEvent | str | None, delta: Decimal) -> None:
    result = trust_delta_for(event, SETTINGS)
    assert result == delta
    assert result.as_tuple().exponent == -4  # already at the column's precision


def test_unknown_event_is_an_error() -> None:
    with pytest.raises(ValueError):
        trust_delta_for("initial_score", SETTINGS)


def test_overridden_delta_is_quantised() -> None:
    assert trust_delta_for(TrustEvent.OVERCLAIM, make_settings(overclaim=-0.12345)) == D("-0.1234")


def test_initial_score() -> None:
    assert initial_score(SETTINGS) == D("0.5000")
    assert initial_score(make_settings(initial_score=0.0)) == D("0.0000")


APPLY = [
    # score, nominal, effective, after
    ("0.5000", "0.0100", "0.0100", "0.5100"),
    ("0.5000", "-0.1000", "-0.1000", "0.4000"),
    ("0.9950", "0.0100", "0.0050", "1.0000"),  # clamped at 1
    ("1.0000", "0.0100", "0.0000", "1.0000"),
    ("0.0500", "-0.1000", "-0.0500", "0.0000"),  # clamped at 0
    ("0.0000", "-0.1000", "0.0000", "0.0000"),  # a score of 0 is a score, not "unset"
    ("0.0000", "0.0100", "0.0100", "0.0100"),  # and it can recover from 0
    ("0.0000", "0.0000", "0.0000", "0.0000"),
    ("1.0000", "-0.1100", "-0.1100", "0.8900"),  # a re-check correction
]


@pytest.mark.parametrize(("score", "nominal", "effective", "after"), APPLY)
def test_apply_trust_clamps_to_unit_interval(score: str, nominal: str, effective: str, after: str) -> None:
    change = apply_trust(score=D(score), nominal=D(nominal))
    assert change.nominal == D(nominal)
    assert change.effective == D(effective)
    assert change.score_after == D(after)


def test_apply_trust_accepts_zero_decimal_without_substituting_a_default() -> None:
    change = apply_trust(score=D(0), nominal=D("0.01"))
    assert change.score_after == D("0.0100")


def test_to_score_goes_through_str_for_floats() -> None:
    assert to_score(0.1) == D("0.1000")
    assert to_score("0.33335") == D("0.3334")  # half-even at the fifth place
    assert to_score(D("0.33345")) == D("0.3334")


CORRECTIONS = [
    # ledger sum so far, new status, correction
    ("0", Status.MATCHED, "0.0100"),  # first verdict
    ("0.0100", Status.MATCHED, "0.0000"),  # a re-check that confirms adds nothing
    ("0.0100", Status.AFFILIATE_OVERCLAIMED, "-0.1100"),  # MATCHED -> OVERCLAIMED: -0.10 - 0.01
    ("-0.1000", Status.MATCHED, "0.1100"),  # and back
    ("-0.0300", Status.DISCREPANCY_HIGH, "-0.0200"),
    ("-0.1000", Status.INCOMPLETE_PLATFORM_DATA, "0"),  # not conclusive: the last verdict stands
    ("-0.1000", Status.MISSING_PLATFORM_DATA, "0"),
    ("0", Status.MISSING_PLATFORM_DATA, "0"),
]


@pytest.mark.parametrize(("ledger_sum", "status", "correction"), CORRECTIONS)
def test_correction_delta(ledger_sum: str, status: Status, correction: str) -> None:
    result = correction_delta(ledger_sum=D(ledger_sum), new_status_event=trust_event_for(status), settings=SETTINGS)
    assert result == D(correction)


BUCKETS = [
    ("1.0000", TrustBucket.HIGH_TRUST),
    ("0.7500", TrustBucket.HIGH_TRUST),
    ("0.7499", TrustBucket.NORMAL),
    ("0.5000", TrustBucket.NORMAL),
    ("0.4999", TrustBucket.LOW_TRUST),
    ("0.2500", TrustBucket.LOW_TRUST),
    ("0.2499", TrustBucket.CRITICAL),
    ("0.0000", TrustBucket.CRITICAL),
]


@pytest.mark.parametrize(("score", "expected"), BUCKETS)
def test_buckets_at_each_bound(score: str, expected: TrustBucket) -> None:
    assert bucket(D(score), SETTINGS) is expected


def test_bucket_values_are_the_metric_labels() -> None:
    assert [str(b) for b in TrustBucket] == ["high_trust", "normal", "low_trust", "critical"]


def test_bucket_bound_that_is_not_a_binary_fraction_is_inclusive() -> None:
    # Decimal("0.1") < 0.1 as floats compare; the bound must mean the decimal 0.1.
    s = make_settings(low_trust_min=0.1)
    assert bucket(D("0.1000"), s) is TrustBucket.LOW_TRUST
    assert bucket(D("0.0999"), s) is TrustBucket.CRITICAL


CROSSINGS = [
    ("0.2600", "0.2499", True),
    ("0.2500", "0.2400", True),
    ("0.3000", "0.0000", True),
    ("0.2400", "0.1400", False),  # already critical: no second alert
    ("0.2499", "0.2500", False),  # leaving critical
    ("0.2500", "0.2500", False),
    ("0.5000", "0.4000", False),
]


@pytest.mark.parametrize(("before", "after", "crossed"), CROSSINGS)
def test_crossed_into_critical(before: str, after: str, crossed: bool) -> None:
    assert crossed_into_critical(D(before), D(after), SETTINGS) is crossed


# --- property: the ledger invariant ------------------------------------------------------------------------

OUTCOMES = [s for s in Status if s is not Status.PENDING]
deltas = st.decimals(min_value=D("-0.5"), max_value=D("0"), places=4).map(float)


@st.composite
def trust_settings(draw: st.DrawFn) -> TrustScoring:
    return make_settings(
        perfect_match=draw(st.decimals(min_value=D("0"), max_value=D("0.5"), places=4).map(float)),
        minor_discrepancy=draw(deltas),
        medium_discrepancy=draw(deltas),
        high_discrepancy=draw(deltas),
        overclaim=draw(deltas),
    )


@hyp_settings(max_examples=300, deadline=None, database=None)
@given(
    s=trust_settings(),
    start=st.decimals(min_value=D("0"), max_value=D("1"), places=4),
    outcomes=st.lists(st.sampled_from(OUTCOMES), max_size=30),
)
def test_ledger_sums_to_latest_conclusive_delta_and_score_stays_in_range(
    s: TrustScoring, start: Decimal, outcomes: list[Status]
) -> None:
    ledger: list[Decimal] = []
    score = start
    last_conclusive: Status | None = None
    for status in outcomes:
        event = trust_event_for(status)
        delta = correction_delta(ledger_sum=sum(ledger, D(0)), new_status_event=event, settings=s)
        change = apply_trust(score=score, nominal=delta)
        assert change.effective == change.score_after - score
        assert abs(change.effective) <= abs(change.nominal)
        ledger.append(change.nominal)
        score = change.score_after
        if status.is_conclusive:
            last_conclusive = status
        else:
            assert delta == 0

        expected = D(0) if last_conclusive is None else trust_delta_for(trust_event_for(last_conclusive), s)
        assert sum(ledger, D(0)) == expected
        assert D(0) <= score <= D(1)
        assert score.as_tuple().exponent == -4

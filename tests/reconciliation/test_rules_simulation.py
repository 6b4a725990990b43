"""The pure parts of rule changes: fingerprints, the fast classifier, the simulation's counts.

Pure: runs without Django (``pytest -p no:django``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from reconcile_project.config import GROUPS, OVERRIDABLE, RuleSet, build_ruleset
from reconciliation.rules import Claim, Observed, classify
from reconciliation.rules.simulation import ROW_COLUMNS, FastClassifier, Simulation

# Defaults as written in config.py, never read from this process's environment.
BASE = {name: GROUPS[name][1].model_validate({}) for name in OVERRIDABLE}


def ruleset(overrides: dict[str, Any] | None = None) -> RuleSet:
    return build_ruleset(BASE, overrides)


CURRENT = ruleset()


# --- fingerprints ------------------------------------------------------------------------------------


def test_fingerprint_is_a_sha256_hex_and_equal_for_equal_rule_sets() -> None:
    assert len(CURRENT.fingerprint) == 64 and int(CURRENT.fingerprint, 16) >= 0
    assert CURRENT.short_fingerprint == CURRENT.fingerprint[:12]
    # Built again, with overrides that restate the defaults, and in other spellings of the same numbers.
    same = [
        ruleset(),
        ruleset({}),
        ruleset({"RECONCILIATION_SETTINGS": {"growth_cap_hours": 24}}),
        ruleset({"RECONCILIATION_SETTINGS": {"growth_cap_hours": 24.0, "low_max": "0.1"}}),
        ruleset({"TRUST_SCORING": {"overclaim": -0.1}, "RETRY_POLICY": {"max_attempts": 5.0}}),
    ]
    assert {r.fingerprint for r in same} == {CURRENT.fingerprint}


def test_fingerprint_does_not_depend_on_key_order() -> None:
    a = ruleset({"RECONCILIATION_SETTINGS": {"low_max": 0.12, "medium_max": 0.3}, "TRUST_SCORING": {"overclaim": -0.2}})
    b = ruleset({"TRUST_SCORING": {"overclaim": -0.2}, "RECONCILIATION_SETTINGS": {"medium_max": 0.3, "low_max": 0.12}})
    assert a.fingerprint == b.fingerprint


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    return round(value * 0.5 + 0.001, 6) if value > 0 else round(value * 1.1 - 0.001, 6)


FIELDS = [(group, field) for group in sorted(OVERRIDABLE) for field in GROUPS[group][1].model_fields]


@pytest.mark.parametrize(("group", "field"), FIELDS)
def test_fingerprint_differs_when_any_single_value_differs(group: str, field: str) -> None:
    value = getattr(BASE[group], field)
    other = _changed(value)
    # Keep the bands ordered where a field is tied to another one.
    patch: dict[str, Any] = {field: other}
    if group == "RECONCILIATION_SETTINGS" and field == "base_tolerance_pct":
        patch = {field: 0.04}
    if group == "TRUST_SCORING" and field in ("low_trust_min", "normal_min", "high_trust_min"):
        patch = {field: {"low_trust_min": 0.2, "normal_min": 0.55, "high_trust_min": 0.8}[field]}
    changed = ruleset({group: patch})
    assert getattr(getattr(changed, GROUPS[group][0] or ""), field) != value
    assert changed.fingerprint != CURRENT.fingerprint


def test_fingerprints_of_different_rule_sets_are_all_different() -> None:
    sets = [ruleset({"RECONCILIATION_SETTINGS": {"low_max": 0.06 + i / 1000}}) for i in range(40)]
    assert len({r.fingerprint for r in sets}) == 40


# --- the fast classifier -----------------------------------------------------------------------------

counts = st.integers(0, 5000)
observed = st.one_of(st.none(), counts)
hours = st.one_of(st.floats(0, 60, allow_nan=False), st.sampled_from([0.0, 0.5, 1.0, 24.0, 1e-20, 100.0]))
tolerances = st.sampled_from([0.0, 0.05, 0.08, 0.1])


@hyp_settings(max_examples=3000, deadline=None)
@given(
    cv=counts,
    cc=counts,
    ccv=counts,
    pv=observed,
    pc=observed,
    pcv=observed,
    h=hours,
    base=tolerances,
    growth=st.sampled_from([0.0, 0.1, 0.05, 0.3]),
)
@example(cv=120, cc=100, ccv=10, pv=100, pc=100, pcv=10, h=0.0, base=0.05, growth=0.1)  # exactly 20 % over
@example(cv=150, cc=100, ccv=10, pv=100, pc=100, pcv=10, h=0.0, base=0.05, growth=0.1)  # exactly 50 % over
@example(cv=1000, cc=100, ccv=10, pv=1100, pc=100, pcv=10, h=1.0, base=0.05, growth=0.1)  # P/G == C
@example(cv=950, cc=100, ccv=10, pv=1000, pc=100, pcv=10, h=0.0, base=0.05, growth=0.1)  # exactly -5 %
@example(cv=990, cc=100, ccv=10, pv=1100, pc=100, pcv=10, h=0.0, base=0.1, growth=0.1)  # floor edge
def test_fast_classifier_agrees_with_the_exact_rules(
    cv: int, cc: int, ccv: int, pv: int | None, pc: int | None, pcv: int | None, h: float, base: float, growth: float
) -> None:
    if pv is None and pc is None and pcv is None:
        pv = 0
    settings = ruleset(
        {"RECONCILIATION_SETTINGS": {"base_tolerance_pct": base, "growth_per_hour_pct": growth}}
    ).reconciliation
    exact = classify(claimed=Claim(cv, cc, ccv), platform=Observed(pv, pc, pcv), hours_since_claim=h, settings=settings)
    fast = FastClassifier(settings).classify((cv, cc, ccv), (pv, pc, pcv), h)
    assert (fast.status, fast.level) == (str(exact.status), None if exact.level is None else str(exact.level))
    for got, want in zip(fast.diffs, exact.diffs.values(), strict=True):
        assert (got is None) == (want is None)
        if got is not None and want is not None:
            assert got == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_fast_classifier_decides_exact_boundaries_exactly() -> None:
    fast = FastClassifier(CURRENT.reconciliation)
    assert fast.classify((1200, 100, 10), (1000, 100, 10), 0.0).status == "AFFILIATE_OVERCLAIMED"
    assert fast.classify((1050, 100, 10), (1000, 100, 10), 0.0).status == "MATCHED"
    assert fast.classify((1100, 100, 10), (1000, 100, 10), 0.0).status == "DISCREPANCY_LOW"
    assert fast.exact_calls == 3  # each sits on a boundary: decided by the exact rules


# --- the simulation ----------------------------------------------------------------------------------


def row(
    report_id: int,
    claimed: tuple[int, int, int],
    platform: tuple[int | None, int | None, int | None] | None,
    *,
    status: str | None = None,
    level: str | None = None,
    ledger: int | None = None,
    affiliate: int = 1,
    campaign: int = 1,
    hours: float = 0.0,
    fingerprint: str = "",
    rules: RuleSet = CURRENT,
) -> tuple:
    """A streamed row whose stored verdict is what ``rules`` decide (unless given)."""
    diffs: tuple[float | None, ...] = (None, None, None)
    if platform is not None and status is None:
        result = classify(
            claimed=Claim(*claimed),
            platform=Observed(*platform),
            hours_since_claim=hours,
            settings=rules.reconciliation,
        )
        status = str(result.status)
        level = None if result.level is None else str(result.level)
        diffs = tuple(result.diffs.values())
        if ledger is None and result.trust_event is not None:
            ledger = int(Decimal(str(rules.trust.delta(str(result.trust_event)))) * 10_000)
    values = {
        "report_id": report_id,
        "campaign_id": campaign,
        "affiliate_id": affiliate,
        "claimed_views": claimed[0],
        "claimed_clicks": claimed[1],
        "claimed_conversions": claimed[2],
        "status": status,
        "level": level,
        "views_diff": diffs[0],
        "clicks_diff": diffs[1],
        "conversions_diff": diffs[2],
        "ledger_units": ledger,
        "fingerprint": fingerprint or rules.fingerprint,
        "platform_views": None if platform is None else platform[0],
        "platform_clicks": None if platform is None else platform[1],
        "platform_conversions": None if platform is None else platform[2],
        "seconds_since_claim": None if platform is None else hours * 3600,
    }
    return tuple(values[c] for c in ROW_COLUMNS)


def simulate(rows: list[tuple], proposed: RuleSet, scores: dict[int, str] | None = None) -> dict[str, Any]:
    sim = Simulation(proposed={}, default=proposed, trust_before=CURRENT.trust, trust_after=proposed.trust)
    sim.add_rows(rows)
    affiliates = {r[ROW_COLUMNS.index("affiliate_id")] for r in rows}
    return sim.result(scores={a: Decimal((scores or {}).get(a, "0.5")) for a in affiliates})


def sample_rows() -> list[tuple]:
    """Claims across every status, decided by the current rules."""
    rows = []
    n = 0
    for views in range(700, 1700, 7):
        for hours in (0.0, 0.5, 3.0, 30.0):
            n += 1
            rows.append(row(n, (views, 100, 10), (1000, 100, 10), hours=hours, affiliate=n % 7))
    rows.append(row(n + 1, (1000, 100, 10), (1000, None, 10)))  # INCOMPLETE
    rows.append(row(n + 2, (1000, 100, 10), None, status="MISSING_PLATFORM_DATA"))
    rows.append(row(n + 3, (1000, 100, 10), None, status="PENDING"))
    return rows


def test_the_current_rules_give_the_identity_matrix() -> None:
    rows = sample_rows()
    result = simulate(rows, CURRENT)
    assert result["claims"] == len(rows) and result["identity"] is True
    assert result["changed_status"] == 0 and result["level_changes"] == []
    assert all(cell["from"] == cell["to"] and cell["pct_of_from"] == 100.0 for cell in result["matrix"])
    assert {cell["from"] for cell in result["matrix"]} >= {
        "MATCHED",
        "DISCREPANCY_LOW",
        "DISCREPANCY_MEDIUM",
        "DISCREPANCY_HIGH",
        "AFFILIATE_OVERCLAIMED",
        "INCOMPLETE_PLATFORM_DATA",
        "MISSING_PLATFORM_DATA",
        "PENDING",
    }
    assert result["diffs"]["before"] == result["diffs"]["after"]
    assert result["trust"]["affiliates_moved"] == 0 and result["alerts"] == {"would_raise": {}, "no_longer_raised": {}}
    assert result["decided_under"] == {CURRENT.fingerprint: len(rows)}


def test_a_tolerance_change_moves_exactly_the_hand_computed_claims() -> None:
    # Platform 1000 views, claims from 900 to 1100 views in steps of 10, fetched at the claim (no growth).
    # Diffs: over side (C-1000)/1000, under side (C-1000)/1000. Views floor 10: |C-1000| <= 10 is 0.
    rows = [row(i, (views, 100, 10), (1000, 100, 10)) for i, views in enumerate(range(900, 1101, 10))]
    proposed = ruleset({"RECONCILIATION_SETTINGS": {"base_tolerance_pct": 0.08}})
    result = simulate(rows, proposed)
    # MATCHED today: |diff| <= 5 %: 950..1050 (11 claims). LOW: 5 % < |diff| <= 10 %: 900..940 and
    # 1060..1100 (10 claims). With 8 %: 920, 930, 940, 1060, 1070, 1080 (exactly 8 %, inclusive) move to
    # MATCHED: 6 claims; 900, 910, 1090, 1100 stay LOW.
    moved = [e["claimed"]["views"] for e in result["examples"]]
    assert sorted(moved) == [920, 930, 940, 1060, 1070, 1080]
    assert result["changed_status"] == 6
    matrix = {(c["from"], c["to"]): c["claims"] for c in result["matrix"]}
    assert matrix == {
        ("MATCHED", "MATCHED"): 11,
        ("DISCREPANCY_LOW", "DISCREPANCY_LOW"): 4,
        ("DISCREPANCY_LOW", "MATCHED"): 6,
    }
    assert result["changed_status_pct"] == round(600 / 21, 2)
    # Trust: each of the 6 goes from MINOR_DISCREPANCY (-0.01) to PERFECT_MATCH (+0.01): +0.02 each.
    assert result["trust"]["largest_moves"] == [
        {
            "affiliate_id": 1,
            "score_before": "0.5000",
            "score_after": "0.6200",
            "change": "0.1200",
            "bucket_before": "normal",
            "bucket_after": "normal",
        }
    ]
    assert result["alerts"] == {"would_raise": {}, "no_longer_raised": {}}


def test_trust_bucket_crossings_and_alerts_are_counted() -> None:
    # Affiliate 1 at 0.26: two claims 30 % over (HIGH over-claim today: -0.10 each, already in its ledger).
    # A stricter over-claim line makes them CRITICAL: same delta, but the alert is raised again.
    # Affiliate 2 at 0.26: three claims 15 % over (MEDIUM, -0.03 each) become over-claims at 0.15 (-0.10):
    # -0.07 × 3 = -0.21 → 0.05, into critical: a LOW_TRUST alert.
    rows = [
        row(1, (1300, 100, 10), (1000, 100, 10), affiliate=1),
        row(2, (1300, 100, 10), (1000, 100, 10), affiliate=1),
        row(3, (1150, 100, 10), (1000, 100, 10), affiliate=2),
        row(4, (1150, 100, 10), (1000, 100, 10), affiliate=2),
        row(5, (1150, 100, 10), (1000, 100, 10), affiliate=2),
        row(6, (1180, 100, 10), (1000, None, 10), affiliate=3),  # INCOMPLETE today
    ]
    proposed = ruleset({"RECONCILIATION_SETTINGS": {"overclaim_threshold_pct": 0.15, "overclaim_critical_pct": 0.25}})
    result = simulate(rows, proposed, scores={1: "0.26", 2: "0.26", 3: "0.8"})
    matrix = {(c["from"], c["to"]): c["claims"] for c in result["matrix"]}
    assert matrix == {
        ("AFFILIATE_OVERCLAIMED", "AFFILIATE_OVERCLAIMED"): 2,
        ("DISCREPANCY_MEDIUM", "AFFILIATE_OVERCLAIMED"): 3,
        ("INCOMPLETE_PLATFORM_DATA", "AFFILIATE_OVERCLAIMED"): 1,
    }
    assert result["changed_level"] == 2  # HIGH → CRITICAL over-claims
    assert result["alerts"]["would_raise"] == {"OVERCLAIM": 6, "LOW_TRUST": 1}
    trust = result["trust"]
    assert trust["into_critical"] == 1 and trust["affiliates_crossing_buckets"] == 2
    assert {(c["from"], c["to"]) for c in trust["crossings"]} == {("low_trust", "critical"), ("high_trust", "normal")}
    moves = {m["affiliate_id"]: m for m in trust["largest_moves"]}
    assert moves[2]["score_after"] == "0.0500" and 1 not in moves and moves[3]["change"] == "-0.1000"


def test_alerts_no_longer_raised_when_a_looser_rule_clears_them() -> None:
    rows = [row(1, (1300, 100, 10), (1000, 100, 10)), row(2, (700, 100, 10), (1000, 100, 10))]
    proposed = ruleset(
        {"RECONCILIATION_SETTINGS": {"overclaim_threshold_pct": 0.4, "overclaim_critical_pct": 0.6, "medium_max": 0.4}}
    )
    result = simulate(rows, proposed)
    assert result["alerts"]["no_longer_raised"] == {"OVERCLAIM": 1, "HIGH_DISCREPANCY": 1}
    assert {(c["from"], c["to"]) for c in result["matrix"]} == {
        ("AFFILIATE_OVERCLAIMED", "DISCREPANCY_MEDIUM"),
        ("DISCREPANCY_HIGH", "DISCREPANCY_MEDIUM"),
    }


def test_a_conclusive_verdict_is_not_replaced_by_an_inconclusive_outcome() -> None:
    # Stored as an over-claim on a partial snapshot (over-claim is checked before missing data); under
    # looser rules the same snapshot cannot conclude, and a re-check keeps the verdict.
    rows = [row(1, (1300, 100, 10), (1000, None, 10))]
    assert rows[0][ROW_COLUMNS.index("status")] == "AFFILIATE_OVERCLAIMED"
    proposed = ruleset({"RECONCILIATION_SETTINGS": {"overclaim_threshold_pct": 0.4, "overclaim_critical_pct": 0.6}})
    result = simulate(rows, proposed)
    assert result["identity"] is True and result["trust"]["affiliates_moved"] == 0


def test_claims_decided_under_older_rules_show_in_the_matrix_and_by_fingerprint() -> None:
    older = ruleset({"RECONCILIATION_SETTINGS": {"base_tolerance_pct": 0.08}})
    rows = [row(1, (1070, 100, 10), (1000, 100, 10), rules=older), row(2, (1070, 100, 10), (1000, 100, 10))]
    result = simulate(rows, CURRENT)
    assert result["decided_under"] == {older.fingerprint: 1, CURRENT.fingerprint: 1}
    assert {(c["from"], c["to"]): c["claims"] for c in result["matrix"]} == {
        ("MATCHED", "DISCREPANCY_LOW"): 1,
        ("DISCREPANCY_LOW", "DISCREPANCY_LOW"): 1,
    }


def test_rule_sets_apply_per_campaign() -> None:
    strict = ruleset({"RECONCILIATION_SETTINGS": {"base_tolerance_pct": 0.0, "abs_tolerance_views": 0}})
    rows = [row(1, (1030, 100, 10), (1000, 100, 10), campaign=1), row(2, (1030, 100, 10), (1000, 100, 10), campaign=2)]
    sim = Simulation(proposed={2: strict}, default=CURRENT, trust_before=CURRENT.trust, trust_after=CURRENT.trust)
    sim.add_rows(rows)
    result = sim.result(scores={1: Decimal("0.5")})
    assert [e["report_id"] for e in result["examples"]] == [2]

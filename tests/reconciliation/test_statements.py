"""The campaign statement selector, on claims reconciled through the real attempt services.

The fixture (``build``) is shared with the API tests: two affiliates, two platforms, a campaign whose
rule overrides turn a 25 % over-claim into MATCHED, a re-check that changes a verdict, a re-check that
comes back incomplete (the verdict and its numbers stay those of the earlier attempt), a MISSING claim,
a PENDING one, and claims that must not count (before the period, another campaign).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.utils import timezone

from alerts.models import Alert
from platforms.adapters.base import PlatformMetrics
from platforms.fetcher import FetchOutcome
from reconciliation.models import Affiliate, AffiliateReport, Campaign, ReconciliationLog
from reconciliation.services.attempts import AttemptResult, attempt_run
from reconciliation.statements import Period, campaign_statement, claims_in_period, statement_claims, verdict_snapshots
from tests import factories

pytestmark = pytest.mark.django_db

#: MATCHED within 30 %: 2,000 claimed against 1,600 verified is MATCHED here, AFFILIATE_OVERCLAIMED by default.
OVERRIDES = {
    "RECONCILIATION_SETTINGS": {
        "base_tolerance_pct": 0.30,
        "low_max": 0.30,
        "medium_max": 0.30,
        "overclaim_threshold_pct": 0.30,
        "overclaim_critical_pct": 0.60,
    }
}


def ok(views: int | None, clicks: int | None, conversions: int | None) -> FetchOutcome:
    metrics = PlatformMetrics(views, clicks, conversions, raw={"test": True})
    return FetchOutcome(metrics=metrics, missing_fields=metrics.missing_fields(), attempts=1, duration_seconds=0.01)


def not_found() -> FetchOutcome:
    return FetchOutcome(metrics=None, error_code="not_found", error_message="gone", attempts=1)


def reconcile(report: AffiliateReport, outcome: FetchOutcome, at: dt.datetime) -> str:
    result = attempt_run(report_id=report.pk, worker="test", fetcher=lambda _c: outcome, clock=lambda: at)
    assert isinstance(result, AttemptResult), result
    return result.status


@dataclass
class Fixture:
    campaign: Campaign
    alpha: Affiliate
    bravo: Affiliate
    day1: dt.date
    day2: dt.date
    reports: dict[str, AffiliateReport]

    def period(self) -> Period:
        start = timezone.make_aware(dt.datetime.combine(self.day1, dt.time.min))
        return Period(start=start, end=timezone.now() + dt.timedelta(minutes=1))


def claim(post_, views: int, at: dt.datetime) -> AffiliateReport:
    return factories.report(
        post=post_, claimed_views=views, claimed_clicks=views // 10, claimed_conversions=views // 100, submitted_at=at
    )


def build(*, alpha_name: str = "Alpha", bravo_name: str = "Bravo", client=None) -> Fixture:
    now = timezone.now()
    day1, day2 = (now - dt.timedelta(days=2)).date(), (now - dt.timedelta(days=1)).date()
    t1 = timezone.make_aware(dt.datetime.combine(day1, dt.time(10)))
    t2 = timezone.make_aware(dt.datetime.combine(day2, dt.time(9)))
    campaign = factories.campaign(
        platforms=("reddit", "youtube"),
        rule_overrides=OVERRIDES,
        start_date=day1 - dt.timedelta(days=30),
        **({"client": client} if client else {}),
    )
    alpha, bravo = factories.affiliate(name=alpha_name), factories.affiliate(name=bravo_name)
    reddit, youtube = factories.platform("reddit"), factories.platform("youtube")

    def post_(affiliate: Affiliate, platform=reddit, camp: Campaign = campaign):
        return factories.post(campaign=camp, affiliate=affiliate, platform=platform)

    r = {
        # MATCHED, then a re-check finds half the views: AFFILIATE_OVERCLAIMED on the re-check's numbers.
        "a_recheck": claim(post_(alpha), 1000, t1),
        # 25 % over: MATCHED under the campaign's overrides.
        "a_override": claim(post_(alpha), 2000, t1 + dt.timedelta(hours=1)),
        "a_missing": claim(post_(alpha), 300, t2),
        "a_pending": claim(post_(alpha, youtube), 400, t1 + dt.timedelta(hours=2)),
        # MATCHED, then a re-check with clicks missing (INCOMPLETE): the verdict stays, with attempt 1's numbers.
        "b_incomplete_recheck": claim(post_(bravo), 1000, t2 + dt.timedelta(hours=1)),
        # Not in the statement: before the period, and another campaign's claim.
        "b_before": claim(post_(bravo), 5000, t1 - dt.timedelta(days=5)),
        "a_other_campaign": claim(post_(alpha, camp=factories.campaign(platforms=("reddit",))), 7000, t1),
    }
    sec = dt.timedelta(seconds=1)
    recheck = dt.timedelta(hours=6, seconds=1)
    assert reconcile(r["a_recheck"], ok(1000, 100, 10), t1 + sec) == "MATCHED"
    assert reconcile(r["a_recheck"], ok(500, 50, 5), t1 + recheck) == "AFFILIATE_OVERCLAIMED"
    assert reconcile(r["a_override"], ok(1600, 160, 16), r["a_override"].submitted_at + sec) == "MATCHED"
    assert reconcile(r["a_missing"], not_found(), t2 + sec) == "MISSING_PLATFORM_DATA"
    at = r["b_incomplete_recheck"].submitted_at
    assert reconcile(r["b_incomplete_recheck"], ok(1000, 100, 10), at + sec) == "MATCHED"
    assert reconcile(r["b_incomplete_recheck"], ok(990, None, 10), at + recheck) == "INCOMPLETE_PLATFORM_DATA"
    assert ReconciliationLog.objects.get(report=r["b_incomplete_recheck"]).status == "MATCHED"
    assert reconcile(r["b_before"], ok(5000, 500, 50), r["b_before"].submitted_at + sec) == "MATCHED"
    assert reconcile(r["a_other_campaign"], ok(1, 1, 1), t1 + sec) == "AFFILIATE_OVERCLAIMED"
    # Alerts that must not count: acknowledged, and on a claim before the period.
    factories.alert(report=r["a_override"], affiliate=alpha, status=Alert.Status.ACKNOWLEDGED)
    factories.alert(report=r["b_before"], affiliate=bravo, alert_type=Alert.Type.MISSING_DATA)
    return Fixture(campaign=campaign, alpha=alpha, bravo=bravo, day1=day1, day2=day2, reports=r)


def zero_statuses(**counts: int) -> dict[str, int]:
    from reconciliation.statements import STATUSES

    return {s: counts.get(s, 0) for s in STATUSES}


#: By hand, from the fixture above.
EXPECTED_ROWS = [
    {
        "affiliate": "alpha",
        "platform": "reddit",
        "claims": 3,
        "verified_claims": 2,
        "claimed": {"views": 1000 + 2000 + 300, "clicks": 100 + 200 + 30, "conversions": 10 + 20 + 3},
        "verified": {"views": 500 + 1600, "clicks": 50 + 160, "conversions": 5 + 16},
        "statuses": zero_statuses(AFFILIATE_OVERCLAIMED=1, MATCHED=1, MISSING_PLATFORM_DATA=1),
        "open_alerts": 1,  # the re-check's OVERCLAIM
    },
    {
        "affiliate": "alpha",
        "platform": "youtube",
        "claims": 1,
        "verified_claims": 0,
        "claimed": {"views": 400, "clicks": 40, "conversions": 4},
        "verified": {"views": 0, "clicks": 0, "conversions": 0},
        "statuses": zero_statuses(PENDING=1),
        "open_alerts": 0,
    },
    {
        "affiliate": "bravo",
        "platform": "reddit",
        "claims": 1,
        "verified_claims": 1,
        "claimed": {"views": 1000, "clicks": 100, "conversions": 10},
        "verified": {"views": 1000, "clicks": 100, "conversions": 10},
        "statuses": zero_statuses(MATCHED=1),
        "open_alerts": 0,
    },
]
EXPECTED_TOTAL = {
    "claims": 5,
    "verified_claims": 3,
    "verification_rate": 0.6,
    "claimed": {"views": 4700, "clicks": 470, "conversions": 47},
    "verified": {"views": 3100, "clicks": 310, "conversions": 31},
    "statuses": zero_statuses(AFFILIATE_OVERCLAIMED=1, MATCHED=2, MISSING_PLATFORM_DATA=1, PENDING=1),
    "open_alerts": 1,
}


def test_statement_equals_the_hand_computation() -> None:
    fx = build()
    statement = campaign_statement(campaign=fx.campaign, period=fx.period())

    ids = {"alpha": fx.alpha.pk, "bravo": fx.bravo.pk}
    got = [
        {
            "affiliate": "alpha" if row.affiliate_id == fx.alpha.pk else "bravo",
            "platform": row.platform,
            "claims": row.claims,
            "verified_claims": row.verified_claims,
            "claimed": row.claimed,
            "verified": row.verified,
            "statuses": row.statuses,
            "open_alerts": row.open_alerts,
        }
        for row in statement.rows
    ]
    assert got == EXPECTED_ROWS
    assert [r.affiliate_id for r in statement.rows] == [ids["alpha"], ids["alpha"], ids["bravo"]]
    assert [r.verification_rate for r in statement.rows] == [0.6667, 0.0, 1.0]
    assert statement.total == EXPECTED_TOTAL
    # The ledger rows were written during the test, before the period's end: the current scores.
    for row in statement.rows:
        assert row.trust_at_period_end == Affiliate.objects.get(pk=row.affiliate_id).trust_score
    assert statement.daily == [
        {
            "date": fx.day1,
            "claims": 3,
            "verified_claims": 2,
            "claimed": {"views": 3400, "clicks": 340, "conversions": 34},
            "verified": {"views": 2100, "clicks": 210, "conversions": 21},
        },
        {
            "date": fx.day2,
            "claims": 2,
            "verified_claims": 1,
            "claimed": {"views": 1300, "clicks": 130, "conversions": 13},
            "verified": {"views": 1000, "clicks": 100, "conversions": 10},
        },
    ]


def test_period_bounds_select_the_claims() -> None:
    fx = build()
    day2_start = timezone.make_aware(dt.datetime.combine(fx.day2, dt.time.min))
    only_day1 = campaign_statement(campaign=fx.campaign, period=Period(start=fx.period().start, end=day2_start))
    assert only_day1.total["claims"] == 3 and only_day1.total["claimed"]["views"] == 3400
    empty = campaign_statement(campaign=fx.campaign, period=Period(start=day2_start, end=day2_start))
    assert empty.rows == [] and empty.daily == [] and empty.total["verification_rate"] is None


def test_trust_at_period_end_is_the_last_ledger_score_before_the_end() -> None:
    campaign = factories.campaign()
    affiliate = factories.affiliate()
    report = factories.report(post=factories.post(campaign=campaign, affiliate=affiliate))
    first = factories.trust_event(factories.attempt(report), score_after=Decimal("0.4000"))
    second = factories.trust_event(factories.attempt(report), score_after=Decimal("0.3000"))
    t = report.submitted_at
    # Test data only: place the (append-only) ledger rows at known instants.
    type(first).objects.filter(pk=first.pk).update(created_at=t + dt.timedelta(days=1))
    type(second).objects.filter(pk=second.pk).update(created_at=t + dt.timedelta(days=3))

    def trust(end: dt.datetime) -> Decimal:
        (row,) = campaign_statement(campaign=campaign, period=Period(start=t, end=end)).rows
        return row.trust_at_period_end

    assert trust(t + dt.timedelta(hours=1)) == Decimal("0.5000")  # no row yet: the initial score
    assert trust(t + dt.timedelta(days=2)) == Decimal("0.4000")
    assert trust(t + dt.timedelta(days=4)) == Decimal("0.3000")


def test_claim_lines_carry_each_claims_verdict_numbers_oldest_first() -> None:
    fx = build()
    lines = list(statement_claims(campaign=fx.campaign, period=fx.period(), chunk_size=2))
    by_id = {line[0]: line for line in lines}
    assert [line[1] for line in lines] == sorted(line[1] for line in lines)
    assert set(by_id) == {
        fx.reports[k].pk for k in ("a_recheck", "a_override", "a_missing", "a_pending", "b_incomplete_recheck")
    }
    recheck = by_id[fx.reports["a_recheck"].pk]
    assert recheck[6:] == ("AFFILIATE_OVERCLAIMED", True, 1000, 100, 10, 500, 50, 5)
    assert by_id[fx.reports["b_incomplete_recheck"].pk][6:] == ("MATCHED", True, 1000, 100, 10, 1000, 100, 10)
    assert by_id[fx.reports["a_missing"].pk][6:] == ("MISSING_PLATFORM_DATA", False, 300, 30, 3, None, None, None)
    assert by_id[fx.reports["a_pending"].pk][6:] == ("PENDING", False, 400, 40, 4, None, None, None)
    assert by_id[fx.reports["a_pending"].pk][4] == "youtube"


def test_the_verdict_rule_as_subqueries_and_as_joins_agree() -> None:
    fx = build()
    period = fx.period()
    per_claim = dict(claims_in_period(campaign=fx.campaign, period=period).values_list("id", "verified_id"))  # type: ignore[misc]
    joined = dict(verdict_snapshots(campaign=fx.campaign, period=period).values_list("attempt__report_id", "id"))
    assert {claim: snap for claim, snap in per_claim.items() if snap is not None} == joined
    assert len(joined) == 3

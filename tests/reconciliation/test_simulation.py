"""``simulate_rules`` and ``rereconcile --ruleset-other-than`` on verdicts the attempt protocol stored."""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db import connection

from platforms.adapters.base import PlatformMetrics
from platforms.fetcher import FetchOutcome
from reconciliation.models import Campaign, ReconciliationLog, campaign_ruleset
from reconciliation.services.attempts import attempt_run
from tests import factories

pytestmark = pytest.mark.django_db

#: Claimed views against 1000 observed (clicks 100, conversions 10 match): default verdicts.
VIEWS = {
    1000: "MATCHED",
    1050: "MATCHED",  # exactly 5 %
    1060: "DISCREPANCY_LOW",
    1080: "DISCREPANCY_LOW",  # exactly 8 %
    1090: "DISCREPANCY_LOW",
    930: "DISCREPANCY_LOW",  # -7 %
    850: "DISCREPANCY_MEDIUM",
    1300: "AFFILIATE_OVERCLAIMED",
    600: "DISCREPANCY_HIGH",
}


def ok(views: int | None = 1000, clicks: int | None = 100, conversions: int | None = 10) -> FetchOutcome:
    metrics = PlatformMetrics(views, clicks, conversions, raw={})
    return FetchOutcome(metrics=metrics, missing_fields=metrics.missing_fields(), attempts=1, duration_seconds=0.01)


def run(report, outcome: FetchOutcome, now: dt.datetime) -> Any:
    return attempt_run(report_id=report.pk, worker="test", fetcher=lambda _c: outcome, clock=lambda: now)


@pytest.fixture
def history() -> dict[str, Any]:
    """Claims decided by the attempt protocol under the current rules, in every status."""
    campaign = factories.campaign()
    affiliate = factories.affiliate()
    reports: dict[int, Any] = {}
    for views in VIEWS:
        report = factories.report(
            post=factories.post(campaign=campaign, affiliate=affiliate),
            claimed_views=views,
            claimed_clicks=100,
            claimed_conversions=10,
        )
        run(report, ok(), report.submitted_at + dt.timedelta(seconds=1))
        reports[views] = report
    incomplete = factories.report(post=factories.post(campaign=campaign), claimed_clicks=100, claimed_conversions=10)
    run(incomplete, ok(views=None), incomplete.submitted_at)
    missing = factories.report(post=factories.post(campaign=campaign))
    run(missing, FetchOutcome(metrics=None, error_code="not_found", attempts=1), missing.submitted_at)
    pending = factories.report(post=factories.post(campaign=campaign))
    # A verdict whose re-check could not conclude (partial data): the first snapshot still decides it.
    recheck = factories.report(
        post=factories.post(campaign=campaign), claimed_views=1060, claimed_clicks=100, claimed_conversions=10
    )
    run(recheck, ok(), recheck.submitted_at)
    run(recheck, ok(clicks=None), recheck.submitted_at + dt.timedelta(hours=7))
    # Growth: 915 claimed, 1150 observed 2 h later: P/G = 1150/1.2 = 958.3, so -4.5 %: MATCHED (without the
    # growth allowance it would be -20.4 %); under a tolerance of 4 % it would be LOW.
    grown = factories.report(
        post=factories.post(campaign=campaign), claimed_views=915, claimed_clicks=100, claimed_conversions=10
    )
    run(grown, ok(views=1150), grown.submitted_at + dt.timedelta(hours=2))
    statuses = dict(ReconciliationLog.objects.values_list("report_id", "status"))
    assert statuses[incomplete.pk] == "INCOMPLETE_PLATFORM_DATA" and statuses[missing.pk] == "MISSING_PLATFORM_DATA"
    assert statuses[pending.pk] == "PENDING" and statuses[recheck.pk] == "DISCREPANCY_LOW"
    assert statuses[grown.pk] == "MATCHED"
    assert {views: statuses[r.pk] for views, r in reports.items()} == VIEWS
    return {"campaign": campaign, "reports": reports, "recheck": recheck, "grown": grown, "all": statuses}


def simulate(*args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("simulate_rules", "--json", *args, stdout=out, stderr=io.StringIO())
    return json.loads(out.getvalue())


def matrix(result: dict[str, Any]) -> dict[tuple[str, str], int]:
    return {(c["from"], c["to"]): c["claims"] for c in result["matrix"]}


def test_the_current_settings_change_nothing(history: dict[str, Any]) -> None:
    result = simulate()
    assert result["claims"] == len(history["all"]) and result["identity"] is True
    assert result["changed_status"] == 0 and result["examples"] == [] and result["level_changes"] == []
    expected: dict[tuple[str, str], int] = {}
    for status in history["all"].values():
        expected[(status, status)] = expected.get((status, status), 0) + 1
    assert matrix(result) == expected
    assert result["trust"]["affiliates_moved"] == 0
    assert result["alerts"] == {"would_raise": {}, "no_longer_raised": {}}
    assert result["proposed"]["global_current"] == result["proposed"]["global_proposed"]
    assert result["proposed"]["campaigns_changed"] == 0
    current = campaign_ruleset(None).short_fingerprint
    assert result["decided_under"] == {current: len(history["all"]) - 1, "": 1}  # PENDING: not decided yet


def test_a_known_tolerance_change_moves_exactly_the_hand_computed_claims(history: dict[str, Any]) -> None:
    result = simulate("--set", "RECONCILIATION_SETTINGS__BASE_TOLERANCE_PCT=0.08")
    # |diff| ≤ 8 % is MATCHED now: 1060 (+6 %), 1080 (+8 %, inclusive), 930 (-7 %) and the re-checked
    # 1060. 1090 (+9 %) stays LOW; the rest keep their verdicts.
    reports = history["reports"]
    moved = {reports[1060].pk, reports[1080].pk, reports[930].pk, history["recheck"].pk}
    assert {e["report_id"] for e in result["examples"]} == moved
    assert matrix(result)[("DISCREPANCY_LOW", "MATCHED")] == 4
    assert matrix(result)[("DISCREPANCY_LOW", "DISCREPANCY_LOW")] == 1
    assert result["changed_status"] == 4
    # Each: MINOR_DISCREPANCY (-0.01) → PERFECT_MATCH (+0.01). Three are one affiliate's (+0.06), the
    # re-checked claim another's (+0.02).
    moves = sorted(m["change"] for m in result["trust"]["largest_moves"])
    assert moves == ["0.0200", "0.0600"]
    assert result["proposed"]["campaigns_changed"] == Campaign.objects.count()  # a global change: every campaign
    assert all(
        e["after"]["status"] == "MATCHED" and e["before"]["status"] == "DISCREPANCY_LOW" for e in result["examples"]
    )


def test_both_ways_of_finding_the_deciding_snapshots_agree(history: dict[str, Any], monkeypatch: Any) -> None:
    from reconciliation.services import simulation

    args = ("--set", "RECONCILIATION_SETTINGS__BASE_TOLERANCE_PCT=0.04", "--examples", "100")
    timings = ("seconds", "cpu_seconds", "claims_per_s")

    def run() -> dict[str, Any]:
        result = {k: v for k, v in simulate(*args).items() if k not in timings}
        result["examples"].sort(key=lambda e: e["report_id"])  # rows come in the plan's order
        return result

    lateral = run()
    monkeypatch.setattr(simulation, "HASH_JOIN_FROM", 0)
    hashed = run()
    assert hashed == lateral and lateral["changed_status"] > 0


def test_growth_is_applied_to_the_snapshot_as_it_was_fetched(history: dict[str, Any]) -> None:
    result = simulate("--set", "RECONCILIATION_SETTINGS__BASE_TOLERANCE_PCT=0.04")
    changed = {e["report_id"]: e for e in result["examples"]}
    grown = changed[history["grown"].pk]
    assert grown["hours_since_claim"] == 2.0 and grown["after"]["status"] == "DISCREPANCY_LOW"
    assert grown["after"]["diffs"]["views"] == round(915 / (1150 / 1.2) - 1, 6)
    assert history["reports"][1050].pk in changed and history["reports"][1000].pk not in changed


def _row_counts() -> dict[str, int]:
    counts = {}
    for model in apps.get_models():
        if model._meta.managed and not model._meta.proxy:
            counts[model._meta.label] = model._default_manager.count()
    return counts


def _state() -> tuple:
    from reconciliation.models import Affiliate

    logs = list(ReconciliationLog.objects.order_by("pk").values())
    scores = list(Affiliate.objects.order_by("pk").values_list("pk", "trust_score", "accurate_submissions"))
    return _row_counts(), logs, scores


def test_simulation_writes_nothing(history: dict[str, Any]) -> None:
    before = _state()
    simulate(
        "--set",
        "RECONCILIATION_SETTINGS__OVERCLAIM_THRESHOLD_PCT=0.05",
        "--set",
        "RECONCILIATION_SETTINGS__OVERCLAIM_CRITICAL_PCT=0.06",
        "--set",
        "TRUST_SCORING__OVERCLAIM=-0.5",
    )
    call_command("simulate_rules", "--no-progress", stdout=io.StringIO())
    assert _state() == before
    assert before[0]["reconciliation.ReconciliationLog"] == len(history["all"])


@pytest.mark.django_db(transaction=True)
def test_the_simulation_runs_in_a_read_only_transaction() -> None:
    report = factories.report(claimed_views=1300, claimed_clicks=100, claimed_conversions=10)
    run(report, ok(), report.submitted_at)
    counts = _row_counts()
    queries: list[str] = []

    def spy(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        result = simulate("--set", "RECONCILIATION_SETTINGS__OVERCLAIM_THRESHOLD_PCT=0.4")
    assert result["changed_status"] == 1 and result["alerts"]["no_longer_raised"] == {"OVERCLAIM": 1}
    assert "SET TRANSACTION READ ONLY" in queries
    assert not [q for q in queries if q.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
    assert _row_counts() == counts


def test_campaign_overrides_and_selection(history: dict[str, Any]) -> None:
    campaign = history["campaign"]
    other = factories.campaign()
    report = factories.report(
        post=factories.post(campaign=other), claimed_views=1060, claimed_clicks=100, claimed_conversions=10
    )
    run(report, ok(), report.submitted_at)
    proposed = json.dumps({"RECONCILIATION_SETTINGS": {"base_tolerance_pct": 0.08}})
    result = simulate("--campaign", str(campaign.pk), "--overrides", proposed)
    assert result["claims"] == len(history["all"]) and result["changed_status"] == 4
    assert report.pk not in {e["report_id"] for e in result["examples"]}
    only_low = simulate("--overrides", proposed, "--status", "DISCREPANCY_LOW", "--limit", "2")
    assert only_low["claims"] == 2 and matrix(only_low) == {("DISCREPANCY_LOW", "MATCHED"): 2}
    assert only_low["examples"][0]["report_id"] == report.pk  # the newest first
    future = simulate("--since", (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date().isoformat())
    assert future["claims"] == 0
    until = simulate("--until", "2000-01-01")
    assert until["claims"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "RECONCILIATION_SETTINGS__LOW_MAX"], "expected GROUP__FIELD=value"),
        (["--set", "NOPE__LOW_MAX=1"], "unknown or not a rule group"),
        (["--set", "RECONCILIATION_SETTINGS__NOPE=1"], "has no setting 'nope'"),
        (["--set", "RECONCILIATION_SETTINGS__LOW_MAX=7"], "RECONCILIATION_SETTINGS.low_max"),
        (["--set", "RECONCILIATION_SETTINGS__LOW_MAX=0.01"], "exceeds low_max"),
        (["--overrides", "{"], "not JSON"),
        (["--overrides", "[1]"], "must be a JSON object"),
        (["--overrides", '{"RETRY": {}}'], "unknown or not overridable group"),
        (["--campaign", "999999"], "no campaign 999999"),
        (["--since", "yesterday"], "not a date or datetime"),
        (["--limit", "0"], "--limit must be at least 1"),
    ],
)
def test_bad_input_is_refused_clearly(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("simulate_rules", "--no-progress", *args, stdout=io.StringIO())


def test_the_report_for_people(history: dict[str, Any]) -> None:
    out, err = io.StringIO(), io.StringIO()
    call_command("simulate_rules", "--set", "RECONCILIATION_SETTINGS__BASE_TOLERANCE_PCT=0.08", stdout=out, stderr=err)
    text = out.getvalue()
    assert "Transition matrix" in text and "* DISCREPANCY_LOW" in text and "→ MATCHED" in text
    assert "Per-metric diffs" in text and "Trust: 2 affiliate(s) would move" in text
    assert f"report {history['reports'][1080].pk}" in text and "nothing was written" in text
    assert "claim" in err.getvalue()  # the progress bar


def test_rereconcile_reruns_only_verdicts_decided_under_older_rules(history: dict[str, Any]) -> None:
    campaign: Campaign = history["campaign"]
    old = campaign_ruleset(None)
    campaign.rule_overrides = {"RECONCILIATION_SETTINGS": {"base_tolerance_pct": 0.08}}
    campaign.save()
    # A claim decided under the new rules is left alone.
    fresh = factories.report(post=factories.post(campaign=campaign), claimed_clicks=100, claimed_conversions=10)
    run(fresh, ok(), fresh.submitted_at)
    assert ReconciliationLog.objects.get(report=fresh).ruleset_fingerprint == campaign.ruleset().fingerprint

    out = io.StringIO()
    state = _state()
    call_command("rereconcile", "--ruleset-other-than", "CURRENT", "--dry-run", "--json", stdout=out)
    dry = json.loads(out.getvalue())
    decided = len(history["all"]) - 1  # all but the PENDING one
    assert dry["claims"] == decided and dry["changed_status"] == 4
    assert dry["decided_under"] == {old.short_fingerprint: decided}
    assert _state() == state  # a dry run
    by_fingerprint = io.StringIO()
    call_command(
        "rereconcile",
        "--ruleset-other-than",
        old.short_fingerprint,
        "--dry-run",
        "--no-progress",
        stdout=by_fingerprint,
    )
    assert "dry run: 1 report(s) would be re-reconciled" in by_fingerprint.getvalue()  # only `fresh`

    before = dict(ReconciliationLog.objects.values_list("report_id", "next_attempt_at"))
    out = io.StringIO()
    call_command("rereconcile", "--ruleset-other-than", "current", "--no-progress", stdout=out)
    assert f"re-reconciling {decided} report(s)" in out.getvalue()
    after = dict(ReconciliationLog.objects.values_list("report_id", "next_attempt_at"))
    reopened = {rid for rid in after if after[rid] != before[rid]}
    assert reopened == {rid for rid, status in history["all"].items() if status != "PENDING"}
    assert fresh.pk not in reopened


def test_rereconcile_refuses_a_bad_fingerprint() -> None:
    with pytest.raises(CommandError, match="CURRENT or a"):
        call_command("rereconcile", "--ruleset-other-than", "not-hex", stdout=io.StringIO())

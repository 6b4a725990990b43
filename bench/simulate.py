"""Simulation benchmark: ``simulate_rules`` over 1,000,000 stored claims with their platform snapshots.

    .venv/bin/python bench/simulate.py [--claims 1000000] [--repeat 2] [--rebuild]

Builds (once; reused while it has the asked number of claims, ``--rebuild`` to start over) stored history in
PostgreSQL database ``reconcile_bench_simulate`` (created and migrated here, or ``BENCH_DATABASE_URL``;
Redis db 5, or ``BENCH_REDIS_URL``): 200 affiliates on three platforms, 4 claims per post. Every claim has
its log; all but the PENDING ones (2 %) an attempt; all but the MISSING ones (3 %) a platform snapshot,
fetched 0 to 2 hours after the claim, between 30 % under and 29 % over the claim, one in 50 without clicks.
The stored verdicts are computed in SQL with exact numerics by the rules of DESIGN §4 under the default
settings (growth included), with their ledger sums and the current rule-set fingerprint, as the attempts
would have stored them. Rows are made by ``INSERT ... SELECT generate_series``: no Python loop.

Then, ``--repeat`` times each: the simulation under the current settings (it must be the identity: a
check that the stored verdicts and the rules agree) and under a proposed change (base tolerance 8 %,
over-claim from 25 %). Prints JSON only: claims/s on the wall clock and on this process's CPU, the share
of claims the exact (fraction) rules had to decide, the process's peak RSS (``ru_maxrss``) and its RSS
growth during the run (sampled at every batch). Target: at least 50,000 claims/s.

Measured (2-core machine, load average 6–8 from other work, ``--claims 1000000 --repeat 2``): median
51,432 claims/s (43,030 and 33,705 under the current settings, both the identity; 59,833 and 59,993 under
the proposed change, 194,776 claims changing status); 133,720 claims per CPU second of this process (the
rest of the wall time is PostgreSQL and the other work); RSS +37 MB on the first run, at most +8.5 MB after;
peak RSS 138 MB. A later run under a load average of 18–25: median 21,778 claims/s, 123,026 per CPU second.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.benchdb import bench_environment  # noqa: E402

ENV = bench_environment(
    database="reconcile_bench_simulate", redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
)

import django  # noqa: E402

django.setup()

import datetime as dt  # noqa: E402

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from platforms.models import Platform  # noqa: E402
from reconciliation.models import Affiliate, AffiliateReport, Campaign, Client, campaign_ruleset  # noqa: E402
from reconciliation.services.simulation import Selection, simulation_run  # noqa: E402

CAMPAIGN = "bench simulate"
AFFILIATES = 200
PLATFORMS = ("reddit", "youtube", "instagram")
CLAIMS_PER_POST = 4
PAGE = os.sysconf("SC_PAGE_SIZE")
PROPOSED = {"RECONCILIATION_SETTINGS": {"base_tolerance_pct": 0.08, "overclaim_threshold_pct": 0.25}}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def _diff(c: str, p: str, floor: int) -> str:
    """Exact signed diff of DESIGN §4 in SQL numerics, with G the growth factor: (cG − P)/P on the under side."""
    return f"""CASE WHEN {p} IS NULL THEN NULL
        WHEN {c} > {p} THEN CASE WHEN {c} - {p} <= {floor} THEN 0
                                 ELSE ({c} - {p})::numeric / GREATEST({p}, 1) END
        WHEN {c} * g < {p} THEN CASE WHEN {p} - {c} * g <= {floor} * g THEN 0
                                     ELSE ({c} * g - {p}) / {p} END
        ELSE 0 END"""


def _over(c: str, p: str, floor: int) -> str:
    over = f"{p} IS NOT NULL AND {c} > {p} AND {c} - {p} > {floor}"
    return f"CASE WHEN {over} THEN ({c} - {p})::numeric / GREATEST({p}, 1) END"


def build(claims: int, rebuild: bool) -> Campaign:
    call_command("migrate", verbosity=0)
    campaign = Campaign.objects.filter(name=CAMPAIGN).first()
    if campaign and not rebuild and AffiliateReport.objects.filter(post__campaign=campaign).count() == claims:
        return campaign
    # The bench database is disposable: empty it whole (evidence rows are never deleted one by one).
    call_command("flush", interactive=False, verbosity=0)
    t0 = timezone.now() - dt.timedelta(days=30)
    client = Client.objects.create(name="bench client")
    campaign = Campaign.objects.create(client=client, name=CAMPAIGN, start_date=t0.date())
    platforms = [Platform.objects.get_or_create(slug=s, defaults={"name": s})[0] for s in PLATFORMS]
    campaign.platforms.set(platforms)
    affiliates = Affiliate.objects.bulk_create(
        Affiliate(name=f"Affiliate {n}", email=f"bench{n}@example.com") for n in range(AFFILIATES)
    )
    rules = campaign_ruleset(None)
    r = rules.reconciliation
    trust = rules.trust
    params = {
        "campaign": campaign.pk,
        "affiliates": [a.pk for a in affiliates],
        "platforms": [p.pk for p in platforms],
        "posts": claims // CLAIMS_PER_POST,
        "per_post": CLAIMS_PER_POST,
        "t0": t0,
        "fingerprint": rules.fingerprint,
    }
    fv, fc, fcv = r.abs_tolerance_views, r.abs_tolerance_clicks, r.abs_tolerance_conversions
    delta = {
        "MATCHED": trust.perfect_match,
        "DISCREPANCY_LOW": trust.minor_discrepancy,
        "DISCREPANCY_MEDIUM": trust.medium_discrepancy,
        "DISCREPANCY_HIGH": trust.high_discrepancy,
        "AFFILIATE_OVERCLAIMED": trust.overclaim,
    }
    trust_case = "CASE e.status " + " ".join(f"WHEN '{s}' THEN {v}" for s, v in delta.items()) + " END"
    statements = [
        """INSERT INTO reconciliation_post (campaign_id, affiliate_id, platform_id, url, platform_post_id, title,
               created_at)
           SELECT %(campaign)s, (%(affiliates)s::bigint[])[1 + g %% cardinality(%(affiliates)s::bigint[])],
                  (%(platforms)s::bigint[])[1 + g %% cardinality(%(platforms)s::bigint[])],
                  'https://www.reddit.com/r/bench/comments/s' || g || '/', 's' || g, '',
                  %(t0)s::timestamptz + g * interval '1 second'
           FROM generate_series(0, %(posts)s - 1) g""",
        """INSERT INTO reconciliation_affiliatereport (post_id, claimed_views, claimed_clicks, claimed_conversions,
               evidence, suspicion_flags, submission_method, idempotency_key, request_id, submitted_at)
           SELECT p.id, 1000 + (p.id * 7 + k * 13) %% 9000, 50 + (p.id + k) %% 400, (p.id + k) %% 40, '{}', '[]',
                  'API', '', '', p.created_at + k * interval '1 hour'
           FROM reconciliation_post p CROSS JOIN generate_series(0, %(per_post)s - 1) k
           WHERE p.campaign_id = %(campaign)s""",
        # What the platform said and when, per claim (PENDING: never asked; MISSING: nothing observed).
        """CREATE TEMP TABLE bench_observed AS
           SELECT r.id AS report_id, r.claimed_views AS cv, r.claimed_clicks AS cc, r.claimed_conversions AS ccv,
                  CASE WHEN r.id %% 50 = 7 THEN 'PENDING' WHEN r.id %% 33 = 5 THEN 'MISSING' ELSE 'FETCHED' END
                      AS kind,
                  r.claimed_views * (70 + (r.id * 37) %% 60) / 100 AS pv,
                  CASE WHEN r.id %% 50 = 3 THEN NULL ELSE r.claimed_clicks * (90 + r.id %% 20) / 100 END AS pc,
                  r.claimed_conversions + (r.id %% 3) - 1 AS pcv,
                  (r.id %% 5) * 0.5 AS hours,
                  r.submitted_at
           FROM reconciliation_affiliatereport r
           JOIN reconciliation_post p ON p.id = r.post_id AND p.campaign_id = %(campaign)s""",
        f"""CREATE TEMP TABLE bench_eval AS
           SELECT o.*, d.dv, d.dc, d.dcv,
                  CASE WHEN o.kind = 'PENDING' THEN 'PENDING'
                       WHEN o.kind = 'MISSING' THEN 'MISSING_PLATFORM_DATA'
                       WHEN d.max_pos >= {r.overclaim_threshold_pct} THEN 'AFFILIATE_OVERCLAIMED'
                       WHEN o.pc IS NULL THEN 'INCOMPLETE_PLATFORM_DATA'
                       WHEN d.max_abs <= {r.base_tolerance_pct} THEN 'MATCHED'
                       WHEN d.max_abs <= {r.low_max} THEN 'DISCREPANCY_LOW'
                       WHEN d.max_abs <= {r.medium_max} THEN 'DISCREPANCY_MEDIUM'
                       ELSE 'DISCREPANCY_HIGH' END AS status,
                  CASE WHEN o.kind <> 'FETCHED' THEN NULL
                       WHEN d.max_pos >= {r.overclaim_critical_pct} THEN 'CRITICAL'
                       WHEN d.max_pos >= {r.overclaim_threshold_pct} THEN 'HIGH'
                       WHEN o.pc IS NULL OR d.max_abs <= {r.base_tolerance_pct} THEN NULL
                       WHEN d.max_abs <= {r.low_max} THEN 'LOW'
                       WHEN d.max_abs <= {r.medium_max} THEN 'MEDIUM'
                       ELSE 'HIGH' END AS level,
                  d.max_abs
           FROM bench_observed o
           CROSS JOIN LATERAL (SELECT 1 + {r.growth_per_hour_pct} * LEAST(o.hours, {r.growth_cap_hours}) AS g) gr
           CROSS JOIN LATERAL (
               SELECT dv, dc, dcv,
                      GREATEST(abs(dv), abs(coalesce(dc, 0)), abs(dcv)) AS max_abs,
                      coalesce(GREATEST(ov, oc, ocv), 0) AS max_pos
               FROM (SELECT {_diff("o.cv", "o.pv", fv)} AS dv, {_diff("o.cc", "o.pc", fc)} AS dc,
                            {_diff("o.ccv", "o.pcv", fcv)} AS dcv,
                            {_over("o.cv", "o.pv", fv)} AS ov, {_over("o.cc", "o.pc", fc)} AS oc,
                            {_over("o.ccv", "o.pcv", fcv)} AS ocv) x
           ) d""",
        """INSERT INTO reconciliation_reconciliationattempt (report_id, number, started_at, finished_at, outcome,
               status, missing_reason, duration_ms, worker, is_recheck, ruleset_fingerprint)
           SELECT e.report_id, 1, e.submitted_at + e.hours * interval '1 hour',
                  e.submitted_at + e.hours * interval '1 hour',
                  CASE e.status WHEN 'MISSING_PLATFORM_DATA' THEN 'MISSING'
                                WHEN 'INCOMPLETE_PLATFORM_DATA' THEN 'PARTIAL' ELSE 'SUCCESS' END,
                  e.status, CASE WHEN e.status = 'MISSING_PLATFORM_DATA' THEN 'not_found' ELSE '' END, 100,
                  'bench', false, %(fingerprint)s
           FROM bench_eval e WHERE e.kind <> 'PENDING'""",
        """INSERT INTO reconciliation_platformreport (post_id, attempt_id, platform_id, views, clicks, conversions,
               raw, fetched_at)
           SELECT r.post_id, a.id, p.platform_id, e.pv, e.pc, e.pcv, '{}', a.finished_at
           FROM bench_eval e
           JOIN reconciliation_reconciliationattempt a ON a.report_id = e.report_id
           JOIN reconciliation_affiliatereport r ON r.id = e.report_id
           JOIN reconciliation_post p ON p.id = r.post_id
           WHERE e.kind = 'FETCHED'""",
        f"""INSERT INTO reconciliation_reconciliationlog (report_id, status, discrepancy_level, views_diff_pct,
               clicks_diff_pct, conversions_diff_pct, max_diff_pct, confidence_ratio, missing_fields,
               missing_reason, attempt_count, budget_attempts, deferral_count, error_code, error_message, terminal,
               updated_at, trust_delta, ruleset_fingerprint)
           SELECT e.report_id, e.status, e.level, e.dv::float8, e.dc::float8, e.dcv::float8, e.max_abs::float8,
                  CASE WHEN e.kind <> 'FETCHED' THEN NULL WHEN e.pc IS NULL THEN 2.0 / 3 ELSE 1 END,
                  CASE WHEN e.kind = 'FETCHED' AND e.pc IS NULL THEN '["clicks"]' ELSE '[]' END::jsonb,
                  CASE WHEN e.kind = 'MISSING' THEN 'not_found' ELSE '' END,
                  CASE WHEN e.kind = 'PENDING' THEN 0 ELSE 1 END, CASE WHEN e.kind = 'PENDING' THEN 0 ELSE 1 END,
                  0, '', '', e.kind <> 'PENDING', e.submitted_at, {trust_case},
                  CASE WHEN e.kind = 'PENDING' THEN '' ELSE %(fingerprint)s END
           FROM bench_eval e""",
        "DROP TABLE bench_observed",
        "DROP TABLE bench_eval",
    ]
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql, params)
        cursor.execute("ANALYZE")
    return campaign


def run_once(campaign: Campaign, overrides: dict | None) -> dict:
    rss_start = rss_mb()
    peak = [rss_start]

    def sample(_n: int) -> None:
        peak[0] = max(peak[0], rss_mb())

    result = simulation_run(selection=Selection(campaign_id=campaign.pk), overrides=overrides, progress=sample)
    peak[0] = max(peak[0], rss_mb())
    return {
        "claims": result["claims"],
        "seconds": result["seconds"],
        "cpu_seconds": result["cpu_seconds"],
        "claims_per_s": result["claims_per_s"],
        "claims_per_cpu_s": round(result["claims"] / result["cpu_seconds"]) if result["cpu_seconds"] else None,
        "changed_status": result["changed_status"],
        "identity": result["identity"],
        "exact_classifications": result["exact_classifications"],
        "rss_start_mb": round(rss_start, 1),
        "rss_growth_mb": round(peak[0] - rss_start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--claims", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()

    t = time.perf_counter()
    campaign = build(args.claims, args.rebuild)
    build_s = time.perf_counter() - t
    current = [run_once(campaign, None) for _ in range(args.repeat)]
    proposed = [run_once(campaign, PROPOSED) for _ in range(args.repeat)]
    median_rate = statistics.median(r["claims_per_s"] for r in current + proposed)
    print(
        json.dumps(
            {
                "claims": args.claims,
                "build_seconds": round(build_s, 1),
                "current_settings": current,
                "proposed_change": {"overrides": PROPOSED, "runs": proposed},
                "median_claims_per_s": round(median_rate),
                "median_claims_per_cpu_s": round(statistics.median(r["claims_per_cpu_s"] for r in current + proposed)),
                "max_rss_growth_mb": max(r["rss_growth_mb"] for r in current + proposed),
                "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "load_average": os.getloadavg(),
                "targets": {"claims_per_s": 50_000, "met": median_rate >= 50_000},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
